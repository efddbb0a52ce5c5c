"""One-off (session 19): the shared memory Triton's sm_90 compile gives each column-form kernel
(torchlmu.triton_scan) at the psMNIST model's widths (d 256, H 212), float32 and float64, 16 and
32 rows per block, 2-16 programs per row block, against triton_scan._cols_bytes, the bound
_cols_plan uses to keep a plan within a GPU's shared memory per program (an H200: 232,448
bytes). Why: on the H200 in session 19, float64 with 4 programs asked for 430,080 bytes and
its launch failed. No GPU needed (~1 min; Triton 3.9.0 here).

    TRITON_DEFAULT_FP_FUSION=1 PYTHONPATH=src python benchmarks/results/cpu-session19/oneoff_cols_shared_memory.py
"""

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from torchlmu import triton_scan as ts

ints = {"T", "B", "D", "H", "RB0", "T0", "T1"}
fwd = [
    "xu",
    "xh",
    "AT",
    "Bd",
    "em",
    "eh",
    "WhT",
    "WmAT",
    "wmb",
    "Ms",
    "Hs",
    "Us",
    "Sync",
    "RB0",
    "T0",
    "T1",
    "B",
    "D",
    "H",
]
bwd = [
    "Hs",
    "gM",
    "gH",
    "gm_last",
    "gh_last",
    "Ah",
    "WmAh",
    "Wh",
    "Bd",
    "wmbd",
    "eh",
    "Cm",
    "Gp",
    "Gu",
    "Sync",
    "RB0",
    "T0",
    "T1",
    "T",
    "B",
    "D",
    "H",
]
for dtype, dt in ((torch.float32, "fp32"), (torch.float64, "fp64")):
    for BB in (16, 32):
        for P in (2, 4, 8, 16):
            for fn, names, extra, kernel in (
                (ts._forward_cols_kernel, fwd, {"HAS_EM": True, "HAS_EH": True}, "forward"),
                (
                    ts._backward_cols_kernel,
                    bwd,
                    {
                        "HAS_GM": True,
                        "HAS_GH": False,
                        "HAS_LAST_M": False,
                        "HAS_LAST_H": True,
                        "HAS_EH": True,
                        "FIRST": 1,
                    },
                    "backward",
                ),
            ):
                ts.COLS[kernel].update(BB=BB, P=P)
                plan = ts._cols_plan(256, 212, kernel)
                meta = ts._cols_meta(plan, 256, 212, dtype, kernel)
                warps = meta.pop("num_warps")
                cons = {"ACT": 1, "SYNC": True, **extra, **meta}
                sig = {
                    n: "i32" if n in ints else ("*i32" if n == "Sync" else "*" + dt) for n in names
                }
                sig.update({k: "constexpr" for k in cons})
                k = triton.compile(
                    ASTSource(fn, sig, cons),
                    target=GPUTarget("cuda", 90, 32),
                    options={"num_warps": warps},
                )
                bound = ts._cols_bytes(BB, P, 256, 212, dtype.itemsize)
                ok = "ok" if k.metadata.shared <= bound else "OVER"
                print(
                    f"{kernel:8} {dt} BB {BB:2} P {P:2}  shared {k.metadata.shared:7,}  bound {bound:7,}  {ok}",
                    flush=True,
                )
