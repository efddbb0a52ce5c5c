"""Shared test helpers, the tolerance table and the markers.

Tolerances (relative error ||a − b|| / ||b||): float64 <= 1e-10 for every output, final state and
the gradient of every single parameter (θ included); float32 <= 1e-5 for outputs, states, the
input gradient and the gradient of all parameters as one vector (a single float32 parameter's
gradient can be a sum with cancellation, e.g. -0.05 from terms of size 10, whose relative
rounding error alone exceeds 1e-5), with the norm floored at RMS 1 (a relu hidden state of
size 1e-2 computed from O(1) pre-activations carries O(1)·eps of absolute error): in float32 the
check is ||a − b|| <= 1e-5 · max(||b||, √numel), torch.allclose's rtol = atol in RMS form.
Compiled and exported programs against eager: 1e-6 (float32, other kernels' summation order).

Markers: ``slow`` (minutes; deselect with ``-m "not slow"``), ``gpu`` (needs CUDA; skipped
without it). Skips: ``needs_mnist``, ``needs_fashion_mnist`` (the data set not found where the
experiments look for it).
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from torch import nn

# Without CUDA, Triton's kernels (torchlmu.triton_scan) run under its interpreter; Triton reads
# the flag when it is first imported (its own library functions are kernels too), so here.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from torchlmu import LMU, LMUState

# The float32 tolerance is float32's: TF32 (cuDNN's default for float32 RNNs and convolutions on
# Ampere and later, ~1e-3 relative) is switched off for the tests. torchlmu follows torch's
# global setting, as nn.RNN does; benchmarks keep torch's defaults.
torch.backends.cudnn.allow_tf32 = False

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
DEVICES = [  # the fast forms run on each; the references stay on the CPU
    "cpu",
    pytest.param("cuda", marks=pytest.mark.gpu),
]
HIDDEN = ["tanh", "relu", "rnn", "lstm", "gru", "ff", None]
COMPILE_TOL = 1e-6
FLAGS = list(
    itertools.product([False, True], repeat=3)
)  # hidden→memory, memory→memory, input→hidden


def rel(a, b) -> float:
    """||a − b|| / ||b|| in float64 on the CPU, for tensors or arrays."""
    a, b = (torch.as_tensor(v).detach().double().cpu() for v in (a, b))
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def rand(*shape, dtype, scale=1.0, g):
    """A float64 normal sample (generator g) times scale, in dtype, requiring grad."""
    return (
        (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_()
    )


def make_hidden(kind, hidden_in, H, dtype):
    if kind in ("tanh", "relu", None):
        return kind
    if kind == "ff":
        return nn.Sequential(nn.Linear(hidden_in, H, dtype=dtype), nn.Tanh())
    return {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](
        hidden_in, H, dtype=dtype
    )


def make_pair(
    kind,
    flags,
    *,
    channels=1,
    trainable_theta=False,
    dtype=torch.float64,
    I=2,
    H=3,
    d=4,
    theta=6.0,
    memory_bias=True,
    **kw,
):
    """Two LMUs with identical parameters, one recurrent, one auto."""
    h2m, m2m, i2h = flags
    hidden_in = channels * d + (I if i2h else 0)
    opts = dict(
        channels=channels,
        hidden_to_memory=h2m,
        memory_to_memory=m2m,
        input_to_hidden=i2h,
        trainable_theta=trainable_theta,
        memory_bias=memory_bias,
        dtype=dtype,
        **kw,
    )
    Hs = None if kind is None else H
    torch.manual_seed(0)
    ref = LMU(
        I,
        Hs,
        d,
        theta,
        mode="recurrent",
        hidden_cell=make_hidden(kind, hidden_in, H, dtype),
        **opts,
    )
    conv = opts.pop("conv", "chunk")
    fast = LMU(
        I,
        Hs,
        d,
        theta,
        mode="auto",
        conv=conv,
        hidden_cell=make_hidden(kind, hidden_in, H, dtype),
        **opts,
    )
    # random values everywhere (zero-initialised parameters would hide wiring mistakes)
    with torch.no_grad():
        for p in ref.parameters():
            if p.dim() > 0:
                p.copy_(torch.randn_like(p) * 0.5)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def loss_and_grads(model, x, state, lengths, wy, ws, reference=False):
    params = [p for _, p in sorted(model.named_parameters())]
    x = x.clone().requires_grad_()
    fn = model.forward_reference if reference else model
    y, st = fn(x, state, lengths=lengths)
    loss = (y * wy).sum() + sum((s * w).sum() for s, w in zip(st, ws, strict=True) if s is not None)
    grads = torch.autograd.grad(loss, [x, *params])
    return y, st, grads


def random_state(model, B, batched, dtype):
    st = model.initial_state(B if batched else None)
    return LMUState(*(None if s is None else torch.randn_like(s) for s in st))


def check_equal(a, b, tol, what):
    for i, (p, q) in enumerate(zip(a, b, strict=True)):
        if p is None or q is None:
            assert p is None and q is None, what
            continue
        assert p.shape == q.shape, (what, i, p.shape, q.shape)
        err = rel(p, q)
        if q.dtype == torch.float32:
            err = rel(p, q) * min(1.0, float(q.detach().double().norm()) / q.numel() ** 0.5)
        if os.environ.get("TORCHLMU_TOL_LOG"):  # record the tolerances reached (closing notes)
            with open(os.environ["TORCHLMU_TOL_LOG"], "a") as f:
                f.write(f"{q.dtype}\t{what.split(' ')[0]}\t{err:.3e}\n")
        assert err <= tol, f"{what}[{i}]: relative error {err:.2e} > {tol:.0e}"


def stream(model, x, state, batched, batch_first):
    """Outputs and states of step() applied to each time step."""
    tdim = (1 if batch_first else 0) if batched else 0
    ys, states = [], []
    for t in range(x.shape[tdim]):
        y, state = model.step(x.select(tdim, t), state)
        ys.append(y)
        states.append(state)
    return torch.stack(ys, tdim), states


def _have(dataset: str) -> bool:
    from torchlmu.data import DataNotFoundError
    from torchlmu.experiments import psmnist

    try:
        psmnist.data_root(None, dataset)
    except DataNotFoundError:
        return False
    return True


#: Skips a test where the experiments cannot find MNIST (their own search: $TORCHLMU_DATA, the
#: user cache, ../shared/data/mnist beside the checkout).
needs_mnist = pytest.mark.skipif(
    not _have("mnist"), reason="MNIST not found (set TORCHLMU_DATA or add ../shared/data/mnist)"
)
#: Skips a test where the experiments cannot find Fashion-MNIST (the same search, with
#: /usr/share/datasets/fashion-mnist of the Debian package dataset-fashion-mnist before
#: ../shared/data/fashion-mnist).
needs_fashion_mnist = pytest.mark.skipif(
    not _have("fashion-mnist"),
    reason="Fashion-MNIST not found (apt install dataset-fashion-mnist, or set TORCHLMU_DATA)",
)


def refuse_test_reads(monkeypatch, module) -> None:
    """Make ``module.load(cfg)`` return splits whose test split fails when read (``batch`` is
    the only way ``psmnist.train_classifier`` reads test sequences): a tuning run must not."""
    real_load = module.load

    def load(cfg):
        s = real_load(cfg)

        def refuse(idx):
            raise AssertionError("a tuning run read the test set")

        s.test.batch = refuse
        return s

    monkeypatch.setattr(module, "load", load)


def spy_onednn(monkeypatch) -> list:
    """Route torchlmu.ops' oneDNN products through a counter: the real operator where torch has
    it, else torch's product, so that the dispatch itself is tested on any build. Returns the
    list of calls (x's shapes)."""
    from torchlmu import ops

    real = ops._onednn_linear()
    calls = []

    def op(a, w, b, attr, scalars, algorithm):
        calls.append(tuple(a.shape))
        return real(a, w, b, attr, scalars, algorithm) if real is not None else a @ w.T

    monkeypatch.setattr(ops, "_onednn_linear", lambda: op)
    return calls


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
