"""psMNIST experiments: parameter counts and quick runs end to end on the real MNIST files."""

from __future__ import annotations

import json

import pytest

from torchlmu.experiments import psmnist, psmnist_parallel
from torchlmu.experiments.harness import RunContext


def test_paper_model_parameter_count():
    model = psmnist.PaperModel(psmnist.Config())
    assert psmnist.n_params(model) == 102_027  # the paper's count
    assert model.lmu.resolved_mode() == "recurrent"  # e_h, e_m trainable: no parallel form


def test_parallel_model_parameter_count():
    model = psmnist_parallel.ParallelModel(psmnist_parallel.Config())
    assert psmnist.n_params(model) == 468 * 346 + 346 + 346 * 10 + 10  # 165,744: "about 165k"
    assert not model.memory.input_encoders.requires_grad


needs_mnist = pytest.mark.skipif(
    psmnist.data_root(None) is None,
    reason="MNIST not found (set TORCHLMU_DATA or add ../shared/data/mnist)",
)


@needs_mnist
@pytest.mark.parametrize("mod", [psmnist, psmnist_parallel])
def test_quick_run(tmp_path, mod):
    ctx = RunContext(out=tmp_path, threads=1, progress=False, quick=True, log=lambda s: None)
    cfg = mod.Config().quick()
    results = mod.run(cfg, ctx)
    r = next(iter(results["results"]["seeds"].values()))
    assert 0 <= r["test_acc"] <= 100 and r["best_epoch"] == 1
    assert r["test_acc"] > 15  # 300 training sequences, one epoch: well above chance (10%)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["provenance"]["threads"] == 1 and saved["config"]["epochs"] == 1
    assert (tmp_path / f"{mod.__name__.split('.')[-1]}_curves.png").exists()
    assert "paper" in mod.table(results)
