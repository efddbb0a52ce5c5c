"""Every fast stateless op against its slow twin (the step loop), float64 and float32."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from conftest import TOL, rel, spy_onednn

from torchlmu import ValidationError, legendre, ops


def setup(dtype, d=8, theta=20.0, T=37, batch=(4,), C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    A, B = legendre.state_space(d)
    Ad, Bd = legendre.discretize(A, B, 1 / theta, dtype=dtype)
    u = torch.randn(T, *batch, C, generator=g, dtype=torch.float64).to(dtype)
    H = legendre.impulse_response(d, theta, T, dtype=dtype)
    return Ad, Bd, u, H


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_memory_conv_equals_scan(dtype, method, batch):
    Ad, Bd, u, H = setup(dtype, batch=batch)
    ref = ops.memory_scan(u, Ad, Bd)
    out = ops.memory_conv(u, H, method)
    assert out.shape == ref.shape == (u.shape[0], *batch, 3, 8)
    assert rel(out, ref) <= TOL[dtype]
    assert rel(ops.memory_last(u, H), ref[-1]) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
@pytest.mark.parametrize(
    ("T", "L"), [(37, None), (37, 8), (64, 16), (5, 16), (1, None), (700, 8)]
)  # 700 / 8: 88 blocks, whose carries (and their backward) run in carry_scan's three passes
def test_memory_chunked_equals_scan(dtype, batch, T, L):
    Ad, Bd, u, _ = setup(dtype, batch=batch, T=T)
    m0 = torch.randn(*batch, 3, 8, dtype=dtype)
    for init in (None, m0):
        ref = ops.memory_scan(u, Ad, Bd, init)
        out = ops.memory_chunked(u, Ad, Bd, init, L)
        assert out.shape == ref.shape
        assert rel(out, ref) <= TOL[dtype]
    # gradients through u, Ā, B̄ and m0
    args = [t.clone().requires_grad_() for t in (u, Ad, Bd, m0)]
    w = torch.randn(ref.shape, dtype=dtype)
    ga = torch.autograd.grad((ops.memory_chunked(*args, L) * w).sum(), args)
    gb = torch.autograd.grad((ops.memory_scan(*args) * w).sum(), args)
    for a, b in zip(ga, gb, strict=True):
        assert rel(a, b) <= TOL[dtype] * 10  # Ā's gradient sums T·B·C products


@pytest.mark.parametrize(
    ("d", "T", "cpu", "other"),
    [  # benchmarks/chunk_size_sweep.py's shapes (CPU), and the rule kept for a GPU
        (16, 10_000, 16, 16),
        (64, 10_000, 25, 50),
        (64, 784, 28, 56),
        (128, 2_000, 25, 125),
        (256, 784, 49, 196),
        (256, 10_000, 50, 250),
        (512, 784, 56, 392),
        (8, 37, 16, 16),  # no divisor of a prime near the base: a padded tail
        (4096, 10_000, 50, 5000),  # √(8d) capped at 64 on the CPU
        (64, 10, 10, 10),  # never longer than the sequence
    ],
)
def test_chunk_size(d, T, cpu, other):
    assert ops.chunk_size(T, d) == ops.chunk_size(T, d, torch.device("cpu")) == cpu
    assert ops.chunk_size(T, d, "cuda") == other


@pytest.mark.parametrize(
    ("T", "cpu", "other"), [(784, 16, 28), (1000, 20, 25), (37, 16, 37), (9, 9, 9)]
)
def test_fused_block_size(T, cpu, other):
    """The blocked projection's L: a divisor of T near 16 on the CPU (benchmarks/
    fused_block_sweep.py), near 32 elsewhere; a padded tail where none is near; at most T."""
    assert ops.fused_block_size(T) == ops.fused_block_size(T, "cpu") == cpu
    assert ops.fused_block_size(T, torch.device("cuda")) == other


def test_memory_chunked_default_block_on_the_cpu_equals_scan():
    """Order 64 over 300 steps: the CPU's default L is 25 (12 blocks, against 5 of 60 before)."""
    Ad, Bd, u, _ = setup(torch.float64, d=64, theta=300.0, T=300, batch=(2,), C=1)
    assert ops.chunk_size(300, 64) == 25
    m0 = torch.randn(2, 1, 64, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (u, Ad, Bd, m0)]
    out, ref = ops.memory_chunked(*args), ops.memory_scan(*args)
    assert rel(out, ref) <= TOL[torch.float64]
    w = torch.randn(ref.shape, dtype=torch.float64)
    ga = torch.autograd.grad((out * w).sum(), args)
    gb = torch.autograd.grad((ref * w).sum(), args)
    for a, b in zip(ga, gb, strict=True):
        assert rel(a, b) <= TOL[torch.float64] * 10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("T", "L", "C"),
    [(37, None, 3), (37, 8, 1), (64, 16, 2), (5, 16, 1), (1, None, 1), (700, 8, 2)],
)
def test_fused_chunked_equals_projected_scan(dtype, T, L, C):
    Ad, Bd, u, _ = setup(dtype, T=T, C=C)
    W = torch.randn(5, C * 8, dtype=dtype)
    m0 = torch.randn(4, C, 8, dtype=dtype)
    for init in (None, m0):
        ref = ops.memory_scan(u, Ad, Bd, init).reshape(T, 4, C * 8) @ W.T
        assert rel(ops.fused_chunked(u, Ad, Bd, W, init, L), ref) <= TOL[dtype]
    args = [t.clone().requires_grad_() for t in (u, Ad, Bd, W, m0)]
    w = torch.randn(T, 4, 5, dtype=dtype)
    ga = torch.autograd.grad((ops.fused_chunked(*args[:4], args[4], L) * w).sum(), args)
    ref = ops.memory_scan(args[0], args[1], args[2], args[4]).reshape(T, 4, C * 8) @ args[3].T
    gb = torch.autograd.grad((ref * w).sum(), args)
    for a, b in zip(ga, gb, strict=True):
        assert rel(a, b) <= TOL[dtype] * 10  # Ā's gradient sums T·B·C products


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [0, 1, 5, 10, 11, 12, 63, 64, 199, 1001])
@pytest.mark.parametrize("with_s0", [False, True])
@pytest.mark.parametrize("split", [False, True])
def test_carry_scan_equals_step_loop(monkeypatch, dtype, n, with_s0, split):
    """The blocked memory's carry, as its step loop and (from 11 steps on, where it saves a
    call) as its three passes of about √n products (n = 11 … 1001: groups that do and do not
    divide the n + 1 states), against the plain loop, every state."""
    monkeypatch.setattr(
        ops, "CALL_FLOPS", dict.fromkeys(("cpu", "cuda"), float("inf") if split else 0.0)
    )
    g = torch.Generator().manual_seed(n)
    d, R = 5, 3
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    P = (0.97 * Q).to(dtype)  # spectral radius 0.97: states that neither vanish nor grow
    E = torch.randn(R, n, d, generator=g, dtype=torch.float64).to(dtype).transpose(0, 1)
    S0 = torch.randn(R, d, generator=g, dtype=torch.float64).to(dtype) if with_s0 else None
    assert (ops.scan_groups(n, R, d, E.device) > 0) == (split and n >= 11)
    out = ops.carry_scan(E, P, S0)  # E strided, as the blocked memory passes it
    ref = ops.carry_scan_reference(E, P, S0)
    assert out.shape == ref.shape == (n + 1, R, d)
    assert rel(out, ref) <= TOL[dtype]
    if n:  # each state, not only the norm over all: a wrong group boundary hits a few
        diff, size = ((v.double().flatten(1).norm(dim=1)) for v in (out - ref, ref))
        assert (diff <= TOL[dtype] * 10 * size).all()  # (S_0 = 0 exactly when no S0 is given)
    # into a strided slot, as the blocked memory writes the carries beside its block inputs:
    # the same states (to rounding: BLAS may sum in another order into strided rows), nothing
    # outside the slot touched
    buf = torch.full((R, n + 1, 2 + d), 7.0, dtype=dtype)
    slot = buf[:, :, 2:].transpose(0, 1)  # (n + 1, R, d), rows 2 + d apart
    assert ops.carry_scan(E, P, S0, out=slot) is slot
    assert rel(slot, ref) <= TOL[dtype]
    if n:
        diff = (slot - ref).double().flatten(1).norm(dim=1)
        assert (diff <= TOL[dtype] * 10 * size).all()
    assert (buf[:, :, :2] == 7.0).all()


