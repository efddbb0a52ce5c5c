"""``LegendreMemory``: the LMU's linear memory alone, x -> u = E x (+ b) -> m_t, as a module.

It owns what every LMU module shares: the window θ (fixed, or trainable and kept positive by
storing log θ), the discretisation and the kernels that compute the memory. The layer above
calls three stages of it through public methods, never the kernels themselves:

- :meth:`LegendreMemory.states`: every state ``(T, B, C, d)``;
- :meth:`LegendreMemory.last`: the last state ``(B, C, d)`` (one matmul in parallel);
- :meth:`LegendreMemory.project`: W·m_t for all t ``(T, B, G)``, without the states.

Caches are explicit. With a fixed θ the discretisation (Ā, B̄ in float64 and in the module's
dtype) lives in non-persistent buffers, rebuilt when θ, ``dt``, the device or the dtype change
(the ``theta``/``dt`` setters and ``_apply``); the length-dependent weights (impulse response,
blocked-kernel matrices) are memoised per length in eager mode and rebuilt from the buffers
inside a compiled or exported graph. With a trainable θ everything is computed from θ in the
forward pass (differentiably). ``forward`` uses no NumPy and does not synchronise with the device
(but see :func:`torchlmu.ops.propagate_nonfinite` on the CPU).
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import Tensor, nn

from . import legendre, ops
from ._checks import (
    check_choice,
    check_input_step,
    check_int,
    check_state_tensor,
    prepare_lengths,
    prepare_sequence,
)
from ._tracing import tracing
from .exceptions import CostWarning, UnstableDiscretizationWarning, ValidationError

__all__ = ["LegendreMemory", "lecun_uniform_"]

_MEMO_SIZE = 8
_WARN_FLOPS = 2.5e11  # about 5 s of one core at 50 GFLOP/s: below it, no CostWarning


def lecun_uniform_(w: Tensor) -> Tensor:
    """LeCun-uniform initialisation: U(−√(3/fan_in), √(3/fan_in)), fan_in = w.shape[1]."""
    limit = math.sqrt(3.0 / max(1, w.shape[1]))
    with torch.no_grad():
        return w.uniform_(-limit, limit)


def _accept_old_state_dict(module, state_dict, prefix, *args) -> None:
    """State dicts saved before the configuration was (no ``_extra_state``) load unchecked."""
    state_dict.setdefault(prefix + "_extra_state", module.get_extra_state())


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
        mode: ``"auto"``/``"parallel"`` (blocked matmuls, FFT or conv1d; one matmul for the last
            state) or ``"recurrent"`` (the step loop).
        batch_first: input ``(B, T, I)`` instead of ``(T, B, I)``.
        return_sequences: return all states; else only the last (computed by one matmul).
        conv: how all states are computed in parallel: ``"chunk"`` (blocked matmuls), ``"fft"``,
            ``"direct"`` (conv1d) or ``"auto"`` (default: ``"chunk"`` up to order
            :data:`~torchlmu.ops.CHUNK_MAX_ORDER`, ``"fft"`` above, where the blocked kernels'
            products, ~d² per state, and their powers of Ā cost more than the FFT).

    Large orders: the ZOH discretisation is a matrix exponential of a ``(d+1, d+1)`` matrix,
    computed once for a fixed θ (13 squarings at order 4096, θ 784, each about half a product:
    ≈ 9.5·10¹¹ flops) and in every forward for a trainable one (torch's ``matrix_exp``: about
    18 dense products there, ≈ 2.5·10¹² flops); a :class:`~torchlmu.exceptions.CostWarning` gives the
    estimate where it exceeds a few seconds of one core.

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
        conv: str = "auto",
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
        self._dt = float(dt)
        self.batch_first = bool(batch_first)
        self.return_sequences = bool(return_sequences)
        self.trainable_theta = bool(trainable_theta)
        fk = {"device": device, "dtype": dtype}
        if self.trainable_theta:
            self.log_theta = nn.Parameter(torch.tensor(math.log(float(theta)), **fk))
        else:
            self.register_parameter("log_theta", None)
        self._theta = float(theta)  # the fixed θ, or the initial one of a trainable θ
        self._theta_init = float(theta)
        self.input_encoders = nn.Parameter(torch.empty(self.channels, self.input_size, **fk))
        self.memory_bias = nn.Parameter(torch.empty(self.channels, **fk)) if bias else None
        # Derived, never saved: the continuous system (float64) and, for a fixed θ, its
        # discretisation in float64 and in the module's dtype. See _refresh.
        for name in ("_A", "_B", "_Ad64", "_Bd64", "_Ad", "_Bd"):
            self.register_buffer(name, None, persistent=False)
        self._memo: dict = {}
        self.register_load_state_dict_pre_hook(_accept_old_state_dict)
        self.conv = conv
        # Forward Euler's step without Ā where it wins: A·m by two cumulative sums, O(d).
        self._euler_o_d = self.method == "euler" and self.order >= ops.EULER_O_D_MIN_ORDER
        self._warn_cost(stacklevel=3)
        self._refresh()
        self.reset_parameters()
        self.check(stacklevel=3)

    # ----------------------------------------------------------------------------- parameters
    def reset_parameters(self) -> None:
        """LeCun-uniform encoders (the LMU paper's default), zero bias, θ back to its initial value."""
        lecun_uniform_(self.input_encoders)
        if self.memory_bias is not None:
            nn.init.zeros_(self.memory_bias)
        if self.log_theta is not None:
            with torch.no_grad():
                self.log_theta.fill_(math.log(self._theta_init))
            self._refresh()  # (a fixed θ's discretisation does not change: not rebuilt)

    @property
    def conv(self) -> str:
        """The parallel method asked for (``"auto"``, ``"chunk"``, ``"fft"`` or ``"direct"``);
        setting it re-chooses the kernel."""
        return self._conv_choice

    @conv.setter
    def conv(self, value: str) -> None:
        self._conv_choice = check_choice("conv", value, ("auto", *ops.CONV_METHODS))
        self._parallel = ops.parallel_method(value, self.order)
        if value == "chunk" and self.order > ops.CHUNK_MAX_ORDER:
            d = self.order
            warnings.warn(
                f"conv='chunk' at order {d} builds up to {d} powers of the {d}x{d} state matrix "
                f"on a GPU, 64 on the CPU (up to {d**3 * 8 / 2**30:.1f} GiB in float64 and "
                f"{2 * d**4:.1e} flops) before any step, and its products cost ~d² per state; "
                f"conv='auto' or 'fft' computes only the impulse response there",
                CostWarning,
                stacklevel=3,
            )

    def _warn_cost(self, stacklevel: int) -> None:
        """A CostWarning where the ZOH matrix exponential is large (:func:`legendre.zoh_cost`)."""
        if self.method != "zoh":
            return
        d = self.order
        h = self._dt / self._theta
        products, flops = legendre.zoh_cost(d, h, structured=not self.trainable_theta)
        if flops < _WARN_FLOPS:
            return
        when = "in every forward (trainable theta)" if self.trainable_theta else "once, now"
        warnings.warn(
            f"order {d}: the ZOH discretisation is a {d + 1}x{d + 1} matrix exponential, computed "
            f"{when}: about {products} dense {d}x{d} "
            f"{'squarings' if not self.trainable_theta else 'products'}, {flops:.1e} flops "
            f"(≈ {flops / 5e10:.0f} s of one core at 50 GFLOP/s)",
            CostWarning,
            stacklevel=stacklevel + 1,
        )

    @property
    def state_size(self) -> int:
        return self.channels * self.order

    @property
    def theta(self) -> float:
        """The current window θ as a float (reads a trainable θ back from the device: not for
        a forward pass; see :meth:`theta_tensor`)."""
        if self.log_theta is None:
            return self._theta
        return float(self.log_theta.detach().exp())

    @theta.setter
    def theta(self, value: float) -> None:
        legendre.check_theta(value)
        if self.log_theta is None:
            self._theta = float(value)
        else:
            with torch.no_grad():
                self.log_theta.fill_(math.log(float(value)))
        self._refresh()
        self.check()

    @property
    def dt(self) -> float:
        return self._dt

    @dt.setter
    def dt(self, value: float) -> None:
        legendre.check_theta(value, "dt")
        self._dt = float(value)
        self._refresh()
        self.check()

    def theta_tensor(self) -> Tensor | float:
        """θ, differentiable when trainable (a float when fixed)."""
        return self._theta if self.log_theta is None else self.log_theta.exp()

    def check(self, stacklevel: int = 2) -> None:
        """Warn (:class:`UnstableDiscretizationWarning`) when the discretised memory is unstable.

        Runs at construction and whenever θ or dt is set; call it after training a θ (it reads
        the value back from the device, which a forward pass never does)."""
        theta = self.theta
        if not legendre.is_stable(self.order, theta, self.method, self.dt):
            warnings.warn(
                f"{self.method} discretisation of order {self.order} with theta={theta:g} "
                f"(dt={self.dt:g}) is unstable: theta/dt must exceed "
                f"{legendre.min_stable_theta(self.order, self.method):.4g}; use method='zoh'",
                UnstableDiscretizationWarning,
                stacklevel=stacklevel + 1,
            )

    # ------------------------------------------------------------------- saved configuration
    def get_extra_state(self) -> dict:
        """What the weights mean, saved beside them: order, channels, method, dt and a fixed θ
        (a trainable θ is the parameter ``log_theta``)."""
        state = {"order": self.order, "channels": self.channels, "method": self.method}
        state["dt"] = self.dt
        if self.log_theta is None:
            state["theta"] = self._theta
        return state

    def set_extra_state(self, state: dict) -> None:
        """Refuse weights saved for another memory (a different θ, dt, method or order would
        load silently and compute something else)."""
        mine = self.get_extra_state()
        for key, saved in state.items():
            if key in mine and mine[key] != saved:
                raise ValidationError(
                    f"state_dict: {key}",
                    f"{mine[key]!r} (this module's)",
                    f"{saved!r} (the saved module's)",
                    hint=f"build the module with {key}={saved!r} to load these weights",
                )

    # ------------------------------------------------------------- discretisation and weights
    def _refresh(self, discretized64: tuple[Tensor, Tensor] | None = None) -> None:
        """Rebuild the derived buffers from θ and dt on the parameters' device and dtype (from
        ``discretized64``, this θ's float64 (Ā, B̄) on any device, when given)."""
        self._memo.clear()
        p = self.input_encoders
        d = self.order
        if self.log_theta is None:
            self._A = None  # A (d² numbers) is needed only to discretise a trainable θ
            self._B = legendre.input_vector(d, device=p.device)
            if discretized64 is None:
                h = self._dt / self._theta
                if self.method == "zoh":  # structured: fewer d³ products, a quarter the memory
                    discretized64 = legendre.zoh(d, h, device=p.device)
                else:
                    A, B = legendre.state_space(d, device=p.device)
                    discretized64 = legendre.discretize(A, B, h, self.method)
            Ad, Bd = (t.to(p.device) for t in discretized64)
            self._Ad64, self._Bd64 = Ad, Bd
            self._Ad, self._Bd = Ad.to(p.dtype), Bd.to(p.dtype)
        else:
            self._A, self._B = legendre.state_space(d, device=p.device)
            self._Ad64 = self._Bd64 = self._Ad = self._Bd = None

    def _apply(self, fn, recurse=True):
        # .to(), .double(), .cuda(): the module-dtype Ā is re-derived from the float64 one, never
        # cast from a lower precision; the float64 one moves (its matrix exponential, d³ flops,
        # is not recomputed).
        kept = (self._Ad64, self._Bd64)
        super()._apply(fn, recurse)
        self._refresh(None if kept[0] is None else kept)
        return self

    def discretized64(self) -> tuple[Tensor, Tensor]:
        """(Ā ``(d, d)``, B̄ ``(d,)``) in float64: the buffers for a fixed θ, else computed
        from θ (differentiably)."""
        if self.log_theta is None:
            return self._Ad64, self._Bd64
        th = self.log_theta.to(torch.float64).exp()
        return legendre.discretize(self._A, self._B, self._dt / th, self.method)

    def discretized(self) -> tuple[Tensor, Tensor]:
        """(Ā, B̄) in the module's dtype (computed in float64)."""
        if self.log_theta is None:
            return self._Ad, self._Bd
        Ad, Bd = self.discretized64()
        dtype = self.input_encoders.dtype
        return Ad.to(dtype), Bd.to(dtype)

    def _derived(self, key: tuple, build):
        """``build()`` memoised under ``key`` where that is sound: a fixed θ (else the weights
        depend on the graph), eagerly (a compiled or exported graph builds them itself). The
        memo is emptied whenever θ, dt, the device or the dtype change."""
        if self.log_theta is not None or tracing():
            return build()
        val = self._memo.get(key)
        if val is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            val = self._memo[key] = build()
        return val

    def kernel(self, length: int) -> Tensor:
        """Impulse response H[k] = Ā^k B̄ ``(length, d)``, built in float64, in the module's dtype."""
        dtype = self.input_encoders.dtype

        def build():
            Ad, Bd = self.discretized64()
            return legendre.kernel_from_discrete(Ad, Bd, length).to(dtype)

        return self._derived(("H", length), build)

    def chunk_weights(self, L: int) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`ops.chunk_weights` for blocks of L steps, built in float64, in the module's dtype."""
        dtype = self.input_encoders.dtype

        def build():
            return tuple(w.to(dtype) for w in ops.chunk_weights(*self.discretized64(), L))

        return self._derived(("chunk", L), build)

    def block_powers(self, L: int) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`ops.block_powers` for blocks of L steps, in the module's dtype (memoised for a
        fixed θ: they do not depend on the projection W, which changes every training step)."""
        return self._derived(("powers", L), lambda: ops.block_powers(*self.discretized(), L))

    # ------------------------------------------------------------------------------ stages
    def encode(self, x: Tensor) -> Tensor:
        """u = E x (+ b): ``(..., I)`` -> ``(..., C)``."""
        E = self.input_encoders
        # one input: the same products broadcast (a matmul of inner size 1 took 104 µs for W2's
        # 160,000 steps, and first copied a batch-first x to rows)
        u = x * E.reshape(-1) if x.shape[-1] == 1 else x @ E.T
        return u if self.memory_bias is None else u + self.memory_bias

    def scalar_input(self, x: Tensor, m0: Tensor | None) -> bool:
        """Whether every channel's input is its encoder times x (u_c = e_c·x: a scalar input, no
        bias) and no initial state enters: then the states are linear in x alone, so the
        encoders can scale one memory of x (or fold into a projection of the states)."""
        return x.shape[-1] == 1 and self.memory_bias is None and m0 is None

    def states(self, x: Tensor, m0: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        """Every state ``(T, B, C, d)`` from x ``(T, B, I)``, m0 ``(B, C, d)`` or None.

        Steps past ``lengths`` (validated ``(B,)``) see a zero input, so padding of any value
        (NaN included) changes no valid state; a non-finite input at step t makes the states
        from t on NaN and changes none before t."""
        x = ops.mask_padding(x, lengths)
        if self.mode == "recurrent":
            Ad, Bd = self.discretized()
            return ops.memory_scan(self.encode(x), Ad, Bd, m0)
        if self._folds(x, m0):
            # u_c = e_c·x: one memory of x, scaled per channel (the memory is linear in u)
            x, bad = ops.split_nonfinite(x)
            if self._scales_through(x):
                states = functools.partial(self._all_states, m0=None)
                seq = ops.scale_through(states, x, self.input_encoders)
            else:
                seq = ops.scale_states(self._all_states(x, None), self.input_encoders)
        else:
            u, bad = ops.split_nonfinite(self.encode(x))
            seq = self._all_states(u, m0)
        return ops.poison(seq, bad)

    def last(self, x: Tensor, m0: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        """The last state ``(B, C, d)`` (at step ``lengths − 1`` per sequence): one matmul in
        parallel mode, the step loop in recurrent mode."""
        B = x.shape[1]
        if self.mode == "recurrent":
            seq = self.states(x, m0, lengths)
            return (
                seq[-1] if lengths is None else seq[lengths - 1, torch.arange(B, device=x.device)]
            )
        x = ops.mask_padding(x, lengths)
        u, bad = ops.split_nonfinite(self.encode(x))
        T = u.shape[0]
        H = self.kernel(T)
        m = ops.memory_last(u if lengths is None else ops.right_align(u, lengths), H)
        if m0 is not None:
            Ad, _ = self.discretized()
            free = ops.free_response(m0, Ad, T)  # Ā^{t+1} m0, (T, B, C, d)
            m = m + (
                free[-1] if lengths is None else free[lengths - 1, torch.arange(B, device=x.device)]
            )
        # a non-finite input in a sequence's valid part (padding is zero) makes its last state NaN
        return ops.poison(m.unsqueeze(0), None if bad is None else bad[-1:]).squeeze(0)

    def project(
        self, x: Tensor, W: Tensor, m0: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """y_t = W · flat(m_t) for all t ``(T, B, G)``, W ``(G, C·d)``, without the states
        (blocked matmuls, or one FFT/conv1d with the fused kernel W·H); padding past
        ``lengths`` reads as zero input."""
        x = ops.mask_padding(x, lengths)
        if self.mode == "recurrent":
            return self.states(x, m0).flatten(-2) @ W.T
        C, d = self.channels, self.order
        if self.scalar_input(x, m0):
            # u_c = e_c·x, so W·m(u) = (W scaled per channel by e_c)·m(x): the backward then
            # has no gradient to carry back to the memory's input (unless x needs one).
            G = W.shape[0]
            W = (W.reshape(G, C, d) * self.input_encoders.reshape(1, C, 1)).reshape(G, C * d)
            x, bad = ops.split_nonfinite(x)
            u = x.expand(*x.shape[:-1], C)
        else:
            u, bad = ops.split_nonfinite(self.encode(x))
        T = u.shape[0]
        conv = self._conv()
        if conv == "chunk":
            Ad, Bd = self.discretized()
            L = ops.fused_block_size(T, u.device)
            y = ops.fused_chunked(u, Ad, Bd, W, m0, L, self.block_powers(L))
        else:
            y = ops.fused_conv(u, ops.fused_kernel(self.kernel(T), W, C), conv)
            if m0 is not None:
                Ad, _ = self.discretized()
                y = y + ops.free_response(m0, Ad, T).flatten(-2) @ W.T
        if bad is not None:  # any channel's non-finite input reaches every projected unit
            bad = bad.any(-1, keepdim=True)
        return ops.poison(y.unsqueeze(-2), bad).squeeze(-2)

    def _folds(self, x: Tensor, m0: Tensor | None) -> bool:
        """Whether one scaled memory serves: :meth:`scalar_input`, and either several channels
        (one memory instead of C) or a backward that needs only the encoders' gradient (a dot
        product instead of the memory's transposed GEMM)."""
        if not self.scalar_input(x, m0):
            return False
        return self.channels > 1 or (
            torch.is_grad_enabled() and self.input_encoders.requires_grad and not x.requires_grad
        )

    def _conv(self) -> str:
        """The parallel method: this module's, except that torch.export traces the FFT form of
        the blocked one (its block count, ⌈T/L⌉, is a floor division of the symbolic length
        that the exporter cannot prove its slices against; torch.compile keeps the blocks)."""
        if self._parallel == "chunk" and torch.compiler.is_exporting():
            return "fft"
        return self._parallel

    def _scales_through(self, x: Tensor) -> bool:
        """Whether a folded memory of one channel is that of e·x itself, e's gradient read off
        it (:func:`ops.scale_through`: no pass to scale the states, 41 MB in W2's step): eagerly
        on the CPU (its forward reads e on the host) and for a fixed θ (a trainable θ's
        gradient flows through the memory, which scale_through computes without a graph)."""
        return (
            self.channels == 1
            and self.log_theta is None
            and x.device.type == "cpu"
            and not tracing()
        )

    def _all_states(self, u: Tensor, m0: Tensor | None) -> Tensor:
        """Every state ``(T, B, C', d)`` of a finite u ``(T, B, C')`` by this module's parallel
        method."""
        T = u.shape[0]
        conv = self._conv()
        if conv == "chunk":
            L = ops.chunk_size(T, self.order, u.device)
            Ad, Bd = self.discretized()
            return ops.memory_chunked(u, Ad, Bd, m0, L, self.chunk_weights(L))
        seq = ops.memory_conv(u, self.kernel(T), conv)
        if m0 is not None:
            Ad, _ = self.discretized()
            seq = seq + ops.free_response(m0, Ad, T)
        return seq

    # ------------------------------------------------------------------------------ module
    def initial_state(self, batch: int | None = None) -> Tensor:
        """Zero state ``(batch, C·d)``, or ``(C·d,)`` when ``batch`` is None."""
        p = self.input_encoders
        shape = (self.state_size,) if batch is None else (batch, self.state_size)
        return torch.zeros(shape, dtype=p.dtype, device=p.device)

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step: x ``(B, I)`` or ``(I,)`` -> (m_t, m_t), both ``(B, C·d)`` or ``(C·d,)``."""
        p = self.input_encoders
        x = check_input_step("input", x, self.input_size, p.dtype)
        lead = x.shape[:-1]
        if state is None:
            state = self.initial_state(x.shape[0] if x.dim() == 2 else None)
        check_state_tensor("state", state, (*lead, self.state_size), p.dtype)
        m = self.advance(state, self.encode(x))
        return m, m

    def advance(self, m: Tensor, u: Tensor) -> Tensor:
        """m_t = Ā m_{t−1} + B̄ u_t per channel, for a flat state m ``(..., C·d)`` and an encoded
        input u ``(..., C)`` (a cell's step, whose u may also depend on its state)."""
        lead = m.shape[:-1]
        m = m.reshape(*lead, self.channels, self.order)
        if self._euler_o_d:
            B = self._B.to(self.input_encoders.dtype)
            m = ops.memory_step_euler(m, u, B, self._dt / self.theta_tensor())
        else:
            Ad, Bd = self.discretized()
            m = ops.memory_step(m, u, Ad, Bd)
        return m.reshape(*lead, self.state_size)

    def forward(
        self, x: Tensor, state: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """x ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``) or ``(T, I)``; state
        ``(B, C·d)`` or ``(C·d,)``; lengths ``(B,)`` integers in [1, T] (on the CPU: they are
        value-checked). Returns (states or last state, final state)."""
        p = self.input_encoders
        x, batched = prepare_sequence("input", x, self.input_size, self.batch_first, p.dtype)
        T, B = x.shape[0], x.shape[1]
        lt = prepare_lengths("lengths", lengths, T, B, x.device)
        C, d = self.channels, self.order
        m0 = None
        if state is not None:
            shape = (B, C * d) if batched else (C * d,)
            m0 = check_state_tensor("state", state, shape, p.dtype).reshape(B, C, d)
        if self.return_sequences:
            seq = self.states(x, m0, lt)
            # the last state is one of those computed (causal: padding after it is unseen)
            last = seq[-1] if lt is None else seq[lt - 1, torch.arange(B, device=x.device)]
            y = ops.zero_padding(seq, lt).flatten(-2)  # (T, B, C·d)
        else:
            last = self.last(x, m0, lt)
            y = last.flatten(-2)
        last = last.reshape(B, C * d)
        if not batched:
            y = y.squeeze(1 if self.return_sequences else 0)
            last = last.squeeze(0)
        elif self.return_sequences and self.batch_first:
            y = y.transpose(0, 1)
        return y, last

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
