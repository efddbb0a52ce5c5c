"""What every experiment shares: run context, provenance, atomic files, and the training loop.

One training loop (:func:`fit`) serves every experiment: seeded and deterministic per epoch, a
progress bar over epochs and batches, a JSONL log, the best-validation checkpoint, and a resume
checkpoint written atomically after every epoch, so that a run killed at any moment (kill -9
included) continues with ``--resume`` and ends with the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import recurrence as _recurrence
from .._install import install_kind, source_root
from ..exceptions import TorchLMUError, ValidationError
from ..runtime import configure_cpu, reusing_large_allocations
from . import distributed as _dist

__all__ = [
    "FitResult",
    "RunContext",
    "atomic_torch_save",
    "atomic_write_json",
    "atomic_write_text",
    "fit",
    "n_params",
    "provenance",
    "provenance_line",
    "random_windows",
    "shuffled_batches",
]


# ------------------------------------------------------------------------------ atomic files
@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block has ended, then
    deliver it to the handler that was in place. A KeyboardInterrupt inside ``torch.save``
    surfaced as the zip writer's RuntimeError ("unexpected pos") instead, so the command
    printed a traceback, not the command that resumes; a file being written is finished first.
    Only the main thread can handle signals: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught:
            if callable(old):
                old(signal.SIGINT, caught[0])  # Python's default raises KeyboardInterrupt
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> None:
    # Under torch.distributed only rank 0 writes: the ranks hold the same model and metrics.
    if not _dist.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _sigint_deferred():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
            os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text), "w")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic(path, lambda f: torch.save(obj, f), "wb")


def _json_default(o: Any) -> Any:
    if is_dataclass(o):
        return asdict(o)  # type: ignore[arg-type]
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -------------------------------------------------------------------------------- provenance
@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit (``-dirty`` if tracked code differs) when first asked: a run asks at its start
    (:class:`RunContext`), so later commits made while it trains do not relabel its results.
    None outside a source checkout: an installed wheel is identified by its version (git would
    otherwise answer for whatever repository happens to enclose site-packages)."""
    root = source_root()
    if root is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            # results/ is written by runs themselves: its changes do not make the code dirty
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!results",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(threads: int, device: str = "cpu") -> dict[str, Any]:
    """Where and how a result was made: command, commit, versions, threads, device, machine.

    ``torchlmu`` is the version and ``install`` the install kind (``"wheel"``, ``"editable"``,
    ``"source"``: see :mod:`torchlmu._install`); ``git_commit`` is None outside a checkout."""
    from .. import __version__

    return {
        "command": " ".join(["torchlmu", *sys.argv[1:]])
        if Path(sys.argv[0]).name in ("torchlmu", "__main__.py")
        else " ".join(sys.argv),
        "torchlmu": __version__,
        "install": install_kind(),
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "processes": _dist.world(),  # > 1 under torchrun (threads are per process)
        "reuse_large_allocations": reusing_large_allocations(),  # see torchlmu.runtime
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": device,  # where the models ran
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # the fully recurrent scan's Triton kernels on CUDA (on unless TORCHLMU_TRITON_SCAN=0)
        "triton_scan": _recurrence.TRITON_SCAN,
        # and their form where it was chosen (TORCHLMU_TRITON_FORM; None: the default, rows)
        "triton_form": os.environ.get("TORCHLMU_TRITON_FORM"),
        # and the column form's setting where one was given (TORCHLMU_TRITON_COLS)
        "triton_cols": os.environ.get("TORCHLMU_TRITON_COLS") or None,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def provenance_line(results: dict[str, Any]) -> str:
    """The report's provenance sentence for a ``results.json`` (and its ``provenance_note``, a
    correction written by hand after the run, when there is one)."""
    pv = results["provenance"]
    line = (
        f"Provenance: `{pv['command']}`, "
        + (f"torchlmu {pv['torchlmu']} ({pv.get('install')} install), " if "torchlmu" in pv else "")
        + f"commit {pv['git_commit']}, torch {pv['torch']}, "
        f"{pv['threads']} threads, {pv['cpu']}"
        + (f", on {pv['cuda']}" if str(pv.get("device", "cpu")).startswith("cuda") else "")
        + (" with the Triton scan" if pv.get("triton_scan") else "")
        + (
            f" ({pv['triton_form']} form"
            + (f", setting {pv['triton_cols']}" if pv.get("triton_cols") else "")
            + ")"
            if pv.get("triton_scan") and pv.get("triton_form")
            else ""
        )
        + f", wall {results['wall_seconds']:.0f} s."
    )
    if results.get("provenance_note"):
        line += f" Note: {results['provenance_note']}"
    return line


# ------------------------------------------------------------------------------ devices
def _check_device(device: str | torch.device) -> str:
    """``device`` as a string, or a clear error before any work if this machine lacks it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValidationError("device", "cpu, cuda or cuda:N", repr(device)) from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValidationError(
                "device", "a device this machine has (no CUDA here)", repr(device)
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValidationError(
                "device", f"cuda:0 to cuda:{torch.cuda.device_count() - 1}", repr(device)
            )
    elif dev.type != "cpu":
        raise ValidationError("device", "cpu, cuda or cuda:N", repr(device))
    return str(dev)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (cpu for an empty module)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors (also inside tuples and lists) moved to ``device``; anything else unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


__all__ += ["model_device", "to_device"]


# ------------------------------------------------------------------------------ run context
@dataclass
class RunContext:
    """Where a run writes and how it runs (shared by every experiment)."""

    out: Path
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    quick: bool = False
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))
    # The committed protocol this run is the final run of (see :func:`load_protocol`), or None:
    # a tuning run, which evaluates on validation only and never touches the test set.
    protocol: dict[str, Any] | None = None
    # Worker processes for experiments made of independent pieces (see :func:`map_pieces`);
    # each worker runs ``threads`` threads.
    jobs: int = 1

    @property
    def final(self) -> bool:
        """True for the final run of a committed protocol: the only kind that may test."""
        return self.protocol is not None

    @property
    def eval_split(self) -> str:
        """The split reported metrics are computed on: ``"test"`` in a final run, ``"val"`` in a
        tuning run (so that no tuning decision can be made on a test number)."""
        return "test" if self.final else "val"

    def mode(self) -> dict[str, Any]:
        """What results.json records about the kind of run (and the protocol it cites)."""
        return {
            "mode": "final" if self.final else "tuning",
            "evaluated_split": self.eval_split,
            "protocol": self.protocol,
        }

    def __post_init__(self) -> None:
        # every check before the folder is made: a refused run leaves nothing behind
        self.device = _check_device(self.device)
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 1:
            raise ValidationError("RunContext.jobs", "a positive integer", repr(self.jobs))
        if self.jobs > 1 and self.device != "cpu":
            raise ValidationError(
                "RunContext.jobs", "1 on a GPU (worker processes are for the CPU)", repr(self.jobs)
            )
        self.out = Path(self.out)
        # Threads; denormals flushed to zero (they slow float32 training several times on
        # CPUs); large freed tensors kept for reuse instead of page-faulted in at every step.
        self.threads = int(configure_cpu(self.threads)["threads"])
        # Under torchrun: join the process group; only rank 0 logs and shows progress.
        if _dist.init_from_env(self.device) and not _dist.is_main():
            self.log = lambda s: None
            self.progress = False
        self.out.mkdir(parents=True, exist_ok=True)
        _git_commit()  # pin the provenance to the code this run started with

    def claim(self, identity: dict[str, Any], force: bool = False) -> None:
        """Make ``out`` this run's folder, or refuse before any work (see :func:`claim_output`)."""
        claim_output(self.out, identity, resume=self.resume, force=force)

    def seed_all(self, offset: int = 0) -> None:
        s = self.seed + offset
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)

    def subdir(self, name: str) -> Path:
        p = self.out / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def for_worker(self) -> dict[str, Any]:
        """The fields a worker process rebuilds this context from (no progress bars, one job,
        logging to its stderr): ``RunContext(**ctx.for_worker())``."""
        keep = ("out", "seed", "threads", "device", "resume", "quick", "protocol")
        return {k: getattr(self, k) for k in keep} | {"progress": False, "jobs": 1}


