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
