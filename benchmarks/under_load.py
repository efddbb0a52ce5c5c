"""Behaviour under load: a command's wall time alone and beside CPU-bound neighbours.

Each (variant, load) pair runs the command in a fresh process; ``load`` busy processes (a
Python ``while True`` loop each, the ``yes > /dev/null`` of the performance issue) run beside
it for its whole duration. Variants set the OpenMP environment before torch starts:

- ``default``: nothing set (libgomp spins about 300,000 iterations at each barrier before it
  sleeps, so a thread whose partner lost its core burns its time slice waiting);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (a waiting thread sleeps at once).

One JSON line per run: variant, load, threads, wall seconds, and the slowdown against the same
variant without load.

    python benchmarks/under_load.py --threads 2 --load 0 1 -- torchlmu demo --out /tmp/d --force
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

VARIANTS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
BUSY = "while True: pass"


def run(cmd: list[str], env: dict[str, str], load: int) -> float:
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
    try:
        t0 = time.perf_counter()
        subprocess.run(
            cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return time.perf_counter() - t0
    finally:
        for p in busy:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the command")
    ap.add_argument("--load", type=int, nargs="+", default=[0, 1], help="busy neighbours")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command to time")
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the command to time after --")
    for variant in args.variants:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), **VARIANTS[variant]}
        alone = None
        for load in sorted(args.load):
            for _ in range(args.repeats):
                wall = run(cmd, env, load)
                alone = wall if load == 0 and alone is None else alone
                row = {
                    "variant": variant, "load": load, "threads": args.threads,
                    "wall_s": round(wall, 2), "cmd": " ".join(cmd), "cpus": os.cpu_count(),
                    "machine": platform.processor() or platform.machine(),
                }  # fmt: skip
                if alone:
                    row["slowdown"] = round(wall / alone, 2)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
