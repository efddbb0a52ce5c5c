"""One-off (session 17): the streaming step with its memory product as ``mm`` (no memory bias:
the new stepper) against the same stepper given a zero memory bias (its product then
``addmm``, as before), alternated in one process in blocks of 400 steps, batch 1, 1 thread:
the memory alone (order 256) and the psMNIST cell. Same matrices; checked equal first.

    python benchmarks/results/cpu-session17/oneoff_bias_free.py
"""

import json
import statistics
import time

import torch

from torchlmu import LMU
from torchlmu.lmu import LMUState
from torchlmu.runtime import configure_cpu

configure_cpu(1)
torch.set_grad_enabled(False)
mem = LMU(1, None, 256, 784.0, hidden_cell=None).eval().stepper()
cell = LMU(1, 212, 256, 784.0, input_to_hidden=True, init="psmnist").eval().stepper()
assert mem.b_m is None and cell.b_m is None and cell.b_h is not None
# the same steppers with a zero memory bias: _affine then takes addmm, as every step did before
mem_old = LMU(1, None, 256, 784.0, hidden_cell=None).eval().stepper()
cell_old = LMU(1, 212, 256, 784.0, input_to_hidden=True, init="psmnist").eval().stepper()
for old, new in ((mem_old, mem), (cell_old, cell)):
    for name, buf in new.named_buffers():
        setattr(old, name, buf)
    old.b_m = torch.zeros(256)


def measure(name, old, new, st, steps=400):
    x = torch.rand(steps, 1, 1)
    a, b = old(x[0], st), new(x[0], st)
    err = (a[0] - b[0]).abs().max().item()

    def run(step):
        s = st
        t0 = time.perf_counter()
        for t in range(steps):
            _, s = step(x[t], s)
        return (time.perf_counter() - t0) / steps * 1e6

    for f in (old, new):
        run(f)
    times = {"old": [], "new": []}
    for i in range(60):
        pair = (("old", old), ("new", new)) if i % 2 == 0 else (("new", new), ("old", old))
        for k, f in pair:
            times[k].append(run(f))
    ratios = [n / o for n, o in zip(times["new"], times["old"], strict=True)]
    q = statistics.quantiles(ratios, n=20)
    return {
        "model": name, "max_abs_difference_float32": err,
        "median_us": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "min_us": {k: round(min(v), 2) for k, v in times.items()},
        "new_over_old_median": round(statistics.median(ratios), 3),
        "new_over_old_5_95_percent": [round(q[0], 3), round(q[-1], 3)],
        "blocks": len(ratios), "steps_per_block": steps, "threads": 1, "torch": torch.__version__,
    }  # fmt: skip


st_m = LMUState(torch.randn(1, 256) * 0.1)
st_c = LMUState(torch.randn(1, 256) * 0.1, torch.randn(1, 212) * 0.1)
print(json.dumps(measure("memory", mem_old, mem, st_m)), flush=True)
print(json.dumps(measure("cell", cell_old, cell, st_c)), flush=True)
