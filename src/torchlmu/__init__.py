"""torchlmu: Legendre Memory Units for PyTorch."""

from . import data, hidden, legendre, ops, runtime
from .exceptions import (
    CostWarning,
    DTypeError,
    LMUWarning,
    ModeError,
    TorchLMUError,
    UnstableDiscretizationWarning,
    ValidationError,
)
from .lmu import LMU, LMUCell, LMUState, LMUStepper
from .memory import LegendreMemory

__version__ = "0.1.0"

__all__ = [
    "LMU",
    "CostWarning",
    "DTypeError",
    "LMUCell",
    "LMUState",
    "LMUStepper",
    "LMUWarning",
    "LegendreMemory",
    "ModeError",
    "TorchLMUError",
    "UnstableDiscretizationWarning",
    "ValidationError",
    "data",
    "hidden",
    "legendre",
    "ops",
    "runtime",
]
