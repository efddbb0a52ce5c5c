"""The fully recurrent LMU cell's two step loops as one Triton kernel each (GPU fast path).

:func:`~torchlmu.recurrence.lmu_elman_scan` runs, per time step, a handful of small matmuls and
elementwise ops; on a GPU each is a kernel launch of a few microseconds, so the paper's psMNIST
model (T = 784) spends its training step launching ~20,000 kernels. Here the whole forward loop
is one kernel, and so is the backward loop, in one of two forms (:data:`CONFIG` ``"form"``, from
``TORCHLMU_TRITON_FORM``):

- ``"rows"`` (the default): each program owns a few rows of the batch (the recurrence never
  mixes rows, so programs need no synchronisation with each other) and walks all T steps,
  reading all the weights from the cache at every step;
- ``"cols"``: each program owns 16 or more rows and a slice of the output columns, holds its
  slice of the weights for all T steps, and waits for the other programs of its rows at a
  barrier after each step (:data:`COLS`; see the kernels' comment).

Both write every state, as the step loop does. The weight gradients stay large matmuls over all
steps, outside the kernels.

The reference twins are the step loops of :mod:`torchlmu.recurrence` (``_lmu_elman_forward``
and ``lmu_elman_backward_steps``), which tests hold both forms to on the same inputs: outputs,
states and carried gradients (float64 to 1e-10, float32 to 1e-5 relative); the column form's
barrier is also held to its own twin, one launch per step. Without a GPU the kernels run under
Triton's interpreter (``TRITON_INTERPRET=1`` set before this module is imported), which is how
the tests check them on a CPU; the interpreter runs programs one after another, so there the
barrier runs only with one program per row block.

Scope: one memory channel (C = 1, the paper's cell), float32 or float64, the activations of
:data:`~torchlmu.recurrence.ACTIVATIONS`, order and hidden size up to :data:`MAX_WIDTH`.
Float32 products inside use TF32 only where torch's own may
(``torch.backends.cuda.matmul.allow_tf32``, off by default), else IEEE float32.
"""

from __future__ import annotations

import copy
import functools
import json
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .exceptions import ValidationError

__all__ = [
    "COLS",
    "CONFIG",
    "FORMS",
    "MAX_WIDTH",
    "applies",
    "lmu_elman_backward_steps",
    "lmu_elman_forward",
]

#: Largest order d and hidden size H (each padded to a power of two) the kernels take: one
#: program holds a (BB, width) accumulator in registers.
MAX_WIDTH = 1024
_ACT = {"linear": 0, "tanh": 1, "relu": 2, "sigmoid": 3}
#: Which form runs (``"form"``: :data:`FORMS`, from ``TORCHLMU_TRITON_FORM``), and the row
#: form's launch setting: batch rows per program (BB; from 16, tl.dot's smallest tile, the
#: products are tl.dot, below it broadcast products: more programs, less work each), the
#: contraction's chunk (a (KC, width) weight tile per load) and warps per program at widths up
#: to 256 and above. First chosen without a GPU, by what ptxas reports for sm_90 at the paper model's
#: sizes (4 rows and 4 warps spill no register; every 16-row setting spilled 0.6–3.4 KB per
#: thread); then timed by ``benchmarks/triton_scan_sweep.py`` on an H200 (session 17, B 100,
#: T 784, d 256, H 212, medians of 10): 4 rows, chunks of 32, 4 warps took 53.0 ms per training
#: step and 29.7 ms per forward, against 73.7–80.9 and 40.4–43.5 ms for the other settings but
#: one (8 rows with chunks of 32: 337 ms), and 80.9 / 43.5 ms for chunks of 16. The wide
#: setting (order or hidden size above 256) is still untimed.
CONFIG = {"form": "rows", "BB": 4, "KC": 32, "num_warps": 4, "num_warps_wide": 8}
#: The kernels' forms (see the module's text).
FORMS = ("rows", "cols")
CONFIG["form"] = os.environ.get("TORCHLMU_TRITON_FORM", CONFIG["form"])
if CONFIG["form"] not in FORMS:
    raise ValidationError("TORCHLMU_TRITON_FORM", f"one of {FORMS}", repr(CONFIG["form"]))
