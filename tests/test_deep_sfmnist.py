"""The deep-sfmnist experiment (sequential Fashion-MNIST, deep LMU network or its nn.LSTM
baseline): registered and configured, a clear error without the data, and the LSTM baseline
through the command (a few seconds; needs Fashion-MNIST). Its quick tuning run of the deep
model is tested with deep-smnist's in test_deep_psmnist.py."""

from __future__ import annotations

import json

from conftest import needs_fashion_mnist, refuse_test_reads

from torchlmu.cli import ABOUT, CHOICES, main
from torchlmu.experiments import deep_psmnist, deep_sfmnist, get
from torchlmu.experiments.harness import n_params


def test_registered_and_configured():
    assert get("deep-sfmnist") is deep_sfmnist
    cfg = deep_sfmnist.Config()
    assert cfg.dataset == "fashion-mnist" and not cfg.permute
    assert deep_psmnist.Config().dataset == "mnist"
    assert deep_sfmnist.preflight is deep_psmnist.preflight
    assert "Fashion-MNIST" in ABOUT["deep-sfmnist"].data
    assert "dataset-fashion-mnist" in ABOUT["deep-sfmnist"].data
    assert set(CHOICES["dataset"]) == {"mnist", "fashion-mnist"}
    lstm = deep_psmnist.build_model(deep_sfmnist.Config(model="lstm"))
    deep = n_params(deep_psmnist.build_model(cfg))
    assert abs(n_params(lstm) - deep) / deep < 0.01


def test_missing_data_is_one_line_naming_the_folders_and_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCHLMU_DATA", str(tmp_path / "empty"))
    out = tmp_path / "o"
    argv = ["reproduce", "deep-sfmnist", "--out", str(out)]
    assert main([*argv, "--quick"], raise_errors=False) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("torchlmu: error: Fashion-MNIST: expected")
    assert str(tmp_path / "empty" / "fashion-mnist") in err and "dataset-fashion-mnist" in err
    assert not out.exists()
    assert main([*argv, "--set", "dataset=fashion"], raise_errors=False) == 2
    assert "fashion-mnist" in capsys.readouterr().err and not out.exists()


@needs_fashion_mnist
def test_lstm_baseline_through_the_command(tmp_path, monkeypatch):
    """``reproduce deep-sfmnist --quick --set model=lstm`` (fewer images and one epoch here):
    the data found and checked by the command, a tuning run of the LSTM, no test read."""
    refuse_test_reads(monkeypatch, deep_psmnist)
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "deep-sfmnist", "--quick", "--threads", "1", "--no-progress",
            "--set", "model=lstm", "--set", "n_train=300", "--set", "epochs=1"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "runs" / "deep-sfmnist-quick" / "results.json").read_text())
    r = saved["results"]["seeds"]["0"]
    assert saved["config"]["model"] == "lstm" and saved["config"]["dataset"] == "fashion-mnist"
    assert r["test_acc"] is None and 0 < r["best_val_acc"] <= 100
    deep = n_params(deep_psmnist.build_model(deep_sfmnist.Config().quick()))
    assert abs(r["params"] - deep) / deep < 0.02  # the quick deep model's size
