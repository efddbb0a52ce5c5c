"""The fully recurrent scan on the GPU: its step loops against the Triton kernels
(torchlmu.triton_scan) at each launch setting, at the psMNIST paper model's size (B 100, T 784,
d 256, H 212, float32, every connection). One JSON line per (path, setting): median forward
(inference) and forward + backward (training, the loss on the last hidden state as in psMNIST)
in ms, synchronised, the backward step kernel alone, and the largest relative difference of
states and gradients from the step loop's. Both forms of the kernels: the row form's settings
(triton_scan.CONFIG), then the column form's (triton_scan.COLS); then the column form's
barrier alone ("path": "barrier", µs per step for 4, 8 and 16 programs per row block).

    python benchmarks/triton_scan_sweep.py                   # on CUDA
    python benchmarks/triton_scan_sweep.py --device cpu --quick   # the script itself, under
                                                                 # Triton's interpreter
    python benchmarks/triton_scan_sweep.py --form cols   # the column form's settings and the
                                                         # row form's default (gpu_check.sh)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument(
        "--form",
        choices=("both", "rows", "cols"),
        default="both",
        help="the settings of one form only (the row form's default setting stays, to compare)",
    )
    args = ap.parse_args()
    if args.device == "cpu":  # before Triton is first imported
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    from torchlmu import recurrence, triton_scan

    dev = torch.device(args.device)
    B, T, d, H = (20, 5, 12, 10) if args.quick else (100, 784, 256, 212)
    repeats = 1 if args.quick else args.repeats
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dev)

    xu, xh, m0, h0 = r(T, B, 1), r(T, B, H), r(B, d), r(B, H)
    Ad, Bd = r(d, d, scale=0.9 / d**0.5), r(d, scale=0.1)
    Em, Eh, Wm, Wh = (
        r(1, d, scale=0.01),
        r(1, H, scale=0.01),
        r(H, d, scale=0.05),
        r(H, H, scale=0.05),
    )
    params = [p.requires_grad_() for p in (xu, xh, Ad, Bd, Em, Eh, Wm, Wh)]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def infer():
        with torch.no_grad():
            return recurrence.lmu_elman_scan(xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, "tanh")

    def train():
        _, _, _, h = recurrence.lmu_elman_scan(
            xu, xh, m0, h0, Ad, Bd, Em, Eh, Wm, Wh, "tanh", return_last=True
        )
        return torch.autograd.grad(h.square().sum(), params)

    def median_ms(fn):
        if not args.quick:  # (the interpreter of --quick compiles nothing)
            fn()  # compiles the kernels of this setting
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def rel(a, b):
        return float((a - b).norm() / b.norm().clamp_min(1e-30))

    recurrence.TRITON_SCAN = False
    ref_states, ref_grads = infer(), train()
    grid = [(16, 16, 8), (16, 16, 4), (16, 32, 4), (16, 32, 8), (8, 16, 4), (8, 32, 4)]
    grid += [(4, 16, 4), (4, 32, 4)]  # (rows per program, contraction chunk, warps)
    # around session 17's best on an H200 (4, 32, 4): wider chunks, fewer rows, other warps
    grid += [(4, 64, 4), (2, 32, 4), (2, 64, 4), (4, 32, 2), (4, 32, 8)]
    settings = [None] + [
        {"form": "rows", "BB": bb, "KC": kc, "num_warps": w, "num_warps_wide": w}
        for bb, kc, w in grid
    ]
    # the column form: (rows per block, programs per row block, warps), each setting for both
    # kernels (the forward's time is infer_ms, the backward loop's backward_steps_ms); at these
    # sizes 16 programs leave each 16 of m's and of h's columns. The first six were session
    # 18's; session 19's H200 run found the forward fastest with 4 programs, the backward with
    # 16, hence the six around them. Last, the library's own settings ({"form": "cols"}).
    cols = [(16, 16, 8), (16, 16, 4), (16, 16, 16), (16, 8, 8), (16, 4, 8), (32, 16, 8)]
    cols += [(16, 4, 4), (16, 4, 16), (16, 2, 8), (16, 8, 4), (32, 4, 8), (32, 8, 8)]
    settings += [{"form": "cols", "BB": bb, "P": p, "num_warps": w} for bb, p, w in cols]
    settings += [{"form": "cols"}]
    n_cols = len(cols) + 1
    if args.form == "cols":
        base = {k: triton_scan.CONFIG[k] for k in ("BB", "KC", "num_warps", "num_warps_wide")}
        settings = [None, {"form": "rows", **base}, *settings[-n_cols:]]
    elif args.form == "rows":
        settings = settings[:-n_cols]
    default = dict(triton_scan.CONFIG)
    default_cols = copy.deepcopy(triton_scan.COLS)
    for cfg in settings:
        recurrence.TRITON_SCAN = cfg is not None
        triton_scan.CONFIG.update(default)
        triton_scan.COLS.update(copy.deepcopy(default_cols))
        column_form = cfg is not None and cfg["form"] == "cols"
        if column_form:
            triton_scan.CONFIG["form"] = "cols"
            for kernel in ("forward", "backward"):
                triton_scan.COLS[kernel].update({k: v for k, v in cfg.items() if k != "form"})
        elif cfg is not None:
            triton_scan.CONFIG.update(cfg)
        smem = triton_scan._smem_limit(dev)
        kernels = ("forward", "backward") if column_form else ()
        plan = [triton_scan._cols_plan(d, H, k, 4, smem) for k in kernels] or None
        if dev.type == "cpu" and cfg is not None:
            # the interpreter runs on CPU tensors: route the scan there as the tests do
            recurrence._fused_scan = lambda x, C, A, W, act: (
                triton_scan if triton_scan.applies(x, C, A, W, act) else None
            )
        states, grads = infer(), train()
        Hs = states[1].detach()

        def backward_steps(Hs=Hs):  # the backward step loop (or kernel) alone
            with torch.no_grad():
                return recurrence.lmu_elman_backward_steps(
                    h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, "tanh", None, None, None, h0
                )

        rec = {
            "path": "step loops" if cfg is None else "triton",
            "config": cfg,
            # the column form's (rows per block, programs per row block) per kernel, and the
            # launches per kernel call
            "plan": plan,
            "waves": [p and len(triton_scan._waves(B, p, dev)) for p in plan] if plan else None,
            "B": B, "T": T, "d": d, "H": H,
            "infer_ms": median_ms(infer),
            "train_ms": median_ms(train),
            "backward_steps_ms": median_ms(backward_steps),
            "max_rel_diff_states": max(rel(a, b) for a, b in zip(states, ref_states, strict=True)),
            "max_rel_diff_grads": max(rel(a, b) for a, b in zip(grads, ref_grads, strict=True)),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (interpreted)",
            "torch": torch.__version__,
            "tf32": torch.backends.cuda.matmul.allow_tf32,
        }  # fmt: skip
        print(json.dumps(rec), flush=True)
    triton_scan.CONFIG.update(default)
    triton_scan.COLS.update(default_cols)
    if args.form != "rows":
        barrier_probe(triton_scan, dev, T, B, median_ms)


_row_block_sync = None  # set by barrier_probe


def barrier_probe(triton_scan, dev, T: int, B: int, median_ms) -> None:
    """The column form's barrier alone: a kernel whose programs do nothing but wait for each
    other T times (grid as the column form's at this batch), µs per step. Under the
    interpreter, which runs programs in turn, one program per row block."""
    import torch
    import triton
    import triton.language as tl

    # a module global for the kernel below (Triton resolves a kernel's names among its
    # module's globals, not a closure's; triton_scan is imported late, after the interpreter's
    # flag is set)
    global _row_block_sync
    _row_block_sync = triton_scan._row_block_sync

    @triton.jit
    def _barriers(Sync, Out, T, POLLS: tl.constexpr):
        counter = Sync + tl.program_id(1)
        broken = tl.program_id(0) < 0
        for t in range(T):
            b = _row_block_sync(counter, (t + 1) * tl.num_programs(0), POLLS)
            broken = broken | b
        tl.store(
            Out + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0), broken.to(tl.int32)
        )

    for P in (4, 8, 16) if dev.type == "cuda" else (1,):
        BB = triton_scan.COLS["forward"]["BB"]
        waves = triton_scan._waves(B, (BB, P), dev)
        n = waves[0][1]  # row blocks in the first launch
        out = torch.zeros(n * P, dtype=torch.int32, device=dev)

        def run(P=P, n=n, out=out):
            sync_ = torch.zeros(n, dtype=torch.int32, device=dev)
            _barriers[(P, n)](sync_, out, T, POLLS=triton_scan._SYNC_POLLS)

        rec = {
            "path": "barrier", "P": P, "row_blocks": n, "T": T,
            "us_per_step": median_ms(run) * 1e3 / T, "broken": int(out.sum()),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (interpreted)",
        }  # fmt: skip
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
