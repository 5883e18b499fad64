"""Fashion-MNIST, EMNIST Letters and the clustering datasets (Chapter 5), on generated files, offline."""

import gzip

import numpy as np
import pytest
import torch
import torchvision

import objectcentric.data.fashion_mnist as fashion
import objectcentric.data.mnist as mnist
from objectcentric.data import DatasetUnavailableError, MNISTUnavailableError, load_dataset, prepare_mnist
from objectcentric.data.single_object import NUM_CLASSES


from test_data import NoNetwork, no_download  # noqa: F401  (autouse: MNIST's download, so Fashion-MNIST's, refused)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """EMNIST has a download of its own; and no Debian package is to be found."""

    def refuse(self):
        raise NoNetwork("network disabled in tests")

    monkeypatch.setattr(torchvision.datasets.EMNIST, "download", refuse)
    monkeypatch.setattr(fashion, "DEBIAN_FASHION_DIR", fashion.Path("/nonexistent/fashion-mnist"))


def idx_arrays(n_train, n_test, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    return {prefix: (rng.integers(0, 256, (n, 28, 28)), np.arange(n) % n_classes)
            for prefix, n in (("train", n_train), ("t10k", n_test))}


def write_gz(folder, arrays, names=None):
    """Gzipped idx files as published (what the Debian package and torchvision's download hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in arrays.items():
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            raw = folder / f"{prefix}-{kind}-ubyte"
            mnist._write_idx(raw, array)
            with open(raw, "rb") as f, gzip.open(folder / f"{(names or {}).get(raw.name, raw.name)}.gz", "wb") as g:
                g.write(f.read())
            raw.unlink()


def test_fashion_mnist_from_the_debian_package_folder(tmp_path, monkeypatch, capsys):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = idx_arrays(7, 4, 10)
    write_gz(debian, arrays)
    monkeypatch.setattr(fashion, "DEBIAN_FASHION_DIR", debian)
    root = tmp_path / "data"
    data = load_dataset("FashionMNIST", "train", root=root, download=False)
    assert "Debian" in capsys.readouterr().out
    assert data.images.shape == (7, 1, 28, 28) and data.images.dtype == torch.float32
    assert torch.equal(data.images[:, 0], torch.from_numpy(arrays["train"][0]).float() / 255)
    assert data.labels.tolist() == list(range(7)) and data.class_names[0] == "T-shirt/top"
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(mnist.RAW_FILES)
    test = load_dataset("FashionMNIST", "test", root=root, download=False)
    assert test.images.shape == (4, 1, 28, 28)


def test_gzipped_raw_files_are_unpacked_in_place_for_mnist_too(tmp_path):
    arrays = idx_arrays(6, 3, 10)
    write_gz(tmp_path / "MNIST" / "raw", arrays)
    assert prepare_mnist(tmp_path, download=False) == tmp_path
    images, labels = mnist.load_mnist("test", root=tmp_path, download=False)
    assert torch.equal(images[:, 0], torch.from_numpy(arrays["t10k"][0]).float() / 255)


@pytest.mark.parametrize("download", [True, False])
def test_missing_fashion_mnist_names_every_way_to_get_it(tmp_path, download):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("FashionMNIST", root=tmp_path, download=download)
    message = str(info.value)
    assert "dataset-fashion-mnist" in message and "internet" in message
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "OBJECTCENTRIC_DATA" in message
    assert all(name in message for name in mnist.RAW_FILES)
    if download:
        assert isinstance(info.value.__cause__, NoNetwork)
    assert issubclass(MNISTUnavailableError, DatasetUnavailableError)


def test_emnist_letters_are_turned_upright_and_labelled_from_zero(tmp_path):
    arrays = idx_arrays(5, 2, 26)
    arrays = {prefix: (images, labels + 1) for prefix, (images, labels) in arrays.items()}  # the files say 1-26
    names = {f"{prefix}-{kind}-ubyte": f"emnist-letters-{split}-{kind}-ubyte"
             for prefix, split in (("train", "train"), ("t10k", "test")) for kind in ("images-idx3", "labels-idx1")}
    write_gz(tmp_path / "EMNIST" / "raw", arrays, names)
    data = load_dataset("Letters", "train", root=tmp_path, download=False)
    assert data.labels.tolist() == [0, 1, 2, 3, 4] and len(data.class_names) == NUM_CLASSES["Letters"] == 26
    assert torch.equal(data.images[0, 0], torch.from_numpy(arrays["train"][0][0]).float().T / 255)


def test_missing_letters_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="EMNIST Letters is not available.*download"):
        load_dataset("Letters", root=tmp_path, download=True)


def test_simplified_mnist_keeps_2_6_9_relabelled_and_full_mnist_keeps_all(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.array([2, 0, 6, 9, 1, 9, 2])
    for prefix in ("train", "t10k"):
        mnist._write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (len(labels), 28, 28)))
        mnist._write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    simple = load_dataset("SimplifiedMNIST", root=tmp_path, download=False)
    assert simple.labels.tolist() == [0, 1, 2, 2, 0] and simple.class_names == ("2", "6", "9")
    full = load_dataset("FullMNIST", "train", root=tmp_path, download=False)
    assert full.labels.tolist() == labels.tolist() and len(full.class_names) == 10
    assert torch.equal(simple.images[1], full.images[2])
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("CIFAR", root=tmp_path)
