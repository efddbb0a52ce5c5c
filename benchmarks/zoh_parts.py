"""``legendre.zoh`` at large orders with each of session 15's two changes on and off,
alternating in one process (this machine's speed drifts within minutes): the Taylor sum in
cache-sized blocks of columns (off: ``zoh_block_columns`` returns the whole matrix) and the
squarings in blocks of rows up to the diagonal (off: ``ZOH_SQUARE_ROWS`` above the order, one
whole product). One JSON line per order: each variant's per-round time (s) and the medians;
the differences between variants give each change's share (13 squarings at order 4096,
θ 784). Each round also times one d×d float64 product through torch (the library's engine)
and through NumPy's BLAS (another engine, for this CPU's float64 rate): the squarings' flops
(``legendre.zoh_cost``) at torch's best rate are the ZOH's floor on this machine.

    python benchmarks/zoh_parts.py --threads 2 --rounds 2 --orders 2048 4096
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from torchlmu import legendre


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--orders", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--theta", type=float, default=784.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:  # NumPy's BLAS on as many threads as torch (threadpoolctl comes with SciPy)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
        numpy_threads = args.threads
    except ImportError:
        numpy_threads = None  # its own default
    columns, rows = legendre.zoh_block_columns, legendre.ZOH_SQUARE_ROWS
    whole = lambda d, device: d + 1  # noqa: E731  (one block of columns)
    variants = {  # (Taylor blocks, squaring rows)
        "neither (session 14)": (whole, 1 << 30),
        "column blocks": (columns, 1 << 30),
        "column blocks and half squarings": (columns, rows),
    }
    for d in args.orders:
        times: dict[str, list[float]] = {k: [] for k in variants}
        gemm: dict[str, list[float]] = {"torch": [], "numpy": []}
        a = torch.randn(d, d, dtype=torch.float64)
        for _ in range(args.rounds):
            for engine, mm in (("torch", torch.mm), ("numpy", np.matmul)):
                x = a if engine == "torch" else a.numpy()
                t0 = time.perf_counter()
                mm(x, x)
                gemm[engine].append(time.perf_counter() - t0)
            for name, (cols, sq_rows) in variants.items():
                legendre.zoh_block_columns, legendre.ZOH_SQUARE_ROWS = cols, sq_rows
                t0 = time.perf_counter()
                legendre.zoh(d, 1 / args.theta)
                times[name].append(round(time.perf_counter() - t0, 3))
        legendre.zoh_block_columns, legendre.ZOH_SQUARE_ROWS = columns, rows
        med = {k: statistics.median(v) for k, v in times.items()}
        squarings, flops = legendre.zoh_cost(d, 1 / args.theta)
        rate = {k: 2 * d**3 / min(v) for k, v in gemm.items()}  # best of the rounds, flop/s
        print(json.dumps({
            "order": d, "theta": args.theta, "threads": args.threads, "squarings": squarings,
            "seconds": times, "median_s": med,
            "per_squaring_saved_s": round(
                (med["column blocks"] - med["column blocks and half squarings"]) / squarings, 3
            ),
            "taylor_saved_s": round(med["neither (session 14)"] - med["column blocks"], 3),
            "f64_gemm_gflops": {k: round(v / 1e9, 1) for k, v in rate.items()},
            "numpy_threads": numpy_threads,
            "squarings_floor_s": round(flops / rate["torch"], 3),
            "torch": torch.__version__,
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