#: The column form's settings (see its kernels below), one per kernel, since the forward and the
#: backward loops carry different products: rows per block (BB, from 16: their products are
#: tl.dot), column programs per row block (P, fewer where the widths ask; a GPU takes as many
#: row blocks per launch as its SMs hold), warps per program; and whether a GPU runs all steps
#: in one launch with a barrier between them (else one launch per step: the twin the barrier is
#: tested against). ``TORCHLMU_TRITON_COLS`` overrides any of them. Timed by
#: ``benchmarks/triton_scan_sweep.py`` on an H200 (session 19, B 100, T 784, d 256, H 212,
#: float32, medians of 10; each setting for both kernels): the forward alone took 9.7 ms at 16
#: rows, 4 programs, 8 warps against 15.1–119 ms at the five others; the backward's loop
#: alone 7.9 ms at 16 rows, 16 programs, 8 warps against 14.9–93.4 ms. The two together have
#: not yet run end to end on a GPU. Where a plan's slices would not fit the GPU's shared
#: memory, :func:`_cols_plan` takes more programs.
COLS = {
    "forward": {"BB": 16, "P": 4, "num_warps": 8},
    "backward": {"BB": 16, "P": 16, "num_warps": 8},
    "persistent": True,
}


def _cols_from_env(text: str) -> dict:
    """``TORCHLMU_TRITON_COLS``: a JSON object overriding :data:`COLS`, e.g.
    ``{"forward": {"P": 8}, "backward": {"num_warps": 4}}`` (what
    ``benchmarks/pick_triton_setting.py`` prints after a sweep), checked before any kernel
    runs; returns :data:`COLS` as it would be."""
    name = "TORCHLMU_TRITON_COLS"
    try:
        got = json.loads(text)
    except ValueError:
        got = None
    if not isinstance(got, dict):
        raise ValidationError(name, f"a JSON object with keys among {sorted(COLS)}", repr(text))
    out = copy.deepcopy(COLS)
    for key, value in got.items():
        if key not in COLS:
            raise ValidationError(name, f"keys among {sorted(COLS)}", repr(key))
        if key == "persistent":
            if not isinstance(value, bool):
                raise ValidationError(name, "persistent true or false", repr(value))
            out[key] = value
            continue
        if not isinstance(value, dict):
            raise ValidationError(name, f"{key} a JSON object of BB, P, num_warps", repr(value))
        for k, v in value.items():
            if k not in COLS[key]:
                raise ValidationError(name, f"{key} keys among {sorted(COLS[key])}", repr(k))
            # powers of two: rows per block from 16 (tl.dot's tile), widths split evenly
            low = 16 if k == "BB" else 1
            if not (type(v) is int and v >= low and v & (v - 1) == 0):
                raise ValidationError(name, f"{key} {k} a power of two, at least {low}", repr(v))
            out[key][k] = v
    return out


if os.environ.get("TORCHLMU_TRITON_COLS"):
    COLS = _cols_from_env(os.environ["TORCHLMU_TRITON_COLS"])


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


