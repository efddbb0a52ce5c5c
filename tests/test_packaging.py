"""Packaging: the wheel installs and runs outside the source tree; every extra installs what its
commands import; one version."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from torchlmu.cli import ABOUT
from torchlmu.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
PACKAGE = ROOT / "src" / "torchlmu"
CORE = {"torch", "numpy"}  # pyproject's dependencies
# imported under try/except ImportError, never required: tqdm's progress bars; Triton's
# kernels (a CUDA fast path that torch's CUDA builds bring along)
OPTIONAL_NICETIES = {"tqdm", "triton"}


def _extras() -> dict[str, set[str]]:
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    split = "<>=!~;[ "
    name = lambda req: next((req[:i] for i, c in enumerate(req) if c in split), req)  # noqa: E731
    return {k: {name(r) for r in v} for k, v in meta["optional-dependencies"].items()}


def _third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level names of the non-standard packages a torchlmu module imports (at any depth
    of its code, functions included), following its imports of other torchlmu modules."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: a torchlmu module
                base = parts if path.name == "__init__.py" else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ["torchlmu", *base, *(node.module.split(".") if node.module else [])]
                sub = [".".join([*target, a.name]) for a in node.names]
                for m in [".".join(target), *sub]:
                    p = PACKAGE.joinpath(*m.split(".")[1:])
                    if p.with_suffix(".py").is_file() or (p / "__init__.py").is_file():
                        found |= _third_party_imports(m, seen)
                continue
            names = [node.module or ""]
        for n in names:
            top = n.split(".")[0]
            if top and top not in sys.stdlib_module_names and top != "torchlmu":
                found.add(top)
    return found


def test_every_extra_installs_what_its_commands_import():
    extras = _extras()
    # the demo runs the capacity experiment
    for name, module in {"demo": EXPERIMENTS["capacity"], **EXPERIMENTS}.items():
        about = ABOUT[name]
        needed = _third_party_imports(module) - CORE - OPTIONAL_NICETIES
        assert needed <= set(about.modules), (name, needed - set(about.modules))
        assert set(about.modules) <= extras[about.extra], (name, about.extra)
        assert set(about.modules) <= extras["test"]  # and the test suite has them all
    # the check finds what it must: the spiking experiment's Nengo and SciPy
    assert {"nengo", "scipy", "threadpoolctl"} <= _third_party_imports(EXPERIMENTS["spiking"])


def test_the_version_has_one_source():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'attr = "torchlmu.__version__"' in text
    assert "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_there(tmp_path):
    """tools/wheel_check.py: sdist and wheel built, the wheel installed (not editable) into a
    fresh venv, torchlmu imported from there, --version, demo and reproduce psmnist --quick run
    outside the repository; provenance says wheel (about a minute)."""
    cmd = [sys.executable, str(ROOT / "tools" / "wheel_check.py"), str(tmp_path)]
    if (MNIST / "t10k-labels-idx1-ubyte.gz").exists():
        cmd += ["--mnist", str(MNIST)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode == 3:
        pytest.skip(f"the wheel cannot be built here: {p.stdout.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "all steps passed" in p.stdout and '"install": "wheel"' in p.stdout