def map_pieces(
    fn: Callable[..., Any], calls: list[tuple[Any, ...]], jobs: int = 1
) -> Iterable[tuple[int, Any]]:
    """Yield ``(i, fn(*calls[i]))`` for every call: in order in this process when ``jobs`` is 1,
    else in ``jobs`` fresh (spawned) processes as they finish.

    For experiments made of independent pieces (one model and seed each) whose results depend
    only on their arguments: a piece seeds itself, so its result does not depend on the process
    or the order it ran in. ``fn`` must be a module-level function and its arguments picklable.
    The caller records each piece as it arrives (so an interrupted run keeps what finished)."""
    if jobs == 1:
        for i, args in enumerate(calls):
            yield i, fn(*args)
        return
    import concurrent.futures as cf
    import multiprocessing

    # spawn, not fork: a forked child inherits the parent's OpenMP and allocator state
    with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        try:
            for fut in cf.as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


__all__ += ["map_pieces"]


# --------------------------------------------------------------------- protocols and folders
class ProtocolError(TorchLMUError, ValueError):
    """A protocol file that cannot be cited, or an output folder a run may not use."""


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=10
    )


def load_protocol(path: Path, experiment: str) -> dict[str, Any]:
    """Read a protocol file and check that it may be cited by a final run.

    A protocol is a JSON object ``{"experiment": NAME, "config": {FIELD: VALUE, ...},
    "seed": BASE_SEED, "selection_rule": TEXT, ...}`` (``config`` overrides the experiment's
    ``Config()``; ``"seeds": [S, ...]`` instead of ``seed`` for an experiment that trains one
    seed per call, each call naming one with ``--seed``; more keys, e.g. the rationale, are
    kept). It must be committed in git and
    unchanged since: the point of a protocol is that it was fixed before the test set was seen,
    and only a commit dates it. Returns the parsed file with ``_cite`` added: the path inside
    the repository, its SHA-256 and the commit that last changed it, which results.json records.
    """
    import hashlib

    path = Path(path)
    try:
        raw = path.read_bytes()
        spec = json.loads(raw)
    except (OSError, json.JSONDecodeError) as e:
        raise ProtocolError(f"--protocol {path}: cannot read a JSON protocol ({e})") from e
    if not isinstance(spec, dict) or spec.get("experiment") != experiment:
        raise ProtocolError(
            f"--protocol {path}: its 'experiment' is {spec.get('experiment') if isinstance(spec, dict) else None!r}, not {experiment!r}"
        )
    if not isinstance(spec.get("config", {}), dict) or not spec.get("selection_rule"):
        raise ProtocolError(
            f"--protocol {path}: needs a 'config' object and a 'selection_rule' text"
        )
    where, name = path.resolve().parent, path.name
    try:
        tracked = _git(where, "ls-files", "--error-unmatch", "--", name)
        changed = _git(where, "status", "--porcelain", "--", name)
        commit = _git(where, "log", "-1", "--format=%H", "--", name)
        top = _git(where, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError) as e:
        raise ProtocolError(f"--protocol {path}: git is needed to check the commit ({e})") from e
    if tracked.returncode != 0 or not commit.stdout.strip():
        raise ProtocolError(
            f"--protocol {path}: not committed; commit the protocol before its final run"
        )
    if changed.stdout.strip():
        raise ProtocolError(
            f"--protocol {path}: changed since its last commit; commit it before its final run"
        )
    rel = path.resolve().relative_to(Path(top.stdout.strip()).resolve()).as_posix()
    spec["_cite"] = {
        "path": rel,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "commit": commit.stdout.strip(),
        "selection_rule": spec["selection_rule"],
    }
    return spec


