"""Distributed data parallel for the harness: the same trainer, unchanged, under ``torchrun``.

``torchrun --nproc_per_node=N -m torchlmu reproduce psmnist-parallel`` starts N processes; each
one's :class:`~torchlmu.experiments.harness.RunContext` joins the process group that torchrun
describes in the environment (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...): gloo on CPU, nccl on
CUDA. :func:`~torchlmu.experiments.harness.fit` then

- gives every rank the same global batch (its order depends only on the seed and the epoch) and
  lets each train on its contiguous shard (:func:`shard`), with the loss scaled so that the
  averaged gradient is the global batch's mean-loss gradient even when shards differ in size:
  N processes take the same steps as one process with the same global batch;
- sums the training metrics across ranks (:func:`all_reduce_sum`);
- writes checkpoints, logs and results from rank 0 only (the atomic writers skip other ranks),
  with a barrier after each epoch's checkpoint, and saves every rank's RNG state, so ``--resume``
  continues all ranks exactly.

Without torchrun (no ``WORLD_SIZE``, or 1) every function here is a cheap no-op for one process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "init_from_env",
    "is_main",
    "rank",
    "shard",
    "shutdown",
    "world",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); True if distributed.

    The backend is nccl for a CUDA ``device`` (each rank on ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    if _active():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        from ..exceptions import ValidationError

        raise ValidationError(
            "WORLD_SIZE",
            "1 (this PyTorch build has no torch.distributed)",
            os.environ["WORLD_SIZE"],
        )
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist.get_world_size() > 1


def world() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def is_main() -> bool:
    """True on rank 0: the process that writes files and logs."""
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def shard(n: int) -> slice:
    """This rank's contiguous part of ``n`` items: sizes differ by at most one, rank 0 first."""
    w, r = world(), rank()
    q, extra = divmod(n, w)
    lo = r * q + min(r, extra)
    return slice(lo, lo + q + (1 if r < extra else 0))


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sums over ranks of a list of numbers (float64; unchanged for one process)."""
    if world() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if world() == 1:
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if _active():
        dist.destroy_process_group()
