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

import torch
from torch import Tensor

__all__ = [
    "ACTIVATIONS",
    "activation_fn",
    "elman_scan",
    "elman_scan_reference",
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


def _act_(x: Tensor, act: str) -> Tensor:
    if act == "tanh":
        return x.tanh_()
    if act == "relu":
        return x.relu_()
    if act == "sigmoid":
        return x.sigmoid_()
    return x


def _act(x: Tensor, act: str) -> Tensor:
    return _act_(x.clone(), act) if act != "linear" else x


def _dact(y: Tensor, act: str) -> Tensor:
    """f'(z) from y = f(z)."""
    if act == "tanh":
        return torch.addcmul(y.new_ones(()).expand_as(y), y, y, value=-1)  # 1 − y², one pass
    if act == "relu":
        return (y > 0).to(y.dtype)
    if act == "sigmoid":
        return y * (1 - y)
    return torch.ones_like(y)


def _dact_mul_(g: Tensor, y: Tensor, act: str) -> Tensor:
    """g ← g · f'(z), with f' expressed through y = f(z)."""
    if act == "tanh":
        return g.mul_(1 - y * y)
    if act == "relu":
        return g.mul_(y > 0)
    if act == "sigmoid":
        return g.mul_(y * (1 - y))
    return g


# ------------------------------------------------------------------------------ Elman hidden
def elman_scan_reference(pre: Tensor, h0: Tensor, W: Tensor, act: str) -> Tensor:
    """h_t = f(pre_t + h_{t−1} Wᵀ) by a plain loop. pre ``(T, B, H)``, h0 ``(B, H)`` -> ``(T, B, H)``."""
    h, out = h0, []
    for t in range(pre.shape[0]):
        h = _act(pre[t] + h @ W.T, act)
        out.append(h)
    return torch.stack(out, 0)


class _ElmanScan(torch.autograd.Function):
    """Returns (all states, a copy of the last): a caller that uses only the last state leaves
    the first output without a gradient, and the backward then skips adding it at every step."""

    @staticmethod
    def forward(ctx, pre: Tensor, h0: Tensor, W: Tensor, act: str, inplace: bool):
        T = pre.shape[0]
        WT = W.T
        h = h0
        if inplace:  # the states overwrite the pre-activations: no copy of pre per step
            Hs = pre
            ctx.mark_dirty(pre)
            for t in range(T):
                Hs[t].addmm_(h, WT)
                _act_(Hs[t], act)
                h = Hs[t]
        else:
            Hs = torch.empty_like(pre)
            for t in range(T):
                torch.addmm(pre[t], h, WT, out=Hs[t])
                _act_(Hs[t], act)
                h = Hs[t]
        ctx.save_for_backward(h0, W, Hs)
        ctx.act = act
        ctx.set_materialize_grads(False)
        return Hs, Hs[-1].clone()

    @staticmethod
    def backward(ctx, gH: Tensor | None, g_last: Tensor | None):
        h0, W, Hs = ctx.saved_tensors
        T = Hs.shape[0]
        D = _dact(Hs, ctx.act)  # f'(z_t) for all t in one vectorised pass
        G = torch.empty_like(Hs)  # gradient w.r.t. the pre-activations
        g = torch.zeros_like(h0) if g_last is None else g_last
        if gH is not None:
            g = g + gH[T - 1]
        for t in range(T - 1, -1, -1):
            torch.mul(g, D[t], out=G[t])
            if t > 0 and gH is not None:
                g = torch.addmm(gH[t - 1], G[t], W)
            else:
                g = G[t] @ W
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
        gW = G[0].T @ h0  # Σ_t G_tᵀ h_{t−1}, without concatenating h0 to the states
        if T > 1:
            gW = gW.addmm_(flat(G[1:]).T, flat(Hs[:-1]))
        return G, g, gW, None, None


def elman_scan(
    pre: Tensor,
    h0: Tensor,
    W: Tensor,
    act: str = "tanh",
    inplace: bool = False,
    return_last: bool = False,
):
    """h_t = f(pre_t + h_{t−1} Wᵀ) for all t, with a hand-written backward.

    Args:
        pre: ``(T, B, H)`` input projections (everything but the recurrent term), contiguous.
        h0: ``(B, H)``.  W: ``(H, H)``.
        inplace: write the states into ``pre`` (a temporary the caller no longer needs).
        return_last: also return the last state ``(B, H)`` as its own output (use it, not
            ``states[-1]``, when only the last state matters: the backward is then cheaper).
    Returns:
        states ``(T, B, H)`` (and the last state).
    """
    if not torch.is_grad_enabled() or not (
        pre.requires_grad or h0.requires_grad or W.requires_grad
    ):
        with torch.no_grad():
            Hs, last = _ElmanScan.forward(_NoCtx(), pre, h0, W, act, inplace)
    else:
        Hs, last = _ElmanScan.apply(pre, h0, W, act, inplace)
    return (Hs, last) if return_last else Hs


class _NoCtx:
    """Stands in for autograd's ctx when the forward runs without a graph."""

    def save_for_backward(self, *args):
        pass

    def mark_dirty(self, *args):
        pass

    def set_materialize_grads(self, value):
        pass


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
    m, h = m0, h0
    Ms, Hs = [], []
    for t in range(T):
        u = xu[t]
        if Em is not None:
            u = u + m @ Em.T
        if Eh is not None:
            u = u + h @ Eh.T
        m = ((m.reshape(B, C, d) @ Ad.T) + u.unsqueeze(-1) * Bd).reshape(B, C * d)
        h = _act(xh[t] + m @ Wm.T + h @ Wh.T, act)
        Ms.append(m)
        Hs.append(h)
    return torch.stack(Ms, 0), torch.stack(Hs, 0)


class _LMUElmanScan(torch.autograd.Function):
    """Returns (memory states, hidden states, copies of the last of each). As in
    :class:`_ElmanScan`, a caller that needs only the last states leaves the sequences without a
    gradient, and the backward then neither fills nor adds all-zero gradients at every step."""

    @staticmethod
    def forward(ctx, xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, act):
        T, B, C = xu.shape
        d = Ad.shape[0]
        S = C * d
        Ms = xu.new_empty((T, B, S))
        Hs = xh.new_empty(xh.shape)
        Us = xu.clone()
        AT, WmT, WhT = Ad.T, Wm.T, Wh.T
        EmT = None if Em is None else Em.T
        EhT = None if Eh is None else Eh.T
        m, h = m0, h0
        for t in range(T):
            u = Us[t]
            if EmT is not None:
                u.addmm_(m, EmT)
            if EhT is not None:
                u.addmm_(h, EhT)
            mt = Ms[t]
            torch.mm(m.reshape(B * C, d), AT, out=mt.view(B * C, d))
            mt.view(B, C, d).addcmul_(u.unsqueeze(-1), Bd)
            ht = Hs[t]
            torch.addmm(xh[t], mt, WmT, out=ht)
            ht.addmm_(h, WhT)
            _act_(ht, act)
            m, h = mt, ht
        ctx.save_for_backward(m0, h0, Ad, Bd, Em, Eh, Wm, Wh, Ms, Hs, Us)
        ctx.act = act
        ctx.set_materialize_grads(False)
        return Ms, Hs, Ms[-1].clone(), Hs[-1].clone()

    @staticmethod
    def backward(ctx, gM, gH, gm_last, gh_last):
        m0, h0, Ad, Bd, Em, Eh, Wm, Wh, Ms, Hs, Us = ctx.saved_tensors
        T, B, S = Ms.shape
        d = Ad.shape[0]
        C = S // d
        # Gm[t] = ∂L/∂m_t and Gpre[t] = ∂L/∂(pre-activation of h_t). Each step writes what it
        # carries back straight into the previous step's slot (or into the initial states').
        Gpre = torch.empty_like(Hs)
        Gm = torch.empty_like(Ms)
        Gu = torch.empty_like(Us)  # ∂L/∂u_t
        gm0, gh0 = torch.empty_like(m0), torch.empty_like(h0)
        for slot, g in ((Gm[T - 1], gm_last), (Gpre[T - 1], gh_last)):
            if g is None:
                slot.zero_()
            else:
                slot.copy_(g)
        BdT = Bd.unsqueeze(1)
        for t in range(T - 1, -1, -1):
            gp = Gpre[t]
            if gH is not None:
                gp.add_(gH[t])
            _dact_mul_(gp, Hs[t], ctx.act)
            gmt = Gm[t]
            if gM is not None:
                gmt.add_(gM[t])
            gmt.addmm_(gp, Wm)
            gu = Gu[t]
            torch.mm(gmt.view(B * C, d), BdT, out=gu.view(B * C, 1))
            to_m, to_h = (Gm[t - 1], Gpre[t - 1]) if t > 0 else (gm0, gh0)
            torch.mm(gmt.view(B * C, d), Ad, out=to_m.view(B * C, d))
            torch.mm(gp, Wh, out=to_h)
            if Em is not None:
                to_m.addmm_(gu, Em)
            if Eh is not None:
                to_h.addmm_(gu, Eh)

        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731

        def shifted(G: Tensor, X: Tensor, x0: Tensor) -> Tensor:
            """Σ_t G_tᵀ X_{t−1} with X_{−1} = x0, without concatenating x0 to the states."""
            out = G[0].T @ x0
            return out.addmm_(flat(G[1:]).T, flat(X[:-1])) if T > 1 else out

        gWm = flat(Gpre).T @ flat(Ms)
        gWh = shifted(Gpre, Hs, h0)
        gAd = None
        if Ad.requires_grad:
            Gc, Mc = Gm.view(T, B * C, d), Ms.view(T, B * C, d)
            gAd = shifted(Gc, Mc, m0.reshape(B * C, d))
        gBd = (
            (Gm.reshape(-1, C, d) * Us.reshape(-1, C, 1)).sum((0, 1)) if Bd.requires_grad else None
        )
        gEm = shifted(Gu, Ms, m0) if Em is not None else None
        gEh = shifted(Gu, Hs, h0) if Eh is not None else None
        return Gu, Gpre, gm0, gh0, gAd, gBd, gEm, gEh, gWm, gWh, None


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
    if not torch.is_grad_enabled() or not any(a is not None and a.requires_grad for a in args):
        with torch.no_grad():
            out = _LMUElmanScan.forward(_NoCtx(), *args, act)
    else:
        out = _LMUElmanScan.apply(*args, act)
    return out if return_last else out[:2]
