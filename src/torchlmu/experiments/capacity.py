"""The LMU paper's memory-capacity (delay) task: LSTM vs untrained LMU, to 100,000 steps.

Input: 10 Hz band-limited white noise scaled into [−1, 1]; a window of 1 s sampled with T steps
(dt = 1/T); sequences of 2.5·T steps; targets: the input delayed by 0, T/4, T/2, 3T/4 and T steps;
100 training and 100 test sequences; error: test MSE per delay over steps t >= T.

Models:

- ``lstm``: LSTM(100) + Linear(5), 41,305 trainable parameters (one bias per gate, as Keras),
  Adam, MSE, batch 50, 500 epochs, best validation epoch (a separate validation set).
- ``lmu0``: the untrained LMU memory, order 100, encoder 1, readout = the Legendre decoders of the
  five delays. Conventions (measured, see results): zero-order hold keeps u_{t−k} over the step
  whose centre lies k + 1/2 steps back, so the decoders sit at r = (k + 1/2)/θ and θ = T + 1/2
  covers the longest delay (r = 1). The paper's convention (decoders at r = k/θ, θ ≈ T) is off by
  half a step, an error ∝ 1/T² that dominates its MSE; it is reported too (``lmu0_paper``).
  Inputs start at their sample closest to 0 (the noise is periodic, so this is a rotation): a
  memory starting from zero then sees no jump, whose ringing would otherwise dominate delay T.
- ``lmu_trained``: the same memory (θ = T) with a linear readout learned from the training set
  (ridge regression: the loss is quadratic in the readout, so its exact minimiser is used).
- ``scale``: the readout trained at T = 1,000 steps per window evaluated, unchanged, at other
  sampling rates by changing only the memory's step (dt = 1000/T).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import legendre, ops
from ..data import capacity_delays, capacity_task
from ..memory import LegendreMemory
from .harness import (
    RunContext,
    atomic_write_json,
    fit,
    load_best,
    model_device,
    n_params,
    provenance,
    provenance_line,
    shuffled_batches,
    to_device,
)

NAME = "capacity"
TITLE = "Memory capacity (delay task)"


@dataclass
class Config:
    """Paper settings by default; :meth:`quick` is the one place where the small version lives."""

    n_train: int = 100
    n_val: int = 50
    n_test: int = 100
    cutoff: float = 10.0
    delays: int = 5
    lmu0_steps: tuple[int, ...] = (100, 1_000, 10_000, 100_000)
    lmu0_order: int = 100
    lstm_steps: tuple[int, ...] = (25, 100, 400, 1600)
    lstm_units: int = 100
    trained_steps: tuple[int, ...] = (25, 100, 400, 1600)
    trained_order: int = 100
    scale_train_steps: int = 1000
    scale_eval_steps: tuple[int, ...] = (500, 1000, 2000)
    epochs: int = 500
    batch: int = 50
    lr: float = 1e-3

    def quick(self) -> Config:
        return replace(
            self,
            n_train=20,
            n_val=10,
            n_test=20,
            lmu0_steps=(100, 1_000),
            lstm_steps=(25, 100),
            trained_steps=(100,),
            scale_train_steps=200,
            scale_eval_steps=(100, 200, 400),
            epochs=10,
            batch=10,
            lr=1e-2,
        )


PAPER = {
    "lmu0": {
        "100": "8e-3 … 2e-2",
        "1000": "7e-5 … 2e-4",
        "10000": "≈ 1e-6",
        "100000": "1e-8 … 1e-6",
    },
    "lstm": "fails (MSE ≈ signal variance) from T = 400",
}


# ------------------------------------------------------------------------------------- data
def _data(n: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x ``(n, 2.5T, 1)``, y ``(n, 2.5T, 5)``) float64, phase-aligned to start near 0."""
    return capacity_task(n, T, seed=seed, y0=0.0)


SPLIT_SEED = {"train": 1, "val": 2, "test": 3}


def _seed(ctx_seed: int, split: str, T: int) -> int:
    return ctx_seed * 1_000_003 + SPLIT_SEED[split] * 100_000_007 + T


def _mse_per_delay(pred: torch.Tensor, y: torch.Tensor, T: int) -> list[float]:
    """Mean over sequences and steps t >= T of the squared error, one value per delay."""
    return (pred[:, T:] - y[:, T:]).double().square().mean((0, 1)).tolist()


