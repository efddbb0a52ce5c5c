"""Mackey-Glass 15-step-ahead prediction: LSTM vs LMU vs hybrid (LMU paper, corrected protocol).

The paper's released notebook swapped input and target (it predicted the past); the authors'
corrected run, which this experiment reproduces, feeds ``x[t]`` and predicts ``x[t + 15]``.

Data: 128 sequences (data seed 0) of the paper's generator
(:func:`~torchlmu.data.mackey_glass_euler`: Euler step 0.1, random history, ``tanh(x − 1)``),
5,000 + 15 samples each after a 100-sample washout, the global mean removed; input ``x[t]``,
target ``x[t + 15]`` (5,000 steps). The first 32 sequences train, the next 32 validate, the last
64 test.

Models (four recurrent layers, then one output unit):

- ``lstm``: 4 × LSTM(25), readout Dense(1, tanh). One bias per gate (PyTorch's second bias,
  ``bias_hh``, is fixed at 0), so the trainable count is Keras's: 4·25·(in + 25 + 1) per layer.
- ``lmu``: 4 × LMU(49 units, order 4, θ = 4), the paper's cell with every connection
  (e_x, e_h, e_m, W_x, W_h, W_m) and a hidden bias, readout Dense(1) (linear).
- ``hybrid``: LMU(40, 4, 4) → LSTM(25) → LMU(40, 4, 4) → LSTM(25), readout Dense(1, tanh).

Training: Adam (learning rate 1e-3), MSE over every step, batch 32 (one step per epoch), 500
epochs; the epoch with the lowest validation MSE is evaluated once on the test set. Reported:
test NRMSE in the three conventions of :func:`~torchlmu.data.nrmse` (``"rms"`` is the paper's:
RMSE / RMS(target)), test MSE, seconds per epoch; mean ± sample standard deviation over
``Config.seeds`` (model initialisations; the data are the same for every seed).

A cheaper converged protocol (issue 15, item 5; ``results/PLAN.md``) trains on random windows
instead: ``window`` (steps per window, cut from the training sequences; ``batch`` windows per
step), ``val_every`` (training steps between validations on the whole validation sequences;
an "epoch" of the log is then one such round, so the step budget is ``epochs × val_every``,
equal for every model), ``patience`` (early stopping after that many validations without a
better validation MSE) and ``lr_by_model`` (a learning rate per model, chosen on validation).
Results then also give, per pair of models, the per-seed differences of NRMSE with a 95 %
t-interval (the seeds pair the models: seed s draws the same windows for every model).

Every finished (model, seed) piece is saved in ``partial.json`` (and ``results.json`` is rewritten
with what has finished), and every piece checkpoints each epoch, so ``--resume`` continues an
interrupted run where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import mackey_glass_euler, mackey_glass_forecast, nrmse
from ..data.metrics import NRMSE_CONVENTIONS
from ..exceptions import ValidationError
from ..lmu import LMU
from .harness import (
    RunContext,
    atomic_write_json,
    fit,
    load_best,
    map_pieces,
    mean_std_ci,
    model_device,
    n_params,
    provenance,
    provenance_line,
    random_windows,
    shuffled_batches,
    to_device,
)

NAME = "mackey-glass"
TITLE = "Mackey-Glass 15-step prediction (LSTM vs LMU vs hybrid)"

MODELS = ("lstm", "lmu", "hybrid")
LABELS = {"lstm": "LSTM", "lmu": "LMU", "hybrid": "Hybrid"}

#: The authors' corrected run (TensorFlow, CPU): NRMSE = RMSE / RMS(target). The LSTM's count is
#: exact; the LMU's and the hybrid's are the approximate figures quoted in the issue.
PAPER: dict[str, dict[str, float]] = {
    "lstm": {"nrmse": 0.0587, "params": 18_026, "tf_cpu_seconds_per_epoch": 6.0},
    "lmu": {"nrmse": 0.0487, "params": 18_050, "tf_cpu_seconds_per_epoch": 5.4},
    "hybrid": {"nrmse": 0.0447, "params": 17_980, "tf_cpu_seconds_per_epoch": 5.7},
}


# The (model, seed) pieces are independent: ``--jobs N`` trains them in N processes.
PARALLEL_PIECES = True


@dataclass
class Config:
    """The corrected protocol by default; :meth:`quick` is the small version (same models)."""

    n_train: int = 32
    n_val: int = 32
    n_test: int = 64
    length: int = 5_000
    horizon: int = 15
    washout: int = 100
    data_seed: int = 0
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 500
    batch: int = 32
    lr: float = 1e-3
    lstm_units: int = 25
    lmu_units: int = 49
    hybrid_lmu_units: int = 40
    order: int = 4
    theta: float = 4.0
    lmu_bias: bool = True
    plot_steps: int = 500
    # The windowed, early-stopped protocol (module docstring); None / 1 / None / None: the paper's.
    window: int | None = None
    val_every: int = 1
    patience: int | None = None
    lr_by_model: dict[str, float] | None = None

    def lr_of(self, name: str) -> float:
        """The learning rate of model ``name``: ``lr_by_model[name]`` if given, else ``lr``."""
        return float((self.lr_by_model or {}).get(name, self.lr))

    def steps_per_epoch(self) -> int:
        """Training steps between two validations (one "epoch" of the log)."""
        return self.val_every if self.window is not None else -(-self.n_train // self.batch)

    def quick(self) -> Config:
        return replace(
            self,
            n_train=4,
            n_val=2,
            n_test=4,
            length=300,
            seeds=(0, 1),
            epochs=4,
            batch=2,
            lr=3e-3,
            plot_steps=200,
        )


def check_config(cfg: Config) -> Config:
    """Raise :class:`~torchlmu.exceptions.ValidationError` on a setting the run cannot use."""
    for name in ("n_train", "n_val", "n_test", "length", "horizon", "epochs", "batch"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValidationError(f"Config.{name}", "a positive integer", repr(v))
    if not isinstance(cfg.washout, int) or cfg.washout < 0:
        raise ValidationError("Config.washout", "an integer >= 0", repr(cfg.washout))
    if not cfg.models or any(m not in MODELS for m in cfg.models):
        raise ValidationError("Config.models", f"a non-empty tuple of {MODELS}", repr(cfg.models))
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValidationError("Config.seeds", "a non-empty tuple of distinct ints", cfg.seeds)
    if not (isinstance(cfg.lr, float) and cfg.lr > 0):
        raise ValidationError("Config.lr", "a positive float", repr(cfg.lr))

    def positive_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if cfg.window is not None and not (positive_int(cfg.window) and cfg.window <= cfg.length):
        raise ValidationError(
            "Config.window", f"None or an integer in 1 … {cfg.length} (length)", repr(cfg.window)
        )
    if not positive_int(cfg.val_every) or (cfg.window is None and cfg.val_every != 1):
        raise ValidationError(
            "Config.val_every",
            "a positive integer (1 unless Config.window is set: whole-sequence training "
            "validates after every epoch)",
            repr(cfg.val_every),
        )
    if cfg.patience is not None and not positive_int(cfg.patience):
        raise ValidationError("Config.patience", "None or a positive integer", repr(cfg.patience))
    if cfg.lr_by_model is not None and not (
        isinstance(cfg.lr_by_model, dict)
        and all(k in MODELS for k in cfg.lr_by_model)
        and all(isinstance(v, float) and v > 0 for v in cfg.lr_by_model.values())
    ):
        raise ValidationError(
            "Config.lr_by_model",
            f"None or a dict {{model: positive float}} with models in {MODELS}",
            repr(cfg.lr_by_model),
        )
    return cfg


# ------------------------------------------------------------------------------------- data
def make_data(cfg: Config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train"|"val"|"test": (x (n, length, 1), y (n, length, 1))}`` float32, y[t] = x[t + h].

    One draw of ``n_train + n_val + n_test`` sequences of the paper's generator (its global mean
    removed over all of them), split in that order.
    """
    n = cfg.n_train + cfg.n_val + cfg.n_test
    series = mackey_glass_euler(
        n, cfg.length + cfg.horizon, washout=cfg.washout, seed=cfg.data_seed
    )
    x, y = mackey_glass_forecast(series, cfg.horizon)
    x, y = x.float(), y.float()
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


