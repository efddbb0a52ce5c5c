"""Pure math of the Legendre Memory: continuous system, discretisation, readout, impulse response.

Everything here is computed in float64 and cast to the requested dtype at the end, because the
matrix exponential of the LMU's (highly non-normal) state matrix loses up to 1e-5 in float32.

The continuous memory (Voelker, Kajić & Eliasmith, NeurIPS 2019) is

    θ · dm/dt = A m + B u,
    A_ij = (2i+1) · (−1 if i < j else (−1)^(i−j+1)),   B_i = (2i+1) · (−1)^i,

and its state m(t) ∈ R^d holds the window u(t − r·θ), r ∈ [0, 1], in the shifted-Legendre basis:
u(t − r·θ) ≈ Σ_i P_i(2r − 1) · m_i(t).

In discrete time with step ``dt`` (θ and dt in the same unit; the paper uses steps, dt = 1):
m_t = Ā m_{t−1} + B̄ u_t, and all states are one causal convolution with H[k] = Ā^k B̄.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._tracing import tracing
from .exceptions import ValidationError

__all__ = [
    "METHODS",
    "ZOH_SQUARE_ROWS",
    "apply_A",
    "apply_powers",
    "discretize",
    "impulse_response",
    "input_vector",
    "is_stable",
    "kernel_from_discrete",
    "min_stable_theta",
    "readout",
    "spectral_radius",
    "state_space",
    "steps_cheaper",
    "zoh",
    "zoh_block_columns",
    "zoh_cost",
]

#: Discretisation methods: zero-order hold (exact for piecewise-constant input), forward Euler,
#: and the bilinear (Tustin) transform.
METHODS = ("zoh", "euler", "bilinear")


def check_order(order: object) -> int:
    """Return ``order`` as an int, or raise a ValidationError naming it."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValidationError("order", "an integer >= 1", repr(order))
    return int(order)


def check_method(method: object) -> str:
    if method not in METHODS:
        raise ValidationError("method", f"one of {METHODS}", repr(method))
    return str(method)


def check_theta(theta: object, name: str = "theta") -> None:
    """Raise unless ``theta`` is a positive finite number (or a tensor of them)."""
    if isinstance(theta, Tensor):
        with torch.no_grad():
            ok = bool(torch.isfinite(theta).all()) and bool((theta > 0).all())
        if not ok:
            raise ValidationError(name, "positive finite values", theta.detach().cpu().tolist())
        return
    if isinstance(theta, bool) or not isinstance(theta, (int, float, np.number)):
        raise ValidationError(name, "a positive number or a tensor", repr(theta))
    if not (math.isfinite(theta) and theta > 0):
        raise ValidationError(name, "a positive finite number", repr(theta))


def _state_space_np(order: int) -> tuple[np.ndarray, np.ndarray]:
    """A and B in NumPy float64 (for the eigenvalue bound, computed outside any forward)."""
    A, B = state_space(order)
    return A.numpy(), B.numpy()


