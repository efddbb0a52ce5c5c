"""Streaming-step latency: onnxruntime (the file of torchlmu.deploy.export_onnx_step) beside
eager PyTorch (LMU.stepper()), batch 1, one JSON line per (model, runtime). bench.py's W6 runs
the same measurement.

    python benchmarks/onnx_step.py --threads 1

Models: "memory" (order 256, θ 784, no hidden part: one (257 × 256) product per step) and
"cell" (the W1/W4 psMNIST cell: order 256, 212 tanh units, input→hidden).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

MODELS = ("memory", "cell")
RUNTIMES = ("onnxruntime", "eager")


def build(model: str, d: int = 256, theta: float = 784.0, H: int = 212):
    from torchlmu import LMU

    if model == "memory":
        return LMU(1, None, d, theta, hidden_cell=None).eval()
    return LMU(1, H, d, theta, input_to_hidden=True, init="psmnist").eval()


def step_latency(model: str, runtime: str, steps: int, repeats: int, threads: int) -> list[float]:
    """Microseconds per step of ``repeats`` timed runs of ``steps`` steps (after a warm-up)."""
    lmu = build(model)
    x = torch.rand(steps, 1, 1)
    if runtime == "onnxruntime":
        import onnxruntime as ort

        from torchlmu.deploy import export_onnx_step

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.onnx"
            export_onnx_step(lmu, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        xs = [x[t].numpy() for t in range(steps)]
        init = [s.numpy() for s in lmu.initial_state(1) if s is not None]

        def run():
            state = init
            for t in range(steps):
                _, *state = sess.run(None, dict(zip(names, [xs[t], *state], strict=True)))
    else:
        step = lmu.stepper()

        def run():
            state = lmu.initial_state(1)
            with torch.no_grad():
                for t in range(steps):
                    _, state = step(x[t], state)

    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) / steps * 1e6)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    import onnxruntime as ort

    from torchlmu.runtime import configure_cpu

    configure_cpu(args.threads)
    for model in MODELS:
        for runtime in RUNTIMES:
            times = step_latency(model, runtime, args.steps, args.repeats, args.threads)
            print(json.dumps({
                "model": model, "runtime": runtime, "threads": args.threads, "batch": 1,
                "median_us": statistics.median(times), "min_us": min(times), "max_us": max(times),
                "torch": torch.__version__, "onnxruntime": ort.__version__,
            }))  # fmt: skip


if __name__ == "__main__":
    main()
