"""The paper's experiments, run by ``torchlmu reproduce NAME``; the harness they share.

Each experiment module defines ``NAME``, ``TITLE``, a ``Config`` dataclass (the paper's settings
as defaults, ``Config().quick()`` the small version), ``run(cfg, ctx) -> results`` (which writes
``results.json`` and figures into ``ctx.out``) and ``report_section(results) -> markdown``.
Modules are imported only when used, so optional dependencies stay optional.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS: dict[str, str] = {
    "capacity": "torchlmu.experiments.capacity",
    "mackey-glass": "torchlmu.experiments.mackey_glass",
    "spiking": "torchlmu.experiments.spiking",
    "psmnist": "torchlmu.experiments.psmnist",
    "psmnist-parallel": "torchlmu.experiments.psmnist_parallel",
    "deep-psmnist": "torchlmu.experiments.deep_psmnist",
    "deep-smnist": "torchlmu.experiments.deep_smnist",
    "deep-sfmnist": "torchlmu.experiments.deep_sfmnist",
}


def get(name: str) -> ModuleType:
    """The experiment module called ``name``."""
    from ..exceptions import ValidationError

    if name not in EXPERIMENTS:
        raise ValidationError("experiment", f"one of {sorted(EXPERIMENTS)}", repr(name))
    return importlib.import_module(EXPERIMENTS[name])


__all__ = ["EXPERIMENTS", "get"]
