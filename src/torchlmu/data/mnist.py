"""MNIST and Fashion-MNIST from local files, checksummed, as (permuted) pixel sequences.

Both data sets come as four IDX files of the same names and shapes (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``;
60,000 training and 10,000 test images of 28 × 28 pixels, labels 0-9). An :class:`IDXDataset`
(:data:`MNIST`, :data:`FASHION_MNIST`, or its key ``"mnist"``, ``"fashion-mnist"``) names the
files, their SHA-1 digests and where to look; every function here takes it as ``dataset``. The
files are read where :func:`find_mnist` finds them: ``root`` when given, else ``$TORCHLMU_DATA``
(its ``mnist`` / ``fashion-mnist`` folder, or the files in it), else
``$XDG_CACHE_HOME/torchlmu/KEY`` (``~/.cache/torchlmu/KEY``), then the data set's system folders
(Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, where the Debian package
``dataset-fashion-mnist`` puts it). Every file is checked against its known SHA-1 before use.
Nothing is downloaded (see :mod:`.files`).

Permuted sequential MNIST follows the LMU paper, which took it from the NRU code base:
``rng = numpy.random.RandomState(50)``; ``order = rng.permutation(60000)`` orders the training
set, then ``perm = rng.permutation(784)`` permutes the pixels of every image (flattened
row-major). Of the ordered training set the first 50,000 images train and the last 10,000
validate; the official 10,000 test images test. Pixels are divided by 255 and every image is a
sequence of 784 steps with 1 feature. Plain sequential MNIST uses the same order and splits
without the pixel permutation; sequential Fashion-MNIST (``sequential_mnist(root,
dataset="fashion-mnist")``) uses the same order, splits and scaling on Zalando's images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..exceptions import ValidationError
from ._checks import check_float_dtype, check_int
from .files import DataNotFoundError, FileSpec, verify_file
from .idx import read_idx_images, read_idx_labels

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "MNIST",
    "MNIST_FILES",
    "IDXDataset",
    "MNISTSplits",
    "SequentialMNIST",
    "dataset_spec",
    "default_data_dir",
    "find_mnist",
    "load_mnist",
    "mnist_dirs",
    "mnist_files",
    "permuted_sequential_mnist",
    "psmnist_permutations",
    "sequential_mnist",
]

#: Environment variable naming the folder of torchlmu's data (a data set's files, or its
#: folder such as mnist/ or fashion-mnist/).
ENV_DATA_DIR = "TORCHLMU_DATA"

_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

#: MNIST's four files and the SHA-1 digests of the original distribution (LeCun, Cortes &
#: Burges), as every mirror and torchvision serve them.
MNIST_FILES: dict[str, FileSpec] = {
    "train_images": FileSpec(
        "train-images-idx3-ubyte.gz", ("6c95f4b05d2bf285e1bfb0e7960c31bd3b3f8a7d",)
    ),
    "train_labels": FileSpec(
        "train-labels-idx1-ubyte.gz", ("2a80914081dc54586dbdf242f9805a6b8d2a15fc",)
    ),
    "test_images": FileSpec(
        "t10k-images-idx3-ubyte.gz", ("c3a25af1f52dad7f726cce8cacb138654b760d48",)
    ),
    "test_labels": FileSpec(
        "t10k-labels-idx1-ubyte.gz", ("763e7fa3757d93b0cdec073cef058b2004252c17",)
    ),
}

#: Fashion-MNIST's four files (Xiao, Rasul & Vollgraf 2017, Zalando Research). Two SHA-1s each,
#: both computed here from verified files: first Zalando's original ``.gz`` files, whose MD5s
#: match those Zalando's README publishes (train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d,
#: train-labels 25c81989df183df01b3e8a0aad5dffbe, t10k-images bef4ecab320f06d8554ea6380940ec79,
#: t10k-labels bb300cfdad3c16e7a12a480ee83cd310); second the copies of the Debian package
#: ``dataset-fashion-mnist`` (0.0~git20200523.55506a9-1), whose MD5s differ from the README's
#: only because their gzip header was rewritten (no file name, the package's build time): the
#: compressed data and the gzip trailer (CRC-32 and length of the content) are byte for byte
#: Zalando's, and putting the original header back gives files whose MD5 matches the README's
#: (``tools/fashion_mnist_provenance.py`` does it).
FASHION_MNIST_FILES: dict[str, FileSpec] = {
    "train_images": FileSpec(
        "train-images-idx3-ubyte.gz",
        (
            "95978b76b6897f6ca69a25145d01716efb615989",
            "f3b839f14745c4e79b8fd3c612c99de71320e861",
        ),
    ),
    "train_labels": FileSpec(
        "train-labels-idx1-ubyte.gz",
        (
            "09814cfef5a041118ceace42f8dae995319d331a",
            "f4909103fbdc4fa0d25c24c0ef242affd5e6311d",
        ),
    ),
    "test_images": FileSpec(
        "t10k-images-idx3-ubyte.gz",
        (
            "5edda96c6d8c36ff915115a0e8136d370a021576",
            "5273a894aa97b4c0880e0d709e6afbdc770d05e3",
        ),
    ),
    "test_labels": FileSpec(
        "t10k-labels-idx1-ubyte.gz",
        (
            "9caad14e1aff9adac77d3744963212d36af15bee",
            "9317cfa0b855692f9538dd9e8821f97222088aa9",
        ),
    ),
}


@dataclass(frozen=True)
class IDXDataset:
    """An MNIST-format data set: its four IDX files and where to look for them.

    Attributes:
        name: the data set's name in messages, e.g. ``"Fashion-MNIST"``.
        key: its name in a ``Config`` and its folder under ``$TORCHLMU_DATA`` and the user
            cache, e.g. ``"fashion-mnist"``.
        files: ``{"train_images" | "train_labels" | "test_images" | "test_labels": FileSpec}``.
        system_dirs: folders searched after the user cache (a distribution package's).
        source: how to obtain the files, the end of the message when they are not found.
    """

    name: str
    key: str
    files: Mapping[str, FileSpec]
    system_dirs: tuple[str, ...]
    source: str


#: MNIST (LeCun, Cortes & Burges): no system folder; torchvision's download is one source.
MNIST = IDXDataset(
    "MNIST",
    "mnist",
    MNIST_FILES,
    (),
    "e.g. the MNIST/raw folder of a torchvision MNIST download",
)
#: Fashion-MNIST (Zalando): also looked for where the Debian package dataset-fashion-mnist
#: puts it.
FASHION_MNIST = IDXDataset(
    "Fashion-MNIST",
    "fashion-mnist",
    FASHION_MNIST_FILES,
    ("/usr/share/datasets/fashion-mnist",),
    "e.g. /usr/share/datasets/fashion-mnist, where the Debian package dataset-fashion-mnist "
    "puts them (apt install dataset-fashion-mnist), or a folder of Zalando's original files",
)
#: The data sets by key.
DATASETS: dict[str, IDXDataset] = {d.key: d for d in (MNIST, FASHION_MNIST)}


def dataset_spec(dataset: IDXDataset | str) -> IDXDataset:
    """``dataset`` itself, or the data set of :data:`DATASETS` it names."""
    if isinstance(dataset, IDXDataset):
        return dataset
    if isinstance(dataset, str) and dataset in DATASETS:
        return DATASETS[dataset]
    raise ValidationError("dataset", f"one of {sorted(DATASETS)} or an IDXDataset", repr(dataset))


def default_data_dir(dataset: IDXDataset | str = MNIST) -> Path:
    """The user cache's folder of ``dataset``: ``$XDG_CACHE_HOME/torchlmu/KEY`` (default
    ``~/.cache/torchlmu/KEY``; KEY ``mnist`` or ``fashion-mnist``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "torchlmu" / dataset_spec(dataset).key


def mnist_dirs(
    root: str | os.PathLike | None = None, *, dataset: IDXDataset | str = MNIST
) -> list[Path]:
    """The folders :func:`find_mnist` searches, in order: ``root`` alone when given; else
    ``$TORCHLMU_DATA``'s folder of the data set (``mnist``, ``fashion-mnist``) and the variable's
    folder itself when it is set; else the user cache, then the data set's system folders."""
    spec = dataset_spec(dataset)
    if root is not None:
        return [Path(root).expanduser()]
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return [Path(env).expanduser() / spec.key, Path(env).expanduser()]
    return [default_data_dir(spec), *map(Path, spec.system_dirs)]


def find_mnist(
    root: str | os.PathLike | None = None,
    also: Sequence[str | os.PathLike] = (),
    *,
    dataset: IDXDataset | str = MNIST,
) -> Path:
    """The first folder of :func:`mnist_dirs` holding the four files of ``dataset``.

    Args:
        root: the folder to use (the only one looked at).
        also: fallback folders, searched last, only when neither ``root`` nor
            ``$TORCHLMU_DATA`` names a folder (an explicit choice is never second-guessed).
        dataset: :data:`MNIST` (default), :data:`FASHION_MNIST`, or the key of one.

    Raises:
        DataNotFoundError: none does; one line naming every folder searched and what to do.
    """
    spec = dataset_spec(dataset)
    explicit = root is not None or bool(os.environ.get(ENV_DATA_DIR))
    dirs = [*mnist_dirs(root, dataset=spec), *([] if explicit else map(Path, also))]
    names = [f.name for f in spec.files.values()]
    for d in dirs:
        if all((d / n).is_file() for n in names):
            return d
    raise DataNotFoundError(
        f"{spec.name}: expected its four IDX files ({', '.join(names)}) in "
        + " or ".join(str(d) for d in dirs)
        + ", found them in none; name the folder holding them (--data DIR in the command, "
        f"root= in Python, or ${ENV_DATA_DIR}), {spec.source}"
    )


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValidationError("split", "'train' or 'test'", repr(split))
    return split


def mnist_files(
    root: str | os.PathLike | None = None,
    *,
    keys: Sequence[str] = _KEYS,
    dataset: IDXDataset | str = MNIST,
) -> dict[str, Path]:
    """Locate the files of ``dataset`` (see :func:`find_mnist`), each verified by checksum.

    Args:
        root: the folder holding the files; None searches :func:`mnist_dirs`.
        keys: which files: any of ``"train_images"``, ``"train_labels"``, ``"test_images"``,
            ``"test_labels"`` (default: all four).
        dataset: :data:`MNIST` (default), :data:`FASHION_MNIST`, or the key of one.

    Returns:
        ``{key: path}`` of verified files.

    Raises:
        DataNotFoundError: no folder searched holds the four files.
        ChecksumError: a file does not match its known digest.
    """
    spec = dataset_spec(dataset)
    for key in keys:
        if key not in spec.files:
            raise ValidationError("keys", f"a subset of {_KEYS}", repr(key))
    folder = find_mnist(root, dataset=spec)
    found = {key: folder / spec.files[key].name for key in keys}
    for key, path in found.items():
        verify_file(path, spec.files[key])
    return found


def load_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    dataset: IDXDataset | str = MNIST,
) -> tuple[Tensor, Tensor]:
    """Load one split of MNIST (or Fashion-MNIST) as uint8 tensors.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root, dataset: as in :func:`mnist_files`.

    Returns:
        ``(images, labels)``: uint8 tensors of shapes ``(N, 28, 28)`` and ``(N,)``.
    """
    split = _check_split(split)
    files = mnist_files(root, keys=(f"{split}_images", f"{split}_labels"), dataset=dataset)
    images = read_idx_images(files[f"{split}_images"])
    labels = read_idx_labels(files[f"{split}_labels"])
    if images.shape[0] != labels.shape[0]:
        raise ValidationError(
            "labels", f"{images.shape[0]} labels (one per image)", labels.shape[0]
        )
    return images, labels


