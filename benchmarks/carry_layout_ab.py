"""The blocked memory's carry laid out by copies (session 13: the carries scanned into a fresh
tensor, transposed into rows, then concatenated beside the block inputs) against written
straight into the GEMM's input (session 14: ``ops.carry_scan(..., out=)``, its groups laid out
by one strided copy each way), alternating in one process. The session-13 code is reproduced
below for the comparison only. One JSON line per workload and phase (each variant's per-round
minimum of 5 runs over ``--rounds`` rounds, and their medians).

W2 is bench.py's memory (B 16, T 10,000, order 64); W2-long the same memory over T 100,000.

    python benchmarks/carry_layout_ab.py --threads 2 --rounds 8
"""

from __future__ import annotations

import json

import torch
from _ab import alternate, memory_steps, setup, summary  # benchmarks/_ab.py

from torchlmu import ops


def _carry_scan_s13(E, P, S0, out=None):
    n, R, d = E.shape
    K = ops.scan_groups(n, R, d, E.device)
    if not K:
        out = E.new_empty((n + 1, R, d))
        ops._start(out[0], S0)
        for j in range(n):
            torch.addmm(E[j], out[j], P, out=out[j + 1])
        return out
    G = -(-(n + 1) // K)
    Eg = E.new_zeros((G * K, R, d))
    Eg[:n] = E
    Eg = Eg.view(G, K, R, d).transpose(0, 1).contiguous().view(K, G * R, d)
    Z, buf = Eg[0].clone(), torch.empty_like(Eg[0])
    for k in range(1, K):
        torch.addmm(Eg[k], Z, P, out=buf)
        Z, buf = buf, Z
    Z = Z.view(G, R, d)
    out = E.new_empty((K, G, R, d))
    S = out[0]
    ops._start(S[0], S0)
    PK = torch.linalg.matrix_power(P, K)
    for g in range(G - 1):
        torch.addmm(Z[g], S[g], PK, out=S[g + 1])
    flat = out.view(K, G * R, d)
    for k in range(K - 1):
        torch.addmm(Eg[k], flat[k], P, out=flat[k + 1])
    return out.transpose(0, 1).reshape(G * K, R, d)[: n + 1]


def _memory_chunked_s13(u, Ad, Bd, m0=None, L=None, weights=None):
    T, d = u.shape[0], Ad.shape[-1]
    L = ops.chunk_size(T, d, u.device) if L is None else L
    J = ops._blocks(T, L)
    x = u.reshape(T, ops._rows(u)).T
    R = x.shape[0]
    Hrev, AL, W = ops.chunk_weights(Ad, Bd, L) if weights is None else weights
    xb = ops._to_blocks(x, J, L).flatten(0, 1)
    if J > 1 or m0 is not None:
        E = (xb @ Hrev).unflatten(0, (R, J))
        Sj = ops._block_carries(E, AL, None if m0 is None else m0.reshape(R, d))
        Y = ops.matmul(torch.cat([xb, Sj.flatten(0, 1)], 1), W)
    else:
        Y = ops.matmul(xb, W[:L])
    Y = Y.unflatten(0, (R, J)).unflatten(-1, (L, d)).flatten(1, 2)[:, :T]
    return Y.unflatten(0, u.shape[1:]).movedim(-2, 0)


def main() -> None:
    args = setup(__doc__)
    new = (ops.carry_scan, ops.memory_chunked)
    variants = {
        "copies (session 13)": lambda: (
            setattr(ops, "carry_scan", _carry_scan_s13),
            setattr(ops, "memory_chunked", _memory_chunked_s13),
        ),
        "in place (session 14)": lambda: (
            setattr(ops, "carry_scan", new[0]),
            setattr(ops, "memory_chunked", new[1]),
        ),
    }
    for name, T in (("W2", 10_000), ("W2-long", 100_000)):
        for phase, step in zip(("train", "infer"), memory_steps(T=T), strict=True):
            runs = alternate(variants, step, args.rounds, runs=5)
            ops.carry_scan, ops.memory_chunked = new
            rec = {"workload": name, "phase": phase, **summary(runs)}
            print(json.dumps(rec | {"threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
