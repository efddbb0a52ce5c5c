"""LegendreMemory, LMUCell and LMU: recurrent == parallel == streaming, and the module contract.

Tolerances: see conftest.py (float64 1e-10 everywhere; float32 1e-5, RMS-floored)."""

from __future__ import annotations

import copy
import io
import itertools
import warnings

import pytest
import torch
from conftest import (
    DEVICES,
    FLAGS,
    HIDDEN,
    TOL,
    check_equal,
    loss_and_grads,
    make_hidden,
    make_pair,
    random_state,
    rel,
    stream,
)
from torch import nn

from torchlmu import (
    LMU,
    DTypeError,
    LegendreMemory,
    LMUCell,
    LMUState,
    ModeError,
    UnstableDiscretizationWarning,
    ValidationError,
    legendre,
    ops,
)


def _case_id(case) -> str:
    kind, flags, ch, bf, batched, tt, use_len = case
    names = ("h2m", "m2m", "i2h")
    parts = [str(kind), *(n for n, f in zip(names, flags, strict=True) if f), f"ch{ch}"]
    parts += [
        n for n, f in (("bf", bf), ("unbatched", not batched), ("tt", tt), ("len", use_len)) if f
    ]
    return "-".join(parts)


# The equivalence grid, case by case (select with -k, e.g. -k "lstm-h2m and unbatched"): every
# hidden type and connection with channels, batch_first, unbatched, trainable θ and lengths.
CASES = [
    (kind, flags, ch, bf, batched, tt, use_len)
    for kind in HIDDEN
    for flags in FLAGS
    if not (kind is None and flags[0])
    for ch, bf, batched, tt, use_len in itertools.product(
        [1, 2], [False, True], [True, False], [False, True], [False, True]
    )
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    ("kind", "flags", "ch", "bf", "batched", "tt", "use_len"), CASES, ids=map(_case_id, CASES)
)
def test_recurrent_parallel_streaming_agree(kind, flags, ch, bf, batched, tt, use_len, dtype):
    """Recurrent, parallel and streaming forms against the reference step loop: outputs, final
    states and gradients."""
    tol = TOL[dtype]
    T, B = 9, 3
    # the parallel memory by blocked matmuls with one channel, by FFT with two
    ref, fast = make_pair(
        kind, flags, channels=ch, trainable_theta=tt, dtype=dtype, batch_first=bf,
        conv="chunk" if ch == 1 else "fft",
    )  # fmt: skip
    what = f"{kind} {flags} ch={ch} bf={bf} batched={batched} tt={tt} len={use_len}"
    g = torch.Generator().manual_seed(1)
    shape = ((B, T, 2) if bf else (T, B, 2)) if batched else (T, 2)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    state = random_state(ref, B, batched, dtype)
    lengths = None
    if use_len:
        lengths = torch.tensor([T, 4, 1]) if batched else torch.tensor([5])
    y_ref, st_ref = ref.forward_reference(x, state, lengths=lengths)
    wy = torch.randn(y_ref.shape, generator=g, dtype=torch.float64).to(dtype)
    ws = [
        None if s is None else torch.randn(s.shape, generator=g, dtype=torch.float64).to(dtype)
        for s in st_ref
    ]
    # the reference (the cell's step loop through autograd) against every fast form:
    # mode="recurrent" (hand-written BPTT for the paper's cell) and "auto" (parallel)
    y_ref, st_ref, g_ref = loss_and_grads(ref, x, state, lengths, wy, ws, reference=True)
    for model, label in ((ref, "recurrent"), (fast, "auto")):
        y, st, gr = loss_and_grads(model, x, state, lengths, wy, ws)
        what_m = f"{label} {what}"
        check_equal([y], [y_ref], tol, "output " + what_m)
        check_equal(st, st_ref, tol, "state " + what_m)
        if dtype == torch.float64:
            check_equal(gr, g_ref, tol, "grad " + what_m)
        else:
            check_equal(gr[:1], g_ref[:1], tol, "input grad " + what_m)
            flat = [torch.cat([g.reshape(-1) for g in gs[1:]]) for gs in (gr, g_ref)]
            check_equal(flat[:1], flat[1:], tol, "param grads " + what_m)
    if fast.cell.parallelizable:
        assert fast.resolved_mode() == "parallel"
    else:
        assert fast.resolved_mode() == "recurrent"
        with pytest.raises(ModeError):
            LMU(
                2,
                ref.hidden_size,
                4,
                6.0,
                mode="parallel",
                hidden_cell=kind if kind in ("tanh", "relu") else "tanh",
                hidden_to_memory=flags[0],
                memory_to_memory=flags[1],
            )
    # streaming: step() through the sequence
    with torch.no_grad():
        y_s, states = stream(ref, x, state, batched, bf)
        if lengths is None:
            check_equal([y_s], [y_ref.detach()], tol, "stream output " + what)
            check_equal(states[-1], st_ref, tol, "stream state " + what)
        else:
            tdim = (1 if bf else 0) if batched else 0
            for b, n in enumerate(lengths.tolist()):
                sel = (lambda t, b=b: t[b]) if batched else (lambda t: t)
                ys_b = y_s.narrow(tdim, 0, n)
                yr_b = y_ref.detach().narrow(tdim, 0, n)
                check_equal(
                    [sel(ys_b.movedim(tdim, -2))],
                    [sel(yr_b.movedim(tdim, -2))],
                    tol,
                    "stream output " + what,
                )
                check_equal(
                    [None if s is None else sel(s) for s in states[n - 1]],
                    [None if s is None else sel(s) for s in st_ref],
                    tol,
                    "stream state " + what,
                )
                if n < T:  # padding: outputs past the end are zero
                    assert (
                        y_ref.narrow(tdim, n, T - n)
                        .movedim(tdim, -2)[(b,) if batched else ()]
                        .abs()
                        .max()
                        == 0
                    )


