"""``LMUCell`` (one step of the paper's cell), ``LMU`` (the sequence layer) and ``LMUStepper``.

The cell of Voelker, Kajić & Eliasmith (NeurIPS 2019), with C memory channels:

    u_t = e_x x_t + e_h h_{t−1} + e_m m_{t−1} (+ b_u)           u_t ∈ R^C
    m_t = Ā m_{t−1} + B̄ u_t  (per channel)                      m_t ∈ R^{C·d}
    h_t = f(W_x x_t + W_h h_{t−1} + W_m m_t + b)                 h_t ∈ R^H

``hidden_to_memory`` switches e_h on, ``memory_to_memory`` e_m, ``input_to_hidden`` W_x (the
names keras-lmu users know). The layer is two stages: the memory (:class:`~torchlmu.LegendreMemory`),
then the hidden part, a type chosen once from ``hidden_cell`` (:mod:`torchlmu.hidden`): the
Elman cell above (``"tanh"``, the paper's, ``"relu"``, ``"sigmoid"``, ``"linear"``), an
``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` or a cell of your own fed z_t = [m_t, x_t], a
feed-forward module, or ``None`` (the output is z_t).

When u depends on x alone (no e_h, no e_m) the memory is linear time-invariant and ``LMU``
trains in parallel: the memory computes the hidden part's input projection W·m_t for all t at
once (blocked matmuls or one FFT, without the states), and only the hidden recurrence steps.
Otherwise the memory and the hidden part step together (the paper's cell by one hand-written
recurrence, others by the step loop).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import ops
from ._checks import (
    check_choice,
    check_fraction,
    check_input_step,
    check_int,
    check_state_tensor,
    prepare_lengths,
    prepare_sequence,
)
from ._tracing import tracing
from .exceptions import ModeError, ValidationError
from .hidden import (
    CustomCellHidden,
    ElmanHidden,
    HiddenPart,
    NoHidden,
    TorchCellHidden,
    make_hidden,
)
from .memory import LegendreMemory, lecun_uniform_
from .recurrence import activation_fn_, lmu_elman_scan

__all__ = ["LMU", "DropoutMasks", "LMUCell", "LMUState", "LMUStepper"]


class LMUState(NamedTuple):
    """State of an LMU: memory ``(B, C·d)``, hidden ``(B, H)`` (None without a hidden part) and
    the cell ``(B, H)`` (None unless the hidden part keeps two tensors, as ``nn.LSTMCell``)."""

    memory: Tensor
    hidden: Tensor | None = None
    cell: Tensor | None = None


_INIT_PRESETS = ("paper", "psmnist", "keras")
_INIT_NAMES = (
    "input_encoders",
    "hidden_encoders",
    "memory_encoders",
    "memory_bias",
    "memory_kernel",
    "input_kernel",
    "hidden_kernel",
    "bias",
)


def _check_init(init: object) -> str | dict:
    if isinstance(init, str):
        return check_choice("init", init, _INIT_PRESETS)
    if not isinstance(init, Mapping):
        raise ValidationError("init", f"one of {_INIT_PRESETS} or a mapping", repr(init))
    for name, fn in init.items():
        if name not in _INIT_NAMES:
            raise ValidationError("init", f"parameter names among {_INIT_NAMES}", repr(name))
        if not callable(fn):
            raise ValidationError(f"init[{name!r}]", "a callable f(tensor)", repr(fn))
    return dict(init)


def _glorot_uniform_(parts: list) -> None:
    """Glorot-uniform over the matrices ``parts`` (torch layout (out, in), the same out) as
    one kernel of their concatenated inputs: keras' single kernel split in two."""
    parts = [p for p in parts if p is not None]
    fan_in = sum(p.shape[1] for p in parts)
    limit = math.sqrt(6.0 / (fan_in + parts[0].shape[0]))
    for p in parts:
        p.uniform_(-limit, limit)


class DropoutMasks(NamedTuple):
    """keras-lmu's dropout, drawn once per sequence and kept for every step (inverted: kept
    units scaled by 1/(1 − p)): ``x`` ``(B, I)`` and ``h`` ``(B, H)`` on the memory input's
    x and hidden_to_memory terms (``input_dropout``), ``m`` ``(B, C·d)`` on the
    memory_to_memory term (``recurrent_dropout``); None where off."""

    x: Tensor | None = None
    h: Tensor | None = None
    m: Tensor | None = None