# ---------------------------------------------------------------------------------------------
# The column form: weights held by the programs, one barrier per step.
#
# The row form above reads all of Ā, W_h and W_m (~650 KB at the paper model's sizes) from the
# cache at every step, in every program: its speed is one SM's cache bandwidth, whatever the
# batch. Here each program owns a block of BB batch rows and a slice of the output columns (DC
# of m's, HC of h's) and holds its weights' columns in registers for all T steps; the P programs
# of a row block exchange the states through the cache once per step and wait for each other
# at a barrier (a counter per row block). One barrier per step suffices because h_t is written
# from the previous states alone: with m_t = m_{t−1}Āᵀ + u_t B̄ᵀ,
#   pre_t = xh_t + h_{t−1}W_hᵀ + m_{t−1}(W_m Ā)ᵀ + u_t (W_m B̄)ᵀ,
# and backward, with Â = Ā + B̄ e_m (what ∂L/∂m_t carries to m_{t−1}, through u_t included),
#   ∂L/∂m_{t−1} = c_t Â + g_t (W_m Â),   ∂L/∂h_{t−1} = g_t W_h + (c_t·B̄ + g_t·W_m B̄) e_h,
# where c_t is what reaches m_t other than through h_t (carried back, plus the sequence's
# gradient) and g_t = ∂L/∂pre_t. The folded weights are formed in float64 on the host.
# ---------------------------------------------------------------------------------------------

#: Polls of a barrier's counter before a program gives up waiting: a barrier that never opens
#: (programs of a row block not all resident) then fills that block's outputs with NaN instead
#: of hanging the GPU.
_SYNC_POLLS = tl.constexpr(1 << 20)
_SYNC_BROKEN = tl.constexpr(1 << 30)


@triton.jit
def _row_block_sync(counter, target, POLLS: tl.constexpr):
    """Wait until every program of this row block has finished the step (``counter`` reaches
    ``target``, polled at most ``POLLS`` times); True when the barrier is broken (timed out
    here or in another program)."""
    tl.debug_barrier()  # every thread's stores of this step before the program's arrival
    tl.atomic_add(counter, 1, sem="release", scope="gpu")
    cnt = tl.atomic_add(counter, 0, sem="acquire", scope="gpu")
    polls = 0
    while (cnt < target) & (polls < POLLS):
        cnt = tl.atomic_add(counter, 0, sem="acquire", scope="gpu")
        polls += 1
    if cnt < target:
        cnt = tl.atomic_add(counter, _SYNC_BROKEN, sem="acq_rel", scope="gpu") + _SYNC_BROKEN
    tl.debug_barrier()
    return cnt >= _SYNC_BROKEN


@triton.jit
def _cols(RB0, B, D, H, BB: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr, DC: tl.constexpr,
          HC: tl.constexpr):  # fmt: skip
    """This program's rows, full column ranges and its own column slices of m and h, masked."""
    p = tl.program_id(0)
    rows = (RB0 + tl.program_id(1)) * BB + tl.arange(0, BB)
    cd = tl.arange(0, DP)
    ch = tl.arange(0, HP)
    jd = p * DC + tl.arange(0, DC)
    jh = p * HC + tl.arange(0, HC)
    return p, rows, rows < B, cd, cd < D, ch, ch < H, jd, jd < D, jh, jh < H


@triton.jit
def _tile(ptr, r, rmask, c, cmask, ncols, CG: tl.constexpr):
    """ptr[r, c] of a row-major matrix with ``ncols`` columns, zero where masked (``CG``: read
    through L2 only: written by other programs since this one last looked)."""
    m = rmask[:, None] & cmask[None, :]
    if CG:
        x = tl.load(ptr + r[:, None] * ncols + c[None, :], mask=m, other=0.0, cache_modifier=".cg")
    else:
        x = tl.load(ptr + r[:, None] * ncols + c[None, :], mask=m, other=0.0)
    return x