@pytest.mark.parametrize("kind", ["tanh", "lstm", "ff", None])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_last_output_only(kind, dtype):
    """return_sequences=False equals the last step of the full sequence (with and without lengths)."""
    ref, _ = make_pair(kind, (False, False, True), dtype=dtype)
    last = LMU(
        2,
        ref.hidden_size,
        4,
        6.0,
        return_sequences=False,
        hidden_cell=make_hidden(kind, 6, 3, dtype),
        input_to_hidden=True,
        memory_bias=True,
        dtype=dtype,
    )
    last.load_state_dict(ref.state_dict())
    x = torch.randn(9, 3, 2, dtype=dtype)
    lengths = torch.tensor([9, 2, 5])
    for lt in (None, lengths):
        y_all, st_all = ref(x, lengths=lt)
        y, st = last(x, lengths=lt)
        idx = torch.tensor([8, 8, 8]) if lt is None else lt - 1
        check_equal([y], [y_all[idx, torch.arange(3)]], TOL[dtype], "last output")
        check_equal(st, st_all, TOL[dtype], "last state")


def test_parallel_state_continues_streaming():
    """Train parallel, deploy streaming: the state of a parallel forward continues step by step."""
    for kind in ("tanh", "lstm", "gru", None):
        ref, fast = make_pair(kind, (False, False, False))
        x = torch.randn(20, 2, 2, dtype=torch.float64)
        y_full, st_full = ref(x)
        _, st = fast(x[:12])
        ys = []
        for t in range(12, 20):
            y, st = fast.step(x[t], st)
            ys.append(y)
        check_equal([torch.stack(ys)], [y_full[12:]], 1e-10, "continued outputs")
        check_equal(st, st_full, 1e-10, "continued state")
        # and a parallel forward of the tail from the middle state
        _, st_mid = fast(x[:12])
        y_tail, st_tail = fast(x[12:], st_mid)
        check_equal([y_tail], [y_full[12:]], 1e-10, "chunked outputs")
        check_equal(st_tail, st_full, 1e-10, "chunked state")


def test_step_follows_weight_changes_and_stepper_is_a_snapshot():
    """``step`` reads the weights live (in place, by assignment, θ via dt, a dtype change); an
    ``LMUStepper`` made after a change equals the cell's step, and one made before it does not
    (it is a snapshot, documented as such)."""
    torch.manual_seed(3)
    lmu = LMU(1, 6, 4, 9.0, input_to_hidden=True, hidden_to_memory=True, dtype=torch.float64)
    x = torch.randn(12, 2, 1, dtype=torch.float64)
    with torch.no_grad():
        st = lmu.initial_state(2)
        old = lmu.stepper()
        for t in range(12):
            if t == 4:
                lmu.cell.hidden.hidden_kernel.add_(0.3)  # in place
            if t == 6:
                h = lmu.cell.hidden
                h.memory_kernel = nn.Parameter(h.memory_kernel * 2)  # replaced
            if t == 8:
                lmu.dt = 0.5  # the same as θ 4.5 steps
            if t == 10:
                lmu.cell.hidden_encoders.mul_(-1)
            y_ref, st_ref = lmu.cell.step_(x[t], st)
            y, st_new = lmu.step(x[t], st)
            check_equal([y], [y_ref], 1e-12, f"step {t} output")
            check_equal(st_new, st_ref, 1e-12, f"step {t} state")
            y_f, st_f = lmu.stepper()(x[t], st)
            check_equal([y_f], [y_ref], 1e-12, f"fresh stepper {t} output")
            check_equal(st_f, st_ref, 1e-12, f"fresh stepper {t} state")
            if t >= 4:
                assert rel(old(x[t], st)[0], y_ref) > 1e-6  # the snapshot is stale
            st = st_new
        lmu.float()  # the float64 discretisation must not serve float32 input
        y, _ = lmu.step(x[0].float(), LMUState(*(s.float() for s in st if s is not None), None))
        assert y.dtype == torch.float32
        y, _ = lmu.stepper()(x[0].float(), LMUState(*(s.float() for s in st if s is not None)))
        assert y.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ["tanh", "lstm"])
