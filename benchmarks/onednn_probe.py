"""Whether oneDNN's matmul would beat MKL's on this CPU, at torchlmu's shapes (a probe, not a
library path: torch reaches oneDNN's fp32 matmul only through the Inductor operator
``torch.ops.mkldnn._linear_pointwise``). One JSON line per measurement:

    {"case": "matmul 2048^3", "engine": "onednn", "median_ms": ..., "gflops_per_s": ...,
     "rel_err_vs_mkl": ...}

Cases: the 2048³ product, one Elman step's (B × H)·(H × H) product, the memory projection's GEMM
of W1 (2800 × 284)·(284 × 5936), and W1's whole Elman forward loop (T 784: per step the product
plus the pre-activation, then tanh).

    python benchmarks/onednn_probe.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def _median_ms(fn, repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lin = torch.ops.mkldnn._linear_pointwise.default  # linear(x, W (out, in), b, post-op)
    lin_add = torch.ops.mkldnn._linear_pointwise.binary  # linear(x, W) + other, fused
    base = {"threads": args.threads, "torch": torch.__version__}

    def emit(case, engine, ms, flops, err=None):
        rec = {"case": case, "engine": engine, "median_ms": ms, **base}
        if flops:
            rec["gflops_per_s"] = flops / (ms / 1e3) / 1e9
        if err is not None:
            rec["rel_err_vs_mkl"] = err
        print(json.dumps(rec), flush=True)

    for case, (m, k, n), reps in (
        ("matmul 2048^3", (2048, 2048, 2048), 1),
        ("Elman step (100 x 212)(212 x 212), 200 calls", (100, 212, 212), 200),
        ("W1 memory projection (2800 x 284)(284 x 5936)", (2800, 284, 5936), 1),
    ):
        a, w = torch.randn(m, k), torch.randn(n, k)  # w as a linear weight: (out, in)
        wT = w.T

        def mkl(a=a, wT=wT, reps=reps):
            for _ in range(reps):
                y = a @ wT
            return y

        def dnn(a=a, w=w, reps=reps):
            for _ in range(reps):
                y = lin(a, w, None, "none", [], "")
            return y

        flops = 2 * m * k * n * reps
        emit(case, "mkl", _median_ms(mkl), flops)
        emit(case, "onednn", _median_ms(dnn), flops, _rel(dnn(), mkl()))

    T, B, H = 784, 100, 212
    pre, W, h0 = torch.randn(T, B, H) * 0.5, torch.randn(H, H) * 0.05, torch.zeros(B, H)

    def loop_mkl():
        out, h, WT = torch.empty_like(pre), h0, W.T
        for t in range(T):
            torch.addmm(pre[t], h, WT, out=out[t]).tanh_()
            h = out[t]
        return out

    def loop_dnn():
        out, h = torch.empty_like(pre), h0
        for t in range(T):
            torch.tanh(lin_add(h, pre[t], W, None, "add"), out=out[t])
            h = out[t]
        return out

    flops = 2 * T * B * H * H
    case = "W1 Elman forward loop (T 784, B 100, H 212)"
    emit(case, "mkl", _median_ms(loop_mkl, repeats=5), flops)
    emit(case, "onednn", _median_ms(loop_dnn, repeats=5), flops, _rel(loop_dnn(), loop_mkl()))


if __name__ == "__main__":
    main()
