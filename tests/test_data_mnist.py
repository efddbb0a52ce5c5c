"""MNIST loading (local, checksummed) and (permuted) sequential MNIST on the real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from torchlmu.data import (
    MNIST_FILES,
    ChecksumError,
    DataNotFoundError,
    SequentialMNIST,
    default_data_dir,
    file_sha1,
    find_mnist,
    load_mnist,
    permuted_sequential_mnist,
    psmnist_permutations,
    sequential_mnist,
)
from torchlmu.exceptions import ValidationError

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f.name).is_file() for f in MNIST_FILES.values()),
    reason=f"MNIST files not found in {MNIST_DIR}",
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # SOURCE.md


@pytest.fixture(scope="module")
def splits():
    return permuted_sequential_mnist(MNIST_DIR)


@pytest.fixture(scope="module")
def train_raw():
    return load_mnist("train", root=MNIST_DIR)


@needs_mnist
def test_shipped_files_match_the_known_digests():
    for spec in MNIST_FILES.values():
        assert file_sha1(MNIST_DIR / spec.name) in spec.sha1, spec.name


@needs_mnist
def test_load_train_split(train_raw):
    images, labels = train_raw
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(labels.long(), minlength=10).tolist() == TRAIN_COUNTS
    mean = images.double().mean().item() / 255
    assert mean == pytest.approx(0.1307, abs=5e-5)


@needs_mnist
def test_psmnist_protocol(splits, train_raw):
    images, labels = train_raw
    rng = np.random.RandomState(50)  # the protocol, stated independently of the library
    order = rng.permutation(60000)
    pixels = rng.permutation(784)
    got_order, got_pixels = psmnist_permutations(50)
    assert np.array_equal(got_order.numpy(), order) and np.array_equal(got_pixels.numpy(), pixels)

    train, valid, test = splits
    assert (len(train), len(valid), len(test)) == (50000, 10000, 10000)
    flat = images.reshape(60000, 784)
    for i in (0, 1, 49999):
        assert torch.equal(train.sequences[i], flat[order[i]][pixels])
        assert train.labels[i].item() == labels[order[i]].item()
    for j in (0, 9999):
        assert torch.equal(valid.sequences[j], flat[order[50000 + j]][pixels])
    # train and valid partition the training set; together they have its class counts
    counts = torch.bincount(torch.cat([train.labels, valid.labels]), minlength=10)
    assert counts.tolist() == TRAIN_COUNTS
    # the test set is the official one with the same pixel permutation
    test_images, test_labels = load_mnist("test", root=MNIST_DIR)
    x, y = test[0]
    assert x.shape == (784, 1) and x.dtype == torch.float32 and y.item() == 7
    restored = torch.empty(784)
    restored[torch.from_numpy(pixels)] = x[:, 0]
    assert torch.allclose(restored.reshape(28, 28), test_images[0].float() / 255)
    assert torch.equal(test.labels, test_labels.long())


@needs_mnist
def test_sequences_are_scaled_pixels(splits):
    xb, yb = splits.train.batch(range(64))
    assert xb.shape == (64, 784, 1) and yb.shape == (64,) and yb.dtype == torch.int64
    assert xb.min().item() == 0.0 and xb.max().item() == 1.0
    raw = splits.train.sequences[:64].float() / 255
    assert torch.equal(xb[..., 0], raw)
    assert splits.train.sequences.dtype == torch.uint8  # stored compactly


@needs_mnist
def test_batching_with_and_without_dataloader(splits):
    valid = splits.valid
    loader = DataLoader(valid, batch_size=100, shuffle=False)
    xb, yb = next(iter(loader))
    assert xb.shape == (100, 784, 1) and yb.shape == (100,)
    x0, y0 = valid[0]
    assert torch.equal(xb[0], x0) and yb[0] == y0
    batches = list(valid.batches(3000, drop_last=True))
    assert len(batches) == 3 and batches[0][0].shape == (3000, 784, 1)
    assert sum(b[0].shape[0] for b in valid.batches(3000)) == 10000
    g = torch.Generator().manual_seed(0)
    shuffled = next(valid.batches(10000, shuffle=True, generator=g))[1]
    assert not torch.equal(shuffled, valid.labels)
    assert torch.equal(torch.sort(shuffled).values, torch.sort(valid.labels).values)


@needs_mnist
def test_plain_sequential_mnist_and_other_seed(train_raw):
    plain = sequential_mnist(MNIST_DIR, n_valid=10000)
    images, _ = train_raw
    order, _ = psmnist_permutations(50)
    assert torch.equal(plain.train.sequences[5], images[order[5]].reshape(784))
    other = permuted_sequential_mnist(MNIST_DIR, seed=7, n_valid=5000)
    assert (len(other.train), len(other.valid)) == (55000, 5000)
    order7, pixels7 = psmnist_permutations(7)
    assert not torch.equal(order7, order)
    assert torch.equal(other.valid.sequences[0], images[order7[55000]].reshape(784)[pixels7])


@needs_mnist
def test_local_corruption_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHLMU_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError, match=r"TORCHLMU_DATA.*torchvision") as e:
        load_mnist("test")
    assert str(tmp_path / "empty" / "mnist") in str(e.value)  # every folder searched is named
    for spec in MNIST_FILES.values():
        (tmp_path / spec.name).symlink_to(MNIST_DIR / spec.name)
    name = MNIST_FILES["test_labels"].name
    (tmp_path / name).unlink()
    shutil.copy(MNIST_DIR / name, tmp_path / name)
    assert load_mnist("test", root=tmp_path)[1].shape == (10000,)
    data = bytearray((tmp_path / name).read_bytes())
    data[100] ^= 1
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="763e7fa3757d93b0cdec073cef058b2004252c17"):
        load_mnist("test", root=tmp_path)


@needs_mnist
def test_search_order(tmp_path, monkeypatch):
    """root alone; else $TORCHLMU_DATA (the files, or its mnist folder) alone; else the cache;
    then the folders the caller adds."""
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for spec in MNIST_FILES.values():
        (data / "mnist" / spec.name).symlink_to(MNIST_DIR / spec.name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHLMU_DATA", str(data))
    assert find_mnist() == data / "mnist"
    monkeypatch.setenv("TORCHLMU_DATA", str(data / "mnist"))
    assert find_mnist() == data / "mnist"
    assert find_mnist(MNIST_DIR) == MNIST_DIR  # root first
    with pytest.raises(DataNotFoundError):  # an explicit folder: no fallback
        find_mnist(tmp_path / "nowhere", also=[MNIST_DIR])
    with pytest.raises(DataNotFoundError, match="nowhere"):
        find_mnist(tmp_path / "nowhere")  # a root given is the only place looked at
    monkeypatch.delenv("TORCHLMU_DATA")
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "cache")):
        find_mnist()
    assert find_mnist(also=[MNIST_DIR]) == MNIST_DIR


def test_default_folder_and_argument_checks(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHLMU_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "torchlmu" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "torchlmu" / "mnist"
    with pytest.raises(ValidationError, match="split"):
        load_mnist("valid", root=tmp_path)
    with pytest.raises(ValidationError, match="permutation"):
        SequentialMNIST(torch.zeros(2, 2, 2, dtype=torch.uint8), torch.zeros(2), torch.ones(4))
    with pytest.raises(ValidationError, match="images"):
        SequentialMNIST(torch.zeros(2, 2, 2), torch.zeros(2))
