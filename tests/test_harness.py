"""The harness's protocol discipline: best-by-validation selection, tuning vs final runs,
protocol files that must be committed, output folders that are never silently overwritten, and
resumes that refuse a changed configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchlmu.cli import main
from torchlmu.exceptions import TorchLMUError
from torchlmu.experiments.harness import (
    ProtocolError,
    RunContext,
    claim_output,
    fit,
    load_best,
    load_protocol,
    mean_std_ci,
    provenance_line,
    random_windows,
    t_quantile_975,
)

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


# ------------------------------------------------------------------- best-by-validation
@pytest.mark.parametrize("mode", ["min", "max"])
def test_fit_keeps_the_best_validation_epoch_not_the_last(tmp_path, mode):
    """The validation metric is scripted to peak at epoch 2 of 4: the best epoch, its metrics,
    best.pt and load_best must all be epoch 2's, never the last epoch's. (Mutation-checked:
    replacing the comparison by "always take the newest epoch" fails this test.)"""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    scripted = [3.0, 1.0, 2.0, 1.5] if mode == "min" else [1.0, 3.0, 2.0, 2.5]
    snapshots: list[torch.Tensor] = []

    def evaluate(m):
        snapshots.append(m.weight.detach().clone())
        return {"score": scripted[len(snapshots) - 1]}

    res = fit(
        model,
        opt,
        train_batches=lambda epoch: [(x, y)],
        step_loss=lambda m, a, b: (((m(a) - b) ** 2).mean(), {}),
        evaluate=evaluate,
        epochs=4,
        out=tmp_path,
        monitor="score",
        mode=mode,
        progress=False,
    )
    assert res.best_epoch == 2 and res.best == {"score": scripted[1]}
    assert not torch.equal(snapshots[1], snapshots[3])  # training moved the weights
    saved = torch.load(res.best_path, weights_only=False)
    assert saved["epoch"] == 2 and torch.equal(saved["model"]["weight"], snapshots[1])
    load_best(model, res)
    assert torch.equal(model.weight, snapshots[1])


def _scripted_fit(out, scripted, epochs, **kw):
    """fit() of a linear model whose validation loss is ``scripted[epoch]``; returns the result
    and how many epochs were evaluated."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    seen: list[int] = []

    def evaluate(m):
        seen.append(1)
        return {"val_loss": scripted[len(seen) - 1]}

    res = fit(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        train_batches=lambda epoch: [(x, y)],
        step_loss=lambda m, a, b: (((m(a) - b) ** 2).mean(), {}),
        evaluate=evaluate,
        epochs=epochs,
        out=out,
        progress=False,
        **kw,
    )
    return res, len(seen)


def test_fit_stops_early_after_patience_epochs_without_improvement(tmp_path):
    """Validation loss scripted to be best at epoch 3 of 10: patience 2 trains epochs 4 and 5,
    then stops (epoch 5 is 2 epochs after the best), keeping epoch 3; a resume of the stopped
    run trains nothing more; without patience all 10 epochs run."""
    scripted = [5.0, 4.0, 1.0, 2.0, 1.5, 0.5, 3.0, 3.0, 3.0, 3.0]
    res, n = _scripted_fit(tmp_path / "a", scripted, 10, patience=2)
    assert n == 5 and res.best_epoch == 3 and res.stopped_early_after == 5
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4, 5]
    again, n = _scripted_fit(tmp_path / "a", scripted, 10, patience=2, resume=True)
    assert n == 0 and again.best_epoch == 3 and again.stopped_early_after == 5
    # a later improvement within the patience resets the count: best at 6, stop after 8
    res, n = _scripted_fit(tmp_path / "b", scripted, 10, patience=3)
    assert n == 9 and res.best_epoch == 6 and res.stopped_early_after == 9
    res, n = _scripted_fit(tmp_path / "c", scripted, 10)
    assert n == 10 and res.best_epoch == 6 and res.stopped_early_after is None
    with pytest.raises(TorchLMUError, match="patience"):
        _scripted_fit(tmp_path / "d", scripted, 10, patience=0)


