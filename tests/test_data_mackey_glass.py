"""Mackey-Glass generators (the LMU paper's Euler one and an accurate RK4) and the forecast task."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from torchlmu.data import (
    MackeyGlassForecast,
    mackey_glass_euler,
    mackey_glass_forecast,
    mackey_glass_rk4,
)
from torchlmu.exceptions import ValidationError

TAU, A, B, POWER = 17.0, 0.2, 0.1, 10


def _reference_euler(history: np.ndarray, n_samples: int, dt=0.1, substeps=10, x0=1.2):
    """One sequence, written directly from the equation with a plain list of past values.

    The original code's indexing: each sample is recorded after its ``substeps`` Euler steps,
    so sample i is x at Euler index (i + 1)·substeps and x(0) = x0 is never a sample."""
    xs = [*history, x0]  # x at Euler indices -m .. 0
    m = len(history)
    samples = []
    for _ in range(n_samples * substeps):
        x, xd = xs[-1], xs[-1 - m]
        xs.append(x + dt * (A * xd / (1 + xd**POWER) - B * x))
        if (len(xs) - 1 - m) % substeps == 0:
            samples.append(xs[-1])
    return np.array(samples)


def test_euler_matches_a_direct_implementation_of_the_paper_generator():
    n, length, washout, seed = 3, 40, 25, 11
    out = mackey_glass_euler(n, length, washout=washout, seed=seed)
    hist = 1.2 + 0.2 * (np.random.default_rng(seed).uniform(size=(n, 170)) - 0.5)
    raw = np.stack([_reference_euler(h, washout + length) for h in hist])[:, washout:]
    expected = np.tanh(raw - 1.0)
    expected -= expected.mean()
    assert out.shape == (n, length) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


def test_euler_records_each_sample_after_its_steps_as_the_original_code():
    """Sample i is x((i + 1)·substeps·dt), not x(i·substeps·dt): the one-sample shift.

    With a constant history c = x0 = 1.2 the delayed term is g = a·c/(1 + c^n) for the first
    m = 170 Euler steps, so x_k = g/b + (x0 − g/b)(1 − b·dt)^k in closed form; sample i is
    x_{10(i + 1)}, valid while 10(i + 1) <= 170 (i <= 16)."""
    raw = mackey_glass_euler(
        1, 17, washout=0, history_spread=0.0, transform=False, remove_mean=False, seed=0
    )[0].numpy()
    g = A * 1.2 / (1 + 1.2**POWER)
    k = 10 * (np.arange(17) + 1)
    np.testing.assert_allclose(raw, g / B + (1.2 - g / B) * (1 - B * 0.1) ** k, rtol=0, atol=1e-13)
    assert raw[0] != 1.2  # x(0) is not a sample
    # the washout drops whole samples of that same series
    later = mackey_glass_euler(
        1, 7, washout=10, history_spread=0.0, transform=False, remove_mean=False, seed=0
    )[0].numpy()
    np.testing.assert_array_equal(later, raw[10:])


def test_euler_paper_size_is_fast_seeded_and_zero_mean():
    t0 = time.perf_counter()
    series = mackey_glass_euler(128, 5015, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"128 x 5015 samples took {elapsed:.2f} s"
    assert series.shape == (128, 5015)
    assert abs(series.mean().item()) < 1e-12
    assert not torch.allclose(series[0], series[1])  # the histories differ per sequence
    again = mackey_glass_euler(4, 300, seed=5)
    assert torch.equal(again, mackey_glass_euler(4, 300, seed=5))
    assert not torch.equal(again, mackey_glass_euler(4, 300, seed=6))
    raw = mackey_glass_euler(4, 300, seed=5, remove_mean=False)
    assert torch.allclose(again, raw - raw.mean())
    assert raw.min() > math.tanh(0.3 - 1.0) and raw.max() < math.tanh(1.4 - 1.0)


def test_euler_is_first_order_against_rk4():
    """Constant history 1.2, 200 samples: max |Euler − RK4| measured 0.043 at dt = 0.1 and
    0.021 at dt = 0.05 (first order: the error halves with the step). Euler's sample i is
    x(i + 1), RK4's x(i)."""
    ref = mackey_glass_rk4(201, history=1.2, steps_per_sample=20)[:, 1:]

    def err(dt, substeps):
        e = mackey_glass_euler(
            1, 200, washout=0, dt=dt, substeps=substeps, history_spread=0.0,
            transform=False, remove_mean=False, seed=0,
        )  # fmt: skip
        return (e - ref).abs().max().item()

    e1, e2 = err(0.1, 10), err(0.05, 20)
    assert e1 < 0.06
    assert 1.8 < e1 / e2 < 2.2


