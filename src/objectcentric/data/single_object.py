"""The single-object datasets the clustering chapter sorts without labels (Chapter 5, D-VAE-ST).

Seed 000's four datasets, by its names:

- ``SimplifiedMNIST``: the MNIST digits 2, 6 and 9 only (3 classes, labels 0-2);
- ``FullMNIST``: all of MNIST (10 classes);
- ``FashionMNIST``: Zalando's clothes (10 classes);
- ``Letters``: EMNIST Letters (26 classes), only where it can be downloaded.

Labels are only ever used to *score* a clustering, never to train.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from objectcentric.data.fashion_mnist import FASHION_CLASSES, LETTERS_CLASSES, load_emnist_letters, load_fashion_mnist
from objectcentric.data.mnist import load_mnist

SIMPLIFIED_DIGITS = (2, 6, 9)
NUM_CLASSES = {"SimplifiedMNIST": 3, "FullMNIST": 10, "FashionMNIST": 10, "Letters": 26}
DATASETS = tuple(NUM_CLASSES)


class LabelledImages(NamedTuple):
    """Images (N, 1, 28, 28) in [0, 1], labels (N,) in 0..C-1 and the C class names."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]


def load_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 download: bool = True) -> LabelledImages:
    """Dataset ``name`` (one of :data:`DATASETS`), ``split`` "train" or "test" (Chapter 5, D-VAE-ST).

    Raises :class:`~objectcentric.data.mnist.DatasetUnavailableError` with
    instructions when the data cannot be found or fetched.
    """
    if name == "FullMNIST":
        images, labels = load_mnist(split, root, download)
        return LabelledImages(images, labels, tuple(str(d) for d in range(10)))
    if name == "SimplifiedMNIST":
        images, labels = load_mnist(split, root, download)
        keep = torch.isin(labels, torch.tensor(SIMPLIFIED_DIGITS))
        relabel = torch.full((10,), -1, dtype=torch.int64)
        relabel[list(SIMPLIFIED_DIGITS)] = torch.arange(len(SIMPLIFIED_DIGITS))
        return LabelledImages(images[keep], relabel[labels[keep]], tuple(str(d) for d in SIMPLIFIED_DIGITS))
    if name == "FashionMNIST":
        return LabelledImages(*load_fashion_mnist(split, root, download), FASHION_CLASSES)
    if name == "Letters":
        return LabelledImages(*load_emnist_letters(split, root, download), LETTERS_CLASSES)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
