"""Large orders: the O(d) Euler step, stepped powers, the parallel method chosen by order, and
the cost warnings. Twins: dense A·m / the dense Euler step / the doubling / the step loop."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import TOL, check_equal, rel, stream
from hypothesis import given, settings
from hypothesis import strategies as st

from torchlmu import LMU, LegendreMemory, legendre, ops
from torchlmu import memory as memory_module
from torchlmu.exceptions import CostWarning

F64 = torch.float64


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 70), rows=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_apply_A_equals_the_dense_product(d, rows, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(rows, d, dtype=F64, generator=g)
    A, _ = legendre.state_space(d)
    before = m.clone()
    assert rel(legendre.apply_A(m), m @ A.T) < 1e-13
    assert torch.equal(m, before)  # its cumulative sums run in place, on a copy


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_euler_o_d_step_equals_the_dense_step_with_gradients(dtype):
    d, h = 40, 1 / 5000.0
    A, B = legendre.state_space(d)
    Ad, Bd = legendre.discretize(A, B, h, "euler", dtype=dtype)
    m = torch.randn(3, 2, d, dtype=dtype, requires_grad=True)
    u = torch.randn(3, 2, dtype=dtype, requires_grad=True)
    fast = ops.memory_step_euler(m, u, B.to(dtype), h)
    ref = ops.memory_step(m, u, Ad, Bd)
    g = torch.randn_like(ref)
    grads = [torch.autograd.grad(y, (m, u), g) for y in (fast, ref)]
    check_equal([fast, *grads[0]], [ref, *grads[1]], TOL[dtype], "O(d) Euler step")


def test_stepped_powers_equal_the_doubling():
    A, B = legendre.state_space(48)
    Ad, _ = legendre.discretize(A, B, 1 / 300.0)
    x0 = torch.randn(2, 48, dtype=F64)
    assert legendre.steps_cheaper(48, 2, 9) and not legendre.steps_cheaper(48, 2, 2000)
    for n in (2, 3, 9, 17):
        check_equal(
            [legendre._step_powers(x0, Ad, n)], [legendre._double_powers(x0, Ad, n)], 1e-12, n
        )
    # float32: accumulated in float64, so the error does not grow with the length
    f32 = legendre._step_powers(x0.float(), Ad.float(), 400)
    assert f32.dtype == torch.float32
    assert rel(f32, legendre._double_powers(x0, Ad, 400)) < 1e-5


def test_auto_takes_fft_above_the_chunk_order_and_matches_the_step_loop():
    d = ops.CHUNK_MAX_ORDER + 8
    assert ops.parallel_method("auto", ops.CHUNK_MAX_ORDER) == "chunk"
    assert ops.parallel_method("auto", d) == "fft"
    torch.manual_seed(0)
    fast = LMU(1, 5, d, 700.0, input_to_hidden=True, dtype=F64)
    ref = LMU(1, 5, d, 700.0, input_to_hidden=True, mode="recurrent", dtype=F64)
    ref.load_state_dict(fast.state_dict())
    assert fast.conv == "auto" and fast.cell.memory._conv() == "fft"
    x = torch.randn(30, 2, 1, dtype=F64)
    s0 = ref.initial_state(2)
    s0 = type(s0)(*(None if t is None else torch.randn_like(t) for t in s0))  # free response too
    (y, s), (yr, sr) = fast(x, s0), ref(x, s0)
    check_equal([y, *s], [yr, *sr], TOL[F64], "auto at a large order")


def test_explicit_chunk_at_a_large_order_warns_with_its_cost():
    with pytest.warns(CostWarning, match="conv='chunk' at order 600"):
        LegendreMemory(1, 600, 40000.0, method="euler", conv="chunk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LegendreMemory(1, 600, 40000.0, method="euler")  # auto: no warning


def test_zoh_cost_estimate_and_warning(monkeypatch):
    # order 4096, θ 784: d²h = 4096²/784 ≈ 21400; structured: ⌈log2(21400/4)⌉ = 13 squarings;
    # matrix_exp: 5 + ⌈log2(21400/3.01)⌉ = 18 products
    products, flops = legendre.zoh_cost(4096, 1 / 784)
    # each squaring in 16 blocks of 256 rows, multiplied out up to the diagonal: 17/32 of 2d³
    assert products == 13 and flops == pytest.approx(13 * 2 * 4096**3 * 17 / 32)
    assert legendre.zoh_cost(4096, 1 / 784, structured=False)[0] == 18
    assert legendre.zoh_cost(4, 1.0, structured=False)[0] == 8  # 5 + ⌈log2(16/3.01)⌉
    monkeypatch.setattr(memory_module, "_WARN_FLOPS", 1e3)
    with pytest.warns(CostWarning, match="computed once, now: about 11 dense 8x8 squarings"):
        LegendreMemory(1, 8, 0.01)  # d²h/4 = 1600: 11 squarings
    with pytest.warns(CostWarning, match="in every forward"):
        LegendreMemory(1, 8, 1000.0, trainable_theta=True)


@pytest.mark.parametrize("trainable", [False, True])
def test_large_order_euler_stream_equals_the_parallel_states(trainable):
    d = ops.EULER_O_D_MIN_ORDER
    theta = 1.05 * legendre.min_stable_theta(d)  # Euler needs θ beyond this at order 512
    mem = LegendreMemory(2, d, theta, method="euler", trainable_theta=trainable, dtype=F64)
    assert mem._euler_o_d
    x = torch.randn(12, 3, 2, dtype=F64)
    seq, last = mem(x)
    steps, states = stream(mem, x, None, batched=True, batch_first=False)
    check_equal([steps, states[-1]], [seq, last], TOL[F64], "O(d) stream")
    if trainable:
        steps.sum().backward()
        assert mem.log_theta.grad is not None and torch.isfinite(mem.log_theta.grad)


def test_to_moves_the_discretisation_without_recomputing_it(monkeypatch):
    mem = LegendreMemory(1, 16, 50.0, dtype=F64)
    Ad64 = mem._Ad64.clone()

    def no_expm(*a, **k):
        raise AssertionError("discretize called again")

    monkeypatch.setattr(legendre, "discretize", no_expm)
    mem.float()
    assert mem._Ad64.dtype == F64 and torch.equal(mem._Ad64, Ad64)
    assert torch.equal(mem._Ad, Ad64.float())
    mem.double().reset_parameters()  # a fixed θ: not rebuilt either
