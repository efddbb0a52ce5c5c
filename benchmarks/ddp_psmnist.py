"""The psMNIST paper model's training step: one process with N threads against N processes
with one thread each (distributed data parallel, gloo), at the same global batch of 100.

The fully recurrent cell has no parallel form: every step is a few (B × 256)·(256 × 256)-sized
matmuls, which two threads split poorly. Two processes each take half the batch instead and meet
once per step to average the gradient (102k numbers). One JSON line per configuration:

    python benchmarks/ddp_psmnist.py              # 1 process x 2 threads, then 2 processes x 1
    python benchmarks/ddp_psmnist.py --quick      # a small model, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch
from torch import nn


def worker(args) -> None:
    from torchlmu.experiments import distributed
    from torchlmu.experiments.psmnist import Config, PaperModel
    from torchlmu.runtime import configure_cpu

    configure_cpu(args.threads)
    distributed.init_from_env()
    W, r = distributed.world(), distributed.rank()
    cfg = Config()
    T = 784
    if args.quick:
        cfg, T = replace(cfg, hidden=24, order=32, theta=64.0), 64
    torch.manual_seed(0)
    model = PaperModel(cfg)
    train = model
    if W > 1:
        train = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, T, 1)
    y = torch.randint(0, 10, (args.batch,))
    part = distributed.shard(args.batch)
    xs, ys = x[part], y[part]

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(train(xs), ys).backward()
        opt.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(args.repeats):
        distributed.barrier()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    if r == 0:
        print(
            json.dumps(
                {
                    "workload": "psMNIST paper model train step (Adam included)",
                    "size": "quick" if args.quick else "full",
                    "global_batch": args.batch,
                    "processes": W,
                    "threads_per_process": args.threads,
                    "torch": torch.__version__,
                    "loadavg_1min": os.getloadavg()[0],
                    "median_ms": statistics.median(times),
                    "min_ms": min(times),
                    "max_ms": max(times),
                    "runs": len(times),
                    "epoch_minutes_50k": statistics.median(times) * 500 / 60e3,
                }
            ),
            flush=True,
        )
    distributed.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    common = ["--batch", str(args.batch), "--repeats", str(args.repeats)]
    common += ["--quick"] if args.quick else []
    env = dict(os.environ)
    if os.path.exists("/sys/class/net/lo"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    subprocess.run(
        [sys.executable, __file__, "--worker", "--threads", str(args.cores), *common],
        check=True,
        env=env,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={args.cores}",
            "--nnodes=1",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            __file__,
            "--worker",
            "--threads",
            "1",
            *common,
        ],
        check=True,
        env=dict(env, OMP_NUM_THREADS="1"),
    )


if __name__ == "__main__":
    main()
