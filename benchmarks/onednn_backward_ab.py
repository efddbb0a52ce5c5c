"""W1's training step (the psMNIST LMU model, B 100, T 784) with ops.matmul's backward products
on oneDNN (the library's, since session 12) against torch's (before), alternating in one
process so that both see the same machine state. One JSON line: each variant's per-round
minimum of 3 steps, over ``--rounds`` rounds, and their medians.

    python benchmarks/onednn_backward_ab.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    from torchlmu import LMU, ops
    from torchlmu.runtime import configure_cpu

    configure_cpu(args.threads)
    torch.manual_seed(0)
    lmu = LMU(1, 212, 256, 784.0, input_to_hidden=True, init="psmnist", batch_first=True,
              return_sequences=False)  # fmt: skip
    head = nn.Linear(212, 10)
    x, y = torch.rand(100, 784, 1), torch.randint(0, 10, (100,))

    def step():
        lmu.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(lmu(x)[0]), y).backward()

    def torch_products(ctx, g):  # the backward before session 12
        a, b = ctx.saved_tensors
        return (g @ b.T if ctx.needs_input_grad[0] else None,
                a.T @ g if ctx.needs_input_grad[1] else None)  # fmt: skip

    variants = {"torch products": staticmethod(torch_products),
                "oneDNN (library)": staticmethod(ops._OneDNNMatmul.backward)}  # fmt: skip
    runs: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for _ in range(args.rounds):
            for name, bwd in variants.items():
                ops._OneDNNMatmul.backward = bwd
                step()
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    step()
                    times.append((time.perf_counter() - t0) * 1e3)
                runs[name].append(min(times))
    finally:
        ops._OneDNNMatmul.backward = variants["oneDNN (library)"]
    print(json.dumps({
        "workload": "W1 train", "threads": args.threads, "torch": torch.__version__,
        "rounds_ms": {k: [round(v, 1) for v in r] for k, r in runs.items()},
        "median_ms": {k: round(statistics.median(r), 1) for k, r in runs.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
