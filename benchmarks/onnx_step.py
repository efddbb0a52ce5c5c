"""Streaming-step latency: onnxruntime (the file of torchlmu.deploy.export_onnx_step) beside
eager PyTorch (LMU.stepper()), batch 1, one JSON line per (model, runtime).

    python benchmarks/onnx_step.py --threads 1

Models: "memory" (order 256, θ 784, no hidden part: one (257 × 256) product per step) and
"psmnist" (the W1/W4 cell: order 256, 212 tanh units, input→hidden).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    import onnxruntime as ort

    from torchlmu import LMU
    from torchlmu.deploy import export_onnx_step
    from torchlmu.runtime import configure_cpu

    configure_cpu(args.threads)
    models = {
        "memory": LMU(1, None, 256, 784.0, hidden_cell=None),
        "psmnist": LMU(1, 212, 256, 784.0, input_to_hidden=True, init="psmnist"),
    }
    x = torch.rand(args.steps, 1, 1)
    for name, lmu in models.items():
        lmu.eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.onnx"
            export_onnx_step(lmu, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        xs = [x[t].numpy() for t in range(args.steps)]
        init = [s.numpy() for s in lmu.initial_state(1) if s is not None]

        def run_ort(sess=sess, names=names, xs=xs, init=init):
            state = init
            for t in range(args.steps):
                _, *state = sess.run(None, dict(zip(names, [xs[t], *state], strict=True)))

        step = lmu.stepper()

        def run_eager(lmu=lmu, step=step):
            state = lmu.initial_state(1)
            with torch.no_grad():
                for t in range(args.steps):
                    _, state = step(x[t], state)

        for runtime, fn in (("onnxruntime", run_ort), ("eager", run_eager)):
            fn()  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) / args.steps * 1e6)
            print(
                json.dumps(
                    {
                        "model": name,
                        "runtime": runtime,
                        "threads": args.threads,
                        "batch": 1,
                        "median_us": statistics.median(times),
                        "min_us": min(times),
                        "max_us": max(times),
                        "torch": torch.__version__,
                        "onnxruntime": ort.__version__,
                    }
                )
            )


if __name__ == "__main__":
    main()
