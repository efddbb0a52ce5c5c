"""Input validation shared by the modules: every error names the parameter, expected and received.

Every check takes the parameter's name first, then the value, then what it is checked against."""

from __future__ import annotations

import torch
from torch import Tensor

from ._tracing import tracing
from .exceptions import DTypeError, ValidationError


def check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(name, f"an integer >= {minimum}", repr(value))
    return value


def check_choice(name: str, value: object, choices: tuple) -> str:
    if value not in choices:
        raise ValidationError(name, f"one of {choices}", repr(value))
    return value  # type: ignore[return-value]


def check_tensor(name: str, x: object, dtype: torch.dtype) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValidationError(name, "a torch.Tensor", type(x).__name__)
    if x.dtype != dtype:
        raise DTypeError(name, f"dtype {dtype} (the module's)", f"dtype {x.dtype}")
    return x


def prepare_sequence(
    name: str, x: object, input_size: int, batch_first: bool, dtype: torch.dtype
) -> tuple[Tensor, bool]:
    """Return ``x`` as ``(T, B, input_size)`` and whether it was batched.

    Accepted: ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``) or unbatched ``(T, I)``.
    """
    x = check_tensor(name, x, dtype)
    if x.dim() not in (2, 3) or x.shape[-1] != input_size:
        layout = "(B, T, I)" if batch_first else "(T, B, I)"
        raise ValidationError(
            name, f"shape {layout} or (T, I) with I = input_size = {input_size}", tuple(x.shape)
        )
    if not tracing() and x.shape[0 if x.dim() == 2 or not batch_first else 1] == 0:
        raise ValidationError(name, "at least one time step", tuple(x.shape))
    if x.dim() == 2:
        return x.unsqueeze(1), False
    return (x.transpose(0, 1) if batch_first else x), True


def prepare_lengths(
    name: str, lengths: object, T: int, B: int, device: torch.device
) -> Tensor | None:
    """Validate ``lengths``: ``(B,)`` integers in [1, T] (a list or a tensor); None passes.

    Values are checked when the lengths are on the CPU (as nn.utils.rnn's are) and the call is
    eager; on a GPU or inside a compiled graph that would synchronise, so they are trusted."""
    if lengths is None:
        return None
    lt = torch.as_tensor(lengths)
    if lt.dtype.is_floating_point or lt.dtype == torch.bool or lt.is_complex():
        raise DTypeError(name, "an integer tensor or list", f"dtype {lt.dtype}")
    lt = lt.reshape(-1) if lt.dim() == 0 else lt
    if lt.shape != (B,):
        raise ValidationError(name, f"shape ({B},) (one length per sequence)", tuple(lt.shape))
    if lt.device.type == "cpu" and not tracing():
        if bool((lt < 1).any()) or bool((lt > T).any()):
            raise ValidationError(name, f"values in [1, {T}]", lt.tolist())
    return lt.to(device=device, dtype=torch.long)


def check_input_step(name: str, x: object, input_size: int, dtype: torch.dtype) -> Tensor:
    """One step's input: ``(B, input_size)`` or unbatched ``(input_size,)``."""
    x = check_tensor(name, x, dtype)
    if x.dim() not in (1, 2) or x.shape[-1] != input_size:
        raise ValidationError(name, f"shape (B, {input_size}) or ({input_size},)", tuple(x.shape))
    return x


def check_state_tensor(name: str, s: object, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    s = check_tensor(name, s, dtype)
    if tuple(s.shape) != shape:
        raise ValidationError(name, f"shape {shape}", tuple(s.shape))
    return s


def check_fraction(name: str, value: object) -> float:
    """A dropout rate: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValidationError(name, "a number in [0, 1)", repr(value))
    return float(value)
