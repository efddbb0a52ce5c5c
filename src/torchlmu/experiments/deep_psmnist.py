"""Permuted sequential MNIST with a deep LMU network (:class:`torchlmu.models.DeepLMU`), issue 19.

Same data protocol as :mod:`.psmnist` (NRU split: ``RandomState(50)`` orders the training set
and permutes the pixels; 50k train, 10k validation, the official 10k test; pixels / 255) and the
same training loop and test discipline (:func:`.psmnist.train_classifier`: the epoch with the
best validation accuracy is tested once, and only in the final run of a committed protocol; a
tuning run computes no test metric). ``deep-smnist`` (:mod:`.deep_smnist`) is the same
experiment without the pixel permutation.

The model: ``Linear(1, D)``, N residual LMU blocks (LayerNorm, Legendre memory of order d and
window θ over C channels projected to D, GELU, GLU, tied dropout), LayerNorm, pooling, head.
The defaults are candidate B of the CPU budget (results/deep-psmnist/PLAN.md), not a tuned
configuration. ``Config.model = "lstm"`` trains the baseline instead: one ``nn.LSTM`` layer of
the deep model's parameter count (±1 %) under the same protocol. ``Config.dataset`` chooses the
images: ``"mnist"``, or ``"fashion-mnist"`` (sequential Fashion-MNIST, the issue's third data
set, same order, splits and scaling; ``deep-sfmnist``, :mod:`.deep_sfmnist`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..data import sequential_mnist
from ..exceptions import ValidationError
from ..models import DeepLMU
from . import distributed, psmnist, psmnist_parallel
from .harness import (
    RunContext,
    atomic_write_json,
    map_pieces,
    n_params,
    provenance,
    provenance_line,
)

NAME = "deep-psmnist"
# The seeds are independent: ``--jobs N`` trains them in N processes.
PARALLEL_PIECES = True
preflight = psmnist.preflight  # the data found and verified before anything is written
TITLE = "Permuted sequential MNIST (deep LMU network)"
# Published psMNIST test accuracies (%) and parameter counts (None: not restated here), as
# issue 19 lists them: the LMU family's best, and other long-convolution / state-space models.
REFERENCES = [
    ("parallel LMU (ICML 2021)", 98.49, 165_000),
    ("CKConv", 98.54, 1_000_000),
    ("FlexTCN", 98.63, 375_000),
    ("S4", 98.70, None),
    ("LSSL", 98.76, None),
]
PAPER = {"test_acc": 98.49, "params": 165_000}  # the LMU family's record, to beat


@dataclass
class Config:
    # "deep-lmu", or "lstm": the baseline, one nn.LSTM layer whose last hidden state feeds
    # Linear(H, 10), H chosen (lstm_hidden None) for the deep model's parameter count
    model: str = "deep-lmu"
    lstm_hidden: int | None = None
    d_model: int = 64
    num_blocks: int = 4
    order: int = 64
    theta: float = 784.0
    channels: int = 4
    ffn: str = "glu"
    pooling: str = "last"
    dropout: float = 0.1
    conv: str = "fft"
    epochs: int = 10
    batch: int = 100
    lr: float = 2e-3
    lr_schedule: str = "cosine"  # or "constant"
    weight_decay: float = 0.01  # decoupled (AdamW)
    clip_grad_norm: float | None = None
    monitor: str = "val_acc"
    seeds: tuple[int, ...] = (0,)
    permute: bool = True  # False: plain sequential MNIST
    dataset: str = "mnist"  # or "fashion-mnist" (torchlmu.data.DATASETS)
    data_seed: int = 50
    n_train: int | None = None
    n_eval: int | None = None
    data_root: str | None = None

    def quick(self) -> Config:
        """Under a minute on one CPU thread (about 15 s): a small model (7,050 parameters), two
        epochs on 2,000 training images, 200 validation (and test) images."""
        return replace(
            self, d_model=32, num_blocks=2, order=16, channels=2, epochs=2, n_train=2000,
            n_eval=200, seeds=(0,), lr=1e-2,
        )  # fmt: skip


class LSTMClassifier(nn.Module):
    """The baseline: ``nn.LSTM(1, H)``, its last hidden state, ``Linear(H, 10)``; input
    ``(B, T, 1)``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[1][0][-1])


