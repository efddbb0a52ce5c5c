"""Stateless tensor operations of the Legendre memory (no parameters, no modules).

Layout: time first. ``u`` is ``(T, *batch, C)`` (C independent memory channels), states are
``(..., C, d)``. Every fast operation here has a slow, obvious twin it is tested against:

=====================================  ==========================================
fast                                   reference
=====================================  ==========================================
:func:`memory_conv` (``"fft"``)        :func:`memory_scan` (step loop), ``"direct"``
:func:`memory_last` (one matmul)       last row of :func:`memory_scan`
:func:`fused_conv` (FFT, W·H kernel)   :func:`memory_scan` then the projection
:func:`free_response` (doubling)       :func:`memory_scan` with zero input
:func:`matmul` (oneDNN on the CPU)     :func:`matmul_reference` (``a @ b``)
:func:`carry_scan` (~√n-call passes)   :func:`carry_scan_reference` (step loop)
:func:`linear` (oneDNN step products)   :func:`linear_reference` (``x @ wᵀ + add``)
:func:`scale_states` (dot backward)    ``M * e`` (autograd's multiply)
:func:`scale_through` (f(e·x))         :func:`scale_through_reference` (``f(x) · e``)
=====================================  ==========================================
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._tracing import tracing
from .exceptions import ValidationError
from .legendre import apply_A, apply_powers

__all__ = [
    "CALL_FLOPS",
    "CHUNK_MAX_ORDER",
    "CONV_METHODS",
    "EULER_O_D_MIN_ORDER",
    "ONEDNN_STEP_MIN_FLOPS",
    "block_carries_reference",
    "block_powers",
    "carry_scan",
    "carry_scan_reference",
    "chunk_weights",
    "free_response",
    "fused_block_size",
    "fused_chunked",
    "fused_conv",
    "fused_kernel",
    "linear",
    "linear_reference",
    "mask_padding",
    "matmul",
    "matmul_reference",
    "memory_chunked",
    "memory_conv",
    "memory_last",
    "memory_scan",
    "memory_step",
    "memory_step_euler",
    "next_fast_len",
    "parallel_method",
    "poison",
    "right_align",
    "scale_states",
    "scale_through",
    "scale_through_reference",
    "scan_groups",
    "split_nonfinite",
    "step_linear",
    "zero_padding",
]

#: How the parallel memory computes all states: blocked matmuls (the CPU's fastest), FFT, conv1d.
CONV_METHODS = ("chunk", "fft", "direct")
#: Above this order ``conv="auto"`` takes the FFT, whose set-up is the impulse response alone
#: (T·d numbers), where the blocked kernels' GEMMs (~d² per state) and set-up (L powers of Ā:
#: L·d² numbers) cost more. 512 until session 14; then, with the CPU's shorter blocks
#: (``benchmarks/conv_threshold.py``, 2 cores), the FFT took 0.56-0.96 of the blocks' time at
#: order 512 in all ten shapes and phases (the states of T 784 B 16: 11.8 against 19.1 ms; the
#: psMNIST-sized LMU's projection, B 16: 30.6 against 54.9), and the blocks were the faster at
#: 384 in six of ten.
CHUNK_MAX_ORDER = 384


#: From this order on, :func:`memory_step_euler` (O(d)) beats the dense Euler step (O(d²)):
#: measured 73 vs 78 µs at order 512, 198 µs vs 8.3 ms at order 4096 (batch 1, one thread).
EULER_O_D_MIN_ORDER = 512


def parallel_method(conv: str, order: int) -> str:
    """The parallel method of ``conv`` (one of :data:`CONV_METHODS` or ``"auto"``) at ``order``:
    ``"auto"`` is ``"chunk"`` up to :data:`CHUNK_MAX_ORDER`, ``"fft"`` above."""
    if conv != "auto":
        return conv
    return "chunk" if order <= CHUNK_MAX_ORDER else "fft"


_KERNEL_METHODS = ("fft", "direct")  # those that take the impulse response H


def memory_step(m: Tensor, u: Tensor, Ad: Tensor, Bd: Tensor) -> Tensor:
    """One step m_t = Ā m_{t−1} + B̄ u_t per channel.

    Args:
        m: ``(..., C, d)`` previous state.  u: ``(..., C)``.  Ad: ``(d, d)``.  Bd: ``(d,)``.
    Returns:
        ``(..., C, d)``.
    """
    return m @ Ad.mT + u.unsqueeze(-1) * Bd


def memory_step_euler(m: Tensor, u: Tensor, B: Tensor, h: Tensor | float) -> Tensor:
    """One forward-Euler step m + h·(A m + B u_t) in O(d) per channel (A·m by two cumulative
    sums, :func:`~torchlmu.legendre.apply_A`): the fast twin of :func:`memory_step` with
    Ā = I + A·h, B̄ = B·h, for large orders (the dense step costs d² per row).

    Args:
        m: ``(..., C, d)``.  u: ``(..., C)``.  B: ``(d,)`` continuous input vector.
        h: dt/θ (a float, or a 0-d tensor for a trainable θ).
    Returns:
        ``(..., C, d)``.
    """
    return m + h * (apply_A(m) + u.unsqueeze(-1) * B)


def memory_scan(u: Tensor, Ad: Tensor, Bd: Tensor, m0: Tensor | None = None) -> Tensor:
    """Reference: all states by the plain step loop. ``u (T, ..., C)`` -> ``(T, ..., C, d)``."""
    d = Ad.shape[-1]
    m = u.new_zeros((*u.shape[1:], d)) if m0 is None else m0
    out = []
    for t in range(u.shape[0]):
        m = memory_step(m, u[t], Ad, Bd)
        out.append(m)
    return torch.stack(out, 0) if out else u.new_zeros((0, *u.shape[1:], d))


def _blocks(T: int, L: int) -> int:
    """Blocks of L steps covering T: ⌈T/L⌉, or T//L + 2 for a symbolic T (at least two blocks
    whatever T is, so that no reshape of the padded input depends on whether T <= L; the extra
    block of padding costs L/T)."""
    if not _symbolic(T):
        return (T + L - 1) // L
    J = T // L + 2
    torch._check(T <= J * L)  # true, but beyond what the symbolic shapes can prove from floor
    return J


def _to_blocks(x: Tensor, J: int, L: int) -> Tensor:
    """x ``(..., T)`` as J blocks of L steps ``(..., J, L)``, zero-padded at the end. (Written into
    a zero tensor through a merged view: splitting a padded length of symbolic size into
    (J, L) would ask torch.export to prove a divisibility it cannot.)"""
    T = x.shape[-1]
    if not _symbolic(T) and J * L == T:
        return x.unflatten(-1, (J, L))
    out = x.new_zeros((*x.shape[:-1], J, L))
    out.flatten(-2)[..., :T] = x
    return out


def _rows(u: Tensor) -> int:
    """The number of sequences times channels of a time-major u: its size without time (an
    explicit product: a reshape's −1 divides by the symbolic T under torch.export)."""
    n = 1
    for s in u.shape[1:]:
        n *= s
    return n


def next_fast_len(n: int) -> int:
    """Smallest 2^a·3^b·5^c >= n (sizes pocketfft and cuFFT handle fastest)."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def _fft_len(T: int) -> int:
    """Transform length of a linear convolution of T steps: a fast size >= 2T − 1, or 2T for a
    symbolic T (its fast size would depend on its value)."""
    return 2 * T if _symbolic(T) else next_fast_len(2 * T - 1)


def _check_conv_method(method: str) -> None:
    if method not in _KERNEL_METHODS:
        raise ValidationError("method", f"one of {_KERNEL_METHODS}", repr(method))


def memory_conv(u: Tensor, H: Tensor, method: str = "fft") -> Tensor:
    """All states from a zero initial state: m_t = Σ_{k<=t} H[k] u_{t−k}.

    Args:
        u: ``(T, ..., C)``.  H: ``(L, d)`` impulse response with L >= T.
        method: ``"fft"`` (O(T log T), any length) or ``"direct"`` (conv1d, O(T²), short T).
    Returns:
        ``(T, ..., C, d)``.
    """
    _check_conv_method(method)
    T = u.shape[0]
    d = H.shape[-1]
    H = H[:T]
    if T == 0:
        return u.new_zeros((0, *u.shape[1:], d))
    if method == "fft":
        # FFTs along the last, contiguous dimension (time last) are the fast ones here.
        n = _fft_len(T)
        Uf = torch.fft.rfft(u.reshape(T, _rows(u)).T, n=n)  # (N·C, F)
        Hf = torch.fft.rfft(H.T, n=n)  # (d, F)
        if torch.is_grad_enabled() and (u.requires_grad or H.requires_grad):
            y = torch.fft.irfft(Uf.unsqueeze(1) * Hf, n=n)[..., :T]  # (N·C, d, T)
            return y.permute(2, 0, 1).reshape(T, *u.shape[1:], d)
        # Inference: a few rows at a time into the output, so that the spectra and padded
        # signals (each 2x the output's size) never exist for the whole batch at once.
        NC = Uf.shape[0]
        out = u.new_empty((T, NC, d))
        step = max(1, -(-NC // 8))
        for i in range(0, NC, step):
            y = torch.fft.irfft(Uf[i : i + step].unsqueeze(1) * Hf, n=n)[..., :T]
            out[:, i : i + step].copy_(y.permute(2, 0, 1))
        return out.reshape(T, *u.shape[1:], d)
    x = u.reshape(T, _rows(u)).T.unsqueeze(1)  # (N·C, 1, T)
    w = H.flip(0).T.unsqueeze(1)  # (d, 1, T): conv1d correlates, so flip the kernel
    y = F.conv1d(F.pad(x, (T - 1, 0)), w)  # (N·C, d, T)
    return y.permute(2, 0, 1).reshape(T, *u.shape[1:], d)


def chunk_size(T: int, d: int, device: torch.device | str = "cpu") -> int:
    """Block length of :func:`memory_chunked` on ``device``, preferring a divisor of T within
    ±50 % (no padded tail to slice off).

    The all-states GEMM costs ~2·T·d·(L + d) flops per sequence and the carry ~T/L calls of
    d² work each: their sum is least near L = √(c·d), c the cost of a carry's call in GEMM
    flops per state. On the CPU L = √(8d), within [16, 64] (``benchmarks/chunk_size_sweep.py``,
    2 cores, orders 16-512, two sittings: within 5 % of the fastest L swept at orders 64-512 and
    9 % at order 16, where L ≈ d took up to 2.5x as long at order 512). Elsewhere (a GPU, whose
    carry calls are launch-bound and whose GEMMs are cheap) about the order, as before (16 at
    least), until a sweep there says otherwise."""
    if torch.device(device).type == "cpu":
        base = min(64, max(16, round(math.sqrt(8 * d))))
    else:
        base = max(16, 8 * -(-d // 8))
    return _divisor_near(T, base if _symbolic(T) else min(T, base))


def _symbolic(T: int) -> bool:
    """Whether T may be symbolic (inside torch.compile or torch.export): then no choice may
    depend on its value, so that one graph serves every length."""
    return isinstance(T, torch.SymInt) or tracing()


def _divisor_near(T: int, base: int) -> int:
    """The divisor of T nearest ``base`` within base ± base/2 (and >= 16), else ``base``: blocks
    that tile T exactly leave no padded tail, whose slicing costs a zero-filled copy of the whole
    output in the backward. A symbolic T (torch.compile with dynamic shapes, torch.export) gets
    ``base``, so that one graph serves every length."""
    if _symbolic(T):
        return base
    for delta in range(0, base // 2 + 1):
        for L in (base + delta, base - delta):
            if 16 <= L <= T and T % L == 0:
                return L
    return base


def chunk_weights(Ad: Tensor, Bd: Tensor, L: int) -> tuple[Tensor, Tensor, Tensor]:
    """What :func:`memory_chunked` multiplies by, for blocks of L steps: (H reversed ``(L, d)``,
    whose product with a block's inputs is its zero-state last state; (Ā^L)ᵀ ``(d, d)``, the
    carry from block to block; [[Toeplitz of H], [Ā¹ … Ā^L]] ``(L + d, L·d)``). Depends on Ā, B̄
    and L only, so a module may build it once (in float64) and reuse it."""
    d = Ad.shape[-1]
    H, P, lag = block_powers(Ad, Bd, L)
    Htoe = (H[lag.clamp(min=0)] * (lag >= 0).unsqueeze(-1).to(H.dtype)).reshape(L, L * d)
    PL = P.permute(1, 0, 2).reshape(d, L * d)
    return H.flip(0), P[-1], torch.cat([Htoe, PL], 0)


def block_powers(Ad: Tensor, Bd: Tensor, L: int) -> tuple[Tensor, Tensor, Tensor]:
    """What both blocked kernels build on: H ``(L, d)`` (H[k] = Ā^k B̄), P ``(L, d, d)``
    (P[s] = (Ā^{s+1})ᵀ) and the lag matrix ``(L, L)`` ([i, s] = s − i) of a block's Toeplitz."""
    i = torch.arange(L, device=Ad.device)
    return apply_powers(Bd, Ad, L), apply_powers(Ad.mT, Ad, L), i.unsqueeze(0) - i.unsqueeze(1)


def memory_chunked(
    u: Tensor,
    Ad: Tensor,
    Bd: Tensor,
    m0: Tensor | None = None,
    L: int | None = None,
    weights: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """All states by blocks of L steps: two large matmuls and a short sequential carry.

    With t = jL + s, m_t = Σ_{k<=s} H[k] u_{t−k} (the block's own input, zero state: one matmul
    with the L×(L·d) Toeplitz matrix of H) + Ā^{s+1} S_j (the state S_j entering block j: one
    matmul with [Ā¹ … Ā^L]); S_{j+1} = Ā^L S_j + (block j's own last state) is a recurrence over
    T/L blocks only. O(T·(L + d)·d) flops per sequence, all in BLAS, no FFT; exact up to
    rounding; differentiable; the initial state m0 enters as S_0.

    Args:
        u: ``(T, ..., C)``.  Ad: ``(d, d)``.  Bd: ``(d,)``.  m0: ``(..., C, d)`` or None.
        weights: :func:`chunk_weights` of (Ad, Bd, L), if already built (then only Ad's shape
            is read).
    Returns:
        ``(T, ..., C, d)``: a permuted view of a sequence-contiguous ``(..., C, T, d)`` tensor.
    """
    T = u.shape[0]
    d = Ad.shape[-1]
    L = chunk_size(T, d, u.device) if L is None else L
    J = _blocks(T, L)
    x = u.reshape(T, _rows(u)).T  # (R, T), R = N·C rows
    R = x.shape[0]
    Hrev, AL, W = chunk_weights(Ad, Bd, L) if weights is None else weights
    xb = _to_blocks(x, J, L).flatten(0, 1)  # (R·J, L)
    if _symbolic(T) or J > 1 or m0 is not None:
        E = (xb @ Hrev).unflatten(0, (R, J))  # each block's own (zero-state) last state
        S0 = None if m0 is None else m0.reshape(R, d)
        # One GEMM writes every state once: [block inputs | state entering the block] times
        # [[Toeplitz of H], [Ā¹ … Ā^L]] (a Toeplitz product plus an in-place carry product
        # wrote, then re-read and re-wrote, the whole output).
        if _carries_need_graph(E, AL, S0):
            A = torch.cat([xb, _block_carries(E, AL, S0).flatten(0, 1)], 1)
        else:  # the carry written straight into the GEMM's input (no copies to lay it out)
            A = xb.new_empty((R * J, L + d))
            A[:, :L] = xb
            _carries_forward(E, AL, S0, out=A[:, L:].view(R, J, d).transpose(0, 1))
        Y = matmul(A, W)
    else:
        Y = matmul(xb, W[:L])  # zero-state states of every block
    Y = Y.unflatten(0, (R, J)).unflatten(-1, (L, d)).flatten(1, 2)[:, :T]  # (R, T, d)
    return Y.unflatten(0, u.shape[1:]).movedim(-2, 0)


def _block_carries(E: Tensor, AL: Tensor, S0: Tensor | None) -> Tensor:
    """States entering each block: S_0 = m0 (or 0), S_{j+1} = S_j (Ā^L)ᵀ + E_j. E ``(R, J, d)``.

    The sequential part of the blocked memory, as the custom operator
    ``torchlmu::block_carries`` when a gradient is needed or a graph is traced (one node for any
    number of blocks); twin: :func:`block_carries_reference`."""
    if _carries_need_graph(E, AL, S0):
        return _block_carries_op(E, AL, S0)
    return _carries_forward(E, AL, S0).transpose(0, 1)  # (R, J, d), a view


def _carries_need_graph(E: Tensor, AL: Tensor, S0: Tensor | None) -> bool:
    """Whether the carries must be the custom operator's: a gradient is needed or a graph is
    traced (else :func:`_carries_forward` writes them in place)."""
    if tracing():
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (E, AL, S0))


def block_carries_reference(E: Tensor, AL: Tensor, S0: Tensor | None) -> Tensor:
    """Reference twin of the block carries: the plain loop, through autograd."""
    R, _, d = E.shape
    S, carry = S0, []
    for Ej in E.unbind(1):
        carry.append(E.new_zeros((R, d)) if S is None else S)
        S = Ej if S is None else torch.addmm(Ej, S, AL)
    return torch.stack(carry, 1)


def _carries_forward(E: Tensor, AL: Tensor, S0: Tensor | None, out: Tensor | None = None) -> Tensor:
    """``(J, R, d)`` carries: the states :func:`carry_scan` reaches from E's first J − 1 blocks
    (into ``out``, any strides, where given)."""
    if E.shape[1] == 0:  # no block, no carry (carry_scan would still return S_0)
        return E.new_empty((0, E.shape[0], E.shape[2])) if out is None else out
    return carry_scan(E.transpose(0, 1)[:-1], AL, S0, out)


#: What one call of a small product costs, in the flops it could do instead: a scan step's
#: call is worth splitting away when the flops it saves exceed those the split adds. On this
#: project's 2-core AVX-512 CPU the split broke even at about 1.4·10⁶ per call saved (199
#: steps: won at 16 × 64 and 16 × 128 states, tied at 32 × 128, lost at 64 × 128 and at
#: order 512, where P^K's d³ products dominate); a GPU's launch of a few µs is worth far more.
CALL_FLOPS = {"cpu": 1e6, "cuda": 1e8}


def scan_groups(n: int, R: int, d: int, device: torch.device) -> int:
    """:func:`carry_scan`'s group length K for n steps of R × d states on ``device``, or 0 for
    the step loop (benchmarks/floors.py times the carry's kernels by it)."""
    K = math.ceil(math.sqrt((n + 1) / 2))
    G = -(-(n + 1) // K)
    saved = n - (2 * K + G)  # calls; at least one from n = 11 on
    if saved <= 0:
        return 0
    powers = K.bit_length() + K.bit_count() - 2  # matrix_power's products for P^K
    extra = 2 * n * R * d * d + 2 * d**3 * powers  # flops: pass 1 again, and P^K
    return K if saved * CALL_FLOPS.get(device.type, CALL_FLOPS["cuda"]) > extra else 0


@torch.no_grad()
def carry_scan(E: Tensor, P: Tensor, S0: Tensor | None, out: Tensor | None = None) -> Tensor:
    """States S_0 … S_n ``(n + 1, R, d)`` of S_{j+1} = S_j P + E_j, S_0 = S0 (or zero), for E
    ``(n, R, d)`` (any strides) and P ``(d, d)``, into ``out`` (any strides, sharing no memory
    with E, P or S0) where given. Not differentiable (it writes in place); the blocked memory's
    carry and its backward. Twin: :func:`carry_scan_reference`.

    A step's product is often too small to cost more than the call that makes it; then (see
    :data:`CALL_FLOPS`) the n steps run in groups of K ≈ √(n/2), batched across groups:
    (1) every group from a zero state, to its end state Z_g; (2) the states entering the
    groups, S_{(g+1)K} = S_{gK} P^K + Z_g (one step per group); (3) every group again from its
    entering state, writing all states. About 2K + n/K calls instead of n (37 for n = 199) and
    twice the flops; the result differs from the step loop's by rounding only (P^K is one
    product where the loop makes K)."""
    n, R, d = E.shape
    if out is None:
        out = E.new_empty((n + 1, R, d))
    K = scan_groups(n, R, d, E.device)
    if not K:
        _start(out[0], S0)
        for j in range(n):
            torch.addmm(E[j], out[j], P, out=out[j + 1])
        return out
    G = -(-(n + 1) // K)  # groups, holding states 0 … G·K − 1 ⊇ 0 … n
    Eg = E.new_empty((K, G, R, d))  # [k, g] = E_{gK+k}; zero past E_{n−1} (those inputs only
    _steps_to_groups(Eg, E)  # reach states past S_n)
    Eg = Eg.view(K, G * R, d)
    Z, buf = Eg[0].clone(), torch.empty_like(Eg[0])  # (1): after step 0 from zero, Z = E_{gK}
    for k in range(1, K):
        torch.addmm(Eg[k], Z, P, out=buf)
        Z, buf = buf, Z
    Z = Z.view(G, R, d)
    St = E.new_empty((K, G, R, d))  # [k, g] = S_{gK+k}
    S = St[0]  # (2): the entering states
    _start(S[0], S0)
    PK = torch.linalg.matrix_power(P, K)
    for g in range(G - 1):
        torch.addmm(Z[g], S[g], PK, out=S[g + 1])
    flat = St.view(K, G * R, d)  # (3)
    for k in range(K - 1):
        torch.addmm(Eg[k], flat[k], P, out=flat[k + 1])
    return _groups_to_steps(out, St)


def _steps_to_groups(Eg: Tensor, E: Tensor) -> None:
    """Eg ``(K, G, R, d)`` [k, g] ← E[gK + k] for E's n steps ``(n, R, d)`` (any strides), zero
    past them: one strided copy per full group set and one for a partial group."""
    K, G = Eg.shape[:2]
    q, r = divmod(E.shape[0], K)
    by_group = Eg.transpose(0, 1)  # (G, K, R, d)
    if q:
        by_group[:q].copy_(E[: q * K].unflatten(0, (q, K)))
    if r:
        by_group[q, :r].copy_(E[q * K :])
    if q < G:
        by_group[q, r:].zero_()
        by_group[q + 1 :].zero_()


def _groups_to_steps(out: Tensor, St: Tensor) -> Tensor:
    """out ``(m, R, d)`` (any strides) [gK + k] ← St ``(K, G, R, d)`` [k, g] for out's m steps."""
    K = St.shape[0]
    q, r = divmod(out.shape[0], K)
    by_group = St.transpose(0, 1)  # (G, K, R, d)
    if q:
        out[: q * K].unflatten(0, (q, K)).copy_(by_group[:q])
    if r:
        out[q * K :].copy_(by_group[q, :r])
    return out


def _start(slot: Tensor, S0: Tensor | None) -> None:
    """Write the initial state S0 (or zero) into a scan's first slot."""
    if S0 is None:
        slot.zero_()
    else:
        slot.copy_(S0)


def carry_scan_reference(E: Tensor, P: Tensor, S0: Tensor | None) -> Tensor:
    """Reference twin of :func:`carry_scan`: the step loop, through autograd."""
    S = E.new_zeros(E.shape[1:]) if S0 is None else S0
    states = [S]
    for Ej in E.unbind(0):
        S = S @ P + Ej
        states.append(S)
    return torch.stack(states)


@torch.library.custom_op("torchlmu::block_carries", mutates_args=())
def _block_carries_op(E: Tensor, AL: Tensor, S0: Tensor | None) -> Tensor:
    return _carries_forward(E, AL, S0).transpose(0, 1).contiguous()


@_block_carries_op.register_fake
def _(E, AL, S0):
    return torch.empty_like(E)


def _carries_setup(ctx, inputs, output):
    _, AL, S0 = inputs
    ctx.save_for_backward(AL, output)
    ctx.has_s0 = S0 is not None


def _carries_grads(AL: Tensor, S: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """With G_j = ∂L/∂S_j: G_{J−1} = g_{J−1}, G_j = g_j + G_{j+1} A_Lᵀ; ∂L/∂E_j = G_{j+1}
    (E_{J−1} unused), ∂L/∂A_L = Σ_j S_jᵀ G_{j+1}, ∂L/∂S_0 = G_0. With grad mode on (a double
    backward) as a loop without in-place updates, so that it is differentiable itself; else
    by :func:`carry_scan`."""
    R, J, d = S.shape
    if torch.is_grad_enabled():  # a double backward: a differentiable loop
        Gs = [g[:, J - 1]]
        for j in range(J - 2, -1, -1):
            Gs.append(g[:, j] + Gs[-1] @ AL.T)
        G = torch.stack(Gs[::-1], 1)  # (R, J, d)
    else:  # the same recurrence run backwards in time: a carry scan of the reversed g
        gr = g.flip(1).transpose(0, 1)  # (J, R, d), last block first
        G = carry_scan(gr[1:], AL.T, gr[0]).flip(0).transpose(0, 1)
    gE = torch.cat([G[:, 1:], G.new_zeros((R, 1, d))], 1)
    gAL = S[:, :-1].reshape(-1, d).T @ G[:, 1:].reshape(-1, d)
    return gE, gAL, G[:, 0]


def _carries_backward(ctx, g: Tensor):
    AL, S = ctx.saved_tensors
    if torch.is_grad_enabled():  # a double backward: the differentiable form
        gE, gAL, g0 = _carries_grads(AL, S, g)
    else:
        gE, gAL, g0 = _carries_bwd_op(AL, S, g)
    return gE, gAL, (g0 if ctx.has_s0 else None)


# AOTAutograd traces a custom operator's backward formula into the compiled graph, where a
# Python loop over the blocks would fix their number: the backward loop is an operator too.
@torch.library.custom_op("torchlmu::block_carries_backward", mutates_args=())
def _carries_bwd_op(AL: Tensor, S: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    with torch.no_grad():
        gE, gAL, g0 = _carries_grads(AL, S, g)
    return gE.contiguous(), gAL.contiguous(), g0.contiguous()


@_carries_bwd_op.register_fake
def _(AL, S, g):
    return S.new_empty(S.shape), AL.new_empty(AL.shape), S.new_empty((S.shape[0], S.shape[2]))


_block_carries_op.register_autograd(_carries_backward, setup_context=_carries_setup)


def fused_block_size(T: int, device: torch.device | str = "cpu") -> int:
    """Block length of :func:`fused_chunked` for T steps on ``device``: a divisor of T near 16
    on the CPU, near 32 elsewhere (a divisor avoids a padded tail).

    Its carry costs T·d·G flops per sequence whatever L is; short blocks keep the Toeplitz part
    (T·L·G) small. On 2 CPU cores (``benchmarks/fused_block_sweep.py``, the psMNIST-sized LMU,
    T 784) L = 16 took 0.88-0.99 of L = 28's time, the most at order 384 and batch 16. L = 32
    (28 for T 784), measured fastest for W1 in an earlier session and the CPU's rule until
    session 14, stays on a GPU, where no sweep has run yet."""
    base = 16 if torch.device(device).type == "cpu" else 32
    return _divisor_near(T, base if _symbolic(T) else min(T, base))


def fused_chunked(
    u: Tensor,
    Ad: Tensor,
    Bd: Tensor,
    W: Tensor,
    m0: Tensor | None = None,
    L: int | None = None,
    powers: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """y_t = W · flat(m_t) for all t by blocks of L steps, without the d-dimensional states.

    The blocked twin of :func:`fused_conv`: y_{jL+s} = Σ_{i<=s} (W·H[s−i]) u_{jL+i} (one matmul
    with the Toeplitz matrix of W·H) + W (Ā^{s+1}) S_j (one matmul with [W Ā¹ … W Ā^L]), S_j the
    state entering block j (a recurrence over the T/L blocks on the block-end states).

    Args:
        u: ``(T, ..., C)``.
        Ad: ``(d, d)``.
        Bd: ``(d,)``.
        W: ``(G, C·d)`` on the flat channel-major state.
        m0: ``(..., C, d)`` or None.
        L: the block length (default :func:`fused_block_size`).
        powers: :func:`block_powers` of (Ad, Bd, L), if already built (they depend on Ā, B̄
            and L only, not on W: a module with a fixed θ keeps them).
    Returns:
        ``(T, ..., G)`` (a view of a sequence-contiguous tensor).
    """
    T, C = u.shape[0], u.shape[-1]
    d = Ad.shape[-1]
    G = W.shape[0]
    L = fused_block_size(T, u.device) if L is None else L
    J = _blocks(T, L)
    x = u.reshape(T, _rows(u) // C, C).permute(1, 2, 0)  # (N, C, T)
    N = x.shape[0]
    x = _to_blocks(x, J, L)  # (N, C, J, L)
    # (L, d), (L, d, d): P[s] = (Ā^{s+1})ᵀ, (L, L)
    H, P, lag = block_powers(Ad, Bd, L) if powers is None else powers
    Wc = W.reshape(G, C, d)
    KH = torch.einsum("kd,gcd->ckg", H, Wc)  # (C, L, G): W·H per channel
    Ktoe = KH[:, lag.clamp(min=0)] * (lag >= 0).unsqueeze(-1).to(H.dtype)  # (C, L_i, L_s, G)
    xin = x.permute(0, 2, 1, 3).flatten(2).flatten(0, 1)  # (N·J, C·L): rows (n, j), cols (c, i)
    E = (x.flatten(0, 2) @ H.flip(0)).unflatten(0, (N * C, J))  # block-end states, zero start
    S = _block_carries(E, P[-1], None if m0 is None else m0.reshape(N * C, d))  # (N·C, J, d)
    PW = torch.einsum("sik,gck->cisg", P, Wc).reshape(C * d, L * G)  # W Ā^{s+1} per channel
    Sin = S.unflatten(0, (N, C)).permute(0, 2, 1, 3).flatten(2).flatten(0, 1)  # (N·J, C·d)
    # one GEMM writes each output once: [block inputs | states entering the blocks] times
    # [[Toeplitz of W·H], [W Ā¹ … W Ā^L]] (N·J, L·G)
    Y = matmul(torch.cat([xin, Sin], 1), torch.cat([Ktoe.reshape(C * L, L * G), PW], 0))
    Y = Y.unflatten(0, (N, J)).unflatten(-1, (L, G)).flatten(1, 2)[:, :T]  # (N, T, G)
    return Y.unflatten(0, u.shape[1:-1]).movedim(-2, 0)


def memory_last(u: Tensor, H: Tensor) -> Tensor:
    """The last state alone, m_{T−1} = Σ_t H[T−1−t] u_t, as one matmul (Chilkuri & Eliasmith 2021).

    Args:
        u: ``(T, ..., C)``.  H: ``(L, d)``, L >= T.
    Returns:
        ``(..., C, d)``.
    """
    T = u.shape[0]
    d = H.shape[-1]
    return (u.reshape(T, _rows(u)).T @ H[:T].flip(0)).reshape(*u.shape[1:], d)


def fused_kernel(H: Tensor, W: Tensor, channels: int) -> Tensor:
    """Kernel of the memory followed by a linear map: K[k, g, c] = Σ_i W[g, c·d + i] H[k, i].

    Args:
        H: ``(T, d)``.  W: ``(G, C·d)`` acting on the flat channel-major state.
    Returns:
        ``(T, G, C)``.
    """
    T, d = H.shape
    G = W.shape[0]
    return (H @ W.reshape(G * channels, d).T).reshape(T, G, channels)


def fused_conv(u: Tensor, K: Tensor, method: str = "fft") -> Tensor:
    """y_t = Σ_{k<=t} Σ_c K[k, :, c] u_{t−k, c}: the memory projected by W without materialising
    the d-dimensional states (with K = :func:`fused_kernel` (H, W), y_t = W · flat(m_t)).

    Args:
        u: ``(T, ..., C)``.  K: ``(L, G, C)``, L >= T.
    Returns:
        ``(T, ..., G)``.
    """
    _check_conv_method(method)
    T = u.shape[0]
    G, C = K.shape[1], K.shape[2]
    K = K[:T]
    batch = u.shape[1:-1]
    if T == 0:
        return u.new_zeros((0, *batch, G))
    x = u.reshape(T, _rows(u) // C, C)  # (T, N, C)
    if method == "fft":
        n = _fft_len(T)
        Uf = torch.fft.rfft(x.permute(1, 2, 0), n=n)  # (N, C, F), time last
        Kf = torch.fft.rfft(K.permute(1, 2, 0), n=n)  # (G, C, F)
        if C == 1:
            Yf = Uf * Kf.squeeze(1)  # (N, 1, F) * (G, F) -> (N, G, F)
        else:
            Yf = torch.einsum("ncf,gcf->ngf", Uf, Kf)
        y = torch.fft.irfft(Yf, n=n)[..., :T].permute(2, 0, 1)  # (T, N, G), a view
    else:
        w = K.flip(0).permute(1, 2, 0)  # (G, C, T)
        y = F.conv1d(F.pad(x.permute(1, 2, 0), (T - 1, 0)), w).permute(2, 0, 1)
    return y.reshape(T, *batch, G)


def free_response(m0: Tensor, Ad: Tensor, length: int) -> Tensor:
    """Contribution of an initial state to every later state: out[t] = Ā^{t+1} m0, by doubling.

    Args:
        m0: ``(..., d)``.  Ad: ``(d, d)``.
    Returns:
        ``(length, ..., d)``.
    """
    return apply_powers(m0 @ Ad.mT, Ad, length)


def right_align(u: Tensor, lengths: Tensor) -> Tensor:
    """Shift each sequence so that its last valid step lands at T−1 (zeros in front).

    Because the memory is causal and starts at zero, the last state of the right-aligned
    sequence is the state at step ``lengths[b] − 1`` of the original.

    Args:
        u: ``(T, B, ...)``.  lengths: ``(B,)`` integers in [1, T].
    Returns:
        ``(T, B, ...)``.
    """
    T = u.shape[0]
    t = torch.arange(T, device=u.device).unsqueeze(1)  # (T, 1)
    src = t - (T - lengths.to(u.device)).unsqueeze(0)  # (T, B)
    valid = src >= 0
    B = lengths.shape[0]
    idx = src.clamp(min=0).reshape(T, B, *([1] * (u.dim() - 2))).expand_as(u)
    out = torch.gather(u, 0, idx)
    return torch.where(valid.reshape(T, B, *([1] * (u.dim() - 2))), out, out.new_zeros(()))


# ------------------------------------------------------------------ the large products
#: Use oneDNN's float32 matmul on the CPU where torch has it, for the blocked memory's large
#: products (:func:`matmul`) and the step loops' (:func:`linear`); False keeps every product on
#: torch's. On the 2-core AVX-512 AMD EPYC of the
#: benchmarks torch's (MKL's) sgemm ran 2048³ at 226 GFLOP/s and oneDNN's at 487 GFLOP/s; W1's
#: projection GEMM took 36.5 against 59.1 ms (benchmarks/onednn_probe.py).
ONEDNN_MATMUL = True
#: Smallest product (rows x inner x columns) given to oneDNN: below it a call's fixed costs
#: (oneDNN's primitive lookup, an operand's copy) outweigh the faster kernel.
ONEDNN_MIN_FLOPS = 1 << 24


@functools.cache
def _onednn_linear():
    """oneDNN's linear ``(x, W (out, in)) -> x Wᵀ`` as torch exposes it (an Inductor operator),
    or None where this torch build lacks it or it disagrees with torch.mm on a probe (W
    contiguous, and W a transposed view, which :class:`_OneDNNMatmul` passes without a copy)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise.default
        if not torch.backends.mkldnn.is_available():
            return None
        g = torch.Generator().manual_seed(0)
        a, w = torch.randn(64, 48, generator=g), torch.randn(40, 48, generator=g)
        wt = torch.randn(48, 40, generator=g).T  # a transposed view: read in place, no copy
        ok = all(
            torch.allclose(op(a, v, None, "none", [], ""), a @ v.T, rtol=1e-5, atol=1e-5)
            for v in (w, wt)
        )
    except (AttributeError, RuntimeError):  # no such operator, or no kernel on this CPU
        return None
    return op if ok else None


class _OneDNNMatmul(torch.autograd.Function):
    """a @ b by oneDNN, b read as the operator's weight Wᵀ in place (a transposed view of a
    row-major b, or a row-major view of a column-major one: no copy). The backward's two
    products go through :func:`matmul` again: ∂L/∂a = g bᵀ (oneDNN reads b as it is) and ∂L/∂b
    = aᵀ g (g read in place, aᵀ copied: it is the small operand of the blocked memory's
    products), 20 against 45 ms each with torch's at W1's shapes; as :func:`matmul` calls, a
    double backward differentiates them."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        if not (b.is_contiguous() or b.T.is_contiguous()):
            b = b.contiguous()
        return _onednn_linear()(a.contiguous(), b.T, None, "none", [], "")

    @staticmethod
    def backward(ctx, g: Tensor):
        a, b = ctx.saved_tensors
        g = g.contiguous()
        ga = matmul(g, b.T) if ctx.needs_input_grad[0] else None
        gb = matmul(a.T, g) if ctx.needs_input_grad[1] else None
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 2-D ``a`` ``(M, K)`` and ``b`` ``(K, N)``: by oneDNN when both are float32
    on the CPU, the product is large (:data:`ONEDNN_MIN_FLOPS`), the code runs eagerly and
    :data:`ONEDNN_MATMUL` allows it; else by torch (twin: :func:`matmul_reference`). The two
    differ by float32 rounding only (about 3e-7 relative at the blocked memory's shapes, 6e-7
    for the gradients). Tuned for those shapes (K small, N wide): for a long-K product with a
    narrow N, e.g. a recurrence's weight gradient (212 × 78,400) @ (78,400 × 212), torch's was
    faster here (38 against 61 ms), so the recurrences' weight gradients keep torch's products
    (their step products go through :func:`linear`)."""
    if (
        ONEDNN_MATMUL
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and a.device.type == "cpu"
        and not tracing()
        and a.shape[0] * a.shape[1] * b.shape[1] >= ONEDNN_MIN_FLOPS
        and _onednn_linear() is not None
    ):
        return _OneDNNMatmul.apply(a, b)
    return a @ b


def matmul_reference(a: Tensor, b: Tensor) -> Tensor:
    """Reference twin of :func:`matmul`: torch's own product."""
    return a @ b


#: Smallest product (rows x inner x columns: multiply-adds) a step loop's :func:`linear` gives
#: oneDNN: each call
#: has a fixed cost of 11–14 µs there, so below about 2·10⁶ torch's was as fast or faster on the
#: benchmark CPU ((32 × 212)·(212 × 212): 20.6 against 19.4 µs; (100 × 212)·(212 × 212), an
#: Elman step of W1: 34 against 50 µs; (100 × 256)·(256 × 256): 39 against 68 µs).
ONEDNN_STEP_MIN_FLOPS = 1 << 21


def linear(x: Tensor, w: Tensor, add: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """``x wᵀ (+ add)`` for x ``(M, K)``, w ``(N, K)`` (contiguous, or a transposed view of a
    contiguous ``(K, N)``: read in place), add ``(M, N)`` of x's dtype, written into ``out`` if
    given (which may be ``add``, but must not overlap x or w): a step loop's product. By oneDNN
    where that is faster (float32 on the CPU, eagerly, outside autograd, a product of
    :data:`ONEDNN_STEP_MIN_FLOPS` or more, with :data:`ONEDNN_MATMUL`), its sum with ``add``
    then by torch (oneDNN's fused addition measured slower here: 43.7 against 41.1 µs at W1's
    step), else by torch.addmm. A step loop chooses once, by :func:`step_linear`. Twin:
    :func:`linear_reference`."""
    return step_linear(x, w, add)(x, w, add, out)


def step_linear(x: Tensor, w: Tensor, add: Tensor | None = None) -> Callable[..., Tensor]:
    """:func:`linear`'s engine for a step loop's product, chosen once from one step's operands:
    ``f(x, w, add=None, out=None)``, which computes what :func:`linear` does for every call
    whose operands share these ones' dtypes, device, shapes and contiguity and the autograd
    state (the slices of one buffer in one loop do). :func:`linear` decides at each call, which
    cost 6–10 µs of its ~80 at W1's Elman step (1,568 calls per training step)."""
    M, K = x.shape
    onednn = (
        ONEDNN_MATMUL
        and M * K * w.shape[0] >= ONEDNN_STEP_MIN_FLOPS
        and x.dtype == w.dtype == torch.float32
        and x.device.type == "cpu"
        and x.is_contiguous()
        and (w.is_contiguous() or w.T.is_contiguous())
        and (add is None or add.dtype == x.dtype)
        and not tracing()
        and not (
            torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, add))
        )
        and _onednn_linear() is not None
    )
    return _linear_onednn if onednn else _linear_torch


def _linear_onednn(x: Tensor, w: Tensor, add: Tensor | None = None, out: Tensor | None = None):
    y = _onednn_linear()(x, w, None, "none", [], "")
    if add is None:
        return y if out is None else out.copy_(y)
    return y.add_(add) if out is None else torch.add(y, add, out=out)


def _linear_torch(x: Tensor, w: Tensor, add: Tensor | None = None, out: Tensor | None = None):
    if add is None:
        return x @ w.T if out is None else torch.mm(x, w.T, out=out)
    if out is add:
        return out.addmm_(x, w.T)
    return torch.addmm(add, x, w.T, out=out) if out is not None else torch.addmm(add, x, w.T)


def linear_reference(x: Tensor, w: Tensor, add: Tensor | None = None) -> Tensor:
    """Reference twin of :func:`linear`: torch's product."""
    return x @ w.T if add is None else add + x @ w.T


def _states_dot(g: Tensor, M: Tensor) -> Tensor:
    """Σ g[..., c, :] · M[..., 0, :] per channel c ``(C, 1)``, for M ``(..., 1, d)`` and g
    ``(..., C, d)``: with one channel a dot product that reads both once in their memory order
    (autograd's multiply backward writes g·M out in full, then sums it)."""
    order = sorted(range(M.dim()), key=lambda i: -M.stride(i))
    Mo, go = M.permute(order), g.permute(order)
    if g.shape[-2] == 1 and Mo.is_contiguous() and go.is_contiguous():
        return torch.dot(go.reshape(-1), Mo.reshape(-1)).reshape(1, 1)
    return (g * M).sum((*range(M.dim() - 2), -1)).unsqueeze(-1)


class _ScaleStates(torch.autograd.Function):
    @staticmethod
    def forward(ctx, M: Tensor, e: Tensor) -> Tensor:
        ctx.save_for_backward(M, e)
        return M * e

    @staticmethod
    def backward(ctx, g: Tensor):
        M, e = ctx.saved_tensors
        gM = g * e if ctx.needs_input_grad[0] else None
        ge = _states_dot(g, M) if ctx.needs_input_grad[1] else None
        return gM, ge


def scale_states(M: Tensor, e: Tensor) -> Tensor:
    """``M * e``: states of one channel ``(..., 1, d)`` scaled per channel by ``e`` ``(C, 1)`` to
    ``(..., C, d)``, whose backward computes e's gradient as a dot product over the states
    instead of writing out the product (twin: ``M * e``)."""
    if e.dim() != 2 or e.shape[1] != 1 or M.shape[-2] != 1:
        raise ValidationError(
            "e", "a (C, 1) tensor scaling states of shape (..., 1, d)", tuple(e.shape)
        )
    return _ScaleStates.apply(M, e)


def _divides_exactly(e: Tensor) -> bool:
    """Whether <g, e·M>/e recovers <g, M> to rounding: e finite and far from underflow (|e| at
    least √(the dtype's smallest normal)). Reads e on the host."""
    tiny = torch.finfo(e.dtype).tiny ** 0.5
    return bool((torch.isfinite(e) & (e.abs() >= tiny)).all())


class _ScaleThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, e: Tensor, x: Tensor, f) -> Tensor:
        ctx.f, ctx.x, ctx.M = f, None, None
        if _divides_exactly(e):
            S = f(x * e)
            # S is kept unsaved (its version noted) and returned detached: the output is then no
            # view made inside this Function, so that it may be changed in place (an in-place
            # ReLU after the memory), which only costs the backward f(x) again
            ctx.S, ctx.version, ctx.x = S, S._version, x.detach().clone()
        else:  # e = 0 (or inf, or near underflow): the memory of x, then scaled
            ctx.M = f(x)
            S = ctx.M * e
        ctx.save_for_backward(e)
        return S.detach()

    @staticmethod
    def backward(ctx, g: Tensor):
        (e,) = ctx.saved_tensors
        if ctx.M is not None:
            M = ctx.M
        elif ctx.S._version == ctx.version:
            # <g, S>/e with e detached: a function of g alone, as <g, M> is (double backward)
            return _states_dot(g, ctx.S) / e.detach(), None, None
        else:  # the output was changed in place: f(x) once more
            M = ctx.f(ctx.x)
        return _states_dot(g, M), None, None


def scale_through(f, x: Tensor, e: Tensor) -> Tensor:
    """e·f(x) for a map f linear in x ``(..., 1)`` returning states ``(..., 1, d)``, and one
    scale e ``(1, 1)``, computed as f(e·x): no pass over the states to scale them. e's gradient
    is <g, f(e·x)>/e, one dot product over the output. Where e is 0, not finite or near
    underflow, f(x) is computed and scaled instead (and its copy saved); where the output is
    changed in place before the backward, the backward computes f(x) again (from a copy of x).
    x gets no gradient. The forward reads e on the host: for the CPU, eagerly (neither traced
    nor under compiled autograd). Twin: :func:`scale_through_reference`."""
    if e.shape != (1, 1) or x.shape[-1] != 1:
        raise ValidationError(
            "e", "a (1, 1) scale of an input of shape (..., 1)", (tuple(e.shape), tuple(x.shape))
        )
    return _ScaleThrough.apply(e, x, f)


def scale_through_reference(f, x: Tensor, e: Tensor) -> Tensor:
    """f(x) · e by autograd's multiply."""
    return f(x) * e.reshape(1, 1)


# ------------------------------------------------------------------ padding and non-finite input
def mask_padding(x: Tensor, lengths: Tensor | None) -> Tensor:
    """x ``(T, B, ...)`` with every step t >= lengths[b] set to zero (whatever it held: NaN,
    inf or 1e30 padding then changes nothing a causal memory computes before it)."""
    if lengths is None:
        return x
    return torch.where(_valid(lengths, x), x, x.new_zeros(()))


def zero_padding(y: Tensor, lengths: Tensor | None) -> Tensor:
    """Outputs ``(T, B, ...)`` past each sequence's end set to zero (the ``lengths`` contract)."""
    return mask_padding(y, lengths)


def _valid(lengths: Tensor, like: Tensor) -> Tensor:
    T = like.shape[0]
    valid = torch.arange(T, device=like.device).unsqueeze(1) < lengths.to(like.device)
    return valid.reshape(T, lengths.shape[0], *([1] * (like.dim() - 2)))


def split_nonfinite(u: Tensor) -> tuple[Tensor, Tensor | None]:
    """(u with its non-finite entries zeroed, the mask ``(T, ..., K)`` of steps at or after the
    first non-finite entry of each sequence and channel) for u ``(T, ..., K)``.

    The parallel memories mix a block's (or, by FFT, the whole sequence's) inputs in one
    product, where 0·NaN = NaN would reach earlier steps: they run on the zeroed input and
    :func:`poison` marks the steps a step loop would have made non-finite. Eagerly on the CPU,
    where it costs no device synchronisation, a finite u returns (u, None) without a copy.
    """
    if u.device.type == "cpu" and not tracing():
        # a finite sum proves every entry finite (an inf or NaN entry makes the sum inf or NaN)
        # in one reduction, 8-14x faster than the elementwise test, which is left for a sum that
        # overflowed
        if bool(torch.isfinite(u.sum())) or bool(torch.isfinite(u).all()):
            return u, None
    finite = torch.isfinite(u)
    after = torch.cummax((~finite).to(torch.uint8), 0).values.bool()
    return torch.where(finite, u, u.new_zeros(())), after


def poison(y: Tensor, after: Tensor | None) -> Tensor:
    """y ``(T, ..., K, ...)`` set to NaN where ``after`` ``(T, ..., K)`` (from
    :func:`split_nonfinite`) is True, broadcast over y's trailing dimensions."""
    if after is None:
        return y
    mask = after.reshape(*after.shape, *([1] * (y.dim() - after.dim())))
    return torch.where(mask, y.new_full((), float("nan")), y)
