"""Porting from keras-lmu: load a saved ``.keras`` model's LMU layer with its weights.

The map of names and weights is tabled in torchlmu.interop (keras-lmu's ``memory_d`` is
torchlmu's ``channels``; its ``order`` and ``theta`` keep their names). Keras is batch-first.
"""

import os
from pathlib import Path

import numpy as np
import torch

from torchlmu.interop import from_keras

# A model saved by keras-lmu 0.9 (Keras 3) with model.save(...); this one ships with the tests,
# with inputs and the outputs keras computed for them.
fixtures = Path(os.environ.get("TORCHLMU_KERAS_FIXTURES", "tests/fixtures/keras_lmu"))
path = fixtures / "lmu_dense_float64.keras"
lmu = from_keras(path)  # an LMU with batch_first=True and the saved weights
print(lmu)

ref = np.load(path.with_suffix(".npz"))  # x (B, T, I) and keras' outputs y (B, T, H)
with torch.no_grad():
    y, _ = lmu(torch.from_numpy(ref["x"]))
err = np.abs(y.numpy() - ref["y"]).max()
print(f"max |torchlmu − keras-lmu| = {err:.1e}")
assert err < 1e-10  # float64: the same function, to rounding