def test_blocked_memory_of_an_empty_sequence():
    """T = 0: no block and no carry (the carry operator returns none, as its fake kernel says),
    the same empty states as the step loop, with or without an initial state."""
    Ad, Bd, u, _ = setup(torch.float32, T=1)
    u = u[:0]
    m0 = torch.randn(4, 3, 8)
    for init in (None, m0):
        assert (
            ops.memory_chunked(u, Ad, Bd, init, 8).shape == ops.memory_scan(u, Ad, Bd, init).shape
        )
    assert torch.ops.torchlmu.block_carries(torch.randn(2, 0, 3), Ad[:3, :3], None).shape == (
        2,
        0,
        3,
    )


def test_carry_scan_splits_where_calls_cost_more_than_flops():
    """The split's rule on the CPU, at shapes whose timings set CALL_FLOPS (2 threads, 199
    steps): W2's carry (16 × 64 states: 1.00 → 0.49 ms) and 64 × 64 (2.12 → 1.86) split;
    64 × 128 (4.04 → 5.44), order 512 (3.1 → 7.6) and W1's 27 blocks of 100 × 256 stay loops."""
    cpu = torch.device("cpu")
    assert ops.scan_groups(199, 16, 64, cpu) == 10
    assert ops.scan_groups(199, 64, 64, cpu) > 0
    assert ops.scan_groups(199, 64, 128, cpu) == 0
    assert ops.scan_groups(199, 1, 512, cpu) == 0
    assert ops.scan_groups(27, 100, 256, cpu) == 0


