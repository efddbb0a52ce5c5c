"""One device's side-by-side table (markdown) from raw benchmark files: torchlmu, nn.LSTM of
equal size, the kernel floor, and their ratios, each row a median from the files given.

    python benchmarks/table.py --bench bench.jsonl --floors floors.jsonl [floors2.jsonl ...]

``--bench``: ``bench.py``'s JSON lines (one run). ``--floors`` (optional): ``floors.py``'s
lines or ``floor_ratios.py``'s output (its floors.py records; summaries are skipped); several
rounds give each floor as their median. A floor exists for the (workload, mode, phase) that
``floor_ratios.MEASURED`` models; the ratio to it is only meaningful for floors measured in
the same sitting as the bench run, so give files from one sitting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor_ratios import MEASURED  # the workloads floors.py models

FLOORED = {(w, m, p) for w, _, m, p in MEASURED}
ORDER = ["matmul", "W1", "W2", "W3", "W4", "W5", "W6"]


def _read(paths: list[str]) -> list[dict]:
    recs = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{"):
                recs.append(json.loads(line))
    return recs


def _time(rec: dict) -> tuple[float, str] | None:
    for key, unit in (("median_ms", "ms"), ("median_us", "µs")):
        if key in rec:
            return rec[key], unit
    return None


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}" if v < 10 else f"{v:.1f}"


def floors_by_key(recs: list[dict]) -> dict[tuple[str, str], float]:
    """(workload, phase) → median floor over the records (floors.py's, or floor_ratios.py's
    floors.py rounds), in the unit bench.py reports it (ms; µs for W4)."""
    vals: dict[tuple[str, str], list[float]] = {}
    for r in recs:
        if r.get("summary") or r.get("script", "floors.py") != "floors.py":
            continue
        v = r.get("floor_ms", r.get("floor_us"))
        if v is not None and "workload" in r:
            vals.setdefault((r["workload"], r["phase"]), []).append(v)
    return {k: statistics.median(v) for k, v in vals.items()}


def table(bench: list[dict], floors: dict[tuple[str, str], float]) -> str:
    """The markdown table: one row per torchlmu (workload, mode, phase) of the bench run, the
    matmul reference first and ONNX Runtime's rows (W6) against eager."""
    head = (
        "| workload | mode | phase | torchlmu | nn.LSTM, equal size | torchlmu / LSTM "
        "| kernel floor | torchlmu / floor |\n|---|---|---|---|---|---|---|---|"
    )
    lstm = {(r["workload"], r["phase"]): r for r in bench if r.get("impl") == "lstm"}
    eager = {(r["workload"], r["mode"]): r for r in bench if r.get("impl") == "eager"}
    rows = []
    for r in sorted(
        bench, key=lambda r: ORDER.index(r["workload"]) if r["workload"] in ORDER else 99
    ):
        t = _time(r)
        if t is None or r.get("impl") in ("lstm", "eager"):
            continue
        v, unit = t
        w, mode, phase = r["workload"], r.get("mode", "-"), r.get("phase", "-")
        cells = [f"{_fmt(v)} {unit}", "", "", "", ""]
        if w == "matmul":
            cells[0] += f" ({r['gflops']:,.0f} GFLOP/s)" if "gflops" in r else ""
        if (w, phase) in lstm and mode == "parallel" and (lt := _time(lstm[(w, phase)])):
            cells[1], cells[2] = f"{_fmt(lt[0])} {lt[1]}", f"{v / lt[0]:.2f}"
        if (w, mode, phase) in FLOORED and (w, phase) in floors:
            f = floors[(w, phase)]
            cells[3], cells[4] = f"{_fmt(f)} {unit}", f"{v / f:.2f}"
        if r.get("impl") == "onnxruntime" and (e := eager.get((w, mode))) and (et := _time(e)):
            cells[0] += f" (eager {_fmt(et[0])} {et[1]})"
            mode = f"{mode}, ONNX Runtime"
        rows.append(f"| {w} | {mode} | {phase} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bench", required=True, help="bench.py's JSON lines")
    ap.add_argument("--floors", nargs="*", default=[], help="floors.py / floor_ratios.py lines")
    args = ap.parse_args()
    bench = [r for r in _read([args.bench]) if "workload" in r and not r.get("summary")]
    if not bench:
        sys.exit(f"table.py: no bench.py records in {args.bench}")
    print(table(bench, floors_by_key(_read(args.floors))))


if __name__ == "__main__":
    main()
