"""benchmarks/table.py: the side-by-side table from raw bench.py and floors.py lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
