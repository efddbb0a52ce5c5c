"""The ``torchlmu`` command: ``demo``, ``reproduce NAME``, ``report``.

A user error (a bad option or ``--set`` value, a device, data set or optional package this
machine lacks, a folder a run may not use) prints one line, ``torchlmu: error: WHAT: expected
..., received ... (what to do)``, and exits with status 2, before anything is written (a run
that fails before its first checkpoint removes the folder it made); ``--debug`` shows the
traceback instead. Ctrl-C exits with status 130 and prints the command that resumes the run.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import math
import os
import shutil
import sys
import textwrap
import time
import typing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .exceptions import TorchLMUError, ValidationError


# ------------------------------------------------------------------------ what each command needs
@dataclass(frozen=True)
class About:
    """What ``reproduce NAME --help`` says about an experiment besides its Config."""

    duration: str  # full size and --quick, as measured (the full runs' results.json)
    data: str
    modules: tuple[str, ...]  # imported by the run: checked before it starts
    extra: str  # the pip extra that installs them


_MNIST = (
    "MNIST's four IDX .gz files (train-images-idx3-ubyte.gz, ...; SHA-1 checked), from --data "
    "DIR, else $TORCHLMU_DATA (DIR/mnist or DIR), else ~/.cache/torchlmu/mnist, else "
    "../shared/data/mnist beside a source checkout"
)
_FASHION_MNIST = (
    "Fashion-MNIST's four IDX .gz files (train-images-idx3-ubyte.gz, ...; SHA-1 checked), from "
    "--data DIR, else $TORCHLMU_DATA (DIR/fashion-mnist or DIR), else "
    "~/.cache/torchlmu/fashion-mnist, else /usr/share/datasets/fashion-mnist (the Debian "
    "package dataset-fashion-mnist), else ../shared/data/fashion-mnist beside a source checkout"
)
ABOUT: dict[str, About] = {
    "demo": About(
        "under 2 minutes on 2 CPU cores", "generated (no download)", ("matplotlib",), "experiments"
    ),
    "capacity": About(
        "full size about 70 min on 1 CPU thread (results/capacity: 4,140 s); --quick under 30 s",
        "generated band-limited white noise (no download)",
        ("matplotlib",),
        "experiments",
    ),
    "mackey-glass": About(
        "full size about 3 h on 1 CPU thread (results/mackey-glass: 10,519 s); --quick under "
        "a minute",
        "generated Mackey-Glass series (no download)",
        ("matplotlib",),
        "experiments",
    ),
    "spiking": About(
        "full size about 11 min on 1 CPU thread (results/spiking: 636 s); --quick under a minute",
        "generated (a Nengo simulation of a sinusoid)",
        ("nengo", "scipy", "threadpoolctl", "matplotlib"),
        "spiking",
    ),
    "psmnist": About(
        "full size (10 epochs) 40-65 min on 1 CPU thread (results/psmnist*: 2,399-3,958 s), "
        "5 min on an H100 with --device cuda; --quick under a minute",
        _MNIST,
        ("matplotlib",),
        "experiments",
    ),
    "psmnist-parallel": About(
        "results/psmnist-parallel/final (10 seeds and their refits, 40 epochs each) took "
        "1,338 s on 1 CPU thread; the default 3 seeds take less; --quick under a minute",
        _MNIST,
        ("matplotlib",),
        "experiments",
    ),
    "deep-psmnist": About(
        "a 4-epoch tuning pilot took 2,020-3,936 s on 1 CPU thread of a loaded machine "
        "(results/deep-psmnist/tuning); the full size is not yet measured; --quick under a minute",
        _MNIST,
        ("matplotlib",),
        "experiments",
    ),
    "deep-smnist": About(
        "as deep-psmnist (the same model without the pixel permutation); not yet measured at "
        "full size; --quick under a minute",
        _MNIST,
        ("matplotlib",),
        "experiments",
    ),
    "deep-sfmnist": About(
        "as deep-smnist (the same model and protocol on Fashion-MNIST); not yet measured at "
        "full size; --quick under a minute",
        _FASHION_MNIST,
        ("matplotlib",),
        "experiments",
    ),
}
# an experiment added without an entry: the plain extra, no claim about its duration or data
_UNKNOWN = About("not recorded", "see the experiment's module", ("matplotlib",), "experiments")

# --set values a string field accepts (the experiments check them too, but only once running)
CHOICES: dict[str, tuple[str, ...]] = {
    "readout_init": ("torch", "keras"),
    "monitor": ("val_acc", "val_loss"),
    "lr_schedule": ("constant", "cosine"),
    "input_map": ("identity", "affine_relu"),
    "feature_norm": ("none", "batchnorm"),
    "models": ("lstm", "lmu", "hybrid"),
    "model": ("deep-lmu", "lstm"),
    "dataset": ("mnist", "fashion-mnist"),
    "ffn": ("glu", "mlp"),
    "pooling": ("last", "mean"),
    "conv": ("auto", "chunk", "fft", "direct"),
}
# numeric fields that may be 0 (every other number must be > 0, unless its default is 0 or
# negative); seeds are >= 0 too
_ZERO_OK = {"washout", "warmup_steps", "weight_decay", "dropout", "r", "saturation"}
_BELOW_ONE = {"dropout"}  # a probability < 1
_AT_MOST_ONE = {"r"}  # fractions of the window


def _about(name: str) -> About:
    return ABOUT.get(name, _UNKNOWN)


def check_modules(name: str) -> None:
    """A one-line error naming the pip extra when a package the run imports is missing."""
    about = _about(name)
    missing = [m for m in about.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValidationError(
            f"torchlmu {'demo' if name == 'demo' else 'reproduce ' + name}",
            f"the Python packages {', '.join(about.modules)}",
            f"{', '.join(missing)} not installed",
            hint=f"install the '{about.extra}' extra: pip install 'torchlmu[{about.extra}]', "
            f"or pip install -e '.[{about.extra}]' in a checkout",
        )


# ------------------------------------------------------------------------------- --set values
def _hints(cfg_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cfg_cls)


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple of {_type_name(args[0])}"
        return f"tuple of {len(args)} {_type_name(args[0])}"
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return f"{_type_name(rest[0])} or None"
    return getattr(hint, "__name__", str(hint))


def _numbers(default: Any) -> list[float]:
    items = default if isinstance(default, (tuple, list)) else [default]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _range(
    name: str, kind: type, element: bool = False, default: Any = None
) -> tuple[bool, float | None, bool]:
    """A numeric field's range, all above 0: (0 allowed, upper bound or None, bound allowed).
    ``element``: of a tuple field (``seeds=(0, 1)`` holds seeds; ``seeds=5`` is a count)."""
    if name in _BELOW_ONE:
        return True, 1.0, False
    if name in _AT_MOST_ONE:
        return True, 1.0, True
    seed = kind is int and (name.endswith("seed") or (element and name.endswith("seeds")))
    # a default of 0 shows that 0 is meaningful (a field added later need not be listed above)
    return seed or name in _ZERO_OK or 0 in _numbers(default), None, False


def _describe_range(name: str, kind: type, element: bool = False, default: Any = None) -> str:
    zero_ok, high, high_ok = _range(name, kind, element, default)
    text = ">= 0" if zero_ok else ">= 1" if kind is int else "> 0"
    if high is not None:
        text += f" and {'<=' if high_ok else '<'} {high:g}"
    return text


def _convert(name: str, hint: Any, value: Any, element: bool = False, default: Any = None) -> Any:
    """``value`` as the field's type, or ValueError(what was expected)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and type(None) in args and origin is not tuple:  # X | None
        if value is None or value == "None" or value == "none":
            return None
        inner = next(a for a in args if a is not type(None))
        return _convert(name, inner, value, element, default)
    if origin is tuple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            if not items:
                raise ValueError("at least one element")
            kinds = [args[0]] * len(items)
        else:
            if len(items) != len(args):
                raise ValueError(f"exactly {len(args)} elements")
            kinds = list(args)
        return tuple(_convert(name, k, v, True, default) for k, v in zip(kinds, items, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("True or False")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("a number")
        if hint is int and not isinstance(value, int):
            raise ValueError("an integer")
        value = hint(value)
        if any(v < 0 for v in _numbers(default)):
            return value  # a field whose default is negative: no range known here
        zero_ok, high, high_ok = _range(name, hint, element, default)
        ok = math.isfinite(value) and (value >= 0 if zero_ok else value > 0)
        if high is not None:
            ok = ok and (value <= high if high_ok else value < high)
        if not ok:
            raise ValueError(_describe_range(name, hint, element, default))
        return value
    if hint is str:
        value = str(value)
        if name in CHOICES and value not in CHOICES[name]:
            raise ValueError("one of " + ", ".join(CHOICES[name]))
        return value
    return value


def _expected(name: str, hint: Any, default: Any = None) -> str:
    """What a field accepts, in words: its type, range and choices."""
    inner = hint
    args = typing.get_args(hint)
    if args and type(None) in args and typing.get_origin(hint) is not tuple:
        inner = next(a for a in args if a is not type(None))
    base = _type_name(hint)
    element = typing.get_origin(inner) is tuple
    leaf = typing.get_args(inner)[0] if element else inner
    if leaf in (int, float) and not any(v < 0 for v in _numbers(default)):
        base += f" ({_describe_range(name, leaf, element, default)})"
    if name in CHOICES:
        base += f" (one of {', '.join(CHOICES[name])})"
    return base


def _override(cfg, items: list[str], experiment: str = "the experiment"):
    """``cfg`` with ``FIELD=VALUE`` overrides (VALUE a Python literal, or a bare string),
    each checked against the field's type and range; a :class:`ValidationError` names the
    field, what it accepts and what was received."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = _hints(type(cfg))
    changes = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValidationError(
                "--set",
                f"FIELD=VALUE with FIELD one of {experiment}'s Config fields ({', '.join(fields)})",
                repr(item),
                hint=f"torchlmu reproduce {experiment} --help lists them with their defaults",
            )
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        hint = hints[key]
        try:
            changes[key] = _convert(key, hint, value, default=getattr(cfg, key))
        except ValueError:
            default = getattr(cfg, key)
            raise ValidationError(
                f"--set {key}",
                _expected(key, hint, getattr(cfg, key)),
                repr(raw),
                hint=f"e.g. --set {key}={default!r}, its default".replace("'", "")
                if not isinstance(default, str)
                else f"e.g. --set {key}={default}, its default",
            ) from None
    return replace(cfg, **changes)


def _fields_help(name: str) -> str:
    """The experiment's Config fields with type and default (full size; --quick's if it differs)."""
    from .experiments import get

    try:
        mod = get(name)
        cfg = mod.Config()
        quick = cfg.quick() if hasattr(cfg, "quick") else cfg
        hints = _hints(type(cfg))
    except Exception as e:  # --help never fails: say why the fields are not listed
        return f"(its fields cannot be listed here: {type(e).__name__}: {e})"
    rows = []
    for f in dataclasses.fields(cfg):
        full, small = getattr(cfg, f.name), getattr(quick, f.name)
        default = f"{full!r}" + (f"  (--quick: {small!r})" if small != full else "")
        kind = _expected(f.name, hints[f.name], full)
        rows.append(f"  {f.name:<18} {kind:<30} {default}")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one --help away)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _ExperimentParser(_Parser):
    """``reproduce NAME``: its help lists the experiment's Config fields, built when asked."""

    experiment = ""

    def format_help(self) -> str:
        about = _about(self.experiment)
        lines = [
            f"duration: {about.duration}",
            f"data: {about.data}",
            f"needs: {', '.join(about.modules)} (pip install 'torchlmu[{about.extra}]')",
        ]
        self.epilog = (
            "\n".join(textwrap.fill(ln, 88, subsequent_indent="  ") for ln in lines) + "\n\n"
            "Config fields (--set FIELD=VALUE; full-size default, --quick's where it differs):\n"
            + _fields_help(self.experiment)
        )
        return super().format_help()


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer (1 or more), received {text!r}"
        )
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        # One thread by default: measured on 2 cores (docs/performance.md, "Under load"), the
        # demo took 7.5 s with 2 threads and 10.5 s with 1 when quiet, but beside one busy
        # process 27.8 s with 2 (OpenMP's threads spin at every barrier while their partner
        # waits for a core) and 10.2 s with 1; beside another 2-thread torch job, 800 s.
        help="torch (and BLAS) threads, 1 or more (default 1: robust beside other jobs; "
        "more help only on otherwise idle cores)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="random seed (default 0, or the protocol's)"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (log lines instead)"
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where models train: cpu (default), cuda, cuda:N; under torchrun with cuda each "
        "rank takes cuda:LOCAL_RANK",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out (refused if the configuration changed)",
    )
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback")