class LMUCell(nn.Module):
    """One step of the LMU (see the module docstring for the equations).

    Args:
        input_size: features of x.
        hidden_size: H, units of the hidden part (for ``hidden_cell=None``: pass None or the
            output size C·d (+ input_size with ``input_to_hidden``)).
        order: d, Legendre coefficients per memory channel.
        theta: window θ in units of ``dt`` (steps when dt = 1).
        channels: C, memory channels (u ∈ R^C; flat memory channel-major, index c·d + i).
        hidden_cell: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"``, ``"linear"`` for the paper's
            Elman hidden; an ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` of input size
            C·d (+ input_size) and hidden size H; a module following
            :class:`torchlmu.hidden.HiddenCell` (your own recurrent cell); a feed-forward
            ``nn.Module``; or None.
        hidden_to_memory, memory_to_memory, input_to_hidden: the optional connections e_h, e_m, W_x.
        bias: bias of the Elman hidden (modules bring their own).
        memory_bias: bias on u.
        init: a preset, ``"paper"`` (e_x, e_h LeCun-uniform, e_m zero, kernels Xavier-normal),
            ``"psmnist"`` (e_x = 1, e_h = e_m = 0, W_x = W_h = 0, W_m Xavier-normal) or
            ``"keras"`` (keras-lmu's defaults: [e_x, e_h] Glorot-uniform as one kernel, e_m
            orthogonal, memory bias zero; an Elman hidden as keras' SimpleRNNCell: [W_m, W_x]
            Glorot-uniform as one kernel, W_h orthogonal, bias zero), or a mapping from parameter
            names (``input_encoders``, ``hidden_encoders``, ``memory_encoders``,
            ``memory_bias``, ``memory_kernel``, ``input_kernel``, ``hidden_kernel``, ``bias``)
            to initialisers (``f(tensor)`` in place, as ``nn.init``'s) applied after the
            ``"paper"`` preset.
        input_dropout: keras-lmu's ``dropout``: in training, dropout on the memory input's
            x and (with ``hidden_to_memory``) h terms, one mask per sequence for every step;
            the hidden part sees x undropped.
        recurrent_dropout: keras-lmu's ``recurrent_dropout``: the same on m in the
            ``memory_to_memory`` term.
        method, trainable_theta, dt: see :class:`~torchlmu.LegendreMemory`.

    Shapes:
        x ``(B, I)`` or ``(I,)``; returns h ``(B, H)`` and :class:`LMUState`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | None,
        order: int,
        theta: float,
        *,
        channels: int = 1,
        hidden_cell: str | nn.Module | None = "tanh",
        hidden_to_memory: bool = False,
        memory_to_memory: bool = False,
        input_to_hidden: bool = False,
        bias: bool = True,
        memory_bias: bool = False,
        init: str = "paper",
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        method: str = "zoh",
        trainable_theta: bool = False,
        dt: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.init = _check_init(init)
        self.input_dropout = check_fraction("input_dropout", input_dropout)
        self.recurrent_dropout = check_fraction("recurrent_dropout", recurrent_dropout)
        if self.recurrent_dropout and not memory_to_memory:
            raise ValidationError(
                "recurrent_dropout", "0 without memory_to_memory (it drops m in that term)",
                recurrent_dropout,
            )  # fmt: skip
        self.memory = LegendreMemory(
            input_size,
            order,
            theta,
            channels=channels,
            bias=memory_bias,
            method=method,
            trainable_theta=trainable_theta,
            dt=dt,
            device=device,
            dtype=dtype,
        )
        self.input_size = self.memory.input_size
        self.order = self.memory.order
        self.channels = self.memory.channels
        self.hidden_to_memory = bool(hidden_to_memory)
        self.memory_to_memory = bool(memory_to_memory)
        self.input_to_hidden = bool(input_to_hidden)
        S = self.memory.state_size
        self.hidden = make_hidden(
            hidden_cell,
            S,
            self.input_size if self.input_to_hidden else 0,
            hidden_size,
            bias,
            device,
            dtype,
        )
        if self.hidden_to_memory and isinstance(self.hidden, NoHidden):
            raise ValidationError("hidden_to_memory", "False when hidden_cell is None", True)
        self.hidden_size = self.hidden.hidden_size
        fk = {"device": device, "dtype": dtype}
        C, H = self.channels, self.hidden_size
        self.hidden_encoders = (
            nn.Parameter(torch.empty(C, H, **fk)) if self.hidden_to_memory else None
        )
        self.memory_encoders = (
            nn.Parameter(torch.empty(C, S, **fk)) if self.memory_to_memory else None
        )
        self.register_load_state_dict_pre_hook(_upgrade_state_dict)
        self.reset_parameters()

    # ----------------------------------------------------------------------------- parameters
    def reset_parameters(self) -> None:
        """Initialise every parameter by the ``init`` preset or mapping."""
        self.memory.reset_parameters()
        self.hidden.reset_parameters()
        if self.memory_encoders is not None:
            nn.init.zeros_(self.memory_encoders)
        if self.hidden_encoders is not None:
            lecun_uniform_(self.hidden_encoders)
        params = self._init_targets()
        with torch.no_grad():
            if self.init == "psmnist":
                params["input_encoders"].fill_(1.0)
                for name in ("hidden_encoders", "hidden_kernel", "input_kernel"):
                    if params.get(name) is not None:
                        params[name].zero_()
                if isinstance(self.hidden, TorchCellHidden):
                    self.hidden.cell.weight_hh.zero_()
                    self.hidden.cell.weight_ih[:, self.memory.state_size :].zero_()
            elif self.init == "keras":
                _glorot_uniform_([params["input_encoders"], params.get("hidden_encoders")])
                for name in ("memory_encoders", "hidden_kernel"):
                    if params.get(name) is not None:
                        nn.init.orthogonal_(params[name])
                for name in ("memory_bias", "bias"):
                    if params.get(name) is not None:
                        params[name].zero_()
                if params.get("memory_kernel") is not None:
                    _glorot_uniform_([params["memory_kernel"], params.get("input_kernel")])
            elif isinstance(self.init, dict):
                for name, fn in self.init.items():
                    if params.get(name) is None:
                        raise ValidationError(
                            f"init[{name!r}]", "a parameter this cell has", "none of that name"
                        )
                    fn(params[name])

    def _init_targets(self) -> dict:
        """The parameters ``init`` may name (None where the cell has none of that name)."""
        h = self.hidden
        elman = isinstance(h, ElmanHidden)
        return {
            "input_encoders": self.memory.input_encoders,
            "hidden_encoders": self.hidden_encoders,
            "memory_encoders": self.memory_encoders,
            "memory_bias": self.memory.memory_bias,
            "memory_kernel": h.memory_kernel if elman else None,
            "input_kernel": h.input_kernel if elman else None,
            "hidden_kernel": h.hidden_kernel if elman else None,
            "bias": h.bias if elman else None,
        }

    @property
    def theta(self) -> float:
        return self.memory.theta

    @property
    def dt(self) -> float:
        return self.memory.dt

    @dt.setter
    def dt(self, value: float) -> None:
        self.memory.dt = value

    @property
    def parallelizable(self) -> bool:
        """True when u depends on x alone, so the memory is an LTI convolution."""
        return not (self.hidden_to_memory or self.memory_to_memory)

    # ---------------------------------------------------------------------------------- state
    def initial_state(self, batch: int | None = None) -> LMUState:
        """Zero state; tensors ``(batch, ·)``, or unbatched when ``batch`` is None."""
        m = self.memory.initial_state(1 if batch is None else batch)
        st = LMUState(m, *self.hidden.initial_state(m.shape[0], m))
        return st if batch is not None else LMUState(*(_squeeze0(s) for s in st))

    def check_state(self, state: object, batch: int, batched: bool) -> LMUState:
        """Validate a user state once and return it batched (a leading dim of ``batch``); None
        gives the zero state."""
        if state is None:
            return self.initial_state(batch)
        if (
            isinstance(state, Tensor)
            or not isinstance(state, (tuple, list))
            or not 1 <= len(state) <= 3
        ):
            raise ValidationError(
                "state", "an LMUState (memory, hidden, cell)", type(state).__name__
            )
        st = LMUState(*state)
        dtype = self.memory.input_encoders.dtype
        lead = (batch,) if batched else ()
        n = self.hidden.n_states
        parts = []
        for i, (name, val) in enumerate(
            zip(("state.memory", "state.hidden", "state.cell"), st, strict=True)
        ):
            if i > n:
                if val is not None:
                    raise ValidationError(name, "None for this cell", f"a {type(val).__name__}")
                parts.append(None)
                continue
            size = self.memory.state_size if i == 0 else self.hidden_size
            if val is None:
                raise ValidationError(name, f"a tensor of shape {(*lead, size)}", None)
            v = check_state_tensor(name, val, (*lead, size), dtype)
            parts.append(v if batched else v.unsqueeze(0))
        return LMUState(*parts)

    # ---------------------------------------------------------------------------------- step
    def memory_input(self, x: Tensor, st: LMUState, masks: DropoutMasks | None = None) -> Tensor:
        """u_t ``(B, C)`` from x_t and the previous state (dropped by ``masks`` if given)."""
        mx, mh, mm = masks if masks is not None else (None, None, None)
        u = self.memory.encode(x if mx is None else x * mx)
        if self.hidden_encoders is not None:
            h = st.hidden if mh is None else st.hidden * mh
            u = u + h @ self.hidden_encoders.T
        if self.memory_encoders is not None:
            m = st.memory if mm is None else st.memory * mm
            u = u + m @ self.memory_encoders.T
        return u

    def dropout_masks(self, batch: int, like: Tensor) -> DropoutMasks | None:
        """Masks for one forward pass in training (None in evaluation or without dropout)."""
        if not self.training or not (self.input_dropout or self.recurrent_dropout):
            return None

        def draw(n: int, p: float) -> Tensor | None:
            if not p:
                return None
            keep = torch.full((batch, n), 1 - p, dtype=like.dtype, device=like.device)
            return torch.bernoulli(keep) / (1 - p)

        H = self.hidden_size if self.hidden_to_memory else 0
        mx = draw(self.input_size + H, self.input_dropout)
        return DropoutMasks(
            None if mx is None else mx[:, : self.input_size],
            None if mx is None or not H else mx[:, self.input_size :],
            draw(self.memory.state_size, self.recurrent_dropout),
        )

    def hidden_input(self, m: Tensor, x: Tensor) -> Tensor:
        """z_t = [m_t, x_t] (or m_t without ``input_to_hidden``)."""
        return torch.cat([m, x], -1) if self.input_to_hidden else m

    def step_(
        self, x: Tensor, st: LMUState, masks: DropoutMasks | None = None
    ) -> tuple[Tensor, LMUState]:
        """One step on batched, validated tensors: the reference every path is tested against."""
        m = self.memory.advance(st.memory, self.memory_input(x, st, masks))
        y, hs = self.hidden.step(self.hidden_input(m, x), _hidden_state(st, self.hidden))
        return y, LMUState(m, *hs)

    def forward(self, x: Tensor, state: LMUState | None = None) -> tuple[Tensor, LMUState]:
        """One step: x ``(B, I)`` or ``(I,)``, state or None -> (y ``(B, H)``, state)."""
        x = check_input_step("input", x, self.input_size, self.memory.input_encoders.dtype)
        batched = x.dim() == 2
        xb = x if batched else x.unsqueeze(0)
        y, st = self.step_(xb, self.check_state(state, xb.shape[0], batched))
        if not batched:
            y, st = y.squeeze(0), LMUState(*(_squeeze0(s) for s in st))
        return y, st

    def stepper(self, fused: bool | None = None) -> LMUStepper:
        """A streaming module of this cell's current weights (see :class:`LMUStepper`)."""
        return LMUStepper(self, fused)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, order={self.order}, theta={self.theta:g}"
        if self.channels != 1:
            s += f", channels={self.channels}"
        if isinstance(self.hidden, NoHidden):
            s += ", hidden_cell=None"
        for flag in ("hidden_to_memory", "memory_to_memory", "input_to_hidden"):
            if getattr(self, flag):
                s += f", {flag}=True"
        if self.init != "paper":
            s += f", init={self.init if isinstance(self.init, str) else 'custom'!r}"
        return s


