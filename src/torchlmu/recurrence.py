"""Hand-written forward and backward through time for the recurrences that cannot be parallel.

Autograd through a Python step loop records a handful of nodes per step and replays them one by
one; here each recurrence runs as one ``autograd.Function``: the forward loop writes every state
into preallocated tensors with in-place BLAS calls, the backward loop carries only the state
gradients, and every weight gradient is one large matmul over all steps at the end (the floor the
performance issue names: two passes of T small matmuls plus one large one).

Both have slow, obvious twins (``*_reference``: the plain loops that autograd differentiates) and
tests proving outputs and gradients equal.

Layout: time first; ``act`` in {"tanh", "relu", "sigmoid", "linear"}; derivatives are computed
from the activation's output.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

from ._tracing import tracing
from .exceptions import ValidationError
from .ops import step_linear

__all__ = [
    "ACTIVATIONS",
    "CELL_KINDS",
    "activation_fn",
    "activation_fn_",
    "cell_recur",
    "cell_scan",
    "cell_scan_reference",
    "elman_scan",
    "elman_scan_reference",
    "elman_scan_rnn",
    "lmu_elman_backward_steps",
    "lmu_elman_scan",
    "lmu_elman_scan_reference",
]


#: The Elman activations, by name.
ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")


def _identity(x: Tensor) -> Tensor:
    return x


def activation_fn(act: str):
    """The activation named ``act`` as a function of a tensor."""
    return {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}.get(act, _identity)


def activation_fn_(act: str):
    """The activation named ``act`` applied in place (returns its argument)."""
    return {
        "tanh": torch.Tensor.tanh_,
        "relu": torch.Tensor.relu_,
        "sigmoid": torch.Tensor.sigmoid_,
    }.get(act, _identity)


def _dact(y: Tensor, act: str) -> Tensor:
    """f'(z) from y = f(z)."""
    if act == "tanh":
        return torch.addcmul(y.new_ones(()).expand_as(y), y, y, value=-1)  # 1 − y², one pass
    if act == "relu":
        return (y > 0).to(y.dtype)
    if act == "sigmoid":
        return y * (1 - y)
    return torch.ones_like(y)


