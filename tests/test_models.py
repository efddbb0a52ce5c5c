"""torchlmu.models: LMUBlock and DeepLMU.

The streamed model (step by step, O(1) state) equals the parallel one at every step (float64
1e-10, float32 1e-5, conftest's TOL), 'mean' pooling as a running mean; shapes over the option
space (hypothesis); causality; gradients reach every parameter; torch.compile (fullgraph) and
torch.export against eager (COMPILE_TOL); errors name the parameter.
"""

from __future__ import annotations

import pytest
import torch
from conftest import COMPILE_TOL, TOL, check_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from torchlmu import ModeError, ValidationError
from torchlmu.exceptions import DTypeError
from torchlmu.models import DeepLMU, DeepLMUState, LMUBlock

F64 = torch.float64


def build(dtype=F64, **kw) -> DeepLMU:
    """A small model with every per-block option different (width, order, θ, channels)."""
    torch.manual_seed(0)
    opts = dict(
        d_model=[6, 8, 8], num_blocks=3, order=[5, 7, 3], theta=[16.0, 9.0, 4.0],
        channels=[1, 3, 2],
    )  # fmt: skip
    opts.update(kw)
    return DeepLMU(2, 3, dtype=dtype, **opts).eval()


def streamed(model: DeepLMU, x: torch.Tensor) -> torch.Tensor:
    """y_t of step() for every t, ``(T, B, O)``."""
    state, ys = None, []
    for t in range(x.shape[0]):
        y, state = model.step(x[t], state)
        ys.append(y)
    return torch.stack(ys)


def prefix_outputs(model: DeepLMU, x: torch.Tensor) -> torch.Tensor:
    """forward on every prefix x[:t+1] (the streamed output's definition), ``(T, B, O)``."""
    if model.pooling == "none":
        return model(x)
    return torch.stack([model(x[: t + 1]) for t in range(x.shape[0])])


@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("pooling", ["last", "mean", "none"])
@pytest.mark.parametrize("conv", ["fft", "chunk"])
def test_streaming_equals_parallel(dtype, pooling, conv):
    model = build(dtype, pooling=pooling, conv=conv, ffn="mlp" if conv == "chunk" else "glu")
    x = torch.randn(37, 4, 2, dtype=dtype)
    with torch.no_grad():
        got, want = streamed(model, x), prefix_outputs(model, x)
    check_equal([got], [want], TOL[dtype], f"streamed {pooling} {conv}")
    # the last streamed output is the whole sequence's (the pooled forward, not a prefix)
    if pooling != "none":
        with torch.no_grad():
            check_equal([got[-1]], [model(x)], TOL[dtype], f"last step {pooling}")


def test_streaming_with_trainable_theta_and_mlp():
    model = build(pooling="mean", trainable_theta=True, ffn="mlp", activation="tanh")
    with torch.no_grad():
        for b in model.blocks:
            b.memory.log_theta.add_(0.3)  # a θ moved by training
    x = torch.randn(25, 2, 2, dtype=F64)
    with torch.no_grad():
        check_equal([streamed(model, x)], [prefix_outputs(model, x)], TOL[F64], "trainable θ")


class StreamingStep(torch.nn.Module):
    """(x_t, *memories) -> (y_t, *memories): DeepLMU.step with its state as plain tensors."""

    def __init__(self, model: DeepLMU) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, *memories):
        y, state = self.model.step_(x, DeepLMUState(tuple(memories)))
        return (y, *state.memories)


def test_export_streaming_step():
    model = build(torch.float32, d_model=6, num_blocks=2, order=5, theta=16.0, channels=2)
    mems = model.initial_state(3).memories
    B = torch.export.Dim("B")
    ep = torch.export.export(
        StreamingStep(model),
        (torch.randn(3, 2), *mems),
        dynamic_shapes=({0: B}, tuple({0: B} for _ in mems)),
    )
    x = torch.randn(30, 4, 2)
    state, ys = model.initial_state(4).memories, []
    for t in range(30):
        y, *state = ep.module()(x[t], *state)
        ys.append(y)
    with torch.no_grad():
        check_equal([ys[-1]], [model(x)], TOL[torch.float32], "exported stream")


