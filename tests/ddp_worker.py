"""Trains a small LMU classifier with the harness's ``fit``; run alone or under torchrun.

Used by ``test_distributed.py``: ``python ddp_worker.py OUT DUMP EPOCHS [--stop-after K]
[--resume]`` writes ``DUMP.rankR.pt`` (final parameters and the history) for every rank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from torchlmu import LMU
from torchlmu.experiments import distributed
from torchlmu.experiments.harness import RunContext, atomic_write_json, fit, shuffled_batches


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lmu = LMU(1, 8, 4, 10.0, batch_first=True, return_sequences=False)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.lmu(x)[0])


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("dump")
    p.add_argument("epochs", type=int)
    p.add_argument("--stop-after", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    ctx = RunContext(out=a.out, threads=1, progress=False, resume=a.resume)
    torch.manual_seed(0)
    model = Net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(23, 30, 1, generator=g)  # 23 = 8 + 8 + 7: the last batch's shards differ
    y = torch.randint(0, 3, (23,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step_loss(m, xb, yb):
        logits = m(xb)
        return nn.functional.cross_entropy(logits, yb), {
            "acc": float((logits.argmax(-1) == yb).float().mean())
        }

    def evaluate(m):
        return {"val_loss": float(nn.functional.cross_entropy(m(x), y))}

    res = fit(
        model,
        opt,
        train_batches=shuffled_batches(x, y, 8, seed=0),
        step_loss=step_loss,
        evaluate=evaluate,
        epochs=a.epochs,
        out=a.out,
        resume=ctx.resume,
        progress=False,
        stop_after=a.stop_after,
    )
    # The atomic writers must skip every rank but 0: this file appears only as rank0.json.
    atomic_write_json(a.out / f"rank{distributed.rank()}.json", {"rank": distributed.rank()})
    torch.save(
        {"params": [q.detach().clone() for q in model.parameters()], "history": res.history},
        f"{a.dump}.rank{distributed.rank()}.pt",
    )
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
