"""Two versions of the library side by side: bench.py's measurements alternated between
source trees (e.g. a worktree of the last commit and the working tree), round after round, so
that both see the same machine (its speed drifts within minutes). One JSON line per record
(tagged with its tree and round), then one summary line per measurement:

    {"summary": true, "workload": "W1", ..., "unit": "ms", "times": {"base": [...], "new": [...]},
     "median": {"base": ..., "new": ...}, "new_over_base": ...}

    git worktree add /tmp/base HEAD
    python benchmarks/ab_trees.py --tree base=/tmp/base/src --tree new=src --rounds 4 \\
        --case W1 torchlmu parallel train --case W5 torchlmu recurrent train

Each record is one ``bench.py --one`` process run with ``PYTHONPATH`` set to its tree (which
shadows an installed torchlmu), the trees' order reversed every other round; ``new_over_base``
is the ratio of the medians of the last tree to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tree", action="append", required=True, help="NAME=PATH to a src folder")
    ap.add_argument("--case", action="append", nargs=4, required=True,
                    metavar=("WORKLOAD", "IMPL", "MODE", "PHASE"))  # fmt: skip
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="bench.py's small sizes (a smoke test)")
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    if len(trees) < 2:
        sys.exit("ab_trees.py: give two --tree NAME=PATH")
    for name, path in trees.items():
        if not os.path.isdir(os.path.join(path, "torchlmu")):
            sys.exit(f"ab_trees.py: --tree {name}={path} holds no torchlmu package")
    times: dict[tuple, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for case in args.case:
            for name, path in list(trees.items())[:: -1 if r % 2 else 1]:
                env = {**os.environ, "PYTHONPATH": os.path.abspath(path)}
                cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--one", *case,
                       "--threads", str(args.threads), *(["--quick"] if args.quick else [])]  # fmt: skip
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                (rec,) = [json.loads(s) for s in p.stdout.splitlines() if s.startswith("{")]
                print(json.dumps({"tree": name, "round": r, **rec}), flush=True)
                v = rec.get("median_ms", rec.get("median_us"))
                times.setdefault(tuple(case), {}).setdefault(name, []).append(v)
    names = list(trees)
    first, last = names[0], names[-1]
    for case, by in times.items():
        med = {k: statistics.median(v) for k, v in by.items()}
        print(json.dumps({
            "summary": True, "workload": case[0], "impl": case[1], "mode": case[2],
            "phase": case[3], "unit": "us" if case[0] == "W4" else "ms",
            "times": {k: [round(x, 3) for x in v] for k, v in by.items()},
            "median": {k: round(v, 3) for k, v in med.items()},
            "new_over_base": round(med[last] / med[first], 4), "threads": args.threads,
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
