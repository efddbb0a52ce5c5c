"""Band-limited white noise: spectrum, scaling, seeding, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchlmu.data import white_noise, white_noise_np
from torchlmu.exceptions import ValidationError


def test_spectrum_is_zero_above_cutoff_and_flat_below():
    """15 Hz noise at dt = 1 ms, 256 sequences of 4096 steps (bins every 0.244 Hz).

    Measured (seed 1): power above the cut-off / total power = 8.8e-32 (rounding only); the
    power of the 61 in-band bins averaged over the sequences is flat: lower half / upper half
    = 0.994, every bin within 18 % of the in-band mean (expected scatter 1/sqrt(256) = 6 %).
    """
    dt, cutoff, length = 1e-3, 15.0, 4096
    x = white_noise(length, dt=dt, cutoff=cutoff, n=256, rms=1.0, seed=1)
    assert x.shape == (256, length) and x.dtype == torch.float64
    power = np.abs(np.fft.rfft(x.numpy(), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(length, d=dt)
    above = freqs > cutoff
    assert power[:, above].sum() / power.sum() < 1e-20
    assert power[:, 0].max() / power.sum() < 1e-20  # no DC: zero mean
    band = (freqs > 0) & (freqs <= cutoff)
    assert band.sum() == 61
    mean_per_bin = power[:, band].mean(axis=0)
    level = mean_per_bin.mean()
    lower, upper = np.array_split(mean_per_bin, 2)
    assert lower.mean() / upper.mean() == pytest.approx(1.0, abs=0.05)
    assert np.all(np.abs(mean_per_bin / level - 1.0) < 0.3)


def test_spectrum_of_a_cutoff_between_bins():
    """A cut-off that is not a bin frequency keeps only bins <= cut-off."""
    dt, length = 0.01, 1000  # bins every 0.1 Hz
    x = white_noise_np(8, length, dt=dt, cutoff=2.05, seed=3)
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(length, d=dt)
    assert np.all(power[:, freqs > 2.05] < 1e-20 * power.sum())
    assert np.all(power[:, (freqs > 0) & (freqs <= 2.05)] > 0)


def test_rms_and_peak_scaling():
    x = white_noise(2000, dt=1e-3, cutoff=15.0, n=5, rms=0.5, seed=0)
    assert torch.sqrt(torch.mean(x**2, dim=-1)) == pytest.approx([0.5] * 5, rel=1e-12)
    assert torch.mean(x, dim=-1).abs().max() < 1e-12
    y = white_noise(2500, dt=1e-3, cutoff=10.0, n=5, peak=1.0, seed=0)
    assert y.abs().amax(dim=-1) == pytest.approx([1.0] * 5, rel=1e-12)
    assert y.min() >= -1.0 and y.max() <= 1.0
    default = white_noise(500, dt=1e-2, cutoff=5.0, seed=2)
    assert torch.sqrt(torch.mean(default**2)).item() == pytest.approx(1.0)


def test_seeding_shapes_and_dtype():
    a = white_noise(300, dt=1e-3, cutoff=20.0, n=3, seed=7)
    b = white_noise(300, dt=1e-3, cutoff=20.0, n=3, seed=7)
    c = white_noise(300, dt=1e-3, cutoff=20.0, n=3, seed=8)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # the sequences of a batch are independent
    single = white_noise(300, dt=1e-3, cutoff=20.0, seed=7, dtype=torch.float32)
    assert single.shape == (300,) and single.dtype == torch.float32
    rng = np.random.default_rng(5)
    assert white_noise(300, dt=1e-3, cutoff=20.0, seed=rng).shape == (300,)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"cutoff": 500.0}, "cutoff"),  # Nyquist of dt = 1 ms
        ({"cutoff": 0.5}, "cutoff"),  # below 1 / (length·dt) = 1 Hz
        ({"cutoff": -1.0}, "cutoff"),
        ({"dt": 0.0}, "dt"),
        ({"rms": 1.0, "peak": 1.0}, "rms/peak"),
        ({"peak": -2.0}, "peak"),
        ({"n": 0}, "n"),
        ({"seed": -1}, "seed"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, param):
    args = {"dt": 1e-3, "cutoff": 10.0, **kwargs}
    with pytest.raises(ValidationError) as info:
        white_noise(1000, **args)
    assert info.value.param == param


def test_bad_length():
    with pytest.raises(ValidationError, match="length"):
        white_noise(1, dt=1e-3, cutoff=10.0)


def test_y0_rotation_keeps_the_series_and_starts_near_y0():
    from torchlmu.data import white_noise

    a = white_noise(500, dt=1e-3, cutoff=10.0, n=4, peak=1.0, seed=3)
    b = white_noise(500, dt=1e-3, cutoff=10.0, n=4, peak=1.0, seed=3, y0=0.0)
    for i in range(4):
        k = int((a[i] - b[i, 0]).abs().argmin())
        assert torch.allclose(torch.roll(a[i], -k), b[i])  # a rotation of the same series
        assert b[i, 0].abs() == a[i].abs().min()
