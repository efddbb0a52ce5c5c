"""One-off (session 16): torch's cumulative sum down the rows of a (4096, w) float64 block (the
ZOH's Taylor sum layout) against along the rows of its transpose, and a two-level blocked form;
2 threads, µs per call, each including a clone (given alone)."""

import time

import torch

torch.set_num_threads(2)


def t(f, n=200):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


for w in (16, 64, 256):
    X = torch.randn(4096, w, dtype=torch.float64)
    Xt = X.T.contiguous()

    def blocked(X=X, w=w):
        Y = X.view(64, 64, w).cumsum(1)
        off = Y[:, -1].cumsum(0)
        Y[1:] += off[:-1, None]
        return Y

    print(
        w,
        f"down the rows {t(lambda X=X: X.clone().cumsum_(0)):.1f}",
        f"clone {t(lambda X=X: X.clone()):.1f}",
        f"along the transpose's rows {t(lambda Xt=Xt: Xt.clone().cumsum_(1)):.1f}",
        f"blocked 64x64 {t(blocked):.1f}",
    )
