"""Training-step cost of candidate DeepLMU designs on psMNIST-shaped batches (issue 19, item 3).

One step = forward, cross-entropy, backward, Adam update, on a random batch (B, 784, 1) float32
(the cost does not depend on the pixel values). Median of ``--steps`` timed steps after
``--warmup``; one JSON line per (candidate, conv). Run with ``--threads 1`` on the shared machine.

    OMP_NUM_THREADS=1 python benchmarks/deep_step.py --threads 1 --out results/deep-psmnist/step_cost.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

from torchlmu.experiments.harness import provenance
from torchlmu.models import DeepLMU
from torchlmu.runtime import configure_cpu

CANDIDATES = {
    # name: (d_model, num_blocks, order, channels, pooling)
    "S": (64, 4, 64, 4, "last"),
    "S-mean": (64, 4, 64, 4, "mean"),
    "S3": (64, 3, 64, 4, "last"),
    "W2": (96, 2, 128, 8, "last"),
    "M": (128, 4, 64, 4, "last"),
    "L": (128, 6, 128, 4, "last"),
}


def time_step(model: nn.Module, batch: int, T: int, steps: int, warmup: int) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, T, 1, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    p.add_argument("--convs", nargs="*", default=["fft"])
    p.add_argument("--out", default=None, help="append JSON lines here")
    a = p.parse_args()
    configure_cpu(a.threads)
    T, n_train = 784, 50_000
    for name in a.candidates:
        D, N, d, C, pooling = CANDIDATES[name]
        for conv in a.convs:
            torch.manual_seed(0)
            model = DeepLMU(
                1, 10, d_model=D, num_blocks=N, order=d, theta=784.0, channels=C,
                dropout=0.1, batch_first=True, conv=conv, pooling=pooling,
            )  # fmt: skip
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            times = time_step(model, a.batch, T, a.steps, a.warmup)
            med = statistics.median(times)
            steps_per_epoch = -(-n_train // a.batch)
            row = {
                "candidate": name,
                "d_model": D,
                "num_blocks": N,
                "order": d,
                "channels": C,
                "pooling": pooling,
                "conv": conv,
                "params": params,
                "batch": a.batch,
                "step_seconds": times,
                "step_median_s": med,
                "epoch_estimate_s": med * steps_per_epoch,
                "threads": a.threads,
                # the machine is shared: its load while this ran (1, 5, 15 min averages)
                "load_average": os.getloadavg(),
                "provenance": provenance(a.threads),
            }
            print(
                f"{name} D={D} N={N} d={d} C={C} {pooling} {conv}: {params:,} params, "
                f"step {med:.3f} s (min {min(times):.3f}), epoch ≈ {med * steps_per_epoch / 60:.1f} min",
                flush=True,
            )
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
