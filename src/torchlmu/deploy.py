"""Deployment: an LMU's streaming step as an ONNX file that onnxruntime runs.

The step of :class:`~torchlmu.LMUStepper` (for the Elman and memory-only cells one matmul and the
activation) exports with ``torch.onnx.export(..., dynamo=True)``: inputs ``x`` ``(B, I)`` and
the state tensors, outputs ``y`` and the new state, the batch dynamic. A JSON sidecar beside the
file says what the state holds (order, θ, dt, method, channels, the state's names and shapes).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .lmu import LMU, LMUCell, LMUState

__all__ = ["export_onnx_step"]


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
    mem = cell.memory
    sidecar = {
        "format": "torchlmu streaming step",
        "inputs": {"x": ["batch", cell.input_size]}
        | {n: ["batch", s.shape[1]] for n, s in zip(names, state, strict=True)},
        "outputs": {"y": ["batch", cell.hidden_size]}
        | {f"{n}_out": ["batch", s.shape[1]] for n, s in zip(names, state, strict=True)},
        "state_layout": "memory: channel-major flat (index c·order + i); feed each *_out back",
        "dtype": str(p.dtype).removeprefix("torch."),
        "order": mem.order,
        "channels": mem.channels,
        "theta": mem.theta,
        "dt": mem.dt,
        "method": mem.method,
        "hidden": type(cell.hidden).__name__,
        "torch": torch.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in (
        (path, lambda f: program.save(f)),
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
    return sidecar