def test_random_windows_cut_aligned_windows_reproducibly():
    n, T = 3, 50
    x = torch.arange(n * T, dtype=torch.float32).reshape(n, T, 1)
    y = x + 1000
    make = random_windows(x, y, window=7, batch=4, steps=5, seed=3)
    batches = list(make(0))
    assert len(batches) == 5
    starts = set()
    for xb, yb in batches:
        assert xb.shape == yb.shape == (4, 7, 1)
        assert torch.equal(yb, xb + 1000)  # input and target windows aligned
        d = xb[:, 1:, 0] - xb[:, :-1, 0]
        assert torch.all(d == 1)  # consecutive steps of one sequence
        first = xb[:, 0, 0].long()
        assert torch.all(first % T <= T - 7)  # the window fits the sequence
        starts |= set(first.tolist())
    assert len(starts) > 10  # random starts and sequences
    again = list(random_windows(x, y, window=7, batch=4, steps=5, seed=3)(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    other = list(make(1))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other, strict=True))
    with pytest.raises(TorchLMUError, match="window"):
        random_windows(x, y, window=51, batch=4, steps=5, seed=3)
    with pytest.raises(TorchLMUError, match="steps"):
        random_windows(x, y, window=5, batch=4, steps=0, seed=3)


# ---------------------------------------------------------------------------- statistics
def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 31):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
    s = mean_std_ci([98.0, 98.2, 98.4, 98.1, 98.3])
    assert s["mean"] == pytest.approx(98.2) and s["std"] == pytest.approx(0.158114, rel=1e-5)
    half = stats.t.ppf(0.975, 4) * s["std"] / 5**0.5
    assert s["ci95"] == pytest.approx([98.2 - half, 98.2 + half], abs=1e-4)
    assert mean_std_ci([97.0]) == {"n": 1, "mean": 97.0, "std": None, "ci95": None}


# --------------------------------------------------------------------------- output folders
IDENT = {"experiment": "x", "seed": 0, "config": {"lr": 0.001, "epochs": 3}}


def test_a_used_folder_is_refused_without_force(tmp_path):
    out = tmp_path / "run"
    claim_output(out, IDENT, resume=False, force=False)  # a new folder: claimed
    assert json.loads((out / "run.json").read_text())["identity"] == IDENT
    with pytest.raises(ProtocolError, match=r"unfinished run.*--resume"):
        claim_output(out, IDENT, resume=False, force=False)
    (out / "results.json").write_text("{}")
    with pytest.raises(ProtocolError, match=r"finished run.*--force"):
        claim_output(out, IDENT, resume=False, force=False)
    other = tmp_path / "other"  # anything in a folder: refused as well
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ProtocolError, match="holds files"):
        claim_output(other, IDENT, resume=False, force=False)
    changed = {**IDENT, "config": {"lr": 0.01, "epochs": 3}}
    claim_output(out, changed, resume=False, force=True)  # --force: overwritten
    assert json.loads((out / "run.json").read_text())["identity"] == changed


def test_resume_refuses_a_changed_configuration_and_names_the_fields(tmp_path):
    out = tmp_path / "run"
    claim_output(out, IDENT, resume=False, force=False)
    started = json.loads((out / "run.json").read_text())["started"]
    claim_output(out, IDENT, resume=True, force=False)  # unchanged: fine
    run = json.loads((out / "run.json").read_text())
    assert run["started"] == started and len(run["resumed"]) == 1  # the start is kept
    changed = {**IDENT, "seed": 1, "config": {"lr": 0.01, "epochs": 3}}
    with pytest.raises(ProtocolError) as e:
        claim_output(out, changed, resume=True, force=False)
    msg = str(e.value)
    assert "\n" not in msg and "config.lr: 0.001 -> 0.01" in msg and "seed: 0 -> 1" in msg
    assert "epochs" not in msg  # only the fields that differ
    # a folder from before run.json existed: its results.json's config is compared
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"config": {"lr": 0.001, "epochs": 3}}))
    with pytest.raises(ProtocolError, match=r"config\.lr: 0\.001 -> 0\.01"):
        claim_output(old, changed, resume=True, force=False)
    # a Config field added since that run (absent from its results.json) is not a change
    claim_output(old, {**IDENT, "config": {**IDENT["config"], "new": 1}}, resume=True, force=False)


