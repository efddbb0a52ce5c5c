"""Band-limited white noise.

The signal is synthesised in the frequency domain: every DFT bin with frequency
``0 < f <= cutoff`` gets an independent complex Gaussian coefficient, every other bin (the DC
bin included) is zero, and the inverse real FFT gives the time series. The power spectrum is
therefore exactly zero above the cut-off (up to floating-point rounding) and flat in expectation
below it; the signal has zero mean and is periodic with period ``length * dt``.

Each sequence is then scaled on its own: to a given RMS value, or so that its largest absolute
value equals a given peak (the signal then lies in ``[-peak, peak]`` and touches one end).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..exceptions import ValidationError
from ._checks import SeedLike, check_float_dtype, check_int, check_positive, make_rng

__all__ = ["white_noise", "white_noise_np"]


def _scale(rms: float | None, peak: float | None) -> tuple[str, float]:
    if rms is not None and peak is not None:
        raise ValidationError(
            "rms/peak", "at most one of rms and peak", f"rms={rms!r}, peak={peak!r}"
        )
    if peak is not None:
        return "peak", check_positive(peak, "peak")
    if rms is None:
        return "rms", 1.0
    return "rms", check_positive(rms, "rms")


def white_noise_np(
    n: int,
    length: int,
    *,
    dt: float,
    cutoff: float,
    rms: float | None = None,
    peak: float | None = None,
    seed: SeedLike = None,
    y0: float | None = None,
) -> np.ndarray:
    """NumPy version of :func:`white_noise`: always returns a float64 array of shape (n, length)."""
    n = check_int(n, "n")
    length = check_int(length, "length", minimum=2)
    dt = check_positive(dt, "dt")
    cutoff = check_positive(cutoff, "cutoff")
    mode, amplitude = _scale(rms, peak)
    nyquist = 0.5 / dt
    if cutoff >= nyquist:
        raise ValidationError(
            "cutoff", f"a frequency below the Nyquist frequency 1/(2·dt) = {nyquist:g}", cutoff
        )
    freqs = np.fft.rfftfreq(length, d=dt)
    band = (freqs > 0) & (freqs <= cutoff)
    n_bins = int(band.sum())
    if n_bins == 0:
        raise ValidationError(
            "cutoff",
            f"a frequency >= the lowest DFT frequency 1/(length·dt) = {freqs[1]:g}",
            cutoff,
            hint="the sequence is too short to contain a full period of the cut-off frequency",
        )
    rng = make_rng(seed)
    coeffs = np.zeros((n, freqs.size), dtype=np.complex128)
    coeffs[:, band] = rng.standard_normal((n, n_bins)) + 1j * rng.standard_normal((n, n_bins))
    x = np.fft.irfft(coeffs, n=length, axis=-1)
    if mode == "rms":
        x *= amplitude / np.sqrt(np.mean(x**2, axis=-1, keepdims=True))
    else:
        x *= amplitude / np.max(np.abs(x), axis=-1, keepdims=True)
    if y0 is not None:
        # The series is periodic (an inverse DFT): rotating it keeps its spectrum and amplitude
        # and lets it start at the sample closest to y0 (no jump from a zero initial state).
        start = np.abs(x - float(y0)).argmin(axis=-1)
        idx = (start[:, None] + np.arange(length)[None, :]) % length
        x = np.take_along_axis(x, idx, axis=-1)
    return x


def white_noise(
    length: int,
    *,
    dt: float,
    cutoff: float,
    n: int | None = None,
    rms: float | None = None,
    peak: float | None = None,
    seed: SeedLike = None,
    y0: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Band-limited white noise with a flat spectrum on ``(0, cutoff]`` and none above.

    Args:
        length: number of time steps of each sequence (>= 2).
        dt: time step (e.g. seconds); the sampling rate is ``1 / dt``.
        cutoff: highest frequency in the signal, in the inverse unit of ``dt`` (Hz for seconds);
            must lie in ``[1 / (length·dt), 1 / (2·dt))``.
        n: number of sequences; ``None`` returns a single sequence of shape ``(length,)``.
        rms: scale each sequence to this root-mean-square value (default 1 when neither
            ``rms`` nor ``peak`` is given).
        peak: instead, scale each sequence so that ``max |x| == peak`` (values in
            ``[-peak, peak]``; the LMU paper's capacity task uses ``peak=1``).
        seed: int, ``numpy.random.Generator`` or ``None`` (not reproducible).
        y0: if given, rotate each (periodic) sequence to start at its sample closest to ``y0``
            (spectrum and scale unchanged): a memory starting from zero then sees no jump.
        dtype: floating-point dtype of the result (computed in float64, then cast).
        device: device of the result.

    Returns:
        Tensor of shape ``(n, length)``, or ``(length,)`` when ``n`` is None.

    Example: the white noise of a delay-decoding test, 15 Hz at dt = 1 ms, RMS 1::

        u = white_noise(2000, dt=1e-3, cutoff=15.0, rms=1.0, seed=0)
    """
    dtype = check_float_dtype(dtype)
    x = white_noise_np(
        1 if n is None else n, length, dt=dt, cutoff=cutoff, rms=rms, peak=peak, seed=seed, y0=y0
    )
    out = torch.from_numpy(x).to(dtype=dtype, device=device)
    return out[0] if n is None else out
