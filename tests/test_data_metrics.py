"""NRMSE in its three conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchlmu.data import NRMSE_CONVENTIONS, nrmse
from torchlmu.exceptions import ValidationError


def test_hand_computed_values():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    pred = torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64)
    rmse = 0.5  # sqrt(1/4)
    assert nrmse(pred, target, convention="rms").item() == pytest.approx(rmse / math.sqrt(7.5))
    assert nrmse(pred, target, convention="std").item() == pytest.approx(rmse / math.sqrt(1.25))
    assert nrmse(pred, target, convention="range").item() == pytest.approx(rmse / 3.0)


def test_conventions_differ_and_agree_where_they_should():
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.standard_normal((4, 50)) + 3.0)
    pred = target + 0.1 * torch.from_numpy(rng.standard_normal((4, 50)))
    values = {c: nrmse(pred, target, convention=c).item() for c in NRMSE_CONVENTIONS}
    assert len({round(v, 9) for v in values.values()}) == 3  # a shifted target separates them
    centred = target - target.mean()
    shifted = pred - target.mean()
    assert nrmse(shifted, centred, convention="rms").item() == pytest.approx(
        nrmse(shifted, centred, convention="std").item()
    )
    # predicting the mean gives NRMSE 1 in the "std" convention
    mean_pred = torch.full_like(target, target.mean().item())
    assert nrmse(mean_pred, target, convention="std").item() == pytest.approx(1.0)


def test_convention_is_required():
    x = torch.ones(3)
    with pytest.raises(TypeError):
        nrmse(x, x)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        nrmse(x, x, "rms")  # type: ignore[misc]
    with pytest.raises(ValidationError, match="convention"):
        nrmse(x, x, convention="nrmse")  # type: ignore[arg-type]


def test_shapes_constant_targets_and_gradient():
    with pytest.raises(ValidationError, match="prediction"):
        nrmse(torch.zeros(3), torch.ones(4), convention="rms")
    with pytest.raises(ValidationError, match="target"):
        nrmse(torch.zeros(3), torch.ones(3), convention="std")
    with pytest.raises(ValidationError, match="target"):
        nrmse(torch.ones(3), torch.zeros(3), convention="rms")
    pred = torch.zeros(5, requires_grad=True)
    value = nrmse(pred, torch.arange(1.0, 6.0), convention="range")
    value.backward()
    assert pred.grad is not None and torch.all(pred.grad < 0)
    assert nrmse([0.0, 1.0], np.array([0.0, 2.0]), convention="range").item() == pytest.approx(
        math.sqrt(0.5) / 2
    )