def test_cli_resume_with_changed_set_is_refused_before_any_work(tmp_path):
    """The audit's case: a run started at lr 0.001, resumed with --set lr=0.01."""
    out = tmp_path / "p"
    args = ["reproduce", "psmnist-parallel", "--quick", "--out", str(out), "--threads", "1"]
    ctx = RunContext(out=out, progress=False, quick=True)
    from dataclasses import asdict

    from torchlmu.experiments import psmnist_parallel as pp

    ident = {
        "experiment": "psmnist-parallel",
        "quick": True,
        "seed": 0,
        "mode": "tuning",
        "protocol": None,
        "config": asdict(pp.Config().quick()),
    }
    ctx.claim(ident)
    with pytest.raises(ProtocolError, match=r"config\.lr: 0\.002 -> 0\.01"):
        main([*args, "--resume", "--set", "lr=0.01"])
    with pytest.raises(ProtocolError, match="--force"):
        main(args)  # not resumed, not forced: the folder is taken
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # nothing was trained


def test_cli_error_is_one_line_from_the_shell(tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "results.json").write_text("{}")
    p = subprocess.run(
        [sys.executable, "-m", "torchlmu", "reproduce", "capacity", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "torchlmu: error:" in p.stderr
    assert "--force" in p.stderr and "Traceback" not in p.stderr


def test_default_output_is_runs_not_results(tmp_path, monkeypatch):
    """Without --out a run writes to runs/NAME (runs/NAME-quick with --quick), never results/."""
    from dataclasses import dataclass, replace

    import torchlmu.experiments as experiments

    @dataclass
    class FakeConfig:
        n: int = 2

        def quick(self):
            return replace(self, n=1)

    class Fake:
        Config = FakeConfig

        @staticmethod
        def run(cfg, ctx):
            (ctx.out / "results.json").write_text(json.dumps({"n": cfg.n}))
            return {}

    monkeypatch.setattr(experiments, "get", lambda name: Fake)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "capacity", "--quick", "--threads", "1"]) == 0
    assert main(["reproduce", "capacity", "--threads", "1"]) == 0
    assert json.loads(Path("runs/capacity-quick/results.json").read_text()) == {"n": 1}
    assert json.loads(Path("runs/capacity/results.json").read_text()) == {"n": 2}
    assert not Path("results").exists()
    with pytest.raises(ProtocolError, match="--force"):  # and never overwritten silently
        main(["reproduce", "capacity", "--threads", "1"])


# -------------------------------------------------------------------------------- protocols
def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    (r / "results").mkdir(parents=True)
    _git(r, "init", "-q")
    return r


def _protocol(repo: Path, name: str = "p.json", **kw) -> Path:
    spec = {
        "experiment": "psmnist-parallel",
        "config": {"epochs": 1, "n_train": 300, "n_eval": 200, "seeds": [0]},
        "seed": 0,
        "selection_rule": "best validation accuracy; test once",
        **kw,
    }
    p = repo / "results" / name
    p.write_text(json.dumps(spec))
    return p


