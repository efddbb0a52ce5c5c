"""nn.LSTM's options on LMU: num_layers, bidirectional, dropout and PackedSequence, each equal to
the explicit composition of single layers (the backward direction reversed by lengths by hand),
in every mode. float64, 1e-10 (conftest)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import TOL, check_equal, stream
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchlmu import LMU, LMUState, ModeError, ValidationError

F64 = torch.float64


def build(kind, mode, *, L=2, bidirectional=True, **kw):
    torch.manual_seed(0)
    hidden = {
        "tanh": "tanh",
        "none": None,
        "lstm": nn.LSTMCell(8, 5, dtype=F64),
        "ff": nn.Sequential(nn.Linear(8, 5, dtype=F64), nn.Tanh()),
    }[kind]
    return LMU(
        2, None if hidden is None else 5, 8, 12.0, hidden_cell=hidden, num_layers=L,
        bidirectional=bidirectional, mode=mode, dtype=F64, memory_bias=True, **kw,
    )  # fmt: skip


def reverse_by_hand(x, lengths):
    """Each sequence reversed within its valid steps, by a loop (independent of the library)."""
    out = x.clone()
    for b in range(x.shape[1]):
        n = x.shape[0] if lengths is None else int(lengths[b])
        out[:n, b] = x[:n, b].flip(0)
    return out


def composition(stack, x, lengths, state=None):
    """The stack as its single layers applied one by one (time-major, batched), from the
    per-layer slices of ``state``."""
    D = 2 if stack.bidirectional else 1
    out, finals = x, []
    K = stack.num_layers * D
    states = [None] * K
    if state is not None:
        states = [LMUState(*(None if v is None else v[k] for v in state)) for k in range(K)]
    for i in range(stack.num_layers):
        ys = []
        for d in range(D):
            layer = stack.layers[i * D + d]
            inp = out if d == 0 else reverse_by_hand(out, lengths)
            y, st = layer(inp, states[i * D + d], lengths=lengths)
            ys.append(y if d == 0 else reverse_by_hand(y, lengths))
            finals.append(st)
        out = torch.cat(ys, -1)
        if i < stack.num_layers - 1 and stack.dropout and stack.training:
            out = F.dropout(out, stack.dropout, True)
    stacked = LMUState(
        *(None if f[0] is None else torch.stack(f) for f in zip(*finals, strict=True))
    )
    return out, stacked


@pytest.mark.parametrize(
    ("kind", "mode", "bidirectional", "use_len"),
    list(
        itertools.product(
            ["tanh", "lstm", "none", "ff"], ["auto", "recurrent"], [True, False], [False, True]
        )
    ),
)
def test_stack_equals_the_composition_of_its_layers(kind, mode, bidirectional, use_len):
    stack = build(kind, mode, bidirectional=bidirectional)
    x = torch.randn(11, 3, 2, dtype=F64, requires_grad=True)
    lengths = torch.tensor([11, 6, 1]) if use_len else None
    y, st = stack(x, lengths=lengths)
    y_c, st_c = composition(stack, x, lengths)
    check_equal([y], [y_c], TOL[F64], f"stack output {kind} {mode}")
    check_equal(st, st_c, TOL[F64], f"stack state {kind} {mode}")
    params = list(stack.parameters())
    g = torch.autograd.grad(y.square().sum() + st.memory.sum(), [x, *params])
    g_c = torch.autograd.grad(y_c.square().sum() + st_c.memory.sum(), [x, *params])
    check_equal(g, g_c, TOL[F64], f"stack grads {kind} {mode}")
    # the reference path of every layer gives the same
    y_r, st_r = stack.forward_reference(x, lengths=lengths)
    check_equal([y_r, *st_r], [y, *st], TOL[F64], "stack reference")


def test_stack_state_last_output_batch_first_and_unbatched():
    stack = build("tanh", "auto")
    x = torch.randn(3, 9, 2, dtype=F64)
    lengths = torch.tensor([9, 4, 2])
    stack.batch_first = True
    y, st = stack(x, lengths=lengths)
    assert y.shape == (3, 9, 10) and st.memory.shape == (4, 3, 8) and st.hidden.shape == (4, 3, 5)
    # continuing from a given state equals the composition from the same states
    y2, st2 = stack(x, st, lengths=lengths)
    y2_c, st2_c = composition(stack, x.transpose(0, 1), lengths, st)
    check_equal([y2.transpose(0, 1), *st2], [y2_c, *st2_c], TOL[F64], "from a state")
    stack.return_sequences = False
    last, _ = stack(x, lengths=lengths)
    fwd = y[torch.arange(3), lengths - 1, :5]  # forward half at each sequence's last step
    bwd = y[:, 0, 5:]  # backward half at its own last step, t = 0
    check_equal([last], [torch.cat([fwd, bwd], -1)], 0.0, "last output")
    stack.return_sequences, stack.batch_first = True, False
    y1, st1 = stack(x[0].T.T[:9])  # unbatched (T, I)
    y_b, st_b = stack(x[:1].transpose(0, 1))
    check_equal(
        [y1, *st1], [y_b[:, 0], *(s[:, 0] for s in st_b if s is not None), None], 1e-12, "unbatched"
    )


def test_packed_sequences_in_and_out():
    """A PackedSequence gives a PackedSequence packed the same way, equal to the padded run
    with lengths (one layer and a bidirectional stack, sorted and unsorted packing)."""
    x = torch.randn(10, 4, 2, dtype=F64)
    lengths = torch.tensor([7, 10, 3, 7])
    for model in (build("tanh", "auto", L=1, bidirectional=False), build("lstm", "auto")):
        y_pad, st_pad = model(x, lengths=lengths)
        for enforce in (False, True):
            order = torch.argsort(lengths, descending=True) if enforce else torch.arange(4)
            packed = pack_padded_sequence(x[:, order], lengths[order], enforce_sorted=enforce)
            y, st = model(packed)
            assert torch.equal(y.batch_sizes, packed.batch_sizes)
            y_unpacked, _ = pad_packed_sequence(y)
            check_equal([y_unpacked], [y_pad[:, order]], 1e-12, "packed output")
            dim = 0 if st.memory.dim() == 2 else 1  # (B, ·) for one layer, (L·D, B, ·) stacked
            picked = [None if s is None else s.index_select(dim, order) for s in st_pad]
            check_equal(st, picked, 1e-12, "packed state")
            y_r, _ = model.forward_reference(packed)
            check_equal([y_r.data], [y.data], 1e-10, "packed reference")


def test_dropout_between_layers():
    """Training: dropout on every layer's output but the last's, the same draws as the
    composition's; evaluation: none."""
    stack = build("tanh", "auto", L=3, dropout=0.4)
    x = torch.randn(8, 2, 2, dtype=F64)
    stack.train()
    torch.manual_seed(5)
    y, _ = stack(x)
    torch.manual_seed(5)
    y_c, _ = composition(stack, x, None)
    check_equal([y], [y_c], TOL[F64], "dropout train")
    torch.manual_seed(6)
    assert not torch.allclose(stack(x)[0], y)  # new draws
    stack.eval()
    y_e, _ = stack(x)
    stack.dropout = 0.0
    check_equal([y_e], [stack(x)[0]], 0.0, "dropout eval")