def test_block_step_equals_forward_unbatched_and_batched():
    torch.manual_seed(1)
    block = LMUBlock(3, 6, 11.0, 5, channels=2, ffn="mlp", dtype=F64).eval()
    x = torch.randn(20, 2, 3, dtype=F64)
    with torch.no_grad():
        want = block(x)
        state, ys = None, []
        for t in range(20):
            y, state = block.step(x[t], state)
            ys.append(y)
        check_equal([torch.stack(ys)], [want], TOL[F64], "block batched")
        state, ys = None, []
        for t in range(20):  # unbatched: (D,) steps, (C·d,) state
            y, state = block.step(x[t, 1], state)
            ys.append(y)
        assert state.shape == (block.state_size,)
        check_equal([torch.stack(ys)], [want[:, 1]], TOL[F64], "block unbatched")
        check_equal([block(x[:, 1])], [want[:, 1]], TOL[F64], "block forward unbatched")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_step_shortcut_equals_the_full_block(bidirectional):
    torch.manual_seed(2)
    block = LMUBlock(4, 6, 12.0, channels=2, bidirectional=bidirectional, dtype=F64).eval()
    h = torch.randn(25, 3, 4, dtype=F64)
    with torch.no_grad():
        check_equal(
            [block.forward_last(h)], [block.forward_time_major(h)[-1]], TOL[F64], "forward_last"
        )


def test_causal_outputs_ignore_the_future_bidirectional_ones_do_not():
    x = torch.randn(30, 2, 2, dtype=F64)
    x2 = x.clone()
    x2[20:] += 1.0
    with torch.no_grad():
        causal = build(pooling="none")
        y, y2 = causal(x), causal(x2)
        check_equal([y2[:20]], [y[:20]], TOL[F64], "causal past")
        assert (y2[20:] - y[20:]).abs().max() > 1e-3
        bi = build(pooling="none", bidirectional=True)
        assert (bi(x2)[:20] - bi(x)[:20]).abs().max() > 1e-3


@settings(max_examples=25, deadline=None)
@given(
    bidirectional=st.booleans(),
    pooling=st.sampled_from(["last", "mean", "none"]),
    ffn=st.sampled_from(["glu", "mlp"]),
    batch_first=st.booleans(),
    batched=st.booleans(),
    T=st.integers(1, 12),
    B=st.integers(1, 3),
    blocks=st.integers(1, 3),
)
def test_shapes(bidirectional, pooling, ffn, batch_first, batched, T, B, blocks):
    torch.manual_seed(0)
    model = DeepLMU(
        3, 4, d_model=5, num_blocks=blocks, order=4, theta=6.0, channels=2, pooling=pooling,
        ffn=ffn, bidirectional=bidirectional, batch_first=batch_first, dropout=0.1, dtype=F64,
    )  # fmt: skip
    shape = ((B, T, 3) if batch_first else (T, B, 3)) if batched else (T, 3)
    y = model(torch.randn(shape, dtype=F64))
    if pooling == "none":
        want = ((B, T, 4) if batch_first else (T, B, 4)) if batched else (T, 4)
    else:
        want = (B, 4) if batched else (4,)
    assert y.shape == want
    assert torch.isfinite(y).all()


def test_gradients_reach_every_parameter():
    model = build(bidirectional=True, pooling="mean", dropout=0.2, trainable_theta=True).train()
    x = torch.randn(15, 3, 2, dtype=F64)
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_tied_dropout_keeps_one_mask_for_every_step():
    torch.manual_seed(0)
    model = DeepLMU(1, 2, d_model=64, num_blocks=1, dropout=0.5, pooling="none").train()
    h = torch.ones(10, 3, 64)
    dropped = model.drop(h)
    assert (dropped == 0).any() and (dropped == 2.0).any()
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))
    model.tie_dropout = False
    untied = model.drop(h)
    assert not torch.equal(untied, untied[:1].expand_as(untied))
    model.eval()
    assert torch.equal(model.drop(h), h)


