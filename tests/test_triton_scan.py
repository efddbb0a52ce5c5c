"""The fully recurrent scan's Triton kernels (torchlmu.triton_scan) against their twins, the step
loops of torchlmu.recurrence: states, memory inputs and every carried gradient, then whole scans
with gradients through the custom operator. Without CUDA the kernels run under Triton's
interpreter (set before the module is imported); with it, on the GPU against the CPU loops."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import TOL, rand

from torchlmu import recurrence
from torchlmu.exceptions import ValidationError
from torchlmu.recurrence import (
    ACTIVATIONS,
    _lmu_elman_forward,
    lmu_elman_backward_steps,
    lmu_elman_scan,
    lmu_elman_scan_reference,
)

ts = pytest.importorskip("torchlmu.triton_scan", exc_type=ImportError)  # needs Triton
triton, tl = ts.triton, ts.tl
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and tuple(int(v) for v in ts.triton.__version__.split(".")[:2]) < (3, 7):
    # Triton 3.6's interpreter reads a loop bound as a one-element array, which NumPy 2.4.6
    # refuses (pyproject's test extra asks for 3.7); its compiler still builds the kernels
    pytest.skip(f"Triton {ts.triton.__version__}'s interpreter: 3.7 or later needed",
                allow_module_level=True)  # fmt: skip
pytestmark = pytest.mark.gpu if DEVICE == "cuda" else []


def _args(g, T, B, H, d, dtype, em=True, eh=True) -> list:
    """lmu_elman_scan's ten tensor inputs with one channel (None for an absent encoder)."""
    return [
        rand(T, B, 1, dtype=dtype, g=g), rand(T, B, H, dtype=dtype, g=g),
        rand(B, d, dtype=dtype, g=g), rand(B, H, dtype=dtype, g=g),
        rand(d, d, dtype=dtype, scale=0.3, g=g), rand(d, dtype=dtype, g=g),
        rand(1, d, dtype=dtype, scale=0.3, g=g) if em else None,
        rand(1, H, dtype=dtype, scale=0.3, g=g) if eh else None,
        rand(H, d, dtype=dtype, scale=0.3, g=g), rand(H, H, dtype=dtype, scale=0.3, g=g),
    ]  # fmt: skip


def _on(args, device):
    return [None if a is None else a.detach().to(device) for a in args]


def _close(a, b, dtype) -> bool:
    # float32 in the RMS form of the tolerance table (conftest): relu/linear states near 0
    a, b = a.double().cpu(), b.double().cpu()
    return (a - b).norm() <= TOL[dtype] * max(b.norm(), b.numel() ** 0.5)


