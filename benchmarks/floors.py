"""The kernel floor of each benchmark workload on this machine: the BLAS calls (and the few
elementwise passes) that torchlmu's algorithm for it cannot avoid, each timed alone at its real
shape with the engine torchlmu uses for it (the blocked memory's large products by
``ops.matmul`` and the step loops' products by ``ops.linear``: oneDNN on the CPU where torch has
it and the size pays; every other product torch's), summed. One JSON line per workload and phase:

    {"workload": "W1", "phase": "train", "floor_ms": ..., "kernels": {name: ms, ...}, ...}

A measured time near its floor means the time goes to arithmetic the algorithm needs, not to
Python, copies or allocation; reaching a target below the floor needs a different algorithm (or
machine). The shapes are the full benchmark sizes of ``bench.py`` (W1: B 100, T 784, order 256,
hidden 212; W2: B 16, T 10,000, order 64; W4: batch 1; W5: W1 with hidden→memory and
memory→memory).

    python benchmarks/floors.py --threads 2
    python benchmarks/floors.py --device cuda   # synchronised timing; W1's recurrence is then
                                                # cuDNN's fused RNN, as torchlmu runs it there
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from torchlmu.ops import (  # as the library runs them
    chunk_size,
    fused_block_size,
    linear,
    matmul,
    scan_groups,
)

DEVICE = torch.device("cpu")  # set by --device


def _sync() -> None:
    if DEVICE.type == "cuda":  # a GPU works asynchronously: wait before reading the clock
        torch.cuda.synchronize(DEVICE)


def _median_ms(fn, repeats: int = 7, warmup: int = 2, before=None) -> float:
    """Median of ``repeats`` timed calls of ``fn``; ``before`` (untimed) runs ahead of each."""
    for _ in range(warmup):
        fn()
    _sync()
    ts = []
    for _ in range(repeats):
        if before is not None:
            before()
            _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _steps(T: int, *ops) -> float:
    """T repetitions of a step made of ``ops`` (each a callable), ms for all T."""

    def run():
        for _ in range(T):
            for op in ops:
                op()

    return _median_ms(run, repeats=5, warmup=1)


def _r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device=DEVICE) * 0.05


def w1(B=100, T=784, d=256, G=212) -> list[dict]:
    """Hidden recurrence (forward, backward through time, weight gradient) and the memory's
    blocked projection: the block-end states (one GEMM), their carry across the T/L blocks
    (:func:`_carries`), W·Ā^{s+1} for the states entering the blocks (one GEMM, and one for
    its weight gradient) and the projection itself (one GEMM forward, one for the weight
    gradient). L is the library's block length on this device (``ops.fused_block_size``: 16
    on the CPU, 28 until session 14)."""
    L = fused_block_size(T, DEVICE)
    h, Wh, pre = _r(B, G), _r(G, G), _r(B, G)
    X, Y = _r(T * B, G), _r(T * B, G)
    J, K, N = B * T // L, L + d, L * G  # fused_chunked's [inputs | states] x [[Toeplitz], [powers]]
    A, Wb, Gy = _r(J, K), _r(K, N), _r(J, N)
    xb, Hr = _r(J, L), _r(L, d)
    P, Wm, GPW = _r(L * d, d), _r(d, G), _r(L * d, G)
    if DEVICE.type == "cuda":  # the recurrence is one call of cuDNN's fused Elman RNN there
        k = _cudnn_elman(T, B, G)
    else:
        k = {
            "recurrence forward: T x (linear BxG GxG + pre + tanh)": _steps(
                T, lambda: linear(h, Wh, pre), lambda: torch.tanh(pre)
            ),
            "recurrence backward: T x (linear BxG GxG + dtanh mul)": _steps(
                T, lambda: linear(h, Wh.T), lambda: pre * h
            ),
            "recurrence weight grad: (G x TB) (TB x G)": _median_ms(lambda: X.T @ Y),
        }
    k |= {
        "memory block-end states: one GEMM": _median_ms(lambda: xb @ Hr),
        **{f"memory {n}": v for n, v in _carries(T // L - 1, B, d).items()},
        "W times the block powers: one GEMM": _median_ms(lambda: P @ Wm),
        "memory projection forward: one GEMM (ops.matmul)": _median_ms(lambda: matmul(A, Wb)),
    }
    infer = {n: v for n, v in k.items() if "backward" not in n and "grad" not in n}
    # (no input gradient: x needs none, and the encoders are folded into the weights)
    k["memory projection backward: weight grad (ops.matmul)"] = _median_ms(lambda: matmul(A.T, Gy))
    k["W times the block powers backward: weight grad"] = _median_ms(lambda: P.T @ GPW)
    return [_rec("W1", "train", k), _rec("W1", "infer", infer)]


def _cudnn_elman(T: int, B: int, G: int) -> dict:
    """cuDNN's tanh RNN over precomputed pre-activations (T, B, G), as
    ``recurrence.elman_scan_rnn`` calls it: forward, and forward plus backward less forward."""
    rnn = torch.nn.RNN(G, G, nonlinearity="tanh", bias=False).to(DEVICE)
    pre = _r(T, B, G).requires_grad_()
    with torch.no_grad():
        fwd = _median_ms(lambda: rnn(pre))
    both = _median_ms(lambda: rnn(pre)[0].sum().backward())
    return {
        "recurrence forward: cuDNN RNN (T, B, G)": fwd,
        "recurrence backward and weight grad: cuDNN RNN": max(both - fwd, 0.0),
    }


def _carries(n: int, R: int, d: int) -> dict:
    """The blocked memory's carry over n blocks of R × d states, as ``ops.carry_scan`` runs it
    on this device: n small GEMMs, or (where ``ops.scan_groups`` splits it) two passes of K − 1
    batched GEMMs over the G groups, G − 1 small ones between groups and P^K."""
    K = scan_groups(n, R, d, DEVICE)
    S, P = _r(R, d), _r(d, d)
    if not K:
        return {f"carries: {n} x addmm {R}x{d} {d}x{d}": _steps(n, lambda: torch.addmm(S, S, P))}
    G = -(-(n + 1) // K)
    Sg = _r(G * R, d)
    return {
        f"carries in groups: 2 x {K - 1} x addmm {G * R}x{d} {d}x{d}": _steps(
            2 * (K - 1), lambda: torch.addmm(Sg, Sg, P)
        ),
        f"carries between groups: {G - 1} x addmm {R}x{d} {d}x{d}": _steps(
            G - 1, lambda: torch.addmm(S, S, P)
        ),
        f"carries: P^{K}": _median_ms(lambda: torch.linalg.matrix_power(P, K)),
    }


def w2(B=16, T=10_000, d=64) -> list[dict]:
    """memory_chunked: one GEMM writes every state, after the block-end states (one GEMM) and
    their carry across the T/L blocks (:func:`_carries`), L the library's block length on this
    device (``ops.chunk_size``: 25 on the CPU, 50 until session 14). The encoder's gradient is
    one dot product of the states with the given output gradient (bench.py's W2 training step
    backpropagates a fixed one); on a GPU training also scales one memory of x by the encoder
    (a pass over the states, ``ops.scale_states``), which the CPU's ``ops.scale_through``
    (session 14) does not."""
    L = chunk_size(T, d, DEVICE)
    J = B * T // L
    A, W = _r(J, L + d), _r(L + d, L * d)
    xb, Hr = _r(J, L), _r(L, d)
    k = {
        f"block-end states: one GEMM {J}x{L} {L}x{d}": _median_ms(lambda: xb @ Hr),
        **_carries(T // L - 1, B, d),
        f"all states: one GEMM {J}x{L + d} {L + d}x{L * d} (ops.matmul)": _median_ms(
            lambda: matmul(A, W)
        ),
    }
    infer = dict(k)
    y, g = _r(B, T, d), _r(B, T, d)
    passes = {"encoder gradient: one dot product": lambda: torch.dot(y.view(-1), g.view(-1))}
    if DEVICE.type != "cpu":
        passes["scale by the encoder: one pass"] = lambda: y * 0.5
    k |= {n: _median_ms(fn) for n, fn in passes.items()}
    train = _rec("W2", "train", k)
    # The passes stream 41 MB of states each, more than a cache holds, and the step runs each
    # right after a GEMM that wrote 41 MB: timed again with that GEMM (untimed) before each
    # call, as the step runs them. Reported beside the floor, which stays cache-warm.
    cold = {n: _median_ms(fn, before=lambda: matmul(A, W)) for n, fn in passes.items()}
    train["floor_after_gemm_ms"] = (
        train["floor_ms"] - sum(k[n] for n in passes) + sum(cold.values())
    )
    train["passes_after_gemm"] = {n: round(v, 3) for n, v in cold.items()}
    return [train, _rec("W2", "infer", infer)]


def w4(d=256, G=212) -> list[dict]:
    """The streaming step's ops, each timed on its own at batch 1: the cats of z_m = [m, x] and
    z = [z_m, h], the memory's product (m_t: 1×257 @ 257×256 without a bias: the memory does not
    read h and has no bias), the hidden pre-activation's (1×469 @ 469×212 + its bias), the
    activation on G values in place.

    (Until session 12 the cats and activation counted as empty torch calls, which left out
    their own work; that lower bound is still reported, outside the floor, as
    ``lower_bound_us``. Until session 17 the step was one fused 1×469 @ 469×468 product and a
    split: that product, zeros included, is reported as ``fused_addmm_us``. On a GPU the
    stepper keeps that fused form, and so does its floor here.)"""
    m, h, x = _r(1, d), _r(1, G), _r(1, 1)
    z_m, z = _r(1, d + 1), _r(1, d + 1 + G)
    Mm, Mh, bh = _r(d + 1, d), _r(d + 1 + G, G), _r(G)
    M, b = _r(d + G + 1, d + G), _r(d + G)
    pre = _r(1, G)
    a1, a2 = _r(1), _r(1)
    n = 2000

    def per_call(fn):
        return _median_ms(lambda: [fn() for _ in range(n)]) / n * 1e3  # µs

    if DEVICE.type == "cuda":  # the stepper's fused form there (LMUStepper: fused by default)
        out = _r(1, d + G)
        k = {
            "cat [m, x, h] (us)": per_call(lambda: torch.cat([m, x, h], 1)),
            "addmm 1x469 @ 469x468 (us)": per_call(lambda: torch.addmm(b, z, M)),
            "split_with_sizes (us)": per_call(lambda: out.split_with_sizes((d, G), 1)),
            "tanh_ on 212 values (us)": per_call(lambda: pre.tanh_()),
        }
        products = ["addmm 1x469 @ 469x468 (us)"]
    else:
        k = {
            "cat [m, x] (us)": per_call(lambda: torch.cat([m, x], 1)),
            "cat [z_m, h] (us)": per_call(lambda: torch.cat([z_m, h], 1)),
            "mm 1x257 @ 257x256 (us)": per_call(lambda: torch.mm(z_m, Mm)),
            "addmm 1x469 @ 469x212 (us)": per_call(lambda: torch.addmm(bh, z, Mh)),
            "tanh_ on 212 values (us)": per_call(lambda: pre.tanh_()),
        }
        products = ["mm 1x257 @ 257x256 (us)", "addmm 1x469 @ 469x212 (us)"]
    rec = _rec("W4", "infer", k)
    rec["floor_us"] = rec.pop("floor_ms")
    # the products and three empty calls (the other ops' dispatch without their work)
    rec["lower_bound_us"] = sum(k[p] for p in products) + 3 * per_call(lambda: a1 + a2)
    if DEVICE.type != "cuda":  # the old fused product (on a GPU it is in the floor itself)
        rec["fused_addmm_us"] = per_call(lambda: torch.addmm(b, z, M))
    return [rec]


def w5(B=100, T=784, d=256, G=212) -> list[dict]:
    """lmu_elman_scan: per step Ā·m, W_m·m, W_h·h, e_m·m, e_h·h (forward) and their transposes
    (backward), then the weight gradients over all steps."""
    m, h, Ad, Wm, Wh = _r(B, d), _r(B, G), _r(d, d), _r(G, d), _r(G, G)
    em, eh, u, pre, gm = _r(1, d), _r(1, G), _r(B, 1), _r(B, G), _r(B, d)
    bd = _r(d)
    M, Hs = _r(T * B, d), _r(T * B, G)
    fwd = _steps(
        T,
        lambda: torch.addmm(u, m, em.T),
        lambda: torch.addmm(u, h, eh.T),
        lambda: linear(m, Ad),
        lambda: m.addcmul(u, bd),
        lambda: linear(m, Wm, pre),
        lambda: linear(h, Wh, pre),
        lambda: torch.tanh(pre),
    )
    bwd = _steps(
        T,
        lambda: pre * h,
        lambda: linear(pre, Wm.T, gm),
        lambda: gm @ bd.unsqueeze(1),
        lambda: linear(gm, Ad.T),
        lambda: linear(pre, Wh.T),
        lambda: torch.addmm(gm, u, em),
        lambda: torch.addmm(pre, u, eh),
    )
    k = {"forward: T steps": fwd}
    infer = dict(k)
    k["backward through time: T steps"] = bwd
    k["weight grads: W_m, W_h"] = _median_ms(lambda: (Hs.T @ M, Hs.T @ Hs))
    return [_rec("W5", "train", k), _rec("W5", "infer", infer)]


def _rec(workload: str, phase: str, kernels: dict) -> dict:
    return {
        "workload": workload,
        "phase": phase,
        "floor_ms": sum(kernels.values()),
        "kernels": {n: round(v, 3) for n, v in kernels.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="workloads, e.g. W1 W5")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    from torchlmu.runtime import configure_cpu

    global DEVICE
    DEVICE = torch.device(args.device)
    cpu = configure_cpu(args.threads)
    torch.manual_seed(0)
    for name, fn in (("W1", w1), ("W2", w2), ("W4", w4), ("W5", w5)):
        if args.only and name not in args.only:
            continue
        for rec in fn():
            rec.update(
                device=torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
                threads=cpu["threads"],
                torch=torch.__version__,
                reuse_large_allocations=cpu["reuse_large_allocations"],
                loadavg_1min=os.getloadavg()[0],
            )
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
