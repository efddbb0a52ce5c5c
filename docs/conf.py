"""Sphinx configuration of the torchlmu documentation (built strict in CI: warnings fail).

sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

import torchlmu

project = "torchlmu"
author = "torchlmu developers"
copyright = "2026, torchlmu developers"
release = version = torchlmu.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' Google-style Args/Returns/Raises sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",  # narrative pages in Markdown
]
myst_enable_extensions = ["dollarmath", "amsmath"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials/*.py"]
# narrative pages link to the repository's files (results/, benchmarks/) by relative paths
suppress_warnings = ["myst.xref_missing"]

autodoc_member_order = "bysource"
try:  # torchlmu.triton_scan's page: Triton is a test extra (and comes with torch's CUDA builds)
    import triton  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["triton"]
autodoc_typehints = "description"  # types beside each argument, not in a long signature
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# no intersphinx: CI builds offline (only package registries are reachable)

# MathJax comes from its CDN by default; for reading offline point TORCHLMU_MATHJAX at a local
# MathJax 2 (e.g. Debian's libjs-mathjax: /usr/share/javascript/mathjax/MathJax.js).
if os.environ.get("TORCHLMU_MATHJAX"):
    mathjax_path = "file://" + os.environ["TORCHLMU_MATHJAX"] + "?config=TeX-AMS-MML_HTMLorMML"
    myst_update_mathjax = False  # its MathJax 3 settings would stop MathJax 2 from loading
    mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]}}
autodoc_typehints_description_target = "documented_params"  # no bare "name (type)" entries

html_theme = "furo"
html_title = f"torchlmu {release}"
html_static_path: list[str] = []