@triton.jit
def _forward_cols_kernel(xu, xh, AT, Bd, em, eh, WhT, WmAT, wmb, Ms, Hs, Us, Sync, RB0, T0, T1,
                         B, D, H, HAS_EM: tl.constexpr, HAS_EH: tl.constexpr,
                         ACT: tl.constexpr, BB: tl.constexpr, DP: tl.constexpr,
                         HP: tl.constexpr, DC: tl.constexpr, HC: tl.constexpr,
                         PREC: tl.constexpr, SYNC: tl.constexpr):  # fmt: skip
    # Ms (T+1, B, D), Hs (T+1, B, H): slot 0 the initial states, slot t + 1 step t's. Row
    # blocks from RB0 on, steps T0..T1−1; with SYNC the programs of a row block wait for each
    # other after each step (else the launch's end is the barrier: one launch per step).
    p, rows, rmask, cd, dmask, ch, hmask, jd, jdm, jh, jhm = _cols(RB0, B, D, H, BB, DP, HP, DC,
                                                                   HC)  # fmt: skip
    A_w = _tile(AT, cd, dmask, jd, jdm, D, False)  # (DP, DC) of Āᵀ
    Wh_w = _tile(WhT, ch, hmask, jh, jhm, H, False)  # (HP, HC) of W_hᵀ
    WmA_w = _tile(WmAT, cd, dmask, jh, jhm, H, False)  # (DP, HC) of (W_m Ā)ᵀ
    bd = tl.load(Bd + jd, mask=jdm, other=0.0)
    wb = tl.load(wmb + jh, mask=jhm, other=0.0)
    if HAS_EM:
        em_v = tl.load(em + cd, mask=dmask, other=0.0)
    if HAS_EH:
        eh_v = tl.load(eh + ch, mask=hmask, other=0.0)
    counter = Sync + RB0 + tl.program_id(1)
    broken = p < 0  # a runtime False: the barrier's state is carried through the loop
    for t in range(T0, T1):
        m_prev = _tile(Ms + t * B * D, rows, rmask, cd, dmask, D, True)
        h_prev = _tile(Hs + t * B * H, rows, rmask, ch, hmask, H, True)
        pre = _tile(xh + t * B * H, rows, rmask, jh, jhm, H, False)
        pre += tl.dot(h_prev, Wh_w, input_precision=PREC)
        u = tl.load(xu + t * B + rows, mask=rmask, other=0.0)
        if HAS_EM:
            u += tl.sum(m_prev * em_v[None, :], axis=1)
        if HAS_EH:
            u += tl.sum(h_prev * eh_v[None, :], axis=1)
        m_new = tl.dot(m_prev, A_w, input_precision=PREC) + u[:, None] * bd[None, :]
        pre += tl.dot(m_prev, WmA_w, input_precision=PREC) + u[:, None] * wb[None, :]
        h_new = tl.where(broken, float("nan"), _act_fwd(pre, ACT))
        m_new = tl.where(broken, float("nan"), m_new)
        tl.store(Ms + (t + 1) * B * D + rows[:, None] * D + jd[None, :], m_new,
                 mask=rmask[:, None] & jdm[None, :])  # fmt: skip
        tl.store(Hs + (t + 1) * B * H + rows[:, None] * H + jh[None, :], h_new,
                 mask=rmask[:, None] & jhm[None, :])  # fmt: skip
        if p == 0:
            tl.store(Us + t * B + rows, u, mask=rmask)
        if SYNC:
            broken = _row_block_sync(counter, (t - T0 + 1) * tl.num_programs(0), _SYNC_POLLS)


@triton.jit
def _carry_out(Cm, Gp, gM, gH, Hs, cm, q, s, B, D, H, rows, rmask, jd, jdm, jh, jhm, broken,
               HAS_GM: tl.constexpr, HAS_GH: tl.constexpr, ACT: tl.constexpr):  # fmt: skip
    """Store what step s + 1 carries back to step s (s = −1: the initial states): c_s (this
    program's columns of ∂L/∂m_s, with the sequence's gradient at s added) and g_s = ∂L/∂pre_s
    from q = the carried ∂L/∂h_s; at s = −1, ∂L/∂m0 and ∂L/∂h0 as carried."""
    od = rmask[:, None] & jdm[None, :]
    oh = rmask[:, None] & jhm[None, :]
    here = rows * 0 + s >= 0  # per row: s may be a plain int (the first call)
    if HAS_GM:
        cm += _tile(gM + s * B * D, rows, rmask & here, jd, jdm, D, False)
    if HAS_GH:
        q += _tile(gH + s * B * H, rows, rmask & here, jh, jhm, H, False)
    y = _tile(Hs + s * B * H, rows, rmask & here, jh, jhm, H, False)
    g = tl.where(broken, float("nan"), tl.where(here[:, None], _act_bwd(q, y, ACT), q))
    cm = tl.where(broken, float("nan"), cm)
    tl.store(Cm + (s + 1) * B * D + rows[:, None] * D + jd[None, :], cm, mask=od)
    tl.store(Gp + (s + 1) * B * H + rows[:, None] * H + jh[None, :], g, mask=oh)


