"""Show that the Debian package's Fashion-MNIST files are Zalando's original distribution.

Usage: ``python tools/fashion_mnist_provenance.py [DIR]`` (default
``/usr/share/datasets/fashion-mnist``, where ``dataset-fashion-mnist`` installs them).

Zalando's README publishes the MD5 of each original ``.gz`` file. The Debian copies have other
MD5s because their gzip header (RFC 1952) was rewritten: no FNAME field and the package's build
time as MTIME. Everything after the header (the deflate stream, the CRC-32 and length of the
content) is untouched, so writing the original header back (flags FNAME, the original MTIME,
XFL 0, OS 3 = Unix, the file name without ``.gz``) must give back the original file byte for
byte. The original MTIMEs are those of Zalando's files (the label files' headers, in Zalando's
git repository, read 2017-08-31 10:50:06 and 10:50:27 UTC; each image file carries its label
file's). The script prints, per file, the MD5 of the rebuilt file beside the README's, and the
SHA-1 of both versions (those in ``torchlmu.data.FASHION_MNIST_FILES``). Exit status 1 when an
MD5 differs.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

# name: (MD5 in Zalando's README, MTIME of Zalando's gzip header)
ORIGINAL = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 0x59A7E9DE),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 0x59A7E9DE),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 0x59A7E9F3),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 0x59A7E9F3),
}
FNAME = 0x08


def rebuild(data: bytes, name: str, mtime: int) -> bytes:
    """``data`` (a gzip file with a bare 10-byte header) with the original header written back;
    a file that has a file name in its header already is returned as it is."""
    if data[:3] != b"\x1f\x8b\x08" or data[3] not in (0, FNAME):
        raise SystemExit(f"{name}: not a gzip file with a bare header (flags {data[3]:#x})")
    if data[3] == FNAME:
        return data
    header = b"\x1f\x8b\x08" + bytes([FNAME]) + struct.pack("<I", mtime) + b"\x00\x03"
    return header + name.removesuffix(".gz").encode() + b"\x00" + data[10:]


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "/usr/share/datasets/fashion-mnist")
    ok = True
    for name, (md5, mtime) in ORIGINAL.items():
        data = (folder / name).read_bytes()
        original = rebuild(data, name, mtime)
        got = hashlib.md5(original).hexdigest()
        ok &= got == md5
        print(
            f"{name}: rebuilt MD5 {got} {'==' if got == md5 else '!='} README {md5}; "
            f"SHA-1 original {hashlib.sha1(original).hexdigest()}, "
            f"as found {hashlib.sha1(data).hexdigest()}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