# ----------------------------------------------------------------------------------- models
def keras_lstm(input_size: int, units: int) -> nn.LSTM:
    """One LSTM layer initialised like Keras's (Glorot-uniform input kernel, orthogonal
    recurrent kernel per gate, zero bias with forget bias 1) with one bias per gate: PyTorch's
    second bias ``bias_hh`` stays 0 and is not trained, so it has 4·u·(in + u + 1) parameters."""
    lstm = nn.LSTM(input_size, units, batch_first=True)
    with torch.no_grad():
        nn.init.xavier_uniform_(lstm.weight_ih_l0)
        for g in range(4):
            nn.init.orthogonal_(lstm.weight_hh_l0[g * units : (g + 1) * units])
        lstm.bias_ih_l0.zero_()
        lstm.bias_ih_l0[units : 2 * units] = 1.0  # PyTorch's gate order: i, f, g, o
        lstm.bias_hh_l0.zero_()
    lstm.bias_hh_l0.requires_grad_(False)
    return lstm


def paper_lmu(input_size: int, units: int, order: int, theta: float, bias: bool) -> LMU:
    """The paper's LMU layer: every encoder and kernel on, tanh hidden (recurrent training)."""
    return LMU(
        input_size,
        units,
        order,
        theta,
        hidden_to_memory=True,
        memory_to_memory=True,
        input_to_hidden=True,
        bias=bias,
        batch_first=True,
    )


