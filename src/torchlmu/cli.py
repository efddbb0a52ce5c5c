"""The ``torchlmu`` command: ``demo``, ``reproduce NAME``, ``report``."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
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


def build_parser() -> argparse.ArgumentParser:
    from .experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(
        prog="torchlmu",
        description="Legendre Memory Units for PyTorch: demo and the LMU paper's experiments.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo",
        help="the memory-capacity task at small scale (< 2 min on 2 CPU cores, no download)",
        description="Runs the LMU paper's capacity task at small scale: the untrained LMU at two window lengths, a briefly trained LMU readout and LSTM; prints a table, writes figures and a report.",
    )
    d.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)"
    )
    d.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    _common(d)
    r = sub.add_parser(
        "reproduce",
        help="run one experiment of the paper",
        description="Run one experiment of the LMU paper, full size by default.",
    )
    r.add_argument("name", choices=sorted(EXPERIMENTS), help="the experiment")
    r.add_argument("--quick", action="store_true", help="a small version (about a minute)")
    r.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default runs/NAME, or runs/NAME-quick with --quick); committed "
        "results go to results/ only when named here",
    )
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out (refused if the configuration changed)",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="overwrite what --out holds (without it a used folder is refused)",
    )
    r.add_argument(
        "--protocol",
        type=Path,
        default=None,
        metavar="FILE",
        help="the final run of this committed protocol file (JSON: experiment, config, seed, "
        "selection_rule): the only kind of run that evaluates the test set. Without it the "
        "run is a tuning run: metrics on the validation split, no test metric",
    )
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one field of the experiment's Config (a Python literal), e.g. "
        "--set clip_grad_norm=1.0; recorded in results.json",
    )
    _common(r)
    rep = sub.add_parser(
        "report",
        help="a Markdown report of every result found",
        description="Write DIR/REPORT.md: every results.json under DIR beside the paper's numbers, with provenance.",
    )
    rep.add_argument(
        "dir",
        type=Path,
        nargs="?",
        default=Path("results"),
        help="folder to search (default results)",
    )
    return parser


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
    )


def demo(args) -> int:
    from .experiments import capacity
    from .experiments.report import write_report

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
    # The demo's configuration is fixed here, in the code: it is the demo's protocol, and its
    # numbers are a demonstration, never a tuning signal.
    ctx = _context(
        args,
        args.out,
        quick=True,
        protocol={"path": "torchlmu/cli.py", "sha256": None, "demo": True},
    )
    ctx.claim({"experiment": "demo", "seed": ctx.seed, "config": asdict(cfg)}, force=args.force)
    ctx.log("torchlmu demo: the memory-capacity task (LMU paper, section 4.1) at small scale")
    results = capacity.run(cfg, ctx)
    print(capacity.table(results))
    report = write_report(args.out)
    print(
        f"\nFigures, results.json and {report.name} are in {args.out.resolve()}  ({time.perf_counter() - t0:.0f} s)"
    )
    return 0


def _override(cfg, items: list[str]):
    """``cfg`` with ``FIELD=VALUE`` overrides (VALUE a Python literal, or a bare string)."""
    import ast
    import dataclasses

    from .exceptions import ValidationError

    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise ValidationError("--set", f"FIELD=VALUE with FIELD in {sorted(names)}", repr(item))
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        old = getattr(cfg, key)
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        changes[key] = value
    return replace(cfg, **changes)


def _from_protocol(args, mod):
    """(config, protocol citation) of a final run; None, None for a tuning run."""
    from .exceptions import ValidationError
    from .experiments.harness import ProtocolError, load_protocol

    if args.protocol is None:
        return None, None
    if args.quick or args.set:
        raise ProtocolError(
            "--protocol: the protocol file fixes the configuration; drop --quick and --set"
        )
    spec = load_protocol(args.protocol, args.name)
    seed = spec.get("seed", 0)
    if args.seed is not None and args.seed != seed:
        raise ProtocolError(f"--seed {args.seed}: the protocol fixes seed {seed}")
    args.seed = seed
    try:
        cfg = _apply(mod.Config(), spec.get("config", {}))
    except ValidationError as e:
        raise ProtocolError(f"--protocol {args.protocol}: {e}") from e
    return cfg, spec["_cite"]


def _apply(cfg, fields: dict):
    """``cfg`` with the fields of a protocol's ``config`` (JSON values) replaced."""
    return _override(cfg, [f"{k}={v!r}" for k, v in fields.items()])


def reproduce(args) -> int:
    from .experiments import distributed, get

    mod = get(args.name)
    out = args.out or Path("runs") / (f"{args.name}-quick" if args.quick else args.name)
    cfg, cite = _from_protocol(args, mod)
    if cfg is None:
        cfg = mod.Config().quick() if args.quick else mod.Config()
        cfg = _override(cfg, args.set)
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


def report(args) -> int:
    from .experiments.report import write_report

    path = write_report(args.dir)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command. From the shell (``argv`` None) an error of torchlmu's own is one line
    on stderr and exit status 2; called with ``argv`` (tests, scripts) it is raised."""
    from .exceptions import TorchLMUError

    args = build_parser().parse_args(argv)
    try:
        return {"demo": demo, "reproduce": reproduce, "report": report}[args.command](args)
    except TorchLMUError as e:
        if argv is not None:
            raise
        print(f"torchlmu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
