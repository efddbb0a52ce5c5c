"""One-off (session 17): the ways torch (and NumPy, for reference) can compute a batch-1 product
z·M at the streaming step's sizes, and the small ops around it, in µs per call (best of 5
timings of 20,000 calls, 1 thread). Which route is fastest on this CPU, and what a view costs.

    python benchmarks/results/cpu-session17/oneoff_single_row_routes.py
"""

import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

torch.set_num_threads(1)
threadpool_limits(1, user_api="blas")
torch.set_grad_enabled(False)


def us(f, n=20000):
    for _ in range(300):
        f()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t0) / n)
    return round(best * 1e6, 2)


def routes(k, n):
    M, b, z = torch.randn(k, n), torch.randn(n), torch.randn(1, k)
    W = M.t().contiguous()  # (n, k): a linear layer's weight
    ref = torch.addmm(b, z, M)
    r = {
        "addmm": us(lambda: torch.addmm(b, z, M)),
        "mm": us(lambda: torch.mm(z, M)),
        "mv(W, z)": us(lambda: torch.mv(W, z[0])),
        "F.linear": us(lambda: F.linear(z, W, b)),
        "bmm": us(lambda: torch.bmm(z[None], M[None])),
        "conv1d": us(lambda: F.conv1d(z.view(1, k, 1), W.view(n, k, 1), b)),
        "conv2d 1x1": us(lambda: F.conv2d(z.view(1, k, 1, 1), W.view(n, k, 1, 1), b)),
    }
    if torch.backends.mkldnn.is_available():
        op = torch.ops.mkldnn._linear_pointwise.default  # as torchlmu.ops uses it
        err = (op(z, W.t().t(), b, "none", [], "") - ref).abs().max().item()
        r["oneDNN linear"] = us(lambda: op(z, W, b, "none", [], ""))
        r["oneDNN linear max error"] = err
    zn, Mn, out = z.numpy(), M.numpy(), np.empty((1, n), np.float32)
    r["numpy dot (OpenBLAS)"] = us(lambda: np.dot(zn, Mn, out=out))
    return r


rec = {f"{k}x{n}": routes(k, n) for k, n in ((257, 256), (469, 212), (469, 468))}
d, G = 256, 212
m, x, h, z = torch.randn(1, d), torch.randn(1, 1), torch.randn(1, G), torch.randn(1, d + 1 + G)
zm = torch.randn(1, d + 1)
out = torch.randn(1, d + G)
rec["small ops"] = {
    "cat [m, x]": us(lambda: torch.cat([m, x], 1)),
    "cat [m, x, h]": us(lambda: torch.cat([m, x, h], 1)),
    "cat [z_m, h]": us(lambda: torch.cat([zm, h], 1)),
    "z[:, :257]": us(lambda: z[:, : d + 1]),
    "z.narrow(1, 0, 257)": us(lambda: z.narrow(1, 0, d + 1)),
    "split_with_sizes (256, 212)": us(lambda: out.split_with_sizes((d, G), 1)),
    "x[0] of (T, 1, 1)": us(lambda: z[0]),
}
rec.update(threads=1, torch=torch.__version__, numpy=np.__version__)
print(json.dumps(rec))
