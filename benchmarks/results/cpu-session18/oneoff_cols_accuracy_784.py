"""One-off (session 18): the column form's float32 accuracy at the psMNIST model's size (B 100,
T 784, d 256, H 212, the memory's own Ā and B̄ for θ 784, random small encoders and kernels),
against the float64 step loop, beside the float32 step loop's: forward states and the
backward's carried gradients (relative Frobenius). Under Triton's interpreter with one program
per row block (P 1; the products per output are the same at any P), ~2.5 min.

    python benchmarks/results/cpu-session18/oneoff_cols_accuracy_784.py
"""

import os
import time

os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported

import torch

from torchlmu import triton_scan as ts
from torchlmu.memory import LegendreMemory
from torchlmu.recurrence import _lmu_elman_forward, lmu_elman_backward_steps

torch.set_num_threads(1)
B, T, d, H = 100, 784, 256, 212
g = torch.Generator().manual_seed(0)


def r(*shape, scale=1.0):
    return torch.randn(*shape, generator=g) * scale


def rel(a, b) -> str:
    return f"{float((a.double() - b).norm() / b.norm()):.2e}"


xu, xh, m0, h0 = r(T, B, 1), r(T, B, H, scale=0.1), torch.zeros(B, d), torch.zeros(B, H)
Ad64, Bd64 = (t.detach() for t in LegendreMemory(1, d, 784.0).discretized64())
Ad, Bd = Ad64.float(), Bd64.float().reshape(-1)
Em, Eh = r(1, d, scale=0.01), r(1, H, scale=0.01)
Wm, Wh = r(H, d, scale=0.05), r(H, H, scale=0.05)
args = [xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh]
a64 = [a.double() for a in args]
want = _lmu_elman_forward(*a64, "tanh")
loop32 = _lmu_elman_forward(*args, "tanh")
ts.CONFIG["form"], ts.COLS["P"] = "cols", 1
t0 = time.time()
got = ts.lmu_elman_forward(*args, "tanh")
print(f"column form, forward (interpreted): {time.time() - t0:.0f} s")
print("forward (M, H, U) vs the float64 loop: float32 loop",
      [rel(a, b) for a, b in zip(loop32, want, strict=True)],
      "column form", [rel(a, b) for a, b in zip(got, want, strict=True)])  # fmt: skip
gh_last = r(B, H)
wantb = lmu_elman_backward_steps(*a64[3:], want[1], "tanh", None, None, None, gh_last.double())
loopb = lmu_elman_backward_steps(*args[3:], loop32[1], "tanh", None, None, None, gh_last)
t0 = time.time()
gotb = ts.lmu_elman_backward_steps(*args[3:], loop32[1], "tanh", None, None, None, gh_last)
print(f"column form, backward (interpreted): {time.time() - t0:.0f} s")
print("backward (Gm, Gpre, Gu, gm0, gh0) vs the float64 loop: float32 loop",
      [rel(a, b) for a, b in zip(loopb, wantb, strict=True)],
      "column form", [rel(a, b) for a, b in zip(gotb, wantb, strict=True)])  # fmt: skip
