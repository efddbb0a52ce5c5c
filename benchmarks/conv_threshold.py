"""Where ``conv="auto"`` should leave the blocked matmuls for the FFT (``ops.CHUNK_MAX_ORDER``):
both methods side by side at orders around it, alternating in one process so that both see the
same machine state. One JSON line per (part, order, shape, phase): each method's per-round
minimum of ``--runs`` runs over ``--rounds`` rounds, and their medians.

- ``states``: ``LegendreMemory`` alone (scalar input, every state returned; training
  backpropagates a fixed gradient of the states, as bench.py's W2).
- ``projection``: the psMNIST-sized ``LMU`` (hidden 212, input→hidden, last output), whose
  memory computes the hidden part's input projection (``fused_chunked`` or ``fused_conv``).

    python benchmarks/conv_threshold.py --threads 2 --rounds 3
"""

from __future__ import annotations

import json

import torch
from _ab import alternate, setup, summary  # benchmarks/_ab.py

from torchlmu import LMU, LegendreMemory

ORDERS = (256, 384, 512)
SHAPES = {"states": ((784, 100), (784, 16), (10_000, 4)), "projection": ((784, 100), (784, 16))}


def _build(part: str, d: int, T: int) -> dict[str, torch.nn.Module]:
    if part == "states":
        make = lambda c: LegendreMemory(1, d, float(T), batch_first=True, conv=c)  # noqa: E731
    else:
        make = lambda c: LMU(1, 212, d, float(T), input_to_hidden=True, batch_first=True,  # noqa: E731
                             return_sequences=False, conv=c)  # fmt: skip
    return {c: make(c) for c in ("chunk", "fft")}


def _measure(part: str, d: int, T: int, B: int, rounds: int) -> list[dict]:
    mods = _build(part, d, T)
    x = torch.randn(B, T, 1)
    dy = torch.randn(B, T, d) if part == "states" else None
    cur: dict[str, torch.nn.Module] = {}

    def infer():
        with torch.no_grad():
            cur["m"](x)

    def train():
        m = cur["m"]
        m.zero_grad(set_to_none=True)
        y = m(x)[0]
        y.backward(dy) if dy is not None else y.sum().backward()

    variants = {c: (lambda m=m: cur.__setitem__("m", m)) for c, m in mods.items()}
    out = []
    for phase, step in (("train", train), ("infer", infer)):
        s = summary(alternate(variants, step, rounds, runs=3))
        rec = {"part": part, "order": d, "T": T, "B": B, "phase": phase, **s}
        rec["fft_over_chunk"] = round(s["median_ms"]["fft"] / s["median_ms"]["chunk"], 3)
        out.append(rec | {"threads": torch.get_num_threads()})
    return out


def main() -> None:
    args = setup(__doc__)
    for part, shapes in SHAPES.items():
        for T, B in shapes:
            for d in ORDERS:
                for rec in _measure(part, d, T, B, args.rounds):
                    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