class Forecaster(nn.Module):
    """A stack of LSTM/LMU layers (batch first, every step) and a one-unit readout.

    Args:
        layers: ``[("lstm" | "lmu", units), ...]`` from the input upwards.
        readout: ``"tanh"`` or ``"linear"``.
        order, theta, lmu_bias: settings of the LMU layers.
    """

    def __init__(
        self,
        layers: list[tuple[str, int]],
        readout: str,
        *,
        order: int = 4,
        theta: float = 4.0,
        lmu_bias: bool = True,
    ) -> None:
        super().__init__()
        if readout not in ("tanh", "linear"):
            raise ValidationError("readout", "'tanh' or 'linear'", repr(readout))
        mods: list[nn.Module] = []
        size = 1
        for kind, units in layers:
            if kind == "lstm":
                mods.append(keras_lstm(size, units))
            elif kind == "lmu":
                mods.append(paper_lmu(size, units, order, theta, lmu_bias))
            else:
                raise ValidationError("layers", "kinds 'lstm' or 'lmu'", repr(kind))
            size = units
        self.layers = nn.ModuleList(mods)
        self.out = nn.Linear(size, 1)
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(B, T, 1)`` -> prediction ``(B, T, 1)``."""
        for layer in self.layers:
            x = layer(x)[0]
        y = self.out(x)
        return torch.tanh(y) if self.readout == "tanh" else y


def build_model(name: str, cfg: Config) -> Forecaster:
    """The model ``name`` (one of :data:`MODELS`) of the experiment."""
    u, lu, hu = cfg.lstm_units, cfg.lmu_units, cfg.hybrid_lmu_units
    if name == "lstm":
        layers, readout = [("lstm", u)] * 4, "tanh"
    elif name == "lmu":
        layers, readout = [("lmu", lu)] * 4, "linear"
    elif name == "hybrid":
        layers, readout = [("lmu", hu), ("lstm", u), ("lmu", hu), ("lstm", u)], "tanh"
    else:
        raise ValidationError("model", f"one of {MODELS}", repr(name))
    return Forecaster(layers, readout, order=cfg.order, theta=cfg.theta, lmu_bias=cfg.lmu_bias)


# ---------------------------------------------------------------------------------- training


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def train_one(
    name: str,
    seed: int,
    data: dict[str, tuple[torch.Tensor, torch.Tensor]],
    cfg: Config,
    ctx: RunContext,
) -> dict[str, Any]:
    """Train model ``name`` from initialisation ``seed``; the best validation epoch is tested."""
    ctx.seed_all(1_000 * seed + MODELS.index(name))
    model = build_model(name, cfg).to(ctx.device)
    lr = cfg.lr_of(name)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    xtr, ytr = data["train"]
    # the same batch seed for every model: seed s sees the same data stream in each
    batch_seed = ctx.seed * 1_000 + seed
    batches = (
        shuffled_batches(xtr, ytr, cfg.batch, batch_seed)
        if cfg.window is None
        else random_windows(xtr, ytr, cfg.window, cfg.batch, cfg.val_every, batch_seed)
    )
    xv, yv = to_device(data["val"], model_device(model))

    def step_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return (m(x) - y).square().mean(), {}

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"val_loss": float((m(xv) - yv).square().mean())}

    t0 = time.perf_counter()
    res = fit(
        model,
        opt,
        train_batches=batches,
        step_loss=step_loss,
        evaluate=evaluate,
        epochs=cfg.epochs,
        out=ctx.subdir(f"{name}_seed{seed}"),
        resume=ctx.resume,
        progress=ctx.progress,
        desc=f"{LABELS[name]} seed {seed}",
        n_batches=cfg.steps_per_epoch(),
        log=ctx.log,
        patience=cfg.patience,
    )
    wall = time.perf_counter() - t0
    load_best(model, res)
    model.eval()
    # the test split in a final run; in a tuning run the validation split (no test metric)
    xt, yt = to_device(data[ctx.eval_split], model_device(model))
    with torch.no_grad():
        pred = model(xt).double()
    target = yt.double()
    secs = [r["epoch_seconds"] for r in res.history]
    train_secs = [r["train_seconds"] for r in res.history]
    k = min(cfg.plot_steps, target.shape[1])
    return {
        "model": name,
        "seed": seed,
        "params": n_params(model),
        "test_nrmse": {c: float(nrmse(pred, target, convention=c)) for c in NRMSE_CONVENTIONS},
        "test_mse": float((pred - target).square().mean()),
        "best_epoch": res.best_epoch,
        "best_val_loss": res.best["val_loss"],
        "epochs": len(res.history),
        "lr": lr,
        "steps_per_epoch": cfg.steps_per_epoch(),
        "best_step": res.best_epoch * cfg.steps_per_epoch(),
        "steps": len(res.history) * cfg.steps_per_epoch(),
        "stopped_early": res.stopped_early_after is not None,
        "seconds_per_epoch": sum(secs) / max(len(secs), 1),
        "train_seconds_per_epoch": sum(train_secs) / max(len(train_secs), 1),
        "wall_seconds_this_call": wall,
        "resumed_from_epoch": res.resumed_from,
        "history": [{k_: r[k_] for k_ in ("epoch", "train_loss", "val_loss")} for r in res.history],
        # the last plot_steps steps of test sequence 0: truth, prediction, input
        "plot": {
            "target": target[0, -k:, 0].tolist(),
            "prediction": pred[0, -k:, 0].tolist(),
            "input": xt[0, -k:, 0].double().tolist(),
        },
    }


# ------------------------------------------------------------------------------------- run
def _key(name: str, seed: int) -> str:
    return f"{name}/seed{seed}"


def summarise(pieces: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Per model: mean ± sample std of the test metrics over the seeds that finished, and the
    95 % t-interval of the mean NRMSE (rms) (None for one seed)."""
    out: dict[str, Any] = {}
    for name in cfg.models:
        runs = [pieces[_key(name, s)] for s in cfg.seeds if _key(name, s) in pieces]
        if not runs:
            continue
        s: dict[str, Any] = {"n_seeds": len(runs), "seeds": [r["seed"] for r in runs]}
        for c in NRMSE_CONVENTIONS:
            s[f"nrmse_{c}_mean"], s[f"nrmse_{c}_std"] = _mean_std(
                [r["test_nrmse"][c] for r in runs]
            )
        # the protocol's primary outcome: the 95 % t-interval of the mean NRMSE (rms)
        s["nrmse_rms_ci95"] = mean_std_ci([r["test_nrmse"]["rms"] for r in runs])["ci95"]
        s["mse_mean"], s["mse_std"] = _mean_std([r["test_mse"] for r in runs])
        s["seconds_per_epoch"] = _mean_std([r["seconds_per_epoch"] for r in runs])[0]
        s["train_seconds_per_epoch"] = _mean_std([r["train_seconds_per_epoch"] for r in runs])[0]
        s["params"] = runs[0]["params"]
        s["lr"] = sorted({r.get("lr", cfg.lr) for r in runs})
        s["best_val_loss_mean"] = _mean_std([r["best_val_loss"] for r in runs])[0]
        if all("best_step" in r for r in runs):
            s["best_step_mean"] = _mean_std([float(r["best_step"]) for r in runs])[0]
            s["stopped_early"] = sum(bool(r["stopped_early"]) for r in runs)
        out[name] = s
    return out