def test_scalar_input_folds_encoders_into_the_projection(kind, dtype, device):
    """With a scalar input and no memory bias the parallel path scales the projection's weights
    by the encoders instead of the input; outputs, states and every gradient (the encoders', x's
    when it needs one) equal the step loop's, for 1 and 2 channels, blocked and FFT, with and
    without an initial state (which takes the unfolded path) and with trainable θ; the fast
    model also on CUDA (float64 there), against the CPU step loop."""
    if device == "cuda" and dtype == torch.float32:
        pytest.skip("float32 on the GPU is covered by test_device_agrees_with_cpu_float64")
    tol = TOL[dtype]
    T, B = 11, 3
    for ch, conv, with_state, x_grad, tt in itertools.product(
        [1, 2], ["chunk", "fft"], [False, True], [False, True], [False, True]
    ):
        what = f"{kind} ch={ch} {conv} state={with_state} x_grad={x_grad} tt={tt}"
        ref, fast = make_pair(
            kind, (False, False, True), channels=ch, trainable_theta=tt, dtype=dtype, I=1,
            conv=conv,
        )  # fmt: skip
        for m in (ref, fast):
            m.cell.memory.memory_bias = None  # the fold's condition: u = e·x exactly
        g = torch.Generator().manual_seed(2)
        x = torch.randn((T, B, 1), generator=g, dtype=torch.float64).to(dtype)
        state = random_state(ref, B, True, dtype) if with_state else None
        y_ref, st_ref = ref.forward_reference(x, state)
        wy = torch.randn(y_ref.shape, generator=g, dtype=torch.float64).to(dtype)
        ws = [
            None if v is None else torch.randn(v.shape, generator=g, dtype=torch.float64).to(dtype)
            for v in st_ref
        ]
        fast.to(device)
        out = []
        for model, reference in ((ref, True), (fast, False)):
            dev = "cpu" if reference else device
            on = lambda t, dev=dev: None if t is None else t.to(dev)  # noqa: E731
            params = [p for _, p in sorted(model.named_parameters())]
            xi = x.clone().to(dev).requires_grad_(x_grad)
            fn = model.forward_reference if reference else model
            y, st = fn(xi, None if state is None else LMUState(*map(on, state)))
            loss = (y * on(wy)).sum() + sum(
                (v * on(w)).sum() for v, w in zip(st, ws, strict=True) if v is not None
            )
            grads = torch.autograd.grad(loss, ([xi] if x_grad else []) + params)
            out.append(
                (y.cpu(), [None if v is None else v.cpu() for v in st], [t.cpu() for t in grads])
            )
        (y_r, st_r, g_r), (y_f, st_f, g_f) = out
        check_equal([y_f], [y_r], tol, "output " + what)
        check_equal(st_f, st_r, tol, "state " + what)
        check_equal(g_f, g_r, tol, "grads " + what)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_memory_scalar_input_scales_one_memory(monkeypatch, dtype, device):
    """A scalar input without bias: the parallel all-states path computes one memory of x and
    scales it per channel (for several channels, or when only the encoders need a gradient;
    one channel on the CPU: the memory of e·x, ops.scale_through); outputs, final states and
    gradients equal the recurrent step loop's (on the CPU; the fast module also on CUDA,
    float64 there)."""
    if device == "cuda" and dtype == torch.float32:
        pytest.skip("float32 on the GPU is covered by test_device_agrees_with_cpu_float64")
    through = []
    real = ops.scale_through
    monkeypatch.setattr(ops, "scale_through", lambda *a: through.append(1) or real(*a))
    tol = TOL[dtype]
    T, B, d = 13, 2, 5
    for C, conv, with_state, x_grad in itertools.product(
        [1, 3], ["chunk", "fft"], [False, True], [False, True]
    ):
        what = f"C={C} {conv} state={with_state} x_grad={x_grad}"
        torch.manual_seed(5)
        fast = LegendreMemory(1, d, 7.0, channels=C, conv=conv, dtype=dtype)
        ref = LegendreMemory(1, d, 7.0, channels=C, mode="recurrent", dtype=dtype)
        with torch.no_grad():
            fast.input_encoders.copy_(torch.randn_like(fast.input_encoders))
        ref.load_state_dict(fast.state_dict())
        g = torch.Generator().manual_seed(6)
        x = torch.randn((T, B, 1), generator=g, dtype=torch.float64).to(dtype)
        m0 = torch.randn((B, C * d), generator=g, dtype=torch.float64).to(dtype)
        wy = torch.randn((T, B, C * d), generator=g, dtype=torch.float64).to(dtype)
        wl = torch.randn((B, C * d), generator=g, dtype=torch.float64).to(dtype)
        fast.to(device)
        out = []
        for model, dev in ((ref, "cpu"), (fast, device)):
            xi = x.clone().to(dev).requires_grad_(x_grad)
            y, last = model(xi, m0.to(dev) if with_state else None)
            loss = (y * wy.to(dev)).sum() + (last * wl.to(dev)).sum()
            grads = torch.autograd.grad(loss, ([xi] if x_grad else []) + [model.input_encoders])
            out.append((y.cpu(), last.cpu(), [t.cpu() for t in grads]))
        (y_r, l_r, g_r), (y_f, l_f, g_f) = out
        check_equal([y_f, l_f], [y_r, l_r], tol, "states " + what)
        check_equal(g_f, g_r, tol, "grads " + what)
        expected = C == 1 and not with_state and not x_grad and device == "cpu"
        assert len(through) == expected, what  # the fast module's forward, once
        through.clear()
        with torch.no_grad():
            y_ng = fast(x.to(device), m0.to(device) if with_state else None)[0]
            check_equal([y_ng.cpu()], [y_r], tol, "no-grad " + what)