# what a run's folder holds once the run has started (run.json) or finished (results.json)
RUN_FILE, RESULTS_FILE = "run.json", "results.json"


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """``field: old -> new`` for every leaf that differs between two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def claim_output(out: Path, identity: dict[str, Any], resume: bool, force: bool) -> None:
    """Refuse, before any work, a folder this run would corrupt; else record the run in it.

    ``identity`` is what must not change within one run (experiment, configuration, seed, mode,
    protocol). A folder that holds anything is only used with ``resume`` (and then only by the
    same identity: a changed field is named in the error) or with ``force`` (overwrite).
    ``run.json`` holds the identity from the start, so an interrupted run can be checked too.
    """
    out = Path(out)
    identity = json.loads(json.dumps(identity, default=_json_default))  # as it will be read
    # (what the folder's run was started with, the same fields of this run), or None
    recorded: tuple[dict[str, Any], dict[str, Any]] | None = None
    earlier: dict[str, Any] = {}
    if (out / RUN_FILE).exists():
        earlier = json.loads((out / RUN_FILE).read_text())
        recorded = (earlier.get("identity") or {}, identity)
    elif (out / RESULTS_FILE).exists():
        # a run made before run.json existed: compare the config fields it recorded (fields
        # added to the Config since then did not exist for it)
        old = json.loads((out / RESULTS_FILE).read_text()).get("config") or {}
        mine = identity.get("config") or {}
        recorded = ({"config": old}, {"config": {k: mine.get(k) for k in old}})
    held = out.exists() and any(out.iterdir())
    if resume and not force and recorded is not None:
        diffs = _diff(*recorded)
        if diffs:
            raise ProtocolError(
                f"--resume: {out} was started with another configuration ({'; '.join(diffs)}); "
                "resume it unchanged, or start a new --out"
            )
    elif held and not resume and not force:
        what = (
            "a finished run (results.json)"
            if (out / RESULTS_FILE).exists()
            else "an unfinished run (--resume continues it)"
            if recorded is not None
            else "files"
        )
        raise ProtocolError(
            f"{out} already holds {what}; choose another --out, or pass --force to overwrite it"
        )
    _dist.barrier()  # every rank has checked before rank 0 writes
    now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    resumed = bool(resume and not force and recorded is not None)
    before = earlier.get("resumed")
    before = before if isinstance(before, list) else []  # run.json of a first version: a bool
    atomic_write_json(
        out / RUN_FILE,
        {
            "identity": identity,
            # a resumed run keeps its start and adds the resume, with the command that made it
            "started": earlier.get("started", now) if resumed else now,
            "command": earlier.get("command") if resumed and earlier else provenance(1)["command"],
            "resumed": [
                *earlier.get("resumed", []),
                {"at": now, "command": provenance(1)["command"]},
            ]
            if resumed
            else [],
        },
    )


__all__ += ["ProtocolError", "claim_output", "load_protocol"]


# ------------------------------------------------------------------------------ training loop
def n_params(model: nn.Module) -> int:
    """Trainable parameters (those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int):
    """``epoch -> batches of (x, y)`` in an order that depends only on (seed, epoch), so that a
    resumed run sees the same batches as an uninterrupted one."""

    def make(epoch: int):
        g = torch.Generator().manual_seed(seed * 10_007 + epoch)
        idx = torch.randperm(x.shape[0], generator=g)
        for i in range(0, len(idx), batch):
            j = idx[i : i + batch]
            yield x[j], y[j]

    return make


