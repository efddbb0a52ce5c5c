"""How this torchlmu is installed: version, install kind, source checkout (for provenance).

The version has one source, ``torchlmu.__version__`` (pyproject.toml reads it at build time).
The install kind says where the imported code comes from:

- ``"wheel"``: an installed distribution whose files hold the imported package (``pip install
  .`` or a wheel); no git commit is recorded, the version identifies the code.
- ``"editable"``: ``pip install -e``; the package is the checkout's ``src/torchlmu``.
- ``"source"``: imported from a checkout's ``src`` without being installed from it (e.g.
  ``PYTHONPATH=src``, or another checkout than the editable install's).
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def source_root() -> Path | None:
    """The checkout this package is imported from (the folder of ``pyproject.toml`` above
    ``src/torchlmu``), or None for an installed copy (a wheel in site-packages)."""
    root = _PACKAGE.parents[1]
    if _PACKAGE.parent.name == "src" and (root / "pyproject.toml").is_file():
        return root
    return None


@functools.lru_cache(maxsize=1)
def install_kind() -> str:
    """``"wheel"``, ``"editable"`` or ``"source"`` (see the module's docstring).

    Decided by where the imported package lies, then by the installed distributions: a
    checkout's ``src/torchlmu`` is never a wheel, even where a build left a
    ``src/torchlmu.egg-info`` beside it (``pip install -e`` does: on ``PYTHONPATH=src`` that
    metadata is found first and would pass for an installed distribution)."""
    root = source_root()
    dists = list(metadata.distributions(name="torchlmu"))
    if root is None:  # imported from an installed copy
        for dist in dists:
            installed = Path(str(dist.locate_file("torchlmu/__init__.py"))).resolve()
            if installed == (_PACKAGE / "__init__.py"):
                return "wheel"
        return "source"
    for dist in dists:
        try:
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        except json.JSONDecodeError:
            continue
        url = direct.get("url", "")
        if direct.get("dir_info", {}).get("editable") and url.startswith("file://"):
            # the editable install's project is the checkout imported here
            if Path(url[len("file://") :]).resolve() == root.resolve():
                return "editable"
    return "source"


def describe() -> str:
    """One line for ``torchlmu --version``: version, install kind and where the code is."""
    from . import __version__

    return f"torchlmu {__version__} ({install_kind()} install, {_PACKAGE})"
