"""``LegendreMemory``: the LMU's linear memory alone, x -> u = e_xᵀx (+ b) -> m_t, as a module.

It owns what every LMU module shares: the window θ (fixed, or trainable and kept positive by
storing log θ), the discretisation (computed once per forward in float64, cached when θ is
fixed), and the impulse-response kernel (cached per length).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import torch
from torch import Tensor, nn

from . import legendre, ops
from ._checks import (
    check_choice,
    check_int,
    check_state_tensor,
    check_tensor,
    prepare_lengths,
    prepare_sequence,
)
from .exceptions import UnstableDiscretizationWarning, ValidationError

__all__ = ["LegendreMemory", "lecun_uniform_"]

_CACHE_SIZE = 8


def lecun_uniform_(w: Tensor) -> Tensor:
    """LeCun-uniform initialisation: U(−√(3/fan_in), √(3/fan_in)), fan_in = w.shape[1]."""
    limit = math.sqrt(3.0 / max(1, w.shape[1]))
    with torch.no_grad():
        return w.uniform_(-limit, limit)


class LegendreMemory(nn.Module):
    r"""The linear Legendre memory: ``channels`` independent memories of ``order`` each.

    .. math::
        u_t = E x_t + b, \qquad m_t = \bar A m_{t-1} + \bar B u_t \text{ (per channel)}

    Args:
        input_size: features of x.
        order: d, the number of Legendre coefficients per channel.
        theta: the window length θ in units of ``dt`` (steps when dt = 1).
        channels: C, independent memories (the flat state is channel-major: index c·d + i).
        bias: add a learnable bias to u.
        method: discretisation, ``"zoh"`` (default), ``"euler"`` or ``"bilinear"``.
        trainable_theta: learn θ (stored as log θ so that it stays positive).
        dt: the step, in θ's unit. Changing it rescales time without retraining.
        mode: ``"auto"``/``"parallel"`` (FFT convolution, or one matmul for the last state) or
            ``"recurrent"`` (the step loop).
        batch_first: input ``(B, T, I)`` instead of ``(T, B, I)``.
        return_sequences: return all states; else only the last (computed by one matmul).
        conv: how all states are computed in parallel: ``"chunk"`` (blocked matmuls, default),
            ``"fft"`` or ``"direct"`` (conv1d).

    Shapes:
        input ``(T, B, I)``, ``(B, T, I)`` or unbatched ``(T, I)``; state ``(B, C·d)`` or ``(C·d,)``.
        Output ``(T, B, C·d)`` (or ``(B, C·d)`` without ``return_sequences``) and the final state.
    """

    def __init__(
        self,
        input_size: int,
        order: int,
        theta: float,
        channels: int = 1,
        bias: bool = False,
        method: str = "zoh",
        trainable_theta: bool = False,
        dt: float = 1.0,
        mode: str = "auto",
        batch_first: bool = False,
        return_sequences: bool = True,
        conv: str = "chunk",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size)
        self.order = legendre.check_order(order)
        self.channels = check_int("channels", channels)
        self.method = legendre.check_method(method)
        legendre.check_theta(theta)
        legendre.check_theta(dt, "dt")
        self.mode = check_choice("mode", mode, ("auto", "parallel", "recurrent"))
        self.conv = check_choice("conv", conv, ops.CONV_METHODS)
        self.dt = float(dt)
        self.batch_first = bool(batch_first)
        self.return_sequences = bool(return_sequences)
        self.trainable_theta = bool(trainable_theta)
        fk = {"device": device, "dtype": dtype}
        if self.trainable_theta:
            self.log_theta = nn.Parameter(torch.tensor(math.log(float(theta)), **fk))
            self._theta = None
        else:
            self.register_parameter("log_theta", None)
            self._theta = float(theta)
        self._theta_init = float(theta)
        self.input_encoders = nn.Parameter(torch.empty(self.channels, self.input_size, **fk))
        self.memory_bias = nn.Parameter(torch.empty(self.channels, **fk)) if bias else None
        self._cache: OrderedDict = OrderedDict()
        self.reset_parameters()
        self._check_stability(float(theta))

    # ----------------------------------------------------------------------------- parameters
    def reset_parameters(self) -> None:
        """LeCun-uniform encoders (the LMU paper's default), zero bias, θ back to its initial value."""
        lecun_uniform_(self.input_encoders)
        if self.memory_bias is not None:
            nn.init.zeros_(self.memory_bias)
        if self.log_theta is not None:
            with torch.no_grad():
                self.log_theta.fill_(math.log(self._theta_init))
        self._cache.clear()

    @property
    def theta(self) -> float:
        """The current window θ (a float; see ``theta_tensor`` for the differentiable one)."""
        if self.log_theta is None:
            return self._theta  # type: ignore[return-value]
        return float(self.log_theta.detach().exp())

    @property
    def state_size(self) -> int:
        return self.channels * self.order

    def theta_tensor(self) -> Tensor | float:
        return self._theta if self.log_theta is None else self.log_theta.exp()  # type: ignore[return-value]

    def _check_stability(self, theta: float) -> None:
        if not legendre.is_stable(self.order, theta, self.method, self.dt):
            warnings.warn(
                f"{self.method} discretisation of order {self.order} with theta={theta:g} "
                f"(dt={self.dt:g}) is unstable: theta/dt must exceed "
                f"{legendre.min_stable_theta(self.order, self.method):.4g}; use method='zoh'",
                UnstableDiscretizationWarning,
                stacklevel=3,
            )

    # ----------------------------------------------------------------- discretisation, kernel
    def _cached(self, key: tuple, fn):
        """Memoise ``fn()`` under ``key`` unless θ is being trained through autograd."""
        grad_theta = self.log_theta is not None and self.log_theta.requires_grad
        if grad_theta and torch.is_grad_enabled():
            return fn()
        theta_key = self._theta if self.log_theta is None else (self.log_theta._version, self.theta)
        key = (*key, theta_key, self.dt, self.method)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        val = fn()
        self._cache[key] = val
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return val

    def discretized(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """(Ā ``(d, d)``, B̄ ``(d,)``) computed in float64, returned in ``dtype`` on ``device``."""

        def compute():
            th = self.theta_tensor()
            if isinstance(th, Tensor):
                self._check_stability(float(th.detach()))
            A, B = legendre.state_space(self.order, device=device)
            th64 = th.to(device=device, dtype=torch.float64) if isinstance(th, Tensor) else th
            return legendre.discretize(A, B, self.dt / th64, self.method, dtype=dtype)

        return self._cached(("AB", dtype, device), compute)

    def kernel(self, length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Impulse response H ``(length, d)``, built in float64 by doubling, cast to ``dtype``."""

        def compute():
            Ad, Bd = self.discretized(torch.float64, device)
            return legendre.kernel_from_discrete(Ad, Bd, length).to(dtype)

        return self._cached(("H", length, dtype, device), compute)

    def chunk_weights(
        self, L: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`ops.chunk_weights` for blocks of L steps, built in float64, cast to ``dtype``
        (memoised like the kernel: a forward pass of the blocked memory builds nothing)."""

        def compute():
            Ad, Bd = self.discretized(torch.float64, device)
            return tuple(w.to(dtype) for w in ops.chunk_weights(Ad, Bd, L))

        return self._cached(("chunk", L, dtype, device), compute)

    def power(self, n: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Ā^n for each integer in ``n`` ``(B,)`` -> ``(B, d, d)`` (float64 inside)."""
        Ad, _ = self.discretized(torch.float64, device)
        uniq, inv = torch.unique(n, return_inverse=True)
        P = torch.stack([torch.linalg.matrix_power(Ad, int(k)) for k in uniq.tolist()])
        return P[inv.to(device)].to(dtype)

    # ------------------------------------------------------------------------------ compute
    def encode(self, x: Tensor) -> Tensor:
        """u = E x (+ b): ``(..., I)`` -> ``(..., C)``."""
        u = x @ self.input_encoders.T
        return u if self.memory_bias is None else u + self.memory_bias

    def initial_state(self, batch: int | None = None) -> Tensor:
        """Zero state ``(batch, C·d)``, or ``(C·d,)`` when ``batch`` is None."""
        p = self.input_encoders
        shape = (self.state_size,) if batch is None else (batch, self.state_size)
        return torch.zeros(shape, dtype=p.dtype, device=p.device)

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step: x ``(B, I)`` or ``(I,)`` -> (m_t, m_t), both ``(B, C·d)`` or ``(C·d,)``."""
        p = self.input_encoders
        x = check_tensor("input", x, p.dtype)
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValidationError(
                "input", f"shape (B, {self.input_size}) or ({self.input_size},)", tuple(x.shape)
            )
        lead = x.shape[:-1]
        if state is None:
            state = self.initial_state(x.shape[0] if x.dim() == 2 else None)
        check_state_tensor("state", state, (*lead, self.state_size), p.dtype)
        Ad, Bd = self.discretized(x.dtype, x.device)
        m = ops.memory_step(state.reshape(*lead, self.channels, self.order), self.encode(x), Ad, Bd)
        m = m.reshape(*lead, self.state_size)
        return m, m

    def forward(
        self, x: Tensor, state: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        p = self.input_encoders
        x, batched = prepare_sequence(x, self.input_size, self.batch_first, p.dtype)
        T, B = x.shape[0], x.shape[1]
        lt = prepare_lengths(lengths, T, B, x.device)
        C, d = self.channels, self.order
        m0 = None
        if state is not None:
            shape = (B, C * d) if batched else (C * d,)
            m0 = check_state_tensor("state", state, shape, p.dtype).reshape(B, C, d)
        u = self.encode(x)  # (T, B, C)
        if self.mode == "recurrent":
            Ad, Bd = self.discretized(x.dtype, x.device)
            M = ops.memory_scan(u, Ad, Bd, m0)
            last = M[-1] if lt is None else M[lt - 1, torch.arange(B, device=x.device)]
            seq = M if self.return_sequences else None
        else:
            seq = None
            if self.return_sequences:
                seq = self._scaled_states(x) if self._folds(x, m0) else self.all_states(u, m0)
                # the last state is one of those computed (causal: padding after it is unseen)
                last = seq[-1] if lt is None else seq[lt - 1, torch.arange(B, device=x.device)]
            else:
                last = self.last_state(u, self.kernel(T, x.dtype, x.device), m0, lt)
        if seq is not None and lt is not None:
            seq = seq * _valid_mask(lt, T, seq.dim()).to(seq.dtype)
        y = last if seq is None else seq
        y = y.reshape(*y.shape[:-2], C * d)  # (T, B, C·d) or (B, C·d)
        last = last.reshape(B, C * d)
        if not batched:
            y = y.squeeze(1 if seq is not None else 0)
            last = last.squeeze(0)
        elif seq is not None and self.batch_first:
            y = y.transpose(0, 1)
        return y, last

    def scalar_input(self, x: Tensor, m0: Tensor | None) -> bool:
        """Whether every channel's input is its encoder times x (u_c = e_c·x: a scalar input, no
        bias) and no initial state enters: then the states are linear in x alone, so the
        encoders can scale one memory of x (or fold into a projection of the states)."""
        return x.shape[-1] == 1 and self.memory_bias is None and m0 is None

    def _folds(self, x: Tensor, m0: Tensor | None) -> bool:
        """Whether :meth:`_scaled_states` serves: :meth:`scalar_input`, and either several
        channels (one memory instead of C) or a backward that needs only the encoders' gradient
        (a dot product instead of the memory's transposed GEMM)."""
        if not self.scalar_input(x, m0):
            return False
        return self.channels > 1 or (
            torch.is_grad_enabled() and self.input_encoders.requires_grad and not x.requires_grad
        )

    def _scaled_states(self, x: Tensor) -> Tensor:
        """All states for u_c = e_c·x: the memory is linear in its input, so m(u_c) = e_c·m(x),
        one memory of x scaled per channel. ``(T, B, 1)`` -> ``(T, B, C, d)``."""
        return ops.scale_states(self.all_states(x, None), self.input_encoders)

    def all_states(self, u: Tensor, m0: Tensor | None, conv: str | None = None) -> Tensor:
        """Every state ``(T, B, C, d)`` from u ``(T, B, C)`` and an optional m0, in parallel
        (``conv``: the method, default this module's)."""
        T = u.shape[0]
        conv = self.conv if conv is None else conv
        if conv == "chunk":
            L = ops.chunk_size(T, self.order)
            Ad, Bd = self.discretized(u.dtype, u.device)
            return ops.memory_chunked(u, Ad, Bd, m0, L, self.chunk_weights(L, u.dtype, u.device))
        seq = ops.memory_conv(u, self.kernel(T, u.dtype, u.device), conv)
        if m0 is not None:
            Ad, _ = self.discretized(u.dtype, u.device)
            seq = seq + ops.free_response(m0, Ad, T)
        return seq

    def last_state(self, u: Tensor, H: Tensor, m0: Tensor | None, lengths: Tensor | None) -> Tensor:
        """Final state ``(B, C, d)`` by one matmul, from u ``(T, B, C)`` and optional m0, lengths."""
        T = u.shape[0]
        if lengths is None:
            m = ops.memory_last(u, H)
            if m0 is not None:
                m = m + m0 @ self.power(torch.tensor([T]), u.dtype, u.device)[0].mT
            return m
        m = ops.memory_last(ops.right_align(u, lengths), H)
        if m0 is not None:
            m = m + m0 @ self.power(lengths, u.dtype, u.device).mT
        return m

    def extra_repr(self) -> str:
        s = (
            f"{self.input_size}, order={self.order}, theta={self.theta:g}, "
            f"channels={self.channels}, method={self.method!r}"
        )
        if self.trainable_theta:
            s += ", trainable_theta=True"
        if self.dt != 1.0:
            s += f", dt={self.dt:g}"
        if self.memory_bias is not None:
            s += ", bias=True"
        if self.mode != "auto":
            s += f", mode={self.mode!r}"
        if self.batch_first:
            s += ", batch_first=True"
        if not self.return_sequences:
            s += ", return_sequences=False"
        return s


def _valid_mask(lengths: Tensor, T: int, ndim: int) -> Tensor:
    """``(T, B, 1, ...)`` boolean mask, True where t < lengths[b]."""
    m = torch.arange(T, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)
    return m.reshape(T, -1, *([1] * (ndim - 2)))
