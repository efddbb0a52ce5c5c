"""The tutorials' code runs as tests: each script under docs/tutorials is run as a user would
(a fresh interpreter, the repository root as the working directory)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))
DATA = ROOT.parent / "shared" / "data"  # MNIST beside the repository (this project's machines)
NEEDS = {"psmnist.py": "mnist", "spiking.py": "nengo", "streaming.py": "onnxruntime"}


def test_every_tutorial_page_includes_its_script():
    pages = {p.stem: p.read_text() for p in (ROOT / "docs" / "tutorials").glob("*.md")}
    for script in TUTORIALS:
        assert f"{{literalinclude}} {script.name}" in pages.get(script.stem, ""), script.name


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    need = NEEDS.get(script.name)
    if need == "mnist":
        data = Path(os.environ.get("TORCHLMU_DATA", DATA))
        if not (data / "mnist" / "train-images-idx3-ubyte.gz").exists():
            pytest.skip(f"MNIST not found under {data} (set TORCHLMU_DATA)")
        env["TORCHLMU_DATA"] = str(data)
    elif need and importlib.util.find_spec(need) is None:
        pytest.skip(f"{need} is not installed")
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
