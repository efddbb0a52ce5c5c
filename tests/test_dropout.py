"""keras-lmu's dropout and recurrent_dropout (LMUCell's input_dropout, recurrent_dropout): the
parallel and recurrent paths equal the step loop with the same masks, a mask holds for a whole
sequence, evaluation is untouched, and the semantics are keras-lmu's (its training outputs on
fixtures made by tools/make_keras_fixtures.py are reproduced with masks of 0 or 2)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOL, check_equal
from torch import nn

from torchlmu import LMU, ValidationError
from torchlmu.lmu import DropoutMasks, LMUCell

F64 = torch.float64
FIXTURES = Path(__file__).parent / "fixtures" / "keras_lmu"


@pytest.mark.parametrize(
    ("hidden", "flags"),
    [
        ("tanh", (False, False, True)),
        ("tanh", (True, True, True)),
        ("lstm", (False, False, False)),
        ("lstm", (True, True, False)),
        (None, (False, False, False)),
    ],
)
def test_training_paths_equal_the_step_loop_with_the_same_masks(hidden, flags):
    h2m, m2m, i2h = flags
    cell = nn.LSTMCell(8 + (2 if i2h else 0), 3, dtype=F64) if hidden == "lstm" else hidden
    torch.manual_seed(0)
    lmu = LMU(
        2, None if hidden is None else 3, 4, 6.0, channels=2, hidden_cell=cell,
        hidden_to_memory=h2m, memory_to_memory=m2m, input_to_hidden=i2h,
        input_dropout=0.4, recurrent_dropout=0.3 if m2m else 0.0, dtype=F64,
    )  # fmt: skip
    x = torch.randn(10, 3, 2, dtype=F64, requires_grad=True)
    lmu.train()
    torch.manual_seed(7)
    y, st = lmu(x)
    torch.manual_seed(7)
    y_r, st_r = lmu.forward_reference(x)
    check_equal([y, *st], [y_r, *st_r], TOL[F64], f"dropout {hidden} {flags}")
    g = torch.autograd.grad(y.sum(), [x, *lmu.parameters()])
    g_r = torch.autograd.grad(y_r.sum(), [x, *lmu.parameters()])
    check_equal(g, g_r, TOL[F64], "dropout grads")
    torch.manual_seed(8)
    assert not torch.allclose(lmu(x)[0], y)  # other draws
    lmu.eval()
    y_e, _ = lmu(x)
    lmu.cell.input_dropout = lmu.cell.recurrent_dropout = 0.0
    check_equal([y_e], [lmu(x)[0]], 0.0, "evaluation ignores dropout")


def test_one_mask_per_sequence():
    """A memory of one input feature: each sequence's states are those of 0·x or x/(1 − p)."""
    lmu = LMU(1, None, 4, 6.0, hidden_cell=None, input_dropout=0.5, dtype=F64).train()
    x = torch.randn(12, 64, 1, dtype=F64)
    y, _ = lmu(x)
    clean = lmu.eval()(x)[0]
    for b in range(64):
        assert torch.allclose(y[:, b], 0 * clean[:, b]) or torch.allclose(y[:, b], 2 * clean[:, b])
    dropped = sum(bool((y[:, b] == 0).all()) for b in range(64))
    assert 16 < dropped < 48  # about half


@pytest.mark.parametrize("name", ["dropout", "recurrent_dropout"])
def test_keras_lmu_semantics(name, monkeypatch):
    """keras-lmu's training output on each fixture sequence is ours with some mask of 0 or 2
    (p = 0.5) on the tensors our options drop, and with no other choice of tensors."""
    from torchlmu.interop import from_keras

    pytest.importorskip("h5py")
    data = np.load(FIXTURES / f"train_{name}_float64.npz")
    model = from_keras(FIXTURES / f"train_{name}_float64.keras")
    cell = model.cell
    assert (cell.input_dropout, cell.recurrent_dropout) == (
        (0.5, 0.0) if name == "dropout" else (0.0, 0.5)
    )
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        check_equal([model.eval()(x)[0]], [torch.from_numpy(data["y_eval"])], 1e-12, "eval")
    model.train()
    I, H, S = cell.input_size, cell.hidden_size, cell.memory.state_size
    n = I + H if name == "dropout" else S
    matched = 0
    for b in range(x.shape[0]):
        want = torch.from_numpy(data["y_train"][b : b + 1])
        for bits in itertools.product([0.0, 2.0], repeat=n):
            m = torch.tensor([bits], dtype=F64)
            masks = DropoutMasks(m[:, :I], m[:, I:]) if name == "dropout" else DropoutMasks(m=m)
            monkeypatch.setattr(LMUCell, "dropout_masks", lambda self, B, like, k=masks: k)
            with torch.no_grad():
                y, _ = model(x[b : b + 1])
            if float((y - want).abs().max()) < 1e-10:
                matched += 1
                break
    assert matched == x.shape[0]


def test_bad_dropout():
    with pytest.raises(
        ValidationError, match="recurrent_dropout: expected 0 without memory_to_memory"
    ):
        LMU(1, 4, 4, 10.0, recurrent_dropout=0.2)
    with pytest.raises(ValidationError, match=r"input_dropout: expected a number in \[0, 1\)"):
        LMU(1, 4, 4, 10.0, input_dropout=1.0)
