"""The pure math layer against closed forms, SciPy and step recurrences (all float64)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.special
import torch
from conftest import rel

from torchlmu import ValidationError, legendre


@pytest.mark.parametrize("order", [1, 2, 3, 7, 32])
def test_state_space_closed_form(order):
    A, B = legendre.state_space(order)
    assert A.shape == (order, order) and B.shape == (order,) and A.dtype == torch.float64
    for i in range(order):
        assert B[i] == (2 * i + 1) * (-1) ** i
        for j in range(order):
            expected = (2 * i + 1) * (-1 if i < j else (-1) ** (i - j + 1))
            assert A[i, j] == expected


def test_state_space_is_the_pade_delay():
    # With C = (1, ..., 1) the system's transfer function is the [d-1/d] Padé approximant of
    # e^{-s}: its DC gain is 1 (a delay passes constants) and its poles are in the left half-plane.
    for d in (1, 4, 12):
        A, B = (t.numpy() for t in legendre.state_space(d))
        gain = -np.ones(d) @ np.linalg.solve(A, B)
        assert abs(gain - 1) < 1e-10
        assert np.linalg.eigvals(A).real.max() < 0


def scipy_discrete(A, B, dt, method):
    d = A.shape[0]
    Ad, Bd, *_ = scipy.signal.cont2discrete(
        (A.numpy(), B.numpy()[:, None], np.eye(d), np.zeros((d, 1))), dt, method=method
    )
    return Ad, Bd[:, 0]


ZOH_CASES = [
    (d, th)
    for d in (1, 2, 3, 5, 8, 16, 32, 64, 100, 128, 256, 512)
    for th in sorted({float(d), 10.0 * d, 1e3, 1e5})
    if th >= d
]


@pytest.mark.parametrize(("order", "theta"), ZOH_CASES)
def test_zoh_matches_scipy(order, theta):
    A, B = legendre.state_space(order)
    Ad, Bd = legendre.discretize(A, B, 1.0 / theta, "zoh")
    Ad_ref, Bd_ref = scipy_discrete(A, B, 1.0 / theta, "zoh")
    assert rel(Ad, Ad_ref) <= 1e-10
    assert rel(Bd, Bd_ref) <= 1e-10


@pytest.mark.parametrize(
    ("order", "theta", "tol"), [(64, 8.0, 1e-9), (256, 16.0, 1e-8), (512, 64.0, 1e-8)]
)
def test_zoh_below_order(order, theta, tol):
    """θ below the order: exp of a matrix of norm ~order²/θ; measured agreement ~1e-12 to 1e-10."""
    A, B = legendre.state_space(order)
    Ad, Bd = legendre.discretize(A, B, 1.0 / theta, "zoh")
    Ad_ref, Bd_ref = scipy_discrete(A, B, 1.0 / theta, "zoh")
    assert rel(Ad, Ad_ref) <= tol
    assert rel(Bd, Bd_ref) <= tol


@pytest.mark.parametrize("order", [1, 6, 40])
def test_euler_and_bilinear_formulas(order):
    A, B = legendre.state_space(order)
    dt = 1 / 300.0
    Ad, Bd = legendre.discretize(A, B, dt, "euler")
    assert rel(Ad, torch.eye(order, dtype=torch.float64) + A * dt) <= 1e-15
    assert rel(Bd, B * dt) <= 1e-15
    Ad_ref, Bd_ref = scipy_discrete(A, B, dt, "euler")
    assert rel(Ad, Ad_ref) <= 1e-14 and rel(Bd, Bd_ref) <= 1e-14
    Ad, Bd = legendre.discretize(A, B, dt, "bilinear")
    Ad_ref, Bd_ref = scipy_discrete(A, B, dt, "bilinear")
    assert rel(Ad, Ad_ref) <= 1e-12 and rel(Bd, Bd_ref) <= 1e-12


def test_discretize_output_dtype_and_grad():
    A, B = legendre.state_space(8)
    Ad, Bd = legendre.discretize(A, B, 0.01, "zoh", dtype=torch.float32)
    assert Ad.dtype == Bd.dtype == torch.float32
    ref, _ = legendre.discretize(A, B, 0.01, "zoh")
    assert rel(Ad, ref) < 1e-6
    theta = torch.tensor(30.0, dtype=torch.float64, requires_grad=True)
    for method in legendre.METHODS:
        assert torch.autograd.gradcheck(
            lambda th, m=method: legendre.discretize(A, B, 1.0 / th, m), (theta,)
        )


def test_readout_is_shifted_legendre():
    r = torch.linspace(0, 1, 11)
    P = legendre.readout(12, r)
    assert P.shape == (11, 12)
    for i in range(12):
        expected = scipy.special.eval_legendre(i, 2 * r.numpy().astype(np.float64) - 1)
        np.testing.assert_allclose(P[:, i].numpy(), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(legendre.readout(5, 1.0)[0], torch.ones(5, dtype=torch.float64))


def test_impulse_response_matches_step_recurrence_short():
    H = legendre.impulse_response(256, 784.0, 784)
    A, B = legendre.state_space(256)
    Ad, Bd = legendre.discretize(A, B, 1 / 784.0)
    ref = torch.empty_like(H)
    m = Bd.clone()
    for k in range(784):
        ref[k] = m
        m = Ad @ m
    assert rel(H, ref) <= 1e-9


def test_impulse_response_matches_step_recurrence_long():
    """order 64, θ 1e4, length 1e5: the doubling algorithm against a float64 step recurrence."""
    n = 100_000
    H = legendre.impulse_response(64, 1e4, n)
    A, B = legendre.state_space(64)
    Ad, Bd = (t.numpy() for t in legendre.discretize(A, B, 1e-4))
    ref = np.empty((n, 64))
    m = Bd.copy()
    for k in range(n):
        ref[k] = m
        m = Ad @ m
    assert rel(H, ref) <= 1e-9
    assert H.shape == (n, 64)


def test_impulse_response_grad_theta():
    theta = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
    for method in legendre.METHODS:
        assert torch.autograd.gradcheck(
            lambda th, m=method: legendre.impulse_response(6, th, 40, m), (theta,)
        )


def test_apply_powers_any_length():
    A, B = legendre.state_space(5)
    Ad, Bd = legendre.discretize(A, B, 0.1)
    for n in (0, 1, 2, 3, 5, 8, 13):
        H = legendre.kernel_from_discrete(Ad, Bd, n)
        assert H.shape == (n, 5)
        for k in range(n):
            assert rel(H[k], torch.linalg.matrix_power(Ad, k) @ Bd) < 1e-13


def test_min_stable_theta_values():
    # The necessary bound max_λ −|λ|²/(2 Re λ) (values known for the LMU's A).
    expected = {2: 1.5, 4: 5.2, 8: 17.7, 16: 59.7, 32: 197, 64: 639}
    for d, v in expected.items():
        assert abs(legendre.min_stable_theta(d) - v) / v < 0.02


@pytest.mark.parametrize(("order", "theta"), [(32, 128), (64, 256), (256, 1024), (256, 2000)])
def test_euler_unstable_where_observed(order, theta):
    assert not legendre.is_stable(order, theta, "euler")
    A, B = legendre.state_space(order)
    Ad, _ = legendre.discretize(A, B, 1 / theta, "euler")
    assert legendre.spectral_radius(Ad) > 1  # and the bound agrees with the matrix itself


def test_stability_bound_is_tight():
    for d in (4, 16, 32):
        th = legendre.min_stable_theta(d)
        A, B = legendre.state_space(d)
        inside, _ = legendre.discretize(A, B, 1 / (th * 1.05), "euler")
        outside, _ = legendre.discretize(A, B, 1 / (th * 0.95), "euler")
        assert legendre.spectral_radius(inside) < 1 < legendre.spectral_radius(outside)
    for method in ("zoh", "bilinear"):
        assert legendre.is_stable(256, 10.0, method)
    assert legendre.is_stable(256, 7000.0, "euler")


def test_bad_input():
    with pytest.raises(ValidationError, match="order: expected an integer >= 1, received 0"):
        legendre.state_space(0)
    with pytest.raises(ValidationError, match="order"):
        legendre.state_space(2.5)
    A, B = legendre.state_space(3)
    with pytest.raises(ValidationError, match="method: expected one of"):
        legendre.discretize(A, B, 0.1, "rk4")
    with pytest.raises(
        ValidationError, match=r"dt: expected a positive finite number, received -0\.1"
    ):
        legendre.discretize(A, B, -0.1)
    with pytest.raises(ValidationError, match="theta"):
        legendre.impulse_response(3, 0.0, 10)
    with pytest.raises(ValidationError, match=r"r: expected values in \[0, 1\]"):
        legendre.readout(3, [0.5, 1.5])
    with pytest.raises(ValidationError, match="length"):
        legendre.kernel_from_discrete(A, B, -1)


@pytest.mark.parametrize(
    ("order", "h"), [(1, 0.3), (7, 0.5), (64, 0.01), (256, 1 / 784), (300, 1e-4)]
)
def test_structured_zoh_equals_matrix_exp_and_scipy(order, h):
    """legendre.zoh (structured Taylor + squaring) against its twin discretize (torch's
    matrix_exp) and SciPy's expm: the structured one is the closer to SciPy (measured 5e-17 to
    2e-13 against matrix_exp's 3e-16 to 1.4e-12 up to order 1024)."""
    from scipy.linalg import expm

    Ad, Bd = legendre.zoh(order, h)
    A, B = legendre.state_space(order)
    Ar, Br = legendre.discretize(A, B, h)
    M = np.zeros((order + 1, order + 1))
    M[:order, :order], M[:order, order] = A.numpy() * h, B.numpy() * h
    E = torch.from_numpy(expm(M))
    assert rel(Ad, Ar) < 1e-11 and rel(Bd, Br) < 1e-11
    assert rel(Ad, E[:order, :order]) < 1e-12 and rel(Bd, E[:order, order]) < 1e-12


