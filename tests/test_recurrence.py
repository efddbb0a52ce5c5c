"""Hand-written BPTT recurrences against their plain-loop twins: outputs and every gradient."""

from __future__ import annotations

import pytest
import torch
from conftest import TOL, rand, rel, spy_onednn

from torchlmu import ops
from torchlmu.exceptions import ValidationError
from torchlmu.recurrence import (
    elman_scan,
    elman_scan_reference,
    elman_scan_rnn,
    lmu_elman_scan,
    lmu_elman_scan_reference,
)

# (dtype, whether the step loops' products go to oneDNN at every size): float32 both ways
ENGINES = [(torch.float64, False), (torch.float32, False), (torch.float32, True)]


def _engine(monkeypatch, onednn: bool) -> list | None:
    """With ``onednn``, ops.linear's threshold at 1 and its oneDNN calls counted."""
    if not onednn:
        return None
    monkeypatch.setattr(ops, "ONEDNN_STEP_MIN_FLOPS", 1)
    return spy_onednn(monkeypatch)


@pytest.mark.parametrize(("dtype", "onednn"), ENGINES)
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "linear"])
def test_elman_scan(monkeypatch, dtype, onednn, act):
    calls = _engine(monkeypatch, onednn)
    g = torch.Generator().manual_seed(0)
    pre, h0, W = (
        rand(17, 4, 6, dtype=dtype, g=g),
        rand(4, 6, dtype=dtype, g=g),
        rand(6, 6, dtype=dtype, scale=0.3, g=g),
    )
    a, b = elman_scan(pre, h0, W, act), elman_scan_reference(pre, h0, W, act)
    assert rel(a, b) <= TOL[dtype]
    w = torch.randn(a.shape, generator=g, dtype=torch.float64).to(dtype)
    ga = torch.autograd.grad((a * w).sum(), [pre, h0, W], retain_graph=True)
    gb = torch.autograd.grad((b * w).sum(), [pre, h0, W], retain_graph=True)
    for x, y in zip(ga, gb, strict=True):
        assert rel(x, y) <= TOL[dtype]
    # the last output only (the classification case), through the separate last output
    ga = torch.autograd.grad(elman_scan(pre, h0, W, act, return_last=True)[1].sum(), [pre, h0, W])
    gb = torch.autograd.grad(b[-1].sum(), [pre, h0, W])
    for x, y in zip(ga, gb, strict=True):
        assert rel(x, y) <= TOL[dtype]
    with torch.no_grad():
        assert rel(elman_scan(pre, h0, W, act), b) <= TOL[dtype]
        assert rel(elman_scan(pre.clone(), h0, W, act, inplace=True), b) <= TOL[dtype]
    # in place on a temporary, through autograd
    c = elman_scan(pre * 1.0, h0, W, act, inplace=True)
    gc = torch.autograd.grad((c * w).sum(), [pre, h0, W])
    gb = torch.autograd.grad((elman_scan_reference(pre, h0, W, act) * w).sum(), [pre, h0, W])
    for x, y in zip(gc, gb, strict=True):
        assert rel(x, y) <= TOL[dtype]
    if onednn:  # every step's product on oneDNN: T calls forward, T in the backward alone
        T = pre.shape[0]
        n = len(calls)
        a = elman_scan(pre, h0, W, act)
        assert len(calls) - n == T
        torch.autograd.grad((a * w).sum(), [pre, h0, W])
        assert len(calls) - n == 2 * T


