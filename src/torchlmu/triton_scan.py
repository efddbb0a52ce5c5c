"""The fully recurrent LMU cell's two step loops as one Triton kernel each (GPU fast path).

:func:`~torchlmu.recurrence.lmu_elman_scan` runs, per time step, a handful of small matmuls and
elementwise ops; on a GPU each is a kernel launch of a few microseconds, so the paper's psMNIST
model (T = 784) spends its training step launching ~20,000 kernels. Here the whole forward loop
is one kernel, and so is the backward loop: each program owns a few rows of the batch
(:data:`CONFIG`; the recurrence never mixes rows, so programs need no synchronisation with each
other) and walks all T steps, reading the weights from the cache at every step and writing
every state, as the step loop does. The weight gradients stay large matmuls over all steps,
outside the kernels.

The reference twins are the step loops of :mod:`torchlmu.recurrence` (``_lmu_elman_forward``
and ``lmu_elman_backward_steps``), which tests hold these to on the same inputs: outputs, states
and carried gradients (float64 to 1e-10, float32 to 1e-5 relative). Without a GPU the kernels run
under Triton's interpreter (``TRITON_INTERPRET=1`` set before this module is imported), which
is how the tests check them on a CPU.

Scope: one memory channel (C = 1, the paper's cell), float32 or float64, the activations of
:data:`~torchlmu.recurrence.ACTIVATIONS`, order and hidden size up to :data:`MAX_WIDTH`.
Float32 products inside use TF32 only where torch's own may
(``torch.backends.cuda.matmul.allow_tf32``, off by default), else IEEE float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["MAX_WIDTH", "applies", "lmu_elman_backward_steps", "lmu_elman_forward"]

#: Largest order d and hidden size H (each padded to a power of two) the kernels take: one
#: program holds a (BB, width) accumulator in registers.
MAX_WIDTH = 1024
_ACT = {"linear": 0, "tanh": 1, "relu": 2, "sigmoid": 3}
#: Launch settings: batch rows per program (BB; from 16, tl.dot's smallest tile, the products
#: are tl.dot, below it broadcast products: more programs, less work each), the contraction's
#: chunk (a (KC, width) weight tile per load) and warps per program at widths up to 256 and
#: above. First chosen without a GPU, by what ptxas reports for sm_90 at the paper model's
#: sizes (4 rows and 4 warps spill no register; every 16-row setting spilled 0.6–3.4 KB per
#: thread); then timed by ``benchmarks/triton_scan_sweep.py`` on an H200 (session 17, B 100,
#: T 784, d 256, H 212, medians of 10): 4 rows, chunks of 32, 4 warps took 53.0 ms per training
#: step and 29.7 ms per forward, against 73.7–80.9 and 40.4–43.5 ms for the other settings but
#: one (8 rows with chunks of 32: 337 ms), and 80.9 / 43.5 ms for chunks of 16. The wide
#: setting (order or hidden size above 256) is still untimed.
CONFIG = {"BB": 4, "KC": 32, "num_warps": 4, "num_warps_wide": 8}


def _p2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def applies(x: Tensor, channels: int, Ad: Tensor, Wh: Tensor, act: str) -> bool:
    """Whether the kernels take this scan (see the module's scope): x any of its ``(T, B, ·)``
    float sequences, the others as :func:`~torchlmu.recurrence.lmu_elman_scan`'s."""
    T, B = x.shape[0], x.shape[1]
    return (
        channels == 1
        and (T + 1) * B * max(Ad.shape[0], Wh.shape[0]) < 2**31  # the kernels' int32 offsets
        and x.dtype == Ad.dtype
        and x.dtype in (torch.float32, torch.float64)
        and act in _ACT
        and _p2(Ad.shape[0]) <= MAX_WIDTH
        and _p2(Wh.shape[0]) <= MAX_WIDTH
    )


@triton.jit
def _act_fwd(z, ACT: tl.constexpr):
    if ACT == 1:
        # tanh: (1 − e^{−2|z|})/(1 + e^{−2|z|}) with z's sign, and below |z| = 0.05, where
        # 1 − e^{−2|z|} would cancel, its odd series to z⁹ (truncation < 1e-15 relative). The
        # coefficients are integers over 2835: a literal like 1/3 would be rounded to float32.
        a = tl.abs(z)
        e = tl.exp(-2.0 * a)
        big = (1.0 - e) / (1.0 + e)
        z2 = z * z
        q = ((((62.0 * z2 - 153.0) * z2 + 378.0) * z2 - 945.0) * z2 + 2835.0) / 2835.0
        y = tl.where(a < 0.05, z * q, tl.where(z < 0, -big, big))
    elif ACT == 2:
        y = tl.maximum(z, 0.0)
    elif ACT == 3:  # sigmoid through e^{−|z|}: no overflow for any z
        e = tl.exp(-tl.abs(z))
        y = tl.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    else:
        y = z
    return y


@triton.jit
def _act_bwd(g, y, ACT: tl.constexpr):
    """g·f'(z), f' read through y = f(z) (as the step loop's aten backwards)."""
    if ACT == 1:
        r = g * (1.0 - y * y)
    elif ACT == 2:
        r = tl.where(y > 0, g, 0.0)
    elif ACT == 3:
        r = g * (y * (1.0 - y))
    else:
        r = g
    return r


@triton.jit
def _rows_matmul(acc, x_ptr, w_ptr, rows, rmask, K, N, ncols, nmask, BB: tl.constexpr,
                 KP: tl.constexpr, KC: tl.constexpr, PREC: tl.constexpr):  # fmt: skip
    """acc + X[rows, :K] @ W[:K, :N]; X row-major with K columns, W row-major with N columns.
    With fewer than 16 rows (tl.dot's smallest tile) as broadcast products summed over K."""
    kc = tl.arange(0, KC)
    for k0 in range(0, KP, KC):
        kk = k0 + kc
        km = kk < K
        x = tl.load(x_ptr + rows[:, None] * K + kk[None, :], mask=rmask[:, None] & km[None, :],
                    other=0.0)  # fmt: skip
        w = tl.load(w_ptr + kk[:, None] * N + ncols[None, :], mask=km[:, None] & nmask[None, :],
                    other=0.0)  # fmt: skip
        if BB >= 16:
            acc += tl.dot(x, w, input_precision=PREC)
        else:
            acc += tl.sum(x[:, :, None] * w[None, :, :], axis=1)
    return acc


@triton.jit
def _rows_dot(x_ptr, v_ptr, rows, rmask, K, BB: tl.constexpr, KP: tl.constexpr,
              KC: tl.constexpr):  # fmt: skip
    """X[rows, :K] @ v, one number per row."""
    kc = tl.arange(0, KC)
    s = tl.zeros((BB,), dtype=x_ptr.dtype.element_ty)
    for k0 in range(0, KP, KC):
        kk = k0 + kc
        km = kk < K
        x = tl.load(x_ptr + rows[:, None] * K + kk[None, :], mask=rmask[:, None] & km[None, :],
                    other=0.0)  # fmt: skip
        v = tl.load(v_ptr + kk, mask=km, other=0.0)
        s += tl.sum(x * v[None, :], axis=1)
    return s


@triton.jit
def _program_rows(B, D, H, BB: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr):
    """This program's batch rows and the column ranges of d and H (padded), with their masks."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cd = tl.arange(0, DP)
    ch = tl.arange(0, HP)
    return rows, rows < B, cd, cd < D, ch, ch < H


@triton.jit
def _forward_kernel(xu, xh, AT, Bd, em, eh, WmT, WhT, Ms, Hs, Us, T, B, D, H,
                    HAS_EM: tl.constexpr, HAS_EH: tl.constexpr, ACT: tl.constexpr,
                    BB: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr, KC: tl.constexpr,
                    PREC: tl.constexpr):  # fmt: skip
    # Ms (T+1, B, D) and Hs (T+1, B, H) hold the initial states in slot 0, step t's in t + 1.
    rows, rmask, cd, dmask, ch, hmask = _program_rows(B, D, H, BB, DP, HP)
    bd = tl.load(Bd + cd, mask=dmask, other=0.0)
    dt = Ms.dtype.element_ty
    for t in range(T):
        m_prev = Ms + t * B * D
        h_prev = Hs + t * B * H
        m_cur = Ms + (t + 1) * B * D
        h_cur = Hs + (t + 1) * B * H
        # u_t = xu_t + e_m·m_{t−1} + e_h·h_{t−1}
        u = tl.load(xu + t * B + rows, mask=rmask, other=0.0)
        if HAS_EM:
            u += _rows_dot(m_prev, em, rows, rmask, D, BB, DP, KC)
        if HAS_EH:
            u += _rows_dot(h_prev, eh, rows, rmask, H, BB, HP, KC)
        # m_t = m_{t−1} Āᵀ + u_t B̄ᵀ
        acc = tl.zeros((BB, DP), dtype=dt)
        acc = _rows_matmul(acc, m_prev, AT, rows, rmask, D, D, cd, dmask, BB, DP, KC, PREC)
        acc += u[:, None] * bd[None, :]
        tl.store(m_cur + rows[:, None] * D + cd[None, :], acc, mask=rmask[:, None] & dmask[None, :])
        tl.store(Us + t * B + rows, u, mask=rmask)
        tl.debug_barrier()  # m_t is read back in chunks by every thread of the program
        # h_t = f(xh_t + W_m m_t + W_h h_{t−1})
        hm = rmask[:, None] & hmask[None, :]
        pre = tl.load(xh + t * B * H + rows[:, None] * H + ch[None, :], mask=hm, other=0.0)
        pre = _rows_matmul(pre, h_prev, WhT, rows, rmask, H, H, ch, hmask, BB, HP, KC, PREC)
        pre = _rows_matmul(pre, m_cur, WmT, rows, rmask, D, H, ch, hmask, BB, DP, KC, PREC)
        tl.store(h_cur + rows[:, None] * H + ch[None, :], _act_fwd(pre, ACT), mask=hm)
        tl.debug_barrier()


@triton.jit
def _backward_kernel(Hs, gM, gH, Ad, Bd, em, eh, Wm, Wh, Gm, Gp, Gu, T, B, D, H,
                     HAS_EM: tl.constexpr, HAS_EH: tl.constexpr, HAS_GM: tl.constexpr,
                     HAS_GH: tl.constexpr, ACT: tl.constexpr, BB: tl.constexpr,
                     DP: tl.constexpr, HP: tl.constexpr, KC: tl.constexpr,
                     PREC: tl.constexpr):  # fmt: skip
    # Hs (T, B, H): the forward's hidden states. Gm (T+1, B, D) and Gp (T+1, B, H): slot
    # t + 1 holds ∂L/∂m_t and ∂L/∂(pre-activation of h_t); before step t is processed it holds
    # the gradient carried back from step t + 1 (slot T: the last states' gradients), and slot 0
    # ends as the initial states' gradients.
    rows, rmask, cd, dmask, ch, hmask = _program_rows(B, D, H, BB, DP, HP)
    dm = rmask[:, None] & dmask[None, :]
    hm = rmask[:, None] & hmask[None, :]
    bd = tl.load(Bd + cd, mask=dmask, other=0.0)
    dt = Gm.dtype.element_ty
    if HAS_EM:
        em_v = tl.load(em + cd, mask=dmask, other=0.0)
    else:
        em_v = tl.zeros((DP,), dtype=dt)
    if HAS_EH:
        eh_v = tl.load(eh + ch, mask=hmask, other=0.0)
    else:
        eh_v = tl.zeros((HP,), dtype=dt)
    for i in range(T):
        t = T - 1 - i
        gp_ptr = Gp + (t + 1) * B * H
        gm_ptr = Gm + (t + 1) * B * D
        hoff = rows[:, None] * H + ch[None, :]
        doff = rows[:, None] * D + cd[None, :]
        gp = tl.load(gp_ptr + hoff, mask=hm, other=0.0)
        if HAS_GH:
            gp += tl.load(gH + t * B * H + hoff, mask=hm, other=0.0)
        y = tl.load(Hs + t * B * H + hoff, mask=hm, other=0.0)
        gp = _act_bwd(gp, y, ACT)
        tl.store(gp_ptr + hoff, gp, mask=hm)
        tl.debug_barrier()
        # ∂L/∂m_t = carried + gM_t + gpre_t W_m;  ∂L/∂u_t = ∂L/∂m_t · B̄
        gm = tl.load(gm_ptr + doff, mask=dm, other=0.0)
        if HAS_GM:
            gm += tl.load(gM + t * B * D + doff, mask=dm, other=0.0)
        gm = _rows_matmul(gm, gp_ptr, Wm, rows, rmask, H, D, cd, dmask, BB, HP, KC, PREC)
        gu = tl.sum(gm * bd[None, :], axis=1)
        tl.store(gm_ptr + doff, gm, mask=dm)
        tl.store(Gu + t * B + rows, gu, mask=rmask)
        tl.debug_barrier()
        # carried to step t − 1: ∂L/∂m_{t−1} = ∂L/∂m_t Ā + gu e_m, ∂L/∂h_{t−1} = gpre_t W_h + gu e_h
        cm = tl.zeros((BB, DP), dtype=dt)
        cm = _rows_matmul(cm, gm_ptr, Ad, rows, rmask, D, D, cd, dmask, BB, DP, KC, PREC)
        cm += gu[:, None] * em_v[None, :]
        ch_ = tl.zeros((BB, HP), dtype=dt)
        ch_ = _rows_matmul(ch_, gp_ptr, Wh, rows, rmask, H, H, ch, hmask, BB, HP, KC, PREC)
        ch_ += gu[:, None] * eh_v[None, :]
        tl.store(Gm + t * B * D + doff, cm, mask=dm)
        tl.store(Gp + t * B * H + hoff, ch_, mask=hm)
        tl.debug_barrier()


def _launch_args(B: int, D: int, H: int, dtype: torch.dtype) -> tuple[tuple[int], dict]:
    DP, HP = _p2(D), _p2(H)
    warps = CONFIG["num_warps_wide" if max(DP, HP) > 256 else "num_warps"]
    # float32 products as torch's own on the GPU: TF32 only where torch allows it
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    BB = CONFIG["BB"]
    meta = dict(BB=BB, DP=DP, HP=HP, KC=CONFIG["KC"], PREC="tf32" if tf32 else "ieee")
    return (triton.cdiv(B, BB),), dict(meta, num_warps=warps)


def lmu_elman_forward(
    xu: Tensor,
    xh: Tensor,
    m0: Tensor,
    h0: Tensor,
    Ad: Tensor,
    Bd: Tensor,
    Em: Tensor | None,
    Eh: Tensor | None,
    Wm: Tensor,
    Wh: Tensor,
    act: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward step loop in one kernel: (memory states ``(T, B, d)``, hidden states
    ``(T, B, H)``, memory inputs u ``(T, B, 1)``), as ``recurrence._lmu_elman_forward``.

    Shapes as :func:`~torchlmu.recurrence.lmu_elman_scan` with C = 1 (see :func:`applies`)."""
    T, B, _ = xu.shape
    D, H = Ad.shape[0], Wh.shape[0]
    Ms = xu.new_empty((T + 1, B, D))
    Hs = xh.new_empty((T + 1, B, H))
    Ms[0] = m0
    Hs[0] = h0
    Us = xu.new_empty((T, B, 1))
    grid, meta = _launch_args(B, D, H, xu.dtype)
    _forward_kernel[grid](
        xu.contiguous(), xh.contiguous(), Ad.T.contiguous(), Bd.contiguous(),
        Ms if Em is None else Em.reshape(-1).contiguous(),
        Ms if Eh is None else Eh.reshape(-1).contiguous(),
        Wm.T.contiguous(), Wh.T.contiguous(), Ms, Hs, Us, T, B, D, H,
        HAS_EM=Em is not None, HAS_EH=Eh is not None, ACT=_ACT[act], **meta,
    )  # fmt: skip
    return Ms[1:], Hs[1:], Us


def lmu_elman_backward_steps(
    h0: Tensor,
    Ad: Tensor,
    Bd: Tensor,
    Em: Tensor | None,
    Eh: Tensor | None,
    Wm: Tensor,
    Wh: Tensor,
    Hs: Tensor,
    act: str,
    gM: Tensor | None,
    gH: Tensor | None,
    gm_last: Tensor | None,
    gh_last: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The backward step loop in one kernel: (∂L/∂m_t ``(T, B, d)``, ∂L/∂pre-activation
    ``(T, B, H)``, ∂L/∂u_t ``(T, B, 1)``, ∂L/∂m0 ``(B, d)``, ∂L/∂h0 ``(B, H)``), as
    ``recurrence.lmu_elman_backward_steps``; ``Hs`` the forward's hidden states (h0 is not
    read: f′ needs only the states after it)."""
    T, B, H = Hs.shape
    D = Ad.shape[0]
    Hs = Hs.contiguous()
    Gm = Hs.new_empty((T + 1, B, D))
    Gp = Hs.new_empty((T + 1, B, H))
    # slot T: the last states' gradients (zero where none is given)
    Gm[T].zero_() if gm_last is None else Gm[T].copy_(gm_last)
    Gp[T].zero_() if gh_last is None else Gp[T].copy_(gh_last)
    Gu = Hs.new_empty((T, B, 1))
    grid, meta = _launch_args(B, D, H, Hs.dtype)
    _backward_kernel[grid](
        Hs, Hs if gM is None else gM.contiguous(), Hs if gH is None else gH.contiguous(),
        Ad.contiguous(), Bd.contiguous(),
        Hs if Em is None else Em.reshape(-1).contiguous(),
        Hs if Eh is None else Eh.reshape(-1).contiguous(),
        Wm.contiguous(), Wh.contiguous(), Gm, Gp, Gu, T, B, D, H,
        HAS_EM=Em is not None, HAS_EH=Eh is not None, HAS_GM=gM is not None,
        HAS_GH=gH is not None, ACT=_ACT[act], **meta,
    )  # fmt: skip
    # the initial states' gradients as tensors of their own (a custom operator's outputs must
    # not share storage)
    return Gm[1:], Gp[1:], Gu, Gm[0].clone(), Gp[0].clone()
