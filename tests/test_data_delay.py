"""Delay task and the LMU paper's capacity task."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from torchlmu.data import (
    DelayDataset,
    capacity_delays,
    capacity_task,
    delay_targets,
    delay_task,
    white_noise,
)
from torchlmu.exceptions import ValidationError


def test_delay_targets_shift_and_zero_before_start():
    x = torch.arange(1.0, 11.0).reshape(1, 10)
    y = delay_targets(x, [0, 3, 9])
    assert y.shape == (1, 10, 3)
    assert torch.equal(y[0, :, 0], x[0])
    assert torch.equal(y[0, :, 1], torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7.0]))
    assert torch.equal(y[0, :, 2], torch.tensor([0.0] * 9 + [1.0]))


def test_delay_task_matches_noise_and_targets():
    u, y = delay_task(4, 200, [0, 5, 50], dt=1e-3, cutoff=15.0, seed=3)
    assert u.shape == (4, 200, 1) and y.shape == (4, 200, 3)
    assert torch.equal(u[..., 0], white_noise(200, dt=1e-3, cutoff=15.0, n=4, seed=3))
    for j, d in enumerate([0, 5, 50]):
        assert torch.equal(y[:, d:, j], u[:, : 200 - d, 0])
        assert torch.all(y[:, :d, j] == 0)


def test_capacity_task_protocol():
    """T = 100 steps per window θ = 1 s: dt = 10 ms, length 250, delays 0,25,50,75,100."""
    assert capacity_delays(100) == [0, 25, 50, 75, 100]
    u, y = capacity_task(6, 100, seed=0)
    assert u.shape == (6, 250, 1) and y.shape == (6, 250, 5)
    assert u.abs().amax(dim=1).squeeze(-1) == pytest.approx([1.0] * 6)  # scaled into [-1, 1]
    power = torch.fft.rfft(u[..., 0], dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(250, d=0.01)
    assert power[:, freqs > 10.0].sum() < 1e-20 * power.sum()
    for j, d in enumerate([0, 25, 50, 75, 100]):
        assert torch.equal(y[:, d:, j], u[:, : 250 - d, 0])
        assert torch.all(y[:, :d, j] == 0)


def test_dataset_and_dataloader():
    ds = DelayDataset(10, 64, [0, 8], dt=1e-2, cutoff=5.0, seed=1)
    assert len(ds) == 10 and ds.inputs.dtype == torch.float32
    x, y = ds[3]
    assert x.shape == (64, 1) and y.shape == (64, 2)
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 64, 1) and yb.shape == (4, 64, 2)
    assert torch.equal(yb[:, 8:, 1], xb[:, :56, 0])
    cap = DelayDataset.capacity(3, 40, seed=2)
    assert cap.inputs.shape == (3, 100, 1) and cap.delays == [0, 10, 20, 30, 40]


@pytest.mark.parametrize("delays", [[-1], [200], [], 3, [1.5]])
def test_bad_delays(delays):
    with pytest.raises(ValidationError, match="delays"):
        delay_task(2, 200, delays, dt=1e-3, cutoff=15.0, seed=0)


def test_capacity_needs_enough_steps_for_the_band():
    with pytest.raises(ValidationError, match="cutoff"):
        capacity_task(2, 20, seed=0)  # Nyquist = 10 Hz, not above the 10 Hz band