@triton.jit
def _backward_cols_kernel(Hs, gM, gH, gm_last, gh_last, Ah, WmAh, Wh, Bd, wmbd, eh, Cm, Gp, Gu,
                          Sync, RB0, T0, T1, T, B, D, H, HAS_GM: tl.constexpr,
                          HAS_GH: tl.constexpr, HAS_LAST_M: tl.constexpr,
                          HAS_LAST_H: tl.constexpr, HAS_EH: tl.constexpr, ACT: tl.constexpr,
                          BB: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr,
                          DC: tl.constexpr, HC: tl.constexpr, PREC: tl.constexpr,
                          FIRST: tl.constexpr, SYNC: tl.constexpr):  # fmt: skip
    # Cm (T+1, B, D): slot s + 1 holds c_s, slot 0 ∂L/∂m0; Gp (T+1, B, H): slot s + 1 holds
    # ∂L/∂pre_s, slot 0 ∂L/∂h0. FIRST: first store step T − 1's (from the last states'
    # gradients; FIRST is 0 or 1); then steps t = T−1−T0 down to T−T1. Row blocks from RB0 on.
    p, rows, rmask, cd, dmask, ch, hmask, jd, jdm, jh, jhm = _cols(RB0, B, D, H, BB, DP, HP, DC,
                                                                   HC)  # fmt: skip
    A_w = _tile(Ah, cd, dmask, jd, jdm, D, False)  # (DP, DC) of Â
    WmA_w = _tile(WmAh, ch, hmask, jd, jdm, D, False)  # (HP, DC) of W_m Â
    Wh_w = _tile(Wh, ch, hmask, jh, jhm, H, False)  # (HP, HC) of W_h
    bd = tl.load(Bd + cd, mask=dmask, other=0.0)
    wb = tl.load(wmbd + ch, mask=hmask, other=0.0)
    if HAS_EH:
        eh_v = tl.load(eh + jh, mask=jhm, other=0.0)
    counter = Sync + RB0 + tl.program_id(1)
    broken = p < 0
    if FIRST:
        dt = Cm.dtype.element_ty
        if HAS_LAST_M:
            cm = _tile(gm_last, rows, rmask, jd, jdm, D, False)
        else:
            cm = tl.zeros((BB, DC), dtype=dt)
        if HAS_LAST_H:
            q = _tile(gh_last, rows, rmask, jh, jhm, H, False)
        else:
            q = tl.zeros((BB, HC), dtype=dt)
        _carry_out(Cm, Gp, gM, gH, Hs, cm, q, T - 1, B, D, H, rows, rmask, jd, jdm, jh, jhm,
                   broken, HAS_GM, HAS_GH, ACT)  # fmt: skip
        if SYNC:
            broken = _row_block_sync(counter, tl.num_programs(0), _SYNC_POLLS)
    for i in range(T0, T1):
        t = T - 1 - i
        c = _tile(Cm + (t + 1) * B * D, rows, rmask, cd, dmask, D, True)
        g = _tile(Gp + (t + 1) * B * H, rows, rmask, ch, hmask, H, True)
        q = tl.dot(g, Wh_w, input_precision=PREC)
        gu = tl.sum(c * bd[None, :], axis=1) + tl.sum(g * wb[None, :], axis=1)  # ∂L/∂u_t
        cm = tl.dot(c, A_w, input_precision=PREC) + tl.dot(g, WmA_w, input_precision=PREC)
        if p == 0:
            tl.store(Gu + t * B + rows, gu, mask=rmask)
        if HAS_EH:
            q += gu[:, None] * eh_v[None, :]
        _carry_out(Cm, Gp, gM, gH, Hs, cm, q, t - 1, B, D, H, rows, rmask, jd, jdm, jh, jhm,
                   broken, HAS_GM, HAS_GH, ACT)  # fmt: skip
        if SYNC:
            target = (i - T0 + 1 + FIRST) * tl.num_programs(0)
            broken = _row_block_sync(counter, target, _SYNC_POLLS)


