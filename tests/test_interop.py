"""keras-lmu models brought over by torchlmu.interop.from_keras equal keras' own outputs.

The fixtures (tests/fixtures/keras_lmu: NAME.keras and keras' output on a fixed input in
NAME.npz) were made once with keras-lmu 0.9 / Keras 3.15 / TensorFlow 2.21 by
tools/make_keras_fixtures.py (its docstring has the commands); CI needs no TensorFlow.
Tolerance: relative max error, float64 1e-10, float32 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from torchlmu import ValidationError
from torchlmu.hidden import ElmanHidden, NoHidden, PositionwiseHidden, TorchCellHidden
from torchlmu.interop import from_keras

pytest.importorskip("h5py")

FIXTURES = Path(__file__).parent / "fixtures" / "keras_lmu"
NAMES = sorted(
    {p.name.rsplit("_", 1)[0] for p in FIXTURES.glob("*.keras") if not p.name.startswith("train_")}
)
HIDDEN = {
    "lmu_simplernn_all": ElmanHidden,
    "lmu_simplernn_trainable_theta": ElmanHidden,
    "lmu_lstm": TorchCellHidden,
    "lmu_gru_h2m": TorchCellHidden,
    "lmu_dense": PositionwiseHidden,
    "lmu_none_identity": NoHidden,
    "lmu_euler_last": ElmanHidden,
    "ff_dense": PositionwiseHidden,
    "ff_none": NoHidden,
    "rnn_lmucell_all": ElmanHidden,
}


def test_every_fixture_is_covered():
    assert set(NAMES) == set(HIDDEN), "a fixture without a test entry (or the reverse)"


@pytest.mark.parametrize("floatx", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_from_keras_equals_keras(name, floatx):
    path = FIXTURES / f"{name}_{floatx}.keras"
    data = np.load(path.with_suffix(".npz"))
    model = from_keras(path).eval()
    assert type(model.cell.hidden) is HIDDEN[name]
    assert model.cell.memory.input_encoders.dtype == getattr(torch, floatx)
    with torch.no_grad():
        y, _ = model(torch.from_numpy(data["x"]))
    want = torch.from_numpy(data["y"])
    assert y.shape == want.shape
    err = float((y - want).abs().max() / want.abs().max())
    assert err <= (1e-10 if floatx == "float64" else 1e-5), f"{name} {floatx}: {err:.2e}"


def test_the_map_reads_what_keras_saved():
    """Spot checks of the traps: θ⁻¹ read as log θ, the memory kernel split into input and
    hidden encoders, identity encoders without a kernel, the discretiser."""
    m = from_keras(FIXTURES / "lmu_simplernn_trainable_theta_float64.keras")
    assert m.cell.memory.trainable_theta and abs(m.theta - 6.0) / 6.0 < 2  # near, not equal
    m = from_keras(FIXTURES / "lmu_simplernn_all_float64.keras")
    assert m.cell.hidden_encoders.shape == (2, 4) and m.cell.memory.memory_bias is not None
    m = from_keras(FIXTURES / "lmu_none_identity_float64.keras")
    assert torch.equal(m.cell.memory.input_encoders, torch.eye(2, dtype=torch.float64))
    assert from_keras(FIXTURES / "lmu_euler_last_float64.keras").cell.memory.method == "euler"
    with pytest.raises(ValidationError, match="layer"):
        from_keras(FIXTURES / "lmu_lstm_float64.keras", layer="no_such_layer")
