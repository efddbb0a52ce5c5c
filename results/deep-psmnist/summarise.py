"""Issue 19's table: the final runs of the deep LMU network (psMNIST, sequential MNIST, sequential
Fashion-MNIST) and their nn.LSTM baselines, beside the published psMNIST models.

Usage: python results/deep-psmnist/summarise.py > results/deep-psmnist/summary.md
Reads ``results/<experiment>/final/results.json`` and ``results/<experiment>/lstm/final/results.json``
(each a final run of the protocol.json beside it, tested once); a run not there yet is listed as
missing. Per seed: best validation epoch, validation and test accuracy, epochs, training time;
per run: mean, sample std and 95 % t-interval (df n-1) of the test accuracies.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = [  # (experiment, folder under results/, label)
    ("deep-psmnist", "deep-psmnist", "psMNIST"),
    ("deep-smnist", "deep-smnist", "sequential MNIST"),
    ("deep-sfmnist", "deep-sfmnist", "sequential Fashion-MNIST"),
]
PUBLISHED = [  # psMNIST test accuracy (%), parameters, as the papers report them
    ("parallel LMU (Chilkuri & Eliasmith 2021)", 98.49, "165k"),
    ("CKConv (Romero et al. 2022)", 98.54, "1M"),
    ("FlexTCN (Romero et al. 2022)", 98.63, "375k"),
    ("S4 (Gu et al. 2022)", 98.70, "-"),
    ("LSSL (Gu et al. 2021)", 98.76, "-"),
]


def load(path: Path, experiment: str) -> dict | None:
    if not (path / "results.json").exists():
        return None
    r = json.loads((path / "results.json").read_text())
    assert r["mode"] == "final" and r["evaluated_split"] == "test", path
    assert (
        r["protocol"]["path"] == f"{path.relative_to(ROOT.parent).parent.as_posix()}/protocol.json"
    )
    assert r["experiment"] == experiment, path
    return r


# Runs that moved between machines (their results.json's provenance_note): where each seed ran
MOVED = {
    ("deep-psmnist", "final"): {
        "0": "NVIDIA H200",
        "1": "NVIDIA H200",
        "2": "NVIDIA H200, epochs 17-18 on the AMD EPYC",
    },
}


def hardware(r: dict, key: tuple[str, str], seed: str | None = None) -> str:
    if key in MOVED:
        moved = MOVED[key]
        return moved[seed] if seed is not None else "NVIDIA H200 (+ CPU resume, see note)"
    p = r["provenance"]
    return p.get("cuda") or p.get("cpu", "?")


def main() -> None:
    seeds, overall = [], []
    for exp, folder, label in RUNS:
        for kind, sub in (("deep LMU", "final"), ("nn.LSTM", "lstm/final")):
            path = ROOT / folder / sub
            r = load(path, exp)
            if r is None:
                overall.append(f"| {label} | {kind} | no finished run yet (history.json) | | | | |")
                continue
            for seed, s in r["results"]["seeds"].items():
                h = s["history"]
                seeds.append(
                    f"| {label} | {kind} | {seed} | {s['params']:,} | {len(h)} | {s['best_epoch']} "
                    f"| {s['best_val_acc']:.2f} | **{s['test_acc']:.2f}** "
                    f"| {sum(e['train_seconds'] for e in h):,.0f} | {hardware(r, (folder, sub), seed)} |"
                )
            o = r["results"]["summary"]["test_acc"]  # the harness's mean_std_ci of the seeds
            stat = f"{o['mean']:.2f}"
            if o["std"] is not None:
                lo, hi = o["ci95"]
                stat += f" ± {o['std']:.2f} [{lo:.2f}, {hi:.2f}]"
            s0 = next(iter(r["results"]["seeds"].values()))
            overall.append(
                f"| {label} | {kind} | **{stat}** | {o['n']} | {s0['params']:,} "
                f"| {len(s0['history'])} | {hardware(r, (folder, sub))} |"
            )
    print("## Test accuracy (%): mean ± sample std [95 % t-interval] over seeds\n")
    print("| data set | model | test acc (%) | seeds | parameters | epochs | hardware |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(overall))
    print("\nPublished psMNIST results (test accuracy, %; parameters as reported):\n")
    print("| model | psMNIST test acc (%) | parameters |")
    print("|---|---|---|")
    print("\n".join(f"| {n} | {a:.2f} | {p} |" for n, a, p in PUBLISHED))
    print("\n## Per seed\n")
    print(
        "| data set | model | seed | parameters | epochs | best epoch | val acc (%) | test acc (%) "
        "| training (s) | hardware |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(seeds))


if __name__ == "__main__":
    main()
