"""Permuted sequential MNIST with the parallel LMU (Chilkuri & Eliasmith, ICML 2021): 98.49%.

No recurrence except the linear memory: u_t = x_t (the identity input map, encoder fixed at 1),
memory order 468, θ = 784; only the last memory state is needed, computed as one matmul of the
sequence with the reversed impulse response; then hidden 346 (ReLU) -> dropout 0.5 -> Linear(10):
165,744 trainable parameters. Same data protocol and selection as :mod:`.psmnist`; several seeds.
Each seed is then refit on all 60,000 training images (``Config.refit``) and its final epoch tested
once, reported beside the validation-selected result. The paper-like input map u = ReLU(a·x + b)
with [m_T, x_T] into the hidden layer (166,092 parameters) is an option; on validation it was no
better than u = x (``results/psmnist-parallel/tuning``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..data.mnist import SequentialMNIST
from ..exceptions import ValidationError
from ..memory import LegendreMemory
from . import distributed, psmnist
from .harness import RunContext, atomic_write_json, provenance

NAME = "psmnist-parallel"
TITLE = "Permuted sequential MNIST (parallel LMU, ICML 2021)"
PAPER = {"test_acc": 98.49, "params": 165_000}


@dataclass
class Config:
    order: int = 468
    theta: float = 784.0
    hidden: int = 346
    dropout: float = 0.5
    # Adam 2e-3 annealed to 0 (cosine) over 40 epochs: chosen on validation accuracy (seed 0:
    # best 98.16% against 98.04% for a constant 1e-3 over 30 epochs); the paper gives no schedule.
    epochs: int = 40
    batch: int = 100
    lr: float = 2e-3
    lr_schedule: str = "cosine"  # or "constant"
    weight_decay: float = 0.0  # decoupled (AdamW) when > 0
    # The memory input: "identity" (u = x) or "affine_relu" (u = ReLU(a·x + b), learned a, b:
    # the ICML paper's equation as third-party reimplementations read it).
    input_map: str = "identity"
    hidden_sees_x: bool = False  # the hidden layer reads [m_T, x_T] instead of m_T alone
    # Also refit: the same settings and seed on all 60,000 training images (train + validation),
    # the final epoch tested once. Validation justifies it: the final epoch of the selected run
    # is within 0.05% of its best validation accuracy. Reported beside the selected run.
    refit: bool = True
    seeds: tuple[int, ...] = (0, 1, 2)
    data_seed: int = 50
    n_train: int | None = None
    n_eval: int | None = None
    data_root: str | None = None

    def quick(self) -> Config:
        return replace(self, epochs=1, n_train=300, n_eval=200, seeds=(0,))


class ParallelModel(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.input_map not in ("identity", "affine_relu"):
            raise ValidationError(
                "Config.input_map", "'identity' or 'affine_relu'", repr(cfg.input_map)
            )
        self.input_map = nn.Linear(1, 1) if cfg.input_map == "affine_relu" else None
        if self.input_map is not None:
            with torch.no_grad():  # start as u = x: a = 1, b = 0
                self.input_map.weight.fill_(1.0)
                self.input_map.bias.zero_()
        self.hidden_sees_x = cfg.hidden_sees_x
        self.memory = LegendreMemory(
            1, cfg.order, cfg.theta, batch_first=True, return_sequences=False
        )
        with torch.no_grad():
            self.memory.input_encoders.fill_(1.0)  # u = x
        self.memory.input_encoders.requires_grad_(False)
        self.head = nn.Sequential(
            nn.Linear(cfg.order + (1 if cfg.hidden_sees_x else 0), cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x if self.input_map is None else torch.relu(self.input_map(x))
        m = self.memory(u)[0]  # the last state only: one matmul
        return self.head(torch.cat([m, x[:, -1]], -1) if self.hidden_sees_x else m)


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    t0 = time.perf_counter()
    splits = psmnist.load(cfg)
    full = None
    if cfg.refit:  # train + validation, already in sequence (permuted) order
        full = SequentialMNIST(
            torch.cat([splits.train.sequences, splits.valid.sequences]),
            torch.cat([splits.train.labels, splits.valid.labels]),
        )
    per_seed = {}
    base_seed = ctx.seed
    for s in cfg.seeds:
        ctx.seed = base_seed + s
        ctx.seed_all()
        model = ParallelModel(cfg).to(ctx.device)
        ctx.log(f"parallel LMU seed {ctx.seed}: {psmnist.n_params(model):,} trainable parameters")
        per_seed[str(ctx.seed)] = psmnist.train_classifier(
            model,
            splits,
            cfg,
            ctx,
            ctx.subdir(f"train_seed{ctx.seed}"),
            f"psMNIST parallel seed {ctx.seed}",
        )
        ctx.log(f"seed {ctx.seed}: test {per_seed[str(ctx.seed)]['test_acc']:.2f}%")
        if cfg.refit:
            ctx.seed_all()
            model = ParallelModel(cfg).to(ctx.device)
            r = psmnist.train_classifier(
                model,
                (full, splits.valid, splits.test),
                cfg,
                ctx,
                ctx.subdir(f"refit_seed{ctx.seed}"),
                f"psMNIST parallel refit seed {ctx.seed}",
                final=True,
            )
            per_seed[str(ctx.seed)]["refit"] = {
                "test_acc": r["test_acc"],
                "test_loss": r["test_loss"],
                "train_images": len(full),
                "epochs": len(r["history"]),
                "seconds_per_epoch": r["seconds_per_epoch"],
                "history": r["history"],  # its val_* include training images: not a selection
            }
            ctx.log(f"seed {ctx.seed} refit on {len(full):,}: test {r['test_acc']:.2f}%")
    ctx.seed = base_seed
    accs = [r["test_acc"] for r in per_seed.values()]
    summary = {
        "test_acc_mean": statistics.mean(accs),
        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "n_seeds": len(accs),
    }
    if cfg.refit:
        ra = [r["refit"]["test_acc"] for r in per_seed.values()]
        summary["refit_test_acc_mean"] = statistics.mean(ra)
        summary["refit_test_acc_std"] = statistics.stdev(ra) if len(ra) > 1 else 0.0
    first = next(iter(per_seed.values()))
    if distributed.is_main():
        psmnist.curves(
            first["history"],
            ctx.out / "psmnist_parallel_curves.png",
            "psMNIST, parallel LMU (ICML 2021 model)",
        )
    results = {
        "experiment": NAME,
        "quick": ctx.quick,
        "seed": base_seed,
        "config": asdict(cfg),
        "results": {"seeds": per_seed, "summary": summary},
        "wall_seconds": time.perf_counter() - t0,
        "provenance": provenance(ctx.threads or 1, ctx.device),
        "paper": PAPER,
    }
    atomic_write_json(ctx.out / "results.json", results)
    return results


def _refit_line(s: dict[str, Any]) -> str:
    if "refit_test_acc_mean" not in s:
        return ""
    return (
        f" Refit on all 60,000 training images (same settings, final epoch): "
        f"{s['refit_test_acc_mean']:.2f} ± {s['refit_test_acc_std']:.2f} %."
    )


def table(results: dict[str, Any]) -> str:
    t = psmnist.table(results)
    s = results["results"]["summary"]
    return (
        t
        + f"\n\nTest accuracy over {s['n_seeds']} seeds: {s['test_acc_mean']:.2f} ± {s['test_acc_std']:.2f} % (paper: {PAPER['test_acc']:.2f} %)."
        + _refit_line(s)
    )


def report_section(results: dict[str, Any], prefix: str = "") -> str:
    body = psmnist.report_section(results, prefix, TITLE, "psmnist_parallel_curves.png")
    s = results["results"]["summary"]
    return (
        body
        + f"\nMean ± std over {s['n_seeds']} seeds: {s['test_acc_mean']:.2f} ± {s['test_acc_std']:.2f} %."
        + _refit_line(s)
        + "\n"
    )
