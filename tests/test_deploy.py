"""The streaming step as ONNX, run by onnxruntime: parity with PyTorch over 1,000 steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import check_equal
from torch import nn

from torchlmu import LMU
from torchlmu.deploy import export_onnx_step

ort = pytest.importorskip("onnxruntime")

MODELS = {
    "tanh": dict(input_to_hidden=True),
    "fully recurrent": dict(hidden_to_memory=True, memory_to_memory=True, input_to_hidden=True),
    "none": dict(hidden_cell=None),
    "lstm": dict(hidden_cell=nn.LSTMCell(16, 6)),
    "gru, 2 channels": dict(channels=2, hidden_cell=nn.GRUCell(32, 6)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_step_equals_pytorch_over_1000_steps(name, tmp_path):
    """float32; the exported batch is dynamic (exported with 1, run with 3); ≤ 1e-5 (RMS-floored
    relative, conftest) for every output and the final state."""
    torch.manual_seed(0)
    kw = dict(MODELS[name])
    H = None if "hidden_cell" in kw and kw["hidden_cell"] is None else 6
    lmu = LMU(2, H, 16, 40.0, **kw).eval()
    side = export_onnx_step(lmu, tmp_path / "step.onnx")
    assert json.loads((tmp_path / "step.onnx.json").read_text()) == side
    assert side["order"] == 16 and side["theta"] == 40.0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(tmp_path / "step.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in sess.get_inputs()]
    assert names[0] == "x" and names[1] == "memory"
    x = torch.randn(1000, 3, 2)
    state = [s.numpy() for s in lmu.initial_state(3) if s is not None]
    ys = []
    for t in range(1000):
        y, *state = sess.run(None, dict(zip(names, [x[t].numpy(), *state], strict=True)))
        ys.append(y)
    with torch.no_grad():
        y_ref, st_ref = lmu(x)
    got = [torch.from_numpy(np.stack(ys)), *map(torch.from_numpy, state)]
    check_equal(got, [y_ref, *(s for s in st_ref if s is not None)], 1e-5, f"onnx {name}")
