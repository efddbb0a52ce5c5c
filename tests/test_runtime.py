"""torchlmu.runtime: the entry points' process-wide CPU settings."""

import platform

import pytest
import torch

from torchlmu import ValidationError, runtime


def test_configure_cpu_sets_threads_and_reports_what_holds():
    before = torch.get_num_threads()
    try:
        got = runtime.configure_cpu(1)
        assert got["threads"] == 1 == torch.get_num_threads()
        assert got["flush_denormal"] in (True, False)  # False only where the CPU lacks it
        glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
        assert got["reuse_large_allocations"] is glibc
        assert runtime.reusing_large_allocations() is glibc
        # large tensors still allocate, free and hold their values after the change
        a = torch.ones(4 << 20)
        b = a * 2
        del a
        assert float(b.sum()) == 2 * (4 << 20)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_configure_cpu_rejects_bad_threads_before_changing_anything(bad):
    before = torch.get_num_threads()
    with pytest.raises(ValidationError, match="threads"):
        runtime.configure_cpu(bad)
    assert torch.get_num_threads() == before


def test_configure_cpu_can_leave_malloc_alone():
    got = runtime.configure_cpu(None, reuse_memory=False)
    assert got["reuse_large_allocations"] is False
    assert got["threads"] == torch.get_num_threads()


def test_spiking_limits_every_loaded_blas_through_threadpoolctl():
    """reproduce spiking --threads N limits NumPy's and SciPy's BLAS too (in a child process:
    the limit is process-wide and kept)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("threadpoolctl")
    pytest.importorskip("scipy")
    code = (
        "import json, numpy, scipy.linalg\n"
        "from threadpoolctl import threadpool_info\n"
        "from torchlmu.experiments.spiking import limit_blas_threads\n"
        "n = limit_blas_threads(1)\n"
        "print(json.dumps([n, [i['num_threads'] for i in threadpool_info()"
        " if i['user_api'] == 'blas']]))\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
    )
    assert p.returncode == 0, p.stderr
    n, threads = json.loads(p.stdout)
    assert n == len(threads) >= 1 and set(threads) == {1}
