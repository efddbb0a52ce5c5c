"""Each CPU workload's time against its kernel floor, measured in one sitting.

Alternates ``floors.py`` and the matching ``bench.py`` measurements for a few rounds (this
machine's speed drifts within the hour, so both see the same drift), prints every raw record
(tagged with its round) and then one summary line per workload and phase:

    {"summary": true, "workload": "W1", "phase": "train", "ratio_median": ..., "ratios": [...],
     "torchlmu_ms": [...], "floor_ms": [...], ...}

A ratio is torchlmu's median over the same round's floor (the performance issue's goal: every
workload within 1.25x). W4 is in µs.

    python benchmarks/floor_ratios.py --threads 2 --rounds 3 > benchmarks/results/floor-ratios.jsonl
    python benchmarks/floor_ratios.py --device cuda --threads 1 --rounds 2   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# bench.py's (workload, impl, mode, phase) whose algorithm floors.py models
MEASURED = [
    ("W1", "torchlmu", "parallel", "train"),
    ("W1", "torchlmu", "parallel", "infer"),
    ("W2", "torchlmu", "parallel", "train"),
    ("W2", "torchlmu", "parallel", "infer"),
    ("W4", "torchlmu", "step", "infer"),
    ("W5", "torchlmu", "recurrent", "train"),
    ("W5", "torchlmu", "recurrent", "infer"),
]


def _run(args: list[str]) -> list[dict]:
    p = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def _after_gemm(ts: list[float], fs: list[float] | None) -> dict:
    """Ratios against floors.py's ``floor_after_gemm_ms`` (W2's training floor with its two
    passes over the states timed after the GEMM before them, as the step runs them)."""
    if not fs:
        return {}
    ratios = [a / b for a, b in zip(ts, fs, strict=False)]
    return {
        "floor_after_gemm": [round(v, 3) for v in fs],
        "ratios_after_gemm": [round(v, 3) for v in ratios],
        "ratio_after_gemm_median": round(statistics.median(ratios), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="bench.py's small sizes (a smoke test)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    t = ["--threads", str(args.threads), "--device", args.device]
    times: dict[tuple[str, str], list[float]] = {}
    floors: dict[tuple[str, str], list[float]] = {}
    after_gemm: dict[tuple[str, str], list[float]] = {}  # W2 train: its passes timed cold
    for r in range(args.rounds):
        if not args.quick:  # floors.py has the full sizes only
            for rec in _run([os.path.join(HERE, "floors.py"), *t]):
                print(json.dumps({"round": r, "script": "floors.py", **rec}), flush=True)
                key = (rec["workload"], rec["phase"])
                floors.setdefault(key, []).append(rec.get("floor_ms", rec.get("floor_us")))
                if "floor_after_gemm_ms" in rec:
                    after_gemm.setdefault(key, []).append(rec["floor_after_gemm_ms"])
        for w, impl, mode, phase in MEASURED:
            one = ["--one", w, impl, mode, phase, *t, *(["--quick"] if args.quick else [])]
            (rec,) = _run([os.path.join(HERE, "bench.py"), *one])
            print(json.dumps({"round": r, "script": "bench.py", **rec}), flush=True)
            times.setdefault((w, phase), []).append(rec.get("median_ms", rec.get("median_us")))
    for key, ts in times.items():
        fs = floors.get(key, [])
        ratios = [a / b for a, b in zip(ts, fs, strict=False)]
        out = {
            "summary": True,
            "workload": key[0],
            "phase": key[1],
            "unit": "us" if key[0] == "W4" else "ms",
            "torchlmu": [round(v, 3) for v in ts],
            "floor": [round(v, 3) for v in fs],
            "ratios": [round(v, 3) for v in ratios],
            "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
            **_after_gemm(ts, after_gemm.get(key)),
            "threads": args.threads,
            "device": args.device,
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
