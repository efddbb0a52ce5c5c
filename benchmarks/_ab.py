"""Side-by-side timing for the A/B scripts: variants alternate within one process, round after
round, so that each sees the same machine state (this machine's speed drifts within minutes)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def setup(doc: str, device: bool = False) -> argparse.Namespace:
    """The A/B scripts' command line (``--threads``, ``--rounds``, and ``--device`` where the
    script offers one), then the training entry points' CPU settings
    (``torchlmu.runtime.configure_cpu``) and a fixed seed."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    if device:
        ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    from torchlmu.runtime import configure_cpu

    configure_cpu(args.threads)
    torch.manual_seed(0)
    return args


def alternate(
    variants: dict[str, Callable[[], None]],
    step: Callable[[], None],
    rounds: int,
    runs: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Per variant, one time (ms) per round: each round switches every variant on in turn
    (its callable), runs ``step`` once to warm up, then ``runs`` times, and keeps the minimum.
    ``sync`` waits for the device before the clock is read (a GPU works asynchronously)."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, switch_on in variants.items():
            switch_on()
            step()
            sync()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                step()
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
            out[name].append(min(times))
    return out


def summary(runs: dict[str, list[float]], digits: int = 3) -> dict:
    """Each variant's per-round times and their median, for the JSON line."""
    return {
        "rounds_ms": {k: [round(v, digits) for v in r] for k, r in runs.items()},
        "median_ms": {k: round(statistics.median(r), digits) for k, r in runs.items()},
    }


def memory_steps(
    B: int = 16, T: int = 10_000, order: int = 64, theta: float = 10_000.0, device: str = "cpu"
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(training step, inference) of a ``LegendreMemory`` (scalar input, every state returned)
    on a (B, T, 1) input: bench.py's W2 with the defaults. Training backpropagates a fixed
    gradient of the states (the layer's backward alone)."""
    from torchlmu import LegendreMemory

    mem = LegendreMemory(1, order, theta, batch_first=True, device=device)
    x = torch.randn(B, T, 1, device=device)
    with torch.no_grad():
        dy = torch.randn_like(mem(x)[0])

    def train():
        mem.zero_grad(set_to_none=True)
        mem(x)[0].backward(dy)

    def infer():
        with torch.no_grad():
            mem(x)

    return train, infer


def psmnist_steps(recurrent: bool = False) -> tuple[Callable[[], None], Callable[[], None]]:
    """(training step, inference) of bench.py's W1 model (the psMNIST LMU, B 100, T 784, order
    256, hidden 212, a Linear(10) head), or W5's with ``recurrent`` (hidden→memory and
    memory→memory on)."""
    from torch import nn

    from torchlmu import LMU

    lmu = LMU(1, 212, 256, 784.0, input_to_hidden=True, hidden_to_memory=recurrent,
              memory_to_memory=recurrent, init="psmnist", batch_first=True,
              return_sequences=False)  # fmt: skip
    head = nn.Linear(212, 10)
    x, y = torch.rand(100, 784, 1), torch.randint(0, 10, (100,))

    def train():
        lmu.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(lmu(x)[0]), y).backward()

    def infer():
        with torch.no_grad():
            head(lmu(x)[0])

    return train, infer
