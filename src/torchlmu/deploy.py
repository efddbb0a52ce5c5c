"""Deployment: an LMU as ONNX files that onnxruntime runs.

- :func:`export_onnx_step`: the streaming step of :class:`~torchlmu.LMUStepper` (for the Elman
  and memory-only cells one matmul and the activation), through
  ``torch.onnx.export(..., dynamo=True)``: inputs ``x`` ``(B, I)`` and the state tensors,
  outputs ``y`` and the new state, the batch dynamic.
- :func:`export_onnx_sequence`: the whole-sequence layer, batch and length dynamic, written as
  ONNX's own recurrent operators: the memory is a linear ``RNN`` (activation ``Affine(1, 0)``,
  input weights B̄ ⊗ E, recurrence block-diagonal Ā), the hidden part an ``RNN``, ``LSTM`` or
  ``GRU`` fed [m_t, x_t] (gate rows reordered to ONNX's i, o, f, c and z, r, h), or a
  ``MatMul`` for a feed-forward ``nn.Linear`` (+ activation), or nothing. (The cell with
  ``hidden_to_memory``/``memory_to_memory`` is not one of these operators: export its step.)

A JSON sidecar beside each file says what the state holds (order, θ, dt, method, channels, the
inputs' and outputs' names and shapes).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .exceptions import ModeError, ValidationError
from .hidden import ElmanHidden, NoHidden, PositionwiseHidden, TorchCellHidden
from .lmu import LMU, LMUCell, LMUState

__all__ = ["export_onnx_sequence", "export_onnx_step"]


class _StepGraph(nn.Module):
    """(x, *state tensors) -> (y, *new state tensors): the stepper with plain tensor I/O."""

    def __init__(self, cell: LMUCell) -> None:
        super().__init__()
        self.step = cell.stepper()

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        y, st = self.step(x, LMUState(*state))
        return (y, *(s for s in st if s is not None))


def export_onnx_step(module: LMU | LMUCell, path: str | os.PathLike, batch: int = 1) -> dict:
    """Write ``module``'s streaming step to ``path`` (ONNX) and ``path`` + ``.json`` (the sidecar).

    Args:
        module: an :class:`~torchlmu.LMU` or :class:`~torchlmu.LMUCell` (its current weights are
            exported: a snapshot).
        path: the ``.onnx`` file to write (atomically: a finished file is never half-written).
        batch: the example batch for tracing (the exported batch dimension is dynamic).
    Returns:
        The sidecar's content.
    """
    cell = module.cell if isinstance(module, LMU) else module
    if not isinstance(cell, LMUCell):
        raise TypeError(f"module: expected an LMU or LMUCell, received {type(module).__name__}")
    path = Path(path)
    graph = _StepGraph(cell).eval()
    p = cell.memory.input_encoders
    state = [s for s in cell.initial_state(batch) if s is not None]
    names = ["memory", "hidden", "cell"][: len(state)]
    x = torch.zeros(batch, cell.input_size, dtype=p.dtype, device=p.device)
    B = torch.export.Dim("batch")
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter's note that the state's batch axes share the one name "batch"
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        program = torch.onnx.export(
            graph,
            (x, *state),
            dynamo=True,
            input_names=["x", *names],
            output_names=["y", *(f"{n}_out" for n in names)],
            dynamic_shapes=({0: B}, tuple({0: B} for _ in state)),
        )
    sidecar = _describe(cell, "torchlmu streaming step")
    sidecar |= {
        "inputs": {"x": ["batch", cell.input_size]}
        | {n: ["batch", s.shape[1]] for n, s in zip(names, state, strict=True)},
        "outputs": {"y": ["batch", cell.hidden_size]}
        | {f"{n}_out": ["batch", s.shape[1]] for n, s in zip(names, state, strict=True)},
        "dtype": str(p.dtype).removeprefix("torch."),
    }
    _write(path, program.save, sidecar)
    return sidecar


def _describe(cell: LMUCell, kind: str) -> dict:
    mem = cell.memory
    return {
        "format": kind,
        "state_layout": "memory: channel-major flat (index c·order + i); feed each *_out back",
        "order": mem.order,
        "channels": mem.channels,
        "theta": mem.theta,
        "dt": mem.dt,
        "method": mem.method,
        "hidden": type(cell.hidden).__name__,
        "torch": torch.__version__,
    }


def _write(path: Path, save, sidecar: dict) -> None:
    """The model file (by ``save(filename)``) and its sidecar, each atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in (
        (path, save),
        (
            path.with_name(path.name + ".json"),
            lambda f: Path(f).write_text(json.dumps(sidecar, indent=2)),
        ),
    ):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def export_onnx_sequence(module: LMU, path: str | os.PathLike, opset: int = 17) -> dict:
    """Write the whole-sequence layer ``module`` to ``path`` (ONNX, float32, batch and length
    dynamic) and ``path`` + ``.json``; see the module docstring for the operators.

    Inputs: ``x`` (``(B, T, I)`` with ``batch_first``, else ``(T, B, I)``) and the initial state
    (``memory`` ``(B, C·d)``, ``hidden`` and ``cell`` ``(B, H)`` as the hidden part has them).
    Outputs: ``y`` (every step, or the last with ``return_sequences=False``) and the final
    state as ``memory_out``, ``hidden_out``, ``cell_out``. One layer, one direction, no
    ``lengths`` (pad nothing, or run the step).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(module, LMU) or module.layers is not None:
        raise ValidationError(
            "module", "an LMU of one layer and one direction", type(module).__name__
        )
    cell = module.cell
    if not cell.parallelizable:
        raise ModeError(
            "export_onnx_sequence: the cell with hidden_to_memory or memory_to_memory is no "
            "ONNX recurrent operator; export its streaming step (export_onnx_step)"
        )
    mem, h = cell.memory, cell.hidden
    C, d, I, S = mem.channels, mem.order, cell.input_size, mem.state_size
    f32 = lambda a: np.ascontiguousarray(a.detach().double().cpu().numpy(), dtype=np.float32)  # noqa: E731
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(op, inputs, outputs, **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    axes0, axes1 = const_axes(inits, "axes0", [0]), const_axes(inits, "axes1", [1])
    x = node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]) if module.batch_first else "x"
    # the memory: m_t = Ā m_{t−1} + B̄ (E x_t + b), an RNN with the identity as activation
    with torch.no_grad():
        Ad, Bd = (t.double() for t in mem.discretized64())
        E = mem.input_encoders.double()
        W_mem = (E.unsqueeze(1) * Bd.reshape(1, d, 1)).reshape(S, I)
        R_mem = torch.block_diag(*([Ad] * C))
        b_u = (
            mem.memory_bias.double()
            if mem.memory_bias is not None
            else torch.zeros(C, dtype=torch.float64)
        )
        Wb = (b_u.unsqueeze(1) * Bd).reshape(S)
    h0_m = node("Unsqueeze", ["memory", axes0], ["memory_h0"])
    node(
        "RNN",
        [x, const("W_mem", f32(W_mem)[None]), const("R_mem", f32(R_mem)[None]),
         const("B_mem", np.concatenate([f32(Wb), np.zeros(S, np.float32)])[None]), "", h0_m],
        ["M", "M_h"], hidden_size=S, activations=["Affine"], activation_alpha=[1.0],
        activation_beta=[0.0],
    )  # fmt: skip
    M = node("Squeeze", ["M", axes1], ["M_seq"])
    node("Squeeze", ["M_h", axes0], ["memory_out"])
    Z = node("Concat", [M, x], ["Z"], axis=2) if cell.input_to_hidden else M
    Zin = S + (I if cell.input_to_hidden else 0)
    states, outputs = ["memory"], ["memory_out"]
    H = cell.hidden_size
    if isinstance(h, NoHidden):
        Y, Y_last = Z, None
    elif isinstance(h, PositionwiseHidden):
        layers = list(h.module) if isinstance(h.module, nn.Sequential) else [h.module]
        if (
            not isinstance(layers[0], nn.Linear)
            or len(layers) > 2
            or (len(layers) == 2 and type(layers[1]) not in _ONNX_ACT)
        ):
            raise ValidationError(
                "hidden_cell",
                "nn.Linear or nn.Sequential(nn.Linear, activation) to export",
                repr(h.module),
            )
        lin = layers[0]
        Y = node("MatMul", [Z, const("W_ff", f32(lin.weight).T)], ["Y_mm"])
        if lin.bias is not None:
            Y = node("Add", [Y, const("b_ff", f32(lin.bias))], ["Y_b"])
        if len(layers) == 2 and _ONNX_ACT[type(layers[1])] is not None:
            Y = node(_ONNX_ACT[type(layers[1])], [Y], ["Y_act"])
        Y_last = None
    else:
        W, R, Wb, Rb, op, attrs, n_states = _recurrent_weights(h, Zin, H)
        states += ["hidden"] + (["cell"] if n_states == 2 else [])
        h0 = node("Unsqueeze", ["hidden", axes0], ["hidden_h0"])
        ins = [Z, const("W_h", f32(W)[None]), const("R_h", f32(R)[None]),
               const("B_h", np.concatenate([f32(Wb), f32(Rb)])[None]), "", h0]  # fmt: skip
        outs = ["Yh_seq", "Yh_last"]
        if n_states == 2:
            ins.append(node("Unsqueeze", ["cell", axes0], ["cell_h0"]))
            outs.append("Yc_last")
        node(op, ins, outs, hidden_size=H, **attrs)
        Y = node("Squeeze", ["Yh_seq", axes1], ["Y_hidden"])
        Y_last = node("Squeeze", ["Yh_last", axes0], ["hidden_out"])
        outputs.append("hidden_out")
        if n_states == 2:
            outputs.append(node("Squeeze", ["Yc_last", axes0], ["cell_out"]))
    if isinstance(h, PositionwiseHidden):  # its state is the last output
        states.append("hidden")
        last = node("Gather", [Y, const_axes(inits, "last", -1)], ["hidden_out"], axis=0)
        outputs.append(last)
        Y_last = last
    if module.return_sequences:
        y = (
            node("Transpose", [Y], ["y"], perm=[1, 0, 2])
            if module.batch_first
            else node("Identity", [Y], ["y"])
        )
    else:
        y = (
            Y_last
            if Y_last is not None
            else node("Gather", [Y, const_axes(inits, "last_z", -1)], ["y_last"], axis=0)
        )
        y = node("Identity", [y], ["y"])
    out_names = ["y", *outputs]
    T, B = ("B", "T") if module.batch_first else ("T", "B")
    sizes = {"memory": S, "hidden": H, "cell": H}
    y_shape = [T, B, H] if module.return_sequences else ["B", H]
    out_shapes = [y_shape, *(["B", sizes[n.removesuffix("_out")]] for n in outputs)]
    graph = helper.make_graph(
        nodes,
        "torchlmu_sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, B, I])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", sizes[n]]) for n in states],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
            for n, shape in zip(out_names, out_shapes, strict=True)
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    sidecar = _describe(cell, "torchlmu whole sequence")
    sidecar |= {
        "inputs": {"x": [T, B, I]} | {n: ["B", sizes[n]] for n in states},
        "outputs": out_names,
        "return_sequences": module.return_sequences,
        "dtype": "float32",
    }
    _write(Path(path), lambda f: onnx.save(model, f), sidecar)
    return sidecar


_ONNX_ACT = {nn.Tanh: "Tanh", nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Identity: None}


def const_axes(inits: list, name: str, value) -> str:
    from onnx import numpy_helper

    inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
    return name


def _recurrent_weights(h, Z: int, H: int):
    """(W, R, Wb, Rb, ONNX op, attributes, states) of a recurrent hidden part, its gate rows in
    ONNX's order (LSTM i, o, f, c from torch's i, f, g, o; GRU z, r, h from torch's r, z, n)."""
    zeros = torch.zeros(H, dtype=torch.float64)
    with torch.no_grad():
        if isinstance(h, ElmanHidden):
            W_mem, W_x, b = h.input_weights()
            W = W_mem if W_x is None else torch.cat([W_mem, W_x], 1)
            act = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "linear": "Affine"}[
                h.activation
            ]
            attrs = {"activations": [act]}
            if act == "Affine":
                attrs |= {"activation_alpha": [1.0], "activation_beta": [0.0]}
            Wb = b.double() if b is not None else zeros
            return W.double(), h.hidden_kernel.double(), Wb, zeros, "RNN", attrs, 1
        if not isinstance(h, TorchCellHidden):
            raise ValidationError(
                "hidden_cell", "a hidden part ONNX has an operator for", type(h).__name__
            )
        c = h.cell
        G = c.weight_ih.shape[0] // H
        order = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}.get(h.kind, [0])
        rows = torch.cat([torch.arange(g * H, (g + 1) * H) for g in order])
        bih = (
            c.bias_ih.double() if c.bias_ih is not None else torch.zeros(G * H, dtype=torch.float64)
        )
        bhh = (
            c.bias_hh.double() if c.bias_hh is not None else torch.zeros(G * H, dtype=torch.float64)
        )
        W, R = c.weight_ih.double()[rows], c.weight_hh.double()[rows]
        if h.kind == "lstm":
            return W, R, bih[rows], bhh[rows], "LSTM", {}, 2
        if h.kind == "gru":
            return W, R, bih[rows], bhh[rows], "GRU", {"linear_before_reset": 1}, 1
        act = "Tanh" if h.kind == "rnn_tanh" else "Relu"
        return W, R, bih, bhh, "RNN", {"activations": [act]}, 1
