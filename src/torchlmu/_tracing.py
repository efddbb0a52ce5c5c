"""Whether code runs inside torch.compile or torch.export: the one test every layer uses to keep
memos untouched, lengths symbolic and host reads out of a traced graph."""

from __future__ import annotations

import torch


def tracing() -> bool:
    """True inside torch.compile (dynamo) or torch.export."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()
