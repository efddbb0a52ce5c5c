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


SEQUENCE_MODELS = {
    "tanh": dict(input_to_hidden=True, memory_bias=True),
    "fully recurrent": dict(
        hidden_to_memory=True, memory_to_memory=True, input_to_hidden=True, memory_bias=True
    ),
    "memory→memory, tanh": dict(memory_to_memory=True, input_to_hidden=True),
    "relu, 2 channels": dict(hidden_cell="relu", channels=2),
    "linear": dict(hidden_cell="linear", input_to_hidden=True),
    "none": dict(hidden_cell=None),
    "none, input": dict(hidden_cell=None, input_to_hidden=True),
    "rnn": dict(hidden_cell=nn.RNNCell(16, 6, nonlinearity="relu")),
    "lstm": dict(hidden_cell=nn.LSTMCell(18, 6), input_to_hidden=True),
    "gru, 2 channels": dict(channels=2, hidden_cell=nn.GRUCell(32, 6)),
    "feed-forward": dict(
        hidden_cell=nn.Sequential(nn.Linear(18, 6), nn.Tanh()), input_to_hidden=True
    ),
}


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("name", list(SEQUENCE_MODELS))
def test_onnx_sequence_equals_pytorch(name, return_sequences, tmp_path):
    """The whole-sequence layer in onnxruntime (ONNX's RNN/LSTM/GRU operators), exported once,
    run at T = 1, 7 and 784 and two batch sizes, from a random state: outputs and final states
    equal PyTorch's (float32, ≤ 1e-5, RMS-floored relative)."""
    from torchlmu.deploy import export_onnx_sequence

    torch.manual_seed(1)
    kw = dict(SEQUENCE_MODELS[name])
    H = None if "hidden_cell" in kw and kw["hidden_cell"] is None else 6
    lmu = LMU(2, H, 16, 40.0, batch_first=True, return_sequences=return_sequences, **kw).eval()
    if name == "linear":  # a linear recurrence must contract, or 784 steps overflow
        with torch.no_grad():
            lmu.cell.hidden.hidden_kernel.mul_(0.2)
    side = export_onnx_sequence(lmu, tmp_path / "seq.onnx")
    assert side["return_sequences"] is return_sequences
    sess = ort.InferenceSession(str(tmp_path / "seq.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for T, B in ((1, 1), (7, 3), (784, 2)):
        x = torch.randn(B, T, 2)
        state = [torch.randn_like(s) * 0.3 for s in lmu.initial_state(B) if s is not None]
        got = sess.run(
            None, dict(zip(names, [x.numpy(), *(s.numpy() for s in state)], strict=True))
        )
        with torch.no_grad():
            y, st = lmu(x, type(lmu.initial_state(B))(*state))
        want = [y, *(s for s in st if s is not None)]
        check_equal([torch.from_numpy(g) for g in got], want, 1e-5, f"onnx sequence {name} T={T}")


def test_onnx_sequence_refuses_what_it_cannot_write(tmp_path):
    from torchlmu import ModeError, ValidationError
    from torchlmu.deploy import export_onnx_sequence

    with pytest.raises(ModeError, match="export_onnx_step"):
        lstm = nn.LSTMCell(8, 4)
        export_onnx_sequence(
            LMU(1, 4, 8, 10.0, hidden_cell=lstm, hidden_to_memory=True), tmp_path / "a.onnx"
        )
    with pytest.raises(ValidationError, match="one layer and one direction"):
        export_onnx_sequence(LMU(1, 4, 8, 10.0, num_layers=2), tmp_path / "b.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written
