"""``LMUCell`` (one step of the paper's cell) and ``LMU`` (the sequence layer).

The cell of Voelker, Kajić & Eliasmith (NeurIPS 2019), with C memory channels:

    u_t = e_x x_t + e_h h_{t−1} + e_m m_{t−1} (+ b_u)           u_t ∈ R^C
    m_t = Ā m_{t−1} + B̄ u_t  (per channel)                      m_t ∈ R^{C·d}
    h_t = f(W_x x_t + W_h h_{t−1} + W_m m_t + b)                 h_t ∈ R^H

``hidden_to_memory`` switches e_h on, ``memory_to_memory`` e_m, ``input_to_hidden`` W_x (the
names keras-lmu users know). The hidden part is the Elman cell above (``hidden_cell="tanh"``, the
paper's), or any module: ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` fed ``[m_t, x_t]``, a
feed-forward module (``nn.Linear``, ``nn.Sequential``) fed ``[m_t, x_t]``, or ``None`` (the output
is ``[m_t, x_t]``).

When u depends on x alone (no e_h, no e_m) the memory is linear time-invariant and ``LMU`` trains
in parallel: the memory (or its projection W_m·m_t, through the fused kernel W_m·H, without
materialising the states) is one FFT convolution, the last state one matmul, and only a hidden
recurrence, if any, runs step by step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import ops
from ._checks import (
    check_choice,
    check_int,
    check_state_tensor,
    check_tensor,
    prepare_lengths,
    prepare_sequence,
)
from .exceptions import ModeError, ValidationError
from .memory import LegendreMemory, _valid_mask, lecun_uniform_
from .recurrence import elman_scan, lmu_elman_scan

__all__ = ["LMU", "LMUCell", "LMUState"]


class LMUState(NamedTuple):
    """State of an LMU: memory ``(B, C·d)``, hidden ``(B, H)`` (None without a hidden part) and
    the LSTM cell ``(B, H)`` (None unless the hidden part is an ``nn.LSTMCell``)."""

    memory: Tensor
    hidden: Tensor | None = None
    cell: Tensor | None = None


def _identity(x: Tensor) -> Tensor:
    return x


_ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "linear": _identity,
}
# in-place twins, for the streaming path's fresh, graph-free output ("linear": nothing to do)
_ACTIVATIONS_INPLACE = {"tanh": torch.tanh_, "relu": torch.relu_, "sigmoid": torch.sigmoid_}
_INITS = ("paper", "psmnist")


def _hidden_kind(hidden_cell: object) -> str:
    if hidden_cell is None:
        return "none"
    if isinstance(hidden_cell, str):
        check_choice("hidden_cell", hidden_cell, tuple(_ACTIVATIONS))
        return "elman"
    if isinstance(hidden_cell, nn.LSTMCell):
        return "lstm"
    if isinstance(hidden_cell, nn.GRUCell):
        return "gru"
    if isinstance(hidden_cell, nn.RNNCell):
        return "rnn"
    if isinstance(hidden_cell, nn.RNNCellBase):
        raise ValidationError(
            "hidden_cell", "nn.RNNCell, nn.LSTMCell or nn.GRUCell", type(hidden_cell).__name__
        )
    if isinstance(hidden_cell, nn.Module):
        return "ff"
    raise ValidationError(
        "hidden_cell",
        f"an activation name in {tuple(_ACTIVATIONS)}, an nn.Module or None",
        repr(hidden_cell),
    )


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
            Elman hidden, or an ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` of input size
            C·d (+ input_size) and hidden size H, or a feed-forward ``nn.Module``, or None.
        hidden_to_memory, memory_to_memory, input_to_hidden: the optional connections e_h, e_m, W_x.
        bias: bias of the Elman hidden (modules bring their own).
        memory_bias: bias on u.
        init: ``"paper"`` (e_x, e_h LeCun-uniform, e_m zero, kernels Xavier-normal) or
            ``"psmnist"`` (e_x = 1, e_h = e_m = 0, W_x = W_h = 0, W_m Xavier-normal).
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
        method: str = "zoh",
        trainable_theta: bool = False,
        dt: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.kind = _hidden_kind(hidden_cell)
        self.init = check_choice("init", init, _INITS)
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
        hidden_in = S + (self.input_size if self.input_to_hidden else 0)
        self.hidden_input_size = hidden_in
        if self.kind == "none":
            if hidden_size is not None and hidden_size != hidden_in:
                raise ValidationError(
                    "hidden_size",
                    f"None or {hidden_in} (the memory output) with hidden_cell=None",
                    hidden_size,
                )
            if self.hidden_to_memory:
                raise ValidationError("hidden_to_memory", "False when hidden_cell is None", True)
            hidden_size = hidden_in
        self.hidden_size = check_int("hidden_size", hidden_size)
        H = self.hidden_size
        fk = {"device": device, "dtype": dtype}
        if self.kind in ("rnn", "lstm", "gru"):
            if hidden_cell.input_size != hidden_in or hidden_cell.hidden_size != H:  # type: ignore[union-attr]
                raise ValidationError(
                    "hidden_cell",
                    f"input_size={hidden_in} (C·d{' + input_size' if self.input_to_hidden else ''}) and hidden_size={H}",
                    f"input_size={hidden_cell.input_size}, hidden_size={hidden_cell.hidden_size}",  # type: ignore[union-attr]
                )
        self.hidden_cell = hidden_cell if isinstance(hidden_cell, nn.Module) else None
        self.activation = hidden_cell if isinstance(hidden_cell, str) else None
        self._act = _ACTIVATIONS.get(self.activation or "", _identity)

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape, **fk))

        C = self.channels
        self.hidden_encoders = param(C, H) if self.hidden_to_memory else None
        self.memory_encoders = param(C, S) if self.memory_to_memory else None
        elman = self.kind == "elman"
        self.memory_kernel = param(H, S) if elman else None
        self.input_kernel = param(H, self.input_size) if elman and self.input_to_hidden else None
        self.hidden_kernel = param(H, H) if elman else None
        self.bias = param(H) if elman and bias else None
        self.reset_parameters()

    # ----------------------------------------------------------------------------- parameters
    def reset_parameters(self) -> None:
        """The paper's initialisation (``init="paper"``) or the psMNIST preset (``init="psmnist"``)."""
        self.memory.reset_parameters()
        if self.hidden_cell is not None and hasattr(self.hidden_cell, "reset_parameters"):
            self.hidden_cell.reset_parameters()
        for w in (self.memory_kernel, self.input_kernel, self.hidden_kernel):
            if w is not None:
                nn.init.xavier_normal_(w)
        for b in (self.bias, self.memory_encoders):
            if b is not None:
                nn.init.zeros_(b)
        if self.hidden_encoders is not None:
            lecun_uniform_(self.hidden_encoders)
        if self.init == "psmnist":
            with torch.no_grad():
                self.memory.input_encoders.fill_(1.0)
                for w in (self.hidden_encoders, self.input_kernel, self.hidden_kernel):
                    if w is not None:
                        w.zero_()
                if self.kind in ("rnn", "lstm", "gru"):
                    self.hidden_cell.weight_hh.zero_()  # type: ignore[union-attr]
                    self.hidden_cell.weight_ih[:, self.memory.state_size :].zero_()  # type: ignore[union-attr,index]

    @property
    def theta(self) -> float:
        return self.memory.theta

    @property
    def dt(self) -> float:
        return self.memory.dt

    @dt.setter
    def dt(self, value: float) -> None:
        self.memory.dt = float(value)

    @property
    def parallelizable(self) -> bool:
        """True when u depends on x alone, so the memory is an LTI convolution."""
        return not (self.hidden_to_memory or self.memory_to_memory)

    # ---------------------------------------------------------------------------------- state
    def initial_state(self, batch: int | None = None) -> LMUState:
        """Zero state; tensors ``(batch, ·)``, or unbatched when ``batch`` is None."""
        m = self.memory.initial_state(batch)
        lead = m.shape[:-1]
        h = None if self.kind == "none" else m.new_zeros((*lead, self.hidden_size))
        c = m.new_zeros((*lead, self.hidden_size)) if self.kind == "lstm" else None
        return LMUState(m, h, c)

    def check_state(self, state: object, batch: int, batched: bool) -> LMUState:
        """Validate a user state and return it batched (a leading dim of ``batch``)."""
        if state is None:
            return self.initial_state(batch)
        if batched and type(state) is LMUState and self._state_ok(state, batch):
            return state  # the common streaming case, checked cheaply
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
        parts = []
        for name, val, size, needed in (
            ("state.memory", st.memory, self.memory.state_size, True),
            ("state.hidden", st.hidden, self.hidden_size, self.kind != "none"),
            ("state.cell", st.cell, self.hidden_size, self.kind == "lstm"),
        ):
            if not needed:
                if val is not None:
                    raise ValidationError(name, "None for this cell", f"a {type(val).__name__}")
                parts.append(None)
                continue
            if val is None:
                raise ValidationError(name, f"a tensor of shape {(*lead, size)}", None)
            v = check_state_tensor(name, val, (*lead, size), dtype)
            parts.append(v if batched else v.unsqueeze(0))
        return LMUState(*parts)

    def _state_ok(self, st: LMUState, batch: int) -> bool:
        dtype = self.memory.input_encoders.dtype
        m, h, c = st
        if not (
            isinstance(m, Tensor)
            and m.dtype == dtype
            and m.shape == (batch, self.memory.state_size)
        ):
            return False
        if self.kind == "none":
            return h is None and c is None
        ok = isinstance(h, Tensor) and h.dtype == dtype and h.shape == (batch, self.hidden_size)
        if self.kind == "lstm":
            return (
                ok
                and isinstance(c, Tensor)
                and c.dtype == dtype
                and c.shape == (batch, self.hidden_size)
            )
        return ok and c is None

    # ---------------------------------------------------------------------------------- step
    def memory_input(self, x: Tensor, st: LMUState) -> Tensor:
        """u_t ``(B, C)`` from x_t and the previous state."""
        u = self.memory.encode(x)
        if self.hidden_encoders is not None:
            u = u + st.hidden @ self.hidden_encoders.T
        if self.memory_encoders is not None:
            u = u + st.memory @ self.memory_encoders.T
        return u

    def hidden_step(
        self, m: Tensor, x: Tensor, st: LMUState
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(y_t, h_t, c_t) from the new memory m_t ``(B, C·d)``, x_t and the previous state."""
        if self.kind == "elman":
            pre = m @ self.memory_kernel.T + st.hidden @ self.hidden_kernel.T  # type: ignore[union-attr]
            if self.input_kernel is not None:
                pre = pre + x @ self.input_kernel.T
            if self.bias is not None:
                pre = pre + self.bias
            h = self._act(pre)
            return h, h, None
        z = torch.cat([m, x], -1) if self.input_to_hidden else m
        if self.kind == "none":
            return z, None, None
        if self.kind == "lstm":
            h, c = self.hidden_cell(z, (st.hidden, st.cell))  # type: ignore[misc]
            return h, h, c
        h = self.hidden_cell(z, st.hidden) if self.kind in ("rnn", "gru") else self.hidden_cell(z)  # type: ignore[misc]
        if h.shape[-1] != self.hidden_size:
            raise ValidationError(
                "hidden_cell", f"an output of size hidden_size={self.hidden_size}", h.shape[-1]
            )
        return h, h, None

    def step_(self, x: Tensor, st: LMUState, Ad: Tensor, Bd: Tensor) -> tuple[Tensor, LMUState]:
        """One step on batched, validated tensors with a precomputed discretisation."""
        u = self.memory_input(x, st)
        B = x.shape[0]
        m = ops.memory_step(st.memory.reshape(B, self.channels, self.order), u, Ad, Bd)
        m = m.reshape(B, self.memory.state_size)
        y, h, c = self.hidden_step(m, x, st)
        return y, LMUState(m, h, c)

    def forward(self, x: Tensor, state: LMUState | None = None) -> tuple[Tensor, LMUState]:
        if type(state) is LMUState and not torch.is_grad_enabled():
            out = self._stream(x, state)
            if out is not None:
                return out
        dtype = self.memory.input_encoders.dtype
        x = check_tensor("input", x, dtype)
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValidationError(
                "input", f"shape (B, {self.input_size}) or ({self.input_size},)", tuple(x.shape)
            )
        batched = x.dim() == 2
        xb = x if batched else x.unsqueeze(0)
        st = self.check_state(state, xb.shape[0], batched)
        if self.kind in ("elman", "none") and not (
            torch.is_grad_enabled() and self._needs_grad(x, st)
        ):
            y, st = self._fused_step(xb, st)
        else:
            Ad, Bd = self.memory.discretized(x.dtype, x.device)
            y, st = self.step_(xb, st, Ad, Bd)
        if not batched:
            y = y.squeeze(0)
            st = LMUState(*(None if s is None else s.squeeze(0) for s in st))
        return y, st

    # ----------------------------------------------------------- streaming inference fast path
    def _needs_grad(self, x: Tensor, st: LMUState) -> bool:
        return (
            x.requires_grad
            or any(p.requires_grad for p in self.parameters())
            or any(s is not None and s.requires_grad for s in st)
        )

    def _weights_key(self) -> tuple:
        """What the fused streaming matrix depends on: dt, θ, and the identity and in-place
        version of every parameter (an Elman or memory-only cell holds them all in its own and
        its memory's parameter dicts, read live so that a replaced parameter is seen)."""
        mem = self.memory
        # (a trainable θ is log_theta, one of the memory's parameters; this runs at every
        # streaming step, so it avoids Module.__getattr__ and nested tuples)
        params = [
            q for q in (*self._parameters.values(), *mem._parameters.values()) if q is not None
        ]
        return (mem.dt, mem._theta, *[q._version for q in params], *map(id, params))

    def _fused_weights(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """One matrix M and bias b with [m_t, h_t] = [m_{t−1}, h_{t−1}, x_t] M + b before f.

        The memory update and the hidden pre-activation are linear in (m_{t−1}, h_{t−1}, x_t):
        m_t = m Āᵀ + u B̄ᵀ with u = x e_xᵀ + h e_hᵀ + m e_mᵀ + b_u, and W_m m_t substitutes it,
        so a streaming step is one matmul and the activation. Cached until a parameter or θ changes.
        """
        key = (dtype, device, *self._weights_key())
        if getattr(self, "_fused_key", None) == key:
            return self._fused_val
        with torch.no_grad():
            mem = self.memory
            C, S, I = mem.channels, mem.state_size, self.input_size
            Ad, Bd = mem.discretized(torch.float64, device)
            f64 = {"dtype": torch.float64, "device": device}
            Bk = torch.block_diag(*([Bd.unsqueeze(0)] * C))  # (C, S): u -> its B̄ u per channel
            A_blk = torch.block_diag(*([Ad.T] * C))  # (S, S)
            has_h = self.kind != "none"
            Hn = self.hidden_size if has_h else 0
            rows_m = [A_blk, torch.zeros(Hn, S, **f64), mem.input_encoders.double().T @ Bk]
            if self.memory_encoders is not None:
                rows_m[0] = rows_m[0] + self.memory_encoders.double().T @ Bk
            if self.hidden_encoders is not None:
                rows_m[1] = self.hidden_encoders.double().T @ Bk
            Mm = torch.cat(rows_m, 0)  # (S + H + I, S)
            bm = (
                mem.memory_bias.double() @ Bk
                if mem.memory_bias is not None
                else torch.zeros(S, **f64)
            )
            if self.kind == "elman":
                Wx = (
                    self.input_kernel.double().T
                    if self.input_kernel is not None
                    else torch.zeros(I, Hn, **f64)
                )
                direct = torch.cat(
                    [torch.zeros(S, Hn, **f64), self.hidden_kernel.double().T, Wx], 0
                )
                WmT = self.memory_kernel.double().T
                M = torch.cat([Mm, Mm @ WmT + direct], 1)
                b = torch.cat([bm, bm @ WmT + (self.bias.double() if self.bias is not None else 0)])
            else:
                M, b = Mm, bm
        self._fused_key, self._fused_val = key, (M.to(dtype), b.to(dtype))
        return self._fused_val

    def _fused_step(self, x: Tensor, st: LMUState) -> tuple[Tensor, LMUState]:
        M, b = self._fused_weights(x.dtype, x.device)
        S = self.memory.state_size
        if self.kind == "none":
            m = torch.addmm(b, torch.cat([st.memory, x], -1), M)
            return (torch.cat([m, x], -1) if self.input_to_hidden else m), LMUState(m, None, None)
        # What lets the next call take _stream: the weights' key, and the shapes it accepts.
        self._stream_val = (self._fused_key, M, b, S, self.hidden_size, self.input_size)
        return self._elman_fused(M, b, S, self.hidden_size, st.memory, st.hidden, x)

    def _elman_fused(
        self, M: Tensor, b: Tensor, S: int, H: int, m: Tensor, h: Tensor, x: Tensor
    ) -> tuple[Tensor, LMUState]:
        """[m_t, pre-activation of h_t] = [m, h, x] M + b, then the activation."""
        out = torch.addmm(b, torch.cat([m, h, x], 1), M)
        # One op for both views, and the activation in place on the fresh output (no graph
        # here): every torch call costs microseconds at batch 1, more than its arithmetic.
        m, h = out.split_with_sizes((S, H), 1)
        act_ = _ACTIVATIONS_INPLACE.get(self.activation or "")
        if act_ is not None:
            h = act_(h)
        return h, LMUState(m, h, None)

    def _stream(self, x: object, st: LMUState) -> tuple[Tensor, LMUState] | None:
        """The streaming fast path, without grad, for the state a previous step returned (a
        batched Elman cell): the same checks and arithmetic as :meth:`_fused_step`, with the
        module lookups hoisted into one cached tuple. Returns None (the general path decides and
        raises the clear errors) whenever anything differs from the cached case."""
        c = self.__dict__.get("_stream_val")
        if c is None or type(x) is not Tensor:
            return None
        key, M, b, S, H, I = c
        m, h, cell = st
        if (
            cell is not None
            or type(m) is not Tensor
            or type(h) is not Tensor
            or x.dim() != 2
            or x.dtype != M.dtype
            or x.device != M.device
            or x.shape[1] != I
            or m.shape != (x.shape[0], S)
            or h.shape != (x.shape[0], H)
            or m.dtype != M.dtype
            or h.dtype != M.dtype
        ):
            return None
        if key[2:] != self._weights_key():  # a parameter replaced or changed in place, or θ
            return None
        return self._elman_fused(M, b, S, H, m, h, x)

    # ----------------------------------------------------------- pieces of the parallel path
    def hidden_input_weights(self) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """For a recurrent hidden part: (W_mem ``(G, C·d)``, W_x ``(G, I)`` or None, b ``(G,)`` or
        None) of its input projection, G = H·(1, 4, 3) for Elman/RNN, LSTM, GRU."""
        S = self.memory.state_size
        if self.kind == "elman":
            return self.memory_kernel, self.input_kernel, self.bias  # type: ignore[return-value]
        W = self.hidden_cell.weight_ih  # type: ignore[union-attr]
        return W[:, :S], (W[:, S:] if self.input_to_hidden else None), self.hidden_cell.bias_ih  # type: ignore[union-attr]

    def recur_from_input(
        self, pre: Tensor, h: Tensor, c: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """One step of the hidden recurrence given its input projection ``pre`` ``(B, G)``.

        Equals ``hidden_step`` (and so the ``nn.*Cell`` modules, by PyTorch's documented
        equations) when ``pre`` = W_mem m_t + W_x x_t + b.
        """
        if self.kind == "elman":
            return self._act(pre + h @ self.hidden_kernel.T), None  # type: ignore[union-attr]
        cell = self.hidden_cell
        gh = h @ cell.weight_hh.T  # type: ignore[union-attr]
        if cell.bias_hh is not None:  # type: ignore[union-attr]
            gh = gh + cell.bias_hh  # type: ignore[union-attr]
        if self.kind == "rnn":
            act = torch.tanh if cell.nonlinearity == "tanh" else torch.relu  # type: ignore[union-attr]
            return act(pre + gh), None
        if self.kind == "lstm":
            i, f, g, o = (pre + gh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        ir, iz, inn = pre.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = torch.sigmoid(ir + hr)
        z = torch.sigmoid(iz + hz)
        n = torch.tanh(inn + r * hn)
        return (1 - z) * n + z * h, None

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, order={self.order}, theta={self.theta:g}"
        if self.channels != 1:
            s += f", channels={self.channels}"
        if self.activation is not None and self.activation != "tanh":
            s += f", hidden_cell={self.activation!r}"
        if self.kind == "none":
            s += ", hidden_cell=None"
        for flag in ("hidden_to_memory", "memory_to_memory", "input_to_hidden"):
            if getattr(self, flag):
                s += f", {flag}=True"
        if self.init != "paper":
            s += f", init={self.init!r}"
        return s


class LMU(nn.Module):
    """The LMU sequence layer: :class:`LMUCell` over time, with a parallel path.

    ``LMU(input_size, hidden_size, order, theta, **cell_options)``; the cell options are those of
    :class:`LMUCell`, plus:

    Args:
        mode: ``"auto"`` (parallel whenever u depends on x alone), ``"parallel"`` (an error when it
            does not apply) or ``"recurrent"`` (the step loop).
        batch_first: input and output ``(B, T, ·)`` instead of ``(T, B, ·)``.
        return_sequences: return every output ``(T, B, H)``; else only the last ``(B, H)``
            (parallel: the memory's last state by one matmul, nothing else materialised).
        conv: ``"chunk"`` (blocked matmuls; default), ``"fft"`` or ``"direct"``: how the memory's
            states, or their projection into a recurrent hidden, are computed in parallel.

    ``forward(x, state=None, lengths=None) -> (y, state)``: x ``(T, B, I)`` (``(B, T, I)``) or
    unbatched ``(T, I)``; ``lengths`` ``(B,)`` makes padding past each sequence's end change
    neither its outputs (zero there) nor its final state. ``step(x_t, state)`` streams one step.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | None,
        order: int,
        theta: float,
        *,
        mode: str = "auto",
        batch_first: bool = False,
        return_sequences: bool = True,
        conv: str = "chunk",
        **cell_options,
    ) -> None:
        super().__init__()
        self.cell = LMUCell(input_size, hidden_size, order, theta, **cell_options)
        self.mode = check_choice("mode", mode, ("auto", "parallel", "recurrent"))
        if mode == "parallel" and not self.cell.parallelizable:
            raise ModeError(
                "mode='parallel' needs a memory input that depends on x alone: "
                "set hidden_to_memory=False and memory_to_memory=False, or use mode='auto'"
            )
        self.conv = check_choice("conv", conv, ops.CONV_METHODS)
        self.batch_first = bool(batch_first)
        self.return_sequences = bool(return_sequences)
        self.input_size = self.cell.input_size
        self.hidden_size = self.cell.hidden_size

    def reset_parameters(self) -> None:
        self.cell.reset_parameters()

    @property
    def theta(self) -> float:
        return self.cell.theta

    @property
    def dt(self) -> float:
        return self.cell.dt

    @dt.setter
    def dt(self, value: float) -> None:
        self.cell.dt = value

    def resolved_mode(self) -> str:
        if self.mode == "auto":
            return "parallel" if self.cell.parallelizable else "recurrent"
        return self.mode

    def initial_state(self, batch: int | None = None) -> LMUState:
        return self.cell.initial_state(batch)

    def step(self, x: Tensor, state: LMUState | None = None) -> tuple[Tensor, LMUState]:
        """One streaming step: x ``(B, I)`` or ``(I,)``; consistent with ``forward``."""
        return self.cell(x, state)

    def forward(
        self, x: Tensor, state: LMUState | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, LMUState]:
        cell = self.cell
        dtype = cell.memory.input_encoders.dtype
        x, batched = prepare_sequence(x, self.input_size, self.batch_first, dtype)
        T, B = x.shape[0], x.shape[1]
        lt = prepare_lengths(lengths, T, B, x.device)
        st = cell.check_state(state, B, batched)
        if self.resolved_mode() == "recurrent":
            y, st = self._forward_recurrent(x, st, lt)
        else:
            y, st = self._forward_parallel(x, st, state is not None, lt)
        return self._finish(y, st, batched)

    def forward_reference(
        self, x: Tensor, state: LMUState | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, LMUState]:
        """The readable reference: the cell's step, once per time step, through autograd.

        Same contract as ``forward``; every fast path is tested against it.
        """
        cell = self.cell
        dtype = cell.memory.input_encoders.dtype
        x, batched = prepare_sequence(x, self.input_size, self.batch_first, dtype)
        lt = prepare_lengths(lengths, x.shape[0], x.shape[1], x.device)
        st = cell.check_state(state, x.shape[1], batched)
        y, st = self._step_loop(x, st, lt)
        return self._finish(y, st, batched)

    def _finish(self, y: Tensor, st: LMUState, batched: bool) -> tuple[Tensor, LMUState]:
        if not batched:
            y = y.squeeze(1 if self.return_sequences else 0)
            st = LMUState(*(None if s is None else s.squeeze(0) for s in st))
        elif self.return_sequences and self.batch_first:
            y = y.transpose(0, 1)
        return y, st

    # ------------------------------------------------------------------------------- recurrent
    def _forward_recurrent(
        self, x: Tensor, st: LMUState, lt: Tensor | None
    ) -> tuple[Tensor, LMUState]:
        cell = self.cell
        if cell.kind != "elman" or lt is not None:
            return self._step_loop(x, st, lt)
        # The paper's cell: one hand-written recurrence (forward and backward through time);
        # every input projection is computed for all steps at once beforehand.
        mem = cell.memory
        Ad, Bd = mem.discretized(x.dtype, x.device)
        xu = mem.encode(x)
        xh = x @ cell.input_kernel.T if cell.input_kernel is not None else x.new_zeros(())
        if cell.bias is not None:
            xh = xh + cell.bias
        xh = xh.expand(x.shape[0], x.shape[1], cell.hidden_size)
        _, Hs, m, h = lmu_elman_scan(
            xu, xh, st.memory, st.hidden, Ad, Bd, cell.memory_encoders, cell.hidden_encoders,
            cell.memory_kernel, cell.hidden_kernel, cell.activation, return_last=True,
        )  # fmt: skip
        return (Hs if self.return_sequences else h), LMUState(m, h, None)

    def _step_loop(self, x: Tensor, st: LMUState, lt: Tensor | None) -> tuple[Tensor, LMUState]:
        """The cell's step, once per time step (discretised once)."""
        Ad, Bd = self.cell.memory.discretized(x.dtype, x.device)
        ys = []
        y_last = None
        for t in range(x.shape[0]):
            y, new = self.cell.step_(x[t], st, Ad, Bd)
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

    # -------------------------------------------------------------------------------- parallel
    def _forward_parallel(
        self, x: Tensor, st: LMUState, has_state: bool, lt: Tensor | None
    ) -> tuple[Tensor, LMUState]:
        cell, mem = self.cell, self.cell.memory
        T, B = x.shape[0], x.shape[1]
        C, d, S = mem.channels, mem.order, mem.state_size
        u = mem.encode(x)  # (T, B, C)
        H = mem.kernel(T, x.dtype, x.device)  # (T, d)
        m0 = st.memory.reshape(B, C, d) if has_state else None
        bidx = torch.arange(B, device=x.device)
        last_t = None if lt is None else lt - 1

        if cell.kind in ("none", "ff"):
            if self.return_sequences:
                M = mem.all_states(u, m0, self.conv).reshape(T, B, S)  # (T, B, C·d)
                m_last = M[-1] if last_t is None else M[last_t, bidx]
                z = torch.cat([M, x], -1) if cell.input_to_hidden else M
            else:
                m_last = mem.last_state(u, H, m0, lt).reshape(B, S)
                x_last = x[-1] if last_t is None else x[last_t, bidx]
                z = torch.cat([m_last, x_last], -1) if cell.input_to_hidden else m_last
            y = z if cell.kind == "none" else cell.hidden_cell(z)  # type: ignore[misc]
            if y.shape[-1] != cell.hidden_size:
                raise ValidationError(
                    "hidden_cell", f"an output of size hidden_size={cell.hidden_size}", y.shape[-1]
                )
            if self.return_sequences:
                if lt is not None:
                    y = y * _valid_mask(lt, T, 3).to(y.dtype)
                h = y[-1] if last_t is None else y[last_t, bidx]
            else:
                h = y
            return y, LMUState(m_last, None if cell.kind == "none" else h, None)

        # A recurrent hidden part: its input projection of the memory, W_mem·m_t for all t, is
        # computed in parallel without the states (blocked matmuls with W_mem·H and W_mem·Ā^s,
        # or one FFT convolution with the fused kernel W_mem·H); only the hidden recurrence steps.
        W_mem, W_x, b = cell.hidden_input_weights()
        u_in, W_in = u, W_mem
        if mem.scalar_input(x, m0):
            # u_c = e_c·x, so W_mem·m(u) = (W_mem scaled per channel by e_c)·m(x)
            # (the memory is linear in its input). Folding the encoders into the projection's
            # weights leaves the backward no gradient to carry back to the memory's input
            # (unless x needs one): one GEMM of the blocked projection's three.
            G = W_mem.shape[0]
            e = mem.input_encoders.reshape(1, C, 1)
            u_in, W_in = x.expand(T, B, C), (W_mem.reshape(G, C, d) * e).reshape(G, S)
        if self.conv == "chunk":
            Ad, Bd = mem.discretized(x.dtype, x.device)
            pre = ops.fused_chunked(u_in, Ad, Bd, W_in, m0)  # (T, B, G)
        else:
            pre = ops.fused_conv(u_in, ops.fused_kernel(H, W_in, C), self.conv)
            if m0 is not None:
                Ad, _ = mem.discretized(x.dtype, x.device)
                pre = pre + ops.free_response(m0, Ad, T).reshape(T, B, S) @ W_mem.T
        # The input's part (W_x x + b), added in one pass that also makes ``pre`` time-major
        # contiguous (the parallel result is batch-major): the recurrence reads pre[t] T times.
        if W_x is not None:
            x2 = x.reshape(T * B, -1)
            xw = (x2 @ W_x.T if b is None else torch.addmm(b, x2, W_x.T)).reshape(T, B, -1)
            pre = xw + pre  # the result takes the first operand's (time-major) layout
        else:
            pre = pre.contiguous() if b is None else pre.contiguous() + b
        m_last = mem.last_state(u, H, m0, lt).reshape(B, S)
        if cell.kind == "elman" and lt is None:
            Hs, h = elman_scan(
                pre, st.hidden, cell.hidden_kernel, cell.activation, inplace=True, return_last=True
            )
            return (Hs if self.return_sequences else h), LMUState(m_last, h, None)
        h, c = st.hidden, st.cell
        ys = []
        for t in range(T):
            h_new, c_new = cell.recur_from_input(pre[t], h, c)
            if lt is not None:
                active = (t < lt).unsqueeze(-1)
                h_new = torch.where(active, h_new, h)
                if c is not None:
                    c_new = torch.where(active, c_new, c)
                if self.return_sequences:
                    ys.append(torch.where(active, h_new, torch.zeros_like(h_new)))
            elif self.return_sequences:
                ys.append(h_new)
            h, c = h_new, c_new
        y = torch.stack(ys, 0) if self.return_sequences else h
        return y, LMUState(m_last, h, c)

    def extra_repr(self) -> str:
        s = ""
        if self.mode != "auto":
            s += f"mode={self.mode!r}, "
        if self.batch_first:
            s += "batch_first=True, "
        if not self.return_sequences:
            s += "return_sequences=False, "
        return s.rstrip(", ")