def test_block_carries_gradient_through_the_split_scan(monkeypatch):
    """The carry operator's backward runs the reversed recurrence through carry_scan: gradcheck
    and the reference's gradients at 70 blocks, split into groups and not."""
    g = torch.Generator().manual_seed(0)
    E = torch.randn(2, 70, 3, generator=g, dtype=torch.float64, requires_grad=True)
    AL = 0.9 * torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    AL.requires_grad_()
    S0 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = torch.ops.torchlmu.block_carries
    ref = ops.block_carries_reference(E, AL, S0)
    w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gb = torch.autograd.grad((ref * w).sum(), (E, AL, S0))
    for flops in (float("inf"), 0.0):
        monkeypatch.setattr(ops, "CALL_FLOPS", dict.fromkeys(("cpu", "cuda"), flops))
        assert torch.autograd.gradcheck(fn, (E, AL, S0))
        out = fn(E, AL, S0)
        ga = torch.autograd.grad((out * w).sum(), (E, AL, S0))
        assert rel(out, ref) <= 1e-12
        for a, b in zip(ga, gb, strict=True):
            assert rel(a, b) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["fft", "direct"])
def test_fused_conv_equals_projected_scan(dtype, method):
    Ad, Bd, u, H = setup(dtype)
    W = torch.randn(5, 3 * 8, dtype=dtype)
    ref = ops.memory_scan(u, Ad, Bd).reshape(u.shape[0], 4, 24) @ W.T
    out = ops.fused_conv(u, ops.fused_kernel(H, W, 3), method)
    assert rel(out, ref) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_free_response_and_initial_state(dtype):
    Ad, Bd, u, H = setup(dtype)
    m0 = torch.randn(4, 3, 8, dtype=dtype)
    ref = ops.memory_scan(u, Ad, Bd, m0)
    out = ops.memory_conv(u, H) + ops.free_response(m0, Ad, u.shape[0])
    assert rel(out, ref) <= TOL[dtype]


def test_right_align_gives_state_at_each_length():
    Ad, Bd, u, H = setup(torch.float64)
    lengths = torch.tensor([37, 5, 1, 20])
    ref = ops.memory_scan(u, Ad, Bd)
    last = ops.memory_last(ops.right_align(u, lengths), H)
    for b, n in enumerate(lengths.tolist()):
        assert rel(last[b], ref[n - 1, b]) <= 1e-12


