"""The primary outcome of ``protocol.json``, from the final run's per-seed folders.

Usage: python results/psmnist-paper/summarise.py [seed0 seed1 ...] (folders beside this file,
each holding one seed's final results.json; default seed0-seed4). Prints the Markdown tables:
per seed, then the mean, sample std and 95 % t-interval (df n-1) of the test accuracies against
the paper's 97.15 %, and the divergence check the protocol names.
"""

import json
import sys
from itertools import pairwise
from pathlib import Path

from torchlmu.experiments.harness import mean_std_ci

HERE = Path(__file__).parent
PROTOCOL = json.loads((HERE / "protocol.json").read_text())
DROP = 5.0  # protocol.json: diverged = validation accuracy falling by more than 5 points
PAPER = 97.15


def load(name: str) -> tuple[int, dict]:
    r = json.loads((HERE / name / "results.json").read_text())
    # a final run of this very protocol, tested once
    assert r["mode"] == "final" and r["evaluated_split"] == "test", name
    assert r["protocol"]["path"] == "results/psmnist-paper/protocol.json", name
    ((seed, s),) = r["results"]["seeds"].items()
    return int(seed), s


def main(names: list[str]) -> None:
    rows, tests, diverged = [], [], []
    for name in names:
        seed, s = load(name)
        h = s["history"]
        falls = [
            (b["epoch"], round(a["val_acc"] - b["val_acc"], 2))
            for a, b in pairwise(h)
            if a["val_acc"] - b["val_acc"] > DROP
        ]
        sel = min(h, key=lambda e: e["val_loss"])  # the paper's rule, recomputed from the log
        assert sel["epoch"] == s["best_epoch"], (name, sel["epoch"], s["best_epoch"])
        tests.append(s["test_acc"])
        diverged += [(seed, f) for f in falls]
        rows.append(
            f"| {seed} | {h[0]['train_acc']:.2f} | {'yes ' + str(falls) if falls else 'no'} "
            f"| {sel['epoch']} | {sel['val_acc']:.2f} | {sel['val_loss']:.4f} "
            f"| **{s['test_acc']:.2f}** | {s['test_loss']:.4f} "
            f"| {sum(e['epoch_seconds'] for e in h):,.0f} |"
        )
    print(
        "| seed | epoch-1 train acc (%) | diverged | selected epoch | val acc (%) | val loss "
        "| test acc (%) | test loss | 10 epochs (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    o = mean_std_ci(tests)
    print(f"\nSeeds: {len(tests)} of {len(PROTOCOL['seeds'])} in the protocol.")
    if o["std"] is not None:
        lo, hi = o["ci95"]
        print(
            f"Test accuracy: mean {o['mean']:.2f} %, sample std {o['std']:.2f}, 95 % t-interval "
            f"[{lo:.2f}, {hi:.2f}] (df {o['n'] - 1}); the paper's single run: {PAPER} %."
        )
        goal = "met" if o["mean"] >= PAPER else "not met"
        print(
            f"Goal mean >= {PAPER} %: {goal}; the paper's value lies "
            + ("inside" if lo <= PAPER <= hi else "outside")
            + " the interval."
        )
    print(
        "Divergence (validation accuracy falling > 5 points between epochs): "
        + (f"yes, {diverged}" if diverged else "none")
    )


if __name__ == "__main__":
    main(sys.argv[1:] or [f"seed{s}" for s in PROTOCOL["seeds"]])