def _relu_backward(g: Tensor, y: Tensor, grad_input: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward.grad_input(g, y, 0.0, grad_input=grad_input)


def _linear_backward(g: Tensor, y: Tensor, grad_input: Tensor) -> Tensor:
    return grad_input if grad_input is g else grad_input.copy_(g)


def _dact_mul_into(act: str):
    """The function ``(g, y, grad_input) -> grad_input ← g · f'(z)`` for the activation
    ``act``, with f' read through the output y = f(z) in one fused elementwise pass (aten's own
    activation backwards); ``grad_input`` may be g itself. Chosen once, before a step loop."""
    return {
        "tanh": torch.ops.aten.tanh_backward.grad_input,
        "sigmoid": torch.ops.aten.sigmoid_backward.grad_input,
        "relu": _relu_backward,
    }.get(act, _linear_backward)


# ------------------------------------------------------------------------------ Elman hidden
def elman_scan_reference(pre: Tensor, h0: Tensor, W: Tensor, act: str) -> Tensor:
    """h_t = f(pre_t + h_{t−1} Wᵀ) by a plain loop. pre ``(T, B, H)``, h0 ``(B, H)`` -> ``(T, B, H)``."""
    f, h, out = activation_fn(act), h0, []
    for t in range(pre.shape[0]):
        h = f(pre[t] + h @ W.T)
        out.append(h)
    return torch.stack(out, 0)


def _elman_forward(pre: Tensor, h0: Tensor, W: Tensor, act: str, out: Tensor) -> Tensor:
    """States into ``out`` (which may be ``pre`` itself: each step reads pre[t] before writing
    it) with one product (torch's addmm into the slot, or oneDNN's product then the addition
    into it: :func:`~torchlmu.ops.step_linear`'s engine, chosen once) and the activation in
    place per step."""
    act_ = activation_fn_(act)
    if pre.shape[0] == 0:
        return out
    outs, pres = out.unbind(0), pre.unbind(0)  # one call for all T views
    lin = step_linear(outs[0], W, pres[0])  # the engine chosen once for the loop
    h = h0.contiguous()
    for o, p in zip(outs, pres, strict=True):
        act_(lin(h, W, p, out=o))
        h = o
    return out


def _elman_backward(h0, W, Hs, act, gH, g_last):
    """(∂L/∂pre, ∂L/∂h0, ∂L/∂W) from the states: T steps of (B,H)·(H,H) carrying the state
    gradient, then the weight gradient as one large matmul. In grad mode (a double backward)
    the same arithmetic without in-place writes, so that autograd can differentiate it."""
    T = Hs.shape[0]
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    if torch.is_grad_enabled():
        D = _dact(Hs, act)
        g = torch.zeros_like(h0) if g_last is None else g_last
        Gs = [None] * T
        for t in range(T - 1, -1, -1):
            if gH is not None:
                g = g + gH[t]
            Gs[t] = g * D[t]
            g = Gs[t] @ W
        G = torch.stack(Gs, 0)
        gW = flat(G).T @ flat(torch.cat([h0.unsqueeze(0), Hs[:-1]], 0))
        return G, g, gW
    G = torch.empty_like(Hs)  # gradient w.r.t. the pre-activations
    dmul = _dact_mul_into(act)
    g = torch.zeros_like(h0) if g_last is None else g_last
    if gH is not None:
        g = g + gH[T - 1]
    Gs, Hss, WT = G.unbind(0), Hs.unbind(0), W.T
    gHs = (None,) * T if gH is None else (None, *gH.unbind(0)[:-1])  # gHs[t] = gH[t − 1]
    lin = step_linear(Gs[0], WT, gHs[-1])
    for t in range(T - 1, -1, -1):
        # f' is read from the state inside the step's one fused pass (a separate pass over all
        # T states for f' cost as much again as the whole elementwise part of the loop)
        dmul(g, Hss[t], grad_input=Gs[t])
        g = lin(Gs[t], WT, gHs[t])
    gW = G[0].T @ h0  # Σ_t G_tᵀ h_{t−1}, without concatenating h0 to the states
    if T > 1:
        gW = gW.addmm_(flat(G[1:]).T, flat(Hs[:-1]))
    return G, g, gW


# The scan is a custom operator: torch.compile and torch.export see one opaque node whose output
# shapes follow its inputs', so one graph serves every sequence length (a Python loop would be
# unrolled, T steps per graph, recompiled for each T).
@torch.library.custom_op("torchlmu::elman_scan", mutates_args=())
def _elman_scan_op(pre: Tensor, h0: Tensor, W: Tensor, act: str) -> tuple[Tensor, Tensor]:
    Hs = _elman_forward(pre, h0, W, act, pre.new_empty(pre.shape))
    return Hs, Hs[-1].clone()


@_elman_scan_op.register_fake
def _(pre, h0, W, act):
    return pre.new_empty(pre.shape), h0.new_empty(h0.shape)


def _elman_setup(ctx, inputs, output):
    _, h0, W, act = inputs
    ctx.save_for_backward(h0, W, output[0])
    ctx.act = act
    # a caller that uses only the last state leaves the sequence without a gradient: None,
    # not zeros, so the backward skips adding it at every step
    ctx.set_materialize_grads(False)


def _elman_op_backward(ctx, gH, g_last):
    h0, W, Hs = ctx.saved_tensors
    if torch.is_grad_enabled():  # a double backward: the differentiable form
        G, g0, gW = _elman_backward(h0, W, Hs, ctx.act, gH, g_last)
    else:
        G, g0, gW = _elman_bwd_op(h0, W, Hs, ctx.act, gH, g_last)
    return G, g0, gW, None


# The backward loop is an operator too: AOTAutograd traces a custom operator's backward
# formula into the compiled graph, where a Python loop over T would fix T.
@torch.library.custom_op("torchlmu::elman_scan_backward", mutates_args=())
def _elman_bwd_op(
    h0: Tensor, W: Tensor, Hs: Tensor, act: str, gH: Tensor | None, g_last: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    with torch.no_grad():
        G, g0, gW = _elman_backward(h0, W, Hs, act, gH, g_last)
    return G.contiguous(), g0.contiguous().clone(), gW.contiguous()


@_elman_bwd_op.register_fake
def _(h0, W, Hs, act, gH, g_last):
    return Hs.new_empty(Hs.shape), h0.new_empty(h0.shape), W.new_empty(W.shape)


_elman_scan_op.register_autograd(_elman_op_backward, setup_context=_elman_setup)


class _ElmanScan(torch.autograd.Function):
    """Eager twin of the custom operator that writes the states over ``pre`` (a temporary the
    caller no longer needs): no second (T, B, H) tensor."""

    @staticmethod
    def forward(ctx, pre: Tensor, h0: Tensor, W: Tensor, act: str):
        Hs = _elman_forward(pre, h0, W, act, pre)
        ctx.mark_dirty(pre)
        ctx.save_for_backward(h0, W, Hs)
        ctx.act = act
        ctx.set_materialize_grads(False)
        return Hs, Hs[-1].clone()

    @staticmethod
    def backward(ctx, gH, g_last):
        h0, W, Hs = ctx.saved_tensors
        G, g0, gW = _elman_backward(h0, W, Hs, ctx.act, gH, g_last)
        return G, g0, gW, None


def elman_scan_rnn(pre: Tensor, h0: Tensor, W: Tensor, act: str = "tanh") -> tuple[Tensor, Tensor]:
    """h_t = f(pre_t + h_{t−1} Wᵀ) by torch's fused RNN kernel (cuDNN on a GPU), for ``act`` in
    {"tanh", "relu"}: an ``nn.RNN`` layer without biases whose input weight is the identity, fed
    with the precomputed pre-activations (twin: :func:`elman_scan_reference`).

    On a GPU the whole recurrence, forward and backward, is one cuDNN call instead of T kernel
    launches per pass; the identity product costs one (T·B, H)·(H, H) GEMM. On the CPU
    :func:`elman_scan`'s own loop is faster (measured: 0.51 against 0.92 s for T 784, B 100,
    H 212, forward and backward, 1 thread), so :func:`elman_scan` takes this path on CUDA only.
    In float32 it follows ``torch.backends.cudnn.allow_tf32`` as ``nn.RNN`` does (True by
    default: TF32 products on Ampere and later GPUs, about 1e-3 relative).

    Args:
        pre: ``(T, B, H)``.  h0: ``(B, H)``.  W: ``(H, H)``.
    Returns:
        states ``(T, B, H)`` and the last state ``(B, H)``.
    """
    if act not in ("tanh", "relu"):
        raise ValidationError("act", "'tanh' or 'relu' (the fused RNN kernel's)", repr(act))
    eye = torch.eye(pre.shape[-1], dtype=pre.dtype, device=pre.device)
    rnn = torch.rnn_tanh if act == "tanh" else torch.rnn_relu
    # cuDNN wants contiguous inputs (an expanded zero state or a transposed weight is not)
    x, hx, W = pre.contiguous(), h0.unsqueeze(0).contiguous(), W.contiguous()
    # cuDNN warns that the two weights are not one flat buffer and copies them into one on
    # every call: two H×H copies, negligible beside the T-step scan, so the warning is noise here
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single")
        # (input, hx, weights, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        Hs, last = rnn(x, hx, [eye, W], False, 1, 0.0, torch.is_grad_enabled(), False, False)
    return Hs, last[0]


def elman_scan(
    pre: Tensor,
    h0: Tensor,
    W: Tensor,
    act: str = "tanh",
    inplace: bool = False,
    return_last: bool = False,
):
    """h_t = f(pre_t + h_{t−1} Wᵀ) for all t, with a hand-written backward (twin:
    :func:`elman_scan_reference`). Differentiable twice (the backward is differentiable in grad
    mode). Compiles and exports as the operator ``torchlmu::elman_scan``.

    Args:
        pre: ``(T, B, H)`` input projections (everything but the recurrent term), contiguous.
        h0: ``(B, H)``.  W: ``(H, H)``.
        inplace: eagerly, write the states into ``pre`` (a temporary the caller no longer needs).
        return_last: also return the last state ``(B, H)`` as its own output (use it, not
            ``states[-1]``, when only the last state matters: the backward is then cheaper).
    Returns:
        states ``(T, B, H)`` (and the last state).
    """
    if pre.is_cuda and act in ("tanh", "relu") and not tracing():
        Hs, last = elman_scan_rnn(pre, h0, W, act)  # cuDNN: one call instead of T launches
    elif not torch.is_grad_enabled() or not (
        pre.requires_grad or h0.requires_grad or W.requires_grad
    ):
        if tracing():
            Hs, last = _elman_scan_op(pre, h0, W, act)
        else:
            with torch.no_grad():
                Hs = _elman_forward(pre, h0, W, act, pre if inplace else torch.empty_like(pre))
                last = Hs[-1].clone()
    elif inplace and not tracing():
        Hs, last = _ElmanScan.apply(pre, h0, W, act)
    else:
        Hs, last = _elman_scan_op(pre, h0, W, act)
    return (Hs, last) if return_last else Hs


# ---------------------------------------------------------------- fully recurrent LMU (Elman)
def lmu_elman_scan_reference(
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
) -> tuple[Tensor, Tensor]:
    """The LMU cell with every connection, by a plain loop (see :func:`lmu_elman_scan`)."""
    T, B, C = xu.shape
    d = Ad.shape[0]
    f, m, h = activation_fn(act), m0, h0
    Ms, Hs = [], []
    for t in range(T):
        u = xu[t]
        if Em is not None:
            u = u + m @ Em.T
        if Eh is not None:
            u = u + h @ Eh.T
        m = ((m.reshape(B, C, d) @ Ad.T) + u.unsqueeze(-1) * Bd).reshape(B, C * d)
        h = f(xh[t] + m @ Wm.T + h @ Wh.T)
        Ms.append(m)
        Hs.append(h)
    return torch.stack(Ms, 0), torch.stack(Hs, 0)


#: Whether the fully recurrent scan's step loops run as Triton kernels on CUDA tensors
#: (:mod:`torchlmu.triton_scan`, where it takes the scan). On since they passed their tests on
#: an H200 (session 17) and ran the psMNIST model's training step 2.8–3.9× faster than the
#: eager step loops; ``TORCHLMU_TRITON_SCAN=0`` (or this flag set False) keeps the step loops.
TRITON_SCAN = os.environ.get("TORCHLMU_TRITON_SCAN", "1") != "0"


def _fused_scan(x: Tensor, channels: int, Ad: Tensor, Wh: Tensor, act: str):
    """:mod:`torchlmu.triton_scan` where it takes this scan (x: any of its float tensors), else
    None: on CUDA only, with the flag on and Triton installed."""
    if not (TRITON_SCAN and x.is_cuda):
        return None
    try:
        from . import triton_scan
    except ImportError:  # Triton comes with torch's CUDA builds; without it, the step loops
        return None
    return triton_scan if triton_scan.applies(x, channels, Ad, Wh, act) else None


def _lmu_elman_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act):
    """(memory states, hidden states, memory inputs u_t), each step written in place; on CUDA
    its fused twin :func:`torchlmu.triton_scan.lmu_elman_forward` where that applies."""
    fused = _fused_scan(xu, xu.shape[-1], Ad, Wh, act)
    if fused is not None:
        return fused.lmu_elman_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act)
    T, B, C = xu.shape
    d = Ad.shape[0]
    Ms = xu.new_empty((T, B, C * d))
    Hs = xh.new_empty(xh.shape)
    Us = xu.clone(memory_format=torch.contiguous_format)
    EmT = None if Em is None else Em.T
    EhT = None if Eh is None else Eh.T
    act_ = activation_fn_(act)
    if T == 0:
        return Ms, Hs, Us
    # each product's engine chosen once, from the first step's operands (ops.step_linear)
    m, h = m0.contiguous(), h0.contiguous()
    lin_A = step_linear(Ms[0].view(B * C, d), Ad)
    lin_m = step_linear(Ms[0], Wm, xh[0])
    lin_h = step_linear(Hs[0], Wh, Hs[0])
    for u, mt, ht, xt in zip(Us.unbind(0), Ms.unbind(0), Hs.unbind(0), xh.unbind(0), strict=True):
        if EmT is not None:
            u.addmm_(m, EmT)
        if EhT is not None:
            u.addmm_(h, EhT)
        lin_A(m.view(B * C, d), Ad, out=mt.view(B * C, d))
        mt.view(B, C, d).addcmul_(u.unsqueeze(-1), Bd)
        lin_m(mt, Wm, xt, out=ht)
        lin_h(h, Wh, ht, out=ht)
        act_(ht)
        m, h = mt, ht
    return Ms, Hs, Us


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
    """The backward step loop of :func:`lmu_elman_scan`: the gradients it carries through time.

    Args:
        h0, Ad, Bd, Em, Eh, Wm, Wh: the scan's inputs.  Hs: its hidden states ``(T, B, H)``.
        gM, gH: gradients of the state sequences (or None); gm_last, gh_last: of the last states.
    Returns:
        Gm ``(T, B, C·d)`` = ∂L/∂m_t, Gpre ``(T, B, H)`` = ∂L/∂(pre-activation of h_t),
        Gu ``(T, B, C)`` = ∂L/∂u_t, and ∂L/∂m0 ``(B, C·d)``, ∂L/∂h0 ``(B, H)``. The fused
        twin, :func:`torchlmu.triton_scan.lmu_elman_backward_steps`, takes CUDA scans.
    """
    fused = _fused_scan(Hs, Wm.shape[1] // Ad.shape[0], Ad, Wh, act)
    if fused is not None:
        return fused.lmu_elman_backward_steps(
            h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, act, gM, gH, gm_last, gh_last
        )
    T, B, _ = Hs.shape
    d = Ad.shape[0]
    C = Wm.shape[1] // d
    # Each step writes what it carries back straight into the previous step's slot (or into
    # the initial states').
    Gpre = torch.empty_like(Hs)
    Gm = Hs.new_empty((T, B, C * d))
    Gu = Hs.new_empty((T, B, C))
    gm0, gh0 = Hs.new_empty((B, C * d)), torch.empty_like(h0)
    for slot, g in ((Gm[T - 1], gm_last), (Gpre[T - 1], gh_last)):
        if g is None:
            slot.zero_()
        else:
            slot.copy_(g)
    BdT = Bd.unsqueeze(1)
    dmul = _dact_mul_into(act)
    WmT, AdT, WhT = Wm.T, Ad.T, Wh.T
    Gps, Gms, Gus, Hss = Gpre.unbind(0), Gm.unbind(0), Gu.unbind(0), Hs.unbind(0)
    # each product's engine chosen once, from the last step's operands (ops.step_linear)
    lin_m = step_linear(Gps[-1], WmT, Gms[-1])
    lin_A = step_linear(Gms[-1].view(B * C, d), AdT)
    lin_h = step_linear(Gps[-1], WhT)
    for t in range(T - 1, -1, -1):
        gp = Gps[t]
        if gH is not None:
            gp.add_(gH[t])
        dmul(gp, Hss[t], grad_input=gp)
        gmt = Gms[t]
        if gM is not None:
            gmt.add_(gM[t])
        lin_m(gp, WmT, gmt, out=gmt)
        gu = Gus[t]
        torch.mm(gmt.view(B * C, d), BdT, out=gu.view(B * C, 1))
        to_m, to_h = (Gms[t - 1], Gps[t - 1]) if t > 0 else (gm0, gh0)
        lin_A(gmt.view(B * C, d), AdT, out=to_m.view(B * C, d))
        lin_h(gp, WhT, out=to_h)
        if Em is not None:
            to_m.addmm_(gu, Em)
        if Eh is not None:
            to_h.addmm_(gu, Eh)
    return Gm, Gpre, Gu, gm0, gh0


def _lmu_elman_backward(saved, act, gM, gH, gm_last, gh_last, need_AB=(True, True)):
    """Gradients of the scan's ten tensor inputs (None for absent Em/Eh, and for Ā, B̄ unless
    ``need_AB`` says they are wanted) from its states: the backward step loop, then every weight
    gradient as one matmul over all steps."""
    m0, h0, Ad, Bd, Em, Eh, Wm, Wh, Ms, Hs, Us = saved
    T, B, S = Ms.shape
    d = Ad.shape[0]
    C = S // d
    Gm, Gpre, Gu, gm0, gh0 = lmu_elman_backward_steps(
        h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, act, gM, gH, gm_last, gh_last
    )

    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731

    def shifted(G: Tensor, X: Tensor, x0: Tensor) -> Tensor:
        """Σ_t G_tᵀ X_{t−1} with X_{−1} = x0, without concatenating x0 to the states."""
        out = G[0].T @ x0
        return out.addmm_(flat(G[1:]).T, flat(X[:-1])) if T > 1 else out

    gWm = flat(Gpre).T @ flat(Ms)
    gWh = shifted(Gpre, Hs, h0)
    Gc, Mc = Gm.view(T, B * C, d), Ms.view(T, B * C, d)
    gAd = shifted(Gc, Mc, m0.reshape(B * C, d)) if need_AB[0] else None
    gBd = (Gm.reshape(-1, C, d) * Us.reshape(-1, C, 1)).sum((0, 1)) if need_AB[1] else None
    gEm = shifted(Gu, Ms, m0) if Em is not None else None
    gEh = shifted(Gu, Hs, h0) if Eh is not None else None
    return Gu, Gpre, gm0, gh0, gAd, gBd, gEm, gEh, gWm, gWh


# A custom operator, as torchlmu::elman_scan (one graph for every T under compile and export).
@torch.library.custom_op("torchlmu::lmu_elman_scan", mutates_args=())
def _lmu_elman_op(
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
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    Ms, Hs, Us = _lmu_elman_forward(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act)
    return Ms, Hs, Ms[-1].clone(), Hs[-1].clone(), Us  # Us: kept for the backward


@_lmu_elman_op.register_fake
def _(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act):
    T, B, _ = xu.shape
    return (
        xu.new_empty((T, B, m0.shape[-1])),
        xh.new_empty(xh.shape),
        m0.new_empty(m0.shape),
        h0.new_empty(h0.shape),
        xu.new_empty(xu.shape),
    )


def _lmu_elman_setup(ctx, inputs, output):
    xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act = inputs
    Ms, Hs, _, _, Us = output
    ctx.save_for_backward(m0, h0, Ad, Bd, Em, Eh, Wm, Wh, Ms, Hs, Us, xu, xh)
    ctx.act = act
    # a caller that needs only the last states leaves the sequences without a gradient: None,
    # so the backward neither fills nor adds all-zero gradients at every step
    ctx.set_materialize_grads(False)


def _lmu_elman_op_backward(ctx, gM, gH, gm_last, gh_last, _gU):
    *saved, xu, xh = ctx.saved_tensors
    if not torch.is_grad_enabled():
        need_A, need_B = ctx.needs_input_grad[4:6]
        grads = _lmu_elman_bwd_op(*saved, ctx.act, gM, gH, gm_last, gh_last, need_A, need_B)
        Em, Eh = saved[4], saved[5]
        keep = (True, True, True, True, need_A, need_B, Em is not None, Eh is not None, True, True)
        return (*(g if k else None for g, k in zip(grads, keep, strict=True)), None)
    # A double backward: differentiate the plain loop, recomputed from the saved inputs.
    inputs = [xu, xh, *saved[:8]]
    with torch.enable_grad():
        Ms, Hs = lmu_elman_scan_reference(*inputs, ctx.act)
        outs, gouts = [], []
        for o, g in ((Ms, gM), (Hs, gH), (Ms[-1], gm_last), (Hs[-1], gh_last)):
            if g is not None:
                outs.append(o)
                gouts.append(g)
        need = [i for i, v in enumerate(inputs) if v is not None and v.requires_grad]
        grads = torch.autograd.grad(
            outs, [inputs[i] for i in need], gouts, create_graph=True, allow_unused=True
        )
    out: list = [None] * 10
    for i, g in zip(need, grads, strict=True):
        out[i] = g
    return (*out, None)


@torch.library.custom_op("torchlmu::lmu_elman_scan_backward", mutates_args=())
def _lmu_elman_bwd_op(
    m0: Tensor,
    h0: Tensor,
    Ad: Tensor,
    Bd: Tensor,
    Em: Tensor | None,
    Eh: Tensor | None,
    Wm: Tensor,
    Wh: Tensor,
    Ms: Tensor,
    Hs: Tensor,
    Us: Tensor,
    act: str,
    gM: Tensor | None,
    gH: Tensor | None,
    gm_last: Tensor | None,
    gh_last: Tensor | None,
    need_A: bool,
    need_B: bool,
) -> list[Tensor]:
    """The backward loop as one operator (see elman_scan_backward); gradients it does not
    compute (absent encoders, Ā and B̄ unless needed) come back as 0-d zeros."""
    saved = (m0, h0, Ad, Bd, Em, Eh, Wm, Wh, Ms, Hs, Us)
    with torch.no_grad():
        grads = _lmu_elman_backward(saved, act, gM, gH, gm_last, gh_last, (need_A, need_B))
    return [m0.new_zeros(()) if g is None else g.contiguous() for g in grads]


@_lmu_elman_bwd_op.register_fake
def _(m0, h0, Ad, Bd, Em, Eh, Wm, Wh, Ms, Hs, Us, act, gM, gH, gm_last, gh_last, need_A, need_B):
    like = (Us, Hs, m0, h0, Ad if need_A else None, Bd if need_B else None, Em, Eh, Wm, Wh)
    return [m0.new_empty(()) if t is None else t.new_empty(t.shape) for t in like]


_lmu_elman_op.register_autograd(_lmu_elman_op_backward, setup_context=_lmu_elman_setup)


def lmu_elman_scan(
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
    act: str = "tanh",
    return_last: bool = False,
) -> tuple[Tensor, ...]:
    """The paper's cell with all connections over T steps, with a hand-written backward:

        u_t = xu_t + e_m m_{t−1} + e_h h_{t−1};   m_t = Ā m_{t−1} + B̄ u_t (per channel);
        h_t = f(xh_t + W_m m_t + W_h h_{t−1})

    Args:
        xu: ``(T, B, C)`` the input's part of u (e_x x_t + b_u).  xh: ``(T, B, H)`` the input's
            part of the hidden pre-activation (W_x x_t + b).  m0: ``(B, C·d)``.  h0: ``(B, H)``.
        Ad: ``(d, d)``.  Bd: ``(d,)``.  Em: ``(C, C·d)`` or None.  Eh: ``(C, H)`` or None.
        Wm: ``(H, C·d)``.  Wh: ``(H, H)``.
        return_last: also return the last states ``(B, C·d)`` and ``(B, H)`` as their own
            outputs (use them, not ``states[-1]``, where the last states are what matters: the
            backward is then cheaper).
    Returns:
        memory states ``(T, B, C·d)`` and hidden states ``(T, B, H)`` (and the last of each).
    """
    args = (xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh)
    if tracing() or (
        torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in args)
    ):
        out = _lmu_elman_op(*args, act)[:4]
    else:
        with torch.no_grad():
            Ms, Hs, _ = _lmu_elman_forward(*args, act)
        out = (Ms, Hs, Ms[-1].clone(), Hs[-1].clone())
    return out if return_last else out[:2]


# ------------------------------------------------------- PyTorch's RNN, LSTM and GRU cells
#: The torch cells a hidden part may wrap, by the name of their equations.
CELL_KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def cell_recur(
    kind: str, pre: Tensor, h: Tensor, c: Tensor | None, W_hh: Tensor, b_hh: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """One step of an nn.RNNCell/LSTMCell/GRUCell given its input projection ``pre`` = W_ih z +
    b_ih ``(B, G)`` (PyTorch's documented equations; gates i, f, g, o and r, z, n)."""
    gh = h @ W_hh.T
    if b_hh is not None:
        gh = gh + b_hh
    if kind == "lstm":
        i, f, g, o = (pre + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if kind == "gru":
        ir, iz, inn = pre.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = torch.sigmoid(ir + hr)
        z = torch.sigmoid(iz + hz)
        n = torch.tanh(inn + r * hn)
        return (1 - z) * n + z * h, None
    return (torch.tanh if kind == "rnn_tanh" else torch.relu)(pre + gh), None


def cell_scan_reference(
    kind: str,
    pre: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    W_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`cell_recur` over ``pre`` ``(T, B, G)``: (outputs ``(T, B, H)``, zero past
    ``lengths``; the last valid h; the last valid c or None), by a plain loop."""
    h, c, ys = h0, c0, []
    for t in range(pre.shape[0]):
        hn, cn = cell_recur(kind, pre[t], h, c, W_hh, b_hh)
        if lengths is not None:
            active = (t < lengths).unsqueeze(-1)
            hn = torch.where(active, hn, h)
            cn = None if c is None else torch.where(active, cn, c)
            ys.append(torch.where(active, hn, torch.zeros_like(hn)))
        else:
            ys.append(hn)
        h, c = hn, cn
    return torch.stack(ys, 0), h, c


# Under torch.compile or torch.export the loop is one custom operator (one graph for every T);
# its backward differentiates the loop recomputed through autograd (so it is differentiable
# again in grad mode). Eagerly the plain loop runs through autograd.
@torch.library.custom_op("torchlmu::cell_scan", mutates_args=())
def _cell_scan_op(
    kind: str,
    pre: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    W_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    with torch.no_grad():
        ys, h, c = cell_scan_reference(kind, pre, h0, c0, W_hh, b_hh, lengths)
    return ys, h.clone(), (h.new_zeros(()) if c is None else c.clone())


@_cell_scan_op.register_fake
def _(kind, pre, h0, c0, W_hh, b_hh, lengths):
    ys = pre.new_empty((*pre.shape[:2], h0.shape[-1]))
    return ys, torch.empty_like(h0), (h0.new_empty(()) if c0 is None else torch.empty_like(c0))


def _cell_scan_setup(ctx, inputs, output):
    kind, pre, h0, c0, W_hh, b_hh, lengths = inputs
    ctx.save_for_backward(pre, h0, c0, W_hh, b_hh, lengths)
    ctx.kind = kind
    ctx.set_materialize_grads(False)


def _cell_scan_backward(ctx, g_ys, g_h, g_c):
    pre, h0, c0, W_hh, b_hh, lengths = ctx.saved_tensors
    if torch.is_grad_enabled():  # a double backward: differentiable all the way
        grads = _cell_scan_grads(ctx.kind, pre, h0, c0, W_hh, b_hh, lengths, g_ys, g_h, g_c)
    else:
        grads = _cell_scan_bwd_op(ctx.kind, pre, h0, c0, W_hh, b_hh, lengths, g_ys, g_h, g_c)
        grads = [
            g if v is not None else None
            for g, v in zip(grads, (pre, h0, c0, W_hh, b_hh), strict=True)
        ]
    return (None, *grads, None)


def _cell_scan_grads(kind, pre, h0, c0, W_hh, b_hh, lengths, g_ys, g_h, g_c):
    """Gradients of the five tensor inputs (None for absent ones) by differentiating the loop
    recomputed: through autograd in grad mode (a double backward), else by torch.func.vjp
    (which also works inside an operator, where autograd does not record)."""
    inputs = [pre, h0, c0, W_hh, b_hh]
    present = [i for i, v in enumerate(inputs) if v is not None]
    outs_g = [g_ys, g_h, g_c]

    def run(*xs):
        full: list = [None] * 5
        for i, v in zip(present, xs, strict=True):
            full[i] = v
        ys, h, c = cell_scan_reference(kind, *full, lengths)
        return tuple(o for o, g in zip((ys, h, c), outs_g, strict=True) if g is not None)

    gouts = tuple(g for g in outs_g if g is not None)
    if not gouts:
        return [None] * 5
    if torch.is_grad_enabled():
        with torch.enable_grad():
            xs = [
                inputs[i] if inputs[i].requires_grad else inputs[i].detach().requires_grad_()
                for i in present
            ]
            grads = torch.autograd.grad(run(*xs), xs, gouts, create_graph=True, allow_unused=True)
    else:
        _, vjp = torch.func.vjp(run, *[inputs[i] for i in present])
        grads = vjp(gouts)
    out: list = [None] * 5
    for i, g in zip(present, grads, strict=True):
        out[i] = g
    return out


@torch.library.custom_op("torchlmu::cell_scan_backward", mutates_args=())
def _cell_scan_bwd_op(
    kind: str,
    pre: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    W_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    g_ys: Tensor | None,
    g_h: Tensor | None,
    g_c: Tensor | None,
) -> list[Tensor]:
    with torch.no_grad():
        grads = _cell_scan_grads(kind, pre, h0, c0, W_hh, b_hh, lengths, g_ys, g_h, g_c)
    like = (pre, h0, c0, W_hh, b_hh)
    return [
        (h0.new_zeros(()) if v is None else v.new_zeros(v.shape)) if g is None else g.contiguous()
        for g, v in zip(grads, like, strict=True)
    ]


@_cell_scan_bwd_op.register_fake
def _(kind, pre, h0, c0, W_hh, b_hh, lengths, g_ys, g_h, g_c):
    return [
        h0.new_empty(()) if v is None else v.new_empty(v.shape) for v in (pre, h0, c0, W_hh, b_hh)
    ]


_cell_scan_op.register_autograd(_cell_scan_backward, setup_context=_cell_scan_setup)


def cell_scan(
    kind: str,
    pre: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    W_hh: Tensor,
    b_hh: Tensor | None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`cell_scan_reference`, as the operator ``torchlmu::cell_scan`` inside a compiled or
    exported graph (eagerly, the loop itself)."""
    if not tracing():
        return cell_scan_reference(kind, pre, h0, c0, W_hh, b_hh, lengths)
    ys, h, c = _cell_scan_op(kind, pre, h0, c0, W_hh, b_hh, lengths)
    return ys, h, (None if c0 is None else c)