def test_long_fft_conv_float32():
    """A 10,000-step sequence: FFT in float32 against the float64 reference."""
    Ad, Bd, u, H = setup(torch.float64, d=16, theta=2000.0, T=10_000, batch=(2,), C=1)
    ref = ops.memory_conv(u, H, "fft")
    out = ops.memory_conv(u.float(), H.float(), "fft")
    assert rel(out, ref) <= 1e-5
    # the float64 FFT itself against the step loop
    assert rel(ref[-50:], ops.memory_scan(u, Ad, Bd)[-50:]) <= 1e-10


def test_gradients_match():
    Ad, Bd, u, H = setup(torch.float64, T=20)
    u1 = u.clone().requires_grad_()
    u2 = u.clone().requires_grad_()
    w = torch.randn(20, 4, 3, 8, dtype=torch.float64)
    (ops.memory_scan(u1, Ad, Bd) * w).sum().backward()
    (ops.memory_conv(u2, H) * w).sum().backward()
    assert rel(u2.grad, u1.grad) <= 1e-10


def test_next_fast_len():
    for n in range(1, 3000, 7):
        m = ops.next_fast_len(n)
        assert m >= n
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        assert k == 1
    assert ops.next_fast_len(1567) == 1600


def test_unknown_method():
    _, _, u, H = setup(torch.float64)
    with pytest.raises(ValidationError, match="method: expected one of"):
        ops.memory_conv(u, H, "winograd")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("layout", ["contiguous", "sequence-major", "other grad layout"])
def test_scale_states_equals_multiply(dtype, C, layout):
    """The dot-product backward of scale_states against autograd's multiply, for the layout
    memory_chunked returns, a contiguous one, and a gradient in another layout."""
    g = torch.Generator().manual_seed(0)
    M = torch.randn(4, 3, 1, 5, generator=g, dtype=torch.float64).to(dtype)  # (B, 1, T... )
    if layout != "contiguous":
        M = M.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3)  # sequence-major storage
    e = torch.randn(C, 1, generator=g, dtype=torch.float64).to(dtype)
    w = torch.randn(4, 3, C, 5, generator=g, dtype=torch.float64).to(dtype)
    if layout == "sequence-major":  # the gradient in the states' own layout (the dot path)
        w = w.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3)
    elif layout == "other grad layout":
        w = w.transpose(0, 1).contiguous().transpose(0, 1)
    args = [M.clone().requires_grad_(), e.clone().requires_grad_()]
    out = ops.scale_states(*args)
    ref_args = [M.clone().requires_grad_(), e.clone().requires_grad_()]
    ref = ref_args[0] * ref_args[1]
    assert rel(out.detach(), ref.detach()) == 0
    ga = torch.autograd.grad((out * w).sum(), args)
    gb = torch.autograd.grad((ref * w).sum(), ref_args)
    for a, b in zip(ga, gb, strict=True):
        assert rel(a, b) <= TOL[dtype]
    with pytest.raises(ValidationError, match="e"):
        ops.scale_states(M, e.reshape(-1))


def _scale_through_case(dtype, layout="time-major", seed=0):
    """A blocked memory of order 6 as the linear map f, an input x (T, B, 1), an output weight."""
    g = torch.Generator().manual_seed(seed)
    Ad, Bd, _, _ = setup(dtype, d=6, T=30)
    x = torch.randn(30, 4, 1, generator=g, dtype=torch.float64).to(dtype)
    if layout == "batch-major":  # a batch-first input, as the module passes it
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    w = torch.randn(30, 4, 1, 6, generator=g, dtype=torch.float64).to(dtype)
    return (lambda u: ops.memory_chunked(u, Ad, Bd, None, 8)), x, w


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["time-major", "batch-major"])
@pytest.mark.parametrize("e0", [0.7, -3.0, 0.0, 1e-30, float("inf")])
def test_scale_through_equals_reference(dtype, layout, e0):
    """e·f(x) as f(e·x), e's gradient as <g, f(e·x)>/e, against autograd's f(x)·e; at e = 0, a
    scale near underflow (1e-30 < √tiny in both dtypes) and inf, f(x) again instead (∂/∂e of
    e·f(x) is f(x) whatever e is)."""
    f, x, w = _scale_through_case(dtype, layout)
    e = torch.full((1, 1), e0, dtype=dtype, requires_grad=True)
    out = ops.scale_through(f, x, e)
    (ge,) = torch.autograd.grad(out, e, w)
    if math.isfinite(e0):
        e_ref = e.detach().clone().requires_grad_()
        ref = ops.scale_through_reference(f, x, e_ref)
        assert rel(out.detach(), ref.detach()) <= TOL[dtype]
        (gr,) = torch.autograd.grad(ref, e_ref, w)
    else:
        gr = (f(x) * w).sum().reshape(1, 1)
    assert rel(ge, gr) <= TOL[dtype] * 10  # one dot product over 720 states, then a division


