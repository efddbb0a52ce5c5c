"""The deep-psmnist, deep-smnist and deep-sfmnist experiments: a final quick run tests once and
records its protocol; a tuning run reads no test sequence. About 10 s each on one thread (MNIST
or Fashion-MNIST needed)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import needs_fashion_mnist, needs_mnist, refuse_test_reads

from torchlmu.exceptions import ValidationError
from torchlmu.experiments import deep_psmnist, deep_sfmnist, deep_smnist, get, psmnist
from torchlmu.experiments.harness import RunContext, n_params


def test_registered_and_configured():
    assert get("deep-psmnist") is deep_psmnist and get("deep-smnist") is deep_smnist
    assert deep_psmnist.Config().permute and not deep_smnist.Config().permute
    model = deep_psmnist.build_model(deep_psmnist.Config())
    assert model.num_blocks == 4 and model.d_model == 64 and model.pooling == "last"
    assert deep_psmnist.preflight is psmnist.preflight


def test_lstm_baseline_has_the_deep_models_size():
    cfg = deep_psmnist.Config(model="lstm")
    lstm = deep_psmnist.build_model(cfg)
    deep = n_params(deep_psmnist.build_model(deep_psmnist.Config()))
    assert abs(n_params(lstm) - deep) / deep < 0.01, (n_params(lstm), deep)
    assert lstm(torch.rand(3, 20, 1)).shape == (3, 10)
    assert deep_psmnist.build_model(replace(cfg, lstm_hidden=7)).lstm.hidden_size == 7
    with pytest.raises(ValidationError, match=r"Config\.model"):
        deep_psmnist.build_model(replace(cfg, model="gru"))


@needs_mnist
def test_final_quick_run_tests_once(tmp_path):
    cite = {"path": "results/x/protocol.json", "sha256": "0" * 64, "commit": "c" * 40}
    ctx = RunContext(
        out=tmp_path, threads=1, progress=False, quick=True, log=lambda s: None, protocol=cite
    )
    results = deep_psmnist.run(deep_psmnist.Config().quick(), ctx)
    r = results["results"]["seeds"]["0"]
    assert r["test_acc"] > 15  # 2,000 images, two epochs: above chance (10 %)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["mode"] == "final" and saved["protocol"] == cite
    assert saved["experiment"] == "deep-psmnist" and saved["config"]["permute"] is True
    assert json.loads((tmp_path / "partial.json").read_text())["seeds_done"] == ["0"]
    assert (tmp_path / "deep_curves.png").exists()
    assert "S4 (published) | 98.70" in deep_psmnist.table(results)
    assert "deep_curves.png" in deep_psmnist.report_section(results, prefix="x/")


@pytest.mark.parametrize(
    ("mod", "dataset"),
    [
        pytest.param(deep_smnist, "mnist", marks=needs_mnist),
        pytest.param(deep_sfmnist, "fashion-mnist", marks=needs_fashion_mnist),
    ],
)
def test_tuning_run_never_reads_the_test_set(tmp_path, monkeypatch, mod, dataset):
    """deep-smnist and deep-sfmnist --quick: validation only, the variant's name and data."""
    refuse_test_reads(monkeypatch, deep_psmnist)
    ctx = RunContext(out=tmp_path, threads=1, progress=False, quick=True, log=lambda s: None)
    results = mod.run(mod.Config().quick(), ctx)
    r = results["results"]["seeds"]["0"]
    assert r["test_acc"] is None and r["best_val_acc"] > 15  # above chance (10 %)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["mode"] == "tuning" and saved["experiment"] == mod.NAME
    assert saved["evaluated_split"] == "val" and saved["paper"] == mod.PAPER
    assert saved["config"]["permute"] is False and saved["config"]["dataset"] == dataset
    assert "not computed (tuning)" in mod.table(results)
    section = mod.report_section(results, prefix="x/")
    assert section.startswith(f"## {mod.TITLE} (quick)") and "x/deep_curves.png" in section


@needs_mnist
def test_jobs_give_the_seeds_of_one_process(tmp_path):
    """--jobs 2 trains the seeds in two spawned processes, each as one process would."""
    torch.set_num_threads(1)
    cfg = replace(deep_psmnist.Config().quick(), seeds=(0, 1), epochs=1, n_train=300, n_eval=200)
    one = deep_psmnist.run(cfg, RunContext(out=tmp_path / "one", threads=1, progress=False))
    two = deep_psmnist.run(cfg, RunContext(out=tmp_path / "two", threads=1, jobs=2, progress=False))
    a, b = one["results"]["seeds"], two["results"]["seeds"]
    assert list(a) == list(b) == ["0", "1"]
    for s in a:
        assert a[s]["history"][-1]["val_loss"] == b[s]["history"][-1]["val_loss"], s
        assert a[s]["best_val_acc"] == b[s]["best_val_acc"]
    assert a["0"]["history"][-1]["val_loss"] != a["1"]["history"][-1]["val_loss"]
    assert json.loads((tmp_path / "two" / "partial.json").read_text())["seeds_done"] == ["0", "1"]


@needs_mnist
def test_resume_keeps_the_finished_seeds(tmp_path):
    """A run interrupted after its first seed resumes with that seed's numbers kept (its
    checkpoints need not exist) and trains the rest as an uninterrupted run does."""
    torch.set_num_threads(1)
    cfg = replace(deep_psmnist.Config().quick(), seeds=(0, 1), epochs=1, n_train=300, n_eval=200)
    first = deep_psmnist.run(cfg, RunContext(out=tmp_path, threads=1, progress=False))
    partial = json.loads((tmp_path / "partial.json").read_text())
    del partial["results"]["seeds"]["1"]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    for f in (tmp_path / "train_seed0").iterdir():
        f.unlink()
    for f in (tmp_path / "train_seed1").iterdir():
        f.unlink()
    logs: list[str] = []
    again = deep_psmnist.run(
        cfg, RunContext(out=tmp_path, threads=1, progress=False, resume=True, log=logs.append)
    )
    assert any("resuming deep-psmnist: seeds ['0'] done" in s for s in logs)
    a, b = first["results"]["seeds"], again["results"]["seeds"]
    assert b["0"] == a["0"] and not any((tmp_path / "train_seed0").iterdir())
    assert b["1"]["history"][-1]["val_loss"] == a["1"]["history"][-1]["val_loss"]
    with pytest.raises(ValidationError, match="resume"):
        deep_psmnist.run(
            replace(cfg, epochs=2), RunContext(out=tmp_path, threads=1, progress=False, resume=True)
        )
