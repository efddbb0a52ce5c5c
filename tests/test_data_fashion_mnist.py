"""Fashion-MNIST: the search for its folder (with stand-in files, always run) and sequential
Fashion-MNIST on the real files (skipped where they are not found, e.g. without the Debian
package dataset-fashion-mnist)."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_fashion_mnist

from torchlmu.data import (
    FASHION_MNIST,
    FASHION_MNIST_FILES,
    MNIST_FILES,
    ChecksumError,
    DataNotFoundError,
    dataset_spec,
    file_sha1,
    find_mnist,
    load_mnist,
    mnist_files,
    sequential_mnist,
)
from torchlmu.exceptions import ValidationError
from torchlmu.experiments import psmnist

# Published facts (Zalando's README and paper: 6,000 training and 1,000 test images per class;
# the first training and test labels as every Fashion-MNIST tutorial prints them; the training
# pixels' mean and standard deviation, the normalisation constants in common use).
TRAIN_LABELS_START = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
TEST_LABELS_START = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


@pytest.fixture(scope="module")
def folder():
    return psmnist.data_root(None, "fashion-mnist")


@pytest.fixture(scope="module")
def train_raw(folder):
    return load_mnist("train", root=folder, dataset="fashion-mnist")


@pytest.fixture(scope="module")
def splits(folder):
    return sequential_mnist(folder, dataset="fashion-mnist")


def _stand_ins(folder, files=FASHION_MNIST_FILES):
    """Empty files of the four names (the search looks at names only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for spec in files.values():
        (folder / spec.name).touch()


def test_search_order_and_the_message_naming_every_folder(tmp_path, monkeypatch):
    """root alone; else $TORCHLMU_DATA/fashion-mnist, then $TORCHLMU_DATA itself, alone; else the
    user cache, then /usr/share/datasets/fashion-mnist (here a stand-in), then the caller's."""
    monkeypatch.delenv("TORCHLMU_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    spec = replace(FASHION_MNIST, system_dirs=(str(system),))
    cache = tmp_path / "cache" / "torchlmu" / "fashion-mnist"
    extra = tmp_path / "extra"
    with pytest.raises(DataNotFoundError) as e:
        find_mnist(also=[extra], dataset=spec)
    msg = str(e.value)
    assert msg.startswith("Fashion-MNIST: expected its four IDX files")
    for d in (cache, system, extra):  # every folder searched, in order
        assert str(d) in msg
    assert msg.index(str(cache)) < msg.index(str(system)) < msg.index(str(extra))
    assert "dataset-fashion-mnist" in msg and "\n" not in msg
    _stand_ins(extra)
    assert find_mnist(also=[extra], dataset=spec) == extra
    _stand_ins(system)
    assert find_mnist(also=[extra], dataset=spec) == system
    _stand_ins(cache)
    assert find_mnist(also=[extra], dataset=spec) == cache
    assert find_mnist(extra, dataset=spec) == extra  # root first
    with pytest.raises(DataNotFoundError, match="nowhere") as e:  # and alone
        find_mnist(tmp_path / "nowhere", also=[extra], dataset=spec)
    assert str(cache) not in str(e.value) and "dataset-fashion-mnist" in str(e.value)
    # $TORCHLMU_DATA: its fashion-mnist folder before the files in it (which may be MNIST's,
    # of the same names), and nothing else
    data = tmp_path / "data"
    _stand_ins(data, MNIST_FILES)
    monkeypatch.setenv("TORCHLMU_DATA", str(data))
    assert find_mnist(dataset=spec) == data
    _stand_ins(data / "fashion-mnist")
    assert find_mnist(dataset=spec) == data / "fashion-mnist"
    assert find_mnist(dataset="mnist") == data  # MNIST's folder: mnist/, else the files
    monkeypatch.setenv("TORCHLMU_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError) as e:
        find_mnist(also=[extra], dataset=spec)
    msg = str(e.value)
    assert str(tmp_path / "empty" / "fashion-mnist") in msg and str(cache) not in msg
    assert str(system) not in msg and str(extra) not in msg


def test_the_dataset_argument_is_checked():
    assert dataset_spec("fashion-mnist") is FASHION_MNIST and dataset_spec(FASHION_MNIST) is (
        FASHION_MNIST
    )
    assert FASHION_MNIST.system_dirs == ("/usr/share/datasets/fashion-mnist",)
    with pytest.raises(ValidationError, match="dataset"):
        find_mnist(dataset="fashion")
    with pytest.raises(ValidationError, match="dataset"):
        sequential_mnist(dataset="kmnist")


@needs_fashion_mnist
def test_files_match_the_known_digests(folder):
    for spec in FASHION_MNIST_FILES.values():
        assert file_sha1(folder / spec.name) in spec.sha1, spec.name
    assert set(mnist_files(folder, dataset="fashion-mnist")) == set(FASHION_MNIST_FILES)


@needs_fashion_mnist
def test_load_train_and_test(train_raw, folder):
    images, labels = train_raw
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.uint8
    assert labels[:10].tolist() == TRAIN_LABELS_START
    assert torch.bincount(labels.long(), minlength=10).tolist() == [6000] * 10
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    pixels = images.double() / 255
    assert pixels.mean().item() == pytest.approx(0.2860, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.3530, abs=5e-5)
    test_images, test_labels = load_mnist("test", root=folder, dataset=FASHION_MNIST)
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    assert test_labels[:10].tolist() == TEST_LABELS_START
    assert torch.bincount(test_labels.long(), minlength=10).tolist() == [1000] * 10


@needs_fashion_mnist
def test_sequential_fashion_mnist_splits(splits, train_raw, folder):
    images, labels = train_raw
    order = np.random.RandomState(50).permutation(60000)  # the protocol, stated independently
    train, valid, test = splits
    assert (len(train), len(valid), len(test)) == (50000, 10000, 10000)
    flat = images.reshape(60000, 784)
    for i in (0, 1, 49999):
        assert torch.equal(train.sequences[i], flat[order[i]])  # raster order, no permutation
        assert train.labels[i].item() == labels[order[i]].item()
    for j in (0, 9999):
        assert torch.equal(valid.sequences[j], flat[order[50000 + j]])
    counts = torch.bincount(torch.cat([train.labels, valid.labels]), minlength=10)
    assert counts.tolist() == [6000] * 10  # train and valid partition the training set
    x, y = test[0]
    assert x.shape == (784, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.item() == TEST_LABELS_START[0]
    test_images, _ = load_mnist("test", root=folder, dataset="fashion-mnist")
    assert torch.equal(x[:, 0], test_images[0].reshape(784).float() / 255)
    xb, yb = valid.batch(range(64))
    assert xb.shape == (64, 784, 1) and yb.shape == (64,)
    assert xb.min().item() == 0.0 and xb.max().item() == 1.0
    assert int(valid.labels.min()) == 0 and int(valid.labels.max()) == 9
    same = sequential_mnist(folder, dataset=FASHION_MNIST, n_valid=5000)
    assert torch.equal(same.valid.sequences[0], flat[order[55000]])


@needs_fashion_mnist
def test_a_corrupted_copy_is_refused(folder, tmp_path):
    for spec in FASHION_MNIST_FILES.values():
        (tmp_path / spec.name).symlink_to(folder / spec.name)
    name = FASHION_MNIST_FILES["test_labels"].name
    (tmp_path / name).unlink()
    shutil.copy(folder / name, tmp_path / name)
    assert load_mnist("test", root=tmp_path, dataset="fashion-mnist")[1].shape == (10000,)
    data = bytearray((tmp_path / name).read_bytes())
    data[100] ^= 1
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=FASHION_MNIST_FILES["test_labels"].sha1[0]):
        load_mnist("test", root=tmp_path, dataset="fashion-mnist")
    # MNIST's digests are not Fashion-MNIST's: its files are refused under the other name
    with pytest.raises(ChecksumError, match=MNIST_FILES["test_images"].sha1[0]):
        load_mnist("test", root=folder, dataset="mnist")


@needs_fashion_mnist
def test_both_digests_are_of_zalandos_original_files(folder):
    """The first SHA-1 of each file is of Zalando's original (its MD5 the README's), the second
    of the Debian package's copy; tools/fashion_mnist_provenance.py rebuilds the original from
    either, and the rebuilt file has the first digest and the README's MD5."""
    path = Path(__file__).resolve().parents[1] / "tools" / "fashion_mnist_provenance.py"
    spec = importlib.util.spec_from_file_location("fashion_mnist_provenance", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for key, file in FASHION_MNIST_FILES.items():
        md5, mtime = tool.ORIGINAL[file.name]
        original = tool.rebuild((folder / file.name).read_bytes(), file.name, mtime)
        assert hashlib.md5(original).hexdigest() == md5, key
        assert hashlib.sha1(original).hexdigest() == file.sha1[0], key
        assert file_sha1(folder / file.name) in file.sha1, key