# ----------------------------------------------------------------------------------- LMU-0
def lmu0_mse(
    T: int,
    order: int,
    x: torch.Tensor,
    y: torch.Tensor,
    paper_convention: bool = False,
    chunk: int = 10,
) -> list[float]:
    """Untrained LMU: the Legendre decoders of the delays applied to the memory (float64).

    The readout is fused into the kernel (W·H, 5 × length), so the 100-dimensional states of a
    250,000-step sequence are never materialised.
    """
    delays = capacity_delays(T)
    if paper_convention:
        theta, r = float(T), [k / T for k in delays]
    else:
        theta = T + 0.5
        r = [(k + 0.5) / theta for k in delays]
    L = x.shape[1]
    P = legendre.readout(order, r)  # (5, order)
    K = ops.fused_kernel(legendre.impulse_response(order, theta, L), P, 1)  # (L, 5, 1)
    se = torch.zeros(len(delays), dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        pred = ops.fused_conv(x[i : i + chunk].transpose(0, 1), K).transpose(0, 1)
        se += (pred[:, T:] - y[i : i + chunk, T:]).square().sum((0, 1))
    return (se / (x.shape[0] * (L - T))).tolist()


# ------------------------------------------------------------------------------------ LSTM
class LSTMModel(nn.Module):
    """LSTM(units) + Linear(5), with one bias per gate (the second, bias_hh, fixed at 0) so the
    trainable count equals Keras's: 4·u·(1 + u + 1) + 5·(u + 1) = 41,305 for u = 100."""

    def __init__(self, units: int, outputs: int):
        super().__init__()
        self.lstm = nn.LSTM(1, units, batch_first=True)
        self.out = nn.Linear(units, outputs)
        with torch.no_grad():  # Keras's initialisation of its LSTM
            H = units
            nn.init.xavier_uniform_(self.lstm.weight_ih_l0)
            for g in range(4):
                nn.init.orthogonal_(self.lstm.weight_hh_l0[g * H : (g + 1) * H])
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_ih_l0[H : 2 * H] = 1.0  # unit forget bias
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(x)[0])


def fit_readout(m: torch.Tensor, y: torch.Tensor, T: int, ridge: float = 1e-8) -> nn.Linear:
    """Learn the LMU's linear readout from training states by ridge regression (float64).

    The memory is fixed, so the loss is quadratic in the readout and its minimiser is exact;
    gradient descent would only approach it. Fitted on steps t >= T, like the test error. The
    ridge (relative to the mean eigenvalue of XᵀX) keeps the readout from exploiting directions
    the data barely excite: without it, a readout trained at one step size extrapolates badly
    (MSE 0.3–0.8 at delay T) to another; with 1e-8 the training-rate error stays ~1e-12.
    """
    d, k = m.shape[-1], y.shape[-1]
    X = m[:, T:].reshape(-1, d).double()
    X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
    Y = y[:, T:].reshape(-1, k).double()
    G = X.T @ X
    G = G + ridge * torch.trace(G) / G.shape[0] * torch.eye(d + 1, dtype=G.dtype)
    W = torch.linalg.solve(G, X.T @ Y)  # (d + 1, k)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(W[:d].T)
        lin.bias.copy_(W[d])
    return lin


