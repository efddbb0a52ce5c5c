"""Checksummed files and atomic downloads.

A download streams into a temporary file in the destination folder, hashing on the way; only a
complete file whose checksum matches is moved into place with :func:`os.replace` (atomic on one
file system). On any failure — network error, timeout, dropped connection, short body, checksum
mismatch — the temporary file is deleted and a :class:`DownloadError` says what happened, so a
failed download never leaves a partial or unverified file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import TorchLMUError, ValidationError
from ._checks import check_positive

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "DownloadError",
    "FileSpec",
    "download_file",
    "file_digests",
    "verify_file",
]

_CHUNK = 1 << 16


class ChecksumError(ValidationError):
    """A file's content does not match any of its known checksums."""


class DownloadError(TorchLMUError, OSError):
    """A file could not be downloaded (network error, timeout, dropped connection, bad checksum)."""


class DataNotFoundError(TorchLMUError, FileNotFoundError):
    """A data file is not present locally (and downloading was not requested)."""


@dataclass(frozen=True)
class FileSpec:
    """A file and the digests that identify its accepted versions.

    Attributes:
        name: the file name (also the last component of its URL on a mirror).
        sha1: accepted SHA-1 hex digests (several when equal content circulates in several
            compressions, e.g. Debian's recompressed copies).
        md5: accepted MD5 hex digests (for versions whose SHA-1 was never published).
    """

    name: str
    sha1: tuple[str, ...] = ()
    md5: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.sha1 and not self.md5:
            raise ValidationError("FileSpec", "at least one SHA-1 or MD5 digest", "none")

    def matches(self, digests: dict[str, str]) -> bool:
        """Whether ``digests`` (from :func:`file_digests`) identify an accepted version."""
        return digests["sha1"] in self.sha1 or digests["md5"] in self.md5

    def describe(self) -> str:
        parts = [f"SHA-1 {d}" for d in self.sha1] + [f"MD5 {d}" for d in self.md5]
        return " or ".join(parts)


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """SHA-1 and MD5 hex digests of a file: ``{"sha1": ..., "md5": ...}``."""
    sha1, md5 = hashlib.sha1(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha1.update(chunk)
            md5.update(chunk)
    return {"sha1": sha1.hexdigest(), "md5": md5.hexdigest()}


def verify_file(path: str | os.PathLike, spec: FileSpec) -> None:
    """Raise :class:`ChecksumError` unless the file at ``path`` matches ``spec``."""
    digests = file_digests(path)
    if not spec.matches(digests):
        raise ChecksumError(
            f"checksum of {os.fspath(path)}",
            spec.describe(),
            f"SHA-1 {digests['sha1']}",
            hint="the file is damaged or not the expected one; delete it and fetch it again",
        )


def _fetch_one(url: str, dest: Path, spec: FileSpec | None, timeout: float) -> None:
    """Download ``url`` into ``dest`` atomically; raise DownloadError on any failure."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        sha1, md5 = hashlib.sha1(), hashlib.md5()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    header = resp.headers.get("Content-Length")
                    expected = int(header) if header and header.isdigit() else None
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        sha1.update(chunk)
                        md5.update(chunk)
                        received += len(chunk)
            except urllib.error.HTTPError as e:
                raise DownloadError(f"{url}: HTTP error {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise DownloadError(f"{url}: cannot connect ({e.reason})") from e
            except TimeoutError as e:
                raise DownloadError(f"{url}: no data for {timeout:g} s (timed out)") from e
            except (OSError, ValueError) as e:  # reset connection, IncompleteRead, bad URL, ...
                raise DownloadError(
                    f"{url}: transfer failed after {received} bytes ({type(e).__name__}: {e})"
                ) from e
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and received != expected:
            raise DownloadError(
                f"{url}: connection closed after {received} of {expected} bytes (incomplete)"
            )
        if spec is not None:
            digests = {"sha1": sha1.hexdigest(), "md5": md5.hexdigest()}
            if not spec.matches(digests):
                raise DownloadError(
                    f"{url}: checksum mismatch: expected {spec.describe()}, "
                    f"received SHA-1 {digests['sha1']} ({received} bytes)"
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_file(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    spec: FileSpec | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download a file, trying each URL in turn, verifying it before it appears at ``dest``.

    Args:
        urls: one URL or several (mirrors), tried in order until one succeeds.
        dest: final path; its folder is created if needed. Written only once the whole file
            has arrived and matches ``spec``.
        spec: accepted checksums; ``None`` skips verification (not recommended).
        timeout: seconds any single network operation (connect, each read) may wait.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: every URL failed; the message lists each URL's reason.
    """
    timeout = check_positive(timeout, "timeout")
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list or not all(isinstance(u, str) and u for u in url_list):
        raise ValidationError("urls", "a URL or a non-empty sequence of URLs", repr(urls))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    for url in url_list:
        try:
            _fetch_one(url, dest, spec, timeout)
            return dest
        except DownloadError as e:
            reasons.append(str(e))
    raise DownloadError(
        f"could not download {dest.name}; no partial file was kept. Tried: " + "; ".join(reasons)
    )
