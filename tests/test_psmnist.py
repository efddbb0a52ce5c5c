"""psMNIST experiments: parameter counts and quick runs end to end on the real MNIST files."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import needs_mnist, refuse_test_reads

from torchlmu.exceptions import ValidationError
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


def test_parallel_model_paper_input_map():
    """u = ReLU(a·x + b) with a = 1, b = 0 at the start, and [m_T, x_T] into the hidden layer:
    166,092 parameters; at initialisation it equals u = x on pixels (x >= 0)."""
    cfg = replace(
        psmnist_parallel.Config(order=12, hidden=7),
        input_map="affine_relu",
        hidden_sees_x=True,
    )
    model = psmnist_parallel.ParallelModel(cfg).eval()
    big = replace(psmnist_parallel.Config(), input_map="affine_relu", hidden_sees_x=True)
    assert psmnist.n_params(psmnist_parallel.ParallelModel(big)) == 166_092
    x = torch.rand(3, 40, 1)
    m = model.memory(x)[0]
    ref = model.head(torch.cat([m, x[:, -1]], -1))
    torch.testing.assert_close(model(x), ref)
    with pytest.raises(ValidationError, match="input_map"):
        psmnist_parallel.ParallelModel(replace(cfg, input_map="tanh"))


@needs_mnist
@pytest.mark.parametrize("mod", [psmnist, psmnist_parallel])
def test_quick_run(tmp_path, mod):
    """A final run (a protocol cited) tests once; its results record the protocol."""
    cite = {"path": "results/x/protocol.json", "sha256": "0" * 64, "commit": "c" * 40}
    ctx = RunContext(
        out=tmp_path, threads=1, progress=False, quick=True, log=lambda s: None, protocol=cite
    )
    cfg = mod.Config().quick()
    results = mod.run(cfg, ctx)
    r = next(iter(results["results"]["seeds"].values()))
    assert 0 <= r["test_acc"] <= 100 and r["best_epoch"] == 1
    assert r["test_acc"] > 15  # 300 training sequences, one epoch: well above chance (10%)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["provenance"]["threads"] == 1 and saved["config"]["epochs"] == 1
    assert saved["mode"] == "final" and saved["protocol"] == cite
    assert saved["evaluated_split"] == "test"
    if mod is psmnist_parallel:  # each finished seed is also kept in partial.json
        part = json.loads((tmp_path / "partial.json").read_text())
        assert part["partial"] and part["seeds_done"] == ["0"] and part["mode"] == "final"
        assert part["results"]["seeds"]["0"]["test_acc"] == r["test_acc"]
    assert (tmp_path / f"{mod.__name__.split('.')[-1]}_curves.png").exists()
    assert "paper" in mod.table(results)


@needs_mnist
@pytest.mark.parametrize("mod", [psmnist, psmnist_parallel])
def test_tuning_run_never_reads_the_test_set(tmp_path, mod, monkeypatch):
    """Without a protocol the run is a tuning run: no test sequence is read (the test split's
    batch method fails if called), no test metric is in its results, validation is."""
    refuse_test_reads(monkeypatch, psmnist)
    ctx = RunContext(out=tmp_path, threads=1, progress=False, quick=True, log=lambda s: None)
    results = mod.run(mod.Config().quick(), ctx)
    r = next(iter(results["results"]["seeds"].values()))
    assert r["test_acc"] is None and r["test_loss"] is None and "refit" not in r
    assert 0 < r["best_val_acc"] <= 100
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["mode"] == "tuning" and saved["protocol"] is None
    assert saved["evaluated_split"] == "val"
    assert "not computed (tuning)" in mod.table(results)
    if mod is psmnist_parallel:
        assert "test_acc_mean" not in saved["results"]["summary"]
        assert "Tuning run (no test metric computed)" in mod.table(results)


def test_paper_model_readout_init():
    """ "keras": Glorot-uniform weights (bound √(6/(212+10)) = 0.164) and zero bias, as Keras's
    Dense; "torch": nn.Linear's default (bound 1/√212 = 0.069); anything else: a clear error."""
    torch.manual_seed(0)
    k = psmnist.PaperModel(replace(psmnist.Config(), readout_init="keras")).out
    torch.manual_seed(0)
    t = psmnist.PaperModel(psmnist.Config()).out
    assert k.weight.abs().max() > 0.069 * 1.5 and k.weight.abs().max() <= (6 / 222) ** 0.5
    assert torch.all(k.bias == 0)
    assert t.weight.abs().max() <= 212**-0.5 and t.bias.abs().max() > 0
    with pytest.raises(ValidationError, match="readout_init"):
        psmnist.PaperModel(replace(psmnist.Config(), readout_init="glorot"))


