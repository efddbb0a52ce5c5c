"""Make the keras-lmu fixtures of tests/test_interop.py (run once; CI needs no TensorFlow).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu keras-lmu h5py
    /tmp/tfenv/bin/python tools/make_keras_fixtures.py tests/fixtures/keras_lmu float64
    /tmp/tfenv/bin/python tools/make_keras_fixtures.py tests/fixtures/keras_lmu float32

For each model: NAME.keras (keras' own save: config.json + model.weights.h5) and NAME.npz (the
input x (3, 9, 2) and keras' output y on it), in float64 and float32. keras-lmu is used only as
a black box, through its public layers; none of its code is copied.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_lmu
import numpy as np


def models():
    L = keras.layers
    return {
        "lmu_simplernn_all": lambda: keras_lmu.LMU(
            memory_d=2,
            order=3,
            theta=5.0,
            hidden_cell=L.SimpleRNNCell(4),
            hidden_to_memory=True,
            memory_to_memory=True,
            input_to_hidden=True,
            use_bias=True,
            return_sequences=True,
        ),
        "lmu_simplernn_trainable_theta": lambda: keras_lmu.LMU(
            memory_d=1,
            order=4,
            theta=6.0,
            hidden_cell=L.SimpleRNNCell(3, activation="relu"),
            trainable_theta=True,
            memory_to_memory=True,
            return_sequences=True,
        ),
        "lmu_lstm": lambda: keras_lmu.LMU(
            memory_d=1,
            order=4,
            theta=6.0,
            hidden_cell=L.LSTMCell(3),
            return_sequences=True,
        ),
        "lmu_gru_h2m": lambda: keras_lmu.LMU(
            memory_d=2,
            order=3,
            theta=5.0,
            hidden_cell=L.GRUCell(3),
            hidden_to_memory=True,
            input_to_hidden=True,
            return_sequences=True,
        ),
        "lmu_dense": lambda: keras_lmu.LMU(
            memory_d=1,
            order=4,
            theta=6.0,
            hidden_cell=L.Dense(3, activation="tanh"),
            input_to_hidden=True,
            return_sequences=True,
        ),
        "lmu_none_identity": lambda: keras_lmu.LMU(
            memory_d=2,
            order=3,
            theta=5.0,
            hidden_cell=None,
            kernel_initializer=None,
            return_sequences=True,
        ),
        "lmu_euler_last": lambda: keras_lmu.LMU(
            memory_d=1,
            order=3,
            theta=40.0,
            hidden_cell=L.SimpleRNNCell(3),
            discretizer="euler",
            return_sequences=False,
        ),
        "ff_dense": lambda: keras_lmu.LMUFeedforward(
            memory_d=2,
            order=3,
            theta=5.0,
            hidden_cell=L.Dense(3),
            input_to_hidden=True,
            return_sequences=True,
        ),
        "rnn_lmucell_all": lambda: L.RNN(
            keras_lmu.LMUCell(
                memory_d=2,
                order=3,
                theta=5.0,
                hidden_cell=L.SimpleRNNCell(4),
                hidden_to_memory=True,
                memory_to_memory=True,
                input_to_hidden=True,
            ),
            return_sequences=True,
        ),
        "ff_none": lambda: keras_lmu.LMUFeedforward(
            memory_d=1,
            order=4,
            theta=6.0,
            hidden_cell=None,
            return_sequences=True,
        ),
    }


def dropout_fixtures(out: Path) -> None:
    """keras-lmu's dropout (on the memory input) and recurrent_dropout (on memory_to_memory) in
    training: the output y_train on x, beside y_eval; 6 sequences, one input feature."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 9, 1))
    L = keras.layers
    for name, kw in {
        "dropout": dict(dropout=0.5),
        "recurrent_dropout": dict(recurrent_dropout=0.5, memory_to_memory=True),
    }.items():
        keras.utils.set_random_seed(3)
        inp = keras.Input((9, 1))
        layer = keras_lmu.LMU(
            memory_d=1, order=3, theta=5.0, hidden_cell=L.SimpleRNNCell(2), input_to_hidden=True,
            hidden_to_memory=True, return_sequences=True, **kw,
        )  # fmt: skip
        model = keras.Model(inp, layer(inp))
        for w in model.weights:
            w.assign(rng.standard_normal(w.shape) * 0.5)
        model.save(out / f"train_{name}_float64.keras")
        y_train = np.asarray(model(x, training=True))
        y_eval = np.asarray(model(x, training=False))
        np.savez(out / f"train_{name}_float64.npz", x=x, y_train=y_train, y_eval=y_eval)
        print(f"train_{name}", y_train.shape)


def main(out: Path, floatx: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keras.config.set_floatx(floatx)
    if True:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 9, 2)).astype(floatx)
        for name, make in models().items():
            keras.utils.set_random_seed(1)
            inp = keras.Input((9, 2), dtype=floatx)
            model = keras.Model(inp, make()(inp))
            # random weights everywhere (zero or identity initial values would hide a wrong map)
            for w in model.weights:
                value = rng.standard_normal(w.shape).astype(floatx) * 0.4
                if len(w.shape) == 0:  # θ⁻¹ of a trainable θ: near the configured one, positive
                    value = np.asarray(w) * (1 + abs(value))
                w.assign(value)
            y = np.asarray(model(x))
            stem = f"{name}_{floatx}"
            model.save(out / f"{stem}.keras")
            np.savez(out / f"{stem}.npz", x=x, y=y)
            print(stem, y.shape, [tuple(w.shape) for w in model.weights])


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
    if sys.argv[2] == "float64":
        dropout_fixtures(Path(sys.argv[1]))
