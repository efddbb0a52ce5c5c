"""Normalised root-mean-square error (NRMSE) in the conventions found in the literature.

The literature on Mackey-Glass and other forecasting benchmarks normalises the RMSE in three
different ways, and the numbers are not comparable across them, so :func:`nrmse` takes the
convention as a required keyword argument:

* ``"rms"``:   RMSE / sqrt(mean(target²))     — the LMU paper's convention (Voelker et al. 2019);
* ``"std"``:   RMSE / std(target)              — population standard deviation (ddof = 0);
                                                 1.0 equals predicting the target's mean;
* ``"range"``: RMSE / (max(target) − min(target)).

For a zero-mean target (such as the LMU paper's Mackey-Glass series with its mean removed)
"rms" and "std" agree. All statistics are taken over every element of ``target``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..exceptions import ValidationError

__all__ = ["NRMSE_CONVENTIONS", "nrmse"]

#: The accepted values of :func:`nrmse`'s ``convention``.
NRMSE_CONVENTIONS = ("rms", "std", "range")


def _as_tensor(x: object, name: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, (np.ndarray, list, tuple, float, int)):
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    else:
        raise ValidationError(name, "a tensor or array of numbers", type(x).__name__)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.numel() == 0:
        raise ValidationError(name, "a non-empty tensor", f"shape {tuple(t.shape)}")
    return t


def nrmse(
    prediction: Tensor, target: Tensor, *, convention: Literal["rms", "std", "range"]
) -> Tensor:
    """Normalised RMSE of ``prediction`` against ``target`` (same shape, any shape).

    Args:
        prediction: predicted values, shape ``S``.
        target: true values, shape ``S``.
        convention: required, one of ``"rms"`` (RMSE / RMS(target), the LMU paper's),
            ``"std"`` (RMSE / std(target)) or ``"range"`` (RMSE / (max − min)).

    Returns:
        A 0-d tensor (differentiable in ``prediction``), in the floating dtype of the inputs.
    """
    if convention not in NRMSE_CONVENTIONS:
        raise ValidationError("convention", f"one of {NRMSE_CONVENTIONS}", repr(convention))
    p = _as_tensor(prediction, "prediction")
    y = _as_tensor(target, "target")
    if p.shape != y.shape:
        raise ValidationError(
            "prediction", f"the shape of target {tuple(y.shape)}", f"shape {tuple(p.shape)}"
        )
    dtype = torch.promote_types(p.dtype, y.dtype)
    p, y = p.to(dtype), y.to(dtype)
    rmse = torch.sqrt(torch.mean((p - y) ** 2))
    with torch.no_grad():
        if convention == "rms":
            scale = torch.sqrt(torch.mean(y**2))
        elif convention == "std":
            scale = torch.sqrt(torch.mean((y - y.mean()) ** 2))
        else:
            scale = y.max() - y.min()
    if not bool(scale > 0):
        raise ValidationError(
            "target",
            f"a target whose normaliser for convention {convention!r} is > 0",
            f"{float(scale)!r}",
            hint="a constant (or all-zero) target has no scale",
        )
    return rmse / scale
