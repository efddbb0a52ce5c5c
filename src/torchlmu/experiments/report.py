"""``torchlmu report``: every result found, beside the paper's numbers, with provenance."""

from __future__ import annotations

import json
from pathlib import Path

from . import EXPERIMENTS
from .harness import atomic_write_text

HISTORY_DIR = "history"  # superseded runs live in folders of this name: listed, not reported


def find_results(root: Path) -> list[tuple[Path, dict]]:
    """``results.json`` files of known experiments under ``root`` (sorted by path), except those
    of superseded runs (inside a ``history`` folder), which the history tables list instead."""
    found = []
    for p in sorted(Path(root).rglob("results.json")):
        if HISTORY_DIR in p.relative_to(root).parts[:-1]:
            continue
        try:
            r = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if r.get("experiment") in EXPERIMENTS:
            found.append((p, r))
    return found


def find_histories(root: Path) -> dict[str, list[tuple[Path, dict]]]:
    """``history.json`` files under ``root``, by experiment (see :func:`history_section`)."""
    out: dict[str, list[tuple[Path, dict]]] = {}
    for p in sorted(Path(root).rglob("history.json")):
        h = json.loads(p.read_text())
        out.setdefault(h["experiment"], []).append((p, h))
    return out


def history_section(name: str, files: list[tuple[Path, dict]], root: Path) -> str:
    """Every full run made of one experiment, in order: its protocol, its result, and whether
    it is the current result or why it was superseded (from hand-kept ``history.json`` files:
    ``{"experiment", "runs": [{"date", "commit", "protocol", "result", "status", "why",
    "files"}], "notes": [...]}``), so that no run made disappears from the report."""
    rows = [
        f"## {name}: history of every full run",
        "",
        "| # | date, commit | protocol | result | status | files |",
        "|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    i = 0
    for path, h in files:
        for run in h["runs"]:
            i += 1
            status = run["status"] + (f": {run['why']}" if run.get("why") else "")
            rows.append(
                f"| {i} | {run['date']}, {run['commit']} | {run['protocol']} | {run['result']} "
                f"| {status} | {run.get('files', '')} |"
            )
        notes += h.get("notes", [])
        notes.append(f"Kept in `{path.relative_to(root).as_posix()}`.")
    return "\n".join([*rows, "", *(f"- {n}" for n in notes), ""])


def mode_note(r: dict) -> str | None:
    """One sentence on the kind of run: a tuning run's metrics are on validation; a final run
    cites its protocol file. None for runs made before the harness recorded it."""
    if r.get("mode") == "tuning":
        return (
            "*Tuning run: every metric below was computed on the validation split and no test "
            "sequence was read (in capacity and Mackey-Glass, the columns and keys named test "
            "then hold validation numbers).*"
        )
    p = r.get("protocol")
    if r.get("mode") == "final" and p and p.get("demo"):
        return f"*Demo: its configuration is fixed in `{p['path']}`; not a tuning signal.*"
    if r.get("mode") == "final" and p:
        sha = (
            f", SHA-256 {p['sha256'][:12]}…, committed in {p['commit'][:7]}"
            if p.get("sha256")
            else ""
        )
        return f"*Final run of the protocol `{p['path']}`{sha}.*"
    return None


def _mode_note(r: dict, text: str) -> str:
    note = mode_note(r)
    if note is None or not text.startswith("## "):
        return text
    head, _, rest = text.partition("\n")
    return f"{head}\n\n{note}\n{rest}"


def write_report(root: Path) -> Path:
    """Write ``root/REPORT.md`` and return its path."""
    from . import get  # looked up when called (tests replace it)

    root = Path(root)
    parts = ["# torchlmu: results beside the LMU paper's", ""]
    found = find_results(root)
    if not found:
        parts.append(f"No results.json found under `{root}`.")
    counts: dict[str, int] = {}
    for _, r in found:
        counts[r["experiment"]] = counts.get(r["experiment"], 0) + 1
    for path, r in found:
        prefix = path.parent.relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        text = get(r["experiment"]).report_section(r, prefix=prefix)
        if counts[r["experiment"]] > 1 and text.startswith("## "):  # say which run this is
            head, _, rest = text.partition("\n")
            text = f"{head} (`{prefix.rstrip('/') or '.'}`)\n{rest}"
        text = _mode_note(r, text)
        parts.append(text)
    # Runs of one experiment made separately (one seed each, say): an experiment may summarise
    # them together (``across_runs(list of (folder, results)) -> markdown or None``).
    for name in sorted({r["experiment"] for _, r in found}):
        fn = getattr(get(name), "across_runs", None)
        runs = [
            (p.parent.relative_to(root).as_posix(), r) for p, r in found if r["experiment"] == name
        ]
        text = fn(runs) if fn is not None else None
        if text:
            parts.append(text)
    histories = find_histories(root)
    for name in sorted(histories):
        parts.append(history_section(name, histories[name], root))
    out = root / "REPORT.md"
    atomic_write_text(out, "\n".join(parts) + "\n")
    return out
