"""Sequential MNIST (pixels in raster order, no permutation) with a deep LMU network: the
experiment of :mod:`.deep_psmnist` with ``permute=False`` (issue 19's goal: test >= 99.5 %)."""

from __future__ import annotations

from dataclasses import dataclass

from . import deep_psmnist

NAME = "deep-smnist"
preflight = deep_psmnist.preflight
PARALLEL_PIECES = deep_psmnist.PARALLEL_PIECES
TITLE = "Sequential MNIST (deep LMU network)"
PAPER = {"test_acc": 99.5, "params": None}  # issue 19's goal, not a published result


@dataclass
class Config(deep_psmnist.Config):
    permute: bool = False


run, table, report_section = deep_psmnist.variant(NAME, TITLE, PAPER)
