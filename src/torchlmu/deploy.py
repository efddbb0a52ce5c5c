"""Deployment: an LMU as ONNX files that onnxruntime runs.

- :func:`export_onnx_step`: the streaming step of :class:`~torchlmu.LMUStepper` (for the Elman
  and memory-only cells a concatenation, one or two matmuls and the activation), through
  ``torch.onnx.export(..., dynamo=True)``: inputs ``x`` ``(B, I)`` and the state tensors,
  outputs ``y`` and the new state, the batch dynamic.
- :func:`export_onnx_sequence`: the whole-sequence layer, batch and length dynamic, written as
  ONNX's own recurrent operators: the memory is a linear ``RNN`` (activation ``Affine(1, 0)``,
  input weights B̄ ⊗ E, recurrence block-diagonal Ā), the hidden part an ``RNN``, ``LSTM`` or
  ``GRU`` fed [m_t, x_t] (gate rows reordered to ONNX's i, o, f, c and z, r, h), or a
  ``MatMul`` for a feed-forward ``nn.Linear`` (+ activation), or nothing; the paper's fully
  recurrent cell (``hidden_to_memory``/``memory_to_memory``, Elman hidden) as one ``Scan`` whose
  body is the stepper's step. (The fully recurrent cell with a torch-cell hidden part has
  no such form: export its step.)

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
        self.step = cell.stepper(fused=False)  # the CPU form: ONNX Runtime on a CPU runs it

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
            verbose=False,
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
    ``lengths``.
    """
    import onnx

    if not isinstance(module, LMU) or module.layers is not None:
        raise ValidationError(
            "module", "an LMU of one layer and one direction", type(module).__name__
        )
    cell = module.cell
    h = cell.hidden
    if not cell.parallelizable and not isinstance(h, ElmanHidden):
        raise ModeError(
            "export_onnx_sequence: a cell with hidden_to_memory or memory_to_memory and a "
            f"{type(h).__name__} hidden part is no ONNX operator; export its streaming step "
            "(export_onnx_step)"
        )
    if isinstance(h, PositionwiseHidden):
        _check_feedforward(h)
    g = _Graph()
    x = g.node("Transpose", ["x"], perm=[1, 0, 2]) if module.batch_first else "x"
    if not cell.parallelizable:
        Y, Y_last, states = _scan_cell(g, cell, x), "hidden_out", ["memory", "hidden"]
    else:
        M = _memory_rnn(g, cell, x)
        Z = g.node("Concat", [M, x], axis=2) if cell.input_to_hidden else M
        states = ["memory"]
        if isinstance(h, NoHidden):
            Y, Y_last = Z, None
        elif isinstance(h, PositionwiseHidden):
            Y = _feedforward(g, h, Z)
            Y_last = g.node("Gather", [Y, g.ints([-1])], ["hidden_out_"], axis=0)
            Y_last = g.node("Squeeze", [Y_last, g.ints([0])], ["hidden_out"])
            states.append("hidden")
        else:
            Y, n_states = _hidden_rnn(g, h, Z)
            Y_last = "hidden_out"
            states += ["hidden", "cell"][:n_states]
    if module.return_sequences:
        g.node("Transpose" if module.batch_first else "Identity", [Y], ["y"], **(
            {"perm": [1, 0, 2]} if module.batch_first else {}))  # fmt: skip
    elif Y_last is not None:
        g.node("Identity", [Y_last], ["y"])
    else:  # no hidden part: the last z
        last = g.node("Gather", [Y, g.ints([-1])])
        g.node("Squeeze", [last, g.ints([0])], ["y"])
    S, H, I = cell.memory.state_size, cell.hidden_size, cell.input_size
    sizes = {"memory": S, "hidden": H, "cell": H}
    T, B = ("B", "T") if module.batch_first else ("T", "B")
    outputs = {"y": [T, B, H] if module.return_sequences else ["B", H]}
    outputs |= {f"{n}_out": ["B", sizes[n]] for n in states}
    inputs = {"x": [T, B, I]} | {n: ["B", sizes[n]] for n in states}
    model = g.model(inputs, outputs, opset)
    onnx.checker.check_model(model)
    sidecar = _describe(cell, "torchlmu whole sequence")
    sidecar |= {
        "inputs": inputs,
        "outputs": outputs,
        "return_sequences": module.return_sequences,
        "dtype": "float32",
    }
    _write(Path(path), lambda f: onnx.save(model, f), sidecar)
    return sidecar