def paired_differences(pieces: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Per pair of models ``"a-b"``: the per-seed differences NRMSE(a) − NRMSE(b) (``rms``,
    the paper's) over the seeds both finished, with mean, sample std and 95 % t-interval
    (:func:`~torchlmu.experiments.harness.mean_std_ci`); pairs with fewer than 2 such seeds
    are left out. A negative difference: ``a`` predicts better."""
    out: dict[str, Any] = {}
    names = list(cfg.models)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            seeds = [s for s in cfg.seeds if _key(a, s) in pieces and _key(b, s) in pieces]
            if len(seeds) < 2:
                continue
            d = [
                pieces[_key(a, s)]["test_nrmse"]["rms"] - pieces[_key(b, s)]["test_nrmse"]["rms"]
                for s in seeds
            ]
            out[f"{a}-{b}"] = {"seeds": seeds, "differences": d, **mean_std_ci(d)}
    return out


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """Train every (model, seed) of ``cfg`` (seed-major: each seed of every model before the
    next seed), writing ``partial.json`` and ``results.json`` after each; returns the results."""
    check_config(cfg)
    t_start = time.perf_counter()
    partial_path = ctx.out / "partial.json"
    res: dict[str, Any] = {}
    if ctx.resume and partial_path.exists():
        res = json.loads(partial_path.read_text())
        if res.get("_config") not in (None, json.loads(json.dumps(asdict(cfg)))):
            raise ValidationError(
                "resume",
                "the configuration of the interrupted run in " + str(ctx.out),
                "a different configuration",
                hint="use another --out, or the same --quick setting",
            )
        ctx.log(f"resuming mackey-glass: {sorted(k for k in res if not k.startswith('_'))} done")
    wall_before = res.get("_wall_seconds", 0.0)
    res["_config"] = asdict(cfg)

    data = make_data(cfg)
    counts = {name: n_params(build_model(name, cfg)) for name in cfg.models}
    for name, c in counts.items():
        paper = PAPER[name]["params"]
        ctx.log(
            f"{LABELS[name]}: {c:,} trainable parameters (issue/paper: {paper:,}; {c - paper:+,})"
        )

    def results_now() -> dict[str, Any]:
        pieces = {k: v for k, v in res.items() if not k.startswith("_")}
        pending = [_key(n, s) for s in cfg.seeds for n in cfg.models if _key(n, s) not in pieces]
        return {
            "experiment": NAME,
            "quick": ctx.quick,
            "seed": ctx.seed,
            **ctx.mode(),
            "complete": not pending,
            "pending": pending,
            "config": asdict(cfg),
            "data": {
                "sequences": {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test},
                "steps": cfg.length,
                "horizon": cfg.horizon,
                "target": f"x[t + {cfg.horizon}] (the future) from input x[t]",
                # the RMS of the targets the reported NRMSE divides by: the test split's in a
                # final run, the validation split's in a tuning run (no test statistic)
                f"target_rms_{ctx.eval_split}": float(
                    data[ctx.eval_split][1].double().square().mean().sqrt()
                ),
            },
            "params": {n: {"ours": c, "paper": PAPER[n]["params"]} for n, c in counts.items()},
            "summary": summarise(pieces, cfg),
            "paired": paired_differences(pieces, cfg),
            "results": pieces,
            "wall_seconds": wall_before + time.perf_counter() - t_start,
            "threads": ctx.threads,
            "provenance": provenance(ctx.threads or 1, ctx.device),
            "paper": PAPER,
        }

    def publish() -> dict[str, Any]:
        results = results_now()
        if results["results"]:
            figure(results, ctx.out / "mackey_glass.png")
        atomic_write_json(ctx.out / "results.json", results)
        return results

    pending = [(n, s) for s in cfg.seeds for n in cfg.models if _key(n, s) not in res]
    if ctx.jobs == 1:
        calls = [(n, s, data, cfg, ctx) for n, s in pending]
        pieces = map_pieces(train_one, calls)
    else:
        calls = [(n, s, data, cfg, ctx.for_worker()) for n, s in pending]
        pieces = map_pieces(_train_in_worker, calls, ctx.jobs)
        ctx.log(f"mackey-glass: {len(calls)} pieces in {ctx.jobs} worker processes")
    for i, piece in pieces:
        name, seed = pending[i]
        res[_key(name, seed)] = piece
        # seed-major order whatever order the pieces finished in
        res = {k: res[k] for k in sorted(res, key=_order(cfg))}
        res["_wall_seconds"] = wall_before + time.perf_counter() - t_start
        atomic_write_json(partial_path, res)
        ctx.log(
            f"{LABELS[name]} seed {seed}: {ctx.eval_split} NRMSE (rms) {piece['test_nrmse']['rms']:.4f}, "
            f"MSE {piece['test_mse']:.3e}, best epoch {piece['best_epoch']}/{piece['epochs']}, "
            f"{piece['seconds_per_epoch']:.2f} s/epoch"
        )
        publish()
    return publish()


def _order(cfg: Config):
    """Sort key of partial.json's entries: its private fields, then (seed, model) as configured."""
    rank = {_key(n, s): i for i, (s, n) in enumerate((s, n) for s in cfg.seeds for n in cfg.models)}
    return lambda k: (0, k) if k.startswith("_") else (1, rank.get(k, len(rank)))


def _train_in_worker(name: str, seed: int, data, cfg: Config, ctx_fields: dict[str, Any]):
    """:func:`train_one` in a worker process of :func:`~.harness.map_pieces`."""
    return train_one(name, seed, data, cfg, RunContext(**ctx_fields))


# ---------------------------------------------------------------------------------- output
def _pm(mean: float, std: float | None, fmt: str) -> str:
    return format(mean, fmt) + ("" if std is None else " ± " + format(std, fmt))


def _epoch_unit(results: dict[str, Any]) -> str:
    """What one of the run's "epochs" is: the paper's (the whole training sequence), or, in the
    windowed protocol, one validation interval of ``val_every`` steps (not comparable with the
    paper's epoch time)."""
    cfg = results["config"]
    return "epoch" if cfg.get("window") is None else f"{cfg['val_every']} steps"


def table(results: dict[str, Any]) -> str:
    """Markdown table: per model, mean ± std over the finished seeds, beside the paper."""
    unit = _epoch_unit(results)
    time_col = "s/epoch (TF paper)" if unit == "epoch" else f"s per {unit} (TF paper: s/epoch)"
    lines = [
        "| model | params (paper) | seeds | NRMSE rms (paper) | NRMSE std | NRMSE range "
        f"| test MSE | {time_col} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results["summary"].items():
        p = results["paper"][name]
        lines.append(
            f"| {LABELS[name]} | {s['params']:,} ({p['params']:,}) | {s['n_seeds']} "
            f"| {_pm(s['nrmse_rms_mean'], s['nrmse_rms_std'], '.4f')} ({p['nrmse']:.4f}) "
            f"| {_pm(s['nrmse_std_mean'], s['nrmse_std_std'], '.4f')} "
            f"| {_pm(s['nrmse_range_mean'], s['nrmse_range_std'], '.4f')} "
            f"| {_pm(s['mse_mean'], s['mse_std'], '.2e')} "
            f"| {s['seconds_per_epoch']:.2f} ({p['tf_cpu_seconds_per_epoch']:.1f}) |"
        )
    return "\n".join(lines)


def protocol_lines(results: dict[str, Any]) -> list[str]:
    """The windowed protocol's per-model training facts and the paired differences (Markdown
    lines; none for a run of the paper's whole-sequence protocol)."""
    cfg = results["config"]
    if cfg.get("window") is None:
        return []
    split = results.get("evaluated_split", "test")
    lines = [
        f"Windowed protocol: {cfg['batch']} windows of {cfg['window']} steps per training step, "
        f"validation every {cfg['val_every']} steps, budget {cfg['epochs'] * cfg['val_every']:,} "
        f"steps per model, patience {cfg['patience']} validations.",
        "",
        f"| model | learning rate | best step (mean) | stopped early | best val MSE (mean) "
        f"| {split} NRMSE (rms), mean ± std | its 95 % interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in results["summary"].items():
        ci = s.get("nrmse_rms_ci95")
        lines.append(
            f"| {LABELS[name]} | {', '.join(f'{v:g}' for v in s['lr'])} "
            f"| {s.get('best_step_mean', float('nan')):,.0f} "
            f"| {s.get('stopped_early', 0)} of {s['n_seeds']} | {s['best_val_loss_mean']:.3e} "
            f"| {_pm(s['nrmse_rms_mean'], s['nrmse_rms_std'], '.4f')} "
            f"| {'' if ci is None else f'[{ci[0]:.4f}, {ci[1]:.4f}]'} |"
        )
    paired = results.get("paired") or {}
    if paired:
        lines += [
            "",
            f"Paired differences of {split} NRMSE (rms) over seeds (negative: the first model "
            "is better), mean ± std and 95 % t-interval:",
            "",
            "| pair | seeds | mean difference | 95 % interval |",
            "|---|---|---|---|",
        ]
        for pair, d in paired.items():
            a, b = pair.split("-")
            lo, hi = d["ci95"]
            lines.append(
                f"| {LABELS[a]} − {LABELS[b]} | {d['n']} | {d['mean']:+.4f} ± {d['std']:.4f} "
                f"| [{lo:+.4f}, {hi:+.4f}] |"
            )
    return [*lines, ""]


def report_section(results: dict[str, Any], prefix: str = "") -> str:
    """The report's Markdown section for this experiment."""
    status = (
        "all (model, seed) pieces finished"
        if results["complete"]
        else "unfinished: " + ", ".join(results["pending"]) + " still to run (`--resume`)"
    )
    return "\n".join(
        [
            f"## {TITLE}" + (" (quick)" if results.get("quick") else ""),
            "",
            table(results),
            "",
            "NRMSE = RMSE / RMS(target) (`rms`, the paper's), RMSE / std(target) (`std`), "
            "RMSE / range(target) (`range`); mean ± sample std over seeds (model initialisations); "
            f"s per {_epoch_unit(results)}: training steps + validation, {results['threads']} "
            f"thread(s). Status: {status}.",
            "",
            *protocol_lines(results),
            f"![mackey-glass]({prefix}mackey_glass.png)",
            "",
            provenance_line(results),
            "",
        ]
    )


def figure(results: dict[str, Any], path: Path) -> None:
    """Predictions vs truth on the end of test sequence 0 (lowest seed), and NRMSE bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pieces = results["results"]
    summary = results["summary"]
    fig, (a, b) = plt.subplots(
        1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2.2, 1]}, squeeze=True
    )
    truth_drawn = False
    for name in summary:
        seed = min(summary[name]["seeds"])
        p = pieces[_key(name, seed)]["plot"]
        t = range(-len(p["target"]), 0)
        if not truth_drawn:
            a.plot(t, p["target"], "k-", lw=2.2, alpha=0.6, label="truth x[t+15]")
            a.plot(t, p["input"], color="0.6", lw=1, ls=":", label="input x[t]")
            truth_drawn = True
        a.plot(t, p["prediction"], lw=1, label=f"{LABELS[name]} (seed {seed})")
    a.set_xlabel("step (relative to the end of test sequence 0)")
    a.set_ylabel("value")
    a.set_title("15-step-ahead prediction on a test sequence")
    a.legend(fontsize=7, loc="upper left")
    names = list(summary)
    xs = range(len(names))
    means = [summary[n]["nrmse_rms_mean"] for n in names]
    errs = [summary[n]["nrmse_rms_std"] or 0.0 for n in names]
    b.bar(xs, means, yerr=errs, capsize=4, color="tab:blue", alpha=0.7, label="torchlmu")
    b.scatter(
        xs, [results["paper"][n]["nrmse"] for n in names], color="tab:red", zorder=3, label="paper"
    )
    b.set_xticks(list(xs), [f"{LABELS[n]}\n(n={summary[n]['n_seeds']})" for n in names])
    b.set_ylabel("test NRMSE (RMSE / RMS)")
    b.set_title("Test NRMSE (mean ± std over seeds)")
    b.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "MODELS",
    "NAME",
    "PAPER",
    "TITLE",
    "Config",
    "Forecaster",
    "build_model",
    "make_data",
    "report_section",
    "run",
    "table",
]