def _elman_args(dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        x.detach().to(device).requires_grad_()
        for x in (
            rand(17, 4, 6, dtype=dtype, g=g),
            rand(4, 6, dtype=dtype, g=g),
            rand(6, 6, dtype=dtype, scale=0.3, g=g),
        )
    ]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_elman_scan_rnn(dtype, act):
    """The fused-RNN-kernel form (cuDNN's on a GPU; here torch's CPU kernel, the same
    arithmetic): states, last state and every gradient equal the plain loop's."""
    pre, h0, W = _elman_args(dtype)
    Hs, last = elman_scan_rnn(pre, h0, W, act)
    ref = elman_scan_reference(pre, h0, W, act)
    assert rel(Hs, ref) <= TOL[dtype] and rel(last, ref[-1]) <= TOL[dtype]
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    for loss_a, loss_b in (((Hs * w).sum(), (ref * w).sum()), (last.sum(), ref[-1].sum())):
        ga = torch.autograd.grad(loss_a, [pre, h0, W], retain_graph=True)
        gb = torch.autograd.grad(loss_b, [pre, h0, W], retain_graph=True)
        for x, y in zip(ga, gb, strict=True):
            assert rel(x, y) <= TOL[dtype]
    with pytest.raises(ValidationError, match="act"):
        elman_scan_rnn(pre, h0, W, "sigmoid")


@pytest.mark.gpu
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_elman_scan_on_cuda_against_the_cpu_float64_loop(act):
    """On a GPU elman_scan takes cuDNN's fused kernel (tanh, relu) or its own loop (the rest):
    float32 states and gradients against the CPU float64 loop, within max(f, 4 × the CPU
    float32 loop's own error against float64), f = 1e-5 (float32's) for the loop and 2e-5 for
    cuDNN, which sums in its own order with its own activation: on an H200 the states were
    1.11e-5 off in session 17 and a gradient 1.1e-5 in session 10, each above 4 × the CPU
    float32 loop's error."""
    cpu = _elman_args(torch.float64)
    gpu = [x.detach().float().cuda().requires_grad_() for x in cpu]
    f32 = [x.detach().float().requires_grad_() for x in cpu]
    a = elman_scan(*gpu, act)
    b = elman_scan_reference(*cpu, act)
    c = elman_scan_reference(*f32, act)
    ga = torch.autograd.grad(a.square().sum(), gpu)
    gb = torch.autograd.grad(b.square().sum(), cpu)
    gc = torch.autograd.grad(c.square().sum(), f32)
    floor = TOL[torch.float32] * (2 if act in ("tanh", "relu") else 1)
    for x, y, z in zip((a, *ga), (b, *gb), (c, *gc), strict=True):
        tol = max(floor, 4 * rel(z.double(), y))
        assert rel(x.double().cpu(), y) <= tol


@pytest.mark.parametrize(("dtype", "onednn"), ENGINES)
@pytest.mark.parametrize(
    ("em", "eh", "C"),
    [(True, True, 1), (True, True, 3), (False, True, 2), (True, False, 1), (False, False, 2)],
)
@pytest.mark.parametrize("use", ["sequences", "last", "both"])
def test_lmu_elman_scan(monkeypatch, dtype, onednn, em, eh, C, use):
    """Outputs and every gradient equal the plain loop's, whether the loss reads the sequences,
    only the last states (the backward then starts from them alone), or both; in float32 also
    with every step product on oneDNN."""
    calls = _engine(monkeypatch, onednn)
    g = torch.Generator().manual_seed(1)
    T, B, H, d = 15, 3, 5, 4
    args = [
        rand(T, B, C, dtype=dtype, g=g),
        rand(T, B, H, dtype=dtype, g=g),
        rand(B, C * d, dtype=dtype, g=g),
        rand(B, H, dtype=dtype, g=g),
        rand(d, d, dtype=dtype, scale=0.3, g=g),
        rand(d, dtype=dtype, g=g),
        rand(C, C * d, dtype=dtype, scale=0.3, g=g) if em else None,
        rand(C, H, dtype=dtype, scale=0.3, g=g) if eh else None,
        rand(H, C * d, dtype=dtype, scale=0.3, g=g),
        rand(H, H, dtype=dtype, scale=0.3, g=g),
    ]
    Ma, Ha, ma, ha = lmu_elman_scan(*args, "tanh", return_last=True)
    Mb, Hb = lmu_elman_scan_reference(*args, "tanh")
    assert rel(Ma, Mb) <= TOL[dtype] and rel(Ha, Hb) <= TOL[dtype]
    assert torch.equal(ma, Ma[-1]) and torch.equal(ha, Ha[-1])
    wm = torch.randn(Ma.shape, generator=g, dtype=torch.float64).to(dtype)
    wh = torch.randn(Ha.shape, generator=g, dtype=torch.float64).to(dtype)
    ps = [a for a in args if a is not None]

    def loss(M, H, m, h):
        seq = (M * wm).sum() + (H * wh).sum()
        last = (m * wm[-1]).sum() + (h * wh[-1]).sum()
        return {"sequences": seq, "last": last, "both": seq + 2 * last}[use]

    ga = torch.autograd.grad(loss(Ma, Ha, ma, ha), ps)
    gb = torch.autograd.grad(loss(Mb, Hb, Mb[-1], Hb[-1]), ps)
    if dtype == torch.float64:
        for x, y in zip(ga, gb, strict=True):
            assert rel(x, y) <= TOL[dtype]
        return
    # float32: against the float64 truth, no worse than 4x the float32 loop's own error. Some
    # gradients are ill-conditioned (∂L/∂h0 through 15 steps from the last state alone: the
    # plain float32 loop itself is off by 1.7e-4 there), so a fixed 1e-5 would test rounding.
    ps64 = [a.detach().double().requires_grad_() for a in ps]
    it = iter(ps64)
    args64 = [None if a is None else next(it) for a in args]
    M64, H64 = lmu_elman_scan_reference(*args64, "tanh")
    wm64, wh64 = wm.double(), wh.double()
    seq = (M64 * wm64).sum() + (H64 * wh64).sum()
    last = (M64[-1] * wm64[-1]).sum() + (H64[-1] * wh64[-1]).sum()
    g64 = torch.autograd.grad({"sequences": seq, "last": last, "both": seq + 2 * last}[use], ps64)
    for x, y, z in zip(ga, gb, g64, strict=True):
        assert rel(x, z) <= max(TOL[dtype], 4 * rel(y, z))
    if onednn:  # three products per step forward, three backward
        assert len(calls) >= 6 * T


