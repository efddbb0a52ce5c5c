"""The memory holds its input's window: decoding delays from an untrained LegendreMemory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from torchlmu import LegendreMemory, legendre
from torchlmu.data import white_noise

N, THETA, SKIP = 3000, 90, 200


def states(order, mode="auto"):
    u = white_noise(N, dt=1e-3, cutoff=15.0, rms=1.0, seed=0)
    mem = LegendreMemory(1, order, float(THETA), dtype=torch.float64, mode=mode)
    with torch.no_grad():
        mem.input_encoders.fill_(1.0)
        m, _ = mem(u[:, None])
    return u, m


def rmse(a, b) -> float:
    return float((a - b).square().mean().sqrt())


@pytest.mark.parametrize("order", [9, 21])
def test_delay_theta_decodes_within_nengo_band(order):
    """15 Hz white noise, dt 1 ms, θ = 90 steps: u(t − θ) = P(1)·m_t within [0.001, 0.03] RMSE."""
    u, m = states(order)
    dec = m @ legendre.readout(order, [1.0])[0]
    err = rmse(dec[SKIP:], u[SKIP - THETA : N - THETA])
    assert 0.001 <= err <= 0.03, err


@pytest.mark.parametrize("order", [9, 21])
def test_intermediate_delays_decode(order):
    """Delays of k steps decode at r = (k + 1/2)/θ: zero-order hold keeps u_{t−k} over the step
    whose centre lies k + 1/2 steps back (measured RMSE 1e-4 to 4e-3)."""
    u, m = states(order)
    for k in (0, 22, 45, 67, 89):
        dec = m @ legendre.readout(order, [(k + 0.5) / THETA])[0]
        assert rmse(dec[SKIP:], u[SKIP - k : N - k]) < 0.01, k
    # and the recurrent mode holds the same states
    _, m_rec = states(order, mode="recurrent")
    assert float((m - m_rec).norm() / m_rec.norm()) < 1e-10


def test_readme_quick_start_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert code, "README has no python quick start"
    exec(compile(code[0], "README.md", "exec"), {})
