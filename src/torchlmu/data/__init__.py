"""Tasks and data sets for Legendre Memory Units.

* :func:`white_noise` — band-limited white noise (flat spectrum up to a cut-off), seeded.
* :func:`delay_task`, :func:`capacity_task`, :class:`DelayDataset` — reproduce delayed input.
* :func:`mackey_glass_euler` (the LMU paper's generator), :func:`mackey_glass_rk4` (accurate),
  :func:`mackey_glass_forecast`, :class:`MackeyGlassForecast` — chaotic time-series forecasting.
* :func:`nrmse` — normalised RMSE, the convention always stated.
* :func:`read_idx`, :func:`find_mnist`, :func:`load_mnist`, :func:`mnist_files`,
  :func:`sequential_mnist`, :func:`permuted_sequential_mnist`, :class:`SequentialMNIST` — MNIST
  and Fashion-MNIST (``dataset=`` :data:`MNIST` or :data:`FASHION_MNIST`, or ``"mnist"``,
  ``"fashion-mnist"``) from local files, checksummed, as pixel sequences (nothing is downloaded).
"""

from .delay import DelayDataset, capacity_delays, capacity_task, delay_targets, delay_task
from .files import ChecksumError, DataNotFoundError, FileSpec, file_sha1, verify_file
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx, read_idx_images, read_idx_labels
from .mackey_glass import (
    MackeyGlassForecast,
    mackey_glass_euler,
    mackey_glass_forecast,
    mackey_glass_rk4,
)
from .metrics import NRMSE_CONVENTIONS, nrmse
from .mnist import (
    DATASETS,
    ENV_DATA_DIR,
    FASHION_MNIST,
    FASHION_MNIST_FILES,
    MNIST,
    MNIST_FILES,
    IDXDataset,
    MNISTSplits,
    SequentialMNIST,
    dataset_spec,
    default_data_dir,
    find_mnist,
    load_mnist,
    mnist_dirs,
    mnist_files,
    permuted_sequential_mnist,
    psmnist_permutations,
    sequential_mnist,
)
from .noise import white_noise, white_noise_np

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "MNIST",
    "MNIST_FILES",
    "NRMSE_CONVENTIONS",
    "ChecksumError",
    "DataNotFoundError",
    "DelayDataset",
    "FileSpec",
    "IDXDataset",
    "MNISTSplits",
    "MackeyGlassForecast",
    "SequentialMNIST",
    "capacity_delays",
    "capacity_task",
    "dataset_spec",
    "default_data_dir",
    "delay_targets",
    "delay_task",
    "file_sha1",
    "find_mnist",
    "load_mnist",
    "mackey_glass_euler",
    "mackey_glass_forecast",
    "mackey_glass_rk4",
    "mnist_dirs",
    "mnist_files",
    "nrmse",
    "permuted_sequential_mnist",
    "psmnist_permutations",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "sequential_mnist",
    "verify_file",
    "white_noise",
    "white_noise_np",
]
