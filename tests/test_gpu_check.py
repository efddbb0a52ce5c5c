"""benchmarks/gpu_check.sh's own logic on a CPU (its steps need a GPU): the deadline cuts a
step, skips what no longer fits, and the bundle is packed on every exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout"
)


def _check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[dict], Path]:
    # every Python the script starts is this stand-in: it names its arguments and whether the
    # Triton scan is on, and fails where they hold FAKE_FAIL_ON, sleeps where FAKE_SLOW
    tmp_path.mkdir(parents=True, exist_ok=True)
    fake = tmp_path / "py"
    fake.write_text(
        '#!/bin/sh\necho "py $* triton=$TORCHLMU_TRITON_SCAN form=$TORCHLMU_TRITON_FORM'
        ' cols=$TORCHLMU_TRITON_COLS data=$TORCHLMU_DATA"\n'
        'case "$*" in *pick_triton_setting*) printf "%b" "${FAKE_PICK:-}";; esac\n'
        'case "$*" in *"${FAKE_FAIL_ON:-@none@}"*) exit 1;; esac\n'
        'case "$*" in *"${FAKE_SLOW:-@none@}"*) sleep 60;; esac\n'
    )
    fake.chmod(0o755)
    out, bundle = tmp_path / "out", tmp_path / "check.tar.gz"
    # only what the script needs: an outer TESTS=0 or DEADLINE_SECONDS must not leak in
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    full = {**base, "PY": str(fake), "OUT": str(out), "BUNDLE": str(bundle), **env}
    p = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=full, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    steps = [json.loads(s) for s in (out / "steps.jsonl").read_text().splitlines()]
    return p, steps, bundle


def test_every_step_runs_in_order_within_the_deadline(tmp_path):
    p, steps, bundle = _check(tmp_path, TRITON_SCAN="1")
    assert p.returncode == 0, p.stderr
    names = [s["step"] for s in steps]
    assert names == [
        "info", "guard", "guard-cols", "triton-sweep", "psmnist", "bench", "bench-w5-triton",
        "large-order", "tests", "tests-triton", "carry-ab", "chunk-sweep", "floors",
    ]  # fmt: skip
    assert all(s["rc"] == 0 for s in steps)
    by = {s["step"]: s for s in steps}
    assert by["psmnist"]["limit_s"] == 180 and by["floors"]["limit_s"] == 120  # their caps
    assert by["bench"]["limit_s"] <= 560 - 10  # the deadline less the bundle's reserve
    with tarfile.open(bundle) as t:
        assert {"./steps.jsonl", "./psmnist.log", "./bench-cuda.jsonl"} <= set(t.getnames())
    assert "reproduce psmnist --device cuda" in (tmp_path / "out/psmnist.log").read_text()
    assert "triton=1 form=cols" in (tmp_path / "out/psmnist.log").read_text()
    # every other step measures and tests the step loops; W5 again on the kernels
    assert "triton=0" in (tmp_path / "out/bench-cuda.jsonl").read_text()
    assert "triton=1" in (tmp_path / "out/bench-cuda-W5-triton.jsonl").read_text()
    assert "triton=1" not in (tmp_path / "out/tests.log").read_text()


def test_the_deadline_cuts_a_step_and_skips_the_rest_and_still_bundles(tmp_path):
    _, steps, bundle = _check(
        tmp_path,
        TRITON_SCAN="0",
        FAKE_SLOW="reproduce",
        DEADLINE_SECONDS="14",
        MIN_STEP_SECONDS="2",
    )
    by = {s["step"]: s for s in steps}
    # psmnist gets what is left of 14 s less the 10 s reserve and is killed at it
    assert by["psmnist"]["rc"] == 137 and by["psmnist"]["limit_s"] <= 4
    assert by["psmnist"]["seconds"] <= 6
    assert "skipped" in by["bench"] and "skipped" in by["floors"]
    assert "guard" not in by  # TRITON_SCAN=0
    assert tarfile.is_tarfile(bundle)


def test_a_failed_guard_runs_psmnist_without_the_kernels(tmp_path):
    _, steps, _ = _check(
        tmp_path, TRITON_SCAN="1", TESTS="0", SWEEPS="0", FLOORS_SECONDS="0",
        FAKE_FAIL_ON="-k test_scan_and_gradients_through_the_kernels",
    )  # fmt: skip
    by = {s["step"]: s for s in steps}
    assert by["guard"]["rc"] == 1 and by["psmnist"]["rc"] == 0
    assert "triton=0" in (tmp_path / "out/psmnist.log").read_text()
    assert "bench-w5-triton" not in by and "bench" in by
    assert "guard-cols" not in by and "triton-sweep" not in by


def test_a_failed_column_guard_runs_psmnist_on_the_row_form(tmp_path):
    _, steps, _ = _check(
        tmp_path, TRITON_SCAN="1", TESTS="0", SWEEPS="0", FLOORS_SECONDS="0", BENCH="0",
        FAKE_FAIL_ON="through_the_column_kernels",
    )  # fmt: skip
    by = {s["step"]: s for s in steps}
    assert by["guard"]["rc"] == 0 and by["guard-cols"]["rc"] == 1
    assert "triton=1 form=rows" in (tmp_path / "out/psmnist.log").read_text()


def test_the_runs_on_the_kernels_take_the_sweeps_pick(tmp_path):
    pick = 'TORCHLMU_TRITON_FORM=cols\\nTORCHLMU_TRITON_COLS={"forward": {"P": 8}}\\n'
    _check(tmp_path, TRITON_SCAN="1", TESTS="0", SWEEPS="0", FLOORS_SECONDS="0", FAKE_PICK=pick)
    want = 'triton=1 form=cols cols={"forward": {"P": 8}}'
    assert want in (tmp_path / "out/psmnist.log").read_text()
    assert want in (tmp_path / "out/bench-cuda-W5-triton.jsonl").read_text()
    assert "--forms rows cols" in (tmp_path / "out/triton-pick.txt").read_text()
    # the row form picked: no column setting; a failed column guard keeps cols out of the pick
    _check(
        tmp_path / "b", TRITON_SCAN="1", TESTS="0", SWEEPS="0", FLOORS_SECONDS="0", BENCH="0",
        FAKE_PICK="TORCHLMU_TRITON_FORM=rows\\n", FAKE_FAIL_ON="through_the_column_kernels",
    )  # fmt: skip
    assert "triton=1 form=rows cols= " in (tmp_path / "b/out/psmnist.log").read_text()
    assert "--forms rows triton" in (tmp_path / "b/out/triton-pick.txt").read_text()
    # nothing picked: the guards decide, as without a sweep
    _check(tmp_path / "c", TRITON_SCAN="1", TESTS="0", SWEEPS="0", FLOORS_SECONDS="0", BENCH="0")
    assert "triton=1 form=cols cols= " in (tmp_path / "c/out/psmnist.log").read_text()


def test_a_cap_below_the_minimum_still_runs_the_step(tmp_path):
    """MIN_STEP_SECONDS guards what is left of the deadline, not a step's own shorter cap."""
    _, steps, _ = _check(
        tmp_path, TRITON_SCAN="0", PSMNIST_SECONDS="3", FAKE_SLOW="reproduce", BENCH="0",
        TESTS="0", SWEEPS="0", FLOORS_SECONDS="0",
    )  # fmt: skip
    by = {s["step"]: s for s in steps}
    assert by["psmnist"]["limit_s"] == 3 and by["psmnist"]["rc"] == 137


