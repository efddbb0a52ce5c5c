"""Which setting of the fully recurrent scan's Triton kernels a GPU run should use, read from
benchmarks/triton_scan_sweep.py's output: the fastest training step (forward + backward) among
the kernels' settings whose states and gradients stay within tolerance of the step loops'
(relative 1e-4 and 1e-3: the sweep's float32 kernels land near 1e-6, so only a broken setting,
NaN or a failed barrier, is left out). The row form is a candidate in its default setting
only, the one a run gets (CONFIG has no variable of its own); where the column form wins, each
of its kernels gets its own fastest setting. Prints what gpu_check.sh sets for the runs after
the sweep, e.g.

    TORCHLMU_TRITON_FORM=cols
    TORCHLMU_TRITON_COLS={"forward": {"BB": 16, "P": 4, "num_warps": 8}, "backward": {...}}

and nothing where no setting qualifies; the reason on stderr.

    python benchmarks/pick_triton_setting.py sweep.jsonl [--forms rows cols]
"""

from __future__ import annotations

import argparse
import json
import math
import sys

TOL_STATES, TOL_GRADS = 1e-4, 1e-3


def candidates(lines: list[str], forms: list[str], rows_default: dict) -> list[dict]:
    """The sweep's kernel records that qualify (other lines of the log are skipped)."""
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("path") != "triton":
            continue
        cfg = rec.get("config") or {}
        form = cfg.get("form", "rows")
        if form not in forms:
            continue
        if form == "rows" and {k: v for k, v in cfg.items() if k != "form"} != rows_default:
            continue
        s, g, ms = (
            rec.get("max_rel_diff_states"),
            rec.get("max_rel_diff_grads"),
            rec.get("train_ms"),
        )
        finite = all(isinstance(v, int | float) and math.isfinite(v) for v in (s, g, ms))
        if finite and s <= TOL_STATES and g <= TOL_GRADS:
            out.append(rec)
    return out


def pick(lines: list[str], forms: list[str], rows_default: dict) -> dict[str, str]:
    """The variables to set (empty: none qualifies). The column form, where it is the faster,
    gets each kernel's fastest setting: the forward's by infer_ms (the forward alone), the
    backward's by backward_steps_ms (its loop alone)."""
    found = candidates(lines, forms, rows_default)
    if not found:
        return {}
    best = min(found, key=lambda r: r["train_ms"])
    form = best["config"].get("form", "rows")
    chosen = {"TORCHLMU_TRITON_FORM": form}
    if form == "cols":
        tied = [r for r in found if r["config"].get("form") == "cols" and "BB" in r["config"]]
        setting = {}
        for kernel, key in (("forward", "infer_ms"), ("backward", "backward_steps_ms")):
            timed = [r for r in tied if isinstance(r.get(key), int | float)]
            if timed:
                cfg = min(timed, key=lambda r: r[key])["config"]
                setting[kernel] = {k: cfg[k] for k in ("BB", "P", "num_warps")}
        chosen["TORCHLMU_TRITON_COLS"] = json.dumps(setting)
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sweep", help="the sweep's output (JSON lines among other log lines)")
    ap.add_argument("--forms", nargs="+", choices=("rows", "cols"), default=["rows", "cols"])
    args = ap.parse_args()
    from torchlmu import triton_scan

    rows_default = {k: triton_scan.CONFIG[k] for k in ("BB", "KC", "num_warps", "num_warps_wide")}
    try:
        with open(args.sweep, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        print(f"pick_triton_setting: cannot read the sweep: {e}", file=sys.stderr)
        return
    chosen = pick(lines, args.forms, rows_default)
    if not chosen:
        print(f"pick_triton_setting: no setting of {args.forms} qualifies", file=sys.stderr)
    for k, v in chosen.items():
        print(f"{k}={v}")


if __name__ == "__main__":
    main()