def _squeeze0(s: Tensor | None) -> Tensor | None:
    return None if s is None else s.squeeze(0)


def _memory_view(x: Tensor, masks: DropoutMasks | None) -> Tensor:
    """x ``(T, B, I)`` as the memory sees it: dropped by the sequence's input mask, if any."""
    return x if masks is None or masks.x is None else x * masks.x


def _stack_states(states: list[LMUState]) -> LMUState:
    """Per-layer states stacked along a new leading dimension (None fields stay None)."""
    return LMUState(
        *(None if f[0] is None else torch.stack(f, 0) for f in zip(*states, strict=True))
    )


def _reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence of x ``(T, B, ...)`` reversed within its valid steps (padding stays after
    it), so that the backward direction starts at each sequence's last valid step."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)
    idx = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B)
    return x.gather(0, idx.reshape(T, -1, *([1] * (x.dim() - 2))).expand_as(x))


def _hidden_state(st: LMUState, hidden: HiddenPart) -> tuple[Tensor, ...]:
    return tuple(st[1 : 1 + hidden.n_states])  # type: ignore[arg-type]


# Before the hidden types, an Elman hidden's weights sat on LMUCell itself and a module hidden
# part was ``LMUCell.hidden_cell``; these keys are renamed when an old state_dict is loaded.
_ELMAN_KEYS = ("memory_kernel", "input_kernel", "hidden_kernel", "bias")


