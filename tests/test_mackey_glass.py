"""``torchlmu reproduce mackey-glass``: models, data direction, quick run end to end, resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from torchlmu.exceptions import ValidationError
from torchlmu.experiments import get
from torchlmu.experiments import mackey_glass as mg
from torchlmu.experiments.harness import RunContext

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_registered():
    assert get("mackey-glass") is mg


def test_parameter_counts():
    cfg = mg.Config()
    counts = {n: mg.n_params(mg.build_model(n, cfg)) for n in mg.MODELS}
    # Keras's LSTM: 4·25·(in + 25 + 1) per layer: 2,700 + 3 × 5,100, readout 26.
    assert counts["lstm"] == 18_026 == mg.PAPER["lstm"]["params"]
    # LMU(49, order 4), every connection and a hidden bias: 2,749 + 3 × 5,149, readout 50.
    assert counts["lmu"] == 18_246
    # LMU(40) 1,885 + LSTM(25) 6,600 + LMU(40) 2,869 + LSTM(25) 6,600 + readout 26.
    assert counts["hybrid"] == 17_980 == mg.PAPER["hybrid"]["params"]
    # Without the hidden bias the LMU has the 18,050 (4 × 49 fewer), the hybrid 17,900.
    nob = replace(cfg, lmu_bias=False)
    assert mg.n_params(mg.build_model("lmu", nob)) == 18_050 == mg.PAPER["lmu"]["params"]
    assert mg.n_params(mg.build_model("hybrid", nob)) == 17_900


def test_lstm_has_one_trainable_bias_per_gate_and_keras_forget_bias():
    lstm = mg.keras_lstm(3, 5)
    assert not lstm.bias_hh_l0.requires_grad and torch.all(lstm.bias_hh_l0 == 0)
    b = lstm.bias_ih_l0.detach()
    assert torch.all(b[5:10] == 1) and torch.all(b[:5] == 0) and torch.all(b[10:] == 0)
    assert mg.n_params(lstm) == 4 * 5 * (3 + 5 + 1)


def test_readouts_and_shapes():
    cfg = mg.Config()
    x = torch.randn(2, 7, 1) * 10  # large inputs: a tanh readout must stay inside (−1, 1)
    for name, bounded in (("lstm", True), ("lmu", False), ("hybrid", True)):
        m = mg.build_model(name, cfg)
        with torch.no_grad():
            y = m(x)
        assert y.shape == (2, 7, 1)
        if bounded:
            assert y.abs().max() < 1
    lmu = mg.build_model("lmu", cfg).layers[0]
    assert lmu.resolved_mode() == "recurrent"  # e_h and e_m on: the paper's cell
    assert lmu.cell.hidden_encoders is not None and lmu.cell.memory_encoders is not None
    assert lmu.cell.hidden.input_kernel is not None and lmu.cell.hidden.bias is not None


def test_forecast_targets_the_future():
    cfg = replace(mg.Config().quick(), length=120)
    d = mg.make_data(cfg)
    h = cfg.horizon
    for x, y in d.values():
        assert x.shape == y.shape and x.shape[1] == 120
        assert torch.equal(y[:, :-h], x[:, h:])  # target[t] = input[t + 15]
        assert not torch.allclose(y[:, h:], x[:, :-h])  # not the swapped (past) target
    sizes = {k: v[0].shape[0] for k, v in d.items()}
    assert sizes == {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    # the splits are different sequences
    assert not torch.allclose(d["train"][0][0], d["test"][0][0])


def test_full_protocol_sizes():
    cfg = mg.Config()
    assert (cfg.n_train, cfg.n_val, cfg.n_test) == (32, 32, 64)
    assert (cfg.length, cfg.horizon, cfg.washout, cfg.data_seed) == (5_000, 15, 100, 0)
    assert (cfg.epochs, cfg.batch, len(cfg.seeds)) == (500, 32, 3)


def test_bad_config():
    with pytest.raises(ValidationError, match=r"Config\.models"):
        mg.check_config(replace(mg.Config(), models=("gru",)))
    with pytest.raises(ValidationError, match=r"Config\.seeds"):
        mg.check_config(replace(mg.Config(), seeds=(0, 0)))
    with pytest.raises(ValidationError, match=r"Config\.epochs"):
        mg.check_config(replace(mg.Config(), epochs=0))
    with pytest.raises(ValidationError, match="model"):
        mg.build_model("gru", mg.Config())


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``torchlmu reproduce ARGS`` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "torchlmu", "reproduce", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)


def test_quick_cli_end_to_end(tmp_path):
    out = tmp_path / "mg"
    p = _cli("mackey-glass", "--quick", "--out", str(out), "--no-progress", "--threads", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| LSTM | 18,026 (18,026) | 2 |" in p.stdout
    r = json.loads((out / "results.json").read_text())
    keys = ("experiment", "complete", "pending", "config", "data", "params", "summary", "results")
    for key in (*keys, "wall_seconds", "threads", "provenance", "paper"):
        assert key in r, key
    assert r["experiment"] == "mackey-glass" and r["quick"] and r["complete"]
    assert r["pending"] == [] and r["threads"] == 1 and r["provenance"]["threads"] == 1
    cfg = mg.Config().quick()
    assert set(r["results"]) == {f"{m}/seed{s}" for m in mg.MODELS for s in cfg.seeds}
    # a tuning run (no --protocol): metrics on the validation split, no statistic of the test
    assert r["mode"] == "tuning" and r["evaluated_split"] == "val"
    assert "target_rms_test" not in r["data"]
    rms = r["data"]["target_rms_val"]
    for piece in r["results"].values():
        assert set(piece["test_nrmse"]) == {"rms", "std", "range"}
        assert piece["epochs"] == cfg.epochs and 1 <= piece["best_epoch"] <= cfg.epochs
        # the paper's NRMSE is RMSE / RMS(target) over the whole evaluated split
        assert piece["test_nrmse"]["rms"] == pytest.approx(math.sqrt(piece["test_mse"]) / rms)
        assert len(piece["plot"]["prediction"]) == cfg.plot_steps
    for name, s in r["summary"].items():
        vals = [r["results"][f"{name}/seed{k}"]["test_nrmse"]["rms"] for k in cfg.seeds]
        assert s["n_seeds"] == 2 and s["nrmse_rms_mean"] == pytest.approx(sum(vals) / 2)
        assert s["nrmse_rms_std"] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2))
        assert r["params"][name]["ours"] == s["params"]
    assert (out / "mackey_glass.png").stat().st_size > 10_000
    assert "Mackey-Glass" in mg.report_section(r)


def test_resume_skips_finished_pieces(tmp_path):
    torch.set_num_threads(1)
    cfg = replace(mg.Config().quick(), models=("lstm",), seeds=(0, 1), epochs=2, length=60)
    ctx = RunContext(out=tmp_path, progress=False, log=lambda s: None)
    first = mg.run(cfg, ctx)
    # a run interrupted after its first piece: only seed 0 in partial.json
    partial = json.loads((tmp_path / "partial.json").read_text())
    del partial["lstm/seed1"]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    (tmp_path / "lstm_seed1" / "last.pt").unlink()
    logs: list[str] = []
    again = mg.run(cfg, RunContext(out=tmp_path, progress=False, resume=True, log=logs.append))
    assert any("resuming" in s for s in logs)
    a, b = first["results"], again["results"]
    assert b["lstm/seed0"]["wall_seconds_this_call"] == a["lstm/seed0"]["wall_seconds_this_call"]
    assert b["lstm/seed1"]["test_mse"] == pytest.approx(a["lstm/seed1"]["test_mse"], rel=1e-6)
    with pytest.raises(ValidationError, match="resume"):
        mg.run(replace(cfg, epochs=3), RunContext(out=tmp_path, progress=False, resume=True))


def test_windowed_protocol_budget_lr_per_model_and_paired_differences(tmp_path):
    """The converged protocol's options: random windows, validation every k steps, early
    stopping, a learning rate per model, and the per-seed paired differences."""
    torch.set_num_threads(1)
    cfg = replace(
        mg.Config().quick(),
        models=("lstm", "lmu"),
        seeds=(0, 1, 2),
        length=80,
        window=20,
        batch=3,
        val_every=2,
        epochs=3,
        patience=1,
        lr_by_model={"lmu": 0.02},
    )
    assert cfg.lr_of("lmu") == 0.02 and cfg.lr_of("lstm") == cfg.lr
    r = mg.run(mg.check_config(cfg), RunContext(out=tmp_path, progress=False, log=lambda s: None))
    for key, piece in r["results"].items():
        assert piece["lr"] == cfg.lr_of(key.split("/")[0])
        assert piece["steps_per_epoch"] == 2 and piece["steps"] == 2 * piece["epochs"]
        assert piece["best_step"] == 2 * piece["best_epoch"]
        # patience 1: training stops at the first validation that does not improve
        assert piece["stopped_early"] == (piece["epochs"] < cfg.epochs)
        losses = [h["val_loss"] for h in piece["history"]]
        assert piece["best_val_loss"] == min(losses)
    d = r["paired"]["lstm-lmu"]
    want = [
        r["results"][f"lstm/seed{s}"]["test_nrmse"]["rms"]
        - r["results"][f"lmu/seed{s}"]["test_nrmse"]["rms"]
        for s in cfg.seeds
    ]
    assert d["seeds"] == [0, 1, 2] and d["differences"] == pytest.approx(want)
    assert d["mean"] == pytest.approx(sum(want) / 3) and d["ci95"][0] < d["mean"] < d["ci95"][1]
    assert r["summary"]["lmu"]["lr"] == [0.02]
    rms = [r["results"][f"lstm/seed{s}"]["test_nrmse"]["rms"] for s in cfg.seeds]
    lo, hi = r["summary"]["lstm"]["nrmse_rms_ci95"]
    half = 4.302652729911275 * r["summary"]["lstm"]["nrmse_rms_std"] / 3**0.5  # t(0.975, df 2)
    assert (lo, hi) == pytest.approx((sum(rms) / 3 - half, sum(rms) / 3 + half), rel=1e-4)
    text = mg.report_section(r)
    assert "Windowed protocol: 3 windows of 20 steps" in text and "| LSTM − LMU | 3 |" in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"window": 0}, "window"),
        ({"window": 10**6}, "window"),
        ({"val_every": 5}, "val_every"),  # without a window
        ({"window": 100, "val_every": 0}, "val_every"),
        ({"patience": 0}, "patience"),
        ({"lr_by_model": {"gru": 1e-3}}, "lr_by_model"),
        ({"lr_by_model": {"lmu": -1.0}}, "lr_by_model"),
    ],
)
def test_bad_windowed_config(change, field):
    with pytest.raises(ValidationError, match=rf"Config\.{field}"):
        mg.check_config(replace(mg.Config(), **change))


def test_jobs_give_the_pieces_of_one_process(tmp_path):
    """--jobs 2 trains the (model, seed) pieces in two spawned processes: every piece, its
    history and the paired differences equal one process's, and partial.json stays seed-major."""
    torch.set_num_threads(1)
    cfg = replace(
        mg.Config().quick(),
        models=("lstm", "hybrid"),
        seeds=(0, 1),
        length=60,
        window=20,
        batch=2,
        val_every=2,
        epochs=2,
    )
    one = mg.run(cfg, RunContext(out=tmp_path / "one", threads=1, progress=False, log=print))
    two = mg.run(
        cfg, RunContext(out=tmp_path / "two", threads=1, jobs=2, progress=False, log=print)
    )
    assert (
        list(one["results"])
        == list(two["results"])
        == [
            "lstm/seed0",
            "hybrid/seed0",
            "lstm/seed1",
            "hybrid/seed1",
        ]
    )
    for key, a in one["results"].items():
        b = two["results"][key]
        assert a["history"] == b["history"], key
        assert (a["test_mse"], a["best_epoch"]) == (b["test_mse"], b["best_epoch"]), key
    assert one["paired"] == two["paired"]
    partial = json.loads((tmp_path / "two" / "partial.json").read_text())
    assert [k for k in partial if not k.startswith("_")] == list(one["results"])


def test_jobs_are_refused_where_pieces_are_not_independent(tmp_path):
    with pytest.raises(ValidationError, match="jobs"):
        RunContext(out=tmp_path, jobs=0)
    p = _cli("capacity", "--quick", "--jobs", "2", "--out", str(tmp_path / "c"))
    assert p.returncode == 2 and "--jobs" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()
