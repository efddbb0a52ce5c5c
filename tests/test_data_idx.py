"""IDX reader: real MNIST test files and synthetic files of every kind of damage."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from torchlmu.data import read_idx, read_idx_images, read_idx_labels
from torchlmu.exceptions import ValidationError

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"MNIST files not found in {MNIST_DIR}",
)


def _idx_bytes(array: np.ndarray, type_code: int, big_endian_dtype: str) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian_dtype).tobytes()


@needs_mnist
def test_reads_the_mnist_test_set():
    images = read_idx_images(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx_labels(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.uint8
    # Published facts of the test set (SOURCE.md): first labels and class counts.
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = torch.bincount(labels.long(), minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.max().item() == 255 and images.min().item() == 0


@needs_mnist
def test_raw_and_gzip_files_and_file_objects_agree(tmp_path):
    raw = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "labels").write_bytes(raw)
    a = read_idx_labels(tmp_path / "labels")
    b = read_idx_labels(str(MNIST_DIR / "t10k-labels-idx1-ubyte.gz"))
    c = read_idx(io.BytesIO(raw))
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize(
    ("type_code", "dtype", "torch_dtype"),
    [
        (0x08, ">u1", torch.uint8),
        (0x09, ">i1", torch.int8),
        (0x0B, ">i2", torch.int16),
        (0x0C, ">i4", torch.int32),
        (0x0D, ">f4", torch.float32),
        (0x0E, ">f8", torch.float64),
    ],
)
def test_every_idx_type_round_trips(type_code, dtype, torch_dtype):
    values = np.arange(-3, 21).reshape(2, 3, 4)
    if dtype == ">u1":
        values = values + 3
    data = _idx_bytes(values, type_code, dtype)
    out = read_idx(io.BytesIO(gzip.compress(data)))
    assert out.dtype == torch_dtype and out.shape == (2, 3, 4)
    assert np.array_equal(out.numpy(), values.astype(dtype))


def test_wrong_magic_is_named(tmp_path):
    labels = _idx_bytes(np.zeros(5, dtype=np.uint8), 0x08, ">u1")
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(labels))
    with pytest.raises(ValidationError, match=r"magic 2051.*received magic 2049"):
        read_idx_images(path)
    with pytest.raises(ValidationError, match="magic"):
        read_idx(io.BytesIO(b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(ValidationError, match="magic"):
        read_idx(io.BytesIO(b"\x00\x00\x07\x01\x00\x00\x00\x01x"))  # unknown type 0x07


def test_truncated_and_oversized_files(tmp_path):
    data = _idx_bytes(np.ones((4, 28, 28), dtype=np.uint8), 0x08, ">u1")
    with pytest.raises(ValidationError, match="truncated"):
        read_idx_images(io.BytesIO(data[:-1]))
    with pytest.raises(ValidationError, match="trailing"):
        read_idx_images(io.BytesIO(data + b"\x00"))
    with pytest.raises(ValidationError, match="header"):
        read_idx(io.BytesIO(data[:6]))
    with pytest.raises(ValidationError, match="gzip"):
        read_idx(io.BytesIO(gzip.compress(data)[:-20]))
    with pytest.raises(ValidationError, match="path"):
        read_idx(tmp_path / "missing.gz")
    with pytest.raises(ValidationError, match="source"):
        read_idx(12)  # type: ignore[arg-type]
