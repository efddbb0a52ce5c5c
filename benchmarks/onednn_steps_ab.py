"""The step loops' products by torch (before session 13) against ``ops.linear``'s oneDNN (the
library's, from ``ops.ONEDNN_STEP_MIN_FLOPS`` up), alternating in one process so that both see
the same machine state. One JSON line per workload and phase: each variant's per-round minimum
of 3 runs, over ``--rounds`` rounds, and their medians.

W1 is bench.py's psMNIST model (B 100, T 784, order 256, hidden 212: the Elman recurrence's
product per step); W5 the fully recurrent cell (three products per step, each way).

    python benchmarks/onednn_steps_ab.py --threads 2
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from _ab import alternate, psmnist_steps, setup, summary  # benchmarks/_ab.py


def main() -> None:
    args = setup(__doc__)
    from torchlmu import ops

    library = ops.ONEDNN_STEP_MIN_FLOPS

    def use(threshold: float) -> Callable[[], None]:
        return lambda: setattr(ops, "ONEDNN_STEP_MIN_FLOPS", threshold)

    variants = {"torch products": use(float("inf")), "oneDNN (library)": use(library)}
    try:
        for name, recurrent in (("W1", False), ("W5", True)):
            train, infer = psmnist_steps(recurrent)
            for phase, fn in (("train", train), ("infer", infer)):
                runs = alternate(variants, fn, args.rounds, runs=3)
                print(json.dumps({
                    "workload": name, "phase": phase, "threads": args.threads,
                    "torch": torch.__version__, **summary(runs, digits=1),
                }), flush=True)  # fmt: skip
    finally:
        ops.ONEDNN_STEP_MIN_FLOPS = library


if __name__ == "__main__":
    main()
