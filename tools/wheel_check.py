"""Build torchlmu's sdist and wheel, install the wheel into a fresh venv and run the command there.

Usage: ``python tools/wheel_check.py WORKDIR [--mnist DIR]`` (run by tests/test_packaging.py;
its output is the transcript kept in docs/wheel-install.txt). Steps, each printed with its
command and output:

1. ``python -m build --no-isolation`` in a copy of the repository's tracked files: an sdist,
   then a wheel built from the sdist (so the sdist is known to be complete);
2. a fresh venv (no pip, no site packages) that sees the building interpreter's torch, numpy
   and matplotlib through a ``.pth`` line naming their site-packages (a path line adds that
   folder only: the ``.pth`` files inside it, such as an editable torchlmu's, are not run);
3. ``pip install --no-deps`` of the wheel into it;
4. from a folder outside the repository, with no PYTHONPATH: ``import torchlmu`` must come
   from the venv, then ``torchlmu --version``, ``torchlmu demo`` and ``torchlmu reproduce
   psmnist --quick --data DIR`` (when MNIST is given), whose provenance must say ``wheel``.

Exit status 0 when every step passed, 1 when one failed, 3 when the build itself cannot run
here (no ``build`` module or setuptools backend: the test then skips, naming the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def step(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, show: int = 15) -> str:
    """Run ``cmd``; print it, its exit status, time and last ``show`` lines; raise on failure."""
    print(f"\n$ (cd {cwd} && {shlex.join(cmd)})", flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip()
    lines = out.splitlines()
    for ln in lines[-show:] if len(lines) > show else lines:
        print(f"  {ln}")
    print(f"  [exit {p.returncode}, {time.perf_counter() - t0:.1f} s]", flush=True)
    if p.returncode != 0:
        raise SystemExit(1)
    return p.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--mnist", type=Path, default=None)
    a = ap.parse_args()
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    print(f"python {sys.version.split()[0]} at {py}; repository {REPO}")
    # --no-isolation builds with this interpreter's packages: they must meet build-system.requires
    from importlib import metadata

    try:
        import tomllib  # Python >= 3.11
        from packaging.requirements import Requirement

        metadata.version("build")
        for req in tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]:
            r = Requirement(req)
            if metadata.version(r.name) not in r.specifier:
                print(f"cannot build here: {r.name} {metadata.version(r.name)} does not meet {req}")
                return 3
    except (ImportError, metadata.PackageNotFoundError) as e:
        print(f"cannot build here: {e}")
        return 3

    # 1. sdist and wheel, from the tracked files only (what a clone holds)
    src = work / "src-copy"
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    for f in filter(None, files):
        dest = src / f.decode()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / f.decode()).is_file():
            dest.write_bytes((REPO / f.decode()).read_bytes())
    step([py, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), "."], src)
    built = sorted(p.name for p in (work / "dist").iterdir())
    print(f"  built: {built}")
    wheel = next((work / "dist").glob("torchlmu-*.whl"))
    if not list((work / "dist").glob("torchlmu-*.tar.gz")):
        print("  no sdist was built")
        return 1

    # 2. a fresh venv that borrows torch and friends without downloading them
    venv = work / "venv"
    step([py, "-m", "venv", "--without-pip", str(venv)], work)
    vpy = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    import torch

    borrowed = Path(torch.__file__).resolve().parents[1]
    (site / "_borrowed_torch.pth").write_text(f"{borrowed}\n")
    print(f"\n{site / '_borrowed_torch.pth'}: {borrowed}")
    print(f"  (this interpreter's purelib: {sysconfig.get_paths()['purelib']})")

    # 3. the wheel, not editable, no dependencies fetched
    step(
        [py, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "--no-index", str(wheel)],
        work,
    )

    # 4. the command, outside the repository, with nothing pointing at the source tree
    run = work / "elsewhere"
    run.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCHLMU_DATA")}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", OMP_NUM_THREADS="1")
    where = step([str(vpy), "-c", "import torchlmu; print(torchlmu.__file__)"], run, env).strip()
    if not Path(where).resolve().is_relative_to(venv.resolve()):
        print(f"  torchlmu was imported from {where}, not from the venv")
        return 1
    tl = str(venv / "bin" / "torchlmu")
    version = step([tl, "--version"], run, env).strip()
    if "(wheel install" not in version:
        print("  --version does not say wheel")
        return 1
    step([tl, "demo", "--threads", "1", "--no-progress", "--out", "demo"], run, env, show=12)
    outs = [run / "demo"]
    if a.mnist is not None:
        step(
            [tl, "reproduce", "psmnist", "--quick", "--threads", "1", "--no-progress",
             "--data", str(a.mnist), "--out", "psmnist-quick"],
            run, env, show=8,
        )  # fmt: skip
        outs.append(run / "psmnist-quick")
    for out in outs:
        pv = json.loads((out / "results.json").read_text())["provenance"]
        keys = ("torchlmu", "install", "git_commit", "command")
        print(f"\n{out.name}/results.json provenance: " + json.dumps({k: pv[k] for k in keys}))
        if pv["install"] != "wheel" or pv["git_commit"] is not None:
            print("  provenance does not describe a wheel install")
            return 1
    print("\nall steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
