"""Exceptions and warnings raised by torchlmu.

Every error about bad input names the parameter, what was expected and what was received,
so that the message alone tells the user what to change.
"""

from __future__ import annotations

from typing import Any


class TorchLMUError(Exception):
    """Base class of every error torchlmu raises on purpose."""


class ValidationError(TorchLMUError, ValueError):
    """A parameter or input has a bad value or shape.

    Attributes ``param``, ``expected`` and ``received`` hold the pieces of the message.
    """

    def __init__(self, param: str, expected: Any, received: Any, hint: str | None = None):
        self.param = param
        self.expected = expected
        self.received = received
        msg = f"{param}: expected {expected}, received {received}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class DTypeError(ValidationError, TypeError):
    """A tensor has the wrong dtype."""


class ModeError(TorchLMUError, ValueError):
    """A computation mode was requested that the configuration does not allow."""


class LMUWarning(UserWarning):
    """Base class of torchlmu's warnings."""


class UnstableDiscretizationWarning(LMUWarning, RuntimeWarning):
    """The discretised memory has a spectral radius > 1: its state grows without bound."""


class CostWarning(LMUWarning, RuntimeWarning):
    """A configuration whose cost grows steeply with its size (a large order with a method
    that scales badly there); the message gives the expected cost and the cheaper choice."""