def test_stacked_streaming_equals_forward():
    stack = build("lstm", "auto", bidirectional=False, L=3)
    x = torch.randn(9, 2, 2, dtype=F64)
    y, st = stack(x)
    ys, states = stream(stack, x, None, batched=True, batch_first=False)
    check_equal([ys, *states[-1]], [y, *st], 1e-10, "stacked stream")


def test_bad_options():
    with pytest.raises(ValidationError, match="num_layers: expected an integer >= 1"):
        LMU(1, 4, 4, 10.0, num_layers=0)
    with pytest.raises(ValidationError, match=r"dropout: expected a number in \[0, 1\)"):
        LMU(1, 4, 4, 10.0, num_layers=2, dropout=1.0)
    with pytest.warns(UserWarning, match="dropout acts between stacked layers"):
        LMU(1, 4, 4, 10.0, dropout=0.2)
    bi = LMU(1, 4, 4, 10.0, bidirectional=True)
    with pytest.raises(ModeError, match="bidirectional"):
        bi.step(torch.randn(2, 1))
    with pytest.raises(ModeError, match="stepper"):
        bi.stepper()
    with pytest.raises(
        ValidationError, match=r"state.memory: expected 3 dimensions, the first of size 2"
    ):
        bi(torch.randn(5, 3, 1), LMUState(torch.zeros(3, 4), torch.zeros(3, 4)))
    with pytest.raises(ValidationError, match="lengths"):
        packed = pack_padded_sequence(torch.randn(5, 2, 1), torch.tensor([5, 3]))
        bi(packed, lengths=torch.tensor([5, 3]))
