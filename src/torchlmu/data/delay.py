"""The delay task: reproduce the input signal delayed by a set of lags.

The LMU paper's memory-capacity task (Voelker, Kajić & Eliasmith, NeurIPS 2019) feeds band-limited
white noise (10 Hz, scaled into [-1, 1]) and asks for the input delayed by 0, θ/4, θ/2, 3θ/4 and θ,
where the window θ = 1 s is sampled with T steps (dt = θ/T) and each sequence is 2.5·T steps
long. Before a delay has elapsed its target is zero (the signal is taken as zero before t = 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..exceptions import ValidationError
from ._checks import SeedLike, check_float_dtype, check_int, check_positive
from .noise import white_noise

__all__ = ["DelayDataset", "capacity_delays", "capacity_task", "delay_targets", "delay_task"]


def _check_delays(delays: Sequence[int], length: int) -> list[int]:
    if isinstance(delays, (int, np.integer)) or isinstance(delays, (str, bytes)):
        raise ValidationError("delays", "a sequence of integers", repr(delays))
    try:
        out = list(delays)
    except TypeError:
        raise ValidationError("delays", "a sequence of integers", repr(delays)) from None
    if not out:
        raise ValidationError("delays", "a non-empty sequence of integers", repr(delays))
    for d in out:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < length:
            raise ValidationError(
                "delays", f"integers d with 0 <= d < length = {length}", repr(delays)
            )
    return [int(d) for d in out]


def delay_targets(x: Tensor, delays: Sequence[int]) -> Tensor:
    """The input delayed by each of ``delays`` steps, zero before the delay has elapsed.

    Args:
        x: tensor of shape ``(..., length)`` (time is the last dimension).
        delays: non-negative integer delays in steps, each smaller than ``length``.

    Returns:
        Tensor of shape ``(..., length, len(delays))`` with
        ``y[..., t, j] = x[..., t - delays[j]]`` for ``t >= delays[j]`` and 0 before.
    """
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValidationError("x", "a tensor of shape (..., length)", type(x).__name__)
    length = x.shape[-1]
    ds = _check_delays(delays, length)
    y = x.new_zeros((*x.shape, len(ds)))
    for j, d in enumerate(ds):
        y[..., d:, j] = x[..., : length - d]
    return y


def delay_task(
    n: int,
    length: int,
    delays: Sequence[int],
    *,
    dt: float,
    cutoff: float,
    rms: float | None = None,
    peak: float | None = None,
    seed: SeedLike = None,
    y0: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """White-noise inputs and their delayed copies as targets (batch first).

    Args:
        n: number of sequences.
        length: steps per sequence.
        delays: delays in steps (``0 <= d < length``).
        dt, cutoff, rms, peak, seed, y0: passed to :func:`~torchlmu.data.white_noise`.
        dtype: floating-point dtype of both tensors.

    Returns:
        ``(inputs, targets)`` of shapes ``(n, length, 1)`` and ``(n, length, len(delays))``.
    """
    n = check_int(n, "n")
    length = check_int(length, "length", minimum=2)
    ds = _check_delays(delays, length)
    u = white_noise(
        length, dt=dt, cutoff=cutoff, n=n, rms=rms, peak=peak, seed=seed, y0=y0, dtype=dtype
    )
    return u.unsqueeze(-1), delay_targets(u, ds)


def capacity_delays(steps: int) -> list[int]:
    """The capacity task's delays for a window of ``steps`` steps: round(k·T/4), k = 0..4."""
    steps = check_int(steps, "steps")
    return [round(k * steps / 4) for k in range(5)]


def capacity_task(
    n: int,
    steps: int,
    *,
    theta: float = 1.0,
    cutoff: float = 10.0,
    seed: SeedLike = None,
    y0: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """The LMU paper's memory-capacity task.

    Band-limited white noise (``cutoff`` Hz, each sequence scaled so ``max |u| = 1``) sampled
    with ``dt = theta / steps``; sequences of ``round(2.5 · steps)`` steps; targets are the input
    delayed by 0, T/4, T/2, 3T/4 and T steps (rounded to whole steps), zero before each delay.

    Args:
        n: number of sequences.
        steps: T, the number of time steps per window θ (needs ``steps / theta > 2·cutoff``).
        theta: window length in seconds (paper: 1 s).
        cutoff: noise band limit in Hz (paper: 10 Hz).
        seed: int, ``numpy.random.Generator`` or ``None``.
        y0: start each sequence at its sample closest to ``y0`` (see :func:`white_noise`).
        dtype: floating-point dtype of the tensors.

    Returns:
        ``(inputs, targets)`` of shapes ``(n, L, 1)`` and ``(n, L, 5)``, ``L = round(2.5·steps)``.
    """
    steps = check_int(steps, "steps")
    theta = check_positive(theta, "theta")
    length = round(2.5 * steps)
    return delay_task(
        n,
        length,
        capacity_delays(steps),
        dt=theta / steps,
        cutoff=cutoff,
        peak=1.0,
        seed=seed,
        y0=y0,
        dtype=dtype,
    )


class DelayDataset(Dataset):
    """A fixed set of delay-task sequences as a map-style torch Dataset.

    Item ``i`` is ``(inputs[i], targets[i])`` of shapes ``(length, 1)`` and
    ``(length, len(delays))``; a DataLoader batches them to ``(B, length, 1)`` and
    ``(B, length, len(delays))``.

    Args:
        n, length, delays, dt, cutoff, rms, peak, seed: as in :func:`delay_task`.
        dtype: floating-point dtype (default float32, for training).

    Attributes:
        inputs, targets: the full tensors; ``delays``: the delays in steps; ``dt``: the step.
    """

    def __init__(
        self,
        n: int,
        length: int,
        delays: Sequence[int],
        *,
        dt: float,
        cutoff: float,
        rms: float | None = None,
        peak: float | None = None,
        seed: SeedLike = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_float_dtype(dtype)
        self.inputs, self.targets = delay_task(
            n, length, delays, dt=dt, cutoff=cutoff, rms=rms, peak=peak, seed=seed, dtype=dtype
        )
        self.delays = [int(d) for d in delays]
        self.dt = float(dt)

    @classmethod
    def capacity(
        cls,
        n: int,
        steps: int,
        *,
        theta: float = 1.0,
        cutoff: float = 10.0,
        seed: SeedLike = None,
        dtype: torch.dtype = torch.float32,
    ) -> DelayDataset:
        """The LMU paper's capacity task (see :func:`capacity_task`) as a Dataset."""
        steps = check_int(steps, "steps")
        theta = check_positive(theta, "theta")
        return cls(
            n,
            round(2.5 * steps),
            capacity_delays(steps),
            dt=theta / steps,
            cutoff=cutoff,
            peak=1.0,
            seed=seed,
            dtype=dtype,
        )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]