def test_reset_parameters_resets_every_parameter():
    """A model whose every parameter was moved, reset from the same seed as a fresh one,
    equals it (a parameter reset_parameters missed would keep its shift)."""
    kw = dict(d_model=[8, 6], num_blocks=2, order=4, theta=5.0, bidirectional=True, ffn="mlp")
    fresh = DeepLMU(2, 3, trainable_theta=True, **kw)
    other = DeepLMU(2, 3, trainable_theta=True, **kw)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    torch.manual_seed(3)
    fresh.reset_parameters()
    torch.manual_seed(3)
    other.reset_parameters()
    for (name, a), b in zip(fresh.named_parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_repr_names_the_options():
    model = build(bidirectional=True, dropout=0.1, pooling="mean", ffn="mlp", conv="chunk")
    text = repr(model)
    for part in ("pooling='mean'", "dropout=0.1", "bidirectional=True", "ffn='mlp'", "expand=2"):
        assert part in text, part
    assert "conv='chunk'" in text and "order=7" in text and "channels=3" in text


def test_factory_kwargs():
    model = DeepLMU(2, 3, d_model=4, num_blocks=2, order=3, dtype=F64, device="cpu")
    assert {p.dtype for p in model.parameters()} == {F64}
    assert model(torch.randn(5, 1, 2, dtype=F64)).dtype == F64


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    model = build(pooling="mean")
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    for T in (20, 23):
        x = torch.randn(T, 3, 2, dtype=F64, requires_grad=True)
        got, want = compiled(x), model(x)
        g_got = torch.autograd.grad(got.sum(), [x, *model.parameters()])
        g_want = torch.autograd.grad(want.sum(), [x, *model.parameters()])
        check_equal([got, *g_got], [want, *g_want], COMPILE_TOL, f"compiled T={T}")


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    # the blocked memory: inductor generates no code for the FFT form's complex products (and
    # warns, an error under this suite's filterwarnings)
    model = build(pooling="last", dtype=torch.float32, conv="chunk")
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(30, 3, 2)
    with torch.no_grad():
        check_equal([compiled(x)], [model(x)], COMPILE_TOL, "inductor")


@pytest.mark.parametrize("pooling", ["last", "none"])
def test_export_with_dynamic_length(pooling):
    model = build(pooling=pooling)
    T = torch.export.Dim("T", min=2, max=10_000)
    ep = torch.export.export(model, (torch.randn(20, 3, 2, dtype=F64),), dynamic_shapes=({0: T},))
    for length in (2, 9, 41):
        x = torch.randn(length, 3, 2, dtype=F64)
        with torch.no_grad():
            check_equal([ep.module()(x)], [model(x)], COMPILE_TOL, f"export T={length}")


def test_errors_name_the_parameter():
    with pytest.raises(ValidationError, match="pooling"):
        DeepLMU(1, 2, pooling="max")
    with pytest.raises(ValidationError, match=r"order: expected one value or 3 values"):
        DeepLMU(1, 2, num_blocks=3, order=[4, 4])
    with pytest.raises(ValidationError, match=r"theta\[1\]"):
        DeepLMU(1, 2, num_blocks=2, theta=[4.0, -1.0])
    with pytest.raises(ValidationError, match="ffn"):
        LMUBlock(3, 4, 5.0, ffn="swiglu")
    with pytest.raises(ValidationError, match="dropout"):
        DeepLMU(1, 2, dropout=1.0)
    with pytest.raises(ValidationError, match="d_model"):
        DeepLMU(1, 2, d_model=0)
    model = build()
    with pytest.raises(DTypeError, match="input"):
        model(torch.randn(5, 2, 2))
    with pytest.raises(ValidationError, match="input"):
        model(torch.randn(5, 2, 3, dtype=F64))
    with pytest.raises(ValidationError, match="state"):
        model.step(torch.randn(2, 2, dtype=F64), (torch.zeros(2, 5, dtype=F64),))
    bad = model.initial_state(2)._replace(memories=model.initial_state(3).memories)
    with pytest.raises(ValidationError, match=r"state.memories\[0\]"):
        model.step(torch.randn(2, 2, dtype=F64), bad)
    with pytest.raises(ValidationError, match=r"state\.total"):
        model.step(
            torch.randn(2, 2, dtype=F64),
            DeepLMUState(model.initial_state(2).memories, torch.zeros(2, 8, dtype=F64)),
        )
    with pytest.raises(ModeError, match="bidirectional=False"):
        build(bidirectional=True).step(torch.randn(2, 2, dtype=F64))
    with pytest.raises(ModeError, match="bidirectional=False"):
        LMUBlock(3, 4, 5.0, bidirectional=True).step(torch.randn(3))
