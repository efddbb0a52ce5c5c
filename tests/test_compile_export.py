"""torch.compile (fullgraph, dynamic lengths without recompiling) and torch.export (dynamic T;
the one-step streaming module) on freshly built modules, against eager.

In float64, to 1e-10 (compiled and exported graphs may sum in another order, and export traces
the FFT form of the blocked memory); the streaming export also in float32, to 1e-6.
"""

from __future__ import annotations

import pytest
import torch
from conftest import COMPILE_TOL, TOL, check_equal
from torch import nn
from torch._dynamo.utils import counters

from torchlmu import LMU, LegendreMemory, LMUState

MEMORY = {
    "memory": {},
    "memory, trainable theta": {"trainable_theta": True},
    "memory, last state": {"return_sequences": False},
    "memory, fft": {"conv": "fft"},
}
LAYERS = {
    "tanh": {},
    "tanh, trainable theta": {"trainable_theta": True},
    "tanh, fully recurrent": {"hidden_to_memory": True, "memory_to_memory": True},
    "tanh, last output": {"return_sequences": False},
    "relu, fft": {"hidden_cell": "relu", "conv": "fft"},
    "rnn": {"hidden_cell": "rnn"},
    "lstm": {"hidden_cell": "lstm"},
    "gru": {"hidden_cell": "gru"},
    "feed-forward": {"hidden_cell": "ff"},
    "none": {"hidden_cell": None},
}


F64 = torch.float64


def build(name: str, dtype=F64) -> nn.Module:
    torch.manual_seed(0)
    if name in MEMORY:
        return LegendreMemory(2, 8, 16.0, dtype=dtype, **MEMORY[name])
    kw = dict(LAYERS[name])
    hidden = kw.pop("hidden_cell", "tanh")
    H = 5
    cells = {
        "rnn": lambda: nn.RNNCell(8, H),
        "lstm": lambda: nn.LSTMCell(8, H),
        "gru": lambda: nn.GRUCell(8, H),
        "ff": lambda: nn.Sequential(nn.Linear(8, H), nn.Tanh()),
    }
    hidden = cells[hidden]().to(dtype) if hidden in cells else hidden
    return LMU(2, None if hidden is None else H, 8, 16.0, hidden_cell=hidden, dtype=dtype, **kw)


def outputs(model, x):
    y, st = model(x)
    return [y, *([st] if isinstance(st, torch.Tensor) else [s for s in st if s is not None])]


def run(model, x):
    """Outputs, and the gradients of a fixed projection of them (input and parameters)."""
    x = x.clone().requires_grad_()
    outs = outputs(model, x)
    loss = sum(
        (o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)).sum() for o in outs
    )
    grads = torch.autograd.grad(loss, [x, *model.parameters()])
    return [o.detach() for o in outs], list(grads)


def check_compiled(name: str, backend: str) -> None:
    """Compiled (fullgraph, dynamic) equals eager, forward and backward, at two lengths, and
    the second length does not recompile."""
    torch._dynamo.reset()
    model = build(name)
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=backend)
    for T in (20, 23):
        x = torch.randn(T, 3, 2, dtype=F64)
        if T == 23:
            before = counters["stats"]["unique_graphs"]
        got, want = run(compiled, x), run(model, x)
        check_equal(got[0] + got[1], want[0] + want[1], TOL[F64], f"{backend} {name} T={T}")
    assert counters["stats"]["unique_graphs"] == before, f"{name}: recompiled for a new length"


@pytest.mark.parametrize("name", [*MEMORY, *LAYERS])
def test_compile_fullgraph_dynamic_without_recompiling(name):
    """Backend "eager": dynamo's capture of every module (no graph break, no recompilation)."""
    check_compiled(name, "eager")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["memory, trainable theta", "tanh", "tanh, fully recurrent", "lstm"]
)
def test_compile_inductor(name):
    """Backend "inductor" (generated kernels around the custom operators), small sizes."""
    check_compiled(name, "inductor")


class Whole(nn.Module):
    """x -> (y, states...) with None states dropped (an exported program's outputs are tensors)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(outputs(self.model, x))


@pytest.mark.parametrize("name", [*MEMORY, *LAYERS])
def test_export_whole_sequence_with_dynamic_length(name):
    model = build(name).eval()
    T = torch.export.Dim("T", min=2, max=1_000_000)
    x20 = torch.randn(20, 3, 2, dtype=F64)
    ep = torch.export.export(Whole(model), (x20,), dynamic_shapes=({0: T},))
    for length in (2, 7, 20, 161):
        x = torch.randn(length, 3, 2, dtype=F64)
        with torch.no_grad():
            check_equal(
                list(ep.module()(x)), outputs(model, x), TOL[F64], f"export {name} {length}"
            )


class Streaming(nn.Module):
    """(x_t, memory, hidden[, cell]) -> (y_t, memory, hidden[, cell]): the stepper with its
    state as plain tensors."""

    def __init__(self, lmu, fused=None):
        super().__init__()
        self.step = lmu.stepper(fused)

    def forward(self, x, *state):
        y, st = self.step(x, LMUState(*state))
        return (y, *(s for s in st if s is not None))


@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "name", ["tanh", "tanh, fused step", "tanh, fully recurrent", "lstm", "gru", "none"]
)
def test_export_streaming_step(name, dtype):
    """The one-step streaming module exports (state in, state out, any batch) and, stepped
    through a sequence, equals the eager forward of the whole sequence (the Elman step in both
    of its forms)."""
    lmu = build(name.replace(", fused step", ""), dtype).eval()
    st0 = [s for s in lmu.initial_state(3) if s is not None]
    B = torch.export.Dim("B")
    ep = torch.export.export(
        Streaming(lmu, fused=True if "fused" in name else None),
        (torch.randn(3, 2, dtype=dtype), *st0),
        dynamic_shapes=({0: B}, tuple({0: B} for _ in st0)),
    )
    x = torch.randn(30, 4, 2, dtype=dtype)
    state = [s for s in lmu.initial_state(4) if s is not None]
    ys = []
    for t in range(30):
        y, *state = ep.module()(x[t], *state)
        ys.append(y)
    with torch.no_grad():
        y_full, st_full = lmu(x)
    tol = TOL[F64] if dtype == F64 else COMPILE_TOL
    check_equal([torch.stack(ys)], [y_full], tol, f"streamed export {name}")
    check_equal(state, [s for s in st_full if s is not None], tol, f"state {name}")