# Each Python command the script starts, run up to its argument parser and stopped there: a
# flag renamed in a benchmark or the command line must fail here, not on a lent GPU.
_PARSE_ONLY = r"""
import argparse, json, os, runpy, sys

class Parsed(BaseException):
    pass

_parse = argparse.ArgumentParser.parse_args

def parse_then_stop(self, args=None, namespace=None):
    _parse(self, args, namespace)
    raise Parsed

argparse.ArgumentParser.parse_args = parse_then_stop
result = {}
for line in sys.stdin.read().splitlines():
    argv = line.split()
    sys.argv = argv[1:] if argv[0] == "-m" else argv
    try:
        if argv[0] == "-m":
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:  # as `python script.py` does, the script's folder first on the path
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
        result[line] = "ran past its parser"
    except Parsed:
        result[line] = "parsed"
    except SystemExit as e:
        result[line] = f"exit {e.code}"
    except Exception as e:
        result[line] = repr(e)
print(json.dumps(result))
"""


def test_every_command_the_check_starts_parses(tmp_path):
    _, steps, _ = _check(tmp_path, TRITON_SCAN="1", PROBE_SECONDS="30", DEEP_SECONDS="30")
    assert {"probe", "deep"} <= {s["step"] for s in steps}
    commands = []
    for log in sorted((tmp_path / "out").glob("*.*")):
        for line in log.read_text().splitlines():
            if line.startswith("py ") and " -c " not in line:
                commands.append(line[3:].rsplit(" triton=", 1)[0])
    # (cuda_graph_probe.py takes no arguments and has no parser)
    scripts = [c for c in commands if c.split()[:2] != ["-m", "pytest"] and "probe" not in c]
    assert len(scripts) == 10 and any(c.startswith("-m torchlmu reproduce") for c in scripts)
    p = subprocess.run(
        [sys.executable, "-c", _PARSE_ONLY], input="\n".join(scripts), cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout.splitlines()[-1])
    assert result == dict.fromkeys(scripts, "parsed"), p.stderr[-2000:]
    # the pytest steps select tests (the guard's -k names one that exists)
    for c in (c for c in commands if c.startswith("-m pytest")):
        args = [a for a in c.split()[2:] if a not in ("-n", "8")]  # xdist's, where installed
        q = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", *args], cwd=ROOT,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        selected = [t for t in q.stdout.splitlines() if "::" in t]
        assert q.returncode == 0 and selected, (c, q.stdout[-1500:])
        if "-k" in args:
            assert all(args[args.index("-k") + 1] in t for t in selected)


def test_mnist_from_the_carried_folder_unless_torchlmu_data_says(tmp_path):
    data = tmp_path / "gpu-data"
    (data / "mnist").mkdir(parents=True)
    quick = {"TRITON_SCAN": "0", "BENCH": "0", "TESTS": "0", "SWEEPS": "0", "FLOORS_SECONDS": "0"}
    _check(tmp_path, GPU_DATA=str(data), **quick)
    assert f"data={data}\n" in (tmp_path / "out/psmnist.log").read_text()
    _check(tmp_path / "b", GPU_DATA=str(data), TORCHLMU_DATA="/elsewhere", **quick)
    assert "data=/elsewhere\n" in (tmp_path / "b/out/psmnist.log").read_text()
    _check(tmp_path / "c", GPU_DATA=str(tmp_path / "none"), **quick)  # no folder: not set
    assert "data=\n" in (tmp_path / "c/out/psmnist.log").read_text()