@pytest.mark.parametrize("shape", [(1,), (3, 1), (5, 3, 1), (2, 3)])
def test_memory_encode_equals_the_matmul(shape):
    """u = E x (+ b) for any leading shape, one input (a broadcast product) or several."""
    mem = LegendreMemory(shape[-1], 4, 9.0, channels=3, bias=True, dtype=torch.float64)
    with torch.no_grad():
        mem.memory_bias.normal_()
    x = torch.randn(shape, dtype=torch.float64)
    u = mem.encode(x)
    assert u.shape == (*shape[:-1], 3)
    check_equal([u], [x @ mem.input_encoders.T + mem.memory_bias], 1e-15, "encode")


def test_memory_states_may_change_in_place_before_the_backward():
    """An in-place op on the states (an in-place ReLU after the memory) or on the input between
    the forward and the backward: the gradients of the unchanged run's (the one-channel memory
    of e·x computes the memory again for states changed in place)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn((11, 2, 1), generator=g, dtype=torch.float64)
    w = torch.randn((11, 2, 6), generator=g, dtype=torch.float64)
    mem = LegendreMemory(1, 6, 9.0, dtype=torch.float64)
    ref = torch.autograd.grad((torch.relu(mem(x)[0]) * w).sum(), mem.input_encoders)[0]
    for change_x in (False, True):
        xi = x.clone()
        y = mem(xi)[0]
        if change_x:
            xi.mul_(2.0)
        (got,) = torch.autograd.grad((y.relu_() * w).sum(), mem.input_encoders)
        check_equal([got], [ref], 1e-12, f"in place, input changed too: {change_x}")
    relu = nn.Sequential(nn.ReLU(), nn.Linear(6, 4, dtype=torch.float64))
    lmus = [
        LMU(1, 4, 6, 9.0, hidden_cell=copy.deepcopy(relu), dtype=torch.float64) for _ in range(2)
    ]
    lmus[1].load_state_dict(lmus[0].state_dict())
    lmus[1].cell.hidden.module[0].inplace = True
    grads = [torch.autograd.grad(m(x)[0].sum(), m.cell.memory.input_encoders)[0] for m in lmus]
    check_equal(grads[1:], grads[:1], 1e-12, "an in-place ReLU as the hidden cell")


@pytest.mark.parametrize("fused", [None, True], ids=["cpu-form", "fused"])
@pytest.mark.parametrize("reads_h", [False, True], ids=["m-reads-x", "m-reads-h"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "linear"])
def test_streaming_fast_path_activations_and_kept_states(activation, reads_h, fused):
    """The precomputed streaming step (LMUStepper) equals the cell's step for each activation:
    in the CPU's default form, the memory's product on [m, x] (no hidden encoders) or on all of
    [m, x, h], and in the fused form (one product, a GPU's default), with and without each bias
    (a memory bias with tanh and relu, no hidden bias with relu and linear); states a caller
    kept are never changed later."""
    torch.manual_seed(4)
    lmu = LMU(2, 5, 3, 7.0, hidden_cell=activation, input_to_hidden=True,
              hidden_to_memory=reads_h, memory_bias=activation in ("tanh", "relu"),
              bias=activation in ("tanh", "sigmoid"), dtype=torch.float64)  # fmt: skip
    with torch.no_grad():  # nonzero biases (a memory bias starts at zero)
        for b in (lmu.cell.memory.memory_bias, lmu.cell.hidden.bias):
            if b is not None:
                b.uniform_(-0.5, 0.5)
    x = torch.randn(6, 2, 2, dtype=torch.float64)
    kept, st = [], lmu.initial_state(2)
    stepper = lmu.stepper(fused)
    if fused:
        assert stepper.M.shape == (3 + 2 + 5, 3 + 5) and stepper.M_m is None
    else:
        assert stepper.M_m.shape == (3 + 2 + 5 * reads_h, 3) and stepper.M_h.shape == (10, 5)
        assert stepper.M is None
    with torch.no_grad():
        for t in range(6):
            y_ref, st_ref = lmu.cell.step_(x[t], st)
            y, st = stepper(x[t], st)
            check_equal([y], [y_ref], 1e-12, f"{activation} step {t} output")
            check_equal(st, st_ref, 1e-12, f"{activation} step {t} state")
            kept.append((st, [None if s is None else s.clone() for s in st]))
    for t, (live, saved) in enumerate(kept):
        check_equal(live, saved, 0.0, f"{activation} state kept from step {t}")
    # with autograd recording (the step then applies its activation out of place), gradients
    # reach the input and the state as through the cell's step
    xs = x[0].clone().requires_grad_()
    s0 = LMUState(*(None if s is None else s.clone().requires_grad_() for s in st))
    w = torch.randn(2, 5, dtype=torch.float64)
    grads = []
    for fn in (stepper, lmu.cell.step_):
        y, s1 = fn(xs, s0)
        loss = (y * w).sum() + s1.memory.square().sum()
        grads.append(torch.autograd.grad(loss, [xs, s0.memory, s0.hidden]))
    check_equal(list(grads[0]), list(grads[1]), 1e-12, f"{activation} stepper gradients")
    # a snapshot: the cell's weights changed in place afterwards leave the stepper as it was
    with torch.no_grad():
        y0, _ = stepper(x[0], st)
        for p in lmu.parameters():
            p.add_(0.25)
        check_equal([stepper(x[0], st)[0]], [y0], 0.0, f"{activation} stepper after a change")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_multichannel_equals_independent_memories(dtype):
    C, I, d = 3, 2, 5
    mem = LegendreMemory(I, d, 7.0, channels=C, bias=True, dtype=dtype)
    x = torch.randn(15, 4, I, dtype=dtype)
    y, st = mem(x)
    for c in range(C):
        one = LegendreMemory(I, d, 7.0, channels=1, bias=True, dtype=dtype)
        with torch.no_grad():
            one.input_encoders.copy_(mem.input_encoders[c : c + 1])
            one.memory_bias.copy_(mem.memory_bias[c : c + 1])
        y1, st1 = one(x)
        check_equal(
            [y[..., c * d : (c + 1) * d], st[..., c * d : (c + 1) * d]],
            [y1, st1],
            TOL[dtype],
            f"channel {c}",
        )


@pytest.mark.parametrize("conv", ["chunk", "fft", "direct"])
def test_legendre_memory_modes_agree(conv):
    torch.manual_seed(0)  # its own data, whatever ran before
    mem = LegendreMemory(
        2, 6, 9.0, channels=2, bias=True, dtype=torch.float64, trainable_theta=True, conv=conv
    )
    rec = LegendreMemory(
        2,
        6,
        9.0,
        channels=2,
        bias=True,
        dtype=torch.float64,
        trainable_theta=True,
        mode="recurrent",
    )
    rec.load_state_dict(mem.state_dict())
    x = torch.randn(13, 3, 2, dtype=torch.float64)
    m0 = torch.randn(3, 12, dtype=torch.float64)
    lengths = torch.tensor([13, 1, 6])
    for lt in (None, lengths):
        (a, sa), (b, sb) = mem(x, m0, lengths=lt), rec(x, m0, lengths=lt)
        check_equal([a, sa], [b, sb], 1e-10, "memory")
        ga = torch.autograd.grad((a.sum() + sa.sum()), [mem.log_theta, mem.input_encoders])
        gb = torch.autograd.grad((b.sum() + sb.sum()), [rec.log_theta, rec.input_encoders])
        check_equal(ga, gb, 1e-10, "memory grads")
    st = m0[0]
    for t in range(13):
        _, st = mem.step(x[t, 0], st)
    check_equal([st], [mem(x, m0)[1][0]], 1e-10, "memory stream")


def test_delay_readout_through_module():
    """An untrained LegendreMemory with the Legendre readout reproduces a delayed smooth signal."""
    T, theta, d = 600, 100.0, 12
    t = torch.arange(T, dtype=torch.float64)
    u = torch.sin(2 * torch.pi * t / 250) + 0.5 * torch.cos(2 * torch.pi * t / 170)
    mem = LegendreMemory(1, d, theta, dtype=torch.float64)
    with torch.no_grad():
        mem.input_encoders.fill_(1.0)
    m, _ = mem(u[:, None])
    P = legendre.readout(d, [0.0, 0.5, 1.0])
    dec = m @ P.T
    for k, delay in enumerate((0, 50, 100)):
        err = (dec[200:, k] - u[200 - delay : T - delay]).abs().max()
        assert err < 3e-2, (delay, err)  # the upper end of the band Nengo accepts


def test_gradcheck_theta():
    for mode in ("recurrent", "auto"):
        lmu = LMU(1, 2, 3, 5.0, trainable_theta=True, dtype=torch.float64, mode=mode)
        x = torch.randn(8, 2, 1, dtype=torch.float64)

        def f(log_theta, lmu=lmu, x=x):
            with torch.no_grad():
                lmu.cell.memory.log_theta.copy_(log_theta)
            return torch.func.functional_call(lmu, {"cell.memory.log_theta": log_theta}, (x,))[0]

        lt = lmu.cell.memory.log_theta.detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(f, (lt,))
    for method in legendre.METHODS:
        mem = LegendreMemory(1, 4, 30.0, trainable_theta=True, method=method, dtype=torch.float64)
        x = torch.randn(20, 1, dtype=torch.float64)
        lt = mem.log_theta.detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(
            lambda v, m=mem, x=x: torch.func.functional_call(m, {"log_theta": v}, (x,))[0], (lt,)
        )


def test_theta_trains_and_stays_positive():
    lmu = LMU(1, 4, 4, 10.0, trainable_theta=True)
    opt = torch.optim.Adam(lmu.parameters(), lr=0.1)
    x = torch.randn(30, 2, 1)
    for _ in range(3):
        opt.zero_grad()
        y, _ = lmu(x)
        y.square().mean().backward()
        opt.step()
    assert lmu.theta > 0 and lmu.theta != 10.0


def test_paper_parameter_count_and_presets():
    # The 2019 psMNIST model: all six connections, no hidden bias, then Linear(10): 102,027.
    cell = LMUCell(
        1,
        212,
        256,
        784.0,
        hidden_to_memory=True,
        memory_to_memory=True,
        input_to_hidden=True,
        bias=False,
        init="psmnist",
    )
    n = sum(p.numel() for p in cell.parameters()) + 212 * 10 + 10
    assert n == 102_027
    assert torch.all(cell.memory.input_encoders == 1)
    h = cell.hidden
    for w in (cell.hidden_encoders, cell.memory_encoders, h.input_kernel, h.hidden_kernel):
        assert torch.all(w == 0)
    std = h.memory_kernel.std().item()
    assert abs(std - (2 / (212 + 256)) ** 0.5) < 0.01  # Xavier-normal
    paper = LMUCell(
        3, 50, 16, 20.0, hidden_to_memory=True, memory_to_memory=True, input_to_hidden=True
    )
    assert torch.all(paper.memory_encoders == 0)
    limit = (3 / 3) ** 0.5
    assert (
        paper.memory.input_encoders.abs().max() <= limit
        and paper.memory.input_encoders.abs().max() > 0
    )
    assert paper.hidden_encoders.abs().max() <= (3 / 50) ** 0.5


def test_module_contract():
    lmu = LMU(3, 5, 8, 16.0, batch_first=True, input_to_hidden=True)
    text = repr(lmu)
    assert "order=8" in text and "theta=16" in text and "batch_first=True" in text
    buf = io.BytesIO()
    torch.save(lmu.state_dict(), buf)
    buf.seek(0)
    other = LMU(3, 5, 8, 16.0, batch_first=True, input_to_hidden=True)
    other.load_state_dict(torch.load(buf))
    x = torch.randn(2, 7, 3)
    assert torch.equal(lmu(x)[0], other(x)[0])
    y, st = lmu(x)
    assert y.shape == (2, 7, 5) and st.memory.shape == (2, 8) and st.hidden.shape == (2, 5)
    y1, st1 = lmu(x[0])  # unbatched
    assert y1.shape == (7, 5) and st1.memory.shape == (8,)
    assert torch.allclose(y1, y[0], atol=1e-6)
    old = lmu.cell.hidden.memory_kernel.detach().clone()
    lmu.reset_parameters()
    assert not torch.equal(old, lmu.cell.hidden.memory_kernel)
    d64 = LMU(1, 2, 4, 5.0, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in d64.parameters())
    assert d64(torch.randn(5, 1, 1, dtype=torch.float64))[0].dtype == torch.float64


def test_dt_rescales_time():
    """Halving dt with θ fixed is the same as doubling θ with dt = 1 (scale invariance)."""
    a = LegendreMemory(1, 6, 40.0, dt=0.5, dtype=torch.float64)
    b = LegendreMemory(1, 6, 80.0, dtype=torch.float64)
    with torch.no_grad():  # the same encoders (a state_dict would refuse the other θ and dt)
        b.input_encoders.copy_(a.input_encoders)
    x = torch.randn(50, 1, dtype=torch.float64)
    assert rel(a(x)[0], b(x)[0]) < 1e-12
    a.dt = 1.0  # the cache must notice
    c = LegendreMemory(1, 6, 40.0, dtype=torch.float64)
    c.load_state_dict(a.state_dict())  # dt is now 1 in both: this loads
    assert rel(a(x)[0], c(x)[0]) < 1e-12


def test_euler_warning():
    with pytest.warns(UnstableDiscretizationWarning, match="theta/dt must exceed"):
        LMU(1, 4, 256, 1024.0, method="euler")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LMU(1, 4, 256, 1024.0)  # zoh is always stable
        LMU(1, 4, 16, 100.0, method="euler")


def test_bad_input():
    with pytest.raises(ValidationError, match="order: expected an integer >= 1, received 0"):
        LMU(1, 4, 0, 10.0)
    with pytest.raises(
        ValidationError, match="theta: expected a positive finite number, received -1"
    ):
        LMU(1, 4, 4, -1.0)
    with pytest.raises(ValidationError, match="method: expected one of"):
        LMU(1, 4, 4, 10.0, method="rk45")
    with pytest.raises(ValidationError, match="mode"):
        LMU(1, 4, 4, 10.0, mode="fast")
    with pytest.raises(ValidationError, match="hidden_cell"):
        LMU(1, 4, 4, 10.0, hidden_cell=nn.LSTMCell(3, 4))
    with pytest.raises(ValidationError, match="hidden_to_memory"):
        LMU(1, None, 4, 10.0, hidden_cell=None, hidden_to_memory=True)
    lmu = LMU(2, 4, 4, 10.0)
    with pytest.raises(
        ValidationError,
        match=r"input: expected shape \(T, B, I\) or \(T, I\) with I = input_size = 2, received \(5, 3, 3\)",
    ):
        lmu(torch.randn(5, 3, 3))
    with pytest.raises(DTypeError, match=r"input: expected dtype torch\.float32"):
        lmu(torch.randn(5, 3, 2, dtype=torch.float64))
    with pytest.raises(DTypeError, match="input"):
        lmu(torch.ones(5, 3, 2, dtype=torch.long))
    bad = LMUState(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(
        ValidationError, match=r"state.memory: expected shape \(3, 4\), received \(3, 5\)"
    ):
        lmu(torch.randn(5, 3, 2), bad)
    with pytest.raises(ValidationError, match=r"state\.hidden"):
        lmu(torch.randn(5, 3, 2), LMUState(torch.zeros(3, 4), None))
    with pytest.raises(ValidationError, match=r"lengths: expected values in \[1, 5\]"):
        lmu(torch.randn(5, 3, 2), lengths=torch.tensor([5, 0, 2]))
    with pytest.raises(ValidationError, match=r"lengths: expected shape \(3,\)"):
        lmu(torch.randn(5, 3, 2), lengths=torch.tensor([5, 2]))
    with pytest.raises(ValidationError, match="input: expected at least one time step"):
        lmu(torch.randn(0, 3, 2))
    with pytest.raises(ValidationError, match="input"):
        lmu.step(torch.randn(3, 5))


# ------------------------------------------------------------------------------ other devices


def err_rms(a, b) -> float:
    """check_equal's float32 measure: relative error with the norm floored at RMS 1."""
    b64 = b.detach().double().cpu()
    return rel(a, b) * min(1.0, float(b64.norm()) / b.numel() ** 0.5)


def groups(y, st, grads):
    """Output, final states, input gradient, all parameter gradients as one vector."""
    return {
        "output": y,
        "state": torch.cat([s.reshape(-1) for s in st if s is not None]),
        "input grad": grads[0],
        "param grads": torch.cat([g.reshape(-1) for g in grads[1:]]),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ["tanh", "lstm", None])
def test_device_agrees_with_cpu_float64(kind, dtype, device):
    """Every fast form run on ``device`` (the CUDA check; on the CPU it checks the check) against
    the cell's step loop on the CPU in float64: outputs, final states, input and parameter
    gradients (θ trainable, random lengths), and streaming. float64: relative error <= 1e-10.
    float32: <= max(1e-5, 4 × the CPU float32 step loop's own error against float64), in
    check_equal's RMS-floored measure (a GPU may sum in another order, never much worse)."""
    T, B = 11, 3
    for flags, (ch, conv) in itertools.product(FLAGS, [(1, "chunk"), (2, "fft"), (1, "direct")]):
        if kind is None and flags[0]:
            continue
        ref64, fast64 = make_pair(
            kind, flags, channels=ch, trainable_theta=True, batch_first=True, conv=conv
        )
        g = torch.Generator().manual_seed(2)
        x = torch.randn(B, T, 2, generator=g, dtype=torch.float64)
        state = random_state(ref64, B, True, torch.float64)
        lengths = torch.tensor([T, 5, 1])
        y, st = ref64.forward_reference(x, state, lengths=lengths)
        wy = torch.randn(y.shape, generator=g, dtype=torch.float64)
        ws = [None if s is None else torch.randn(s.shape, generator=g, dtype=s.dtype) for s in st]
        truth = groups(*loss_and_grads(ref64, x, state, lengths, wy, ws, reference=True))

        args = (x, state, lengths, wy, ws)
        base = {}
        if dtype == torch.float32:  # the CPU float32 step loop: what float32 itself costs
            cpu32 = run_on(ref64, "cpu", dtype, *args, reference=True)
            base = {k: err_rms(cpu32[k], truth[k]) for k in truth}
        what = f"{device} {kind} {flags} ch={ch} conv={conv}"
        for model, label in ((ref64, "recurrent"), (fast64, "auto")):
            got = run_on(model, device, dtype, *args)
            for k in truth:
                assert got[k].device.type == torch.device(device).type, (what, k)
                if dtype == torch.float64:
                    err, bound = rel(got[k], truth[k]), 1e-10
                else:
                    err, bound = err_rms(got[k], truth[k]), max(1e-5, 4 * base[k])
                assert err <= bound, f"{label} {what} {k}: {err:.2e} > {bound:.1e}"
        # streaming on the device, step by step (no lengths: every step counts)
        with torch.no_grad():
            m = copy_to(ref64, device, dtype)
            st_d = LMUState(*(None if s is None else s.to(device, dtype) for s in state))
            y_s, states = stream(m, x.to(device, dtype), st_d, True, True)
            y_t, st_t = ref64.forward_reference(x, state)
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        check_equal([y_s.cpu()], [y_t.to(dtype)], tol, "stream output " + what)
        check_equal([s.cpu() if s is not None else None for s in states[-1]],
                    [None if s is None else s.to(dtype) for s in st_t], tol, "stream " + what)  # fmt: skip


def copy_to(model, device, dtype):
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def run_on(model, dev, dt, x, state, lengths, wy, ws, reference=False):
    """groups() of a copy of ``model`` run on ``dev`` in ``dt`` (lengths stay on the CPU)."""
    st = LMUState(*(None if s is None else s.to(dev, dt) for s in state))
    ws = [None if w is None else w.to(dev, dt) for w in ws]
    m = copy_to(model, dev, dt)
    return groups(*loss_and_grads(m, x.to(dev, dt), st, lengths, wy.to(dev, dt), ws, reference))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("conv", ["chunk", "fft", "direct"])
def test_legendre_memory_on_device(conv, device):
    """LegendreMemory's parallel forms on ``device`` equal its CPU float64 step loop (1e-10)."""
    mem = LegendreMemory(2, 6, 9.0, channels=2, bias=True, dtype=torch.float64,
                         trainable_theta=True, conv=conv)  # fmt: skip
    rec = LegendreMemory(2, 6, 9.0, channels=2, bias=True, dtype=torch.float64,
                         trainable_theta=True, mode="recurrent")  # fmt: skip
    rec.load_state_dict(mem.state_dict())
    dev = copy_to(mem, device, torch.float64)
    x = torch.randn(13, 3, 2, dtype=torch.float64)
    m0 = torch.randn(3, 12, dtype=torch.float64)
    for lt in (None, torch.tensor([13, 1, 6])):
        a, sa = dev(x.to(device), m0.to(device), lengths=lt)
        b, sb = rec(x, m0, lengths=lt)
        assert a.device.type == torch.device(device).type
        check_equal([a.cpu(), sa.cpu()], [b, sb], 1e-10, f"memory {device}")
        ga = torch.autograd.grad(a.sum() + sa.sum(), [dev.log_theta, dev.input_encoders])
        gb = torch.autograd.grad(b.sum() + sb.sum(), [rec.log_theta, rec.input_encoders])
        check_equal([t.cpu() for t in ga], gb, 1e-10, f"memory grads {device}")