def build_parser() -> argparse.ArgumentParser:
    from . import _install
    from .experiments import EXPERIMENTS

    parser = _Parser(
        prog="torchlmu",
        description="Legendre Memory Units for PyTorch: demo and the LMU paper's experiments.",
    )
    parser.add_argument("--version", action="version", version=_install.describe())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser(
        "demo",
        help="the memory-capacity task at small scale (< 2 min on 2 CPU cores, no download)",
        description="Runs the LMU paper's capacity task at small scale: the untrained LMU at "
        "two window lengths, a briefly trained LMU readout and LSTM; prints a table, writes "
        "figures and a report (its checkpoints are removed at the end).",
    )
    d.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)"
    )
    d.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    _common(d)
    r = sub.add_parser(
        "reproduce",
        help="run one experiment of the paper",
        description="Run one experiment of the LMU paper, full size by default. "
        "`torchlmu reproduce NAME --help` lists its duration, data, packages and Config fields.",
    )
    names = r.add_subparsers(
        dest="name", metavar="NAME", required=True, parser_class=_ExperimentParser
    )
    for name in sorted(EXPERIMENTS):
        e = names.add_parser(
            name,
            help=_about(name).duration,
            description=f"torchlmu reproduce {name}: run this experiment of the paper.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        e.experiment = name
        e.add_argument("--quick", action="store_true", help="the small version (see duration)")
        e.add_argument(
            "--out",
            type=Path,
            default=None,
            help="output folder (default runs/NAME, or runs/NAME-quick with --quick); "
            "committed results go to results/ only when named here",
        )
        e.add_argument(
            "--force",
            action="store_true",
            help="overwrite what --out holds (without it a used folder is refused)",
        )
        e.add_argument(
            "--data",
            type=Path,
            default=None,
            metavar="DIR",
            help="where the data set's four IDX .gz files are (MNIST or Fashion-MNIST "
            "experiments; overrides $TORCHLMU_DATA for this run)",
        )
        e.add_argument(
            "--protocol",
            type=Path,
            default=None,
            metavar="FILE",
            help="the final run of this committed protocol file (JSON: experiment, config, "
            "seed or a list of seeds, one per call, selection_rule): the only kind of run "
            "that evaluates the test set. Without "
            "it the run is a tuning run: metrics on the validation split, no test metric",
        )
        e.add_argument(
            "--jobs",
            type=_positive_int,
            default=1,
            help="worker processes, each with --threads threads (default 1; experiments made "
            "of independent pieces only: mackey-glass's (model, seed) pieces, the deep "
            "experiments' seeds; results equal to one process's)",
        )
        e.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="override one Config field (a Python literal, checked against the field's "
            "type and range; listed below), e.g. --set lr=0.002; recorded in results.json",
        )
        _common(e)
    rep = sub.add_parser(
        "report",
        help="a Markdown report of every result found",
        description="Write DIR/REPORT.md: every results.json under DIR beside the paper's "
        "numbers, with provenance. DIR must hold at least one run's results.",
    )
    rep.add_argument(
        "dir",
        type=Path,
        nargs="?",
        default=Path("results"),
        help="folder to search (default results)",
    )
    rep.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    return parser


