"""The Mackey-Glass delay differential equation and its forecasting task.

    dx/dt = a · x(t − τ) / (1 + x(t − τ)^n) − b · x(t),      τ = 17, a = 0.2, b = 0.1, n = 10

(chaotic for τ = 17). Two integrators:

* :func:`mackey_glass_euler` — the generator of the LMU paper's experiment: forward Euler with
  step 0.1, one output sample every 10 steps (sample period 1), a random history
  ``1.2 + 0.2·(U − 0.5)`` (one value per Euler step over the τ before t = 0), ``x(0) = 1.2``,
  each sample recorded after its 10 steps (sample ``i`` is ``x(i + 1)``, as the original code
  indexes it), the first 100 samples discarded (washout), output ``tanh(x − 1)`` with the mean
  over the whole generated set removed. Vectorised over sequences.
* :func:`mackey_glass_rk4` — an accurate solver: classical Runge-Kutta 4 whose delayed term at
  the half step is a cubic Hermite interpolant of the stored solution (4th order, like RK4),
  the step chosen so that τ is a whole number of steps (the derivative discontinuities of the
  solution at t = 0, τ, 2τ, ... then fall on grid points).

The forecasting task (:func:`mackey_glass_forecast`, :class:`MackeyGlassForecast`) pairs the
input ``x[t]`` with the target ``x[t + horizon]``: the model predicts the *future*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..exceptions import ValidationError
from ._checks import (
    SeedLike,
    check_finite,
    check_float_dtype,
    check_int,
    check_positive,
    check_step_ratio,
    make_rng,
)

__all__ = [
    "MackeyGlassForecast",
    "mackey_glass_euler",
    "mackey_glass_forecast",
    "mackey_glass_rk4",
]

HistoryLike = float | Sequence[float] | np.ndarray | Callable[[np.ndarray], np.ndarray]


def _check_params(
    tau: float, a: float, b: float, power: float
) -> tuple[float, float, float, float]:
    return (
        check_positive(tau, "tau"),
        check_finite(a, "a"),
        check_finite(b, "b"),
        check_positive(power, "power"),
    )


def mackey_glass_euler(
    n: int,
    length: int,
    *,
    washout: int = 100,
    dt: float = 0.1,
    substeps: int = 10,
    tau: float = 17.0,
    a: float = 0.2,
    b: float = 0.1,
    power: float = 10.0,
    x0: float = 1.2,
    history_spread: float = 0.2,
    transform: bool = True,
    remove_mean: bool = True,
    seed: SeedLike = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Mackey-Glass series with the LMU paper's generator (forward Euler), many at once.

    Per sequence: history values ``x0 + history_spread·(U − 0.5)``, U ~ Uniform[0, 1), at the
    ``m = tau/dt`` Euler grid times ``−τ, −τ+dt, ..., −dt`` (drawn as
    ``rng.uniform(size=(n, m))``), then ``x(0) = x0`` and Euler steps
    ``x_{k+1} = x_k + dt·(a·x_{k−m} / (1 + x_{k−m}^power) − b·x_k)``. Sample ``i`` is
    ``x((i + 1) · substeps · dt)``, recorded after its ``substeps`` Euler steps as in the
    original code (so ``x(0) = x0`` is not a sample); samples ``0..washout−1`` are dropped.

    Args:
        n: number of sequences.
        length: samples per sequence kept after the washout.
        washout: samples dropped at the start (paper: 100).
        dt: Euler step (paper: 0.1); ``tau / dt`` must be a whole number.
        substeps: Euler steps per output sample (paper: 10).
        tau, a, b, power: the equation's parameters.
        x0: initial value and centre of the random history (paper: 1.2).
        history_spread: width of the uniform history (paper: 0.2; 0 gives a constant history).
        transform: return ``tanh(x − 1)`` (paper) instead of ``x``.
        remove_mean: subtract the mean over all sequences and samples (paper: yes).
        seed: int, ``numpy.random.Generator`` or ``None``.
        dtype: floating-point dtype of the result (computed in float64).

    Returns:
        Tensor of shape ``(n, length)``.

    128 sequences of 5015 samples take about 0.3 s on one CPU core.
    """
    n = check_int(n, "n")
    length = check_int(length, "length")
    washout = check_int(washout, "washout", minimum=0)
    dt = check_positive(dt, "dt")
    substeps = check_int(substeps, "substeps")
    tau, a, b, power = _check_params(tau, a, b, power)
    x0 = check_finite(x0, "x0")
    history_spread = check_finite(history_spread, "history_spread")
    dtype = check_float_dtype(dtype)
    m = check_step_ratio(
        tau, dt, "dt", f"a step that divides tau = {tau:g} a whole number of times"
    )
    rng = make_rng(seed)

    # ring[j % m] holds x at Euler index j for the last m indices (history: j = -m..-1).
    ring = np.ascontiguousarray((x0 + history_spread * (rng.uniform(size=(n, m)) - 0.5)).T)
    n_samples = washout + length
    out = np.empty((n_samples, n))
    x = np.full(n, x0)
    k = 0
    for i in range(n_samples):
        for _ in range(substeps):
            slot = k % m
            xd = ring[slot]  # x at index k - m
            dx = a * xd / (1.0 + xd**power) - b * x
            ring[slot] = x  # x_k replaces x_{k-m}, which is no longer needed
            x = x + dt * dx
            k += 1
        # The original generator records a sample after integrating its interval: sample i is
        # x((i + 1)·substeps·dt), and x(0) itself is never a sample.
        out[i] = x
    series = out[washout:].T
    if transform:
        series = np.tanh(series - 1.0)
    if remove_mean:
        series = series - series.mean()
    return torch.from_numpy(np.ascontiguousarray(series)).to(dtype)