def test_rk4_converges_at_fourth_order():
    """Histories 1.2, 0.9, 0.5 (constant), horizon 600 time units (samples every 1).

    Measured max |x_h − x_{h/2}| over the 600 samples: 6.5e-7 for h = 0.1 → 0.05 and 4.1e-8 for
    h = 0.05 → 0.025 (ratio 16.0 = 2^4). Test: below 2e-6 and 1.5e-7, ratio in [12, 20].
    """
    xs = [mackey_glass_rk4(600, history=[1.2, 0.9, 0.5], steps_per_sample=s) for s in (10, 20, 40)]
    d1 = (xs[0] - xs[1]).abs().max().item()
    d2 = (xs[1] - xs[2]).abs().max().item()
    assert d1 < 2e-6 and d2 < 1.5e-7
    assert 12 < d1 / d2 < 20


def test_rk4_solves_the_delay_equation():
    """Central differences of a dense solution (h = 0.1) satisfy the equation to O(h²)."""
    h = 0.1
    x = mackey_glass_rk4(2000, history=1.2, sample_dt=h, steps_per_sample=1)[0].numpy()
    m = round(TAU / h)
    t = np.arange(m + 1, x.size - 1)
    lhs = (x[t + 1] - x[t - 1]) / (2 * h)
    rhs = A * x[t - m] / (1 + x[t - m] ** POWER) - B * x[t]
    assert np.abs(lhs - rhs).max() < 1e-3
    assert np.abs(lhs - rhs).max() < 1e-2 * np.abs(rhs).max()


def test_rk4_histories_and_attractor():
    const = mackey_glass_rk4(100, history=0.9, n=2)
    assert const.shape == (2, 100) and torch.equal(const[0], const[1])
    func = mackey_glass_rk4(100, history=lambda t: np.full_like(t, 0.9))
    assert torch.allclose(func[0], const[0], rtol=0, atol=1e-15)
    wavy = mackey_glass_rk4(50, history=lambda t: np.stack([1 + 0.1 * np.sin(t), 1 + 0 * t]))
    assert wavy.shape == (2, 50) and wavy[0, 0].item() == pytest.approx(1.0)
    # After a transient the chaotic attractor of τ = 17 lies within about [0.4, 1.35].
    late = mackey_glass_rk4(1000, history=1.2, washout=500)
    assert late.min() > 0.35 and late.max() < 1.4 and late.std() > 0.15


def test_forecast_predicts_the_future():
    series = torch.arange(100.0).reshape(1, 100).repeat(2, 1)
    inputs, targets = mackey_glass_forecast(series)
    assert inputs.shape == targets.shape == (2, 85, 1)
    assert torch.all(targets - inputs == 15)  # target lies 15 samples AFTER the input
    assert torch.equal(inputs[0, :, 0], series[0, :85])
    assert torch.equal(targets[0, :, 0], series[0, 15:])
    i3, t3 = mackey_glass_forecast(series[0], horizon=3)
    assert i3.shape == (1, 97, 1) and torch.all(t3 - i3 == 3)


def test_forecast_dataset():
    series = mackey_glass_euler(6, 120, seed=1)
    ds = MackeyGlassForecast(series, horizon=10, dtype=torch.float32)
    assert len(ds) == 6
    x, y = ds[2]
    assert x.shape == y.shape == (110, 1) and x.dtype == torch.float32
    assert torch.equal(y[:-10], x[10:])  # the target is the input shifted forward in time
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 110, 1)
    assert torch.allclose(yb[:, :, 0], series[:4, 10:].float())


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: mackey_glass_euler(2, 10, dt=0.3), "dt"),
        (lambda: mackey_glass_euler(0, 10), "n"),
        (lambda: mackey_glass_euler(2, 10, washout=-1), "washout"),
        (lambda: mackey_glass_rk4(10, sample_dt=0.3, steps_per_sample=1), "steps_per_sample"),
        (lambda: mackey_glass_rk4(10, history=[1.0, 2.0], n=3), "n"),
        (lambda: mackey_glass_rk4(10, history=lambda t: np.ones(3)), "history"),
        (lambda: mackey_glass_forecast(torch.zeros(2, 10), horizon=10), "horizon"),
        (lambda: mackey_glass_forecast(torch.zeros(2, 10), horizon=0), "horizon"),
        (lambda: mackey_glass_forecast(torch.zeros(2, 3, 4)), "series"),
    ],
)
def test_bad_arguments(call, param):
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.param == param