def lstm_size_for(params: int) -> int:
    """The LSTM width H whose classifier has about ``params`` parameters:
    4H(1 + H + 2) + 10H + 10 = 4H² + 22H + 10 (two bias vectors, as nn.LSTM)."""
    return max(1, round((-22 + math.sqrt(22**2 + 16 * (params - 10))) / 8))


def build_model(cfg: Config) -> nn.Module:
    """The classifier of ``cfg`` (10 classes from one pixel per step)."""
    if cfg.model not in ("deep-lmu", "lstm"):
        raise ValidationError("Config.model", "'deep-lmu' or 'lstm'", repr(cfg.model))
    if cfg.model == "lstm":
        hidden = cfg.lstm_hidden or lstm_size_for(
            n_params(build_model(replace(cfg, model="deep-lmu")))
        )
        return LSTMClassifier(hidden)
    return DeepLMU(
        1,
        10,
        d_model=cfg.d_model,
        num_blocks=cfg.num_blocks,
        order=cfg.order,
        theta=cfg.theta,
        channels=cfg.channels,
        ffn=cfg.ffn,
        pooling=cfg.pooling,
        dropout=cfg.dropout,
        conv=cfg.conv,
        batch_first=True,
    )


def load(cfg: Config):
    """(train, valid, test) of ``cfg.dataset``, the pixels permuted when ``cfg.permute``."""
    return sequential_mnist(
        psmnist.data_root(cfg.data_root, cfg.dataset),
        dataset=cfg.dataset,
        permute=cfg.permute,
        seed=cfg.data_seed,
    )


def run(
    cfg: Config,
    ctx: RunContext,
    name: str = NAME,
    title: str = TITLE,
    paper: dict[str, Any] = PAPER,
) -> dict[str, Any]:
    """Train every seed of ``cfg.seeds`` (validation-selected; tested only in a final run);
    ``name``, ``title`` and ``paper`` (the number recorded beside the results) are the
    experiment's."""
    t0 = time.perf_counter()
    per_seed: dict[str, Any] = {}
    base_seed = ctx.seed
    seeds = [base_seed + s for s in cfg.seeds]
    partial_path = ctx.out / "partial.json"
    wall_before = 0.0  # an interrupted run's time, when resumed
    if ctx.resume and partial_path.exists():
        # seeds an interrupted run finished are kept (their checkpoints need not exist)
        done = json.loads(partial_path.read_text())
        if done.get("config") != json.loads(json.dumps(asdict(cfg))):
            raise ValidationError(
                "resume",
                "the configuration of the interrupted run in " + str(ctx.out),
                "a different configuration",
            )
        per_seed = {k: v for k, v in done["results"]["seeds"].items() if int(k) in seeds}
        wall_before = float(done.get("wall_seconds", 0.0))
        ctx.log(f"resuming {name}: seeds {sorted(per_seed)} done")
    todo = [s for s in seeds if str(s) not in per_seed]
    if ctx.jobs > 1 and distributed.world() > 1:
        raise ValidationError("--jobs", "1 under torchrun", str(ctx.jobs))
    if ctx.jobs == 1:
        splits = load(cfg) if todo else None
        pieces = map_pieces(_train_seed, [(cfg, ctx, s, name, splits) for s in todo])
    else:
        fields = ctx.for_worker()
        pieces = map_pieces(_train_seed_in_worker, [(cfg, fields, s, name) for s in todo], ctx.jobs)
        ctx.log(f"{name}: {len(todo)} seeds in {ctx.jobs} worker processes")
    for i, r in pieces:
        per_seed[str(todo[i])] = r
        per_seed = {str(s): per_seed[str(s)] for s in seeds if str(s) in per_seed}
        ctx.log(
            f"seed {todo[i]}: best val {r['best_val_acc']:.2f}% (epoch {r['best_epoch']})"
            + (f", test {r['test_acc']:.2f}%" if r["test_acc"] is not None else "")
        )
        # each finished seed at once, so that a run stopped between seeds leaves its numbers
        atomic_write_json(
            partial_path,
            {
                "experiment": name,
                "partial": True,
                "seeds_done": list(per_seed),
                **ctx.mode(),
                "config": asdict(cfg),
                "results": {"seeds": per_seed},
                "wall_seconds": wall_before + time.perf_counter() - t0,
                "provenance": provenance(ctx.threads or 1, ctx.device),
            },
        )
    if distributed.is_main():
        psmnist.curves(next(iter(per_seed.values()))["history"], ctx.out / "deep_curves.png", title)
    results = {
        "experiment": name,
        "quick": ctx.quick,
        "seed": base_seed,
        **ctx.mode(),
        "config": asdict(cfg),
        "results": {"seeds": per_seed, "summary": psmnist_parallel.summarise(per_seed)},
        "wall_seconds": wall_before + time.perf_counter() - t0,
        "provenance": provenance(ctx.threads or 1, ctx.device),
        "paper": paper,
    }
    atomic_write_json(ctx.out / "results.json", results)
    return results


