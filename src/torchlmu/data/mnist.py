"""MNIST and Fashion-MNIST: checksummed local files, optional download, (permuted) sequential MNIST.

Where files are looked for (each of the four files separately, first hit wins):

1. ``root`` when given (the four files directly in that folder); otherwise
2. ``$TORCHLMU_DATA/<dataset>`` if the environment variable is set, else
   ``$XDG_CACHE_HOME/torchlmu/<dataset>`` or ``~/.cache/torchlmu/<dataset>``;
3. system folders: Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST in
   ``/usr/share/datasets/fashion-mnist``.

Every file is checked against known digests before use. With ``download=True`` missing files are
fetched from the mirrors into ``root`` (or the folder of step 2), atomically and verified.

Permuted sequential MNIST follows the LMU paper, which took it from the NRU code base:
``rng = numpy.random.RandomState(50)``; ``order = rng.permutation(60000)`` orders the training
set, then ``perm = rng.permutation(784)`` permutes the pixels of every image (flattened
row-major). Of the ordered training set the first 50,000 images train and the last 10,000
validate; the official 10,000 test images test. Pixels are divided by 255 and every image is a
sequence of 784 steps with 1 feature. Plain sequential MNIST uses the same order and splits
without the pixel permutation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..exceptions import ValidationError
from ._checks import check_float_dtype, check_int
from .download import DataNotFoundError, FileSpec, download_file, verify_file
from .idx import read_idx_images, read_idx_labels

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "MNISTSpec",
    "MNISTSplits",
    "SequentialMNIST",
    "default_data_dir",
    "load_mnist",
    "mnist_files",
    "permuted_sequential_mnist",
    "psmnist_permutations",
    "sequential_mnist",
]

#: Environment variable naming the root folder of torchlmu's data sets.
ENV_DATA_DIR = "TORCHLMU_DATA"

_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class MNISTSpec:
    """An MNIST-format data set: its four files, download mirrors and system folders."""

    name: str
    files: dict[str, FileSpec]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()


#: Known data sets. MNIST's digests are those of the original distribution files (LeCun,
#: Cortes & Burges). Fashion-MNIST (Zalando) accepts its upstream files (published MD5) and
#: Debian's recompressed copies (SHA-1 of package dataset-fashion-mnist 0.0~git20200523).
DATASETS: dict[str, MNISTSpec] = {
    "mnist": MNISTSpec(
        name="mnist",
        files={
            "train_images": FileSpec(
                "train-images-idx3-ubyte.gz",
                sha1=("6c95f4b05d2bf285e1bfb0e7960c31bd3b3f8a7d",),
                md5=("f68b3c2dcbeaaa9fbdd348bbdeb94873",),
            ),
            "train_labels": FileSpec(
                "train-labels-idx1-ubyte.gz",
                sha1=("2a80914081dc54586dbdf242f9805a6b8d2a15fc",),
                md5=("d53e105ee54ea40749a09fcbcd1e9432",),
            ),
            "test_images": FileSpec(
                "t10k-images-idx3-ubyte.gz",
                sha1=("c3a25af1f52dad7f726cce8cacb138654b760d48",),
                md5=("9fb629c4189551a2d022fa330f9573f3",),
            ),
            "test_labels": FileSpec(
                "t10k-labels-idx1-ubyte.gz",
                sha1=("763e7fa3757d93b0cdec073cef058b2004252c17",),
                md5=("ec29112dd5afa0611ce80d1b7f02629c",),
            ),
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    "fashion-mnist": MNISTSpec(
        name="fashion-mnist",
        files={
            "train_images": FileSpec(
                "train-images-idx3-ubyte.gz",
                sha1=("f3b839f14745c4e79b8fd3c612c99de71320e861",),
                md5=("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
            ),
            "train_labels": FileSpec(
                "train-labels-idx1-ubyte.gz",
                sha1=("f4909103fbdc4fa0d25c24c0ef242affd5e6311d",),
                md5=("25c81989df183df01b3e8a0aad5dffbe",),
            ),
            "test_images": FileSpec(
                "t10k-images-idx3-ubyte.gz",
                sha1=("5273a894aa97b4c0880e0d709e6afbdc770d05e3",),
                md5=("bef4ecab320f06d8554ea6380940ec79",),
            ),
            "test_labels": FileSpec(
                "t10k-labels-idx1-ubyte.gz",
                sha1=("9317cfa0b855692f9538dd9e8821f97222088aa9",),
                md5=("bb300cfdad3c16e7a12a480ee83cd310",),
            ),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


def _spec(dataset: str) -> MNISTSpec:
    if dataset not in DATASETS:
        raise ValidationError("dataset", f"one of {tuple(DATASETS)}", repr(dataset))
    return DATASETS[dataset]


def default_data_dir(dataset: str = "mnist") -> Path:
    """The default folder of a data set: ``$TORCHLMU_DATA/<dataset>``, else the user cache
    (``$XDG_CACHE_HOME/torchlmu/<dataset>``, default ``~/.cache/torchlmu/<dataset>``)."""
    _spec(dataset)
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser() / dataset
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "torchlmu" / dataset


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValidationError("split", "'train' or 'test'", repr(split))
    return split


def mnist_files(
    dataset: str = "mnist",
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    keys: Sequence[str] = _KEYS,
) -> dict[str, Path]:
    """Locate (and optionally download) a data set's files, each verified by checksum.

    Args:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        root: folder holding the files; ``None`` searches the default folder
            (:func:`default_data_dir`) and then the system folders.
        download: fetch missing files into ``root`` (or the default folder).
        mirrors: base URLs to try in order (file names are appended); default: the data
            set's known mirrors.
        timeout: seconds any network operation may wait.
        keys: which files: any of ``"train_images"``, ``"train_labels"``, ``"test_images"``,
            ``"test_labels"`` (default: all four).

    Returns:
        ``{key: path}`` of verified files.

    Raises:
        DataNotFoundError: a file is missing and ``download`` is False.
        ChecksumError: a local file does not match its known digests.
        DownloadError: a download failed (nothing is left behind).
    """
    spec = _spec(dataset)
    for key in keys:
        if key not in spec.files:
            raise ValidationError("keys", f"a subset of {_KEYS}", repr(key))
    target = Path(root).expanduser() if root is not None else default_data_dir(dataset)
    search = [target] if root is not None else [target, *map(Path, spec.system_dirs)]
    if mirrors is None:
        mirrors = spec.mirrors
    elif isinstance(mirrors, str) or not all(isinstance(m, str) for m in mirrors) or not mirrors:
        raise ValidationError("mirrors", "a non-empty sequence of base URLs", repr(mirrors))
    found: dict[str, Path] = {}
    for key in keys:
        fspec = spec.files[key]
        path = next((d / fspec.name for d in search if (d / fspec.name).is_file()), None)
        if path is None:
            if not download:
                raise DataNotFoundError(
                    f"{dataset} file {fspec.name} not found in "
                    + ", ".join(str(d) for d in search)
                    + f"; pass download=True, or put the file there, or set ${ENV_DATA_DIR}"
                )
            urls = [m if m.endswith("/") else m + "/" for m in mirrors]
            path = download_file(
                [u + fspec.name for u in urls], target / fspec.name, spec=fspec, timeout=timeout
            )
        verify_file(path, fspec)
        found[key] = path
    return found


def load_mnist(
    split: str = "train",
    *,
    dataset: str = "mnist",
    root: str | os.PathLike | None = None,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> tuple[Tensor, Tensor]:
    """Load one split of MNIST or Fashion-MNIST as uint8 tensors.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        dataset, root, download, mirrors, timeout: as in :func:`mnist_files`.

    Returns:
        ``(images, labels)``: uint8 tensors of shapes ``(N, 28, 28)`` and ``(N,)``.
    """
    split = _check_split(split)
    files = mnist_files(
        dataset,
        root,
        download=download,
        mirrors=mirrors,
        timeout=timeout,
        keys=(f"{split}_images", f"{split}_labels"),
    )
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
    """The three splits of (permuted) sequential MNIST."""

    train: SequentialMNIST
    valid: SequentialMNIST
    test: SequentialMNIST


def sequential_mnist(
    root: str | os.PathLike | None = None,
    *,
    dataset: str = "mnist",
    permute: bool = False,
    seed: int = 50,
    n_valid: int = 10000,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    dtype: torch.dtype = torch.float32,
) -> MNISTSplits:
    """Sequential MNIST (``permute=False``) or permuted sequential MNIST (``permute=True``).

    The training set is reordered by ``psmnist_permutations(seed)[0]``; of it the first
    ``60000 − n_valid`` examples train and the last ``n_valid`` validate; the official test
    set tests. With ``permute`` the pixels follow ``psmnist_permutations(seed)[1]``.

    Args:
        root, dataset, download, mirrors, timeout: as in :func:`mnist_files`.
        permute: apply the pixel permutation.
        seed: the RandomState seed (protocol: 50).
        n_valid: size of the validation split (protocol: 10,000).
        dtype: floating dtype of the sequences.

    Returns:
        :class:`MNISTSplits` ``(train, valid, test)``; each item is ``(x (784, 1), y)``.
    """
    train_images, train_labels = load_mnist(
        "train", dataset=dataset, root=root, download=download, mirrors=mirrors, timeout=timeout
    )
    test_images, test_labels = load_mnist(
        "test", dataset=dataset, root=root, download=download, mirrors=mirrors, timeout=timeout
    )
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
    dataset: str = "mnist",
    seed: int = 50,
    n_valid: int = 10000,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    dtype: torch.dtype = torch.float32,
) -> MNISTSplits:
    """Permuted sequential MNIST with the LMU paper's protocol (see :func:`sequential_mnist`)."""
    return sequential_mnist(
        root,
        dataset=dataset,
        permute=True,
        seed=seed,
        n_valid=n_valid,
        download=download,
        mirrors=mirrors,
        timeout=timeout,
        dtype=dtype,
    )
