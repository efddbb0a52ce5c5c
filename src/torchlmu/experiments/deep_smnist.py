"""Sequential MNIST (pixels in raster order, no permutation) with a deep LMU network: the
experiment of :mod:`.deep_psmnist` with ``permute=False`` (issue 19's goal: test >= 99.5 %)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import deep_psmnist
from .harness import RunContext

NAME = "deep-smnist"
preflight = deep_psmnist.preflight
TITLE = "Sequential MNIST (deep LMU network)"
PAPER = {"test_acc": 99.5, "params": None}  # issue 19's goal, not a published result


@dataclass
class Config(deep_psmnist.Config):
    permute: bool = False


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    return deep_psmnist.run(cfg, ctx, NAME, TITLE)


def table(results: dict[str, Any]) -> str:
    return deep_psmnist.table(results, references=[])


def report_section(results: dict[str, Any], prefix: str = "") -> str:
    return deep_psmnist.report_section(results, prefix, TITLE, references=[])
