"""One-off (session 18): where the eager memory step's time goes at batch 1, one thread (W6's
"memory" model: order 256, no hidden part), alternated in one process, 15 rounds of 2,000
steps: the stepper as bench.py calls it, its step function without the module call, a
concatenation and product alone, the product alone, and the loop's indexing alone.

    python benchmarks/results/cpu-session18/oneoff_memory_step_parts.py   # from the repo root
"""

import statistics
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from onnx_step import build  # benchmarks/ is not a package

STEPS = 2000
torch.set_num_threads(1)
lmu = build("memory")
step = lmu.stepper()
x = torch.rand(STEPS, 1, 1)
M = step._buffers["M_m"]


def full():
    state = lmu.initial_state(1)
    with torch.no_grad():
        for t in range(STEPS):
            _, state = step(x[t], state)


def step_fn():
    state = lmu.initial_state(1)
    f = step._step
    with torch.no_grad():
        for t in range(STEPS):
            _, state = f(x[t], state)


def cat_mm():
    m = torch.zeros(1, 256)
    with torch.no_grad():
        for t in range(STEPS):
            m = torch.mm(torch.cat([m, x[t]], 1), M)


def mm():
    z = torch.zeros(1, 257)
    with torch.no_grad():
        for _ in range(STEPS):
            torch.mm(z, M)


def index():
    for t in range(STEPS):
        x[t]


fns = {"full": full, "step_fn": step_fn, "cat_mm": cat_mm, "mm": mm, "index": index}
res = {k: [] for k in fns}
for _ in range(15):
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        res[k].append((time.perf_counter() - t0) / STEPS * 1e6)
for k, v in res.items():
    print(k, f"median {statistics.median(v):.2f} min {min(v):.2f}")
