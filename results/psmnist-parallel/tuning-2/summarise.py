"""Summarise the tuning grid's runs (runs/tune-pp/NAME/results.json) into summary.json and a
Markdown table, and apply grid.json's selection rule. Run from the repository root:
python results/psmnist-parallel/tuning-2/summarise.py"""

import json
from pathlib import Path

from torchlmu.experiments.harness import mean_std_ci

here = Path(__file__).parent
grid = json.loads((here / "grid.json").read_text())
rows, summary = [], {}
for name, over in grid["grid"].items():
    r = json.loads((Path("runs/tune-pp") / name / "results.json").read_text())
    assert r["mode"] == "tuning" and r["protocol"] is None
    seeds = r["results"]["seeds"]
    assert all(s["test_acc"] is None for s in seeds.values())  # no test metric was computed
    best = [s["best_val_acc"] for s in seeds.values()]
    last = [s["history"][-1]["val_acc"] for s in seeds.values()]
    stat = mean_std_ci(best)
    summary[name] = {
        "overrides": over,
        "epochs": r["config"]["epochs"],
        "best_val_acc": dict(zip(seeds, best, strict=True)),
        "best_epoch": {k: s["best_epoch"] for k, s in seeds.items()},
        "last_epoch_val_acc": dict(zip(seeds, last, strict=True)),
        "mean": stat["mean"],
        "std": stat["std"],
        "ci95": stat["ci95"],
        "wall_seconds": r["wall_seconds"],
        "git_commit": r["provenance"]["git_commit"],
        "command": r["provenance"]["command"],
    }
top = max(v["mean"] for v in summary.values())
near = [k for k, v in summary.items() if v["mean"] >= top - 0.03]
chosen = min(near, key=lambda k: (summary[k]["epochs"], list(summary).index(k)))
for k, v in summary.items():
    rows.append(
        f"| {k}{' (chosen)' if k == chosen else ''} | {json.dumps(v['overrides']) or '{}'} | "
        + ", ".join(f"{x:.2f}" for x in v["best_val_acc"].values())
        + f" | {v['mean']:.2f} ± {v['std']:.2f} ({v['ci95'][0]:.2f}–{v['ci95'][1]:.2f}) | "
        + ", ".join(str(e) for e in v["best_epoch"].values())
        + " | "
        + ", ".join(f"{x:.2f}" for x in v["last_epoch_val_acc"].values())
        + f" | {v['wall_seconds']:.0f} |"
    )
table = "\n".join(
    [
        "| variant | overrides of Config | best val acc, seeds 0, 1, 2 (%) | mean ± std (95 % t) |"
        " best epochs | last-epoch val acc (%) | wall (s) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
)
(here / "summary.json").write_text(
    json.dumps(
        {"variants": summary, "max_mean": top, "within_0.03": near, "chosen": chosen}, indent=2
    )
    + "\n"
)
(here / "table.md").write_text(table + "\n")
print(table)
print("chosen:", chosen)