# ----------------------------------------------------------------------------------- commands
def _context(args, out: Path, quick: bool, resume: bool = False, protocol=None):
    from .experiments.harness import RunContext

    return RunContext(
        out=out,
        seed=0 if args.seed is None else args.seed,
        threads=args.threads,
        resume=resume,
        progress=not args.no_progress,
        quick=quick,
        device=args.device,
        protocol=protocol,
        jobs=getattr(args, "jobs", 1),
    )


def _in_use(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def _discard_if_empty(out: Path) -> None:
    """Remove a run folder this command made if it holds nothing but run.json and empty
    folders (a run refused or stopped before its first checkpoint)."""
    if not out.is_dir():
        return
    files = [p for p in out.rglob("*") if p.is_file()]
    if all(p == out / "run.json" for p in files):
        shutil.rmtree(out)


def _run_in(args, out: Path, body: typing.Callable[[], int]) -> int:
    """Run ``body`` for the folder ``out``; on any failure a folder this command made and
    left without results is removed (nothing half-made stays behind)."""
    args._out = out
    made_here = not _in_use(out)
    try:
        return body()
    except BaseException:
        if made_here:
            _discard_if_empty(out)
        raise


def demo(args) -> int:
    from .experiments import capacity
    from .experiments.report import write_report

    check_modules("demo")
    t0 = time.perf_counter()
    # The paper's task and data sizes, at two short windows and 100 epochs instead of 500.
    cfg = replace(
        capacity.Config(),
        lmu0_steps=(100, 1000),
        lstm_steps=(100,),
        trained_steps=(100,),
        scale_train_steps=200,
        scale_eval_steps=(100, 200, 400),
        epochs=100,
        lr=3e-3,
    )

    def body() -> int:
        # The demo's configuration is fixed here, in the code: it is the demo's protocol, and
        # its numbers are a demonstration, never a tuning signal.
        ctx = _context(
            args,
            args.out,
            quick=True,
            resume=args.resume,
            protocol={"path": "torchlmu/cli.py", "sha256": None, "demo": True},
        )
        ctx.claim({"experiment": "demo", "seed": ctx.seed, "config": asdict(cfg)}, force=args.force)
        ctx.log("torchlmu demo: the memory-capacity task (LMU paper, section 4.1) at small scale")
        results = capacity.run(cfg, ctx)
        # the checkpoints served resuming; a finished demo keeps its results, logs and figures
        for p in sorted(args.out.rglob("*.pt")):
            p.unlink()
        print(capacity.table(results))
        report = write_report(args.out)
        print(
            f"\nFigures, results.json and {report.name} are in {args.out.resolve()}  "
            f"({time.perf_counter() - t0:.0f} s)"
        )
        return 0

    return _run_in(args, args.out, body)


def _from_protocol(args, mod):
    """(config, protocol citation) of a final run; None, None for a tuning run."""
    from .experiments.harness import ProtocolError, load_protocol

    if args.protocol is None:
        return None, None
    if args.quick or args.set:
        raise ProtocolError(
            "--protocol: the protocol file fixes the configuration; drop --quick and --set"
        )
    spec = load_protocol(args.protocol, args.name)
    if "seeds" in spec:
        # an experiment that trains one seed per call: the protocol lists the seeds of its
        # final, and each call names one of them (its own --out)
        seeds = spec["seeds"]
        if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
            raise ProtocolError(f"--protocol {args.protocol}: 'seeds' must be a list of integers")
        if args.seed not in seeds:
            raise ProtocolError(
                f"--seed: one of the protocol's seeds {seeds} expected, got {args.seed}"
            )
    else:
        seed = spec.get("seed", 0)
        if args.seed is not None and args.seed != seed:
            raise ProtocolError(f"--seed {args.seed}: the protocol fixes seed {seed}")
        args.seed = seed
    try:
        cfg = _apply(mod.Config(), spec.get("config", {}), args.name)
    except ValidationError as e:
        raise ProtocolError(f"--protocol {args.protocol}: {e}") from e
    return cfg, spec["_cite"]


def _apply(cfg, fields: dict, experiment: str = "the experiment"):
    """``cfg`` with the fields of a protocol's ``config`` (JSON values) replaced."""
    return _override(cfg, [f"{k}={v!r}" for k, v in fields.items()], experiment)


def reproduce(args) -> int:
    from .data.mnist import ENV_DATA_DIR
    from .experiments import distributed, get

    mod = get(args.name)
    out = args.out or Path("runs") / (f"{args.name}-quick" if args.quick else args.name)
    # every check before anything is written: configuration, packages, data
    cfg, cite = _from_protocol(args, mod)
    if cfg is None:
        cfg = mod.Config().quick() if args.quick else mod.Config()
        cfg = _override(cfg, args.set, args.name)
    check_modules(args.name)
    if args.jobs > 1 and not getattr(mod, "PARALLEL_PIECES", False):
        raise ValidationError(
            "--jobs",
            "1 for this experiment (only mackey-glass and the deep-* experiments train "
            "independent pieces in parallel)",
            str(args.jobs),
        )
    if args.data is not None:
        if not args.data.is_dir():
            raise ValidationError(
                "--data",
                "a folder holding the data set's four IDX .gz files",
                f"{str(args.data)!r}, which is not a folder",
                hint="name the folder that holds train-images-idx3-ubyte.gz and the others",
            )
        os.environ[ENV_DATA_DIR] = str(args.data.resolve())  # read where the data are loaded
    preflight = getattr(mod, "preflight", None)
    if preflight is not None:
        preflight(cfg)

    def body() -> int:
        ctx = _context(args, out, quick=args.quick, resume=args.resume, protocol=cite)
        ctx.claim(
            {
                "experiment": args.name,
                "quick": args.quick,
                "seed": ctx.seed,
                "mode": "final" if cite else "tuning",
                "protocol": cite,
                "config": asdict(cfg),
            },
            force=args.force,
        )
        t0 = time.perf_counter()
        main_rank = distributed.is_main()  # under torchrun only rank 0 prints
        try:
            results = mod.run(cfg, ctx)
        finally:
            distributed.shutdown()
        if main_rank:
            from .experiments.report import mode_note

            if hasattr(mod, "table"):
                print(mod.table(results))
            if mode_note(results):
                print("\n" + mode_note(results).strip("*"))
            print(f"\n{args.name}: results in {out.resolve()} ({time.perf_counter() - t0:.0f} s)")
        return 0

    return _run_in(args, out, body)


def report(args) -> int:
    from .experiments.report import find_histories, find_results, write_report

    root = args.dir
    if not root.is_dir():
        raise ValidationError(
            "torchlmu report DIR",
            "a folder holding runs' results (results.json)",
            f"{str(root)!r}, which does not exist",
            hint="name a run's --out folder, or results",
        )
    if not find_results(root) and not find_histories(root):
        raise ValidationError(
            "torchlmu report DIR",
            "a folder holding at least one run's results.json",
            f"{str(root)!r}, which holds none",
            hint="name a finished run's --out folder, or results",
        )
    print(write_report(root))
    return 0


# --------------------------------------------------------------------------------------- main
def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _interrupted(args, argv: list[str]) -> str:
    """What Ctrl-C prints: where the run stands and the command that continues it."""
    out: Path | None = getattr(args, "_out", None)
    if out is None or not out.exists():
        return "torchlmu: interrupted before the run started; nothing was written"
    again = [a for a in argv if a not in ("--force", "--resume", "--debug")] + ["--resume"]
    return (
        f"torchlmu: interrupted; what finished is kept in {out} (checkpoints after every "
        f"epoch). To continue where it stopped: torchlmu {' '.join(again)}"
    )


def main(argv: list[str] | None = None, *, raise_errors: bool | None = None) -> int:
    """Run the command; returns the exit status.

    A user error (a :class:`~torchlmu.TorchLMUError`, or a file the run cannot write) prints
    one line on stderr and returns 2; Ctrl-C prints how to resume and returns 130. With
    ``--debug``, or ``raise_errors`` (default: True when ``argv`` is given, as in tests and
    scripts), the error is raised instead.
    """
    if raise_errors is None:
        raise_errors = argv is not None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    command = {"demo": demo, "reproduce": reproduce, "report": report}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(_interrupted(args, argv), file=sys.stderr)
        return 130
    except (TorchLMUError, OSError) as e:
        if debug or raise_errors:
            raise
        if isinstance(e, TorchLMUError):
            print(f"torchlmu: error: {_one_line(e)}", file=sys.stderr)
        else:  # a folder or file this run cannot read or write
            print(
                f"torchlmu: error: {_one_line(e)} (check the path and its permissions; "
                "--debug shows the traceback)",
                file=sys.stderr,
            )
        return 2


if __name__ == "__main__":
    sys.exit(main())
