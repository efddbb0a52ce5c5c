"""benchmarks/table.py: the side-by-side table from raw bench.py and floors.py lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lines(path: Path, recs: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def _row(text: str, *start: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[: len(start)] == list(start):
            return cells
    raise AssertionError(f"no row {start} in\n{text}")


def test_table_pairs_each_row_with_its_lstm_and_median_floor(tmp_path):
    bench = _lines(tmp_path / "bench.jsonl", [
        {"workload": "matmul", "impl": "torch", "mode": "-", "phase": "-", "median_ms": 80.0,
         "gflops": 215.0},
        {"workload": "W1", "impl": "torchlmu", "mode": "parallel", "phase": "train", "median_ms": 200.0},
        {"workload": "W1", "impl": "torchlmu", "mode": "recurrent", "phase": "train", "median_ms": 350.0},
        {"workload": "W1", "impl": "lstm", "mode": "-", "phase": "train", "median_ms": 160.0},
        {"workload": "W4", "impl": "torchlmu", "mode": "step", "phase": "infer", "median_us": 18.0},
    ])  # fmt: skip
    floors = _lines(tmp_path / "floors.jsonl", [
        {"round": 0, "script": "floors.py", "workload": "W1", "phase": "train", "floor_ms": 150.0},
        {"round": 1, "script": "floors.py", "workload": "W1", "phase": "train", "floor_ms": 170.0},
        {"round": 2, "script": "floors.py", "workload": "W1", "phase": "train", "floor_ms": 500.0},
        {"round": 0, "script": "bench.py", "workload": "W1", "phase": "train", "median_ms": 1.0},
        {"summary": True, "workload": "W1", "phase": "train", "floor": [1.0]},
        {"workload": "W4", "phase": "infer", "floor_us": 12.0},
    ])  # fmt: skip
    out = subprocess.run(
        [sys.executable, "benchmarks/table.py", "--bench", bench, "--floors", floors],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert _row(out, "W1", "parallel", "train") == [
        "W1",
        "parallel",
        "train",
        "200 ms",
        "160 ms",
        "1.25",
        "170 ms",
        "1.18",
    ]  # fmt: skip  (the floor: median of 150, 170 and 500; bench.py's and summary lines skipped)
    # the recurrent mode has neither an LSTM pairing nor a modelled floor
    assert _row(out, "W1", "recurrent", "train")[3:] == ["350 ms", "", "", "", ""]
    assert _row(out, "W4", "step", "infer")[3:] == ["18.0 µs", "", "", "12.0 µs", "1.50"]
    assert _row(out, "matmul")[3] == "80.0 ms (215 GFLOP/s)"
    lines = out.splitlines()
    assert lines[2].startswith("| matmul") and lines[-1].startswith("| W4")


def test_table_fails_clearly_without_bench_records(tmp_path):
    empty = _lines(tmp_path / "empty.jsonl", [{"summary": True}])
    p = subprocess.run(
        [sys.executable, "benchmarks/table.py", "--bench", empty], cwd=ROOT, capture_output=True,
        text=True,
    )  # fmt: skip
    assert p.returncode == 1 and "no bench.py records" in p.stderr


def test_ab_trees_alternates_two_trees_and_summarises(tmp_path):
    """benchmarks/ab_trees.py with the same tree twice (W2 at bench.py's quick sizes): one
    record per tree, case and round, the trees' order reversed every other round, and a
    summary whose ratio is the medians' ratio."""
    src = str(ROOT / "src")
    out = subprocess.run(
        [sys.executable, "benchmarks/ab_trees.py", "--tree", f"base={src}", "--tree",
         f"new={src}", "--rounds", "2", "--threads", "1", "--quick",
         "--case", "W2", "torchlmu", "parallel", "infer"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    recs = [json.loads(s) for s in out.splitlines()]
    runs = [(r["round"], r["tree"]) for r in recs if not r.get("summary")]
    assert runs == [(0, "base"), (0, "new"), (1, "new"), (1, "base")]
    (summary,) = [r for r in recs if r.get("summary")]
    med = summary["median"]
    # the medians are printed to 3 decimals, the ratio from the unrounded ones
    assert summary["new_over_base"] == pytest.approx(med["new"] / med["base"], rel=2e-2)
    assert len(summary["times"]["base"]) == 2 and summary["unit"] == "ms"


def test_ab_trees_refuses_a_tree_without_the_package(tmp_path):
    p = subprocess.run(
        [sys.executable, "benchmarks/ab_trees.py", "--tree", f"a={tmp_path}", "--tree",
         f"b={ROOT / 'src'}", "--case", "W2", "torchlmu", "parallel", "infer"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 1 and "holds no torchlmu package" in p.stderr


def test_zoh_parts_times_each_variant():
    """benchmarks/zoh_parts.py at a small order: each variant timed each round, the savings
    derived from the medians."""
    out = subprocess.run(
        [sys.executable, "benchmarks/zoh_parts.py", "--orders", "600", "--rounds", "2",
         "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    (rec,) = [json.loads(s) for s in out.splitlines()]
    assert rec["order"] == 600 and rec["squarings"] >= 1
    assert rec["squarings_floor_s"] > 0 and set(rec["f64_gemm_gflops"]) == {"torch", "numpy"}
    assert all(len(v) == 2 for v in rec["seconds"].values()) and len(rec["seconds"]) == 3
    med = rec["median_s"]
    assert rec["taylor_saved_s"] == pytest.approx(
        med["neither (session 14)"] - med["column blocks"], abs=1e-3
    )


def test_step_parts_times_each_product_and_the_step():
    """benchmarks/step_parts.py at small sizes: each model's products through both engines and
    the step, each round; the derived step at NumPy's rate follows from the medians."""
    out = subprocess.run(
        [sys.executable, "benchmarks/step_parts.py", "--order", "16", "--hidden", "8",
         "--rounds", "2", "--steps", "50"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    recs = {r["model"]: r for r in map(json.loads, out.splitlines())}
    assert set(recs) == {"memory", "cell"}
    assert recs["memory"]["matrices"] == {"M_m": [17, 16]}
    assert recs["cell"]["matrices"] == {"M_m": [17, 16], "M_h": [25, 8]}  # [m, x] / [m, x, h]
    for r in recs.values():
        assert all(len(v) == 2 for v in r["us"].values())
        med = r["median_us"]
        assert set(r["gb_per_s"]) == set(med) - {"step"}
        assert r["step_at_numpy_rate_us"] == pytest.approx(
            med["step"] - r["products_torch_us"] + r["products_numpy_us"], abs=2e-3
        )