def _train(
    model: nn.Module,
    data: dict[str, tuple[torch.Tensor, torch.Tensor]],
    T: int,
    cfg: Config,
    ctx: RunContext,
    folder: Path,
    desc: str,
) -> dict[str, Any]:
    """Fit on the training set, keep the best validation epoch, evaluate it once on the test set."""
    model.to(ctx.device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    xv, yv = to_device(data["val"], model_device(model))

    def step_loss(m, x, y):
        return (m(x)[:, T:] - y[:, T:]).square().mean(), {}

    def evaluate(m):
        return {"val_loss": float((m(xv)[:, T:] - yv[:, T:]).square().mean())}

    xtr, ytr = data["train"]
    res = fit(
        model,
        opt,
        train_batches=shuffled_batches(xtr, ytr, cfg.batch, ctx.seed),
        step_loss=step_loss,
        evaluate=evaluate,
        epochs=cfg.epochs,
        out=folder,
        resume=ctx.resume,
        progress=ctx.progress,
        desc=desc,
        n_batches=-(-xtr.shape[0] // cfg.batch),
        log=ctx.log,
    )
    load_best(model, res)
    model.eval()
    # the test split in a final run; in a tuning run the validation split (no test metric)
    xt, yt = to_device(data[ctx.eval_split], model_device(model))
    with torch.no_grad():
        mse = _mse_per_delay(model(xt), yt, T)
    secs = [r["train_seconds"] for r in res.history]
    return {
        "test_mse": mse,
        "best_epoch": res.best_epoch,
        "best_val_loss": res.best["val_loss"],
        "params": n_params(model),
        "seconds_per_epoch": sum(secs) / max(len(secs), 1),
        "epochs": len(res.history),
        "history": [{k: r[k] for k in ("epoch", "train_loss", "val_loss")} for r in res.history],
    }


def _memory_states(
    T: int, order: int, x: torch.Tensor, theta_steps: float, dt: float = 1.0
) -> torch.Tensor:
    """States ``(n, L, order)`` of the memory with encoder 1 (window θ steps of the training rate)."""
    mem = LegendreMemory(1, order, theta_steps, dt=dt, batch_first=True)
    with torch.no_grad():
        mem.input_encoders.fill_(1.0)
        return mem(x.float())[0]


# ------------------------------------------------------------------------------------- run
def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    t_start = time.perf_counter()
    partial_path = ctx.out / "partial.json"
    res: dict[str, Any] = {}
    if ctx.resume and partial_path.exists():
        res = json.loads(partial_path.read_text())
        ctx.log(f"resuming capacity: {sorted(res)} already done")

    wall_before = res.get("_wall_seconds", 0.0)  # time spent by interrupted earlier attempts

    def done(key: str, value: Any) -> None:
        res[key] = value
        res["_wall_seconds"] = wall_before + time.perf_counter() - t_start
        atomic_write_json(partial_path, res)

    # Reported errors are on the test split in a final run, on the validation split in a tuning
    # run (ctx.eval_split): a tuning run never draws a test sequence.
    ev = ctx.eval_split
    n_ev = cfg.n_test if ev == "test" else cfg.n_val

    # LMU-0 at every T (float64, fused readout; the evaluation split only: nothing is trained).
    for T in cfg.lmu0_steps:
        key = f"lmu0/{T}"
        if key in res:
            continue
        t0 = time.perf_counter()
        x, y = _data(n_ev, T, _seed(ctx.seed, ev, T))
        mse = lmu0_mse(T, cfg.lmu0_order, x, y)
        paper = lmu0_mse(T, cfg.lmu0_order, x, y, paper_convention=True)
        xr, yr = capacity_task(n_ev, T, seed=_seed(ctx.seed, ev, T))  # no phase alignment
        raw = lmu0_mse(T, cfg.lmu0_order, xr, yr)
        done(
            key,
            {
                "test_mse": mse,
                "test_mse_paper_convention": paper,
                "test_mse_unaligned_start": raw,
                "seconds": time.perf_counter() - t0,
                "params": 0,
            },
        )
        ctx.log(f"LMU-0 T={T}: MSE per delay " + " ".join(f"{v:.2e}" for v in mse))

    def datasets(T: int, dtype=torch.float32):
        return {
            s: tuple(t.to(dtype) for t in _data(n, T, _seed(ctx.seed, s, T)))
            for s, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test))
            if s != "test" or ctx.final
        }

    for T in cfg.lstm_steps:
        key = f"lstm/{T}"
        if key in res:
            continue
        ctx.seed_all(T)
        model = LSTMModel(cfg.lstm_units, cfg.delays)
        out = _train(model, datasets(T), T, cfg, ctx, ctx.subdir(f"lstm_T{T}"), f"LSTM T={T}")
        done(key, out)
        ctx.log(f"LSTM T={T}: MSE per delay " + " ".join(f"{v:.2e}" for v in out["test_mse"]))

    for T in cfg.trained_steps:
        key = f"lmu_trained/{T}"
        if key in res:
            continue
        t0 = time.perf_counter()
        data = {
            s: (_memory_states(T, cfg.trained_order, x, float(T)), y)
            for s, (x, y) in datasets(T).items()
        }
        model = fit_readout(*data["train"], T)
        with torch.no_grad():
            mse = _mse_per_delay(model(data[ev][0]), data[ev][1], T)
        done(
            key,
            {"test_mse": mse, "params": n_params(model) + 1, "seconds": time.perf_counter() - t0},
        )
        ctx.log(f"LMU trained readout T={T}: MSE per delay " + " ".join(f"{v:.2e}" for v in mse))

    if "scale" not in res:
        T0 = cfg.scale_train_steps
        data = {
            s: (_memory_states(T0, cfg.trained_order, x, float(T0)), y)
            for s, (x, y) in datasets(T0).items()
        }
        model = fit_readout(*data["train"], T0)
        evals = {}
        for T in cfg.scale_eval_steps:
            x, y = _data(n_ev, T, _seed(ctx.seed, ev, T))
            # same weights; only the step changes: the window stays 1 s = T0 training steps
            m = _memory_states(T, cfg.trained_order, x, float(T0), dt=T0 / T)
            with torch.no_grad():
                evals[str(T)] = _mse_per_delay(model(m), y.float(), T)
        done("scale", {"train_steps": T0, "test_mse": evals, "params": n_params(model) + 1})
        ctx.log(
            "scale invariance: "
            + "; ".join(f"T={T}: " + " ".join(f"{v:.2e}" for v in e) for T, e in evals.items())
        )

    results = {
        "experiment": NAME,
        "quick": ctx.quick,
        "seed": ctx.seed,
        **ctx.mode(),
        "config": asdict(cfg),
        "delays_fraction": [k / 4 for k in range(cfg.delays)],
        "results": {k: v for k, v in res.items() if not k.startswith("_")},
        "wall_seconds": wall_before + time.perf_counter() - t_start,
        "provenance": provenance(ctx.threads or 1, ctx.device),
        "paper": PAPER,
    }
    figure(results, ctx.out / "capacity_mse.png")
    atomic_write_json(ctx.out / "results.json", results)
    return results