def random_windows(
    x: torch.Tensor, y: torch.Tensor, window: int, batch: int, steps: int, seed: int
) -> Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]:
    """``epoch -> steps batches`` of ``batch`` windows of ``window`` time steps cut at random
    from the sequences ``x``, ``y`` (``(n, T, ...)``, windows aligned in both).

    Each window takes a sequence uniformly and a start uniformly in ``0 … T − window``; the draw
    depends only on (seed, epoch), so that a resumed run sees the same windows. Training on
    short windows makes a step cost ``window / T`` of a whole-sequence step (a recurrent step
    loop is sequential in time), so that many more steps fit a budget.
    """
    n, T = x.shape[0], x.shape[1]
    if y.shape[:2] != (n, T):
        raise ValidationError("y", f"shape starting {(n, T)} (as x)", tuple(y.shape))
    for name, v, hi in (("window", window, T), ("batch", batch, None), ("steps", steps, None)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1 or (hi is not None and v > hi):
            want = "a positive integer" + ("" if hi is None else f" <= {hi} (the length)")
            raise ValidationError(name, want, repr(v))
    offsets = torch.arange(window)

    def make(epoch: int):
        g = torch.Generator().manual_seed(seed * 10_007 + epoch)
        for _ in range(steps):
            seq = torch.randint(n, (batch,), generator=g)
            start = torch.randint(T - window + 1, (batch,), generator=g)
            t = start[:, None] + offsets  # (batch, window)
            yield x[seq[:, None], t], y[seq[:, None], t]

    return make


class _GraphedStep:
    """The training step (forward, loss, backward, clipping, optimizer step) captured once as a
    CUDA graph and replayed for every batch of the captured shape: a recurrent cell's step loop
    is thousands of small kernels, and replaying them skips Python and the launch overhead.

    The first ``warmup`` batches train eagerly on a side stream (as CUDA graphs require), the
    next is captured and replayed; each later batch is copied into the static inputs. A batch of
    another shape (a short last batch) returns ``None`` and trains eagerly: both update the same
    parameters and optimizer state in place. If capture fails (an op that synchronises with the
    host, e.g. ``float(tensor)`` in ``step_loss``), ``failed`` says why and every batch trains
    eagerly from then on. The graph computes what the eager step computes (same kernels, same
    order: tested bit-exact with SGD on a GPU)."""

    def __init__(self, model, optimizer, step_loss, clip, warmup: int = 3):
        self.model, self.opt, self.step_loss, self.clip = model, optimizer, step_loss, clip
        self.warmup = warmup
        self.graph: Any = None
        self.failed: str | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.out: Any = None
        self.side: Any = None  # the warm-up steps' CUDA stream

    def _step(self, x, y):
        loss, metrics = self.step_loss(self.model, x, y)
        loss.backward()
        if self.clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return loss, metrics

    def __call__(self, x, y):
        if self.failed is not None or not (
            isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.is_cuda
        ):
            return None
        if self.static is not None and any(
            a.shape != b.shape or a.dtype != b.dtype
            for a, b in zip(self.static, (x, y), strict=True)
        ):
            return None
        cur = torch.cuda.current_stream()
        if self.warmup > 0:  # eager, on a side stream
            self.warmup -= 1
            # one side stream for every warm-up step, as PyTorch's recipe has it (a new stream
            # per step made autograd warn that gradient accumulation changed streams)
            if self.side is None:
                self.side = torch.cuda.Stream()
            side = self.side
            side.wait_stream(cur)
            with torch.cuda.stream(side):
                self.opt.zero_grad(set_to_none=True)
                loss, metrics = self._step(x, y)
            cur.wait_stream(side)
            # detached: a loss still holding its graph keeps the parameters' AccumulateGrad
            # nodes (made on the side stream) alive into the capture, whose stream differs
            return loss.detach(), metrics
        if self.graph is None:
            self.static = (x.clone(), y.clone())
            self.opt.zero_grad(set_to_none=True)  # the captured backward writes fresh gradients
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    loss, metrics = self._step(*self.static)
                # detached likewise: the captured loss's graph would keep AccumulateGrad nodes of
                # the capture stream alive into later eager steps (a short last batch)
                self.out = loss.detach(), metrics
            except Exception as e:  # any capture failure: train eagerly
                self.failed = f"{type(e).__name__}: {e}".splitlines()[0]
                self.opt.zero_grad(set_to_none=True)
                return None
            self.graph = graph
        else:
            self.static[0].copy_(x, non_blocking=True)
            self.static[1].copy_(y, non_blocking=True)
        self.graph.replay()
        return self.out


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping each learning rate of the kind this
    optimizer was made with: a run resumed on another device may have saved a tensor learning
    rate (a CUDA-graph run's) where this one holds a float, or the other way round; a tensor
    keeps its device (a graph reads it there) and receives the saved value in place."""
    before = [g["lr"] for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for g, old in zip(optimizer.param_groups, before, strict=True):
        value = float(g["lr"])
        if isinstance(old, torch.Tensor):
            g["lr"] = old.fill_(value)
        else:
            g["lr"] = value


def graph_obstacle(
    device: torch.device, world: int, optimizer: torch.optim.Optimizer, scheduler: Any = None
) -> str | None:
    """Why a training step cannot be replayed as one CUDA graph (see :func:`fit`), or None.

    A scheduler is no obstacle when every learning rate is a tensor: the schedulers of
    ``torch.optim.lr_scheduler`` then write it in place, where the captured optimizer step
    reads it at every replay (a float learning rate is baked into the graph)."""
    if device.type != "cuda":
        return "the model is not on a GPU"
    if world > 1:
        return "several processes"
    if scheduler is not None and not all(
        isinstance(g["lr"], torch.Tensor) for g in optimizer.param_groups
    ):
        return "a learning-rate scheduler with a float learning rate"
    if optimizer.defaults.get("capturable") is False:
        return "the optimizer was not made with capturable=True"
    return None


__all__ += ["graph_obstacle"]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best: dict[str, Any]
    best_path: Path
    resumed_from: int | None = None
    # the epoch after which early stopping ended training (``patience``), else None
    stopped_early_after: int | None = None


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        # dropout on a GPU draws from the CUDA generators
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    cuda = s.get("cuda")
    # a run resumed on another kind of machine continues with that machine's generators
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    train_batches: Callable[[int], Iterable[tuple[Any, Any]]],
    step_loss: Callable[[nn.Module, Any, Any], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[nn.Module], dict[str, float]],
    epochs: int,
    out: Path,
    monitor: str = "val_loss",
    mode: str = "min",
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    n_batches: int | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
    scheduler: Any = None,
    clip_grad_norm: float | None = None,
    cuda_graph: bool = False,
    patience: int | None = None,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs; keep the best epoch by ``monitor`` on validation.

    Args:
        train_batches: ``epoch -> iterable of (x, y)``; must depend only on the epoch (seed the
            shuffle with it) so that a resumed run sees the same batches.
        step_loss: ``(model, x, y) -> (loss, {name: value})``: the loss to minimise and running
            metrics to average over the epoch (e.g. accuracy).
        evaluate: ``model -> {name: value}`` on validation data, in eval mode, without grad.
            Training batches are moved to the model's device here; ``evaluate`` moves its own
            data (see :func:`model_device`, :func:`to_device`).
        out: folder for ``last.pt`` (resume), ``best.pt`` (best model) and ``log.jsonl``.
        monitor, mode: the validation metric that selects the best epoch, ``"min"``/``"max"``.
        resume: continue from ``out/last.pt`` if it exists.
        stop_after: stop after this many epochs in this call (to test interruption).
        scheduler: an optional ``torch.optim.lr_scheduler`` stepped once per epoch (saved with
            the resume checkpoint).
        clip_grad_norm: if given, the global gradient norm is clipped to it before each step
            (after DDP's averaging, so every rank clips the same gradient). Each epoch's row
            then records ``clipped_fraction`` (steps whose norm exceeded the threshold) and
            ``grad_norm_median`` (before clipping), so a threshold meant for outliers can be
            seen to fire only on them; a CUDA-graph step records None (no host reads there).
        cuda_graph: replay the training step as one CUDA graph (see :class:`_GraphedStep`)
            when the model is on a GPU, in one process, without a scheduler unless the
            learning rates are tensors (a float one is baked into the graph), and the
            optimizer, if it has the option, was made with ``capturable=True``; otherwise (or
            if capture fails, logged) it trains eagerly (:func:`graph_obstacle` says why).
            ``step_loss`` must then return its metrics as tensors (no host synchronisation).
        patience: early stopping: training ends once ``patience`` epochs in a row have not
            improved ``monitor`` on its best value (the best epoch is kept, as always); a
            resumed run that had already stopped trains no further. None: all ``epochs``.

    Under ``torchrun`` (see :mod:`.distributed`) the model trains wrapped in
    ``DistributedDataParallel``: each rank takes its shard of every global batch, the loss is
    scaled so the averaged gradient is the global batch's, training metrics are summed over
    ranks, and rank 0 alone writes files. ``evaluate`` runs on every rank (shard it inside with
    :func:`.distributed.shard` and :func:`.distributed.all_reduce_sum` to split the work).

    Returns:
        :class:`FitResult` with the history (one row per epoch: train metrics, validation
        metrics, wall seconds) and the best epoch's validation metrics.
    """
    if patience is not None and (
        not isinstance(patience, int) or isinstance(patience, bool) or patience < 1
    ):
        raise ValidationError("patience", "a positive integer or None", repr(patience))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"
    sign = 1.0 if mode == "min" else -1.0
    history: list[dict[str, Any]] = []
    best_value, best_epoch, best = math.inf, -1, {}
    start, resumed_from = 0, None
    W = _dist.world()
    device = model_device(model)  # batches follow the model
    train_model: nn.Module = model
    if W > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model)  # broadcasts rank 0's parameters
    if resume and last_path.exists():
        # on the CPU first: a run may resume on another device than it started on
        ck = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        _load_optimizer(optimizer, ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        rngs = ck.get("rng_ranks")
        _set_rng_state(rngs[_dist.rank()] if rngs and len(rngs) == W else ck["rng"])
        history, best_value, best_epoch, best = (
            ck["history"],
            ck["best_value"],
            ck["best_epoch"],
            ck["best"],
        )
        start = resumed_from = ck["epoch"] + 1
        if log:
            log(f"resumed from {last_path} after epoch {ck['epoch'] + 1}/{epochs}")

    graphed = None
    if cuda_graph:
        why = graph_obstacle(device, W, optimizer, scheduler)
        if why is None:
            graphed = _GraphedStep(model, optimizer, step_loss, clip_grad_norm)
        elif log:
            log(f"cuda_graph: training eagerly ({why})")

    graphed_logged = False
    bar = _progress(epochs, desc, progress, initial=start)
    done_here = 0
    stopped_early_after = None
    for epoch in range(start, epochs):
        if stop_after is not None and done_here >= stop_after:
            break
        # ``epoch`` epochs are done; the best was epoch ``best_epoch`` (1-based)
        if patience is not None and best_epoch > 0 and epoch - best_epoch >= patience:
            stopped_early_after = epoch
            if log:
                log(
                    f"{desc}: stopped early after epoch {epoch} ({patience} epochs without a "
                    f"better {monitor}; best epoch {best_epoch})"
                )
            break
        t0 = time.perf_counter()
        model.train()
        sums: dict[str, float | torch.Tensor] = {}  # tensors until the epoch's end
        count = 0
        norms: list[torch.Tensor] = []  # pre-clipping gradient norms (eager steps), read at the end
        inner = _progress(n_batches, f"epoch {epoch + 1}", progress, leave=False)
        for x, y in train_batches(epoch):
            x, y = to_device(x, device), to_device(y, device)
            out = None if graphed is None else graphed(x, y)
            if out is not None:  # trained by the CUDA graph
                if graphed.graph is not None and log and not graphed_logged:
                    log(f"cuda_graph: training step captured for batches of {tuple(x.shape)}")
                    graphed_logged = True
                (loss, metrics), n = out, len(x)
            else:
                if graphed is not None and graphed.failed and log and not graphed_logged:
                    log(f"cuda_graph: capture failed, training eagerly ({graphed.failed})")
                    graphed_logged = True
                optimizer.zero_grad(set_to_none=True)
                n_global = len(x) if hasattr(x, "__len__") else 1
                if W > 1:  # this rank's shard of the global batch
                    part = _dist.shard(n_global)
                    x, y = x[part], y[part]
                n = len(x) if hasattr(x, "__len__") else 1
                loss, metrics = step_loss(train_model, x, y)
                # DDP averages gradients over ranks; weighting each rank's mean loss by its
                # share makes that average the global batch's mean-loss gradient, as in one
                # process.
                (loss * (n * W / n_global) if W > 1 else loss).backward()
                if clip_grad_norm is not None:
                    norms.append(
                        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm).detach()
                    )
                optimizer.step()
            count += n
            # summed on the device: no host synchronisation per step (a GPU runs ahead)
            for k, v in {"loss": loss.detach(), **metrics}.items():
                v = v.detach().double() if isinstance(v, torch.Tensor) else v
                sums[k] = sums.get(k, 0.0) + v * n
            if inner is not None:
                inner.update(1)
                inner.set_postfix(
                    {k: f"{float(v) / count:.4g}" for k, v in sums.items()}, refresh=False
                )
        if inner is not None:
            inner.close()
        sums = {k: float(v) for k, v in sums.items()}  # the epoch's one host read of them
        if W > 1:  # sum the training metrics over ranks
            keys = sorted(sums)
            *vals, count_f = _dist.all_reduce_sum([sums[k] for k in keys] + [count])
            sums, count = dict(zip(keys, vals, strict=True)), int(count_f)
        train_s = time.perf_counter() - t0
        if scheduler is not None:
            scheduler.step()
        model.eval()
        with torch.no_grad():
            val = evaluate(model)
        row = {
            "epoch": epoch + 1,
            **{f"train_{k}": v / max(count, 1) for k, v in sums.items()},
            **val,
            "train_seconds": train_s,
            "epoch_seconds": time.perf_counter() - t0,
        }
        if clip_grad_norm is not None:
            # under DDP every rank clips the same averaged gradient: its own norms suffice
            g = torch.stack(norms).double().cpu() if norms else None  # one host read per epoch
            row["clipped_fraction"] = (
                None if g is None else float((g > clip_grad_norm).mean(dtype=torch.float64))
            )
            row["grad_norm_median"] = None if g is None else float(g.median())
        history.append(row)
        value = sign * float(val[monitor])
        if value < best_value:
            best_value, best_epoch, best = value, epoch + 1, dict(val)
            atomic_torch_save(
                {"model": model.state_dict(), "epoch": epoch + 1, "metrics": val}, best_path
            )
        # The resume point: written after the best model, so the pair is always consistent.
        rngs = _dist.all_gather_object(_rng_state())  # every rank's, for an exact resume
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(),
                "rng": rngs[0],
                "rng_ranks": rngs if W > 1 else None,
                "epoch": epoch,
                "history": history,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "best": best,
            },
            last_path,
        )
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
        _dist.barrier()  # no rank reads a checkpoint before rank 0 has written it
        done_here += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                {monitor: f"{val[monitor]:.4g}", "best": f"{sign * best_value:.4g}"}, refresh=True
            )
        elif log and (epoch + 1 == epochs or (epoch + 1) % max(1, epochs // 10) == 0):
            log(
                f"{desc} epoch {epoch + 1}/{epochs}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            )
    if bar is not None:
        bar.close()
    return FitResult(history, best_epoch, best, best_path, resumed_from, stopped_early_after)


def _progress(total: int | None, desc: str, enabled: bool, leave: bool = True, initial: int = 0):
    if not enabled or not sys.stderr.isatty():  # without a terminal: a few log lines instead
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is a nicety, never a requirement
        return None
    return tqdm(
        total=total,
        desc=desc,
        leave=leave,
        initial=initial,
        dynamic_ncols=True,
        mininterval=0.5,
        file=sys.stderr,
    )


def load_best(model: nn.Module, result: FitResult) -> nn.Module:
    """Load the best epoch's weights into ``model`` (for the one final test evaluation)."""
    ck = torch.load(result.best_path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    return model


__all__ += ["load_best"]


# ------------------------------------------------------------------------------ statistics
# Two-sided 95 % quantiles of Student's t, t_{0.975, df} for df = 1 … 30 (standard values; a
# test checks them against SciPy). Beyond 30 the normal quantile is within 2 %.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """Student's t quantile at 0.975 for ``df`` degrees of freedom (1.96 beyond 30)."""
    if df < 1:
        raise ValidationError("df", "at least 1", repr(df))
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_std_ci(values: Iterable[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the 95 % t-interval of the mean over seeds:
    ``{"n", "mean", "std", "ci95": [low, high]}`` (std and interval None for one value)."""
    v = [float(x) for x in values]
    if not v:
        raise ValidationError("values", "at least one value", "none")
    n, mean = len(v), sum(v) / len(v)
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


__all__ += ["mean_std_ci", "t_quantile_975"]
