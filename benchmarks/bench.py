"""torchlmu benchmark suite: one JSON line per (workload, implementation, mode, phase).

Workloads (the performance issue's table; median ms per batch, "train" = forward + loss + backward):
  W1  psMNIST model: B=100, T=784, input 1, order 256, θ=784, tanh hidden 212 with
      input→hidden, last output -> Linear(10)
  W2  memory only: B=16, T=10,000, order 64, θ=10,000, all states returned; training is the
      forward and the backward of a fixed output gradient (a layer benchmark: until session 11
      the backward of mean(y²), whose autograd passes over the 41 MB output were not the LMU's)
  W4  one streaming step, order 256 (the W1 model), batch 1 (µs per step, inference), through
      LMU.stepper() (until Core v2 through LMU.step, which then held the fused cache)
  W5  fully recurrent LMU (hidden→memory and memory→memory on), otherwise W1
  W6  one streaming step in onnxruntime beside the eager stepper (µs, batch 1, CPU): the memory
      alone (order 256) and the W4 cell (benchmarks/onnx_step.py)
and nn.LSTM of about the same parameter count on W1's data. ``matmul`` measures this machine's
float32 matmul peak (2048³) so every result can be read as a fraction of the physical limit.

Each measurement runs in its own subprocess so that its peak RSS is its own. Each applies the
training entry points' CPU settings (torchlmu.runtime.configure_cpu): the thread count, denormals
flushed to zero, and large freed tensors kept for reuse (--no-reuse-memory measures without).

    python benchmarks/bench.py                 # everything, 2 threads
    python benchmarks/bench.py --quick         # small sizes, a smoke test
    python benchmarks/bench.py --only W1 W4 --threads 1
    python benchmarks/bench.py --device cuda   # on a GPU: event-free timing with synchronize,
                                               # peak CUDA memory instead of RSS
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

SIZES = {
    "full": {
        "W1": dict(B=100, T=784, I=1, d=256, theta=784.0, H=212),
        "W2": dict(B=16, T=10_000, I=1, d=64, theta=10_000.0),
        "W4": dict(d=256, theta=784.0, H=212, steps=2000),
        "W5": dict(B=100, T=784, I=1, d=256, theta=784.0, H=212),
        "W6": dict(steps=2000),
    },
    "quick": {
        "W1": dict(B=8, T=64, I=1, d=32, theta=64.0, H=24),
        "W2": dict(B=4, T=500, I=1, d=16, theta=500.0),
        "W4": dict(d=32, theta=64.0, H=24, steps=200),
        "W5": dict(B=8, T=64, I=1, d=32, theta=64.0, H=24),
        "W6": dict(steps=100),
    },
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(workload: str, impl: str, mode: str, s: dict, device: str = "cpu"):
    """(model, make_input, flops_per_forward or None, has_classifier)."""
    from torchlmu import LMU, LegendreMemory

    if workload == "W2":
        mem = LegendreMemory(s["I"], s["d"], s["theta"], batch_first=True, mode=mode)
        x = torch.randn(s["B"], s["T"], s["I"])
        return mem.to(device), x.to(device), None
    if impl == "lstm":
        # nn.LSTM with about the LMU model's parameter count (W1: ~102k with the classifier)
        target = 102_000 if s["H"] == 212 else 4 * s["H"] * (s["H"] + 2) + s["H"] * s["d"]
        H = 1
        while 4 * (H + 1) * (s["I"] + H + 1) + 8 * (H + 1) + 10 * (H + 1) + 10 <= target:
            H += 1
        lstm = nn.LSTM(s["I"], H, batch_first=True)
        head = nn.Linear(H, 10)

        class LSTMModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm, self.head = lstm, head

            def forward(self, x):
                return self.head(self.lstm(x)[0][:, -1])

        flops = s["T"] * s["B"] * (2 * 4 * H * (H + s["I"]))
        return LSTMModel().to(device), torch.rand(s["B"], s["T"], s["I"], device=device), flops
    recurrent = workload == "W5"
    lmu = LMU(
        s["I"],
        s["H"],
        s["d"],
        s["theta"],
        input_to_hidden=True,
        hidden_to_memory=recurrent,
        memory_to_memory=recurrent,
        batch_first=True,
        return_sequences=False,
        mode=mode,
        init="psmnist",
    )
    head = nn.Linear(s["H"], 10)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lmu, self.head = lmu, head

        def forward(self, x):
            return self.head(self.lmu(x)[0])

    H, d = s["H"], s["d"]
    per_step = 2 * H * H  # the hidden recurrence (the floor of every mode)
    if recurrent or mode == "recurrent":
        per_step += 2 * d * d + 2 * d * H  # memory update Ā·m and W_m·m inside the step loop
    x = torch.rand(s["B"], s["T"], s["I"], device=device)
    return Model().to(device), x, s["T"] * s["B"] * per_step


def measure(
    workload: str,
    impl: str,
    mode: str,
    phase: str,
    size: str,
    repeats: int,
    threads: int,
    device: str = "cpu",
    reuse_memory: bool = True,
) -> dict:
    global _sync
    from torchlmu import recurrence
    from torchlmu.runtime import configure_cpu

    cuda = device.startswith("cuda")
    _sync = torch.cuda.synchronize if cuda else (lambda: None)
    # the training entry points' settings: threads, denormals flushed, large tensors reused
    cpu = configure_cpu(threads, reuse_memory=reuse_memory)
    torch.manual_seed(0)
    s = SIZES[size].get(workload, {})
    rec = {
        "workload": workload,
        "impl": impl,
        "mode": mode,
        "phase": phase,
        "size": size,
        "threads": threads,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "reuse_large_allocations": cpu["reuse_large_allocations"],
        "loadavg_1min": os.getloadavg()[0],  # other work on the machine while measuring
        # the fully recurrent scan's step loops as Triton kernels (CUDA; off: TORCHLMU_TRITON_SCAN=0)
        "triton_scan": recurrence.TRITON_SCAN,
        "triton_form": os.environ.get("TORCHLMU_TRITON_FORM"),  # None: the default form
        "triton_cols": os.environ.get("TORCHLMU_TRITON_COLS") or None,  # None: triton_scan.COLS
    }
    if workload == "matmul":  # this machine's float32 matmul peak
        n = (8192 if cuda else 2048) if size == "full" else 256
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        fn = lambda: a @ b  # noqa: E731
        flops = 2 * n**3
        times = _time(fn, repeats, warmup=3)
        rec.update(_stats(times), gflops=flops / (statistics.median(times) / 1e3) / 1e9)
        return rec
    if workload == "W6":  # the streaming step in onnxruntime or eager (mode = the model)
        from onnx_step import step_latency

        steps = s["steps"] if "steps" in s else 2000
        base = rss_mb()
        runs = step_latency(mode, impl, steps, repeats, threads)
        rec.update(
            {k.replace("_ms", "_us"): v for k, v in _stats(runs).items()},
            peak_rss_above_loaded_mb=peak_rss_mb() - base,
        )
        return rec
    if workload == "W4":
        from torchlmu import LMU

        lmu = LMU(1, s["H"], s["d"], s["theta"], input_to_hidden=True, init="psmnist")
        lmu.to(device)
        x = torch.rand(s["steps"], 1, 1, device=device)
        state = lmu.initial_state(1)
        step = lmu.stepper()  # the streaming module (a snapshot of the weights, fused matrix)
        base = rss_mb()
        with torch.no_grad():
            for t in range(50):
                _, state = step(x[t], state)
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for t in range(s["steps"]):
                    _, state = step(x[t], state)
                _sync()
                runs.append((time.perf_counter() - t0) / s["steps"] * 1e6)
        rec.update(
            {k.replace("_ms", "_us"): v for k, v in _stats(runs).items()},
            peak_rss_above_loaded_mb=peak_rss_mb() - base,
        )
        return rec
    model, x, flops = build(workload, impl, mode, s, device)
    base = rss_mb()
    if phase == "train":
        y = torch.randint(0, 10, (x.shape[0],), device=device)
        if workload == "W2":  # the states' gradient, fixed: the layer's backward alone
            with torch.no_grad():
                dy = torch.randn_like(model(x)[0])

        def fn():
            model.zero_grad(set_to_none=True)
            out = model(x)
            if workload == "W2":
                out[0].backward(dy)
            else:
                nn.functional.cross_entropy(out, y).backward()

        mult = 3
    else:

        def fn():
            with torch.no_grad():
                return model(x)

        mult = 1
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        loaded = torch.cuda.memory_allocated(device)
    times = _time(fn, repeats, warmup=2)
    rec.update(_stats(times), peak_rss_above_loaded_mb=peak_rss_mb() - base)
    if cuda:
        rec["peak_cuda_above_loaded_mb"] = (
            torch.cuda.max_memory_allocated(device) - loaded
        ) / 2**20
    if workload == "W2":
        rec["returned_tensor_mb"] = x.shape[0] * x.shape[1] * s["d"] * 4 / 2**20
    if flops:
        rec["gflops_counted"] = mult * flops / 1e9
        rec["gflops_per_s"] = mult * flops / (statistics.median(times) / 1e3) / 1e9
    return rec


_sync = lambda: None  # noqa: E731  (torch.cuda.synchronize when timing a GPU)


def _time(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()  # a GPU works asynchronously: wait for it before reading the clock
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _stats(times: list[float]) -> dict:
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": len(times),
    }


PLAN = [
    ("matmul", "torch", "-", "-"),
    *[("W1", "torchlmu", m, p) for m in ("parallel", "recurrent") for p in ("train", "infer")],
    *[("W1", "lstm", "-", p) for p in ("train", "infer")],
    *[("W2", "torchlmu", m, p) for m in ("parallel", "recurrent") for p in ("train", "infer")],
    ("W4", "torchlmu", "step", "infer"),
    *[("W5", "torchlmu", "recurrent", p) for p in ("train", "infer")],
    *[
        ("W6", rt, model, "infer")
        for model in ("memory", "cell")
        for rt in ("onnxruntime", "eager")
    ],
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, seconds)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs after warm-up (>= 5)")
    ap.add_argument("--only", nargs="*", help="workloads to run, e.g. W1 W4")
    ap.add_argument(
        "--skip-recurrent-w2", action="store_true", help="skip W2 in the (slow) recurrent mode"
    )
    ap.add_argument(
        "--no-reuse-memory",
        action="store_true",
        help="leave glibc's malloc as it is (large tensors mmapped and page-faulted in at every "
        "allocation) instead of torchlmu.runtime.reuse_large_allocations",
    )
    ap.add_argument(
        "--one", nargs=4, metavar=("WORKLOAD", "IMPL", "MODE", "PHASE"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    size = "quick" if args.quick else "full"
    if args.one:
        print(
            json.dumps(
                measure(
                    *args.one,
                    size=size,
                    repeats=args.repeats,
                    threads=args.threads,
                    device=args.device,
                    reuse_memory=not args.no_reuse_memory,
                )
            ),
            flush=True,
        )
        return
    for w, impl, mode, phase in PLAN:
        if args.only and w not in args.only:
            continue
        if args.skip_recurrent_w2 and w == "W2" and mode == "recurrent":
            continue
        if w == "W6" and args.device != "cpu":  # onnxruntime's CPU provider
            continue
        cmd = [
            sys.executable,
            __file__,
            "--one",
            w,
            impl,
            mode,
            phase,
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
            "--device",
            args.device,
        ]
        if args.quick:
            cmd.append("--quick")
        if args.no_reuse_memory:
            cmd.append("--no-reuse-memory")
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(
                json.dumps(
                    {
                        "workload": w,
                        "impl": impl,
                        "mode": mode,
                        "phase": phase,
                        "error": p.stderr.strip().splitlines()[-1:],
                    }
                ),
                flush=True,
            )
        else:
            print(p.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
