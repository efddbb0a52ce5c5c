"""psMNIST in a few lines: the parallel LMU (Chilkuri & Eliasmith 2021) on permuted pixels.

A short run on a subset, to show the pieces; the full protocol is
``torchlmu reproduce psmnist-parallel`` (see the reproduction tutorial).
"""

import os

import torch
from torch import nn

from torchlmu import LegendreMemory
from torchlmu.data import permuted_sequential_mnist

torch.manual_seed(0)
# MNIST's four IDX .gz files are read from $TORCHLMU_DATA/mnist (or pass the folder as the first
# argument); nothing is downloaded unless download=True is passed.
splits = permuted_sequential_mnist()  # the paper's permutation (seed 50), 50k/10k/10k
print(len(splits.train), len(splits.valid), len(splits.test))


class ParallelLMU(nn.Module):
    """The memory's last state (one matmul over all 784 steps), then a small MLP."""

    def __init__(self, order: int = 256, theta: float = 784.0, hidden: int = 346):
        super().__init__()
        self.memory = LegendreMemory(1, order, theta, batch_first=True, return_sequences=False)
        self.head = nn.Sequential(
            nn.BatchNorm1d(order, affine=False),  # the coefficients' scales differ widely
            nn.Linear(order, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x):  # x (B, 784, 1)
        m, _ = self.memory(x)  # (B, order)
        return self.head(m)


model = ParallelLMU()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
steps = int(os.environ.get("TUTORIAL_STEPS", "60"))
batches = splits.train.batches(100, shuffle=True, generator=torch.Generator().manual_seed(0))
for step, (x, y) in zip(range(steps), batches, strict=False):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 20 == 0:
        print(f"step {step}: loss {loss.item():.3f}")

# validation only: the test split is for the final run of a committed protocol
model.eval()
with torch.no_grad():
    x, y = splits.valid.batch(torch.arange(1000))
    acc = (model(x).argmax(-1) == y).float().mean().item()
print(f"validation accuracy on 1,000 images after {steps} steps: {acc:.3f}")
assert acc > 0.6  # far above chance (0.1) after a few dozen steps