def _history_values(history: HistoryLike, times: np.ndarray, n: int | None) -> np.ndarray:
    """History evaluated at ``times``: array (n, len(times))."""
    if callable(history):
        vals = np.asarray(history(times.copy()), dtype=np.float64)
        if vals.ndim == 1:
            vals = vals[None, :]
        if vals.ndim != 2 or vals.shape[-1] != times.size:
            raise ValidationError(
                "history",
                f"a callable returning shape (len(t),) or (n, len(t)) with len(t) = {times.size}",
                f"shape {vals.shape}",
            )
    else:
        vals = np.asarray(history, dtype=np.float64)
        if vals.ndim > 1:
            raise ValidationError("history", "a number, a 1-D array or a callable", vals.shape)
        vals = np.broadcast_to(vals.reshape(-1, 1), (vals.size, times.size))
    if n is not None and vals.shape[0] not in (1, n):
        raise ValidationError("n", f"{vals.shape[0]} (the number of histories given)", n)
    if n is not None:
        vals = np.broadcast_to(vals, (n, times.size))
    if not np.all(np.isfinite(vals)):
        raise ValidationError("history", "finite values", "non-finite values")
    return np.ascontiguousarray(vals.T)  # (len(times), n)


def mackey_glass_rk4(
    length: int,
    *,
    history: HistoryLike = 1.2,
    n: int | None = None,
    sample_dt: float = 1.0,
    steps_per_sample: int = 10,
    washout: int = 0,
    tau: float = 17.0,
    a: float = 0.2,
    b: float = 0.1,
    power: float = 10.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Mackey-Glass series from an accurate 4th-order solver (RK4 + Hermite-interpolated delay).

    The step is ``h = sample_dt / steps_per_sample`` and must divide ``tau`` a whole number of
    times ``m``. With ``x_k = x(k·h)`` and the stored derivatives ``f_k = x'(k·h)``, one step is
    RK4 on ``x' = a·d(t)/(1 + d(t)^power) − b·x`` with the delayed value ``d`` taken at
    ``x_{k−m}``, ``x_{k−m+1}`` and, at the half step, the cubic Hermite midpoint
    ``(x_{k−m} + x_{k−m+1})/2 + h·(f_{k−m} − f_{k−m+1})/8``; while ``t − τ <= 0`` the history
    function is evaluated exactly instead.

    Args:
        length: samples returned (after ``washout``), sample ``i`` at time
            ``(washout + i) · sample_dt``.
        history: x(t) for ``t <= 0``: a number (one constant history), a 1-D array (one
            constant per sequence) or a callable ``f(t)`` mapping an array of times in
            ``[−τ, 0]`` to shape ``(len(t),)`` or ``(n, len(t))``. ``x(0) = history(0)``.
        n: number of sequences when ``history`` does not fix it (default: inferred, else 1).
        sample_dt: time between output samples.
        steps_per_sample: RK4 steps per sample.
        washout: samples dropped at the start.
        tau, a, b, power: the equation's parameters.
        dtype: floating-point dtype of the result (computed in float64).

    Returns:
        Tensor of shape ``(n, length)`` holding ``x`` (no transform, no mean removal).
    """
    length = check_int(length, "length")
    washout = check_int(washout, "washout", minimum=0)
    sample_dt = check_positive(sample_dt, "sample_dt")
    steps_per_sample = check_int(steps_per_sample, "steps_per_sample")
    tau, a, b, power = _check_params(tau, a, b, power)
    dtype = check_float_dtype(dtype)
    if n is not None:
        n = check_int(n, "n")
    h = sample_dt / steps_per_sample
    m = check_step_ratio(
        tau, h, "steps_per_sample", f"a step sample_dt/steps_per_sample that divides tau = {tau:g}"
    )
    h = tau / m  # exact multiple of the delay

    hist_grid = _history_values(history, -tau + h * np.arange(m + 1), n)  # (m+1, n)
    hist_mid = _history_values(history, -tau + h * (np.arange(m) + 0.5), n)  # (m, n)
    width = hist_grid.shape[1]
    if hist_mid.shape[1] != width:
        hist_mid = np.broadcast_to(hist_mid, (m, width))

    def g(d: np.ndarray) -> np.ndarray:
        return a * d / (1.0 + d**power)

    size = m + 1  # ring buffers hold indices k-m .. k
    xr = np.empty((size, width))
    fr = np.empty((size, width))
    n_samples = washout + length
    out = np.empty((n_samples, width))
    x = hist_grid[m].copy()
    total = (n_samples - 1) * steps_per_sample
    half = 0.5 * h
    for k in range(total + 1):
        if k % steps_per_sample == 0:
            out[k // steps_per_sample] = x
            if k == total:
                break
        if k >= m:
            x_a, x_b = xr[(k - m) % size], xr[(k - m + 1) % size]
            d0, d1 = x_a, x_b
            dh = 0.5 * (x_a + x_b) + 0.125 * h * (fr[(k - m) % size] - fr[(k - m + 1) % size])
        else:
            d0 = hist_grid[k]
            d1 = hist_grid[k + 1]  # hist_grid[m] is x(0)
            dh = hist_mid[k]
        g0, gh, g1 = g(d0), g(dh), g(d1)
        k1 = g0 - b * x
        xr[k % size] = x
        fr[k % size] = k1
        k2 = gh - b * (x + half * k1)
        k3 = gh - b * (x + half * k2)
        k4 = g1 - b * (x + h * k3)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return torch.from_numpy(np.ascontiguousarray(out[washout:].T)).to(dtype)


def mackey_glass_forecast(series: Tensor, horizon: int = 15) -> tuple[Tensor, Tensor]:
    """Input/target pairs that predict ``horizon`` samples into the future.

    Args:
        series: tensor of shape ``(n, length)`` (or ``(length,)``, treated as n = 1).
        horizon: how far ahead the target lies, in samples (LMU paper: 15).

    Returns:
        ``(inputs, targets)``, both ``(n, length − horizon, 1)``, with
        ``inputs[:, t, 0] = series[:, t]`` and ``targets[:, t, 0] = series[:, t + horizon]``.
    """
    if not isinstance(series, Tensor) or series.dim() not in (1, 2):
        shape = tuple(series.shape) if isinstance(series, Tensor) else type(series).__name__
        raise ValidationError("series", "a tensor of shape (n, length) or (length,)", shape)
    if series.dim() == 1:
        series = series.unsqueeze(0)
    length = series.shape[-1]
    horizon = check_int(horizon, "horizon")
    if horizon >= length:
        raise ValidationError("horizon", f"an integer < length = {length}", horizon)
    inputs = series[:, : length - horizon].unsqueeze(-1)
    targets = series[:, horizon:].unsqueeze(-1)
    return inputs, targets


class MackeyGlassForecast(Dataset):
    """Forecasting dataset over a set of series: item ``i`` is sequence ``i`` as
    ``(input (length − horizon, 1), target (length − horizon, 1))`` with
    ``target[t] = series[i, t + horizon]`` (the future).

    Args:
        series: tensor ``(n, length)``, e.g. from :func:`mackey_glass_euler`.
        horizon: prediction horizon in samples (default 15, as in the LMU paper).
        dtype: dtype of the items (default: that of ``series``).
    """

    def __init__(
        self, series: Tensor, horizon: int = 15, *, dtype: torch.dtype | None = None
    ) -> None:
        if dtype is not None:
            check_float_dtype(dtype)
            if isinstance(series, Tensor):
                series = series.to(dtype)
        self.inputs, self.targets = mackey_glass_forecast(series, horizon)
        self.horizon = int(horizon)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]
