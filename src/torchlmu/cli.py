"""The ``torchlmu`` command: ``demo``, ``reproduce NAME``, ``report``."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
        help="output folder (default results/NAME, or runs/NAME-quick with --quick)",
    )
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
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


def _context(args, out: Path, quick: bool, resume: bool = False):
    from .experiments.harness import RunContext

    return RunContext(
        out=out,
        seed=args.seed,
        threads=args.threads,
        resume=resume,
        progress=not args.no_progress,
        quick=quick,
        device=args.device,
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
    ctx = _context(args, args.out, quick=True)
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


def reproduce(args) -> int:
    from .experiments import distributed, get

    mod = get(args.name)
    out = args.out or (
        Path("runs") / f"{args.name}-quick" if args.quick else Path("results") / args.name
    )
    cfg = mod.Config().quick() if args.quick else mod.Config()
    cfg = _override(cfg, args.set)
    ctx = _context(args, out, quick=args.quick, resume=args.resume)
    t0 = time.perf_counter()
    main_rank = distributed.is_main()  # under torchrun only rank 0 prints
    try:
        results = mod.run(cfg, ctx)
    finally:
        distributed.shutdown()
    if main_rank:
        if hasattr(mod, "table"):
            print(mod.table(results))
        print(f"\n{args.name}: results in {out.resolve()} ({time.perf_counter() - t0:.0f} s)")
    return 0


def report(args) -> int:
    from .experiments.report import write_report

    path = write_report(args.dir)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"demo": demo, "reproduce": reproduce, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
