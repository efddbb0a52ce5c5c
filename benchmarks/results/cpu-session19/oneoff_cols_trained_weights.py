"""One-off (session 19): the column form of the Triton scan at trained weights. The psMNIST
tuning run on the column form (H200, call 1 of benchmarks/results/gpu-h200-session19) lost its
validation accuracy in epoch 3, as the same default config does on the row form and on the
CPU's step loops; here its checkpoints' weights (the paper model at epoch 2 before the fall,
the last saved, epoch 8, after it) go through one training step's forward and backward on 100 training images:
the float64 step loops (the truth), the float32 step loops, and the float32 column form under
Triton's interpreter (one program per row block; each kernel's products per output are the same
at any number of programs). Printed: each one's loss, and the relative difference from the
truth of the logits and of every parameter's gradient. ~5 min per checkpoint on one thread.

    python benchmarks/results/cpu-session19/oneoff_cols_trained_weights.py CKPT [CKPT ...]
"""

import os
import sys
import time

os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported

import torch
import torch.nn.functional as F

from torchlmu import recurrence
from torchlmu import triton_scan as ts
from torchlmu.experiments.psmnist import Config, PaperModel, load

torch.set_num_threads(1)
cfg = Config()
train = load(cfg).train
x = torch.stack([train[i][0] for i in range(100)])  # (100, 784, 1)
y = torch.stack([train[i][1] for i in range(100)])


def step(model, dtype):
    model = model.to(dtype)
    model.zero_grad()
    logits = model(x.to(dtype))
    loss = F.cross_entropy(logits, y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return float(loss), logits.detach(), grads


def rel(a, b) -> str:
    return f"{float((a.double() - b).norm() / b.norm().clamp_min(1e-300)):.1e}"


for path in sys.argv[1:]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    print(f"{path}: epoch {state['epoch']}")

    def fresh(weights=state["model"]):
        m = PaperModel(cfg)
        m.load_state_dict(weights)
        return m

    recurrence.TRITON_SCAN = False
    truth = step(fresh(), torch.float64)
    runs = {"float32 step loops": step(fresh(), torch.float32)}
    # the interpreter runs on CPU tensors: route the scan to the kernels as the tests do
    recurrence._fused_scan = lambda x, C, A, W, act: ts if ts.applies(x, C, A, W, act) else None
    ts.CONFIG["form"] = "cols"
    for kernel in ("forward", "backward"):
        ts.COLS[kernel]["P"] = 1
    t0 = time.time()
    runs["float32 column form"] = step(fresh(), torch.float32)
    print(f"  column form (interpreted): {time.time() - t0:.0f} s")
    recurrence._fused_scan = lambda x, C, A, W, act: None
    print(f"  float64 step loops: loss {truth[0]:.6f}")
    for name, (loss, logits, grads) in runs.items():
        g = ", ".join(f"{n.split('.')[-1]} {rel(grads[n], truth[2][n])}" for n in grads)
        print(f"  {name}: loss {loss:.6f}, logits {rel(logits, truth[1])}; gradients: {g}")
