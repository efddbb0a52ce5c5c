"""Process-wide CPU settings for training and benchmark entry points.

Two settings decide much of an LMU's CPU time and belong to the process, not to a module, so
the library never changes them on import; entry points (the CLI's experiments, the benchmarks)
call :func:`configure_cpu`, and users may do the same:

- **Denormal floats** (``torch.set_flush_denormal``): decaying memories and small gradients
  produce denormals, each of which costs ~100 cycles on x86; float32 training slows several times.
- **Reuse of large allocations** (glibc only): glibc serves every allocation above its mmap
  threshold (128 KiB, growing to at most 32 MiB) with a fresh ``mmap`` and returns it with
  ``munmap`` on free, so every large tensor (an LMU's all-states output is 41 MB in the W2
  benchmark) is page-faulted in, 4 KiB at a time, every time it is made. On the 2-core machine
  of ``docs/performance.md`` a fresh 41 MB GEMM output cost 27 ms against 13 ms for the same
  GEMM into reused memory. Raising the mmap and trim thresholds keeps freed blocks in the heap
  for the next tensor. The cost: the process's resident memory stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import torch

__all__ = ["configure_cpu", "reuse_large_allocations", "reusing_large_allocations"]

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: tensors below it come from (and return to) the heap
_reusing = False  # whether reuse_large_allocations applied in this process


def reusing_large_allocations() -> bool:
    """Whether :func:`reuse_large_allocations` has been applied in this process."""
    return _reusing


def reuse_large_allocations() -> bool:
    """Let glibc keep freed tensors below 1 GiB for reuse instead of unmapping them.

    Returns True when applied, False where it does not apply (not Linux/glibc, or mallopt
    refused), in which case nothing changed.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; the trim threshold first, so that a refused mmap
    # threshold leaves only a harmless larger trim threshold behind.
    global _reusing
    ok = bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) and mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
    _reusing = _reusing or ok
    return ok


def configure_cpu(
    threads: int | None = None, flush_denormal: bool = True, reuse_memory: bool = True
) -> dict[str, object]:
    """Apply the entry-point CPU settings; returns what holds afterwards (for provenance).

    Args:
        threads: intra-op threads (``torch.set_num_threads``); None leaves the current number.
        flush_denormal: flush denormal floats to zero (where the CPU supports it).
        reuse_memory: :func:`reuse_large_allocations`.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            from .exceptions import ValidationError

            raise ValidationError("threads", "a positive integer or None", repr(threads))
        torch.set_num_threads(threads)
    return {
        "threads": torch.get_num_threads(),
        "flush_denormal": bool(flush_denormal and torch.set_flush_denormal(True)),
        "reuse_large_allocations": bool(reuse_memory and reuse_large_allocations()),
    }