def test_scale_through_computes_f_again_only_for_an_output_changed_in_place():
    """f runs once for an ordinary e and for e = 0 (then f(x), scaled); a second time in the
    backward only when the output was changed in place (an in-place ReLU after the memory),
    from a copy of x (so that x itself may change in place before the backward too)."""
    f0, x, w = _scale_through_case(torch.float64)
    calls = []

    def f(u):
        calls.append(1)
        return f0(u)

    for e0, change_output, change_x, runs in (
        (0.5, False, False, 1),
        (0.0, False, False, 1),
        (0.5, True, False, 2),
        (0.5, False, True, 1),
        (0.5, True, True, 2),
    ):
        calls.clear()
        xc = x.clone()
        e = torch.full((1, 1), e0, dtype=torch.float64, requires_grad=True)
        y = ops.scale_through(f, xc, e)
        if change_output:
            y.mul_(3.0)  # the gradient reaching the layer is then 3w
        if change_x:
            xc.mul_(2.0)  # no effect on a result already computed
        (ge,) = torch.autograd.grad(y, e, w)
        expected = (f0(x) * w).sum() * (3.0 if change_output else 1.0)
        assert len(calls) == runs, (e0, change_output, change_x, len(calls))
        assert rel(ge, expected.reshape(1, 1)) <= TOL[torch.float64] * 10


def test_gradcheck_scale_through():
    f, x, _ = _scale_through_case(torch.float64)
    x = x[:12, :2]
    for e0 in (0.8, 0.0):
        e = torch.full((1, 1), e0, dtype=torch.float64, requires_grad=True)
        g = lambda e: ops.scale_through(f, x, e)  # noqa: E731
        assert torch.autograd.gradcheck(g, (e,))
        assert torch.autograd.gradgradcheck(g, (e,))
    with pytest.raises(ValidationError, match="e"):
        ops.scale_through(f, x, torch.ones(2, 1, dtype=torch.float64))


@pytest.mark.parametrize("a_layout", ["contiguous", "transposed"])
def test_matmul_equals_reference(monkeypatch, a_layout):
    """The oneDNN product (float32, CPU, large) equals torch's within float32 rounding, its
    gradients equal torch's, and a double backward goes through it."""
    calls = spy_onednn(monkeypatch)
    g = torch.Generator().manual_seed(5)
    M, K, N = 600, 130, 300
    a0 = torch.randn(M, K, generator=g) if a_layout == "contiguous" else torch.randn(K, M).T
    a, b = a0.clone().requires_grad_(), torch.randn(K, N, generator=g).requires_grad_()
    y, r = ops.matmul(a, b), ops.matmul_reference(a, b)
    assert calls == [(M, K)]
    assert rel(y.detach(), r.detach()) <= TOL[torch.float32]
    w = torch.randn(M, N, generator=g)
    ga = torch.autograd.grad((y * w).sum(), [a, b], create_graph=True)
    gr = torch.autograd.grad((r * w).sum(), [a, b], create_graph=True)
    for x, z in zip(ga, gr, strict=True):
        assert rel(x.detach(), z.detach()) <= TOL[torch.float32]
    # second order: d/db of Σ (∂L/∂a)² through the backward's own products
    h1 = torch.autograd.grad(ga[0].square().sum(), b)[0]
    h2 = torch.autograd.grad(gr[0].square().sum(), b)[0]
    assert rel(h1, h2) <= TOL[torch.float32]


