"""Sequential Fashion-MNIST (Zalando's images, pixels in raster order, no permutation) with a
deep LMU network: the experiment of :mod:`.deep_psmnist` with ``dataset="fashion-mnist"`` and
``permute=False``, issue 19's third data set. ``--set model=lstm`` trains the nn.LSTM baseline
of the deep model's size under the same protocol.

Data: Fashion-MNIST's four IDX files (:data:`torchlmu.data.FASHION_MNIST`), e.g. from the Debian
package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), split as sequential
MNIST is (``RandomState(50)`` orders the 60,000 training images, the first 50,000 train, the last
10,000 validate; the official 10,000 test).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import deep_psmnist

NAME = "deep-sfmnist"
preflight = deep_psmnist.preflight
PARALLEL_PIECES = deep_psmnist.PARALLEL_PIECES
TITLE = "Sequential Fashion-MNIST (deep LMU network)"
PAPER = {"test_acc": None, "params": None}  # no published number is restated here


@dataclass
class Config(deep_psmnist.Config):
    permute: bool = False
    dataset: str = "fashion-mnist"


run, table, report_section = deep_psmnist.variant(NAME, TITLE, PAPER)
