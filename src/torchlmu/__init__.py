"""torchlmu: Legendre Memory Units for PyTorch."""

from . import data, legendre, ops, runtime
from .exceptions import (
    DTypeError,
    LMUWarning,
    ModeError,
    TorchLMUError,
    UnstableDiscretizationWarning,
    ValidationError,
)
from .lmu import LMU, LMUCell, LMUState
from .memory import LegendreMemory

__version__ = "0.1.0"

__all__ = [
    "LMU",
    "DTypeError",
    "LMUCell",
    "LMUState",
    "LMUWarning",
    "LegendreMemory",
    "ModeError",
    "TorchLMUError",
    "UnstableDiscretizationWarning",
    "ValidationError",
    "data",
    "legendre",
    "ops",
    "runtime",
]
