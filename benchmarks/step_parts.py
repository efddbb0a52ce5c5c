"""Where a batch-1 streaming step's time goes: the stepper's (LMU.stepper()) products timed
through torch (its BLAS, MKL in the PyPI wheels) and through NumPy's BLAS (OpenBLAS: another
engine on the same matrices, for this CPU's rate), beside the whole eager step. One JSON line
per model (onnx_step.py's "memory" and "cell"), rounds alternating the engines and the step
(this machine's speed drifts within minutes).

At batch 1 a product reads its whole matrix once for one multiply-add per element, so its
floor is the matrix's bytes at the cache's bandwidth: ``gb_per_s`` gives each engine's rate,
and ``step_at_numpy_rate_us`` the step with its products at NumPy's times (the step less the
difference of the two engines' medians), what the same step would take with the other BLAS.

    python benchmarks/step_parts.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from onnx_step import MODELS, build


def per_call_us(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def product_us(M: torch.Tensor, n: int) -> dict[str, float]:
    """µs per (1, k)·(k, n) product with M through torch and through NumPy."""
    z = torch.rand(1, M.shape[0])
    zn, Mn, out = z.numpy(), M.numpy(), np.empty((1, M.shape[1]), np.float32)
    return {
        "torch": per_call_us(lambda: torch.mm(z, M), n),
        "numpy": per_call_us(lambda: np.dot(zn, Mn, out=out), n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2000, help="calls per timing")
    ap.add_argument("--order", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=212)
    args = ap.parse_args()
    from torchlmu.runtime import configure_cpu

    configure_cpu(args.threads)
    try:  # NumPy's BLAS on as many threads as torch (threadpoolctl comes with SciPy)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    torch.set_grad_enabled(False)
    for model in MODELS:
        lmu = build(model, d=args.order, H=args.hidden)
        stepper = lmu.stepper()
        mats = {n: getattr(stepper, n) for n in ("M_m", "M_h") if getattr(stepper, n) is not None}
        x, state = torch.rand(1, 1), lmu.initial_state(1)
        times: dict[str, list[float]] = {"step": []}
        for _ in range(args.rounds):
            times["step"].append(per_call_us(lambda: stepper(x, state), args.steps))  # noqa: B023
            for name, M in mats.items():
                for engine, us in product_us(M, args.steps).items():
                    times.setdefault(f"{name} {engine}", []).append(us)
        med = {k: statistics.median(v) for k, v in times.items()}
        torch_us = sum(med[f"{n} torch"] for n in mats)
        numpy_us = sum(med[f"{n} numpy"] for n in mats)
        rec_bytes = {n: M.numel() * M.element_size() for n, M in mats.items()}
        rec = {
            "model": model,
            "order": args.order,
            "threads": args.threads,
            "matrices": {n: list(M.shape) for n, M in mats.items()},
            "bytes": rec_bytes,
            "median_us": {k: round(v, 3) for k, v in med.items()},
            "gb_per_s": {
                k: round(rec_bytes[k.split()[0]] / v / 1e3, 1)
                for k, v in med.items()
                if k != "step"
            },
            "products_torch_us": round(torch_us, 3),
            "products_numpy_us": round(numpy_us, 3),
            "step_at_numpy_rate_us": round(med["step"] - torch_us + numpy_us, 3),
            "us": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