def test_matmul_backward_through_onednn(monkeypatch):
    """A plain backward (no graph of its own) computes both gradients by oneDNN too, g bᵀ and
    aᵀ g with g and b read in place, equal to torch's within float32 rounding; a strided b
    (neither layout contiguous) is copied first."""
    calls = spy_onednn(monkeypatch)
    g = torch.Generator().manual_seed(8)
    M, K, N = 600, 130, 300
    a = torch.randn(M, K, generator=g).requires_grad_()
    b = torch.randn(K, N, generator=g).requires_grad_()
    w = torch.randn(M, N, generator=g)
    ga, gb = torch.autograd.grad((ops.matmul(a, b) * w).sum(), [a, b])
    assert calls == [(M, K), (M, N), (K, M)]  # forward, ∂L/∂a, ∂L/∂b
    ra, rb = torch.autograd.grad((ops.matmul_reference(a, b) * w).sum(), [a, b])
    assert rel(ga, ra) <= TOL[torch.float32] and rel(gb, rb) <= TOL[torch.float32]
    b2 = torch.randn(K, 2 * N, generator=g)[:, ::2]  # strides (2N, 2): neither layout
    assert rel(ops.matmul(a.detach(), b2), a.detach() @ b2) <= TOL[torch.float32]


def test_matmul_keeps_torch_elsewhere(monkeypatch):
    """float64, small products and ONEDNN_MATMUL = False stay on torch's product, bit for bit."""
    calls = spy_onednn(monkeypatch)
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(600, 130, generator=g), torch.randn(130, 300, generator=g)
    assert torch.equal(ops.matmul(a.double(), b.double()), a.double() @ b.double())
    assert torch.equal(ops.matmul(a[:4, :8], b[:8, :5]), a[:4, :8] @ b[:8, :5])
    monkeypatch.setattr(ops, "ONEDNN_MATMUL", False)
    assert torch.equal(ops.matmul(a, b), a @ b)
    assert calls == []


def test_blocked_memory_uses_the_large_product(monkeypatch):
    """Both blocked kernels send their one large GEMM through ops.matmul (float32), and their
    results stay within float32 rounding of torch's product."""
    Ad, Bd, u, _ = setup(torch.float32, d=16, T=400, batch=(8,), C=2)
    W = torch.randn(20, 2 * 16)
    ref_states = ops.memory_chunked(u, Ad, Bd, None, 20)
    ref_proj = ops.fused_chunked(u, Ad, Bd, W, None, 20)
    monkeypatch.setattr(ops, "ONEDNN_MIN_FLOPS", 1)
    calls = spy_onednn(monkeypatch)
    assert rel(ops.memory_chunked(u, Ad, Bd, None, 20), ref_states) <= TOL[torch.float32]
    assert rel(ops.fused_chunked(u, Ad, Bd, W, None, 20), ref_proj) <= TOL[torch.float32]
    assert len(calls) >= 2