def psmnist_permutations(
    seed: int = 50, n_train: int = 60000, n_pixels: int = 784
) -> tuple[Tensor, Tensor]:
    """The psMNIST protocol's training order and pixel permutation.

    ``rng = numpy.random.RandomState(seed)``; ``order = rng.permutation(n_train)``, then
    ``pixels = rng.permutation(n_pixels)`` (in this order of draws). Seed 50 is the protocol's.

    Returns:
        ``(order, pixels)`` as int64 tensors of shapes ``(n_train,)`` and ``(n_pixels,)``.
    """
    seed = check_int(seed, "seed", minimum=0)
    n_train = check_int(n_train, "n_train")
    n_pixels = check_int(n_pixels, "n_pixels")
    rng = np.random.RandomState(seed)
    order = rng.permutation(n_train)
    pixels = rng.permutation(n_pixels)
    return torch.from_numpy(order.astype(np.int64)), torch.from_numpy(pixels.astype(np.int64))


class SequentialMNIST(Dataset):
    """Images as pixel sequences, stored as uint8 and converted to float per item or batch.

    Item ``i`` is ``(x, y)``: ``x`` of shape ``(784, 1)`` (pixels / 255 in ``dtype``, in
    permuted order when a permutation is given), ``y`` an int64 scalar label. A DataLoader
    batches them to ``(B, 784, 1)`` (batch first); :meth:`batches` does the same without one,
    converting a whole batch at once.

    Args:
        images: uint8 tensor ``(N, rows, cols)`` (or ``(N, rows·cols)``).
        labels: integer tensor ``(N,)``.
        permutation: optional int64 tensor ``(rows·cols,)``: step ``t`` of a sequence is pixel
            ``permutation[t]`` of the row-major flattened image.
        dtype: floating dtype of the sequences (default float32).

    Attributes:
        sequences: uint8 tensor ``(N, T)`` in sequence order; ``labels``: int64 ``(N,)``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        permutation: Tensor | None = None,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() < 2:
            got = (
                f"{images.dtype} {tuple(images.shape)}"
                if isinstance(images, Tensor)
                else type(images).__name__
            )
            raise ValidationError("images", "a uint8 tensor (N, rows, cols)", got)
        n = images.shape[0]
        if not isinstance(labels, Tensor) or labels.shape != (n,):
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValidationError("labels", f"a tensor of shape ({n},)", got)
        flat = images.reshape(n, -1)
        steps = flat.shape[1]
        if permutation is not None:
            if not isinstance(permutation, Tensor):
                permutation = torch.as_tensor(np.asarray(permutation))
            ok = permutation.shape == (steps,) and torch.equal(
                torch.sort(permutation.to(torch.int64)).values, torch.arange(steps)
            )
            if not ok:
                raise ValidationError(
                    "permutation", f"a permutation of 0..{steps - 1}", tuple(permutation.shape)
                )
            permutation = permutation.to(torch.int64)
            flat = flat[:, permutation]
        self.sequences = flat.contiguous()
        self.labels = labels.to(torch.int64)
        self.permutation = permutation
        self.dtype = check_float_dtype(dtype)

    def __len__(self) -> int:
        return self.sequences.shape[0]

    def _convert(self, seq: Tensor) -> Tensor:
        return (seq.to(self.dtype) / 255.0).unsqueeze(-1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self._convert(self.sequences[index]), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
        """Batched fetch used by DataLoader (converts the whole batch in one operation)."""
        x, y = self.batch(indices)
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Examples ``indices`` as ``(x (B, T, 1), y (B,))``."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self._convert(self.sequences[idx]), self.labels[idx]

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate over batches ``(x (B, T, 1), y (B,))`` without a DataLoader."""
        batch_size = check_int(batch_size, "batch_size")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])