def _upgrade_state_dict(module, state_dict, prefix, *args) -> None:
    hidden = module.hidden
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        new = None
        if isinstance(hidden, ElmanHidden) and rest in _ELMAN_KEYS:
            new = f"hidden.{rest}"
        elif rest.startswith("hidden_cell."):
            inner = (
                "cell." if isinstance(hidden, (TorchCellHidden, CustomCellHidden)) else "module."
            )
            new = "hidden." + inner + rest[len("hidden_cell.") :]
        if new is not None:
            state_dict[prefix + new] = state_dict.pop(key)


class LMUStepper(nn.Module):
    """Streaming inference with a snapshot of an :class:`LMUCell`'s weights: ``forward(x_t,
    state) -> (y_t, state)`` on batched ``(B, I)`` input, no autograd.

    For the Elman and memory-only cells the step is linear in (m_{t−1}, x_t, h_{t−1}) before
    the activation, so it is precomputed (in float64) as matrices on z = [m_{t−1}, x_t,
    h_{t−1}]: m_t = z[:, :k] M_m + b_m and, with an Elman hidden part, its pre-activation
    z M_h + b_h (W_m m_t substituted, so both products read the old state and need not wait for
    each other). k leaves h_{t−1} out when the memory does not read it (no ``hidden_to_memory``):
    in one fused matrix that block would be zeros, a quarter of the psMNIST cell's bytes, and on
    a CPU the products are bound by reading their matrices (measured 7 % faster than the fused
    form at batch 1, 15–20 % at batch 16 and 128). A step is one or two concatenations, one or
    two matmuls and the activation. ``fused=True`` runs the Elman step as one product with
    [M_m (zero rows for h), M_h] side by side (buffers ``M``, ``b``) and a split: fewer kernel
    launches, which is what a small step costs on a GPU; ``None`` (default) fuses unless the
    cell is on the CPU. The choice is made here: a stepper moved to another device keeps it.

    Other hidden types step through the cell. The snapshot does not follow later changes of
    the cell's weights, θ or dt: make a new stepper after them. It is a plain module (buffers
    ``M_m``, ``b_m``, ``M_h``, ``b_h`` or ``M``, ``b``), so ``torch.export`` and ONNX export
    take it as it is.
    """

    def __init__(self, cell: LMUCell, fused: bool | None = None) -> None:
        super().__init__()
        self.cell = cell
        for name in ("M_m", "b_m", "M_h", "b_h", "M", "b"):
            self.register_buffer(name, None, persistent=False)
        h = cell.hidden
        if isinstance(h, (ElmanHidden, NoHidden)):
            dtype = cell.memory.input_encoders.dtype
            for name, w in zip(("M_m", "b_m", "M_h", "b_h"), _step_weights(cell), strict=True):
                setattr(self, name, None if w is None else w.to(dtype))
            self._k = self.M_m.shape[0]  # columns of z the memory reads
        if fused is None:
            fused = cell.memory.input_encoders.device.type != "cpu"
        # the step, chosen once by the hidden type (a streaming step is a few microseconds:
        # no per-step lookups beyond the matrices, and a missing bias is one test for None)
        if isinstance(h, ElmanHidden):
            self._act, self._act_ = h._act, activation_fn_(h.activation)
            if fused:
                self._sizes = S, H = cell.memory.state_size, cell.hidden_size  # the split's
                zero = self.M_m.new_zeros
                M_m = torch.cat([self.M_m, zero(self.M_h.shape[0] - self._k, S)], 0)  # h's rows
                b_m = zero(S) if self.b_m is None else self.b_m
                b_h = zero(H) if self.b_h is None else self.b_h
                self.M, self.b = torch.cat([M_m, self.M_h], 1), torch.cat([b_m, b_h])
                self.M_m = self.b_m = self.M_h = self.b_h = None
                self._step = self._fused_step
            elif self._k == self.M_h.shape[0]:
                self._step = self._elman_step_all
            else:
                self._step = self._elman_step
        elif isinstance(h, NoHidden):
            self._step = self._concat_step if cell.input_to_hidden else self._memory_step
        else:
            self._step = cell.step_

    def forward(self, x: Tensor, state: LMUState | None = None) -> tuple[Tensor, LMUState]:
        """x ``(B, I)``, state (None: zero) -> (y ``(B, H)``, state). Gradients reach x and the
        state if they need them; the weights are the snapshot's constants."""
        if state is None:
            state = self.cell.initial_state(x.shape[0])
        return self._step(x, state)

    def _memory_step(self, x: Tensor, state: LMUState) -> tuple[Tensor, LMUState]:
        # the buffers by their dict: Module.__getattr__ costs about 0.7 µs per lookup
        buf = self._buffers
        m = _affine(torch.cat([state.memory, x], 1), buf["M_m"], buf["b_m"])
        return m, LMUState(m)

    def _concat_step(self, x: Tensor, state: LMUState) -> tuple[Tensor, LMUState]:
        buf = self._buffers
        m = _affine(torch.cat([state.memory, x], 1), buf["M_m"], buf["b_m"])
        return torch.cat([m, x], 1), LMUState(m)

    def _elman_step(self, x: Tensor, state: LMUState) -> tuple[Tensor, LMUState]:
        # two concatenations rather than one and a slice of it: at batch 1 a view costs as much
        # as a 257-value copy (~1.6 µs), measured 3 % slower per step
        z_m = torch.cat([state.memory, x], 1)
        return self._elman(torch.cat([z_m, state.hidden], 1), z_m)

    def _elman_step_all(self, x: Tensor, state: LMUState) -> tuple[Tensor, LMUState]:
        z = torch.cat([state.memory, x, state.hidden], 1)
        return self._elman(z, z)

    def _fused_step(self, x: Tensor, state: LMUState) -> tuple[Tensor, LMUState]:
        buf = self._buffers
        out = torch.addmm(buf["b"], torch.cat([state.memory, x, state.hidden], 1), buf["M"])
        m, h = out.split_with_sizes(self._sizes, 1)
        # in place when eager and recording no gradient (autograd forbids it on split's views)
        h = self._act(h) if torch.is_grad_enabled() or tracing() else self._act_(h)
        return h, LMUState(m, h)

    def _elman(self, z: Tensor, z_m: Tensor) -> tuple[Tensor, LMUState]:
        buf = self._buffers
        m = _affine(z_m, buf["M_m"], buf["b_m"])
        h = _affine(z, buf["M_h"], buf["b_h"])
        # in place on the fresh product when eager and recording no gradient (the exporter
        # would otherwise fix the batch size): one allocation less
        h = self._act(h) if torch.is_grad_enabled() or tracing() else self._act_(h)
        return h, LMUState(m, h)