def test_across_runs_groups_by_protocol():
    """Separate one-seed runs of the same protocol are summarised together; quick runs, other
    protocols and single seeds are not; fields added later count as their defaults."""
    base = {k: v for k, v in psmnist.asdict(psmnist.Config()).items() if k != "readout_init"}

    def run(seed, test, val, quick=False, **cfg):
        r = {"test_acc": test, "best_val_acc": val}
        return {"quick": quick, "config": {**base, **cfg}, "results": {"seeds": {str(seed): r}}}

    runs = [
        ("a", run(0, 96.0, 95.0, clip_grad_norm=1.0)),
        ("b", run(1, 97.0, 96.0, clip_grad_norm=1.0, cuda_graph=False, readout_init="torch")),
        ("c", run(2, 50.0, 50.0, quick=True, clip_grad_norm=1.0)),
        ("d", run(3, 90.0, 90.0, clip_grad_norm=5.0)),
    ]
    text = psmnist.across_runs(runs)
    assert (
        "| clip_grad_norm=1.0 | 2 (0 in a, 1 in b) | 96.50 ± 0.71 (96.00, 97.00) "
        "| [90.15, 102.85] | 95.50 ± 0.71 |" in text  # t(1) = 12.706: 96.5 ± 12.706 · 0.5
    )
    assert "clip_grad_norm=5.0" not in text
    assert psmnist.across_runs(runs[2:]) is None


def test_the_test_set_sees_the_best_validation_checkpoint_not_the_last_epoch(tmp_path, monkeypatch):
    """train_classifier must test the weights of best.pt (the best validation epoch), not the
    model as the last epoch left it. ``fit`` is replaced by one that saves a perfect classifier
    as the best checkpoint and leaves the model a wrong one (every class shifted by one): the
    test accuracy is 100 only if the best checkpoint is what was tested. (Mutation-checked:
    testing the last epoch's weights makes it 0.)"""
    from torchlmu.data.mnist import SequentialMNIST
    from torchlmu.experiments.harness import FitResult, atomic_torch_save

    def split(n):  # class c: pixel c lit, every other pixel dark
        labels = torch.arange(n) % 10
        images = torch.zeros(n, 784, dtype=torch.uint8)
        images[torch.arange(n), labels] = 255
        return SequentialMNIST(images, labels)

    class Pixels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(784, 10, bias=False)

        def forward(self, x):
            return self.w(x.flatten(1))

    right = torch.zeros(10, 784)
    right[torch.arange(10), torch.arange(10)] = 1.0
    wrong = right.roll(1, 0)  # predicts c + 1 for class c

    def fake_fit(model, optimizer, *, out, **kw):
        with torch.no_grad():
            model.w.weight.copy_(right)
        atomic_torch_save({"model": model.state_dict(), "epoch": 1}, out / "best.pt")
        with torch.no_grad():
            model.w.weight.copy_(wrong)  # the last epoch: worse than the best
        row = {"epoch": 2, "val_acc": 0.0, "val_loss": 9.0, "train_seconds": 0.0}
        return FitResult([row], 1, {"val_acc": 100.0, "val_loss": 0.0}, out / "best.pt")

    monkeypatch.setattr(psmnist, "fit", fake_fit)
    cfg = replace(psmnist.Config(), epochs=2, n_train=None, n_eval=None)
    cite = {"path": "results/x.json", "sha256": "0" * 64, "commit": "c" * 40}
    ctx = RunContext(out=tmp_path, threads=1, progress=False, log=lambda s: None, protocol=cite)
    splits = (split(50), split(20), split(30))
    model = Pixels()
    r = psmnist.train_classifier(model, splits, cfg, ctx, tmp_path / "t", "t")
    assert r["best_epoch"] == 1 and r["best_val_acc"] == 100.0
    assert r["test_acc"] == 100.0
    # the refit's rule is the opposite: its last epoch is what is tested
    r = psmnist.train_classifier(Pixels(), splits, cfg, ctx, tmp_path / "u", "u", last_epoch=True)
    assert r["test_acc"] == 0.0