class MNISTSplits(NamedTuple):
    """The three splits of (permuted) sequential MNIST or sequential Fashion-MNIST."""

    train: SequentialMNIST
    valid: SequentialMNIST
    test: SequentialMNIST


def sequential_mnist(
    root: str | os.PathLike | None = None,
    *,
    dataset: IDXDataset | str = MNIST,
    permute: bool = False,
    seed: int = 50,
    n_valid: int = 10000,
    dtype: torch.dtype = torch.float32,
) -> MNISTSplits:
    """Sequential MNIST (``permute=False``) or permuted sequential MNIST (``permute=True``);
    the same of Fashion-MNIST with ``dataset="fashion-mnist"``.

    The training set is reordered by ``psmnist_permutations(seed)[0]``; of it the first
    ``60000 − n_valid`` examples train and the last ``n_valid`` validate; the official test
    set tests. With ``permute`` the pixels follow ``psmnist_permutations(seed)[1]``.

    Args:
        root, dataset: as in :func:`mnist_files`.
        permute: apply the pixel permutation.
        seed: the RandomState seed (protocol: 50).
        n_valid: size of the validation split (protocol: 10,000).
        dtype: floating dtype of the sequences.

    Returns:
        :class:`MNISTSplits` ``(train, valid, test)``; each item is ``(x (784, 1), y)``.
    """
    train_images, train_labels = load_mnist("train", root=root, dataset=dataset)
    test_images, test_labels = load_mnist("test", root=root, dataset=dataset)
    n_train = train_images.shape[0]
    n_valid = check_int(n_valid, "n_valid", minimum=0)
    if n_valid >= n_train:
        raise ValidationError("n_valid", f"an integer < {n_train}", n_valid)
    order, pixels = psmnist_permutations(
        seed, n_train, train_images.shape[1] * train_images.shape[2]
    )
    perm = pixels if permute else None
    first, rest = order[: n_train - n_valid], order[n_train - n_valid :]
    return MNISTSplits(
        SequentialMNIST(train_images[first], train_labels[first], perm, dtype=dtype),
        SequentialMNIST(train_images[rest], train_labels[rest], perm, dtype=dtype),
        SequentialMNIST(test_images, test_labels, perm, dtype=dtype),
    )


def permuted_sequential_mnist(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 50,
    n_valid: int = 10000,
    dtype: torch.dtype = torch.float32,
) -> MNISTSplits:
    """Permuted sequential MNIST with the LMU paper's protocol (see :func:`sequential_mnist`)."""
    return sequential_mnist(root, permute=True, seed=seed, n_valid=n_valid, dtype=dtype)