def _step_weights(cell: LMUCell) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """The streaming step's matrices in float64 (see :class:`LMUStepper`): ``(M_m, b_m, M_h,
    b_h)`` on z = [m_{t−1}, x_t, h_{t−1}] ``(B, S + I + H)``: m_t = z[:, :k] M_m + b_m with
    M_m ``(k, S)``, k = S + I, or S + I + H when the memory reads h (``hidden_encoders``); the
    Elman pre-activation z M_h + b_h, M_h ``(S + I + H, H)`` (None without an Elman part). A
    bias is None where it would be zeros (no memory bias; no memory or hidden bias).
    m_t = m Āᵀ + u B̄ᵀ with u = x e_xᵀ + h e_hᵀ + m e_mᵀ + b_u per channel."""
    with torch.no_grad():
        mem = cell.memory
        C, S, I = mem.channels, mem.state_size, cell.input_size
        Ad, Bd = (t.detach() for t in mem.discretized64())
        f64 = {"dtype": torch.float64, "device": Ad.device}
        Bk = torch.block_diag(*([Bd.unsqueeze(0)] * C))  # (C, S): u -> its B̄ u per channel
        rows_m = [torch.block_diag(*([Ad.T] * C)), mem.input_encoders.double().T @ Bk]
        if cell.memory_encoders is not None:
            rows_m[0] = rows_m[0] + cell.memory_encoders.double().T @ Bk
        if cell.hidden_encoders is not None:
            rows_m.append(cell.hidden_encoders.double().T @ Bk)
        Mm = torch.cat(rows_m, 0)  # (k, S)
        bm = mem.memory_bias.double() @ Bk if mem.memory_bias is not None else None
        h = cell.hidden
        if not isinstance(h, ElmanHidden):
            return Mm, bm, None, None
        Hn = cell.hidden_size
        Wx = torch.zeros(I, Hn, **f64)
        if cell.input_to_hidden and h.input_kernel is not None:
            Wx = h.input_kernel.double().T
        direct = torch.cat([torch.zeros(S, Hn, **f64), Wx, h.hidden_kernel.double().T], 0)
        Mm_all = torch.cat([Mm, torch.zeros(S + I + Hn - Mm.shape[0], S, **f64)], 0)
        WmT = h.memory_kernel.double().T
        Mh = Mm_all @ WmT + direct  # (S + I + H, H)
        # a copy: the stepper is a snapshot (float64 .double() of a float64 parameter is itself)
        bh = None if h.bias is None else h.bias.detach().to(torch.float64, copy=True)
        if bm is not None:
            bh = bm @ WmT + (0 if bh is None else bh)
        return Mm, bm, Mh, bh


def _affine(z: Tensor, M: Tensor, b: Tensor | None) -> Tensor:
    """z M + b, or z M without a bias (addmm first copies b into its output: ~1 µs at batch 1)."""
    return torch.mm(z, M) if b is None else torch.addmm(b, z, M)