def _all_close(got, want, dtype) -> None:
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        assert _close(a, b, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize(("em", "eh"), [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("bb", [16, 4])
@torch.no_grad()
def test_forward_equals_step_loop(monkeypatch, dtype, act, em, eh, bb):
    """States and memory inputs of the kernel equal the step loop's; sizes that are not powers of
    two and a batch that leaves the last program's rows partly empty (B = 21), with tl.dot's
    products (16 rows per program) and the broadcast ones (4 rows)."""
    monkeypatch.setitem(ts.CONFIG, "BB", bb)
    g = torch.Generator().manual_seed(11)
    args = _args(g, T=7, B=21, H=12, d=20, dtype=dtype, em=em, eh=eh)
    want = _lmu_elman_forward(*args, act)
    got = ts.lmu_elman_forward(*_on(args, DEVICE), act)
    _all_close(got, want, dtype)


def _check_backward_steps(seed, T, B, H, d, dtype, act, grads) -> None:
    """The kernel's carried gradients against the step loop's: e_m unless linear, e_h unless
    relu; ``grads`` says which of the sequences' and the last states' gradients are given."""
    g = torch.Generator().manual_seed(seed)
    args = _args(g, T, B, H, d, dtype, em=act != "linear", eh=act != "relu")
    _, _, _, h0, Ad, Bd, Em, Eh, Wm, Wh = args
    _, Hs, _ = _lmu_elman_forward(*args, act)
    seq = grads in ("sequences", "both")
    last = grads in ("last", "both")
    gM = rand(T, B, d, dtype=dtype, g=g) if seq else None
    gH = rand(T, B, H, dtype=dtype, g=g) if seq else None
    gm_last = rand(B, d, dtype=dtype, g=g) if last else None
    gh_last = rand(B, H, dtype=dtype, g=g) if last else None
    rest = (act, gM, gH, gm_last, gh_last)
    want = lmu_elman_backward_steps(h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, *rest)
    on = _on([h0, Ad, Bd, Em, Eh, Wm, Wh, Hs, gM, gH, gm_last, gh_last], DEVICE)
    got = ts.lmu_elman_backward_steps(*on[:8], act, *on[8:])
    _all_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("grads", ["sequences", "last", "both"])
@pytest.mark.parametrize("bb", [16, 4])
@torch.no_grad()
def test_backward_steps_equal_step_loop(monkeypatch, dtype, act, grads, bb):
    """Every gradient the backward kernel carries equals the step loop's, whichever of the
    sequences' and the last states' gradients are given (16 and 4 rows per program)."""
    monkeypatch.setitem(ts.CONFIG, "BB", bb)
    _check_backward_steps(12, 6, 18, 10, 24, dtype, act, grads)


# The column form: weights held by the programs, a barrier per step (torchlmu.triton_scan.COLS).
# On a GPU both launches, the barrier's and its twin's (one launch per step); under the
# interpreter, which runs programs one after another, the barrier with one program per row
# block (P = 1) and the twin for more.
LAUNCHES = [True, False] if DEVICE == "cuda" else [True]


@pytest.fixture
def cols(monkeypatch):
    """Set the column form with P programs per row block (the backward's P_backward where
    given), BB rows per block, and the given launch, for both kernels."""

    def use(P: int, persistent: bool = True, BB: int = 16, P_backward: int | None = None) -> None:
        monkeypatch.setitem(ts.CONFIG, "form", "cols")
        for kernel, p in (("forward", P), ("backward", P if P_backward is None else P_backward)):
            monkeypatch.setitem(ts.COLS, kernel, {**ts.COLS[kernel], "BB": BB, "P": p})
        monkeypatch.setitem(ts.COLS, "persistent", persistent)

    return use


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize(("em", "eh"), [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("P", [1, 2, 4])
@pytest.mark.parametrize("persistent", LAUNCHES)
@torch.no_grad()
def test_cols_forward_equals_step_loop(cols, dtype, act, em, eh, P, persistent):
    """The column form's states and memory inputs equal the step loop's, for 1, 2 and 4 column
    programs per row block: widths that are not powers of two (d 36, H 40: the last program's
    columns partly empty) and a last row block partly empty (B 21, 16 rows per block)."""
    cols(P, persistent)
    g = torch.Generator().manual_seed(21)
    args = _args(g, T=6, B=21, H=40, d=36, dtype=dtype, em=em, eh=eh)
    assert ts._cols_plan(36, 40) == (16, P)  # the plan these sizes get
    want = _lmu_elman_forward(*args, act)
    got = ts.lmu_elman_forward(*_on(args, DEVICE), act)
    _all_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("grads", ["sequences", "last", "both"])
@pytest.mark.parametrize("P", [1, 4])
@pytest.mark.parametrize("persistent", LAUNCHES)
@torch.no_grad()
def test_cols_backward_steps_equal_step_loop(cols, dtype, act, grads, P, persistent):
    """Every gradient the column form's backward carries equals the step loop's (its folded
    products: Â = Ā + B̄ e_m and W_m Â), whichever gradients are given, with and without e_m
    and e_h."""
    cols(P, persistent)
    _check_backward_steps(22, 5, 19, 40, 36, dtype, act, grads)


def test_cols_plan_and_waves(cols, monkeypatch):
    """P is at most the kernel's COLS setting's and leaves each program 16 columns or more,
    each kernel its own; a GPU takes as many row blocks per launch as its SMs hold with one
    program each (here a GPU of 20 SMs), any other device all at once."""
    cols(16, BB=32, P_backward=4)
    assert ts._cols_plan(256, 212) == (32, 16) == ts._cols_plan(256, 212, "forward")
    assert ts._cols_plan(256, 212, "backward") == (32, 4)
    # shared memory: P doubled until a program's slices fit (float64 at these widths asked
    # for 430,080 bytes with 4 programs on an H200, whose limit is 232,448), None where none fit
    cols(4)
    assert ts._cols_plan(256, 212, "forward", 4, 232_448) == (16, 4)
    assert ts._cols_plan(256, 212, "forward", 8, 232_448) == (16, 16)
    assert ts._cols_bytes(16, 4, 256, 212, 8) >= 466_944 > 232_448  # (Triton 3.9's compile)
    assert ts._cols_plan(256, 212, "forward", 8, 1_000) is None
    assert ts._cols_plan(256, 212, "forward", 8, None) == (16, 4)
    assert ts._smem_limit(torch.device("cpu")) is None
    cols(16)
    assert ts._cols_plan(256, 212) == (16, 16)
    assert ts._cols_plan(256, 40) == (16, 4)  # H 40 → 64 columns: 4 programs
    assert ts._cols_plan(8, 8) == (16, 1)
    assert ts._waves(100, (16, 16), torch.device("cpu")) == [(0, 7)]
    props = type("Props", (), {"multi_processor_count": 20})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    assert ts._waves(100, (16, 4), torch.device("cuda")) == [(0, 5), (5, 2)]
    assert ts._waves(100, (16, 16), torch.device("cuda")) == [(i, 1) for i in range(7)]
    assert ts._waves(100, (16, 32), torch.device("cuda")) == [(i, 1) for i in range(7)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@torch.no_grad()
def test_cols_in_waves_of_row_blocks(cols, monkeypatch, dtype):
    """Launched one row block at a time (as a GPU with fewer SMs than the grid's programs would
    be), forward and backward equal the step loops."""
    cols(2)
    monkeypatch.setattr(ts, "_waves", lambda B, plan, device: [(0, 1), (1, 1)])
    g = torch.Generator().manual_seed(24)
    args = _args(g, T=5, B=21, H=40, d=36, dtype=dtype)
    want = _lmu_elman_forward(*args, "tanh")
    got = ts.lmu_elman_forward(*_on(args, DEVICE), "tanh")
    _all_close(got, want, dtype)
    _, _, _, h0, Ad, Bd, Em, Eh, Wm, Wh = args
    gM, gh_last = rand(5, 21, 36, dtype=dtype, g=g), rand(21, 40, dtype=dtype, g=g)
    rest = ("tanh", gM, None, None, gh_last)
    want = lmu_elman_backward_steps(h0, Ad, Bd, Em, Eh, Wm, Wh, want[1], *rest)
    on = _on([h0, Ad, Bd, Em, Eh, Wm, Wh, got[1], gM, None, None, gh_last], DEVICE)
    got = ts.lmu_elman_backward_steps(*on[:8], "tanh", *on[8:])
    _all_close(got, want, dtype)


@triton.jit
def _sync_probe(counter, out, target, POLLS: tl.constexpr):
    tl.store(out, ts._row_block_sync(counter, target, POLLS).to(tl.int32))


def test_barrier_opens_or_reports_itself_broken():
    """The barrier lets a program through once the counter reaches the target; a barrier that
    cannot open (a target no program will reach) gives up after its polls, marks the counter
    broken, and says so, as does any later wait on that counter."""
    counter = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    out = torch.full((1,), -1, dtype=torch.int32, device=DEVICE)
    _sync_probe[(1,)](counter, out, 1, POLLS=3)  # one program, target 1: opens
    assert out.item() == 0 and counter.item() == 1
    _sync_probe[(1,)](counter, out, 3, POLLS=3)  # arrives as 2, waits for 3: broken
    assert out.item() == 1 and counter.item() >= 2**30
    _sync_probe[(1,)](counter, out, 4, POLLS=3)  # the counter stays broken
    assert out.item() == 1


@contextlib.contextmanager
def concurrent_programs():
    """Under Triton's interpreter, run each launch's programs at once, one thread each (the
    interpreter runs them one after another, so a barrier between programs could never open):
    the program ids become per thread, and the last program's call starts its thread and waits
    for all; program k starts 2·k ms late (k: the sum of its ids), so that a barrier that
    opens early shows. CPython's memory is not a GPU's, so this checks the barrier's logic
    (counters, targets, waves), not its memory ordering. Built on the interpreter's internals:
    skips the test where they differ."""
    from triton.runtime import interpreter as itp

    builder = itp.interpreter_builder
    if not (hasattr(itp, "GridExecutor") and hasattr(builder, "set_grid_idx")):
        pytest.skip("this Triton's interpreter is not the one this helper knows")
    local = threading.local()
    base = type(builder)
    threaded = type("ThreadedBuilder", (base,), {
        "grid_idx": property(lambda self: getattr(local, "idx", None),
                             lambda self, v: setattr(local, "idx", v)),
    })  # fmt: skip
    idx = getattr(builder, "grid_idx", None)
    call = itp.GridExecutor.__call__

    def concurrent_call(self, *args, **kwargs):
        fn, threads, errors = self.fn, [], []

        def run(idx, kw):
            builder.grid_idx = idx
            # later programs start later: a barrier that opened early would let the first
            # read what the last has not written yet
            time.sleep(0.002 * (idx[0] + idx[1]))
            try:
                fn(**kw)
            except BaseException as e:  # re-raised in the launching thread
                errors.append(e)

        def start(**kw):
            threads.append(threading.Thread(target=run, args=(builder.grid_idx, kw)))
            threads[-1].start()
            if len(threads) == math.prod(builder.grid_dim):
                for th in threads:
                    th.join()
                if errors:
                    raise errors[0]

        start.__signature__ = inspect.signature(fn)  # the launch reads the kernel's arguments
        self.fn = start
        try:
            return call(self, *args, **kwargs)
        finally:
            self.fn = fn

    interval = sys.getswitchinterval()
    builder.__class__ = threaded
    builder.grid_idx = idx
    itp.GridExecutor.__call__ = concurrent_call
    sys.setswitchinterval(1e-4)  # spinning threads hand over the GIL sooner
    try:
        yield
    finally:
        itp.GridExecutor.__call__ = call
        builder.__class__ = base
        builder.grid_idx = idx
        sys.setswitchinterval(interval)


@pytest.mark.skipif(DEVICE == "cuda", reason="the GPU runs the barrier itself (LAUNCHES)")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("P", [2, 4])
@torch.no_grad()
def test_cols_barrier_with_programs_running_at_once(cols, monkeypatch, dtype, P):
    """The column form in one launch with its barrier and P programs per row block, the
    programs run at once (threads under the interpreter), in two waves of row blocks: forward
    and backward equal the step loops."""
    cols(P, True)
    monkeypatch.setattr(ts, "_persistent", lambda device, P: True)
    monkeypatch.setattr(ts, "_waves", lambda B, plan, device: [(0, 1), (1, 1)])
    g = torch.Generator().manual_seed(25)
    args = _args(g, T=4, B=21, H=40, d=36, dtype=dtype)
    want = _lmu_elman_forward(*args, "tanh")
    with concurrent_programs():
        got = ts.lmu_elman_forward(*args, "tanh")
    _all_close(got, want, dtype)
    _, _, _, h0, Ad, Bd, Em, Eh, Wm, Wh = args
    gM, gh_last = rand(4, 21, 36, dtype=dtype, g=g), rand(21, 40, dtype=dtype, g=g)
    rest = ("tanh", gM, None, None, gh_last)
    want = lmu_elman_backward_steps(h0, Ad, Bd, Em, Eh, Wm, Wh, want[1], *rest)
    with concurrent_programs():
        got = ts.lmu_elman_backward_steps(h0, Ad, Bd, Em, Eh, Wm, Wh, got[1], *rest)
    _all_close(got, want, dtype)


@pytest.mark.skipif(DEVICE == "cuda", reason="staged under the interpreter (programs in turn)")
# past the broken barrier a program reads columns no other program has written yet (whatever
# the empty buffers held): NumPy may warn of overflow on them
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_broken_barrier_fills_the_outputs_with_nan(cols, monkeypatch):
    """Two programs per row block under the barrier, which cannot open under the interpreter
    (it runs programs one after another), with 3 polls: every state after the first step is
    NaN, forward and backward, where a GPU would otherwise hang or go on with wrong numbers."""
    cols(2, True)
    monkeypatch.setattr(ts, "_SYNC_POLLS", tl.constexpr(3))
    monkeypatch.setattr(ts, "_persistent", lambda device, P: True)
    g = torch.Generator().manual_seed(23)
    args = _on(_args(g, T=4, B=5, H=40, d=36, dtype=torch.float64), DEVICE)
    Ms, Hs, _ = ts.lmu_elman_forward(*args, "tanh")
    assert not Ms[0].isnan().any() and Ms[1:].isnan().all() and Hs[1:].isnan().all()
    _, Ad, Bd, Em, Eh, Wm, Wh = args[3:]
    Hs_ok = torch.zeros(4, 5, 40, dtype=torch.float64, device=DEVICE)
    gm, _, _, gm0, gh0 = ts.lmu_elman_backward_steps(
        args[3], Ad, Bd, Em, Eh, Wm, Wh, Hs_ok, "tanh", None, None, torch.ones_like(args[2]), None
    )
    assert gm[:-1].isnan().all() and gm0.isnan().all() and gh0.isnan().all()


@pytest.fixture
def fused(monkeypatch):
    """lmu_elman_scan with its step loops on the kernels, on this machine's device."""
    monkeypatch.setattr(
        recurrence,
        "_fused_scan",
        lambda x, C, Ad, Wh, act: ts if ts.applies(x, C, Ad, Wh, act) else None,
    )


def _scan_and_gradients(dtype, H: int = 6, d: int = 8) -> None:
    """The whole scan on the kernels (its custom operator: forward, backward, then the weight
    gradients as matmuls) against the plain loop differentiated by autograd, every input's
    gradient; float32 against the float64 truth, as the recurrence tests do."""
    g = torch.Generator().manual_seed(13)
    args = _args(g, T=9, B=5, H=H, d=d, dtype=dtype)
    ps = [a.to(DEVICE).requires_grad_() for a in args]
    M, H, m, h = lmu_elman_scan(*ps, "tanh", return_last=True)
    w = [torch.randn(x.shape, generator=g, dtype=torch.float64) for x in (M, H, m, h)]
    loss = sum((x * wx.to(x)).sum() for x, wx in zip((M, H, m, h), w, strict=True))
    got = torch.autograd.grad(loss, ps)
    p64 = [a.detach().double().requires_grad_() for a in args]
    M64, H64 = lmu_elman_scan_reference(*p64, "tanh")
    loss64 = sum((x * wx).sum() for x, wx in zip((M64, H64, M64[-1], H64[-1]), w, strict=True))
    want = torch.autograd.grad(loss64, p64)
    assert _close(M, M64, dtype) and _close(H, H64, dtype)
    for a, b in zip(got, want, strict=True):
        assert _close(a, b, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scan_and_gradients_through_the_kernels(fused, dtype):
    """The row form (gpu_check.sh's guard: -k names this test alone)."""
    _scan_and_gradients(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scan_and_gradients_through_the_column_kernels(fused, cols, dtype):
    """The column form with its barrier: one program per row block, and on a GPU two and four
    (gpu_check.sh's second guard)."""
    default = {k: dict(ts.COLS[k]) for k in ("forward", "backward")}
    cols(1)
    _scan_and_gradients(dtype)
    if DEVICE == "cuda":
        for P in (2, 4):
            cols(P)
            _scan_and_gradients(dtype, H=40, d=36)
        # the library's settings at the psMNIST model's widths, and 32 rows per block
        ts.COLS.update(default)
        _scan_and_gradients(dtype, H=212, d=256)
        cols(16, BB=32)
        _scan_and_gradients(dtype, H=212, d=256)


def test_cols_falls_back_to_the_row_form_where_no_plan_fits(fused, cols, monkeypatch):
    """Where no column plan fits the GPU's shared memory, the row form runs, to the same
    results."""
    cols(1)
    monkeypatch.setattr(ts, "_smem_limit", lambda device: 1)
    ran = []

    def spy(name):
        f = getattr(ts, name)
        return lambda *a: ran.append(name) or f(*a)

    for name in ("_cols_forward", "_cols_backward", "_rows_forward", "_rows_backward"):
        monkeypatch.setattr(ts, name, spy(name))
    _scan_and_gradients(torch.float64)
    assert sorted(set(ran)) == ["_rows_backward", "_rows_forward"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cols_forward_and_backward_settings_apart(fused, cols, dtype):
    """Each kernel at its own setting (rows per block and programs per row block): the forward's
    states feed the backward whatever its blocks."""
    cols(1, BB=32, P_backward=2, persistent=DEVICE == "cuda")
    assert ts._cols_plan(36, 40) == (32, 1) and ts._cols_plan(36, 40, "backward") == (32, 2)
    _scan_and_gradients(dtype, H=40, d=36)
    ts.COLS["backward"]["BB"] = 16
    _scan_and_gradients(dtype, H=40, d=36)


@pytest.mark.parametrize("form", ts.FORMS)
def test_gradcheck_through_the_kernels(fused, monkeypatch, form):
    monkeypatch.setitem(ts.CONFIG, "form", form)
    g = torch.Generator().manual_seed(14)
    args = [
        a.to(DEVICE).requires_grad_() for a in _args(g, T=4, B=3, H=3, d=4, dtype=torch.float64)
    ]
    # fast mode (random projections of the Jacobian): the interpreter runs each kernel slowly
    fn = lambda *a: lmu_elman_scan(*a, "tanh", return_last=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, fast_mode=True)


def test_applies_only_to_its_scope():
    x32 = torch.zeros(2, 3, 1)
    Ad, Wh = torch.zeros(20, 20), torch.zeros(12, 12)
    assert ts.applies(x32, 1, Ad, Wh, "tanh")
    assert not ts.applies(x32, 2, Ad, Wh, "tanh")  # channels
    assert not ts.applies(x32.half(), 1, Ad.half(), Wh, "tanh")  # dtype
    assert not ts.applies(x32, 1, Ad.double(), Wh, "tanh")  # mixed dtypes
    assert not ts.applies(x32, 1, torch.zeros(1025, 1025), Wh, "tanh")  # width
    assert not ts.applies(x32, 1, Ad, Wh, "gelu")
    assert not ts.applies(torch.zeros(2**20, 2**8, 1), 1, Ad, Wh, "tanh")  # offsets beyond int32


def test_scan_keeps_the_step_loops_off_cuda_and_when_switched_off(monkeypatch):
    """The dispatch: CPU tensors never reach the kernels, flag on or off; the flag is on unless
    TORCHLMU_TRITON_SCAN=0 (its default since the kernels' H200 run)."""
    x = torch.zeros(2, 3, 1)
    Ad, Wh = torch.zeros(4, 4), torch.zeros(3, 3)
    for flag in (True, False):
        monkeypatch.setattr(recurrence, "TRITON_SCAN", flag)
        assert recurrence._fused_scan(x, 1, Ad, Wh, "tanh") is None
    code = "import torchlmu.recurrence as r; print(r.TRITON_SCAN)"
    for value, expected in ((None, "True"), ("0", "False"), ("1", "True")):
        env = {k: v for k, v in os.environ.items() if k != "TORCHLMU_TRITON_SCAN"}
        if value is not None:
            env["TORCHLMU_TRITON_SCAN"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        assert out.stdout.strip() == expected, value


def test_form_and_column_setting_from_the_environment():
    """TORCHLMU_TRITON_FORM and TORCHLMU_TRITON_COLS (a JSON object overriding COLS, a kernel's
    keys in its own object) at import; a bad value is a clear error naming the variable, what
    it expects and what it got."""
    root = Path(__file__).resolve().parents[1]
    code = "import json; from torchlmu import triton_scan as t; print(t.CONFIG['form'], json.dumps(t.COLS))"
    base = {k: v for k, v in os.environ.items() if not k.startswith("TORCHLMU_TRITON_")}
    base.update(PYTHONPATH=str(root / "src"), TRITON_INTERPRET="1")

    def run(**env):
        return subprocess.run([sys.executable, "-c", code], env={**base, **env},
                              capture_output=True, text=True)  # fmt: skip

    defaults = run()
    assert defaults.returncode == 0, defaults.stderr
    form, cols = defaults.stdout.strip().split(" ", 1)
    assert form == "rows" and run(TORCHLMU_TRITON_COLS="").stdout == defaults.stdout
    setting = '{"backward": {"P": 8, "BB": 32}, "persistent": false}'
    out = run(TORCHLMU_TRITON_FORM="cols", TORCHLMU_TRITON_COLS=setting)
    assert out.returncode == 0, out.stderr
    want = json.loads(cols)
    want["backward"].update(P=8, BB=32)
    want["persistent"] = False
    form, got = out.stdout.strip().split(" ", 1)
    assert form == "cols" and json.loads(got) == want
    assert ts._cols_from_env(setting) == want
    bad = {
        "P=8": ["TORCHLMU_TRITON_COLS", "JSON object", "'P=8'"],
        "[8]": ["TORCHLMU_TRITON_COLS", "JSON object"],
        '{"P": 8}': ["keys among ['backward', 'forward', 'persistent']", "'P'"],
        '{"forward": 8}': ["forward a JSON object", "received 8"],
        '{"forward": {"Q": 8}}': ["forward keys among", "'Q'"],
        '{"forward": {"P": 6}}': ["expected forward P a power of two", "received 6"],
        '{"backward": {"P": 0}}': ["expected backward P a power of two, at least 1"],
        '{"forward": {"BB": 8}}': ["expected forward BB a power of two, at least 16"],
        '{"forward": {"num_warps": 4.0}}': ["num_warps", "received 4.0"],
        '{"forward": {"P": true}}': ["expected forward P a power of two", "received True"],
        '{"persistent": 1}': ["true or false", "received 1"],
    }
    for value, words in bad.items():  # the parser in this process; at import, one of them
        with pytest.raises(ValidationError) as e:
            ts._cols_from_env(value)
        assert all(w in str(e.value) for w in words), (value, str(e.value))
    out = run(TORCHLMU_TRITON_COLS='{"forward": {"P": 6}}')
    assert out.returncode != 0 and "ValidationError" in out.stderr
    assert "expected forward P a power of two" in out.stderr
    out = run(TORCHLMU_TRITON_FORM="diag")
    assert out.returncode != 0 and "ValidationError" in out.stderr
    assert all(w in out.stderr for w in ["TORCHLMU_TRITON_FORM", "'diag'", "cols"])


def test_the_gpu_check_picks_the_fastest_sound_setting(tmp_path):
    """benchmarks/pick_triton_setting.py: the fastest training step among the kernels' settings
    within tolerance of the loops (NaN and far-off settings out; the row form in its default
    setting only; the column form only when asked for), as gpu_check.sh's variables."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import pick_triton_setting as pick
    finally:
        sys.path.pop(0)
    rows = {k: ts.CONFIG[k] for k in ("BB", "KC", "num_warps", "num_warps_wide")}

    def rec(cfg, ms, s=1e-6, g=1e-6, path="triton", fwd=1.0, bwd=1.0):
        return json.dumps({"path": path, "config": cfg, "train_ms": ms, "infer_ms": fwd,
                           "backward_steps_ms": bwd, "max_rel_diff_states": s,
                           "max_rel_diff_grads": g})  # fmt: skip

    cols = {"BB": 16, "P": 8, "num_warps": 8}
    lines = [
        "a log line", "[1, 2]", rec(None, 1.0, path="step loops"),
        rec({"form": "rows", **rows}, 50.0), rec({"form": "rows", **rows, "KC": 64}, 5.0),
        # NaN and far-off settings: out, however fast
        rec({"form": "cols", **cols, "P": 16}, 3.0, s=float("nan"), fwd=0.1, bwd=0.1),
        rec({"form": "cols", **cols, "P": 4}, 4.0, g=2e-3, fwd=0.1, bwd=0.1),
        rec({"form": "cols", **cols}, 10.0, fwd=6.0, bwd=4.0),
        rec({"form": "cols", **cols, "num_warps": 4}, 12.0, fwd=4.0, bwd=8.0),
        rec({"form": "cols"}, 9.0, fwd=0.01, bwd=0.01),  # the library's own: no setting to take
        json.dumps({"path": "barrier", "P": 4, "us_per_step": 1.0}),
    ]  # fmt: skip
    split = {"forward": {**cols, "num_warps": 4}, "backward": cols}
    best = {"TORCHLMU_TRITON_FORM": "cols", "TORCHLMU_TRITON_COLS": json.dumps(split)}
    assert pick.pick(lines, ["rows", "cols"], rows) == best
    assert pick.pick(lines, ["rows"], rows) == {"TORCHLMU_TRITON_FORM": "rows"}
    assert pick.pick(lines[:3], ["rows", "cols"], rows) == {}
    slow = [*lines[:5], rec({"form": "cols", **cols}, 60.0)]  # the row form faster
    assert pick.pick(slow, ["rows", "cols"], rows) == {"TORCHLMU_TRITON_FORM": "rows"}
    # as printed for gpu_check.sh, and the column setting as the variable's parser reads it
    sweep = tmp_path / "sweep.jsonl"
    sweep.write_text("\n".join(lines))
    env = dict(os.environ, PYTHONPATH=str(root / "src"), TRITON_INTERPRET="1")
    script = root / "benchmarks" / "pick_triton_setting.py"
    out = subprocess.run([sys.executable, str(script), str(sweep)], capture_output=True,
                         text=True, check=True, env=env)  # fmt: skip
    assert out.stdout.splitlines() == [f"{k}={v}" for k, v in best.items()]
    assert {k: ts._cols_from_env(best["TORCHLMU_TRITON_COLS"])[k] for k in split} == split
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "none")],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    assert out.stdout == "" and "cannot read the sweep" in out.stderr


def test_the_gpu_sweep_script_runs():
    """benchmarks/triton_scan_sweep.py (run by gpu_check.sh on a lent GPU) works end to end at
    tiny sizes, each setting's states and gradients as the loops': on the GPU where there is
    one (a GPU machine's Triton may predate the interpreter this module needs), else under the
    interpreter."""
    root = Path(__file__).resolve().parents[1]
    script = root / "benchmarks" / "triton_scan_sweep.py"
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    out = subprocess.run(
        [sys.executable, str(script), "--device", DEVICE, "--quick"],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )  # fmt: skip
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    probes = 3 if DEVICE == "cuda" else 1  # the barrier at 4, 8, 16 programs; or 1
    assert [r["path"] for r in recs] == ["step loops"] + ["triton"] * 26 + ["barrier"] * probes
    assert [r["config"]["form"] for r in recs[1:-probes]] == ["rows"] * 13 + ["cols"] * 13
    assert recs[-probes - 1]["config"] == {"form": "cols"}  # the library's own settings
    for r in recs[:-probes]:
        assert r["max_rel_diff_states"] <= 1e-5 and r["max_rel_diff_grads"] <= 1e-5
        assert r["backward_steps_ms"] > 0
    # the barrier alone (one program per row block under the interpreter), never broken
    for r in recs[-probes:]:
        assert r["broken"] == 0 and r["us_per_step"] > 0
        assert r["row_blocks"] == (2 if DEVICE == "cpu" else r["row_blocks"])


_COMPILE_FOR_SM90 = """
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from torchlmu import triton_scan as ts

ints = {"T", "B", "D", "H"}
fwd = ["xu", "xh", "AT", "Bd", "em", "eh", "WmT", "WhT", "Ms", "Hs", "Us", *ints]
bwd = ["Hs", "gM", "gH", "Ad", "Bd", "em", "eh", "Wm", "Wh", "Gm", "Gp", "Gu", *ints]
bb0 = ts.CONFIG["BB"]
for dtype, dt, bb in ((torch.float32, "fp32", bb0), (torch.float64, "fp64", bb0),
                      (torch.float32, "fp32", 16 if bb0 < 16 else 4)):
    ts.CONFIG["BB"] = bb
    grid, meta = ts._launch_args(100, 256, 212, dtype)
    warps = meta.pop("num_warps")
    flags = {"HAS_EM": True, "HAS_EH": True, "ACT": 1}
    for fn, names, extra in ((ts._forward_kernel, fwd, {}),
                             (ts._backward_kernel, bwd, {"HAS_GM": True, "HAS_GH": False})):
        cons = {**flags, **extra, **meta}
        sig = {n: "i32" if n in ints else "*" + dt for n in names}
        sig.update({k: "constexpr" for k in cons})
        triton.compile(ASTSource(fn, sig, cons), target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": warps})
        print("compiled", fn.__name__, dt, bb)
# the column form at its setting (the barrier's loops included)
ints |= {"RB0", "T0", "T1"}
fwd = ["xu", "xh", "AT", "Bd", "em", "eh", "WhT", "WmAT", "wmb", "Ms", "Hs", "Us", "Sync",
       "RB0", "T0", "T1", "B", "D", "H"]
bwd = ["Hs", "gM", "gH", "gm_last", "gh_last", "Ah", "WmAh", "Wh", "Bd", "wmbd", "eh", "Cm",
       "Gp", "Gu", "Sync", "RB0", "T0", "T1", "T", "B", "D", "H"]
for dtype, dt in ((torch.float32, "fp32"), (torch.float64, "fp64")):
    for fn, names, extra, kernel in (
        (ts._forward_cols_kernel, fwd, {"HAS_EM": True, "HAS_EH": True}, "forward"),
        (ts._backward_cols_kernel, bwd, {"HAS_GM": True, "HAS_GH": False, "HAS_LAST_M": False,
                                         "HAS_LAST_H": True, "HAS_EH": True, "FIRST": 1},
         "backward"),
    ):
        # the plan an H200 gets (its shared memory per program: 232,448 bytes)
        plan = ts._cols_plan(256, 212, kernel, dtype.itemsize, 232_448)
        meta = ts._cols_meta(plan, 256, 212, dtype, kernel)
        warps = meta.pop("num_warps")
        cons = {"ACT": 1, "SYNC": True, **extra, **meta}
        sig = {n: "i32" if n in ints else ("*i32" if n == "Sync" else "*" + dt) for n in names}
        sig.update({k: "constexpr" for k in cons})
        k = triton.compile(ASTSource(fn, sig, cons), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": warps})
        # what the launch checks: the estimate that chose the plan bounds the kernel's need
        need = ts._cols_bytes(*plan, 256, 212, dtype.itemsize)
        assert k.metadata.shared <= need <= 232_448, (fn.__name__, dt, k.metadata.shared, need)
        print("compiled", fn.__name__, dt, plan, k.metadata.shared)
"""


def test_kernels_compile_for_a_gpu():
    """Both forms' kernels compile to sm_90 (H100/H200) machine code, float32 and float64, at the
    paper model's sizes with the launch settings the library uses (and the row form in float32
    with the other kind of product: tl.dot's for 16 rows per program, broadcast ones below):
    Triton's compiler runs without a GPU, so an error that the interpreter forgives (a type, a
    layout, an unsupported product) fails here, not on a lent GPU. In a process without the
    interpreter's flag."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(root / "src"), TRITON_DEFAULT_FP_FUSION="1")
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE_FOR_SM90],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("compiled") == 10


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("form", ts.FORMS)
def test_the_paper_cell_through_the_kernels(fused, monkeypatch, return_sequences, form):
    """The LMU layer with every connection (the paper's psMNIST cell, at a small size) on the
    kernels equals its readable reference, the cell's step through autograd: outputs, final
    state and every parameter's gradient (float64). Each form."""
    monkeypatch.setitem(ts.CONFIG, "form", form)
    torch.manual_seed(15)
    from torchlmu import LMU

    kw = dict(hidden_to_memory=True, memory_to_memory=True, input_to_hidden=True)
    lmu = LMU(1, 6, 8, 12.0, dtype=torch.float64, return_sequences=return_sequences, **kw)
    lmu = lmu.to(DEVICE)
    x = torch.randn(9, 5, 1, dtype=torch.float64, device=DEVICE)
    y, st = lmu(x)
    y_ref, st_ref = lmu.forward_reference(x)
    assert _close(y, y_ref, torch.float64)
    assert _close(st.memory, st_ref.memory, torch.float64)
    assert _close(st.hidden, st_ref.hidden, torch.float64)
    params = list(lmu.parameters())
    ga = torch.autograd.grad(y.square().sum() + st.memory.sum(), params)
    gb = torch.autograd.grad(y_ref.square().sum() + st_ref.memory.sum(), params)
    for a, b in zip(ga, gb, strict=True):
        assert _close(a, b, torch.float64)