class _Graph:
    """Nodes and float32 constants of an ONNX graph being written."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs):
        from onnx import helper

        if outputs is None:
            self._n += 1
            outputs = [f"{op.lower()}_{self._n}"]
        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def const(self, name: str, array) -> str:
        from onnx import numpy_helper

        tensor = array.detach().double().cpu().numpy() if isinstance(array, Tensor) else array
        self.inits.append(numpy_helper.from_array(np.asarray(tensor, dtype=np.float32), name))
        return name

    def ints(self, values: list[int]) -> str:
        from onnx import numpy_helper

        self._n += 1
        name = f"ints_{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def model(self, inputs: dict, outputs: dict, opset: int):
        from onnx import TensorProto, helper

        info = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
        graph = helper.make_graph(
            self.nodes,
            "torchlmu_sequence",
            [info(n, s) for n, s in inputs.items()],
            [info(n, s) for n, s in outputs.items()],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 10)  # what onnxruntime reads
        return model


def _memory_rnn(g: _Graph, cell: LMUCell, x: str) -> str:
    """m_t = Ā m_{t−1} + B̄ (E x_t + b) as an ONNX RNN with the identity as activation (its
    input weights B̄ ⊗ E, recurrence block-diagonal Ā per channel); writes ``memory_out``."""
    mem = cell.memory
    C, d, S = mem.channels, mem.order, mem.state_size
    with torch.no_grad():
        Ad, Bd = (t.double() for t in mem.discretized64())
        E = mem.input_encoders.double()
        W = (E.unsqueeze(1) * Bd.reshape(1, d, 1)).reshape(S, -1)
        bias = mem.memory_bias.double() if mem.memory_bias is not None else torch.zeros(C).double()
        Wb = (bias.unsqueeze(1) * Bd).reshape(S)
        R = torch.block_diag(*([Ad] * C))
    h0 = g.node("Unsqueeze", ["memory", g.ints([0])])
    ins = [x, g.const("W_mem", W[None]), g.const("R_mem", R[None]),
           g.const("B_mem", torch.cat([Wb, torch.zeros(S).double()])[None]), "", h0]  # fmt: skip
    g.node("RNN", ins, ["M", "M_h"], hidden_size=S, activations=["Affine"],
           activation_alpha=[1.0], activation_beta=[0.0])  # fmt: skip
    g.node("Squeeze", ["M_h", g.ints([0])], ["memory_out"])
    return g.node("Squeeze", ["M", g.ints([1])], ["M_seq"])


def _hidden_rnn(g: _Graph, h, Z: str) -> tuple[str, int]:
    """An Elman or torch-cell hidden part as ONNX's RNN/LSTM/GRU on z_t; writes
    ``hidden_out`` (and ``cell_out``). Returns (the outputs (T, B, H), the state count)."""
    W, R, Wb, Rb, op, attrs, n_states = _recurrent_weights(h, h.hidden_size)
    ins = [Z, g.const("W_h", W[None]), g.const("R_h", R[None]),
           g.const("B_h", torch.cat([Wb, Rb])[None]), "", g.node("Unsqueeze", ["hidden", g.ints([0])])]  # fmt: skip
    outs = ["Yh_seq", "Yh_last"]
    if n_states == 2:
        ins.append(g.node("Unsqueeze", ["cell", g.ints([0])]))
        outs.append("Yc_last")
    g.node(op, ins, outs, hidden_size=h.hidden_size, **attrs)
    g.node("Squeeze", ["Yh_last", g.ints([0])], ["hidden_out"])
    if n_states == 2:
        g.node("Squeeze", ["Yc_last", g.ints([0])], ["cell_out"])
    return g.node("Squeeze", ["Yh_seq", g.ints([1])]), n_states


_ONNX_ACT = {nn.Tanh: "Tanh", nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Identity: None}


def _check_feedforward(h: PositionwiseHidden) -> None:
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


def _feedforward(g: _Graph, h: PositionwiseHidden, Z: str) -> str:
    layers = list(h.module) if isinstance(h.module, nn.Sequential) else [h.module]
    lin = layers[0]
    Y = g.node("MatMul", [Z, g.const("W_ff", lin.weight.T)])
    if lin.bias is not None:
        Y = g.node("Add", [Y, g.const("b_ff", lin.bias)])
    act = _ONNX_ACT[type(layers[1])] if len(layers) == 2 else None
    return g.node(act, [Y]) if act else Y


def _recurrent_weights(h, H: int):
    """(W, R, Wb, Rb, ONNX op, attributes, states) of a recurrent hidden part in float64, its
    gate rows in ONNX's order (LSTM i, o, f, c from torch's i, f, g, o; GRU z, r, h from
    torch's r, z, n)."""
    zeros = torch.zeros(H, dtype=torch.float64)
    with torch.no_grad():
        if isinstance(h, ElmanHidden):
            W_mem, W_x, b = h.input_weights()
            W = W_mem if W_x is None else torch.cat([W_mem, W_x], 1)
            act = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "linear": "Affine"}[
                h.activation
            ]
            attrs: dict = {"activations": [act]}
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
        rows = torch.cat([torch.arange(k * H, (k + 1) * H) for k in order])
        no_bias = torch.zeros(G * H, dtype=torch.float64)
        bih = c.bias_ih.double() if c.bias_ih is not None else no_bias
        bhh = c.bias_hh.double() if c.bias_hh is not None else no_bias
        W, R = c.weight_ih.double()[rows], c.weight_hh.double()[rows]
        if h.kind == "lstm":
            return W, R, bih[rows], bhh[rows], "LSTM", {}, 2
        if h.kind == "gru":
            return W, R, bih[rows], bhh[rows], "GRU", {"linear_before_reset": 1}, 1
        act = "Tanh" if h.kind == "rnn_tanh" else "Relu"
        return W, R, bih, bhh, "RNN", {"activations": [act]}, 1


