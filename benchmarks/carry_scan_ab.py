"""The blocked memory's carry as the step loop (before session 13) against ``ops.carry_scan``'s
split into ~√n-call passes (the library's where calls cost more than their flops), alternating
in one process so that both see the same machine state. One JSON line per workload: each
variant's per-round minimum of 5 runs, over ``--rounds`` rounds, and their medians.

W2 is bench.py's (memory alone, B 16, T 10,000, order 64: 199 carries of 16 × 64 states);
W2-long the same memory over T 100,000 (1,999 carries); W2-one-sequence one sequence (B 1).

    python benchmarks/carry_scan_ab.py --threads 2
    python benchmarks/carry_scan_ab.py --device cuda --rounds 3   # synchronised timing
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from _ab import alternate, memory_steps, setup, summary  # benchmarks/_ab.py


def main() -> None:
    args = setup(__doc__, device=True)
    from torchlmu import ops

    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    library = dict(ops.CALL_FLOPS)

    def use(flops: dict) -> Callable[[], None]:
        return lambda: setattr(ops, "CALL_FLOPS", flops)

    variants = {"step loop": use(dict.fromkeys(library, 0.0)), "carry_scan (library)": use(library)}
    cases = {"W2": (16, 10_000), "W2-long": (16, 100_000), "W2-one-sequence": (1, 10_000)}
    try:
        for name, (B, T) in cases.items():
            train, infer = memory_steps(B, T, device=args.device)
            for phase, fn in (("train", train), ("infer", infer)):
                runs = alternate(variants, fn, args.rounds, runs=5, sync=sync)
                print(json.dumps({
                    "workload": name, "phase": phase, "B": B, "T": T, "order": 64,
                    "device": str(dev), "threads": args.threads, "torch": torch.__version__,
                    **summary(runs),
                }), flush=True)  # fmt: skip
    finally:
        ops.CALL_FLOPS = library


if __name__ == "__main__":
    main()
