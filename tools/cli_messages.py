"""Run the command's user-error cases and print what each one prints (for docs/cli-messages.txt).

Usage: ``python tools/cli_messages.py SRC`` where SRC is the ``src`` folder of the torchlmu to
run (imported through PYTHONPATH). Every case runs in a fresh temporary folder with no MNIST
reachable except where the case provides it. Prints, per case: the command, the exit status,
the number of lines on stderr, and stderr's last line (a traceback's exception line), or the
whole of stderr when it has at most three lines.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(sys.argv[1]).resolve()
MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

CASES: list[tuple[str, list[str]]] = [
    ("--set with a bad value", ["reproduce", "psmnist", "--quick", "--set", "lr=abc"]),
    ("--set with a negative count", ["reproduce", "capacity", "--quick", "--set", "epochs=-1"]),
    ("--set an unknown field", ["reproduce", "capacity", "--quick", "--set", "nope=1"]),
    ("--set without '='", ["reproduce", "capacity", "--quick", "--set", "epochs"]),
    (
        "--set a string field out of its choices",
        ["reproduce", "psmnist", "--quick", "--set", "monitor=acc"],
    ),
    ("--threads 0", ["reproduce", "capacity", "--quick", "--threads", "0"]),
    ("--device cuda without a GPU", ["reproduce", "capacity", "--quick", "--device", "cuda"]),
    ("--device of an unknown kind", ["reproduce", "capacity", "--quick", "--device", "tpu"]),
    ("MNIST missing", ["reproduce", "psmnist", "--quick", "--threads", "1"]),
    ("MNIST corrupt (truncated file)", ["reproduce", "psmnist", "--quick", "--threads", "1"]),
    ("report on a folder that does not exist", ["report", "nowhere"]),
    ("report on a folder without results", ["report", "empty"]),
    ("a finished run again, without --force", ["demo", "--out", "done"]),
    ("--protocol file that does not exist", ["reproduce", "psmnist", "--protocol", "p.json"]),
]


def run(label: str, args: list[str], tmp: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(SRC),
        "HOME": str(tmp / "home"),  # no user cache of MNIST
        "OMP_NUM_THREADS": "1",
    }
    if not label.startswith("MNIST"):  # MNIST found through TORCHLMU_DATA
        (tmp / "data").mkdir()
        (tmp / "data" / "mnist").symlink_to(MNIST)
        env["TORCHLMU_DATA"] = str(tmp / "data")
    if label == "MNIST missing":  # a copy of the package outside any checkout (as a wheel)
        shutil.copytree(SRC / "torchlmu", tmp / "site" / "torchlmu")
        env["PYTHONPATH"] = str(tmp / "site")
    if label.startswith("MNIST corrupt"):
        bad = tmp / "data" / "mnist"
        bad.mkdir(parents=True)
        for f in MNIST.glob("*.gz"):
            shutil.copy(f, bad / f.name)
        raw = gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz").read()
        (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
        env["TORCHLMU_DATA"] = str(tmp / "data")
    if label.startswith("report on a folder without"):
        (tmp / "empty").mkdir()
    if label.startswith("a finished run"):
        (tmp / "done").mkdir()
        (tmp / "done" / "results.json").write_text("{}")
    p = subprocess.run(
        [sys.executable, "-m", "torchlmu", *args],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=600,
    )  # fmt: skip
    show(label, args, p.returncode, p.stderr, tmp)


def show(label: str, args: list[str], rc: int, err: str, tmp: Path) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    left = sorted(
        p.relative_to(tmp).as_posix()
        for p in tmp.rglob("*")
        if not {"home", "data", "site"} & set(p.relative_to(tmp).parts)
    )
    print(f"## {label}\n$ torchlmu {' '.join(args)}")
    print(f"exit {rc}, {len(lines)} line(s) on stderr")
    for ln in lines if len(lines) <= 3 else lines[-1:]:
        print(f"  {ln}")
    print(f"  folder afterwards: {left or 'nothing created'}\n")


def ctrl_c(tmp: Path) -> None:
    args = ["reproduce", "capacity", "--out", "run", "--threads", "1", "--no-progress"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "torchlmu", *args], env=env, cwd=tmp,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp.rglob("last.pt")):
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    err = "\n".join(
        ln for ln in err.splitlines() if not ln.startswith(("torchlmu demo", "LMU-0", "resum"))
    )
    show("Ctrl-C during a run", args, p.returncode, err, tmp)


if __name__ == "__main__":
    for label, args in CASES:
        with tempfile.TemporaryDirectory() as d:
            run(label, args, Path(d))
    with tempfile.TemporaryDirectory() as d:
        ctrl_c(Path(d))
