"""Downloads from a local HTTP server: success, mirrors, and every way a transfer can fail.

Each failure must raise a clear DownloadError quickly (short timeouts) and leave no file — neither
the destination nor a temporary part file — behind.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from torchlmu.data import (
    DATASETS,
    DownloadError,
    default_data_dir,
    download_file,
    file_digests,
    load_mnist,
    mnist_files,
)

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
pytestmark = pytest.mark.skipif(
    not all((MNIST_DIR / f.name).is_file() for f in DATASETS["mnist"].files.values()),
    reason=f"MNIST files not found in {MNIST_DIR}",
)
SPECS = DATASETS["mnist"].files
LABELS = SPECS["test_labels"]  # 4,542 bytes
IMAGES = SPECS["test_images"]  # 1,648,877 bytes


class _Handler(BaseHTTPRequestHandler):
    """GET /<mode>/<file name>; the mode picks the behaviour."""

    release: threading.Event

    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        mode, _, name = self.path.strip("/").partition("/")
        path = MNIST_DIR / name
        if mode == "missing" or not path.is_file():
            self.send_error(404)
            return
        if mode == "stall":  # accept the request, never answer
            self.release.wait(10)
            return
        data = path.read_bytes()
        if mode == "corrupt":  # same length, one byte changed
            data = (
                data[: len(data) // 2]
                + bytes([data[len(data) // 2] ^ 0xFF])
                + data[1 + len(data) // 2 :]
            )
        self.send_response(200)
        if mode != "nolength":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode in ("drop", "nolength"):  # half the body, then close the connection
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "stallbody":  # some bytes, then silence
            self.wfile.write(data[:1000])
            self.wfile.flush()
            self.release.wait(10)
            return
        self.wfile.write(data)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_writes_a_verified_file(server, tmp_path):
    dest = tmp_path / "sub" / IMAGES.name
    out = download_file(f"{server}/ok/{IMAGES.name}", dest, spec=IMAGES, timeout=5)
    assert out == dest and file_digests(dest)["sha1"] == IMAGES.sha1[0]
    assert _leftovers(dest.parent) == [IMAGES.name]


def test_falls_back_to_the_next_mirror(server, tmp_path):
    urls = [f"{server}/missing/{LABELS.name}", f"{server}/ok/{LABELS.name}"]
    download_file(urls, tmp_path / LABELS.name, spec=LABELS, timeout=5)
    assert _leftovers(tmp_path) == [LABELS.name]


@pytest.mark.parametrize(
    ("mode", "spec", "message"),
    [
        ("corrupt", LABELS, "checksum mismatch"),
        ("corrupt", IMAGES, "checksum mismatch"),
        ("drop", LABELS, "connection closed after 2271 of 4542 bytes"),
        ("drop", IMAGES, "connection closed after"),
        ("nolength", LABELS, "checksum mismatch"),
        ("missing", LABELS, "HTTP error 404"),
        ("stall", LABELS, "timed out"),
        ("stallbody", IMAGES, "timed out"),
    ],
)
def test_failures_are_clear_fast_and_leave_nothing(server, tmp_path, mode, spec, message):
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match=message) as info:
        download_file(f"{server}/{mode}/{spec.name}", tmp_path / spec.name, spec=spec, timeout=0.5)
    assert time.perf_counter() - t0 < 5
    assert spec.name in str(info.value) and "no partial file" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_offline_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "x", spec=LABELS, timeout=1)
    assert _leftovers(tmp_path) == []


def test_mnist_files_downloads_into_the_default_folder(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHLMU_DATA", str(tmp_path))
    target = default_data_dir("mnist")
    assert target == tmp_path / "mnist"
    mirrors = [f"{server}/missing/", f"{server}/ok"]
    files = mnist_files(download=True, mirrors=mirrors, timeout=5)
    assert sorted(p.name for p in files.values()) == _leftovers(target)
    assert len(files) == 4
    images, labels = load_mnist("test")  # now found locally, no download requested
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


def test_mnist_files_failed_download_leaves_no_file(server, tmp_path):
    with pytest.raises(DownloadError, match="checksum mismatch"):
        mnist_files(root=tmp_path, download=True, mirrors=[f"{server}/corrupt/"], timeout=5)
    assert _leftovers(tmp_path) == []
