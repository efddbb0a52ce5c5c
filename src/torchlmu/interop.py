"""Bring trained keras-lmu models over: :func:`from_keras` reads a ``.keras`` file (a zip of
``config.json`` and ``model.weights.h5``) with h5py, no TensorFlow needed, and builds the equal
:class:`~torchlmu.LMU`.

The map, found by running keras-lmu 0.9 as a black box (its code is under a proprietary
licence and none of it is used here) and checked against its outputs in the tests:

=====================================  ==================================================
keras-lmu                              torchlmu
=====================================  ==================================================
``memory_d``                           ``channels``
``order``, ``theta``                   ``order``, ``theta``
``trainable_theta`` (stores θ⁻¹)       ``trainable_theta`` (stores log θ = −log θ⁻¹)
``discretizer="zoh"/"euler"``          ``method="zoh"/"euler"``
``hidden_to_memory``, …                the same names
``kernel`` (rows x, then h)            ``input_encoders`` (and ``hidden_encoders``), transposed
``recurrent_kernel``                   ``memory_encoders``, transposed
``use_bias`` (a bias on u)             ``memory_bias``
``kernel_initializer=None``            identity input encoders (no kernel is saved)
``SimpleRNNCell(units, activation)``   ``hidden_cell=activation`` (the Elman cell)
``LSTMCell`` (gates i, f, c, o)        ``nn.LSTMCell`` (i, f, g, o; its bias as ``bias_ih``)
``GRUCell`` (z, r, h; reset_after)     ``nn.GRUCell`` (r, z, n): gate columns reordered
``Dense(units, activation)``           ``nn.Sequential(nn.Linear, activation)``
``None``                               ``hidden_cell=None``
``return_sequences``                   ``return_sequences`` (``batch_first=True``)
``dropout``, ``recurrent_dropout``     ``input_dropout``, ``recurrent_dropout``
=====================================  ==================================================

The flat memory is channel-major in both (index c·order + i) and the hidden part reads
[m_t, x_t] in both.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from typing import Any

import numpy as np
import torch
from torch import nn

from .exceptions import ValidationError
from .lmu import LMU

__all__ = ["from_keras"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "linear": nn.Identity}


def from_keras(path: str | os.PathLike, layer: str | None = None, dtype=None) -> LMU:
    """The :class:`~torchlmu.LMU` equal to a keras-lmu ``LMU`` or ``LMUFeedforward`` layer, or a
    ``keras.layers.RNN`` of an ``LMUCell``, of the model saved at ``path`` (``.keras``).

    Args:
        path: a ``.keras`` file written by ``model.save``.
        layer: the layer's name (default: the model's only keras-lmu layer).
        dtype: the module's dtype (default: the saved weights').
    Returns:
        An LMU with ``batch_first=True`` (keras' layout) and the saved weights.
    """
    import h5py  # an optional dependency (the "interop" extra)

    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    cfg, input_size = _find_layer(config, layer)
    group = weights[f"layers/{cfg['h5_group']}"]
    hidden_vars = _vars(group, "hidden_cell")
    memory_vars = _vars(group, "layer/cell") or _vars(group, "layer") or _vars(group, "")
    policy = cfg.get("dtype")
    floatx = policy.get("config", {}).get("name") if isinstance(policy, dict) else policy
    dtype = dtype or getattr(torch, str(floatx or "float32"))
    return _build(cfg, input_size, hidden_vars, memory_vars, dtype)


def _find_layer(config: dict, name: str | None) -> tuple[dict, int]:
    layers = config.get("config", {}).get("layers", [])
    ours = [la for la in layers if _is_lmu(la)]
    found = [la for la in ours if name is None or la["config"]["name"] == name]
    if len(found) != 1:
        names = [la["config"]["name"] for la in ours]
        raise ValidationError("layer", f"one of the model's keras-lmu layers {names}", repr(name))
    # keras names a layer's weights by its class, numbered in the model's order: lmu, lmu_1, …
    kind = found[0]["class_name"]
    k = [la.get("class_name") for la in layers[: layers.index(found[0])]].count(kind)
    snake = {"LMU": "lmu", "LMUFeedforward": "lmu_feedforward", "RNN": "rnn"}[kind]
    h5_group = snake if k == 0 else f"{snake}_{k}"
    cfg = dict(found[0]["config"], class_name=kind, h5_group=h5_group)
    if kind == "RNN":  # keras.layers.RNN(keras_lmu.LMUCell(...)): the cell's settings
        cfg = dict(
            cfg["cell"]["config"],
            class_name="LMUCell",
            h5_group=f"{h5_group}/cell",
            return_sequences=cfg.get("return_sequences", False),
        )
    inbound = found[0].get("inbound_nodes") or []
    shape = None
    try:  # the input's feature size, from the layer's inbound tensor (keras 3 layout)
        shape = inbound[0]["args"][0]["config"]["shape"]
    except (KeyError, IndexError, TypeError):
        for la in layers:
            if la.get("class_name") == "InputLayer":
                shape = la["config"]["batch_shape"]
    if not shape:
        raise ValidationError(
            "path", "a model whose keras-lmu layer has a known input size", "none"
        )
    return cfg, int(shape[-1])


def _is_lmu(layer: dict) -> bool:
    kind = layer.get("class_name")
    if kind == "RNN":
        return layer["config"].get("cell", {}).get("class_name") == "LMUCell"
    return kind in ("LMU", "LMUFeedforward")


def _vars(group: Any, sub: str) -> list[np.ndarray]:
    if sub and sub not in group:
        return []
    node = group[sub] if sub else group
    if "vars" not in node:
        return []
    v = node["vars"]
    return [np.asarray(v[str(i)]) for i in range(len(v))]


def _build(cfg, I, hidden_vars, memory_vars, dtype) -> LMU:
    C, d, theta = int(cfg["memory_d"]), int(cfg["order"]), float(cfg["theta"])
    feedforward = cfg["class_name"] == "LMUFeedforward"
    h2m = bool(cfg.get("hidden_to_memory", False)) and not feedforward
    m2m = bool(cfg.get("memory_to_memory", False)) and not feedforward
    i2h = bool(cfg.get("input_to_hidden", False))
    S = C * d
    hidden, H, load_hidden = _hidden(
        cfg.get("hidden_cell"), hidden_vars, S + (I if i2h else 0), dtype
    )
    mem = list(memory_vars)
    kernel = None if cfg.get("kernel_initializer") is None else mem.pop(0)
    scalars = [v for v in mem if v.ndim == 0]
    recurrent = mem.pop() if m2m else None
    bias = next((v for v in mem if v.ndim == 1), None)
    method = {"zoh": "zoh", "euler": "euler"}.get(cfg.get("discretizer", "zoh"))
    if method is None:
        raise ValidationError("discretizer", "'zoh' or 'euler'", repr(cfg.get("discretizer")))
    trainable = bool(cfg.get("trainable_theta", False))
    lmu = LMU(
        I, H, d, theta, channels=C, hidden_cell=hidden, hidden_to_memory=h2m,
        memory_to_memory=m2m, input_to_hidden=i2h, memory_bias=bias is not None,
        method=method, trainable_theta=trainable, batch_first=True,
        return_sequences=bool(cfg.get("return_sequences", False)), dtype=dtype,
        bias=_elman_bias(cfg.get("hidden_cell")),
        input_dropout=float(cfg.get("dropout", 0.0) or 0.0),
        recurrent_dropout=float(cfg.get("recurrent_dropout", 0.0) or 0.0) if m2m else 0.0,
    )  # fmt: skip
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    cell = lmu.cell
    with torch.no_grad():
        if kernel is None:  # identity encoders: u = x (memory_d equals the input size)
            if C != I:
                raise ValidationError("memory_d", f"{I} (the input size) without a kernel", C)
            cell.memory.input_encoders.copy_(torch.eye(C, dtype=dtype))
        else:
            cell.memory.input_encoders.copy_(t(kernel[:I]).T)
            if h2m:
                cell.hidden_encoders.copy_(t(kernel[I:]).T)
        if recurrent is not None:
            cell.memory_encoders.copy_(t(recurrent).T)
        if bias is not None:
            cell.memory.memory_bias.copy_(t(bias))
        if trainable and scalars:  # keras keeps θ⁻¹ (in units of steps)
            cell.memory.log_theta.fill_(-math.log(float(scalars[0])))
        load_hidden(cell.hidden, t)
    return lmu


def _elman_bias(hidden_cfg) -> bool:
    if hidden_cfg and hidden_cfg.get("class_name") == "SimpleRNNCell":
        return bool(hidden_cfg["config"].get("use_bias", True))
    return True


def _hidden(hidden_cfg, vars_, Z, dtype):
    """(torchlmu's hidden_cell, hidden size, a function loading the keras weights into it)."""
    if hidden_cfg is None:
        return None, None, lambda h, t: None
    kind, c = hidden_cfg["class_name"], hidden_cfg["config"]
    units = int(c["units"])
    act = c.get("activation", "tanh")
    if kind == "SimpleRNNCell":
        if act not in _ACTIVATIONS:
            raise ValidationError(
                "hidden_cell.activation", f"one of {tuple(_ACTIVATIONS)}", repr(act)
            )

        def load(h, t):
            k, r = vars_[0], vars_[1]
            S = h.in_memory
            h.memory_kernel.copy_(t(k[:S]).T)
            if h.input_kernel is not None:
                h.input_kernel.copy_(t(k[S:]).T)
            h.hidden_kernel.copy_(t(r).T)
            if h.bias is not None:
                h.bias.copy_(t(vars_[2]))

        return act, units, load
    if kind == "LSTMCell":
        if act != "tanh" or c.get("recurrent_activation", "sigmoid") != "sigmoid":
            raise ValidationError("hidden_cell", "an LSTMCell with tanh and sigmoid", f"{act}")

        def load(h, t):  # keras' gates i, f, c, o are torch's i, f, g, o
            h.cell.weight_ih.copy_(t(vars_[0]).T)
            h.cell.weight_hh.copy_(t(vars_[1]).T)
            h.cell.bias_ih.copy_(t(vars_[2]) if len(vars_) > 2 else 0)
            h.cell.bias_hh.zero_()

        return nn.LSTMCell(Z, units, dtype=dtype), units, load
    if kind == "GRUCell":
        if not c.get("reset_after", True) or act != "tanh":
            raise ValidationError("hidden_cell", "a GRUCell with reset_after=True and tanh", kind)

        def load(h, t):  # keras' gate columns z, r, h; torch's r, z, n
            U = units
            perm = torch.cat([torch.arange(U, 2 * U), torch.arange(U), torch.arange(2 * U, 3 * U)])
            h.cell.weight_ih.copy_(t(vars_[0])[:, perm].T)
            h.cell.weight_hh.copy_(t(vars_[1])[:, perm].T)
            b = t(vars_[2]) if len(vars_) > 2 else torch.zeros(2, 3 * U, dtype=dtype)
            h.cell.bias_ih.copy_(b[0][perm])
            h.cell.bias_hh.copy_(b[1][perm])

        return nn.GRUCell(Z, units, dtype=dtype), units, load
    if kind == "Dense":
        if act not in _ACTIVATIONS:
            raise ValidationError(
                "hidden_cell.activation", f"one of {tuple(_ACTIVATIONS)}", repr(act)
            )
        module = nn.Sequential(
            nn.Linear(Z, units, bias=bool(c.get("use_bias", True)), dtype=dtype),
            _ACTIVATIONS[act](),
        )

        def load(h, t):
            h.module[0].weight.copy_(t(vars_[0]).T)
            if h.module[0].bias is not None:
                h.module[0].bias.copy_(t(vars_[1]))

        return module, units, load
    raise ValidationError(
        "hidden_cell", "SimpleRNNCell, LSTMCell, GRUCell, Dense or None", repr(kind)
    )