def _lmu_elman_args(g, T, B, H, d, C, dt=torch.float64) -> tuple:
    """lmu_elman_scan's ten tensor inputs (every encoder present), random, requiring grad."""
    return (
        rand(T, B, C, dtype=dt, g=g), rand(T, B, H, dtype=dt, g=g), rand(B, C * d, dtype=dt, g=g),
        rand(B, H, dtype=dt, g=g), rand(d, d, dtype=dt, scale=0.3, g=g), rand(d, dtype=dt, g=g),
        rand(C, C * d, dtype=dt, scale=0.3, g=g), rand(C, H, dtype=dt, scale=0.3, g=g),
        rand(H, C * d, dtype=dt, scale=0.3, g=g), rand(H, H, dtype=dt, scale=0.3, g=g),
    )  # fmt: skip


def test_lmu_elman_scan_gradcheck():
    g = torch.Generator().manual_seed(2)
    args = _lmu_elman_args(g, T=6, B=2, H=3, d=3, C=2)
    assert torch.autograd.gradcheck(lambda *a: lmu_elman_scan(*a, "tanh"), args)
    assert torch.autograd.gradcheck(
        lambda *a: lmu_elman_scan(*a, "tanh", return_last=True)[2:], args
    )


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "linear"])
def test_lmu_elman_scan_activations(act):
    """Every activation's derivative in the fused backward equals the plain loop's (float64)."""
    g = torch.Generator().manual_seed(3)
    args = _lmu_elman_args(g, T=9, B=2, H=4, d=3, C=2)
    dt = torch.float64
    Ma, Ha = lmu_elman_scan(*args, act)
    Mb, Hb = lmu_elman_scan_reference(*args, act)
    assert rel(Ma, Mb) <= TOL[dt] and rel(Ha, Hb) <= TOL[dt]
    wm, wh = (
        torch.randn(Ma.shape, generator=g, dtype=dt),
        torch.randn(Ha.shape, generator=g, dtype=dt),
    )
    ga = torch.autograd.grad((Ma * wm).sum() + (Ha * wh).sum(), args)
    gb = torch.autograd.grad((Mb * wm).sum() + (Hb * wh).sum(), args)
    for x, y in zip(ga, gb, strict=True):
        assert rel(x, y) <= TOL[dt]
