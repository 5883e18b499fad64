"""Fashion-MNIST and EMNIST Letters, offline first (Chapter 5, D-VAE-ST).

Both come in MNIST's idx format, so they reuse :mod:`objectcentric.data.mnist`'s
steps: raw files where torchvision reads them, their ``.gz`` unpacked once,
and torchvision's download last. Sources, in order:

- **Fashion-MNIST** (``<root>/FashionMNIST/raw``): the raw files or their
  ``.gz``; the Debian package ``dataset-fashion-mnist``, which ships the
  four ``.gz`` files in ``/usr/share/datasets/fashion-mnist`` (``make data``
  installs it where ``apt-get`` works); torchvision's download.
- **EMNIST Letters** (``<root>/EMNIST/raw``): the raw files or their ``.gz``;
  torchvision's download (a 540 MB archive from NIST). No package ships it,
  so offline it is missing, and the chapter says so and skips it.

A dataset that cannot be had raises :class:`DatasetUnavailableError` naming
every way to get it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from objectcentric.data.mnist import RAW_FILES, DatasetUnavailableError, _raw_dir, _raw_present, _root, unpack_gz
from objectcentric.paths import DATA_ENV

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FOLDER, EMNIST_FOLDER = "FashionMNIST", "EMNIST"
LETTERS_FILES = tuple(f"emnist-letters-{split}-{kind}-idx{dim}-ubyte"
                      for split in ("train", "test") for kind, dim in (("images", 3), ("labels", 1)))
FASHION_CLASSES = tuple(torchvision.datasets.FashionMNIST.classes)
LETTERS_CLASSES = tuple("abcdefghijklmnopqrstuvwxyz")


def _unavailable(name: str, root: Path, folder: str, files, reason: str, ways) -> DatasetUnavailableError:
    raw = _raw_dir(root, folder)
    steps = "\n".join(f"  {i}. {way}" for i, way in enumerate(
        [f"put the raw files {', '.join(files)} (uncompressed, or gzipped as NAME.gz) into {raw};", *ways], start=1))
    return DatasetUnavailableError(
        f"{name} is not available ({reason}). Get it one of these ways:\n{steps}\n"
        f"Searched data root: {root}. Change it with the {DATA_ENV} environment variable or the `root` argument."
    )


def prepare_fashion_mnist(root: str | Path | None = None, download: bool = True) -> Path:
    """Make sure torchvision's raw Fashion-MNIST files exist under ``root``; returns the root."""
    root = _root(root)
    raw = _raw_dir(root, FASHION_FOLDER)
    if _raw_present(root, FASHION_FOLDER):
        return root
    if unpack_gz(raw, RAW_FILES):
        print(f"Fashion-MNIST: unpacked the gzipped raw files in {raw}")
        return root
    if unpack_gz(raw, RAW_FILES, source=DEBIAN_FASHION_DIR):
        print(f"Fashion-MNIST: unpacked Debian's dataset-fashion-mnist ({DEBIAN_FASHION_DIR}) into {raw}")
        return root
    ways = [f"`apt-get install dataset-fashion-mnist` (Debian; its files in {DEBIAN_FASHION_DIR} are unpacked once);",
            "connect to the internet so that torchvision can download them (download=True)."]
    reason = f"no raw files, no {DEBIAN_FASHION_DIR}"
    if not download:
        raise _unavailable("Fashion-MNIST", root, FASHION_FOLDER, RAW_FILES, f"{reason}, download=False", ways)
    try:
        torchvision.datasets.FashionMNIST(root, train=True, download=True)
    except Exception as error:  # torchvision raises RuntimeError, URLError, SSL errors...
        raise _unavailable("Fashion-MNIST", root, FASHION_FOLDER, RAW_FILES,
                           f"{reason}, download failed: {error}", ways) from error
    print(f"Fashion-MNIST: downloaded by torchvision into {raw}")
    return root


def prepare_emnist_letters(root: str | Path | None = None, download: bool = True) -> Path:
    """Make sure the raw EMNIST Letters files exist under ``root``; returns the root."""
    root = _root(root)
    raw = _raw_dir(root, EMNIST_FOLDER)
    if _raw_present(root, EMNIST_FOLDER, LETTERS_FILES) or unpack_gz(raw, LETTERS_FILES):
        return root
    ways = ["connect to the internet so that torchvision can download EMNIST (a 540 MB archive; download=True)."]
    if not download:
        raise _unavailable("EMNIST Letters", root, EMNIST_FOLDER, LETTERS_FILES, "no raw files, download=False", ways)
    try:
        torchvision.datasets.EMNIST(root, split="letters", train=True, download=True)
    except Exception as error:
        raise _unavailable("EMNIST Letters", root, EMNIST_FOLDER, LETTERS_FILES,
                           f"no raw files, download failed: {error}", ways) from error
    return root


def _as_float(data: torch.Tensor) -> torch.Tensor:
    return data.unsqueeze(1).to(torch.float32).div_(255.0)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` ("train": 60k, "test": 10k) as images (N, 1, 28, 28) in [0, 1] and labels 0-9."""
    train = _check_split(split)
    dataset = torchvision.datasets.FashionMNIST(prepare_fashion_mnist(root, download), train=train, download=False)
    return _as_float(dataset.data), dataset.targets.to(torch.int64)


def load_emnist_letters(split: str = "train", root: str | Path | None = None,
                        download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """EMNIST Letters ``split`` as images (N, 1, 28, 28) in [0, 1] and labels 0-25 (a-z).

    The files store each image transposed and label the letters 1-26; both are
    undone here, so a letter looks like an MNIST digit does.
    """
    train = _check_split(split)
    dataset = torchvision.datasets.EMNIST(prepare_emnist_letters(root, download), split="letters", train=train,
                                          download=False)
    return _as_float(dataset.data.transpose(1, 2)), dataset.targets.to(torch.int64) - 1


def _check_split(split: str) -> bool:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split == "train"