class LMU(nn.Module):
    """The LMU sequence layer: the memory stage, then the hidden stage, over a whole sequence.

    The remaining keyword options (``channels``, ``hidden_cell``, ``hidden_to_memory``,
    ``memory_to_memory``, ``input_to_hidden``, ``bias``, ``memory_bias``, ``init``,
    ``input_dropout``, ``recurrent_dropout``, ``method``, ``trainable_theta``, ``dt``, ``device``,
    ``dtype``) are the cell's, as :class:`LMUCell` documents them.

    Args:
        input_size: features of x.
        hidden_size: H, units of the hidden part (None for ``hidden_cell=None``).
        order: d, Legendre coefficients per memory channel.
        theta: the memory's window θ in steps (in units of ``dt``).
        mode: ``"auto"`` (parallel whenever u depends on x alone), ``"parallel"`` (an error when it
            does not apply) or ``"recurrent"`` (memory and hidden part step together).
        num_layers: layers stacked, each layer's output the next one's input (as ``nn.LSTM``).
        bidirectional: a second layer per level reads each sequence backwards (from its last
            valid step with ``lengths``); outputs concatenated [forward, backward] (as
            ``nn.LSTM``).
        dropout: dropout on each layer's output but the last's, in training (as ``nn.LSTM``).
        batch_first: input and output ``(B, T, ·)`` instead of ``(T, B, ·)``.
        return_sequences: return every output ``(T, B, H)``; else only the last ``(B, H)``
            (parallel: the memory's last state by one matmul, nothing else materialised).
        conv: ``"auto"`` (default: ``"chunk"`` up to order 384, ``"fft"`` above), ``"chunk"``
            (blocked matmuls), ``"fft"`` or ``"direct"``: how the memory's states, or their
            projection into a recurrent hidden, are computed in parallel.

    ``forward(x, state=None, lengths=None) -> (y, state)``: x ``(T, B, I)`` (``(B, T, I)``),
    unbatched ``(T, I)`` or a ``PackedSequence`` (then y is one too); ``lengths`` ``(B,)`` makes
    padding past each sequence's end (whatever it holds) change neither its outputs (zero there)
    nor its final state. A non-finite input at step t changes no output before t.
    ``step(x_t, state)`` streams one step; ``stepper()`` gives a fast streaming module.

    State layout: one layer, one direction: :class:`LMUState` of ``(B, ·)`` tensors. Stacked or
    bidirectional: the same fields with a leading dimension of num_layers × directions, index
    layer·directions + direction (as ``nn.LSTM``'s h_n), e.g. memory ``(L·D, B, C·d)``.

    Compiles with ``torch.compile(fullgraph=True)`` and exports with ``torch.export``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | None,
        order: int,
        theta: float,
        *,
        mode: str = "auto",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = False,
        return_sequences: bool = True,
        conv: str = "auto",
        **cell_options,
    ) -> None:
        super().__init__()
        self.num_layers = check_int("num_layers", num_layers)
        self.bidirectional = bool(bidirectional)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValidationError("dropout", "a number in [0, 1)", repr(dropout))
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.return_sequences = bool(return_sequences)
        self.layers: nn.ModuleList | None = None
        if num_layers > 1 or bidirectional:
            self._build_stack(input_size, hidden_size, order, theta, mode, conv, cell_options)
            return
        if dropout > 0:
            warnings.warn(
                "dropout acts between stacked layers: with num_layers=1 it does nothing "
                f"(received dropout={dropout})",
                UserWarning,
                stacklevel=2,
            )
        self.cell = LMUCell(input_size, hidden_size, order, theta, **cell_options)
        self.mode = check_choice("mode", mode, ("auto", "parallel", "recurrent"))
        if mode == "parallel" and not self.cell.parallelizable:
            raise ModeError(
                "mode='parallel' needs a memory input that depends on x alone: "
                "set hidden_to_memory=False and memory_to_memory=False, or use mode='auto'"
            )
        self.conv = check_choice("conv", conv, ("auto", *ops.CONV_METHODS))
        self.cell.memory.conv = self.conv
        self.cell.memory.mode = "recurrent" if self.resolved_mode() == "recurrent" else "parallel"
        self.input_size = self.cell.input_size
        self.hidden_size = self.cell.hidden_size
        # The path is chosen once, from the mode and the hidden type.
        h = self.cell.hidden
        if self.resolved_mode() == "recurrent":
            self._path = LMU._recurrent_elman if isinstance(h, ElmanHidden) else LMU._step_loop
        elif h.positionwise:
            self._path = LMU._parallel_positionwise
        elif h.input_weights() is None:
            self._path = LMU._parallel_states
        else:
            self._path = LMU._parallel_projected

    def _build_stack(self, input_size, hidden_size, order, theta, mode, conv, cell_options):
        """num_layers × directions single layers (each an LMU of one layer, one direction, time
        major); a module hidden part is copied, with fresh parameters, into every one."""
        D = 2 if self.bidirectional else 1
        layers, size = [], input_size
        for _ in range(self.num_layers):
            for _ in range(D):
                opts = dict(cell_options)
                hidden = opts.get("hidden_cell", "tanh")
                if isinstance(hidden, nn.Module) and layers:
                    opts["hidden_cell"] = copy.deepcopy(hidden)
                    if hasattr(opts["hidden_cell"], "reset_parameters"):
                        opts["hidden_cell"].reset_parameters()
                layers.append(LMU(size, hidden_size, order, theta, mode=mode, conv=conv, **opts))
            size = layers[-1].hidden_size * D
        self.layers = nn.ModuleList(layers)
        self.mode, self.conv = layers[0].mode, layers[0].conv
        self.input_size = input_size
        self.hidden_size = layers[-1].hidden_size  # per direction (nn.LSTM's convention)
        self._path = None

    def _cells(self) -> list[LMUCell]:
        return [self.cell] if self.layers is None else [layer.cell for layer in self.layers]

    def reset_parameters(self) -> None:
        for cell in self._cells():
            cell.reset_parameters()

    @property
    def theta(self) -> float:
        return self._cells()[0].theta

    @property
    def dt(self) -> float:
        return self._cells()[0].dt

    @dt.setter
    def dt(self, value: float) -> None:
        for cell in self._cells():
            cell.dt = value

    def resolved_mode(self) -> str:
        if self.mode == "auto":
            return "parallel" if self._cells()[0].parallelizable else "recurrent"
        return self.mode

    def initial_state(self, batch: int | None = None) -> LMUState:
        if self.layers is None:
            return self.cell.initial_state(batch)
        return _stack_states([layer.initial_state(batch) for layer in self.layers])

    def step(self, x: Tensor, state: LMUState | None = None) -> tuple[Tensor, LMUState]:
        """One streaming step: x ``(B, I)`` or ``(I,)``; consistent with ``forward`` (stacked
        layers step in turn; a bidirectional LMU cannot stream: its backward half reads the
        future)."""
        if self.layers is None:
            return self.cell(x, state)
        if self.bidirectional:
            raise ModeError("step: a bidirectional LMU cannot stream (it reads the future)")
        states = self._split_state(state, x.dim() == 2)
        new = []
        for layer, st in zip(self.layers, states, strict=True):
            x, st = layer.step(x, st)
            new.append(st)
        return x, _stack_states(new)

    def stepper(self, fused: bool | None = None) -> LMUStepper:
        """A fast streaming module of the current weights (:class:`LMUStepper`; one layer)."""
        if self.layers is not None:
            raise ModeError("stepper: one layer, one direction only (use step() for a stack)")
        return self.cell.stepper(fused)

    def forward(
        self, x: Tensor, state: LMUState | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, LMUState]:
        """Run the layer over a sequence.

        Args:
            x: ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``), unbatched ``(T, I)``, or a
                ``PackedSequence``.
            state: an :class:`LMUState` to continue from (None: zeros), as returned by a
                previous call (see the class docstring for a stack's layout).
            lengths: ``(B,)`` valid lengths in [1, T]; padding past them changes neither the
                outputs (zero there) nor the final state.

        Returns:
            ``(y, state)``: y ``(T, B, H)`` (``(B, T, H)`` with ``batch_first``; ``(B, H)``
            without ``return_sequences``; ``2H`` features when bidirectional; a
            ``PackedSequence`` for a packed input) and the final :class:`LMUState`.

        Raises:
            ValidationError: a wrong shape, dtype, state or lengths (before any work).
        """
        if isinstance(x, PackedSequence):
            return self._forward_packed(x, state, lengths, reference=False)
        if self.layers is not None:
            return self._forward_stack(x, state, lengths, reference=False)
        x, batched, st, lt = self._prepare(x, state, lengths)
        m0 = None if state is None else st.memory.reshape(-1, self.cell.channels, self.cell.order)
        masks = self.cell.dropout_masks(x.shape[1], x)
        y, st = self._path(self, ops.mask_padding(x, lt), st, m0, lt, masks)
        return self._finish(y, st, batched)

    def forward_reference(
        self, x: Tensor, state: LMUState | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, LMUState]:
        """The readable reference: the cell's step, once per time step, through autograd.

        Same contract as ``forward``; every fast path is tested against it."""
        if isinstance(x, PackedSequence):
            return self._forward_packed(x, state, lengths, reference=True)
        if self.layers is not None:
            return self._forward_stack(x, state, lengths, reference=True)
        x, batched, st, lt = self._prepare(x, state, lengths)
        masks = self.cell.dropout_masks(x.shape[1], x)
        y, st = self._step_loop(x, st, None, lt, masks)
        return self._finish(y, st, batched)

    # ------------------------------------------------------------- packed input, stacked layers
    def _forward_packed(self, x: PackedSequence, state, lengths, reference: bool):
        """As nn.LSTM: unpack, run with the lengths, pack the outputs the same way."""
        if lengths is not None:
            raise ValidationError("lengths", "None with a PackedSequence (it has them)", "lengths")
        padded, lt = pad_packed_sequence(x, batch_first=self.batch_first)
        fn = self.forward_reference if reference else self.forward
        y, st = fn(padded, state, lt)
        if self.return_sequences:
            y = pack_padded_sequence(
                y, lt, batch_first=self.batch_first, enforce_sorted=x.sorted_indices is None
            )
        return y, st

    def _split_state(self, state, batched: bool) -> list[LMUState | None]:
        """A stacked state (leading dim layers × directions) as one state per layer."""
        K = len(self.layers)
        if state is None:
            return [None] * K
        if not isinstance(state, (tuple, list)) or not isinstance(state[0], Tensor):
            raise ValidationError(
                "state", "an LMUState (memory, hidden, cell)", type(state).__name__
            )
        lead = 3 if batched else 2
        for name, v in zip(("state.memory", "state.hidden", "state.cell"), state, strict=False):
            if v is not None and (v.dim() != lead or v.shape[0] != K):
                raise ValidationError(
                    name,
                    f"{lead} dimensions, the first of size {K} (layers × directions)",
                    tuple(v.shape),
                )
        return [LMUState(*(None if v is None else v[k] for v in state)) for k in range(K)]

    def _forward_stack(self, x, state, lengths, reference: bool):
        dtype = self.layers[0].cell.memory.input_encoders.dtype
        x, batched = prepare_sequence("input", x, self.input_size, self.batch_first, dtype)
        if not batched:
            state = (
                None
                if state is None
                else LMUState(*(None if v is None else v.unsqueeze(1) for v in state))
            )
        lt = prepare_lengths("lengths", lengths, x.shape[0], x.shape[1], x.device)
        states = self._split_state(state, True)
        D = 2 if self.bidirectional else 1
        out, finals = x, []
        for i in range(self.num_layers):
            ys = []
            for d in range(D):
                layer = self.layers[i * D + d]
                fn = layer.forward_reference if reference else layer
                inp = out if d == 0 else _reverse(out, lt)
                y, st = fn(inp, states[i * D + d], lengths=lt)
                ys.append(y if d == 0 else _reverse(y, lt))
                finals.append(st)
            out = ys[0] if D == 1 else torch.cat(ys, -1)
            if i < self.num_layers - 1 and self.dropout > 0:
                out = F.dropout(out, self.dropout, self.training)
        if not self.return_sequences:
            # the forward half's last valid output, the backward half's first (its last step)
            H = self.hidden_size
            idx = (
                x.shape[0] - 1 if lt is None else lt - 1,
                torch.arange(x.shape[1], device=x.device),
            )
            out = out[idx] if D == 1 else torch.cat([out[idx][:, :H], out[0, :, H:]], -1)
        st = _stack_states(finals)
        if not batched:
            out = out.squeeze(1 if self.return_sequences else 0)
            st = LMUState(*(None if v is None else v.squeeze(1) for v in st))
        elif self.return_sequences and self.batch_first:
            out = out.transpose(0, 1)
        return out, st

    def _prepare(self, x, state, lengths):
        dtype = self.cell.memory.input_encoders.dtype
        x, batched = prepare_sequence("input", x, self.input_size, self.batch_first, dtype)
        lt = prepare_lengths("lengths", lengths, x.shape[0], x.shape[1], x.device)
        return x, batched, self.cell.check_state(state, x.shape[1], batched), lt

    def _finish(self, y: Tensor, st: LMUState, batched: bool) -> tuple[Tensor, LMUState]:
        if not batched:
            y = y.squeeze(1 if self.return_sequences else 0)
            st = LMUState(*(_squeeze0(s) for s in st))
        elif self.return_sequences and self.batch_first:
            y = y.transpose(0, 1)
        return y, st

    def _last_index(self, lt: Tensor | None, like: Tensor):
        """Index of each sequence's last valid step into a ``(T, B, ...)`` tensor."""
        if lt is None:
            return -1
        return lt - 1, torch.arange(like.shape[1], device=like.device)

    # --------------------------------------------------------------------- the paths, by type
    def _parallel_projected(self, x, st, m0, lt, masks):
        """Memory: W_mem·m_t for all t in parallel (no states); hidden: its recurrence."""
        cell, mem = self.cell, self.cell.memory
        W_mem, W_x, b = cell.hidden.input_weights()  # type: ignore[misc]
        T, B = x.shape[0], x.shape[1]
        xm = _memory_view(x, masks)
        pre = mem.project(xm, W_mem, m0, lt)  # (T, B, G)
        # The input's part (W_x x + b), added in one pass that also makes ``pre`` time-major
        # contiguous (the parallel result is batch-major): the recurrence reads pre[t] T times.
        if W_x is not None:
            x2 = x.reshape(T * B, -1)
            xw = (x2 @ W_x.T if b is None else torch.addmm(b, x2, W_x.T)).reshape(T, B, -1)
            pre = xw + pre  # the result takes the first operand's (time-major) layout
        else:
            pre = pre.contiguous() if b is None else pre.contiguous() + b
        m_last = mem.last(xm, m0, lt).flatten(-2)
        y, hs = cell.hidden.scan(pre, _hidden_state(st, cell.hidden), lt, self.return_sequences)
        return y, LMUState(m_last, *hs)

    def _parallel_positionwise(self, x, st, m0, lt, masks):
        """Memory: all states (or the last alone) in parallel; hidden: applied at every step."""
        cell, mem = self.cell, self.cell.memory
        xm = _memory_view(x, masks)
        if self.return_sequences:
            M = mem.states(xm, m0, lt).flatten(-2)  # (T, B, C·d)
            idx = self._last_index(lt, M)
            y, _ = cell.hidden.step(cell.hidden_input(M, x), ())
            y = ops.zero_padding(y, lt)
            m_last, y_last = M[idx], y[idx]
        else:
            m_last = mem.last(xm, m0, lt).flatten(-2)
            x_last = x[self._last_index(lt, x)]
            y, _ = cell.hidden.step(cell.hidden_input(m_last, x_last), ())
            y_last = y
        if isinstance(cell.hidden, NoHidden):
            return y, LMUState(m_last)
        return y, LMUState(m_last, y_last)

    def _parallel_states(self, x, st, m0, lt, masks):
        """Memory: all states in parallel; hidden: a cell without an input projection, stepped."""
        cell, mem = self.cell, self.cell.memory
        M = mem.states(_memory_view(x, masks), m0, lt).flatten(-2)
        m_last = M[self._last_index(lt, M)]
        y, hs = cell.hidden.scan(
            cell.hidden_input(M, x), _hidden_state(st, cell.hidden), lt, self.return_sequences
        )
        return y, LMUState(m_last, *hs)

    def _recurrent_elman(self, x, st, m0, lt, masks):
        """The paper's cell: one hand-written recurrence (forward and backward through time);
        every input projection computed for all steps at once beforehand. (With lengths, or
        dropout masks on h or m, which differ per sequence: the step loop.)"""
        if lt is not None or masks is not None:
            return self._step_loop(x, st, m0, lt, masks)
        cell, mem, h = self.cell, self.cell.memory, self.cell.hidden
        Ad, Bd = mem.discretized()
        xu = mem.encode(x)
        xh = x @ h.input_kernel.T if h.input_kernel is not None else x.new_zeros(())
        if h.bias is not None:
            xh = xh + h.bias
        xh = xh.expand(x.shape[0], x.shape[1], cell.hidden_size)
        _, Hs, m, hT = lmu_elman_scan(
            xu, xh, st.memory, st.hidden, Ad, Bd, cell.memory_encoders, cell.hidden_encoders,
            h.memory_kernel, h.hidden_kernel, h.activation, return_last=True,
        )  # fmt: skip
        return (Hs if self.return_sequences else hT), LMUState(m, hT)

    def _step_loop(self, x, st, m0, lt, masks=None):
        """The cell's step, once per time step."""
        ys = []
        y_last = None
        for t in range(x.shape[0]):
            y, new = self.cell.step_(x[t], st, masks)
            if lt is not None:
                active = (t < lt).unsqueeze(-1)
                y = torch.where(active, y, torch.zeros_like(y))
                new = LMUState(
                    *(
                        None if n is None else torch.where(active, n, o)
                        for n, o in zip(new, st, strict=True)
                    )
                )
                y_last = y if y_last is None else torch.where(active, y, y_last)
            st = new
            ys.append(y)
        if not self.return_sequences:
            return (ys[-1] if lt is None else y_last), st
        return torch.stack(ys, 0), st

    def extra_repr(self) -> str:
        s = ""
        if self.num_layers != 1:
            s += f"num_layers={self.num_layers}, "
        if self.bidirectional:
            s += "bidirectional=True, "
        if self.dropout:
            s += f"dropout={self.dropout:g}, "
        if self.mode != "auto":
            s += f"mode={self.mode!r}, "
        if self.batch_first:
            s += "batch_first=True, "
        if not self.return_sequences:
            s += "return_sequences=False, "
        return s.rstrip(", ")


def _merged_signature() -> inspect.Signature:
    """LMU(...)'s signature with LMUCell's keyword options spelled out (one source for their
    defaults: the cell's), so that help(LMU), IDEs and the API reference show them all."""
    own = inspect.signature(LMU.__init__)
    cell = inspect.signature(LMUCell.__init__)
    params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in params}
    params += [
        p for p in cell.parameters.values() if p.kind is p.KEYWORD_ONLY and p.name not in names
    ]
    return own.replace(parameters=params)


LMU.__init__.__signature__ = _merged_signature()  # type: ignore[attr-defined]