# ---------------------------------------------------------------------------------- output
ALIGNMENT_NOTE = (
    "Alignment: the white noise is periodic (an inverse DFT), and every sequence of this "
    "table but the *unaligned start* rows is rotated cyclically to start at its sample closest to 0 (`y0=0`), spectrum and "
    "scale unchanged, so that a memory starting from zero sees no jump at t = 0. Nengo's "
    "`WhiteSignal(y0=0)` makes the same cyclic roll (to the sample nearest y0). The "
    "*unaligned start* rows evaluate the same noise draws without the "
    "rotation: the jump from the zero initial state to u(0) is a step that the order-d Legendre "
    "window cannot represent, and its error reaches the output of delay T when that step is "
    "T steps old, so the delay-T column rises to about 5e-5…1e-4 while the shorter delays "
    "are nearly unchanged."
)


def _rows(results: dict[str, Any]) -> list[tuple[str, str, list[float]]]:
    rows = []
    for key, v in results["results"].items():
        if key == "scale":
            for T, e in v["test_mse"].items():
                rows.append((f"LMU readout trained at T={v['train_steps']}", T, e))
            continue
        model, T = key.split("/")
        name = {
            "lmu0": "LMU-0 (untrained)",
            "lstm": "LSTM",
            "lmu_trained": "LMU (trained readout)",
        }[model]
        rows.append((name, T, v["test_mse"]))
        if model == "lmu0":
            rows.append(("LMU-0, paper's convention", T, v["test_mse_paper_convention"]))
            if "test_mse_unaligned_start" in v:
                rows.append(("LMU-0, unaligned start", T, v["test_mse_unaligned_start"]))
    return rows


def table(results: dict[str, Any]) -> str:
    fr = results["delays_fraction"]
    head = "| model | T | " + " | ".join(f"MSE delay {f:g}·T" for f in fr) + " |"
    lines = [head, "|" + "---|" * (2 + len(fr))]
    for name, T, e in _rows(results):
        lines.append(f"| {name} | {int(T):,} | " + " | ".join(f"{v:.2e}" for v in e) + " |")
    return "\n".join(lines)


def report_section(results: dict[str, Any], prefix: str = "") -> str:
    r = results["results"]
    extra = []
    for key, v in r.items():
        if key.startswith("lstm/"):
            extra.append(
                f"- {key}: {v['params']:,} trainable parameters, best epoch {v['best_epoch']}/{v['epochs']}, {v['seconds_per_epoch']:.2f} s/epoch"
            )
    return "\n".join(
        [
            f"## {TITLE}" + (" (quick)" if results.get("quick") else ""),
            "",
            table(results),
            "",
            "Paper (LMU-0 test MSE): T=100: 8e-3 … 2e-2; T=1k: 7e-5 … 2e-4; T=10k: ≈ 1e-6; T=100k: 1e-8 … 1e-6. "
            "LSTM: fails (MSE ≈ signal variance) from T = 400.",
            "",
            ALIGNMENT_NOTE,
            "",
            *extra,
            "",
            f"![capacity]({prefix}capacity_mse.png)",
            "",
            provenance_line(results),
            "",
        ]
    )


def figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    fr = results["delays_fraction"]
    styles = {
        "LSTM": "o--",
        "LMU-0 (untrained)": "s-",
        "LMU (trained readout)": "^-",
        "LMU-0, paper's convention": "x:",
    }
    for name, T, e in _rows(results):
        if name.startswith("LMU readout trained"):
            continue
        # every delay, 0 included (a log axis would drop it); the error spans decades: log y
        ax.semilogy(
            fr,
            [max(v, 1e-20) for v in e],
            styles.get(name, ".-"),
            label=f"{name}, T={int(T):,}",
            alpha=0.85,
        )
    ax.set_xticks(fr, [f"{f:g}" for f in fr])
    ax.set_xlabel("delay (fraction of the window θ)")
    ax.set_ylabel("test MSE (t ≥ T)")
    ax.set_title("Memory capacity: test MSE vs delay")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["NAME", "Config", "report_section", "run", "table"]
