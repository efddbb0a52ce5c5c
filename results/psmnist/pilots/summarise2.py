"""Apply grid2.json's rule to the P3 pilot runs (validation only) and print their table.

Usage: python results/psmnist/pilots/summarise2.py P3-seed0 P3-seed1 (folders beside this file,
each holding a tuning run's results-tuning.json). Prints the Markdown table and the verdict.
"""

import json
import sys
from itertools import pairwise
from pathlib import Path

HERE = Path(__file__).parent
DROP = 5.0  # grid2.json: diverged = validation accuracy falling by more than 5 points


def load(name: str) -> dict:
    r = json.loads((HERE / name / "results-tuning.json").read_text())
    assert r["mode"] != "final" and r["evaluated_split"] == "val", name
    (seed,) = r["results"]["seeds"].values()
    return seed


def main(names: list[str]) -> None:
    verdicts = []
    for name in names:
        s = load(name)
        h = s["history"]
        print(f"\n### {name}\n")
        print("| epoch | train acc (%) | train loss | val acc (%) | val loss | train s |")
        print("|---|---|---|---|---|---|")
        for e in h:
            print(
                f"| {e['epoch']} | {e['train_acc']:.2f} | {e['train_loss']:.4f} "
                f"| {e['val_acc']:.2f} | {e['val_loss']:.4f} | {e['train_seconds']:.0f} |"
            )
        falls = [
            (b["epoch"], a["val_acc"] - b["val_acc"])
            for a, b in pairwise(h)
            if a["val_acc"] - b["val_acc"] > DROP
        ]
        best = min(h, key=lambda e: e["val_loss"])
        print(
            f"\nselected (lowest validation loss): epoch {best['epoch']}, val acc "
            f"{best['val_acc']:.2f} %, val loss {best['val_loss']:.4f}; recorded best_epoch "
            f"{s['best_epoch']}, best_val_acc {s['best_val_acc']:.2f}"
        )
        print("diverged: " + (f"yes, {falls}" if falls else "no"))
        verdicts.append((name, not falls, best["val_acc"]))
    ok = all(v for _, v, _ in verdicts)
    mean = sum(a for *_, a in verdicts) / len(verdicts)
    print(
        f"\nP3 admissible (no seed diverged): {'yes' if ok else 'no'}; mean validation accuracy at "
        f"the selected epochs {mean:.2f} % over {len(verdicts)} seeds"
    )


if __name__ == "__main__":
    main(sys.argv[1:] or ["P3-seed0", "P3-seed1"])
