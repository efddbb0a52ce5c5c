"""The blocked projection's block length L (``ops.fused_block_size``) against its time: the
psMNIST-sized ``LMU`` (hidden 212, input→hidden, last output, T 784, ``conv="chunk"``), whose
memory computes the hidden part's input projection by ``ops.fused_chunked``, trained and run
at several L per (order, batch), the L's alternating within each round. One JSON line per
(order, batch, phase): each L's per-round minimum of 2 runs and their median, the library's L
and the fastest measured.

    python benchmarks/fused_block_sweep.py --threads 2 --rounds 3
"""

from __future__ import annotations

import json

import torch
from _ab import alternate, setup, summary  # benchmarks/_ab.py

from torchlmu import LMU, ops

T = 784
SHAPES = [(64, 16), (64, 100), (256, 16), (256, 100), (384, 16), (384, 100)]  # (order, batch)
BLOCKS = (7, 8, 14, 16, 28, 49)


def _steps(d: int, B: int):
    lmu = LMU(1, 212, d, float(T), input_to_hidden=True, batch_first=True,
              return_sequences=False, conv="chunk")  # fmt: skip
    x = torch.randn(B, T, 1)

    def train():
        lmu.zero_grad(set_to_none=True)
        lmu(x)[0].sum().backward()

    def infer():
        with torch.no_grad():
            lmu(x)

    return train, infer


def main() -> None:
    args = setup(__doc__)
    library = ops.fused_block_size
    for d, B in SHAPES:
        variants = {
            str(L): (lambda L=L: setattr(ops, "fused_block_size", lambda *_, L=L: L))
            for L in BLOCKS
        }
        for phase, step in zip(("train", "infer"), _steps(d, B), strict=True):
            s = summary(alternate(variants, step, args.rounds, runs=2))
            ops.fused_block_size = library
            best = min(s["median_ms"], key=s["median_ms"].get)
            rec = {"order": d, "T": T, "B": B, "phase": phase, "library_L": library(T),
                   "best_L": int(best), **s, "threads": torch.get_num_threads()}  # fmt: skip
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
