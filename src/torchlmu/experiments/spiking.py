"""The LMU paper's spiking memory: error O(d/√m) and cost O(m) of the memory in m spiking neurons.

The Legendre memory of order d (θ = 0.1 s) is built on Nengo by :func:`torchlmu.spiking.memory_network`
from m Poisson-spiking LIF neurons (max rates 20–40 Hz, as the paper), one ensemble per
coefficient, discrete NEF mapping onto a lowpass synapse τ, simulator step 0.1 ms (the paper's).
It holds a 10 Hz sinusoid (the paper's input). For m from 100 to 20,000 (11 log-spaced values),
several orders d and 5 seeds, the error is the RMS over time (after the first θ) of the norm of
the difference between the network's represented state (normalised, abs(x_i) ≤ 1) and the exact
state of :class:`~torchlmu.LegendreMemory` on the same input (the network's state lags one
simulator step, which is compared exactly). Also reported: the error of the decoded window
u(t − rθ), r ∈ {0, ½, 1}, against the exact memory's decoded window.

Fits (log-log OLS): error vs m per d (paper: slope −½), error vs d at fixed m (paper: ≈ +1),
simulation time and the simulator's signal memory vs m (paper: linear). 95% confidence intervals
come from a bootstrap over seeds (each m's seeds resampled with replacement, 2,000 times).

Choices that differ from the paper's figure (stated in the results): the paper's synapse is 1 ms;
with 20–40 Hz Poisson neurons and θ = 0.1 s the state error then exceeds the ensembles' radius for
most m (measured: norm error 0.5–12 at d = 3, 12), so the default τ is longer (see ``Config``);
the simulation is 3θ long (3,000 steps, not 1,000) so that the error is measured in a steady
state, after the memory has filled. Orders 2, 4, 8: in trial runs (τ = 3 and 30 ms) order 12 kept
a state error above 0.5 up to m = 20,000, i.e. beyond the radius over nearly the whole range.
The full run takes about 4 minutes on one core.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..memory import LegendreMemory
from .harness import RunContext, atomic_write_json, provenance, provenance_line

NAME = "spiking"
TITLE = "Spiking LMU memory on Nengo: error vs neurons m and order d, cost vs m"

PAPER = {
    "error_vs_m_slope": -0.5,
    "error_vs_d_slope": 1.0,
    "time_vs_m_slope": 1.0,
    "setup": "10 Hz sinusoid, Poisson-spiking LIF (20–40 Hz), synapse 1 ms, dt 0.1 ms, 1000 steps, "
    "m = 100 … ~20,000 (11 values), 5 seeds, RMSE vs m with a 5/√m guide",
}


@dataclass
class Config:
    """Full run by default; :meth:`quick` is the small version."""

    orders: tuple[int, ...] = (2, 4, 8)
    n_min: int = 100
    n_max: int = 20_000
    n_values: int = 11
    seeds: int = 5
    theta: float = 0.1  # s
    tau: float = 0.01  # s, recurrent synapse
    dt: float = 1e-4  # s, simulator step
    steps: int = 3000  # 3θ
    warmup_steps: int = 1000  # errors over steps >= θ (memory filled)
    frequency: float = 10.0  # Hz
    amplitude: float = 1.0
    max_rates: tuple[float, float] = (20.0, 40.0)
    r: tuple[float, ...] = (0.0, 0.5, 1.0)
    saturation: float = 0.25  # per-coefficient error above which a point is "saturated"
    bootstrap: int = 2000

    def quick(self) -> Config:
        return replace(self, orders=(2, 4), n_min=100, n_max=2000, n_values=3, seeds=2, steps=1500)

    def neurons(self) -> list[int]:
        """The m values: ``n_values`` log-spaced integers from ``n_min`` to ``n_max``."""
        return sorted({round(v) for v in np.geomspace(self.n_min, self.n_max, self.n_values)})


# ------------------------------------------------------------------------------- BLAS threads
def limit_blas_threads(n: int) -> int:
    """Limit every BLAS library loaded in this process (NumPy's, SciPy's: OpenBLAS, MKL or BLIS)
    to ``n`` threads for the rest of the process, through threadpoolctl; returns how many.

    Nengo solves decoders with NumPy/SciPy; on a shared machine a multi-threaded OpenBLAS waiting
    for busy cores made a 750×750 Cholesky take 1 s instead of 7 ms (measured), so ``--threads``
    limits BLAS too.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=int(n), user_api="blas")  # not a context: kept for the whole run
    return sum(1 for lib in threadpool_info() if lib["user_api"] == "blas")


