"""Permuted sequential MNIST with the LMU paper's model (NeurIPS 2019): test 97.15% to beat.

Protocol (the NRU code base, as the paper): ``numpy.random.RandomState(50)``: the first
``permutation(60000)`` orders the training set, the next ``permutation(784)`` permutes the
pixels; the first 50k train, the last 10k validate; the official 10k test; pixels / 255. The
epoch with the best validation accuracy is evaluated once on the test set.

Model: one LMU layer, hidden 212 (tanh), order 256, θ = 784, all six connections, no hidden
bias, the paper's psMNIST initialisation (e_x = 1, e_h = e_m = 0, W_x = W_h = 0, W_m
Xavier-normal), then Linear(10): 102,027 trainable parameters. Adam 1e-3, batch 100, 10 epochs.
With e_h and e_m trainable the memory input depends on h and m, so this model is recurrent: it
trains through the hand-written BPTT of :func:`torchlmu.recurrence.lmu_elman_scan`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._install import source_root
from ..data import dataset_spec, find_mnist, mnist_files, permuted_sequential_mnist
from ..exceptions import ValidationError
from ..lmu import LMU
from . import distributed
from .harness import (
    RunContext,
    atomic_write_json,
    fit,
    load_best,
    mean_std_ci,
    model_device,
    n_params,
    provenance,
    provenance_line,
    to_device,
)

NAME = "psmnist"
TITLE = "Permuted sequential MNIST (LMU, NeurIPS 2019)"
PAPER = {"test_acc": 97.15, "val_acc": 96.97, "params": 102_027}


@dataclass
class Config:
    hidden: int = 212
    order: int = 256
    theta: float = 784.0
    epochs: int = 10
    batch: int = 100
    lr: float = 1e-3
    data_seed: int = 50
    # None: the paper's protocol (no clipping). The full run with it diverged in epoch 4 (the
    # memory feedback Ā + B̄e_m reached spectral radius 1.001); a norm such as 1.0 guards that.
    clip_grad_norm: float | None = None
    # On a GPU the training step runs as one captured CUDA graph (the step loop's ~20k small
    # kernels per batch replayed without Python: 4-5x faster on an H100); same arithmetic.
    cuda_graph: bool = True
    # The classifier's initialisation: "torch" (nn.Linear's default, U(±1/√212) = ±0.069, bias
    # likewise) or "keras" (Keras's Dense, which the paper used: Glorot-uniform ±0.164, bias 0).
    readout_init: str = "torch"
    # The validation metric that selects the tested epoch: "val_acc" (highest accuracy), or
    # "val_loss" (lowest cross-entropy: the paper's checkpoint rule).
    monitor: str = "val_acc"
    # "constant" (the paper: Adam at lr throughout) or "cosine" (annealed to 0 over the epochs).
    lr_schedule: str = "constant"
    n_train: int | None = None  # None: all 50,000
    n_eval: int | None = None  # None: all 10,000 validation and test sequences
    data_root: str | None = None

    def quick(self) -> Config:
        return replace(self, epochs=1, n_train=300, n_eval=200)


class PaperModel(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.lmu = LMU(
            1,
            cfg.hidden,
            cfg.order,
            cfg.theta,
            hidden_to_memory=True,
            memory_to_memory=True,
            input_to_hidden=True,
            bias=False,
            init="psmnist",
            batch_first=True,
            return_sequences=False,
        )
        self.out = nn.Linear(cfg.hidden, 10)
        if cfg.readout_init == "keras":
            nn.init.xavier_uniform_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        elif cfg.readout_init != "torch":
            raise ValidationError("readout_init", "'torch' or 'keras'", repr(cfg.readout_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lmu(x)[0])


def data_root(cfg_root: str | None = None, dataset: str = "mnist") -> Path:
    """Where MNIST (or ``dataset``, e.g. ``"fashion-mnist"``) is: ``Config.data_root`` alone when
    set, else :func:`~torchlmu.data.find_mnist`'s search (``--data DIR``, which sets
    ``$TORCHLMU_DATA`` for the run, else that variable, else the user cache, then the data set's
    system folder), and last ``../shared/data/KEY`` beside the source checkout torchlmu runs
    from (this project's machines; an installed wheel has no checkout)."""
    checkout = source_root()
    spec = dataset_spec(dataset)
    also = [] if checkout is None else [checkout.parent / "shared" / "data" / spec.key]
    return find_mnist(cfg_root, also, dataset=spec)


def preflight(cfg: Any) -> None:
    """Checked by ``torchlmu reproduce`` before anything is written: the data set
    (``cfg.dataset`` where the Config has it, else MNIST) is found and every file matches its
    checksum."""
    dataset = getattr(cfg, "dataset", "mnist")
    mnist_files(data_root(cfg.data_root, dataset), dataset=dataset)


def load(cfg: Any):
    return permuted_sequential_mnist(data_root(cfg.data_root), seed=cfg.data_seed)


def _monitor(cfg: Any) -> str:
    m = getattr(cfg, "monitor", "val_acc")
    if m not in ("val_acc", "val_loss"):
        raise ValidationError("Config.monitor", "'val_acc' or 'val_loss'", repr(m))
    return m


def train_classifier(
    model: nn.Module,
    splits,
    cfg: Any,
    ctx: RunContext,
    folder: Path,
    desc: str,
    last_epoch: bool = False,
) -> dict[str, Any]:
    """The shared psMNIST protocol: fit, keep the best validation accuracy, test it once.

    With ``last_epoch`` the last epoch is tested instead (for a refit whose training data include
    the validation set, where validation cannot select). The test set is evaluated only in the
    final run of a committed protocol (``ctx.final``); a tuning run returns ``test_acc`` and
    ``test_loss`` as None and never reads a test sequence."""
    train, valid, test = splits
    n_train = len(train) if cfg.n_train is None else min(cfg.n_train, len(train))
    n_eval = len(valid) if cfg.n_eval is None else min(cfg.n_eval, len(valid))
    wd = getattr(cfg, "weight_decay", 0.0)
    schedule = getattr(cfg, "lr_schedule", "constant")
    if schedule not in ("constant", "cosine"):
        raise ValidationError("Config.lr_schedule", "'constant' or 'cosine'", repr(schedule))
    cosine = schedule == "cosine"
    device = model_device(model)
    graph = getattr(cfg, "cuda_graph", False) and device.type == "cuda" and distributed.world() == 1
    # For a CUDA graph: a capturable optimizer whose learning rate is a tensor on the device,
    # which the scheduler updates in place and every replay reads (a float would be baked in).
    lr = torch.tensor(float(cfg.lr), dtype=torch.float64, device=device) if graph else cfg.lr
    kw = {"capturable": True} if graph else {}
    opt = (
        torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, **kw)
        if wd > 0
        else torch.optim.Adam(model.parameters(), lr=lr, **kw)
    )
    sched = None
    if cosine:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    seed = ctx.seed

    def batches(epoch: int):
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, cfg.batch):
            yield train.batch(order[i : i + cfg.batch])

    def step_loss(m, x, y):
        logits = m(x)
        # the accuracy as a tensor: no host synchronisation inside a captured CUDA graph
        return nn.functional.cross_entropy(logits, y), {
            "acc": (logits.argmax(-1) == y).float().mean() * 100
        }

    def evaluate_split(m, split, n):
        # Under torchrun each rank evaluates its shard and the sums are reduced.
        part = distributed.shard(n)
        loss, correct = 0.0, 0
        for i in range(part.start, part.stop, 500):
            x, y = split.batch(torch.arange(i, min(part.stop, i + 500)))
            x, y = to_device((x, y), model_device(m))
            logits = m(x)
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
        loss, correct = distributed.all_reduce_sum([loss, correct])
        return loss / n, 100.0 * correct / n

    def evaluate(m):
        loss, acc = evaluate_split(m, valid, n_eval)
        return {"val_loss": loss, "val_acc": acc}

    res = fit(
        model,
        opt,
        train_batches=batches,
        step_loss=step_loss,
        evaluate=evaluate,
        epochs=cfg.epochs,
        out=folder,
        monitor=_monitor(cfg),
        mode="min" if _monitor(cfg) == "val_loss" else "max",
        resume=ctx.resume,
        progress=ctx.progress,
        desc=desc,
        n_batches=-(-n_train // cfg.batch),
        log=ctx.log,
        scheduler=sched,
        clip_grad_norm=getattr(cfg, "clip_grad_norm", None),
        cuda_graph=graph,
    )
    test_loss = test_acc = None
    if ctx.final:
        if not last_epoch:
            load_best(model, res)
        model.eval()
        with torch.no_grad():
            test_loss, test_acc = evaluate_split(
                model, test, len(test) if cfg.n_eval is None else min(cfg.n_eval, len(test))
            )
    return {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "best_epoch": res.best_epoch,
        "best_val_acc": res.best["val_acc"],
        "params": n_params(model),
        "seconds_per_epoch": [r["train_seconds"] for r in res.history],
        "history": res.history,
    }


def curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):  # whole epochs; a one-epoch run shows its points centred, not on an edge
        if len(ep) <= 12:
            ax.set_xticks(ep)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(ep) - 0.5, max(ep) + 0.5)
        ax.margins(y=0.15)
    a.plot(ep, [r["train_loss"] for r in history], "o-", ms=6, label="train")
    a.plot(ep, [r["val_loss"] for r in history], "s-", ms=6, label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(ep, [r["train_acc"] for r in history], "o-", ms=6, label="train")
    b.plot(ep, [r["val_acc"] for r in history], "s-", ms=6, label="validation")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    t0 = time.perf_counter()
    splits = load(cfg)
    ctx.seed_all()
    model = PaperModel(cfg).to(ctx.device)
    ctx.log(
        f"psMNIST paper model: {n_params(model):,} trainable parameters (paper: {PAPER['params']:,})"
    )
    r = train_classifier(model, splits, cfg, ctx, ctx.subdir("train"), "psMNIST LMU")
    if distributed.is_main():
        curves(r["history"], ctx.out / "psmnist_curves.png", "psMNIST, LMU (NeurIPS 2019 model)")
    results = {
        "experiment": NAME,
        "quick": ctx.quick,
        "seed": ctx.seed,
        **ctx.mode(),
        "config": asdict(cfg),
        "results": {"seeds": {str(ctx.seed): r}},
        "wall_seconds": time.perf_counter() - t0,
        "provenance": provenance(ctx.threads or 1, ctx.device),
        "paper": PAPER,
    }
    atomic_write_json(ctx.out / "results.json", results)
    return results


def seed_rows(results: dict[str, Any]) -> list[str]:
    """The table's header and one row per seed (test accuracy only in a final run)."""
    rows = [
        "| seed | test acc (%) | best val acc (%) | best epoch | params | s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for s, r in results["results"]["seeds"].items():
        spe = sum(r["seconds_per_epoch"]) / max(1, len(r["seconds_per_epoch"]))
        test = "not computed (tuning)" if r.get("test_acc") is None else f"{r['test_acc']:.2f}"
        rows.append(
            f"| {s} | {test} | {r['best_val_acc']:.2f} | {r['best_epoch']} | {r['params']:,} | {spe:.1f} |"
        )
    return rows


def table(results: dict[str, Any]) -> str:
    rows = seed_rows(results)
    p = results["paper"]
    paper_val = f"{p['val_acc']:.2f}" if "val_acc" in p else ""  # not every paper gives it
    rows.append(f"| paper | {p['test_acc']:.2f} | {paper_val} | | {p['params']:,} | |")
    return "\n".join(rows)


# fields that do not change the protocol (where the data are, how fast the step runs)
_NOT_PROTOCOL = {"data_root", "cuda_graph"}


def across_runs(runs: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Mean ± sample std of the test and best validation accuracy over full-size runs of the
    same protocol (same Config apart from data_root and cuda_graph), one seed or more each.
    None when no protocol has two seeds."""
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for folder, r in runs:
        if r.get("quick") or r.get("mode") == "tuning":  # tuning runs have no test metric
            continue
        # fields added since a run was made take their defaults (= what the run did)
        cfg = {**asdict(Config()), **r["config"]}
        key = json.dumps({k: v for k, v in cfg.items() if k not in _NOT_PROTOCOL}, sort_keys=True)
        for seed, res in r["results"]["seeds"].items():
            groups.setdefault(key, []).append((folder, seed, res))
    rows = []
    for key, members in groups.items():
        if len({s for _, s, _ in members}) < 2:
            continue
        cfg = json.loads(key)
        test = [m["test_acc"] for _, _, m in members]
        val = [m["best_val_acc"] for _, _, m in members]
        t, va = mean_std_ci(test), mean_std_ci(val)
        lo, hi = t["ci95"]
        changed = {k: v for k, v in cfg.items() if v != asdict(Config()).get(k)}
        rows.append(
            f"| {', '.join(f'{k}={v}' for k, v in changed.items()) or 'defaults'} | "
            f"{len(members)} ({', '.join(f'{s} in {f}' for f, s, _ in members)}) | "
            f"{t['mean']:.2f} ± {t['std']:.2f} "
            f"({', '.join(f'{x:.2f}' for x in test)}) | [{lo:.2f}, {hi:.2f}] | "
            f"{va['mean']:.2f} ± {va['std']:.2f} |"
        )
    if not rows:
        return None
    return "\n".join(
        [
            f"## {TITLE}: across seeds",
            "",
            "Runs of the same protocol made separately, one seed each (mean ± sample std; the "
            "95 % t-interval of the mean test accuracy).",
            "",
            "| protocol (Config fields changed) | seeds (folder) | test acc (%) | its 95 % interval "
            "| best val acc (%) |",
            "|---|---|---|---|---|",
            *rows,
            f"| paper (one run) | | {PAPER['test_acc']:.2f} | | {PAPER['val_acc']:.2f} |",
            "",
        ]
    )


def report_section(
    results: dict[str, Any],
    prefix: str = "",
    title: str = TITLE,
    figure: str = "psmnist_curves.png",
) -> str:
    return "\n".join(
        [
            f"## {title}" + (" (quick)" if results.get("quick") else ""),
            "",
            table(results),
            "",
            f"![curves]({prefix}{figure})",
            "",
            provenance_line(results),
            "",
        ]
    )