def test_input_vector_is_state_space_B():
    for d in (1, 2, 9):
        assert torch.equal(legendre.input_vector(d), legendre.state_space(d)[1])


@pytest.mark.parametrize(("order", "w"), [(1, 1), (35, 5), (37, 5), (64, 38), (300, 16)])
def test_zoh_column_blocks_equal_one_block(order, w, monkeypatch):
    """zoh's Taylor sum in blocks of columns (a CPU's cache-sized blocks) is the one-block sum
    bit for bit: each column of X·P depends on the same column of P only. Last blocks holding
    B̄'s column d alone (orders 1 and 35), with columns of Ā (37), and a short one (64)."""
    monkeypatch.setattr(legendre, "zoh_block_columns", lambda d, device: d + 1)
    whole = legendre.zoh(order, 0.01)
    monkeypatch.setattr(legendre, "zoh_block_columns", lambda d, device: w)
    blocked = legendre.zoh(order, 0.01)
    assert torch.equal(blocked[0], whole[0]) and torch.equal(blocked[1], whole[1])


def test_zoh_block_columns_rule():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert legendre.zoh_block_columns(4096, cpu) == 16  # 512 KB of float64 rows
    assert legendre.zoh_block_columns(2048, cpu) == 32
    assert legendre.zoh_block_columns(100, cpu) == 101  # one block: fits a cache whole
    assert legendre.zoh_block_columns(4096, gpu) == 4097