def test_protocol_must_be_committed_and_unchanged(repo):
    p = _protocol(repo)
    with pytest.raises(ProtocolError, match="not committed"):
        load_protocol(p, "psmnist-parallel")
    _git(repo, "add", "results/p.json")
    with pytest.raises(ProtocolError, match="not committed"):  # staged is not committed
        load_protocol(p, "psmnist-parallel")
    _git(repo, "commit", "-qm", "protocol")
    spec = load_protocol(p, "psmnist-parallel")
    import hashlib

    cite = spec["_cite"]
    assert cite["path"] == "results/p.json"
    assert cite["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert len(cite["commit"]) == 40
    with pytest.raises(ProtocolError, match="'psmnist'"):
        load_protocol(p, "psmnist")  # another experiment's protocol
    p.write_text(p.read_text().replace('"epochs": 1', '"epochs": 2'))
    with pytest.raises(ProtocolError, match="changed since its last commit"):
        load_protocol(p, "psmnist-parallel")


def test_protocol_excludes_quick_set_and_another_seed(repo, tmp_path):
    p = _protocol(repo)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "protocol")
    base = ["reproduce", "psmnist-parallel", "--protocol", str(p), "--out", str(tmp_path / "o")]
    for extra, what in (
        (["--quick"], "drop --quick"),
        (["--set", "lr=1"], "drop --quick and --set"),
        (["--seed", "3"], "fixes seed 0"),
    ):
        with pytest.raises(ProtocolError, match=what):
            main([*base, *extra])
    assert not (tmp_path / "o").exists()


def test_protocol_with_seeds_takes_one_of_them_per_call(repo, tmp_path):
    """A protocol for an experiment that trains one seed per call lists its seeds: each call
    must name one of them with --seed (no default, no other seed)."""
    p = _protocol(repo, seeds=[2, 3])
    bad = _protocol(repo, "bad.json", seeds="2")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "protocol")
    base = ["reproduce", "psmnist-parallel", "--out", str(tmp_path / "o")]
    for extra, what in (
        (["--protocol", str(p)], r"one of the protocol's seeds \[2, 3\] expected, got None"),
        (["--protocol", str(p), "--seed", "0"], "expected, got 0"),
        (["--protocol", str(bad), "--seed", "2"], "'seeds' must be a list of integers"),
    ):
        with pytest.raises(ProtocolError, match=what):
            main([*base, *extra])
    assert not (tmp_path / "o").exists()
    if (MNIST / "t10k-labels-idx1-ubyte.gz").exists():  # a listed seed makes a final run
        assert main([*base, "--protocol", str(p), "--seed", "3", "--threads", "1"]) == 0
        r = json.loads((tmp_path / "o" / "results.json").read_text())
        assert r["mode"] == "final" and r["seed"] == 3 and list(r["results"]["seeds"]) == ["3"]


