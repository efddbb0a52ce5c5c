"""Reader for the IDX file format of MNIST and Fashion-MNIST (gzip-compressed or raw).

An IDX file starts with a 4-byte magic number ``0x00 0x00 TYPE NDIM``, followed by NDIM
big-endian uint32 dimension sizes and then the data in C order, big-endian. TYPE is one of
0x08 (uint8), 0x09 (int8), 0x0B (int16), 0x0C (int32), 0x0D (float32), 0x0E (float64).
MNIST's image files have magic 2051 (uint8, 3 dims), its label files 2049 (uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ..exceptions import ValidationError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx", "read_idx_images", "read_idx_labels"]

#: Magic number of an IDX file of uint8 images (N, rows, cols).
IDX_IMAGES_MAGIC = 2051
#: Magic number of an IDX file of uint8 labels (N,).
IDX_LABELS_MAGIC = 2049

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

PathOrFile = str | os.PathLike | BinaryIO


def _read_bytes(source: PathOrFile) -> tuple[bytes, str]:
    """The (decompressed) content of ``source`` and a name for messages."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with open(name, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ValidationError("path", "a readable IDX file", repr(name), hint=str(e)) from e
    elif hasattr(source, "read"):
        name = getattr(source, "name", "<file object>")
        raw = source.read()
        if not isinstance(raw, (bytes, bytearray)):
            raise ValidationError("source", "a file opened in binary mode", type(raw).__name__)
    else:
        raise ValidationError("source", "a path or a binary file object", type(source).__name__)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
                raw = g.read()
        except (EOFError, OSError, zlib.error) as e:
            raise ValidationError(
                "path", "a complete gzip stream", f"a damaged gzip file {name!r}", hint=str(e)
            ) from e
    return bytes(raw), str(name)


def read_idx(source: PathOrFile, *, expected_magic: int | None = None) -> Tensor:
    """Read an IDX file (raw or gzip-compressed, detected from its first bytes).

    Args:
        source: a path or a binary file object.
        expected_magic: if given, the magic number the file must have (e.g. 2051 for images).

    Returns:
        A tensor with the file's shape and dtype (uint8 for MNIST), in native byte order.
    """
    data, name = _read_bytes(source)
    if len(data) < 4:
        raise ValidationError("path", "an IDX file (at least 4 header bytes)", f"{len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or type_code not in _TYPES or ndim == 0:
        raise ValidationError(
            "path",
            "an IDX file (magic 0x0000TTDD with a known type TT)",
            f"magic {magic} (0x{magic:08x}) in {name!r}",
        )
    if expected_magic is not None and magic != expected_magic:
        raise ValidationError(
            "path", f"an IDX file with magic {expected_magic}", f"magic {magic} in {name!r}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValidationError("path", f"{header} header bytes", f"{len(data)} in {name!r}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = _TYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValidationError(
            "path",
            f"{expected} data bytes for shape {tuple(dims)}",
            f"{len(data) - header} in {name!r}",
            hint="the file is truncated" if len(data) - header < expected else "trailing bytes",
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    arr = arr.astype(dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(arr)


def read_idx_images(source: PathOrFile) -> Tensor:
    """Read an IDX image file (magic 2051): uint8 tensor of shape ``(N, rows, cols)``."""
    x = read_idx(source, expected_magic=IDX_IMAGES_MAGIC)
    if x.dim() != 3:
        raise ValidationError("path", "an image file with 3 dimensions", f"shape {tuple(x.shape)}")
    return x


def read_idx_labels(source: PathOrFile) -> Tensor:
    """Read an IDX label file (magic 2049): uint8 tensor of shape ``(N,)``."""
    return read_idx(source, expected_magic=IDX_LABELS_MAGIC)