def _p(order: int) -> torch.Tensor:
    return legendre.input_vector(order)  # P_i = (−1)^i (2i+1), which is B


@pytest.mark.parametrize("order", [1, 2, 5, 64, 257])
def test_A_and_zoh_are_p_symmetric(order):
    """The premise of zoh's squarings: A·diag(P) is symmetric (exactly: integers), hence so is
    every power series of A, e^{Ah} included, to rounding."""
    A, _ = legendre.state_space(order)
    P = _p(order)
    assert torch.equal(A * P, (A * P).T)
    Ad, _ = legendre.zoh(order, 1 / 50)
    Y = Ad * P
    assert rel(Y, Y.T) < 1e-13


@pytest.mark.parametrize(("order", "rows"), [(100, 16), (100, 7), (64, 32), (33, 10)])
def test_p_symmetric_square_equals_the_product(order, rows, monkeypatch):
    """Ā² by blocks multiplied up to their diagonal, the rest read off the P-symmetry, against
    the whole product Ā·Ā: equal to rounding, and P-symmetric to the rounding of the two
    scalings (where Ā·Ā is only to that of its sums). Uneven blocks (100 rows in 6 or 14
    blocks, 33 in 3)."""
    monkeypatch.setattr(legendre, "ZOH_SQUARE_ROWS", rows)
    Ad, _ = legendre.zoh(order, 1 / 30)
    P = _p(order)
    out = torch.full_like(Ad, float("nan"))
    assert legendre._square_p_symmetric(Ad, P, out=out) is out
    assert rel(out, Ad @ Ad) < 1e-13
    Y = out * P
    assert ((Y - Y.T).abs() <= 1e-15 * Y.abs()).all()


@pytest.mark.parametrize(("order", "rows"), [(300, 32), (1024, legendre.ZOH_SQUARE_ROWS)])
def test_zoh_with_blocked_squarings_equals_scipy(order, rows, monkeypatch):
    """zoh with its squarings in blocks (4 at order 1024 by default) against SciPy's expm."""
    from scipy.linalg import expm

    monkeypatch.setattr(legendre, "ZOH_SQUARE_ROWS", rows)
    h = 1 / 784
    Ad, Bd = legendre.zoh(order, h)
    A, B = legendre.state_space(order)
    M = np.zeros((order + 1, order + 1))
    M[:order, :order], M[:order, order] = A.numpy() * h, B.numpy() * h
    E = torch.from_numpy(expm(M))
    assert rel(Ad, E[:order, :order]) < 1e-12 and rel(Bd, E[:order, order]) < 1e-12
