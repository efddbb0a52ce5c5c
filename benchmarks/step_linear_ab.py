"""The step loops' products with their engine chosen per call (``ops.linear``, until session
15) against chosen once per loop (``ops.step_linear``), alternating in one process so that both
see the same machine state: the Elman scan of W1 (T 784, B 100, H 212; forward, and forward
with backward) and the fully recurrent scan of W5 (order 256, H 212). The per-call variant
routes every ``step_linear`` of the loops to ``ops.linear``, which decides again at each call;
both variants take the same engines. One JSON line per case: each variant's per-round minimum
of 3 runs over ``--rounds`` rounds, and their medians.

    python benchmarks/step_linear_ab.py --threads 2 --rounds 8
"""

from __future__ import annotations

import json

import torch
from _ab import alternate, setup, summary  # benchmarks/_ab.py

from torchlmu import ops, recurrence


def main() -> None:
    args = setup(__doc__)
    T, B, H, d = 784, 100, 212, 256
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    pre, h0, W = r(T, B, H), r(B, H), r(H, H) * 0.05
    x, m0 = r(T, B, 1), r(B, d)
    Ad, Bd = torch.eye(d) * 0.99, r(d) * 0.01
    Wm, Wh, Em = r(H, d) * 0.05, r(H, H) * 0.05, r(1, d) * 0.01
    Wp = W.clone().requires_grad_()

    def elman_fwd():
        with torch.no_grad():
            recurrence.elman_scan(pre, h0, W, "tanh")

    def elman_train():
        hs = recurrence.elman_scan(pre, h0, Wp, "tanh")
        hs.sum().backward()

    Wmp = Wm.clone().requires_grad_()

    def w5_train():
        _, Hs, *_ = recurrence.lmu_elman_scan(
            x, torch.zeros(T, B, H), m0, h0, Ad, Bd, Em, None, Wmp, Wh, "tanh"
        )
        Hs.sum().backward()

    once = recurrence.step_linear
    variants = {
        "per call (ops.linear)": lambda: setattr(
            recurrence, "step_linear", lambda x, w, add=None: ops.linear
        ),
        "once per loop (ops.step_linear)": lambda: setattr(recurrence, "step_linear", once),
    }
    for name, step in (
        ("W1 Elman scan forward", elman_fwd),
        ("W1 Elman scan forward and backward", elman_train),
        ("W5 fully recurrent scan forward and backward", w5_train),
    ):
        runs = alternate(variants, step, args.rounds, runs=3)
        print(json.dumps({"case": name, "threads": args.threads, **summary(runs)}), flush=True)
    recurrence.step_linear = once


if __name__ == "__main__":
    main()