def state_space(
    order: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Continuous-time matrices of the Legendre memory for θ·dm/dt = A m + B u.

    Built with torch ops only (exact small integers in float64), so that a traced or compiled
    module may build them.

    Returns:
        A: ``(order, order)``, B: ``(order,)``.
    """
    order = check_order(order)
    f64 = {"dtype": torch.float64, "device": device}
    n = torch.arange(order, **f64)
    i, j = n.unsqueeze(1), n.unsqueeze(0)
    # (−1)^k for integer k as 1 − 2·(k mod 2) (exact; pow of a negative base is not needed)
    sign = lambda k: 1 - 2 * torch.remainder(k, 2)  # noqa: E731
    A = (2 * i + 1) * torch.where(i < j, -torch.ones_like(i - j), sign(i - j + 1))
    return A.to(dtype), input_vector(order, dtype, device)


def input_vector(
    order: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    """B of :func:`state_space` alone, B_i = (2i+1)(−1)^i ``(order,)`` (without A's d² work)."""
    n = torch.arange(check_order(order), dtype=torch.float64, device=device)
    return ((2 * n + 1) * (1 - 2 * torch.remainder(n, 2))).to(dtype)


def apply_A(m: Tensor) -> Tensor:
    """A·m along m's last dimension (d = m.shape[-1]) in O(d), without forming A.

    A = −D(U + s sᵀ ∘ L̃) with D = diag(2i+1), s_i = (−1)^i, U the upper triangle with the
    diagonal and L̃ the strict lower triangle, all of ones (the entries of :func:`state_space`:
    −(2i+1) for j >= i, (2i+1)(−1)^(i−j+1) = −(2i+1) s_i s_j for j < i). So two cumulative sums
    give it: (A m)_i = −(2i+1) (Σ_{j>=i} m_j + s_i Σ_{j<i} s_j m_j).

    Args:
        m: ``(..., d)``.
    Returns:
        ``(..., d)`` in m's dtype.
    """
    d = m.shape[-1]
    i = torch.arange(d, device=m.device, dtype=m.dtype).unsqueeze(1)
    s = 1 - 2 * torch.remainder(i, 2)
    return _A_times(m.reshape(-1, d).T, -(2 * i + 1), s).T.reshape(m.shape)


def _as_f64(x: Tensor | float, device: torch.device) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=torch.float64)
    return torch.tensor(float(x), dtype=torch.float64, device=device)


def discretize(
    A: Tensor,
    B: Tensor,
    dt: float | Tensor,
    method: str = "zoh",
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Discretise dm/dt = A m + B u with step ``dt`` (for the LMU, dt = step / θ).

    Computed in float64 whatever the inputs' dtype; gradients flow through ``dt`` when it is a
    tensor (this is how a trainable θ learns).

    Args:
        A: ``(d, d)`` continuous state matrix.
        B: ``(d,)`` continuous input vector.
        dt: scalar step (float, checked positive and finite; or a 0-d tensor, not checked, so
            that a module's forward never waits for the device).
        method: ``"zoh"`` (matrix exponential of ``[[A, B], [0, 0]]·dt``), ``"euler"``
            (Ā = I + A·dt, B̄ = B·dt) or ``"bilinear"`` (Ā = (I − A·dt/2)⁻¹(I + A·dt/2),
            B̄ = (I − A·dt/2)⁻¹ B·dt, as ``scipy.signal.cont2discrete``).
        dtype: output dtype; default: ``dt``'s dtype if it is a floating tensor, else A's.

    Returns:
        Ā ``(d, d)``, B̄ ``(d,)``.
    """
    method = check_method(method)
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValidationError("A", "a square matrix", tuple(A.shape))
    d = A.shape[0]
    if B.shape != (d,):
        raise ValidationError("B", f"shape ({d},)", tuple(B.shape))
    if isinstance(dt, Tensor) and dt.numel() != 1:
        raise ValidationError("dt", "a scalar", f"a tensor of shape {tuple(dt.shape)}")
    if not isinstance(dt, Tensor):  # a tensor is not value-checked: that would be a host sync
        check_theta(dt, "dt")
    if dtype is None:
        dtype = dt.dtype if isinstance(dt, Tensor) and dt.is_floating_point() else A.dtype
    dev = A.device
    A64 = A.to(torch.float64)
    B64 = B.to(torch.float64)
    h = _as_f64(dt, dev).reshape(())
    eye = torch.eye(d, dtype=torch.float64, device=dev)
    if method == "zoh":
        M = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=dev)
        M[:d, :d] = A64
        M[:d, d] = B64
        E = torch.linalg.matrix_exp(M * h)
        Ad, Bd = E[:d, :d], E[:d, d]
    elif method == "euler":
        Ad = eye + A64 * h
        Bd = B64 * h
    else:  # bilinear
        lhs = eye - A64 * (h / 2)
        Ad = torch.linalg.solve(lhs, eye + A64 * (h / 2))
        Bd = torch.linalg.solve(lhs, B64 * h)
    return Ad.to(dtype), Bd.to(dtype)


def _A_times(P: Tensor, D: Tensor, s: Tensor, overwrite: bool = False) -> Tensor:
    """c·(A @ P) for P ``(d, n)`` and D = −(2i+1)·c ``(d, 1)``, in O(d·n) with two temporaries
    (one with ``overwrite``, which takes P's storage for its cumulative sum).

    (A P)_i = −(2i+1)(Σ_j P_j − Σ_{j<=i} P_j + s_i Σ_{j<=i} s_j P_j): :func:`apply_A`'s two
    cumulative sums, with Σ_{j>=i} P_j written as the total minus the inclusive sum (s_i² = 1
    folds the two P_i terms). The sums run in place: torch's in-place cumsum along rows took
    0.06 s against the out-of-place one's 0.29 s on a 4096 × 4097 float64 matrix (1 thread)."""
    Q = P * s
    C = P.cumsum_(0) if overwrite else P.clone().cumsum_(0)
    total = C[-1:].clone()
    Q.cumsum_(0).mul_(s).sub_(C).add_(total)
    del C
    return Q.mul_(D)


def zoh(
    order: int, h: float, dtype: torch.dtype = torch.float64, device=None
) -> tuple[Tensor, Tensor]:
    """(Ā, B̄) of the LMU's memory by zero-order hold with step h = dt/θ, without forming A.

    exp([[A, B], [0, 0]]·h) by scaling and squaring: the Taylor series of the scaled matrix
    X = [[A, B], [0, 0]]·h/2^s (‖X‖₁ <= 4, degree 30: truncation below 1e-16, rounding within
    u·e⁴) by Horner's rule, whose products with A cost O(d²) each (:func:`apply_A`'s two
    cumulative sums), then s squarings, the only d³ work: s = ⌈log2(d²h/4)⌉, against
    :func:`zoh_cost`'s 5 + ⌈log2(d²h/3.01)⌉ products of ``torch.linalg.matrix_exp``, whose
    reference twin this is (:func:`discretize`). Float64 inside; not differentiable in h (a
    trainable θ uses :func:`discretize`).

    A column of X·P depends on the same column of P alone, so on a CPU the Taylor sum is
    taken in blocks of :func:`zoh_block_columns` columns, each through all 30 terms while it
    stays in cache (bit for bit the same sum; at order 4096 its 30 passes over 134 MB were a
    fifth of the time).

    Returns:
        Ā ``(order, order)``, B̄ ``(order,)``.
    """
    d = check_order(order)
    check_theta(h, "h")
    f64 = {"dtype": torch.float64, "device": device}
    sq = max(0, math.ceil(math.log2(max(d * d * h / 4.0, 1.0))))
    g = h / 2**sq
    i = torch.arange(d, **f64).unsqueeze(1)
    s = 1 - 2 * torch.remainder(i, 2)
    B = input_vector(d, device=i.device)  # also the P of Ā·diag(P)'s symmetry: P_i = B_i
    terms = [(-(2 * i + 1) * (g / k), B * (g / k)) for k in range(30, 0, -1)]
    Ad, Bd = torch.empty(d, d, **f64), torch.empty(d, **f64)
    w = zoh_block_columns(d, i.device)
    for c0 in range(0, d + 1, w):
        P = _taylor_columns(d, c0, min(c0 + w, d + 1), terms, s)
        n = min(c0 + w, d) - c0  # columns of Ā in this block; B̄ is column d
        Ad[:, c0 : c0 + n] = P[:, :n]
        if c0 + w > d:
            Bd.copy_(P[:, -1])
    del P
    buf = torch.empty_like(Ad)
    for _ in range(sq):  # [[Ā, B̄], [0, 1]]² = [[Ā², Ā B̄ + B̄], [0, 1]]
        Bd = torch.addmv(Bd, Ad, Bd)
        _square_p_symmetric(Ad, B, out=buf)  # Ā·diag(B) is symmetric
        Ad, buf = buf, Ad
    return Ad.to(dtype), Bd.to(dtype)


#: Rows per block of :func:`zoh`'s squarings (:func:`_square_p_symmetric`): at orders 1024,
#: 2048 and 4096 blocks of 256 rows were the fastest tried (a one-off timing, 2 threads: 0.024,
#: 0.135 and 0.88 s per squaring against 0.028, 0.183 and 1.41 s for the whole product;
#: ``benchmarks/zoh_parts.py`` times the whole ZOH with and without the blocks).
ZOH_SQUARE_ROWS = 256


def _square_p_symmetric(Ad: Tensor, P: Tensor, out: Tensor) -> Tensor:
    """Ā² into ``out`` for a d×d Ā with Ā·diag(P) symmetric, in about half a product's flops.

    The ZOH's Ā is such a matrix for P_i = (−1)^i (2i+1): A = diag(2i+1)·M where M's signs
    satisfy S M S = Mᵀ (S = diag((−1)^i)), so A·diag(P) is symmetric, Aᵀ = P⁻¹ A P, and every
    power series of A, e^{Ah} and its square included, is P-symmetric too. So each block of
    :data:`ZOH_SQUARE_ROWS` rows of Ā² is multiplied out up to its diagonal block only, and
    the entries above the diagonal are read off those below: (Ā²)_ji = (Ā²)_ij P_j / P_i. Their
    terms are the terms of (Ā²)_ij, each times P_j / P_i, so the rounding bound is a full
    product's; the result is P-symmetric to two roundings per entry (the ratio, the product)."""
    d = Ad.shape[0]
    n = max(1, d // ZOH_SQUARE_ROWS)
    if n == 1:
        return torch.mm(Ad, Ad, out=out)
    edges = [round(k * d / n) for k in range(n + 1)]
    for r0, r1 in itertools.pairwise(edges):
        torch.mm(Ad[r0:r1], Ad[:, :r1], out=out[r0:r1, :r1])
    for r0, r1 in itertools.pairwise(edges):
        Pb = P[r0:r1]
        out[:r0, r0:r1] = out[r0:r1, :r0].T * (P[:r0, None] / Pb)  # rows above the block
        diag = out[r0:r1, r0:r1]
        diag.copy_(diag.tril() + (diag.T * (Pb[:, None] / Pb)).triu(1))
    return out


def zoh_block_columns(order: int, device: torch.device) -> int:
    """Columns per block of :func:`zoh`'s Taylor sum: on a CPU about 512 KB of float64 rows
    (the best of a one-off sweep on the 2-core machine: the sum took 0.36 s against 0.95 s
    whole at order 2048, 0.9–1.7 s against 4.9 s at 4096; ``benchmarks/zoh_parts.py`` times
    the whole ZOH with and without), the whole matrix (d + 1 columns) where that is fewer
    blocks or on a GPU, whose kernel launches favour one block."""
    d = check_order(order)
    if device.type != "cpu":
        return d + 1
    return min(d + 1, max(16, 2**16 // d))


def _taylor_columns(d: int, c0: int, c1: int, terms: list, s: Tensor) -> Tensor:
    """Columns c0:c1 of the top d rows of Σ_k X^k/k! (k <= 30) by Horner's rule,
    P <- I + X·P/k for k = 30 … 1 with ``terms`` [(−(2i+1)·g/k, B·g/k)]: the bottom-right
    entry of X is 0 and P's last row is always e_d, so X·P's top rows are
    g·(A P_top + B ⊗ e_d)."""
    n, eye = c1 - c0, min(c1, d) - c0  # columns, of which of the identity
    P = torch.zeros(d, n, dtype=s.dtype, device=s.device)
    P[c0 : c0 + eye, :eye].diagonal().fill_(1.0)
    for D, B in terms:
        P = _A_times(P, D, s, overwrite=True)  # (g/k)·A P_top
        if c1 == d + 1:
            P[:, -1] += B
        P[c0 : c0 + eye, :eye].diagonal().add_(1.0)
    return P


def zoh_cost(order: int, h: float, structured: bool = True) -> tuple[int, float]:
    """(dense d×d products, flops) of the ZOH discretisation of order d with step h = dt/θ.

    ``structured``: :func:`zoh`'s ⌈log2(d²h/4)⌉ squarings (its Taylor series costs O(d²) per
    term), each about (n + 1)/2n of a product's flops in n blocks of :data:`ZOH_SQUARE_ROWS`
    rows (:func:`_square_p_symmetric`). Else ``torch.linalg.matrix_exp`` (scaling and
    squaring, Bader, Blanes & Casas 2019; a trainable θ's path): about 5 + ⌈log2(‖M‖₁/3.01)⌉
    products of (d+1)² matrices for M = [[A, B], [0, 0]]·h, whose 1-norm is d²·h (every column
    of A sums to d² in magnitude, as does B)."""
    d = check_order(order)
    if structured:
        products = max(0, math.ceil(math.log2(max(d * d * h / 4.0, 1.0))))
        n = max(1, d // ZOH_SQUARE_ROWS)
        return products, products * 2.0 * d**3 * (n + 1) / (2 * n)
    products = 5 + max(0, math.ceil(math.log2(max(d * d * h / 3.01, 1.0))))
    return products, products * 2.0 * (d + 1) ** 3


def readout(
    order: int, r: Sequence[float] | Tensor | float, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Shifted-Legendre decoders: ``readout(order, r) @ m_t ≈ u(t − r·θ)``, r ∈ [0, 1].

    Row k holds P_i(2·r_k − 1), i = 0…order−1 (Bonnet's recurrence, float64).

    Returns:
        ``(len(r), order)``.
    """
    order = check_order(order)
    r64 = torch.as_tensor(r, dtype=torch.float64).reshape(-1)
    if bool(((r64 < 0) | (r64 > 1)).any()) or not bool(torch.isfinite(r64).all()):
        raise ValidationError("r", "values in [0, 1]", r64.tolist())
    x = 2 * r64 - 1
    P = torch.empty(len(x), order, dtype=torch.float64)
    P[:, 0] = 1
    if order > 1:
        P[:, 1] = x
    for n in range(1, order - 1):
        P[:, n + 1] = ((2 * n + 1) * x * P[:, n] - n * P[:, n - 1]) / (n + 1)
    return P.to(dtype)


def apply_powers(x0: Tensor, Ad: Tensor, length: int) -> Tensor:
    """out[k] = Ā^k x0 (acting on x0's last dimension) for k < length, by doubling.

    out[L:2L] = out[0:L] (Ā^L)ᵀ, so each entry is reached through about log2(length) matrix
    products instead of k: the rounding error does not grow with the length as a step
    recurrence's does. Computed in the inputs' dtype; differentiable.

    The doubling squares Ā about log2(length) times (d³ flops each). Where those squarings
    would cost far more than the products with x0 themselves (large orders, few rows, short
    lengths: see :func:`steps_cheaper`), the powers are stepped instead, out[k+1] = Ā out[k],
    accumulated in float64 so that the rounding of a float32 input does not grow with k.

    Args:
        x0: ``(..., d)``.  Ad: ``(d, d)``.
    Returns:
        ``(length, ..., d)``.
    """
    if isinstance(length, torch.SymInt) or tracing():  # possibly symbolic: one graph for all
        return _powers_op(x0, Ad, length)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValidationError("length", "an integer >= 0", repr(length))
    return _apply_powers(x0, Ad, int(length))


def steps_cheaper(order: int, rows: int, length: int) -> bool:
    """Whether stepping ``rows`` vectors through ``length`` powers of a ``(order, order)`` Ā
    (length·rows·d² flops) beats doubling, whose ≈log2(length) squarings cost d³ each: when the
    squarings would cost more than 8× the products that are needed anyway (at order 4096 and
    length 100, one vector: 7 squarings of 1.4·10¹¹ flops against 100 products of 3.4·10⁷)."""
    return length > 1 and (length - 1).bit_length() * order > 8 * length * max(1, rows)


def _step_powers(x0: Tensor, Ad: Tensor, length: int) -> Tensor:
    """out[k] = Ā^k x0 by the recurrence (float64 accumulation), for :func:`apply_powers`."""
    A64 = Ad.to(torch.float64).mT
    m = x0.to(torch.float64)
    out = [m]
    for _ in range(length - 1):
        m = m @ A64
        out.append(m)
    return torch.stack(out, 0).to(torch.promote_types(x0.dtype, Ad.dtype))


def _apply_powers(x0: Tensor, Ad: Tensor, length: int) -> Tensor:
    d = Ad.shape[-1]
    if steps_cheaper(d, x0.numel() // max(1, d), length):
        return _step_powers(x0, Ad, length)
    return _double_powers(x0, Ad, length)


def _double_powers(x0: Tensor, Ad: Tensor, length: int) -> Tensor:
    """out[k] = Ā^k x0 by doubling, for :func:`apply_powers`."""
    out = x0.unsqueeze(0)
    P = Ad  # Ā^n, n = len(out)
    while out.shape[0] < length:
        n = out.shape[0]
        out = torch.cat([out, out[: length - n] @ P.mT], 0)
        if out.shape[0] < length:
            P = P @ P
    return out[:length]


# Under torch.compile(dynamic=True) or torch.export the number of doublings depends on the
# symbolic length: the doubling is then a custom operator, whose backward differentiates the
# doubling recomputed through autograd (differentiable again in grad mode).
@torch.library.custom_op("torchlmu::apply_powers", mutates_args=())
def _powers_op(x0: Tensor, Ad: Tensor, length: int) -> Tensor:
    return _apply_powers(x0, Ad, length).clone()


@_powers_op.register_fake
def _(x0, Ad, length):
    return x0.new_empty((length, *x0.shape))  # contiguous, as the doubling's cat returns


def _powers_setup(ctx, inputs, output):
    x0, Ad, length = inputs
    ctx.save_for_backward(x0, Ad)
    ctx.length = length


def _powers_backward(ctx, g):
    x0, Ad = ctx.saved_tensors
    if torch.is_grad_enabled():  # a double backward: differentiate the doubling itself
        gx, gA = _powers_grads(x0, Ad, ctx.length, g, create=True)
    else:
        gx, gA = _powers_bwd_op(x0, Ad, ctx.length, g)
    return gx, gA, None


def _powers_grads(x0, Ad, length, g, create):
    """(∂/∂x0, ∂/∂Ā) of <g, powers>: by autograd through the doubling recomputed (in grad mode,
    a double backward), else by torch.func.vjp (which also works inside an operator, where
    autograd does not record)."""
    if not create:
        _, vjp = torch.func.vjp(lambda x, A: _apply_powers(x, A, length), x0, Ad)
        return vjp(g)
    with torch.enable_grad():
        x0, Ad = (v if v.requires_grad else v.detach().requires_grad_() for v in (x0, Ad))
        out = _apply_powers(x0, Ad, length)
        return torch.autograd.grad(out, (x0, Ad), g, create_graph=True)


# (the backward is an operator too: AOTAutograd traces a custom operator's backward formula,
# where the doubling's loop would fix the length)
@torch.library.custom_op("torchlmu::apply_powers_backward", mutates_args=())
def _powers_bwd_op(x0: Tensor, Ad: Tensor, length: int, g: Tensor) -> tuple[Tensor, Tensor]:
    gx, gA = _powers_grads(x0, Ad, length, g, create=False)
    return gx.contiguous(), gA.contiguous()


@_powers_bwd_op.register_fake
def _(x0, Ad, length, g):
    return x0.new_empty(x0.shape), Ad.new_empty(Ad.shape)


_powers_op.register_autograd(_powers_backward, setup_context=_powers_setup)


def kernel_from_discrete(Ad: Tensor, Bd: Tensor, length: int) -> Tensor:
    """Impulse response H[k] = Ā^k B̄ for k < length (see :func:`apply_powers`). ``(length, d)``."""
    return apply_powers(Bd, Ad, length)


def impulse_response(
    order: int,
    theta: float | Tensor,
    length: int,
    method: str = "zoh",
    dt: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """H[k] = Ā^k B̄ of the memory with window ``theta`` (in units of ``dt``), float64 inside.

    Differentiable in ``theta`` when it is a tensor. Returns ``(length, order)``.
    """
    order = check_order(order)
    check_theta(theta)
    A, B = state_space(order, device=theta.device if isinstance(theta, Tensor) else None)
    th = _as_f64(theta, A.device)
    Ad, Bd = discretize(A, B, dt / th, method, dtype=torch.float64)
    return kernel_from_discrete(Ad, Bd, length).to(dtype)


@functools.lru_cache(maxsize=256)
def _eigvals(order: int) -> np.ndarray:
    A, _ = _state_space_np(order)
    return np.linalg.eigvals(A)


def min_stable_theta(order: int, method: str = "euler") -> float:
    """Smallest θ/dt for which the discretised memory is stable (0 for ZOH and bilinear).

    Forward Euler maps each eigenvalue λ of A to 1 + λ·dt/θ; ``|1 + λ/x| < 1`` iff
    ``x > −|λ|² / (2 Re λ)``. (The folk rule "θ > 4·order" is wrong for large orders: order 256
    needs several thousand steps.) Eigenvalues come from NumPy in float64; for orders in the
    hundreds they carry a few digits of error, which this bound inherits.
    """
    order = check_order(order)
    method = check_method(method)
    if method != "euler":
        return 0.0  # A is Hurwitz: ZOH and bilinear map it inside the unit circle for any θ
    lam = _eigvals(order)
    return float(np.max(-(np.abs(lam) ** 2) / (2 * lam.real)))


def is_stable(order: int, theta: float, method: str = "zoh", dt: float = 1.0) -> bool:
    """Whether the discretised memory (order, θ, method) has all eigenvalues inside the unit circle."""
    check_theta(theta)
    return float(theta) / float(dt) > min_stable_theta(order, method)


def spectral_radius(Ad: Tensor) -> float:
    """Largest absolute eigenvalue of a discrete state matrix (computed in float64)."""
    return float(torch.linalg.eigvals(Ad.detach().to(torch.float64).cpu()).abs().max())
