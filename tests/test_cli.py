"""The torchlmu command and the harness, end to end: demo, reproduce --quick, report, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from torchlmu.cli import main
from torchlmu.experiments.harness import fit

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchlmu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


def test_help_on_every_subcommand():
    for args in ([], ["demo"], ["reproduce"], ["report"]):
        p = run_cli(*args, "--help", timeout=300)
        assert p.returncode == 0, p.stderr
        assert "usage: torchlmu" in p.stdout


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    p = run_cli("demo", "--out", str(out), "--threads", "1", timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "| LMU-0 (untrained) | 1,000 |" in p.stdout and "| LSTM | 100 |" in p.stdout
    r = json.loads((out / "results.json").read_text())
    assert r["provenance"]["threads"] == 1 and r["provenance"]["torch"] == torch.__version__
    from torchlmu import __version__
    from torchlmu._install import install_kind

    assert r["provenance"]["torchlmu"] == __version__
    assert r["provenance"]["install"] == install_kind() != "wheel"  # the tests run a checkout
    assert r["provenance"]["git_commit"]  # and a checkout has a commit
    assert not list(out.rglob("*.pt"))  # the demo's checkpoints are removed at the end
    assert list(out.rglob("log.jsonl"))  # its training logs are kept
    lmu0 = r["results"]["lmu0/1000"]["test_mse"]
    assert max(lmu0) < 1e-5  # the untrained memory at T = 1,000 (measured ~1e-6 at delay T)
    assert (out / "capacity_mse.png").stat().st_size > 10_000
    assert "Memory capacity" in (out / "REPORT.md").read_text()
    # the demo's configuration is fixed in the code: it tests, and says why it may
    assert r["mode"] == "final" and r["protocol"]["demo"] and r["evaluated_split"] == "test"
    assert (
        "Demo: its configuration is fixed in `torchlmu/cli.py`" in (out / "REPORT.md").read_text()
    )
    p = run_cli("demo", "--out", str(out), "--threads", "1", timeout=300)
    assert p.returncode == 2 and "--force" in p.stderr  # a finished demo is not overwritten


def test_reproduce_quick_resume_after_kill(tmp_path):
    """kill -9 in the middle of a run; --resume ends with the same numbers as an uninterrupted run."""
    a, b = tmp_path / "a", tmp_path / "b"
    p = run_cli(
        "reproduce", "capacity", "--quick", "--out", str(a), "--threads", "1", "--no-progress"
    )
    assert p.returncode == 0, p.stderr[-2000:]
    ref = json.loads((a / "results.json").read_text())["results"]
    assert set(ref) == {"lmu0/100", "lmu0/1000", "lstm/25", "lstm/100", "lmu_trained/100", "scale"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torchlmu",
            "reproduce",
            "capacity",
            "--quick",
            "--out",
            str(b),
            "--threads",
            "1",
            "--no-progress",
        ],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (b / "lstm_T25" / "last.pt").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "results.json").exists() or proc.returncode == 0
    p = run_cli(
        "reproduce",
        "capacity",
        "--quick",
        "--out",
        str(b),
        "--threads",
        "1",
        "--no-progress",
        "--resume",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads((b / "results.json").read_text())["results"]
    for key, v in ref.items():
        a, b = v["test_mse"], got[key]["test_mse"]
        if isinstance(a, dict):  # the scale-invariance entry: one list per step size
            assert a.keys() == b.keys()
            a, b = [v for k in a for v in a[k]], [v for k in a for v in b[k]]
        assert b == pytest.approx(a, rel=1e-6), key


def test_report_collects_results(tmp_path):
    p = run_cli(
        "reproduce", "capacity", "--quick", "--out", str(tmp_path / "capacity"), "--no-progress"
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "*Tuning run: every metric below was computed on the validation split" in text
    assert (
        "Memory capacity" in text and "capacity/capacity_mse.png" in text and "Provenance" in text
    )


FIT_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from torchlmu.experiments.harness import fit
    out, resume, slow = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(64, 3, generator=g), torch.randn(64, 1, generator=g)
    def batches(epoch):
        time.sleep(slow)
        idx = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, 64, 16):
            yield X[idx[i:i + 16]], Y[idx[i:i + 16]]
    res = fit(model, opt, train_batches=batches,
              step_loss=lambda m, x, y: (((m(x) - y) ** 2).mean(), {}),
              evaluate=lambda m: {"val_loss": float(((m(X) - Y) ** 2).mean())},
              epochs=12, out=out, resume=resume, progress=False)
    print(repr([r["val_loss"] for r in res.history]), res.best_epoch)
    """
)


