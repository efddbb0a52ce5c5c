"""W1's training step (the psMNIST LMU model, B 100, T 784) with ops.matmul's backward products
on oneDNN (the library's, since session 12) against torch's (before), alternating in one
process so that both see the same machine state. One JSON line: each variant's per-round
minimum of 3 steps, over ``--rounds`` rounds, and their medians.

    python benchmarks/onednn_backward_ab.py --threads 2
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from _ab import alternate, psmnist_steps, setup, summary  # benchmarks/_ab.py


def main() -> None:
    args = setup(__doc__)
    from torchlmu import ops

    step, _ = psmnist_steps()

    def torch_products(ctx, g):  # the backward before session 12
        a, b = ctx.saved_tensors
        return (g @ b.T if ctx.needs_input_grad[0] else None,
                a.T @ g if ctx.needs_input_grad[1] else None)  # fmt: skip

    backwards = {"torch products": staticmethod(torch_products),
                 "oneDNN (library)": staticmethod(ops._OneDNNMatmul.backward)}  # fmt: skip

    def use(bwd) -> Callable[[], None]:
        return lambda: setattr(ops._OneDNNMatmul, "backward", bwd)

    try:
        runs = alternate({k: use(b) for k, b in backwards.items()}, step, args.rounds, runs=3)
    finally:
        ops._OneDNNMatmul.backward = backwards["oneDNN (library)"]
    print(json.dumps({
        "workload": "W1 train", "threads": args.threads, "torch": torch.__version__,
        **summary(runs, digits=1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
