"""One-off (session 17): the psMNIST cell's streaming step in its old form (one fused
(1×469)·(469×468) product on [m, h, x], zeros included, then a split) and its new form
(LMUStepper: [m, x, h], the memory's 1×257 @ 257×256 product on z's first 257 columns, the
hidden's 1×469 @ 469×212), alternated in one process in short blocks so that both see the same
machine (its speed drifts within seconds here), at batch 1, 16 and 128. The old form is rebuilt
from the new stepper's matrices (same weights), and both are checked equal first.

    python benchmarks/results/cpu-session17/oneoff_stepper_forms.py
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
d, H = 256, 212
lmu = LMU(1, H, d, 784.0, input_to_hidden=True, init="psmnist").eval()
new = lmu.stepper()
S, I = d, 1
# old layout: rows [m, h, x], columns [m_t, pre]
Mm_full = torch.cat([new.M_m, torch.zeros(H, S)], 0)  # rows [m, x, h]
M_new_rows = torch.cat([Mm_full, new.M_h], 1)  # (S+I+H, S+H), rows [m, x, h]
perm = torch.cat([torch.arange(S), torch.arange(S + I, S + I + H), torch.arange(S, S + I)])
M_old = M_new_rows[perm].contiguous()  # rows [m, h, x]
b_old = torch.cat([new.b_m, new.b_h])


def old(x, st):
    out = torch.addmm(b_old, torch.cat([st.memory, st.hidden, x], 1), M_old)
    m, h = out.split_with_sizes((S, H), 1)
    return torch.tanh_(h), LMUState(m, h)


def measure(B, steps):
    x = torch.rand(steps, B, 1)
    st = LMUState(torch.randn(B, S) * 0.1, torch.randn(B, H) * 0.1)
    a, b = old(x[0], st), new(x[0], st)
    err = max((a[0] - b[0]).abs().max().item(), (a[1].memory - b[1].memory).abs().max().item())

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
        for name, f in pair:
            times[name].append(run(f))
    ratios = [n / o for n, o in zip(times["new"], times["old"], strict=True)]
    q = statistics.quantiles(ratios, n=20)
    return {
        "batch": B,
        "max_abs_difference_float32": err,
        "median_us": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "min_us": {k: round(min(v), 2) for k, v in times.items()},
        "new_over_old_median": round(statistics.median(ratios), 3),
        "new_over_old_5_95_percent": [round(q[0], 3), round(q[-1], 3)],
        "blocks": len(ratios),
        "steps_per_block": steps,
        "threads": 1,
        "torch": torch.__version__,
    }


for B, steps in ((1, 400), (16, 200), (128, 50)):
    print(json.dumps(measure(B, steps)), flush=True)