def test_fit_resume_after_kill9_is_exact(tmp_path):
    script = tmp_path / "fit_script.py"
    script.write_text(FIT_SCRIPT)
    ref = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ref"), "0", "0"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "0", "0.3"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        log = out / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len((out / "log.jsonl").read_text().splitlines())
    assert 4 <= n_done < 12
    again = subprocess.run(
        [sys.executable, str(script), str(out), "1", "0"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == ref.stdout  # identical losses in every epoch, identical best epoch


@pytest.mark.parametrize("with_scheduler", [False, True])
def test_fit_stop_and_resume_in_process(tmp_path, with_scheduler):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6) if with_scheduler else None
        return model, opt, sched

    X, Y = torch.randn(32, 2), torch.randn(32, 1)
    kw = dict(
        train_batches=lambda e: [(X[i : i + 8], Y[i : i + 8]) for i in range(0, 32, 8)],
        step_loss=lambda m, x, y: (((m(x) - y) ** 2).mean(), {}),
        evaluate=lambda m: {"val_loss": float(((m(X) - Y) ** 2).mean())},
        epochs=6,
        progress=False,
    )
    m1, o1, s1 = make()
    r1 = fit(m1, o1, out=tmp_path / "one", scheduler=s1, **kw)
    m2, o2, s2 = make()
    fit(m2, o2, out=tmp_path / "two", stop_after=2, scheduler=s2, **kw)
    m3, o3, s3 = make()
    r3 = fit(m3, o3, out=tmp_path / "two", resume=True, scheduler=s3, **kw)
    assert r3.resumed_from == 2
    assert [r["val_loss"] for r in r3.history] == [r["val_loss"] for r in r1.history]
    assert torch.equal(m1.weight, m3.weight)


def test_fit_clips_the_gradient_norm(tmp_path):
    """With clip_grad_norm = c and SGD at lr 1, one step moves the parameters by exactly c when
    the gradient is larger (and by the gradient when it is smaller)."""
    X, Y = torch.randn(8, 2), 100 * torch.randn(8, 1)
    for clip, big in ((0.5, True), (1e6, False)):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        loss = ((model(X) - Y) ** 2).mean()
        g = torch.autograd.grad(loss, list(model.parameters()))
        gnorm = float(torch.cat([q.flatten() for q in g]).norm())
        fit(
            model,
            torch.optim.SGD(model.parameters(), lr=1.0),
            train_batches=lambda e: [(X, Y)],
            step_loss=lambda m, x, y: (((m(x) - y) ** 2).mean(), {}),
            evaluate=lambda m: {"val_loss": 0.0},
            epochs=1,
            out=tmp_path / str(clip),
            progress=False,
            clip_grad_norm=clip,
        )
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moved = float((after - before).norm())
        assert moved == pytest.approx(clip if big else gnorm, rel=1e-4)
        assert (gnorm > clip) == big


def test_set_overrides_config_fields():
    from torchlmu.cli import _override
    from torchlmu.exceptions import ValidationError
    from torchlmu.experiments import psmnist, psmnist_parallel

    cfg = _override(psmnist.Config(), ["clip_grad_norm=1.0", "lr=1", "data_root=/x/y"])
    assert (cfg.clip_grad_norm, cfg.lr, cfg.data_root) == (1.0, 1.0, "/x/y")
    assert isinstance(cfg.lr, float)  # an int literal for a float field stays a float
    assert _override(psmnist_parallel.Config(), ["seeds=[4, 5]"]).seeds == (4, 5)
    with pytest.raises(ValidationError, match="--set"):
        _override(psmnist.Config(), ["nope=1"])
    with pytest.raises(ValidationError, match="--set"):
        _override(psmnist.Config(), ["epochs"])


needs_cuda = pytest.mark.gpu  # skipped without CUDA (conftest); run by benchmarks/gpu_check.sh


def test_device_option_is_checked_before_any_work(tmp_path):
    from torchlmu.exceptions import ValidationError
    from torchlmu.experiments.harness import RunContext

    with pytest.raises(ValidationError, match=r"device.*'tpu:0'"):
        RunContext(out=tmp_path / "a", device="tpu:0")
    with pytest.raises(ValidationError, match="device"):
        RunContext(out=tmp_path / "b", device="cuda:99")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    if not torch.cuda.is_available():
        with pytest.raises(ValidationError, match="no CUDA here"):
            main(["reproduce", "capacity", "--quick", "--device", "cuda", "--out", str(tmp_path)])


@needs_cuda
def test_fit_on_cuda_and_resume_on_the_cpu(tmp_path):
    """Batches follow the model to its device; a run started on the GPU resumes on the CPU and
    ends where an uninterrupted GPU run ends (float32 rounding apart)."""

    def make(device):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        model.to(device)
        return model, torch.optim.Adam(model.parameters(), lr=1e-2)

    X, Y = torch.randn(64, 3), torch.randn(64, 1)  # on the CPU, as data loaders give them

    def evaluate(m):
        d = next(m.parameters()).device
        return {"val_loss": float(((m(X.to(d)) - Y.to(d)) ** 2).mean())}

    kw = dict(
        train_batches=lambda e: [(X[i : i + 16], Y[i : i + 16]) for i in range(0, 64, 16)],
        step_loss=lambda m, x, y: (((m(x) - y) ** 2).mean(), {}),
        evaluate=evaluate,
        epochs=4,
        progress=False,
    )
    m1, o1 = make("cuda")
    r1 = fit(m1, o1, out=tmp_path / "gpu", **kw)
    assert next(m1.parameters()).is_cuda
    m2, o2 = make("cuda")
    fit(m2, o2, out=tmp_path / "moved", stop_after=2, **kw)
    m3, o3 = make("cpu")
    r3 = fit(m3, o3, out=tmp_path / "moved", resume=True, **kw)
    assert r3.resumed_from == 2 and len(r3.history) == 4
    for a, b in zip(r3.history, r1.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    for p, q in zip(m3.parameters(), m1.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), rtol=1e-4, atol=1e-5)


@needs_cuda
def test_reproduce_quick_on_cuda(tmp_path):
    assert main(["reproduce", "mackey-glass", "--quick", "--device", "cuda", "--no-progress",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["provenance"]["device"] == "cuda" and res["provenance"]["cuda"]


@needs_cuda
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_fit_cuda_graph_equals_eager(tmp_path, kind):
    """The captured training step computes what the eager step computes: a small fully recurrent
    LMU, 2 epochs of 4 full batches and a short one (trained eagerly beside the graph), with
    clipping. A step_loss that synchronises with the host cannot be captured: logged, eager."""
    from dataclasses import replace

    from torch import nn

    from torchlmu.experiments import psmnist

    cfg = replace(psmnist.Config(), hidden=8, order=6, theta=10.0)
    X, Y = torch.rand(70, 20, 1), torch.randint(0, 10, (70,))

    def run(graph, sync_metric=False):
        torch.manual_seed(0)
        model = psmnist.PaperModel(cfg).cuda()
        opt = (
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            if kind == "sgd"
            else torch.optim.Adam(model.parameters(), lr=1e-2, capturable=True)
        )

        def step_loss(m, x, y):
            logits = m(x)
            acc = (logits.argmax(-1) == y).float().mean()
            return nn.functional.cross_entropy(logits, y), {
                "acc": float(acc) if sync_metric else acc
            }

        lines = []
        res = fit(
            model,
            opt,
            train_batches=lambda e: [(X[i : i + 16], Y[i : i + 16]) for i in range(0, 70, 16)],
            step_loss=step_loss,
            evaluate=lambda m: {"val_loss": float(m(X.cuda()).square().mean())},
            epochs=2,
            out=tmp_path / f"{graph}{sync_metric}",
            progress=False,
            clip_grad_norm=0.5,
            cuda_graph=graph,
            log=lines.append,
        )
        return model, res, "\n".join(lines)

    m_e, r_e, _ = run(False)
    m_g, r_g, log_g = run(True)
    assert "training step captured" in log_g
    m_f, _, log_f = run(True, sync_metric=True)
    assert "capture failed" in log_f
    for m in (m_g, m_f):
        for p, q in zip(m.parameters(), m_e.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for a, b in zip(r_g.history, r_e.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_acc"] == pytest.approx(b["train_acc"], rel=1e-6)


def test_fit_cuda_graph_off_the_gpu_trains_eagerly(tmp_path):
    """cuda_graph=True where it cannot apply (a CPU model) says so and trains as without it."""
    X, Y = torch.randn(32, 2), torch.randn(32, 1)

    def run(graph):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        lines = []
        fit(
            model,
            torch.optim.Adam(model.parameters(), lr=0.1),
            train_batches=lambda e: [(X[i : i + 8], Y[i : i + 8]) for i in range(0, 32, 8)],
            step_loss=lambda m, x, y: (((m(x) - y) ** 2).mean(), {}),
            evaluate=lambda m: {"val_loss": 0.0},
            epochs=2,
            out=tmp_path / str(graph),
            progress=False,
            cuda_graph=graph,
            log=lines.append,
        )
        return model, lines

    (m1, _), (m2, lines) = run(False), run(True)
    assert any("training eagerly (the model is not on a GPU)" in s for s in lines)
    assert torch.equal(m1.weight, m2.weight)


# ------------------------------------------------------------------ user errors: one line, exit 2
MNIST = ROOT.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-labels-idx1-ubyte.gz").exists(), reason="no MNIST beside the repository"
)


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the command as the shell would; the error's single stderr line."""
    assert main(argv, raise_errors=False) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("torchlmu: error: "), err
    return err


@pytest.mark.parametrize(
    ("name", "item", "expected"),
    [
        (
            "psmnist",
            "lr=abc",
            "--set lr: expected float (> 0), received 'abc' (e.g. --set lr=0.001",
        ),
        ("capacity", "epochs=-1", "--set epochs: expected int (>= 1), received '-1'"),
        ("capacity", "epochs=2.5", "--set epochs: expected int (>= 1), received '2.5'"),
        ("capacity", "lr=0", "--set lr: expected float (> 0), received '0'"),
        ("capacity", "lstm_steps=[]", "expected tuple of int (>= 1)"),
        ("psmnist", "monitor=acc", "expected str (one of val_acc, val_loss), received 'acc'"),
        ("psmnist", "cuda_graph=maybe", "--set cuda_graph: expected bool"),
        ("psmnist-parallel", "dropout=1", "expected float (>= 0 and < 1)"),
        ("psmnist-parallel", "seeds=[0, -1]", "expected tuple of int (>= 0)"),
        ("spiking", "seeds=0", "--set seeds: expected int (>= 1)"),
        ("capacity", "nope=1", "FIELD one of capacity's Config fields (n_train, n_val,"),
        ("capacity", "epochs", "received 'epochs' (torchlmu reproduce capacity --help lists"),
    ],
)
def test_set_values_are_checked_before_anything_is_written(tmp_path, capsys, name, item, expected):
    out = tmp_path / "o"
    err = one_line_error(capsys, ["reproduce", name, "--quick", "--out", str(out), "--set", item])
    assert expected in err
    assert not out.exists()


def test_set_converts_to_the_field_type():
    from dataclasses import dataclass

    from torchlmu.cli import _override
    from torchlmu.exceptions import ValidationError
    from torchlmu.experiments import psmnist, psmnist_parallel, spiking

    cfg = _override(
        psmnist.Config(), ["cuda_graph=false", "clip_grad_norm=None", "n_train=300", "lr=2"]
    )
    assert (cfg.cuda_graph, cfg.clip_grad_norm, cfg.n_train, cfg.lr) == (False, None, 300, 2.0)
    assert _override(psmnist_parallel.Config(), ["seeds=7"]).seeds == (7,)
    assert _override(spiking.Config(), ["max_rates=[10, 20]"]).max_rates == (10.0, 20.0)
    assert _override(psmnist_parallel.Config(), ["weight_decay=0"]).weight_decay == 0.0

    @dataclass
    class New:  # an experiment's fields that the CLI's tables do not name
        momentum: float = 0.0  # a default of 0: 0 is allowed, negatives are not
        shift: int = -3  # a negative default: no range is assumed

    assert _override(New(), ["momentum=0", "shift=-5"]) == New(0.0, -5)
    with pytest.raises(ValidationError, match=r"--set momentum: expected float \(>= 0\)"):
        _override(New(), ["momentum=-1"])


def test_threads_and_device_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "capacity", "--quick", "--out", str(out), "--threads", "0"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0
    assert "--threads: expected a positive integer (1 or more), received '0'" in err
    err = one_line_error(capsys, ["reproduce", "capacity", "--quick", "--out", str(out),
                                  "--device", "tpu"])  # fmt: skip
    assert "device: expected cpu, cuda or cuda:N, received 'tpu'" in err
    if not torch.cuda.is_available():
        err = one_line_error(capsys, ["reproduce", "capacity", "--quick", "--out", str(out),
                                      "--device", "cuda"])  # fmt: skip
        assert "no CUDA here" in err
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    from torchlmu.exceptions import ValidationError

    with pytest.raises(ValidationError, match="--set lr"):
        main(["reproduce", "capacity", "--quick", "--set", "lr=x", "--debug"], raise_errors=False)


def test_missing_mnist_is_one_line_naming_the_option_that_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCHLMU_DATA", str(tmp_path / "empty"))
    out = tmp_path / "o"
    err = one_line_error(capsys, ["reproduce", "psmnist", "--quick", "--out", str(out)])
    assert "MNIST: expected its four IDX files" in err and str(tmp_path / "empty") in err
    assert "--data DIR" in err and "download=True" not in err
    err = one_line_error(
        capsys, ["reproduce", "psmnist", "--quick", "--out", str(out), "--data", "/nonexistent"]
    )
    assert "--data: expected a folder holding the data set's four IDX .gz files" in err
    assert not out.exists()


@needs_mnist
def test_corrupt_mnist_is_one_line_and_data_is_found_in_its_order(tmp_path, capsys, monkeypatch):
    from torchlmu.experiments.psmnist import data_root

    monkeypatch.delenv("TORCHLMU_DATA", raising=False)
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for f in MNIST.glob("*.gz"):
        (data / "mnist" / f.name).symlink_to(f)
    monkeypatch.setenv("TORCHLMU_DATA", str(data))
    assert data_root() == data / "mnist"  # TORCHLMU_DATA holding mnist/
    monkeypatch.setenv("TORCHLMU_DATA", str(data / "mnist"))
    assert data_root() == data / "mnist"  # or the files themselves
    assert data_root(str(MNIST)) == MNIST  # Config.data_root first
    (data / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    (data / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b damaged")
    out = tmp_path / "o"
    err = one_line_error(
        capsys, ["reproduce", "psmnist", "--quick", "--out", str(out), "--data", str(data)]
    )
    assert "checksum of" in err and "t10k-labels-idx1-ubyte.gz" in err
    assert not out.exists()


def test_report_on_a_folder_without_results_is_an_error(tmp_path, capsys):
    err = one_line_error(capsys, ["report", str(tmp_path / "nowhere")])
    assert "which does not exist" in err and not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    err = one_line_error(capsys, ["report", str(tmp_path / "empty")])
    assert "which holds none" in err and not (tmp_path / "empty" / "REPORT.md").exists()


def test_missing_package_names_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "nengo" else real(n, *a)
    )
    err = one_line_error(capsys, ["reproduce", "spiking", "--quick", "--out", str(tmp_path / "o")])
    assert "nengo not installed" in err and "pip install 'torchlmu[spiking]'" in err
    assert not (tmp_path / "o").exists()


def test_reproduce_help_lists_duration_data_packages_and_fields(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "psmnist", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0
    for want in ("duration: full size (10 epochs)", "data: MNIST's four IDX .gz files",
                 "needs: matplotlib (pip install 'torchlmu[experiments]')",
                 "epochs             int (>= 1)", "10  (--quick: 1)", "0.001"):  # fmt: skip
        assert want in text, want


def test_version_is_the_package_version(capsys):
    from importlib import metadata

    import torchlmu
    from torchlmu._install import install_kind

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"torchlmu {torchlmu.__version__} ({install_kind()} install, ")
    if install_kind() in ("wheel", "editable"):  # pyproject reads the one version
        assert metadata.version("torchlmu") == torchlmu.__version__


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    from dataclasses import dataclass

    import torchlmu.experiments as experiments
    from torchlmu.exceptions import ValidationError

    @dataclass
    class Cfg:
        n: int = 1

        def quick(self):
            return self

    class Failing:
        Config = Cfg

        @staticmethod
        def run(cfg, ctx):
            (ctx.out / "part").mkdir()
            raise ValidationError("x", "y", "z")

    monkeypatch.setattr(experiments, "get", lambda name: Failing)
    out = tmp_path / "o"
    assert main(["reproduce", "capacity", "--out", str(out)], raise_errors=False) == 2
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("kept")  # a folder the user had: never removed
    assert main(["reproduce", "capacity", "--out", str(out), "--force"], raise_errors=False) == 2
    assert (out / "mine.txt").read_text() == "kept"


def test_ctrl_c_prints_the_command_that_resumes(tmp_path):
    out = tmp_path / "run"
    # full size (500 epochs: still training when interrupted), the long untrained part skipped
    args = ["reproduce", "capacity", "--out", str(out), "--threads", "1", "--no-progress",
            "--set", "lmu0_steps=[100]"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchlmu", *args],
        env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("last.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert last.endswith(f"torchlmu {' '.join(args)} --resume"), last


def test_graph_obstacle_allows_a_scheduler_only_with_tensor_learning_rates():
    from torchlmu.experiments.harness import graph_obstacle

    p = [torch.nn.Parameter(torch.zeros(2))]
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    flt = torch.optim.Adam(p, lr=1e-3, capturable=True)
    ten = torch.optim.Adam(p, lr=torch.tensor(1e-3), capturable=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ten, T_max=3)
    assert graph_obstacle(torch.device("cpu"), 1, ten) == "the model is not on a GPU"
    assert graph_obstacle(cuda, 2, ten) == "several processes"
    assert "scheduler" in graph_obstacle(
        cuda, 1, flt, torch.optim.lr_scheduler.CosineAnnealingLR(flt, T_max=3)
    )
    assert graph_obstacle(cuda, 1, ten, sched) is None
    assert graph_obstacle(cuda, 1, flt) is None
    assert "capturable" in graph_obstacle(cuda, 1, torch.optim.Adam(p, lr=1e-3))


def test_resume_keeps_the_kind_of_learning_rate(tmp_path):
    """A checkpoint of a tensor learning rate (a CUDA-graph run's, here on the CPU) resumes into
    an optimizer with a float one, and the other way round; a tensor keeps its identity (a
    captured graph reads it) and takes the saved value."""
    from torchlmu.experiments.harness import _load_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    a = torch.optim.Adam(p, lr=torch.tensor(1e-3, dtype=torch.float64), foreach=False)
    s = torch.optim.lr_scheduler.CosineAnnealingLR(a, T_max=4)
    a.step()
    s.step()
    want = 1e-3 * (1 + 2**-0.5) / 2
    b = torch.optim.Adam(p, lr=0.5)
    _load_optimizer(b, a.state_dict())
    assert type(b.param_groups[0]["lr"]) is float and b.param_groups[0]["lr"] == pytest.approx(want)
    lr = torch.tensor(0.5, dtype=torch.float64)
    c = torch.optim.Adam(p, lr=lr, foreach=False)
    _load_optimizer(c, b.state_dict())
    assert c.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(want)


@needs_cuda
def test_fit_cuda_graph_with_a_cosine_schedule_equals_eager(tmp_path):
    """A tensor learning rate, updated in place by the scheduler, is read by every replay: the
    graphed run with a cosine schedule ends where the eager one ends."""
    from torch import nn

    X, Y = torch.rand(64, 5), torch.randint(0, 3, (64,))

    def run(graph):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).cuda()
        lr = torch.tensor(5e-2, dtype=torch.float64, device="cuda") if graph else 5e-2
        opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
        lines = []
        fit(
            model,
            opt,
            train_batches=lambda e: [(X[i : i + 16], Y[i : i + 16]) for i in range(0, 64, 16)],
            step_loss=lambda m, x, y: (nn.functional.cross_entropy(m(x), y), {}),
            evaluate=lambda m: {"val_loss": float(m(X.cuda()).square().mean())},
            epochs=3,
            out=tmp_path / str(graph),
            progress=False,
            scheduler=sched,
            cuda_graph=graph,
            log=lines.append,
        )
        return model, "\n".join(lines)

    (m_e, _), (m_g, log_g) = run(False), run(True)
    assert "training step captured" in log_g
    for p, q in zip(m_g.parameters(), m_e.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
