"""The blocked memory's block length L against its time: ``LegendreMemory`` (scalar input, every
state returned, as bench.py's W2) trained and run at several L per shape, the L's alternating
within each round so that all see the same machine state. One JSON line per (shape, phase):
each L's per-round minimum of ``--runs`` runs and their median, the library's L
(``ops.chunk_size``) and the fastest measured.

L trades the all-states GEMM, whose inner size is L + d (so ~2·B·T·d·(L + d) flops), against
the carry across the T/L blocks (``ops.carry_scan``: fewer, larger calls as L grows). Every L
swept divides T (no padded tail). The module reads ``ops.chunk_size``; this script replaces it
for each variant.

    python benchmarks/chunk_size_sweep.py --threads 2 --rounds 3
    python benchmarks/chunk_size_sweep.py --device cuda --rounds 3   # synchronised timing
"""

from __future__ import annotations

import json

import torch
from _ab import alternate, memory_steps, setup, summary  # benchmarks/_ab.py

from torchlmu import ops

# (order d, T, B): W2 (order 64, T 10,000, B 16) and psMNIST's memory (order 256, T 784, B 100)
# among orders 16-512, long and short sequences, one sequence and many.
SHAPES = [
    (16, 10_000, 16),
    (64, 10_000, 16),
    (64, 10_000, 1),
    (64, 784, 100),
    (128, 2_000, 16),
    (256, 784, 100),
    (256, 10_000, 1),
    (512, 784, 16),
]
CANDIDATES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def _divisors_near(T: int, d: int, default: int) -> list[int]:
    """Per candidate, the divisor of T nearest it (within ±25 %), plus the library's own L;
    none larger than 2d (the GEMM's inner size then grows past 3d)."""
    out = {default}
    for c in CANDIDATES:
        if c > 2 * d or c > T:
            continue
        near = [L for L in range(max(4, int(c * 0.75)), int(c * 1.25) + 1) if T % L == 0]
        if near:
            out.add(min(near, key=lambda L: abs(L - c)))
    return sorted(out)


def main() -> None:
    args = setup(__doc__, device=True)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    library = ops.chunk_size
    for d, T, B in SHAPES:
        default = library(T, d, dev)
        Ls = _divisors_near(T, d, default)
        variants = {str(L): (lambda L=L: setattr(ops, "chunk_size", lambda *_, L=L: L)) for L in Ls}
        for phase, step in zip(
            ("train", "infer"), memory_steps(B, T, d, float(T), dev), strict=True
        ):
            runs = alternate(variants, step, args.rounds, runs=3, sync=sync)
            ops.chunk_size = library
            s = summary(runs)
            best = min(s["median_ms"], key=s["median_ms"].get)
            print(
                json.dumps(
                    {
                        "order": d,
                        "T": T,
                        "B": B,
                        "phase": phase,
                        "library_L": default,
                        "best_L": int(best),
                        "best_over_library": round(
                            s["median_ms"][best] / s["median_ms"][str(default)], 3
                        ),
                        **s,
                        "threads": torch.get_num_threads(),
                        "device": str(dev),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