@pytest.mark.skipif(not (MNIST / "t10k-labels-idx1-ubyte.gz").exists(), reason="no MNIST")
def test_final_run_of_a_committed_protocol_tests_and_cites_it(repo, tmp_path):
    p = _protocol(repo)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "protocol")
    out = tmp_path / "final"
    base = ["reproduce", "psmnist-parallel", "--protocol", str(p), "--out", str(out)]
    assert main([*base, "--threads", "1", "--no-progress"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["mode"] == "final" and r["evaluated_split"] == "test"
    assert r["protocol"]["path"] == "results/p.json" and r["protocol"]["sha256"]
    assert r["config"]["epochs"] == 1 and r["config"]["n_train"] == 300
    seed = r["results"]["seeds"]["0"]
    assert 0 <= seed["test_acc"] <= 100 and "refit" in seed
    # the report says what this small protocol did: 300 images refit, one seed, no nan cell
    from torchlmu.experiments import psmnist_parallel

    assert seed["refit"]["train_images"] == 300
    text = psmnist_parallel.table(r)
    assert "Test accuracy over 1 seed:" in text and "Refit on 300 training images" in text
    assert "60,000" not in text and "nan" not in text
    with pytest.raises(TorchLMUError, match="finished run"):
        main([*base, "--threads", "1"])  # the finished final run is not overwritten


# ----------------------------------------------------------------------------------- report
def test_report_lists_history_and_keeps_superseded_runs_out_of_the_results(tmp_path):
    """A results.json inside a history folder is not reported as a result; history.json files
    become a per-experiment table of every full run with its status and why."""
    from torchlmu.experiments.report import write_report

    old = tmp_path / "psmnist-parallel" / "history" / "old"
    old.mkdir(parents=True)
    (old / "results.json").write_text(json.dumps({"experiment": "psmnist-parallel"}))
    run = {
        "date": "2026-11-26",
        "commit": "505058e",
        "protocol": "constant lr",
        "result": "test 98.18 ± 0.05 %",
        "status": "superseded",
        "why": "schedule changed",
        "files": "`history/old`",
    }
    (tmp_path / "psmnist-parallel" / "history.json").write_text(
        json.dumps({"experiment": "psmnist-parallel", "runs": [run], "notes": ["a note"]})
    )
    text = write_report(tmp_path).read_text()
    assert "No results.json found" in text  # the superseded run is not a result
    assert "## psmnist-parallel: history of every full run" in text
    assert (
        "| 1 | 2026-11-26, 505058e | constant lr | test 98.18 ± 0.05 % "
        "| superseded: schedule changed | `history/old` |" in text
    )
    assert "- a note" in text and "`psmnist-parallel/history.json`" in text


@pytest.mark.parametrize("clip, fraction", [(1e-6, 1.0), (1e6, 0.0)])
def test_fit_records_how_often_clipping_fires(tmp_path, clip, fraction):
    """With clip_grad_norm each epoch records the fraction of clipped steps and the median
    pre-clipping norm (here checked against the norm computed by hand for one-step epochs)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every epoch sees the same norm
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    loss = ((model(x) - y) ** 2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = float(torch.sqrt(sum((g**2).sum() for g in grads)))
    res = fit(
        model,
        opt,
        train_batches=lambda epoch: [(x, y)],
        step_loss=lambda m, a, b: (((m(a) - b) ** 2).mean(), {}),
        evaluate=lambda m: {"val_loss": 0.0},
        epochs=2,
        out=tmp_path,
        progress=False,
        clip_grad_norm=clip,
    )
    for row in res.history:
        assert row["clipped_fraction"] == fraction
        assert row["grad_norm_median"] == pytest.approx(norm, rel=1e-5)


def test_psmnist_monitor_selects_by_validation_loss_when_asked(tmp_path, monkeypatch):
    """Config.monitor = "val_loss" (the paper's rule) selects the lowest validation loss."""
    from dataclasses import replace

    from torchlmu.exceptions import ValidationError
    from torchlmu.experiments import psmnist

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(model, optimizer, **kw):
        seen.update(monitor=kw["monitor"], mode=kw["mode"])
        raise Stop

    monkeypatch.setattr(psmnist, "fit", fake_fit)
    ctx = RunContext(out=tmp_path, threads=1, progress=False, log=lambda s: None)
    splits = (list(range(10)), list(range(10)), list(range(10)))
    for monitor, mode in (("val_acc", "max"), ("val_loss", "min")):
        cfg = replace(psmnist.Config(), monitor=monitor)
        with pytest.raises(Stop):
            psmnist.train_classifier(torch.nn.Linear(1, 1), splits, cfg, ctx, tmp_path, "t")
        assert seen == {"monitor": monitor, "mode": mode}
    with pytest.raises(ValidationError, match="monitor"):
        cfg = replace(psmnist.Config(), monitor="val_auc")
        psmnist.train_classifier(torch.nn.Linear(1, 1), splits, cfg, ctx, tmp_path, "t")


def test_psmnist_paper_model_lr_schedule(tmp_path, monkeypatch):
    """Config.lr_schedule: "constant" (the paper) passes no scheduler; "cosine" passes one that
    anneals the learning rate to 0 over cfg.epochs; anything else is refused by name."""
    from dataclasses import replace

    from torchlmu.exceptions import ValidationError
    from torchlmu.experiments import psmnist

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(model, optimizer, **kw):
        seen["scheduler"] = kw["scheduler"]
        seen["optimizer"] = optimizer
        raise Stop

    monkeypatch.setattr(psmnist, "fit", fake_fit)
    ctx = RunContext(out=tmp_path, threads=1, progress=False, log=lambda s: None)
    splits = (list(range(10)), list(range(10)), list(range(10)))
    assert psmnist.Config().lr_schedule == "constant"
    with pytest.raises(Stop):
        psmnist.train_classifier(
            torch.nn.Linear(1, 1), splits, psmnist.Config(), ctx, tmp_path, "t"
        )
    assert seen["scheduler"] is None
    cfg = replace(psmnist.Config(), lr_schedule="cosine", epochs=4, lr=1e-3)
    with pytest.raises(Stop):
        psmnist.train_classifier(torch.nn.Linear(1, 1), splits, cfg, ctx, tmp_path, "t")
    lrs = []
    for _ in range(4):
        lrs.append(seen["optimizer"].param_groups[0]["lr"])
        seen["optimizer"].step()
        seen["scheduler"].step()
    assert lrs == pytest.approx([1e-3, 1e-3 * (1 + 2**-0.5) / 2, 5e-4, 1e-3 * (1 - 2**-0.5) / 2])
    with pytest.raises(ValidationError, match="lr_schedule"):
        cfg = replace(psmnist.Config(), lr_schedule="step")
        psmnist.train_classifier(torch.nn.Linear(1, 1), splits, cfg, ctx, tmp_path, "t")


# ------------------------------------------------------------------- Ctrl-C while saving
def test_ctrl_c_during_a_checkpoint_write_waits_for_the_file(tmp_path):
    """A SIGINT that lands inside torch.save (here sent from within the write itself) is held
    until the file is complete and in place, then raised as KeyboardInterrupt; before, torch's
    zip writer turned it into a RuntimeError ("unexpected pos") and the command printed a
    traceback instead of the command that resumes. The previous handler is back afterwards."""
    import os
    import signal

    from torchlmu.experiments.harness import atomic_torch_save

    class Interrupting:
        """Pickled by torch.save: sends SIGINT to this process in the middle of the write."""

        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGINT)
            return (dict, ())

    obj = {"w": torch.arange(50_000.0), "mid": Interrupting(), "z": torch.ones(50_000)}
    path = tmp_path / "last.pt"
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save(obj, path)
    assert signal.getsignal(signal.SIGINT) is before
    back = torch.load(path, weights_only=False)  # complete: written, synced and replaced
    assert torch.equal(back["w"], obj["w"]) and torch.equal(back["z"], obj["z"])
    assert not list(tmp_path.glob(".last.pt.*"))  # no temporary left behind


def test_the_provenance_line_names_the_triton_scans_form_and_setting():
    pv = {"command": "torchlmu reproduce psmnist", "git_commit": "abc", "torch": "2.13",
          "threads": 4, "cpu": "x86", "device": "cuda", "cuda": "NVIDIA H200"}  # fmt: skip
    line = provenance_line({"provenance": pv, "wall_seconds": 100.4})
    assert "on NVIDIA H200" in line and "Triton" not in line and "wall 100 s" in line
    pv |= {"triton_scan": True, "triton_form": "cols", "triton_cols": '{"P": 8}'}
    line = provenance_line({"provenance": pv, "wall_seconds": 100.4})
    assert 'with the Triton scan (cols form, setting {"P": 8})' in line
    pv |= {"triton_cols": None}
    assert "with the Triton scan (cols form)," in provenance_line(
        {"provenance": pv, "wall_seconds": 1}
    )