def _launch_args(B: int, D: int, H: int, dtype: torch.dtype) -> tuple[tuple[int], dict]:
    DP, HP = _p2(D), _p2(H)
    warps = CONFIG["num_warps_wide" if max(DP, HP) > 256 else "num_warps"]
    # float32 products as torch's own on the GPU: TF32 only where torch allows it
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    BB = CONFIG["BB"]
    meta = dict(BB=BB, DP=DP, HP=HP, KC=CONFIG["KC"], PREC="tf32" if tf32 else "ieee")
    return (triton.cdiv(B, BB),), dict(meta, num_warps=warps)


def _rows_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act):
    """The row form of :func:`lmu_elman_forward`."""
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


def _rows_backward(h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, act, gM, gH, gm_last, gh_last):
    """The row form of :func:`lmu_elman_backward_steps`."""
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


def _cols_plan(
    D: int, H: int, kernel: str = "forward", itemsize: int = 4, smem: int | None = None
) -> tuple[int, int] | None:
    """(rows per block, programs per row block) for one column-form kernel (``"forward"`` or
    ``"backward"``): P from the kernel's COLS setting, at most what leaves each program 16 or
    more of m's and of h's columns (tl.dot's smallest tile), and doubled until a program's
    slices fit ``smem`` bytes of shared memory (the GPU's limit per program; None: no limit)
    by :func:`_cols_bytes`; None where no P fits (the row form runs instead). Launching a
    kernel that asks for more fails before it runs (session 19: float64 with 4 programs at the
    psMNIST model's widths on an H200)."""
    s = COLS[kernel]
    top = min(_p2(D) // 16, _p2(H) // 16)
    P = min(s["P"], top)
    while smem is not None and _cols_bytes(s["BB"], P, D, H, itemsize) > smem:
        if P >= top:
            return None
        P *= 2
    return s["BB"], P


def _cols_bytes(BB: int, P: int, D: int, H: int, itemsize: int) -> int:
    """An upper bound of one column program's shared memory: its three weight slices (the
    forward's Āᵀ, (W_m Ā)ᵀ and W_hᵀ columns; the backward's as many), held for all steps, its
    rows of both states, in float64 one more (BB, DC) tile, and 256 bytes of scalars. Triton
    3.9's sm_90 compile of both kernels needs at most this at every plan of 2–16 programs and
    16 or 32 rows at the psMNIST model's widths, float32 128–256 bytes below it
    (``benchmarks/results/cpu-session19/cols_shared_memory.txt``); an H200's Triton 3.6 asked
    430,080 bytes for float64 with 4 programs, where this gives 467,200."""
    DP, HP = _p2(D), _p2(H)
    DC, HC = DP // P, HP // P
    extra = BB * DC if itemsize == 8 else 0
    return (DP * DC + DP * HC + HP * HC + BB * (DP + HP) + extra) * itemsize + 256


def _smem_limit(device: torch.device) -> int | None:
    """Shared memory one program may take on ``device`` (None off a GPU: the interpreter has no
    limit), as Triton's driver reports it; what its launch checks against."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _smem_of(index)


@functools.cache
def _smem_of(index: int) -> int:
    # the same query Triton's own launch checks a kernel's shared memory against
    return triton.runtime.driver.active.utils.get_device_properties(index)["max_shared_mem"]


def _cols_plan_for(kernel: str, Ad: Tensor, Wh: Tensor, x: Tensor) -> tuple[int, int] | None:
    """:func:`_cols_plan` for a scan's widths, dtype and device (``x`` any of its tensors)."""
    return _cols_plan(Ad.shape[0], Wh.shape[0], kernel, x.element_size(), _smem_limit(x.device))


def _waves(B: int, plan: tuple[int, int], device: torch.device) -> list[tuple[int, int]]:
    """(first row block, row blocks) of each launch: on a GPU as many row blocks at once as its
    SMs hold with one program each (the barrier needs every program of a row block resident;
    the launches run one after another), elsewhere all.

    Not a cooperative launch, which would have CUDA refuse a grid that cannot be resident at
    once: the psMNIST training step is captured as a CUDA graph after eager warm-up steps, and
    a kernel compiled with another launch option inside the capture, or a cooperative node in a
    graph, is a risk a GPU run has not cleared; a grid within the SMs is resident anyway while
    no other stream holds them, and a barrier that waits too long breaks with NaN outputs."""
    BB, P = plan
    blocks = triton.cdiv(B, BB)
    per = blocks
    if device.type == "cuda":
        per = max(1, torch.cuda.get_device_properties(device).multi_processor_count // P)
    return [(rb0, min(per, blocks - rb0)) for rb0 in range(0, blocks, per)]


def _cols_meta(plan: tuple[int, int], D: int, H: int, dtype: torch.dtype, kernel: str) -> dict:
    BB, P = plan
    DP, HP = _p2(D), _p2(H)
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return dict(BB=BB, DP=DP, HP=HP, DC=DP // P, HC=HP // P, PREC="tf32" if tf32 else "ieee",
                num_warps=COLS[kernel]["num_warps"])  # fmt: skip


def _persistent(device: torch.device, P: int) -> bool:
    """One launch with the barrier (on a GPU; under the interpreter, which runs the programs
    one after another, only with one program per row block), else one launch per step."""
    return (device.type == "cuda" and COLS["persistent"]) or P == 1


def _launch_cols(kernel, args, tail, T, B, plan, device, meta, prologue=False) -> None:
    """Run a column-form kernel over all T steps: per wave of row blocks, one launch with the
    barrier, or its twin, one launch per step (after the backward's prologue, FIRST, alone).
    The kernel's arguments: ``*args, RB0, T0, T1, *tail``."""
    first = {"FIRST": 1} if prologue else {}
    for rb0, n in _waves(B, plan, device):
        grid = (plan[1], n)
        if _persistent(device, plan[1]):
            kernel[grid](*args, rb0, 0, T, *tail, SYNC=True, **first, **meta)
            continue
        if prologue:
            kernel[grid](*args, rb0, 0, 0, *tail, SYNC=False, FIRST=1, **meta)
        for t in range(T):
            kernel[grid](*args, rb0, t, t + 1, *tail, SYNC=False, **meta,
                         **({"FIRST": 0} if prologue else {}))  # fmt: skip


def _cols_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act, plan):
    """The column form of :func:`lmu_elman_forward` at ``plan`` (:func:`_cols_plan`)."""
    T, B, _ = xu.shape
    D, H = Ad.shape[0], Wh.shape[0]
    dt, f64 = xu.dtype, torch.float64
    Ms = xu.new_empty((T + 1, B, D))
    Hs = xh.new_empty((T + 1, B, H))
    Ms[0] = m0
    Hs[0] = h0
    Us = xu.new_empty((T, B, 1))
    Wm64 = Wm.to(f64)
    WmAT = (Wm64 @ Ad.to(f64)).T.contiguous().to(dt)  # (W_m Ā)ᵀ, (D, H)
    wmb = (Wm64 @ Bd.to(f64)).to(dt)  # W_m B̄, (H,)
    sync = torch.zeros(triton.cdiv(B, plan[0]), dtype=torch.int32, device=xu.device)
    args = (
        xu.contiguous(), xh.contiguous(), Ad.T.contiguous(), Bd.contiguous(),
        Ms if Em is None else Em.reshape(-1).contiguous(),
        Ms if Eh is None else Eh.reshape(-1).contiguous(),
        Wh.T.contiguous(), WmAT, wmb, Ms, Hs, Us, sync,
    )  # fmt: skip
    meta = dict(_cols_meta(plan, D, H, dt, "forward"), HAS_EM=Em is not None,
                HAS_EH=Eh is not None, ACT=_ACT[act])  # fmt: skip
    _launch_cols(_forward_cols_kernel, args, (B, D, H), T, B, plan, xu.device, meta)
    return Ms[1:], Hs[1:], Us


def _cols_backward(h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, act, gM, gH, gm_last, gh_last, plan):
    """The column form of :func:`lmu_elman_backward_steps` at ``plan``."""
    T, B, H = Hs.shape
    D = Ad.shape[0]
    dt, f64 = Hs.dtype, torch.float64
    Hs = Hs.contiguous()
    Ah = Ad.to(f64)
    if Em is not None:  # Â = Ā + B̄ e_m: what ∂L/∂m_t carries to m_{t−1}, through u_t included
        Ah = Ah + torch.outer(Bd.to(f64), Em.reshape(-1).to(f64))
    Wm64 = Wm.to(f64)
    WmAh = (Wm64 @ Ah).to(dt)  # (H, D)
    wmbd = (Wm64 @ Bd.to(f64)).to(dt)  # (H,)
    Cm = Hs.new_empty((T + 1, B, D))
    Gp = Hs.new_empty((T + 1, B, H))
    Gu = Hs.new_empty((T, B, 1))
    sync = torch.zeros(triton.cdiv(B, plan[0]), dtype=torch.int32, device=Hs.device)
    opt = lambda g: Hs if g is None else g.contiguous()  # noqa: E731 (a dummy pointer for None)
    args = (
        Hs, opt(gM), opt(gH), opt(gm_last), opt(gh_last), Ah.to(dt), WmAh, Wh.contiguous(),
        Bd.contiguous(), wmbd, Hs if Eh is None else Eh.reshape(-1).contiguous(), Cm, Gp, Gu,
        sync,
    )  # fmt: skip
    meta = dict(_cols_meta(plan, D, H, dt, "backward"), HAS_GM=gM is not None,
                HAS_GH=gH is not None,
                HAS_LAST_M=gm_last is not None, HAS_LAST_H=gh_last is not None,
                HAS_EH=Eh is not None, ACT=_ACT[act])  # fmt: skip
    _launch_cols(_backward_cols_kernel, args, (T, B, D, H), T, B, plan, Hs.device, meta,
                 prologue=True)  # fmt: skip
    # ∂L/∂m_t = c_t + ∂L/∂pre_t W_m: the one product left out of the loop, over all steps at once
    Gm = Cm[1:]
    Gm.view(T * B, D).addmm_(Gp[1:].view(T * B, H), Wm)
    # the initial states' gradients as tensors of their own (a custom operator's outputs must
    # not share storage)
    return Gm, Gp[1:], Gu, Cm[0].clone(), Gp[0].clone()


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

    Shapes as :func:`~torchlmu.recurrence.lmu_elman_scan` with C = 1 (see :func:`applies`). In
    the form :data:`CONFIG` names (the column form where a plan of it fits the GPU's shared
    memory, :func:`_cols_plan`; else the row form)."""
    if CONFIG["form"] == "cols":
        plan = _cols_plan_for("forward", Ad, Wh, xu)
        if plan is not None:
            return _cols_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act, plan)
    return _rows_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act)


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
    read: f′ needs only the states after it). In the form :data:`CONFIG` names, as
    :func:`lmu_elman_forward` chooses it."""
    rest = (act, gM, gH, gm_last, gh_last)
    if CONFIG["form"] == "cols":
        plan = _cols_plan_for("backward", Ad, Wh, Hs)
        if plan is not None:
            return _cols_backward(h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, *rest, plan)
    return _rows_backward(h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, *rest)
