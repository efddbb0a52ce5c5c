"""Streaming and deployment: step(), the fused stepper, torch.export and ONNX."""

import tempfile
from pathlib import Path

import numpy as np
import torch

from torchlmu import LMU
from torchlmu.deploy import export_onnx_sequence, export_onnx_step

torch.manual_seed(0)
lmu = LMU(1, 16, order=32, theta=50.0, input_to_hidden=True).eval()
x = torch.randn(60, 2, 1)  # (T, B, I)
with torch.no_grad():
    y, final = lmu(x)

# 1. step(): the module's own step, with its input checks (any hidden type, stacks too).
st = None
with torch.no_grad():
    for t in range(60):
        y_t, st = lmu.step(x[t], st)
assert torch.allclose(y_t, y[-1], atol=1e-5)

# 2. stepper(): a snapshot whose step is one matmul and the activation (microseconds).
stepper = lmu.stepper()
with torch.no_grad():
    st = None
    for t in range(60):
        y_t, st = stepper(x[t], st)
assert torch.allclose(y_t, y[-1], atol=1e-5)

# 3. torch.export of the whole layer (torch.compile(lmu, fullgraph=True) works the same way).
program = torch.export.export(lmu, (x,))
assert torch.allclose(program.module()(x)[0], y, atol=1e-5)

# 4. ONNX: the streaming step (state in, state out) and the whole sequence.
import onnxruntime as ort  # noqa: E402  (the "deploy" extra and onnxruntime)

with tempfile.TemporaryDirectory() as tmp:
    step_path = Path(tmp, "lmu_step.onnx")
    sidecar = export_onnx_step(lmu, step_path)  # also writes lmu_step.onnx.json
    print("sidecar:", sorted(sidecar))
    sess = ort.InferenceSession(str(step_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    zeros = {"memory": np.zeros((2, 32), np.float32), "hidden": np.zeros((2, 16), np.float32)}
    state = {n: zeros[n] for n in names[1:]}  # the initial state: (B, C·d) and (B, H)
    for t in range(60):
        out = sess.run(None, {"x": x[t].numpy(), **state})
        state = dict(zip(names[1:], out[1:], strict=True))
    assert np.allclose(out[0], y[-1].numpy(), atol=1e-4)

    seq_path = Path(tmp, "lmu_seq.onnx")
    export_onnx_sequence(lmu, seq_path)
    sess = ort.InferenceSession(str(seq_path), providers=["CPUExecutionProvider"])
    ys = sess.run(None, {"x": x.numpy(), **zeros})[0]  # x (T, B, I) and the initial state
    assert np.allclose(ys, y.numpy(), atol=1e-4)
print("step(), stepper(), torch.export and ONNX agree with forward()")
