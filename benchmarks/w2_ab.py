"""bench.py's W2 (memory alone, B 16, T 10,000, order 64, every state returned) before and after
session 14's two changes to its step, alternating in one process so that both see the same
machine state. One JSON line per phase: each variant's per-round minimum of 5 runs, over
``--rounds`` rounds, and their medians.

- train: the encoder's scale as a pass over the states (``ops.scale_states``: the memory of x,
  then 41 MB scaled by e; the library's until session 14 and still on a GPU) against
  ``ops.scale_through`` (the memory of e·x itself, e's gradient read off it).
- infer: the encoder applied to x ``(..., 1)`` as a matmul of inner size 1 (until session 14)
  against a broadcast product (``LegendreMemory.encode``).

The block length is the library's in both (``benchmarks/chunk_size_sweep.py`` sweeps it).

    python benchmarks/w2_ab.py --threads 2 --rounds 8
"""

from __future__ import annotations

import json

import torch
from _ab import alternate, memory_steps, setup, summary  # benchmarks/_ab.py

from torchlmu import LegendreMemory


def main() -> None:
    args = setup(__doc__)
    train, infer = memory_steps()
    cls = LegendreMemory
    through, encode = cls._scales_through, cls.encode

    def encode_matmul(self, x):
        u = x @ self.input_encoders.T
        return u if self.memory_bias is None else u + self.memory_bias

    phases = {
        "train": (
            train,
            {
                "scale_states": lambda: setattr(cls, "_scales_through", lambda self, x: False),
                "scale_through": lambda: setattr(cls, "_scales_through", through),
            },
        ),
        "infer": (
            infer,
            {
                "encode_matmul": lambda: setattr(cls, "encode", encode_matmul),
                "encode_broadcast": lambda: setattr(cls, "encode", encode),
            },
        ),
    }
    for phase, (step, variants) in phases.items():
        runs = alternate(variants, step, args.rounds, runs=5)
        cls._scales_through, cls.encode = through, encode
        line = {"workload": "W2", "phase": phase, **summary(runs)}
        print(json.dumps(line | {"threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