# ---------------------------------------------------------------------------------- one cell
def _seed(base: int, d: int, m: int, s: int) -> int:
    return int(np.random.SeedSequence([base, d, m, s]).generate_state(1)[0] % (2**31))


def signal(cfg: Config) -> np.ndarray:
    """The input u_k, k = 1 … steps (t = k·dt): ``(steps,)`` float64."""
    t = np.arange(1, cfg.steps + 1) * cfg.dt
    return cfg.amplitude * np.sin(2 * np.pi * cfg.frequency * t)


def exact_memory(cfg: Config, order: int, u: np.ndarray) -> np.ndarray:
    """States ``(steps, order)`` of the ZOH LegendreMemory (float64) after each input."""
    mem = LegendreMemory(1, order, cfg.theta / cfg.dt, dtype=torch.float64)
    with torch.no_grad():
        mem.input_encoders.fill_(1.0)
        return mem(torch.from_numpy(u)[:, None])[0].numpy()


def run_cell(cfg: Config, order: int, n: int, seed: int, m_exact: np.ndarray | None = None) -> dict:
    """Build and simulate one network; errors against the exact memory, time and memory."""
    import nengo
    from nengo.builder import Model
    from nengo.cache import NoDecoderCache

    from ..spiking import memory_network

    u = signal(cfg)
    if m_exact is None:
        m_exact = exact_memory(cfg, order, u)
    net = memory_network(
        order,
        cfg.theta,
        n,
        dt=cfg.dt,
        tau=cfg.tau,
        max_rates=nengo.dists.Uniform(*cfg.max_rates),
        r=cfg.r,
        input=u,
        seed=seed,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Nengo's optimizer note about merging Poisson neurons
        model = Model(dt=cfg.dt, decoder_cache=NoDecoderCache())
        sim = nengo.Simulator(net, dt=cfg.dt, model=model, progress_bar=False)
    build = time.perf_counter() - t0
    with sim:
        t0 = time.perf_counter()
        sim.run_steps(cfg.steps)
        run = time.perf_counter() - t0
        sig_bytes = int(sum(v.nbytes for v in sim.signals.values()))
        x = sim.data[net.probe_state]
        w = sim.data[net.probe_window]
    k0, lag = cfg.warmup_steps, net.delay_steps
    x_ref = (m_exact / net.scale)[k0 - lag : cfg.steps - lag]
    w_ref = (m_exact @ net.decoders.T)[k0 - lag : cfg.steps - lag]
    err = x[k0:] - x_ref
    state_rmse = float(np.sqrt(np.mean(np.sum(err**2, 1))))
    return {
        "order": order,
        "neurons": n,
        "seed": seed,
        "state_rmse": state_rmse,
        "per_coefficient_rmse": state_rmse / math.sqrt(order),
        "window_rmse": float(np.sqrt(np.mean((w[k0:] - w_ref) ** 2))),
        "window_rmse_per_delay": np.sqrt(np.mean((w[k0:] - w_ref) ** 2, 0)).tolist(),
        "state_rms_exact": float(np.sqrt(np.mean(np.sum(x_ref**2, 1)))),
        "build_seconds": build,
        "sim_seconds": run,
        "signal_bytes": sig_bytes,
    }


# --------------------------------------------------------------------------------------- fits
def ols(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares line y = a + b·x: slope b, intercept a, b's standard error and 95% CI (t)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    X = np.stack([np.ones(n), x], 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    out = {"slope": float(coef[1]), "intercept": float(coef[0]), "n": n}
    if n > 2:
        resid = y - X @ coef
        s2 = float(resid @ resid) / (n - 2)
        se = math.sqrt(s2 / float(((x - x.mean()) ** 2).sum()))
        t = float(stats.t.ppf(0.975, n - 2))
        out.update(slope_se=se, slope_ci95=[coef[1] - t * se, coef[1] + t * se])
        ss = float(((y - y.mean()) ** 2).sum())
        out["r2"] = 1 - float(resid @ resid) / ss if ss > 0 else 1.0
    return out


def bootstrap_slope(
    xs: list[float], groups: list[list[float]], n_boot: int, seed: int
) -> dict[str, Any]:
    """Slope of log(mean of each group) vs log(x) and its 95% bootstrap CI over the group members.

    Args:
        xs: one x per group (m or d); groups: the per-seed values at that x.
    """
    lx = np.log(np.asarray(xs, float))
    means = np.array([np.mean(g) for g in groups])
    fit = ols(lx, np.log(means))
    rng = np.random.default_rng(seed)
    slopes = np.empty(n_boot)
    for b in range(n_boot):
        mb = [np.mean(rng.choice(g, size=len(g), replace=True)) for g in groups]
        slopes[b] = np.polyfit(lx, np.log(mb), 1)[0]
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return {
        "slope": fit["slope"],
        "intercept": fit["intercept"],
        "ci95": [float(lo), float(hi)],
        "ols_ci95": fit.get("slope_ci95"),
        "points": len(xs),
    }


def analyse(cells: list[dict], cfg: Config, seed: int) -> dict[str, Any]:
    """All fits from the finished cells."""
    by: dict[tuple[int, int], list[dict]] = {}
    for c in cells:
        by.setdefault((c["order"], c["neurons"]), []).append(c)
    Ms = sorted({m for _, m in by})
    out: dict[str, Any] = {"error_vs_m": {}, "error_vs_d": {}, "time_vs_m": {}, "memory_vs_m": {}}
    for d in cfg.orders:
        ms = [m for m in Ms if (d, m) in by]
        if len(ms) < 2:
            continue
        groups = [[c["state_rmse"] for c in by[d, m]] for m in ms]
        row = {"all": bootstrap_slope(ms, groups, cfg.bootstrap, seed)}
        ok = [
            i for i, g in enumerate(groups) if np.mean(g) / math.sqrt(d) < cfg.saturation
        ]  # unsaturated regime: per-coefficient error < cfg.saturation of the radius
        if len(ok) >= 3:
            row["unsaturated"] = bootstrap_slope(
                [ms[i] for i in ok], [groups[i] for i in ok], cfg.bootstrap, seed
            )
            row["unsaturated"]["m_min"] = ms[ok[0]]
        wg = [[c["window_rmse"] for c in by[d, m]] for m in ms]
        row["window"] = bootstrap_slope(ms, wg, cfg.bootstrap, seed)
        out["error_vs_m"][str(d)] = row
        big = [i for i, m in enumerate(ms) if m >= 1000] or list(range(len(ms)))
        tg = [[c["sim_seconds"] for c in by[d, m]] for m in ms]
        out["time_vs_m"][str(d)] = {
            "all": bootstrap_slope(ms, tg, cfg.bootstrap, seed),
            "m_ge_1000": bootstrap_slope(
                [ms[i] for i in big], [tg[i] for i in big], cfg.bootstrap, seed
            )
            if len(big) >= 2
            else None,
            "linear": ols(np.array(ms, float), np.array([np.mean(g) for g in tg])),
        }
        mem = [np.mean([c["signal_bytes"] for c in by[d, m]]) for m in ms]
        out["memory_vs_m"][str(d)] = ols(np.log(ms), np.log(mem))
    orders = [d for d in cfg.orders if any((d, m) in by for m in Ms)]
    if len(orders) >= 2:
        for m in Ms:
            ds = [d for d in orders if (d, m) in by]
            if len(ds) >= 2:
                groups = [[c["state_rmse"] for c in by[d, m]] for d in ds]
                out["error_vs_d"][str(m)] = bootstrap_slope(ds, groups, cfg.bootstrap, seed)
    return out


# ---------------------------------------------------------------------------------------- run
def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    from ..spiking import import_nengo

    nengo = import_nengo()
    t_start = time.perf_counter()
    if ctx.threads is not None:
        import scipy.linalg  # noqa: F401  (load SciPy's OpenBLAS now, so that it is limited too)

        n_blas = limit_blas_threads(ctx.threads)
        ctx.log(f"spiking: {n_blas} OpenBLAS libraries limited to {ctx.threads} thread(s)")
    partial_path = ctx.out / "partial.json"
    res: dict[str, Any] = {"cells": {}}
    if ctx.resume and partial_path.exists():
        res = json.loads(partial_path.read_text())
        if res.get("config") != json.loads(json.dumps(asdict(cfg))):
            ctx.log("spiking: partial.json has another config; starting afresh")
            res = {"cells": {}}
        else:
            ctx.log(f"resuming spiking: {len(res['cells'])} cells already done")
    res["config"] = asdict(cfg)
    wall_before = res.get("_wall_seconds", 0.0)
    u = signal(cfg)
    Ms = cfg.neurons()
    total = len(cfg.orders) * len(Ms) * cfg.seeds
    for d in cfg.orders:
        m_exact = exact_memory(cfg, d, u)
        for m in Ms:
            for s in range(cfg.seeds):
                key = f"{d}/{m}/{s}"
                if key in res["cells"]:
                    continue
                cell = run_cell(cfg, d, m, _seed(ctx.seed, d, m, s), m_exact)
                res["cells"][key] = cell
                res["_wall_seconds"] = wall_before + time.perf_counter() - t_start
                atomic_write_json(partial_path, res)
            done = [res["cells"][f"{d}/{m}/{s}"] for s in range(cfg.seeds)]
            ctx.log(
                f"d={d} m={m:>6}: state error {np.mean([c['state_rmse'] for c in done]):.4f} "
                f"(window {np.mean([c['window_rmse'] for c in done]):.4f}), "
                f"sim {np.mean([c['sim_seconds'] for c in done]):.2f} s "
                f"[{len(res['cells'])}/{total}]"
            )
    cells = list(res["cells"].values())
    results = {
        "experiment": NAME,
        "quick": ctx.quick,
        "seed": ctx.seed,
        "config": asdict(cfg),
        "neurons": Ms,
        "cells": cells,
        "fits": analyse(cells, cfg, ctx.seed),
        "nengo": nengo.__version__,
        "wall_seconds": wall_before + time.perf_counter() - t_start,
        "provenance": provenance(ctx.threads or 1),
        "paper": PAPER,
    }
    figures(results, ctx.out)
    atomic_write_json(ctx.out / "results.json", results)
    return results


# ------------------------------------------------------------------------------------- output
def _summary(results: dict[str, Any]) -> dict[tuple[int, int], dict[str, float]]:
    acc: dict[tuple[int, int], list[dict]] = {}
    for c in results["cells"]:
        acc.setdefault((c["order"], c["neurons"]), []).append(c)
    return {
        k: {
            "mean": float(np.mean([c["state_rmse"] for c in v])),
            "std": float(np.std([c["state_rmse"] for c in v])),
            "window": float(np.mean([c["window_rmse"] for c in v])),
            "sim": float(np.mean([c["sim_seconds"] for c in v])),
            "bytes": float(np.mean([c["signal_bytes"] for c in v])),
            "n": len(v),
        }
        for k, v in sorted(acc.items())
    }


def _ci(f: dict[str, Any] | None) -> str:
    if not f:
        return "–"
    return f"{f['slope']:+.2f} [{f['ci95'][0]:+.2f}, {f['ci95'][1]:+.2f}]"


def table(results: dict[str, Any]) -> str:
    summ = _summary(results)
    orders = results["config"]["orders"]
    head = (
        "| m | "
        + " | ".join(f"state error d={d}" for d in orders)
        + " | sim s (d="
        + str(orders[-1])
        + ") |"
    )
    lines = [head, "|" + "---|" * (len(orders) + 2)]
    for m in results["neurons"]:
        vals = [
            f"{summ[d, m]['mean']:.4f} ± {summ[d, m]['std']:.4f}" if (d, m) in summ else "–"
            for d in orders
        ]
        sim = summ.get((orders[-1], m), {}).get("sim")
        lines.append(f"| {m:,} | " + " | ".join(vals) + (f" | {sim:.2f} |" if sim else " | – |"))
    fits = results["fits"]
    lines += [
        "",
        "| d | slope vs m (all m) | slope vs m (unsaturated) | window error slope vs m | time slope vs m (m ≥ 1000) |",
        "|---|---|---|---|---|",
    ]
    for d in orders:
        e = fits["error_vs_m"].get(str(d), {})
        t = fits["time_vs_m"].get(str(d), {})
        uns = e.get("unsaturated")
        since = f" (m ≥ {uns['m_min']:,})" if uns else ""
        lines.append(
            f"| {d} | {_ci(e.get('all'))} | {_ci(uns)}{since} "
            f"| {_ci(e.get('window'))} | {_ci(t.get('m_ge_1000'))} |"
        )
    return "\n".join(lines)


def across_runs(runs: list[tuple[str, dict[str, Any]]], m_min: int = 5000) -> str | None:
    """The growth of the error with the order d as a function of τ/θ, over full-size runs made
    with different synapses τ or windows θ (issue 15, item 6): per run and per m >= ``m_min``,
    the log-log slope of the state error vs d with its bootstrap 95 % interval, and the largest
    per-coefficient error there (above ``Config.saturation`` the ensembles saturate, which
    flattens the slope). None unless at least two values of τ/θ were run."""
    rows = []
    for folder, r in runs:
        if r.get("quick"):
            continue
        cfg = r["config"]
        summ = _summary(r)
        for m, f in sorted(r["fits"]["error_vs_d"].items(), key=lambda kv: int(kv[0])):
            if int(m) < m_min:
                continue
            worst = max(
                summ[d, int(m)]["mean"] / math.sqrt(d) for d in cfg["orders"] if (d, int(m)) in summ
            )
            flag = " (saturated)" if worst >= cfg.get("saturation", 0.25) else ""
            rows.append(
                (
                    cfg["tau"] / cfg["theta"],
                    f"| {cfg['tau'] / cfg['theta']:.3g} | {cfg['tau'] * 1e3:g} ms | "
                    f"{cfg['theta']:g} s | {cfg['steps']:,} | {int(m):,} | "
                    f"{'/'.join(str(d) for d in cfg['orders'])} | {_ci(f)} | {worst:.3f}{flag} "
                    f"| `{folder}` |",
                )
            )
    if len({round(k, 12) for k, _ in rows}) < 2:
        return None
    rows.sort(key=lambda kr: kr[0])
    return "\n".join(
        [
            f"## {TITLE}: the error's growth in d vs τ/θ",
            "",
            "Slope of log(state error) vs log(d) at fixed m (seed means, 95 % bootstrap interval "
            "over seeds), for every full run; the paper's +1 was measured at τ = 1 ms, "
            "θ = 0.1 s (τ/θ = 0.01). Worst per-coefficient error: the largest, over d, of "
            "error/√d at that m (≥ 0.25: saturated, which flattens the slope).",
            "",
            "| τ/θ | τ | θ | steps | m | d | slope vs d [95 % CI] | worst per-coefficient error | run |",
            "|---|---|---|---|---|---|---|---|---|",
            *(row for _, row in rows),
            "",
        ]
    )


def report_section(results: dict[str, Any], prefix: str = "") -> str:
    cfg = results["config"]
    fits = results["fits"]
    ev = fits["error_vs_d"]
    m_top = str(max(int(m) for m in ev)) if ev else None
    d_lines = [
        f"- error vs d at m = {int(m):,}: slope {_ci(f)}" for m, f in ev.items() if int(m) >= 1000
    ]
    return "\n".join(
        [
            f"## {TITLE}" + (" (quick)" if results.get("quick") else ""),
            "",
            f"Nengo {results['nengo']}; Poisson-spiking LIF, max rates {cfg['max_rates'][0]:g}–{cfg['max_rates'][1]:g} Hz, "
            f"θ = {cfg['theta']:g} s, recurrent synapse τ = {cfg['tau']:g} s (discrete NEF mapping), dt = {cfg['dt']:g} s, "
            f"{cfg['steps']} steps, errors after the first {cfg['warmup_steps']} steps; input {cfg['frequency']:g} Hz sinusoid; "
            f"{cfg['seeds']} seeds; one 1-D ensemble per coefficient, state normalised by its l1 bound. "
            "State error: RMS over time of ‖x̂ − x‖ (normalised state, exact ZOH memory as reference); "
            "slopes are log-log OLS of the seed means, 95% CI by bootstrap over seeds.",
            "",
            table(results),
            "",
            *d_lines,
            f"- slope vs d at the largest m ({int(m_top):,}): {_ci(ev[m_top])}" if m_top else "",
            "",
            *[
                f"- cost, d = {d}: sim time ≈ {t['linear']['intercept']:.2f} s + "
                f"m × {t['linear']['slope'] * 1e6:.0f} µs for {results['config']['steps']} steps (R² {t['linear'].get('r2', float('nan')):.3f}; fixed per-step "
                f"overhead makes the log-log slope {t['all']['slope']:+.2f} over all m); simulator "
                f"signals ∝ m^{fits['memory_vs_m'][d]['slope']:.2f}"
                for d, t in fits["time_vs_m"].items()
            ],
            "",
            f"Paper: error slope vs m {PAPER['error_vs_m_slope']}, vs d ≈ +{PAPER['error_vs_d_slope']:g}, "
            f"cost linear in m. Setup: {PAPER['setup']}.",
            "",
            f"![error vs m]({prefix}spiking_error.png) ![cost vs m]({prefix}spiking_cost.png)",
            "",
            provenance_line(results),
            "",
        ]
    )


def figures(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = _summary(results)
    orders = results["config"]["orders"]
    fits = results["fits"]
    Ms = np.array(results["neurons"], float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, d in enumerate(orders):
        ms = [m for m in results["neurons"] if (d, m) in summ]
        if not ms:
            continue
        mean = [summ[d, m]["mean"] for m in ms]
        std = [summ[d, m]["std"] for m in ms]
        col = f"C{i}"
        ax.errorbar(ms, mean, yerr=std, fmt="o", color=col, ms=4, capsize=2, label=f"d = {d}")
        f = fits["error_vs_m"].get(str(d), {}).get("all")
        if f:
            ax.plot(
                Ms,
                np.exp(f["intercept"]) * Ms ** f["slope"],
                "-",
                color=col,
                alpha=0.7,
                label=f"fit: slope {f['slope']:+.2f}",
            )
    ax.plot(Ms, 5 / np.sqrt(Ms), "k--", alpha=0.6, label="5/√m")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("neurons m")
    ax.set_ylabel("state RMSE ‖x̂ − x‖")
    ax.set_title("Spiking Legendre memory: error vs neurons")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "spiking_error.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, d in enumerate(orders):
        ms = [m for m in results["neurons"] if (d, m) in summ]
        if not ms:
            continue
        axes[0].loglog(
            ms, [summ[d, m]["sim"] for m in ms], "o-", color=f"C{i}", ms=4, label=f"d = {d}"
        )
        axes[1].loglog(
            ms,
            [summ[d, m]["bytes"] / 2**20 for m in ms],
            "o-",
            color=f"C{i}",
            ms=4,
            label=f"d = {d}",
        )
    ref = Ms / Ms[-1]
    top = max(v["sim"] for v in summ.values())
    axes[0].loglog(Ms, top * ref, "k--", alpha=0.5, label="∝ m")
    axes[0].set_ylabel(f"simulation wall time (s) for {results['config']['steps']} steps")
    axes[1].set_ylabel("simulator signals (MiB)")
    for a in axes:
        a.set_xlabel("neurons m")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle("Cost of the spiking memory vs neurons")
    fig.tight_layout()
    fig.savefig(out / "spiking_cost.png", dpi=120)
    plt.close(fig)


__all__ = [
    "NAME",
    "PAPER",
    "TITLE",
    "Config",
    "analyse",
    "limit_blas_threads",
    "report_section",
    "run",
    "run_cell",
    "table",
]