def _train_seed(cfg: Config, ctx: RunContext, seed: int, name: str, splits) -> dict[str, Any]:
    """Train (and, in a final run, test) one seed: ``ctx`` with its seed set to ``seed``."""
    ctx = replace(ctx, seed=seed)
    ctx.seed_all()
    model = build_model(cfg).to(ctx.device)
    ctx.log(f"{name} seed {seed}: {n_params(model):,} trainable parameters")
    return psmnist.train_classifier(
        model, splits, cfg, ctx, ctx.subdir(f"train_seed{seed}"), f"{name} {seed}"
    )


def _train_seed_in_worker(cfg: Config, fields: dict[str, Any], seed: int, name: str):
    """:func:`_train_seed` in a worker process of :func:`~.harness.map_pieces`."""
    return _train_seed(cfg, RunContext(**fields), seed, name, load(cfg))


def variant(
    name: str, title: str, paper: dict[str, Any]
) -> tuple[
    Callable[[Any, RunContext], dict[str, Any]],
    Callable[[dict[str, Any]], str],
    Callable[[dict[str, Any], str], str],
]:
    """``(run, table, report_section)`` of a variant of this experiment (``deep-smnist``,
    ``deep-sfmnist``: its Config's defaults choose the data set and pixel order): its runs are
    named ``name`` and record ``paper``, its report section is headed ``title``, and its table
    lists no published references (those of :data:`REFERENCES` are psMNIST's)."""

    def run_variant(cfg: Any, ctx: RunContext) -> dict[str, Any]:
        """Train every seed of ``cfg.seeds`` (see :func:`run`)."""
        return run(cfg, ctx, name, title, paper)

    def table_variant(results: dict[str, Any]) -> str:
        """One row per seed (test accuracy only in a final run)."""
        return table(results, references=[])

    def report_variant(results: dict[str, Any], prefix: str = "") -> str:
        """The report's section: the table, the curves, the provenance."""
        return report_section(results, prefix, title, references=[])

    return run_variant, table_variant, report_variant


def table(results: dict[str, Any], references=REFERENCES) -> str:
    """One row per seed (test accuracy only in a final run), then the published references."""
    rows = psmnist.seed_rows(results)
    for label, acc, params in references:
        rows.append(f"| {label} (published) | {acc:.2f} | | | {_count(params)} | |")
    return "\n".join(rows)


def _count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def report_section(
    results: dict[str, Any], prefix: str = "", title: str = TITLE, references=REFERENCES
) -> str:
    return "\n".join(
        [
            f"## {title}" + (" (quick)" if results.get("quick") else ""),
            "",
            table(results, references),
            "",
            f"![curves]({prefix}deep_curves.png)",
            "",
            provenance_line(results),
            "",
        ]
    )
