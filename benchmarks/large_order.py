"""Large orders: construction time, first forward time and peak memory of LMU(1, 16, order,
θ 784) on T = 100, batch 2; one JSON line per order, each in its own process (its own peak RSS).

    python benchmarks/large_order.py --orders 1024 4096 --threads 1
    python benchmarks/large_order.py --orders 1024 4096 --device cuda   # built on the GPU (the
        # ZOH's float64 squarings there); synchronised timing, peak CUDA memory as well
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def one(order: int, threads: int, device: str = "cpu") -> dict:
    from torchlmu import LMU

    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":  # start the context and its allocator before the clock
        torch.zeros(1, device=dev)
        sync()
        loaded = torch.cuda.memory_allocated(dev)
    t0 = time.perf_counter()
    lmu = LMU(1, 16, order, 784.0, device=dev)
    sync()
    t1 = time.perf_counter()
    with torch.no_grad():
        lmu(torch.randn(100, 2, 1, device=dev))
    sync()
    t2 = time.perf_counter()
    rec = {
        "order": order, "theta": 784.0, "T": 100, "threads": threads, "device": str(dev),
        "build_s": t1 - t0, "first_forward_s": t2 - t1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
    }  # fmt: skip
    if dev.type == "cuda":
        rec["gpu"] = torch.cuda.get_device_name(dev)
        rec["peak_cuda_above_loaded_mb"] = (torch.cuda.max_memory_allocated(dev) - loaded) / 2**20
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--orders", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.threads, args.device)), flush=True)
        return
    for order in args.orders:
        cmd = [sys.executable, __file__, "--one", str(order), "--threads", str(args.threads),
               "--device", args.device]  # fmt: skip
        print(subprocess.run(cmd, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
