"""Data files identified by checksum.

torchlmu reads data sets from local files only and never downloads: a file is accepted when
its SHA-1 digest is one of the known ones. (To fetch MNIST, ``torchvision.datasets.MNIST(root,
download=True)`` leaves the four ``.gz`` files in ``root/MNIST/raw``; any copy of the original
files does. Fashion-MNIST: the Debian package ``dataset-fashion-mnist`` installs its files in
``/usr/share/datasets/fashion-mnist``, or any copy of Zalando's original files.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from ..exceptions import TorchLMUError, ValidationError

__all__ = ["ChecksumError", "DataNotFoundError", "FileSpec", "file_sha1", "verify_file"]


class ChecksumError(ValidationError):
    """A file's content does not match any of its known checksums."""


class DataNotFoundError(TorchLMUError, FileNotFoundError):
    """A data file is not present where it was looked for."""


@dataclass(frozen=True)
class FileSpec:
    """A file and the SHA-1 digests of its accepted versions.

    Attributes:
        name: the file name.
        sha1: accepted SHA-1 hex digests (several when equal content circulates in several
            compressions).
    """

    name: str
    sha1: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.sha1:
            raise ValidationError("FileSpec.sha1", "at least one SHA-1 digest", "none")


def file_sha1(path: str | os.PathLike) -> str:
    """SHA-1 hex digest of the file at ``path``."""
    sha1 = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha1.update(chunk)
    return sha1.hexdigest()


def verify_file(path: str | os.PathLike, spec: FileSpec) -> None:
    """Raise :class:`ChecksumError` unless the file at ``path`` matches ``spec``."""
    digest = file_sha1(path)
    if digest not in spec.sha1:
        raise ChecksumError(
            f"checksum of {os.fspath(path)}",
            "SHA-1 " + " or ".join(spec.sha1),
            f"SHA-1 {digest}",
            hint="the file is damaged or not the expected one; replace it with a good copy",
        )