def _scan_cell(g: _Graph, cell: LMUCell, x: str) -> str:
    """The fully recurrent Elman cell as one ONNX Scan: state (m, h), input x_t; the body is
    the stepper's step on z = [m, x, h]: m_t = z[:, :k] M_m + b_m, h_t = act(z M_h + b_h).
    Writes ``memory_out`` and ``hidden_out``; returns the outputs (T, B, H)."""
    from onnx import TensorProto, helper, numpy_helper

    stepper = cell.stepper(fused=False)  # M_m and M_h, whatever the cell's device
    S, H, I = cell.memory.state_size, cell.hidden_size, cell.input_size
    k = stepper.M_m.shape[0]
    act = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "linear": "Identity"}

    def affine(z: str, name: str, out: str) -> list:  # z M (+ b: the stepper's bias, if any)
        M, b = getattr(stepper, "M_" + name), getattr(stepper, "b_" + name)
        if b is None:
            return [helper.make_node("MatMul", [z, g.const(f"M_{name}_step", M)], [out])]
        return [
            helper.make_node("MatMul", [z, g.const(f"M_{name}_step", M)], [out + "_M"]),
            helper.make_node("Add", [out + "_M", g.const(f"b_{name}_step", b)], [out]),
        ]

    z_m, sliced, ints = "z", [], []
    if k < S + I + H:  # the memory does not read h: z's first k columns
        z_m = "z_m"
        bounds = {"k_start": 0, "k_end": k, "k_axis": 1}
        sliced = [helper.make_node("Slice", ["z", *bounds], [z_m])]
        ints = [numpy_helper.from_array(np.asarray([v], np.int64), n) for n, v in bounds.items()]
    body = helper.make_graph(
        [
            helper.make_node("Concat", ["m_in", "x_t", "h_in"], ["z"], axis=1),
            *sliced,
            *affine(z_m, "m", "m_out"),
            *affine("z", "h", "pre"),
            helper.make_node(act[cell.hidden.activation], ["pre"], ["h_out"]),
            helper.make_node("Identity", ["h_out"], ["y_t"]),
        ],
        "lmu_step",
        [
            helper.make_tensor_value_info("m_in", TensorProto.FLOAT, ["B", S]),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["B", H]),
            helper.make_tensor_value_info("x_t", TensorProto.FLOAT, ["B", I]),
        ],
        [
            helper.make_tensor_value_info("m_out", TensorProto.FLOAT, ["B", S]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["B", H]),
            helper.make_tensor_value_info("y_t", TensorProto.FLOAT, ["B", H]),
        ],
        ints,
    )
    g.node("Scan", ["memory", "hidden", x], ["memory_out", "hidden_out", "Y_scan"],
           num_scan_inputs=1, body=body)  # fmt: skip
    return "Y_scan"