@pytest.mark.parametrize("w_layout", ["contiguous", "transposed view"])
@pytest.mark.parametrize("form", ["product", "added", "into out", "added into itself"])
def test_linear_equals_reference(monkeypatch, w_layout, form):
    """A step loop's product x wᵀ (+ add) by oneDNN (its threshold at 1) equals torch's within
    float32 rounding in every form the loops use, each call going to oneDNN; out of float32,
    with a gradient needed, or under the default threshold at a small size, torch's."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=g)
    w = torch.randn(4, 5, generator=g) if w_layout == "contiguous" else torch.randn(5, 4).T
    add = torch.randn(7, 4, generator=g)
    ref = ops.linear_reference(x, w, None if form == "product" else add)
    monkeypatch.setattr(ops, "ONEDNN_STEP_MIN_FLOPS", 1)
    calls = spy_onednn(monkeypatch)
    if form == "product":
        out = ops.linear(x, w)
    elif form == "added":
        out = ops.linear(x, w, add)
    elif form == "into out":
        buf = torch.empty(7, 4)
        out = ops.linear(x, w, add, out=buf)
        assert out.data_ptr() == buf.data_ptr()
    else:
        out = ops.linear(x, w, add, out=add)
        assert out.data_ptr() == add.data_ptr()
    assert rel(out, ref) <= TOL[torch.float32]
    assert calls == [(7, 5)]
    # torch's product wherever oneDNN does not apply
    xd, wd = x.double(), w.double()
    assert rel(ops.linear(xd, wd), xd @ wd.T) <= 1e-15
    xg = x.clone().requires_grad_()
    ops.linear(xg, w).sum().backward()
    assert rel(xg.grad, w.sum(0).expand(7, 5)) <= TOL[torch.float32]
    monkeypatch.setattr(ops, "ONEDNN_STEP_MIN_FLOPS", 1 << 21)
    ops.linear(x, w)
    assert calls == [(7, 5)]


def test_step_linear_is_linears_choice_made_once(monkeypatch):
    """step_linear hands a loop the engine linear would take for the sample's operands, and the
    returned function computes exactly what linear does, in every form, call after call: oneDNN
    for a large float32 product outside autograd, torch's otherwise (float64, a gradient
    needed, under the threshold, ONEDNN_MATMUL off)."""
    calls = spy_onednn(monkeypatch)
    g = torch.Generator().manual_seed(5)
    x, w, add = (torch.randn(*s, generator=g) for s in ((100, 212), (212, 212), (100, 212)))
    cases = {
        "large float32": ((x, w, add), ops._linear_onednn),
        "transposed w": ((x, w.T, add), ops._linear_onednn),
        "float64": ((x.double(), w.double(), add.double()), ops._linear_torch),
        "small": ((x[:4, :8], w[:6, :8], None), ops._linear_torch),
        "grad": ((x.clone().requires_grad_(), w, add), ops._linear_torch),
    }
    for name, ((a, b, c), engine) in cases.items():
        f = ops.step_linear(a, b, c)
        assert f is engine, name
        for add_ in (None, c):
            ref = ops.linear(a, b, add_)
            with torch.no_grad() if a.requires_grad else contextlib.nullcontext():
                assert torch.equal(f(a, b, add_), ref), name
                buf = torch.empty_like(ref)
                assert f(a, b, add_, out=buf) is buf and torch.equal(buf, ref), name
            tol = TOL[torch.float64] if a.dtype == torch.float64 else TOL[torch.float32]
            assert rel(ref, ops.linear_reference(a, b, add_)) <= tol, name
    into = add.clone()
    assert ops.step_linear(x, w, into)(x, w, into, out=into) is into
    assert torch.equal(into, ops.linear(x, w, add))
    assert calls  # the oneDNN cases went through the (spied) operator
    monkeypatch.setattr(ops, "ONEDNN_MATMUL", False)
    assert ops.step_linear(x, w, add) is ops._linear_torch


def test_onednn_matmul_gradcheck(monkeypatch):
    """The custom function's backward formulas, first and second order, in float64 (its forward
    operator stood in by the exact product: oneDNN's runs in float32 only)."""
    monkeypatch.setattr(ops, "_onednn_linear", lambda: lambda a, w, b, *_: a @ w.T)
    g = torch.Generator().manual_seed(7)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ops._OneDNNMatmul.apply, (a, b))
    assert torch.autograd.gradgradcheck(ops._OneDNNMatmul.apply, (a, b))


def test_split_nonfinite_fast_check_and_its_fallback():
    """A finite input comes back as itself with no mask, also when its sum overflows (the fast
    check's one false alarm, settled by the elementwise test); an inf, a NaN, or +inf and −inf
    (whose sum is NaN) give the zeroed input and the causal mask from their step on."""
    u = torch.randn(6, 2, 1)
    assert ops.split_nonfinite(u)[0] is u and ops.split_nonfinite(u)[1] is None
    big = torch.full((6, 2, 1), 3e38)  # float32: finite entries, the sum overflows to inf
    assert not torch.isfinite(big.sum())
    v, after = ops.split_nonfinite(big)
    assert v is big and after is None
    for bad in ([float("inf")], [float("nan")], [float("inf"), float("-inf")]):
        w = u.clone()
        for i, x in enumerate(bad):
            w[2 + i, 1, 0] = x
        v, after = ops.split_nonfinite(w)
        assert torch.isfinite(v).all() and torch.equal(v[:2], u[:2])
        assert after[:, 0].sum() == 0 and after[2:, 1].all() and not after[:2, 1].any()
