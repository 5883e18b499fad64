"""Unsupervised classification accuracy of capsule features (Chapter 8, Stacked Capsule Autoencoders).

The SCAE paper scores its object capsules without labels: k-means with as many
clusters as classes on the per-image features (the object capsules'
presences, or the mass of parts each explains), then the one-to-one mapping of
clusters to classes that agrees with the most labels (Hungarian matching, from
:mod:`objectcentric.clustering`). Two protocols, both reported by the chapter:

- **refit** (:func:`refit_accuracy`), the official evaluation's
  (``eval_mnist_model.py``): k-means is fitted on the *test* features and the
  clusters are matched to the test labels; the labels are used only to name
  the clusters, but the test set is seen by the clustering (transductive);
- **transfer** (:func:`transfer_accuracy`): k-means is fitted on the
  *training* features and its clusters are named with the training labels;
  the test features are assigned to the nearest centroid and scored. Nothing
  about the test set is used.

k-means is ``scipy.cluster.vq.kmeans2`` with k-means++ starts, run from
several starts and keeping the fit with the smallest within-cluster sum of
squares, like scikit-learn's ``KMeans`` (which the official code uses, with
``max_iter=1000``). Every run is seeded.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.cluster.vq import kmeans2, vq

from .clustering import cluster_to_class, clustering_accuracy, contingency

__all__ = [
    "kmeans",
    "assign",
    "refit_accuracy",
    "transfer_accuracy",
    "collect_features",
    "evaluate_features",
]


def _as_features(values, name: str = "features") -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be one row per example, shape (N, D) with N > 0, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return array


def _as_labels(values, n: int, name: str = "labels") -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"{name} must be one integer per example, shape ({n},), got {array.shape}")
    return array.astype(np.int64)


def kmeans(features, k: int = 10, n_init: int = 10, iterations: int = 300, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """k-means on ``features`` (N, D): ``(centroids (k, D), clusters (N,))``, the best of ``n_init`` seeded runs.

    Each run starts from k-means++ and does ``iterations`` Lloyd steps
    (``scipy.cluster.vq.kmeans2``); the run with the smallest sum of squared
    distances to the centroids is kept.
    """
    data = _as_features(features)
    if not isinstance(k, int) or k < 1 or k > len(data):
        raise ValueError(f"k must be an int between 1 and the number of examples ({len(data)}), got {k!r}")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        with warnings.catch_warnings():  # an empty cluster only makes this run worse; the best run is kept
            warnings.simplefilter("ignore")
            centroids, clusters = kmeans2(data, k, iter=iterations, minit="++", rng=rng)
        inertia = float(((data - centroids[clusters]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centroids, clusters)
    return best[1], best[2].astype(np.int64)


def assign(features, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (k, D) of each row of ``features`` (N, D): (N,)."""
    data = _as_features(features)
    return vq(data, np.asarray(centroids, dtype=np.float64))[0].astype(np.int64)


def refit_accuracy(features, labels, k: int = 10, num_classes: int | None = None, seed: int = 0,
                   n_init: int = 10) -> float:
    """The paper's protocol: k-means fitted on these features, clusters matched to these labels (Hungarian)."""
    data = _as_features(features)
    labels = _as_labels(labels, len(data))
    _, clusters = kmeans(data, k, n_init=n_init, seed=seed)
    return clustering_accuracy(clusters, labels, num_clusters=k, num_classes=num_classes)


def transfer_accuracy(train_features, train_labels, test_features, test_labels, k: int = 10,
                      num_classes: int | None = None, seed: int = 0, n_init: int = 10) -> dict[str, float]:
    """k-means and the cluster-to-class mapping from the training set, applied to the test set.

    Returns ``{"train": ..., "test": ...}``, the accuracy of the one mapping on each set.
    """
    train = _as_features(train_features, "train_features")
    test = _as_features(test_features, "test_features")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features must have the same width, got {train.shape[1]} and {test.shape[1]}")
    train_labels = _as_labels(train_labels, len(train), "train_labels")
    test_labels = _as_labels(test_labels, len(test), "test_labels")
    c = int(num_classes if num_classes is not None else max(train_labels.max(), test_labels.max()) + 1)
    centroids, train_clusters = kmeans(train, k, n_init=n_init, seed=seed)
    mapping = cluster_to_class(contingency(train_clusters, train_labels, k, c))
    test_clusters = assign(test, centroids)
    return {"train": float((mapping[train_clusters] == train_labels).mean()),
            "test": float((mapping[test_clusters] == test_labels).mean())}


@torch.no_grad()
def collect_features(model, images: torch.Tensor, batch_size: int = 500, noise: bool | None = None
                     ) -> dict[str, torch.Tensor]:
    """``model.features`` over ``images`` in batches, on the model's device, in evaluation mode: (N, K) each, on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(images), batch_size):
            batch = model.features(images[start:start + batch_size].to(device), noise=noise)
            for name, value in batch.items():
                parts.setdefault(name, []).append(value.cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(values) for name, values in parts.items()}


def evaluate_features(train: dict, train_labels, test: dict, test_labels, k: int = 10, seed: int = 0,
                      n_init: int = 10) -> dict[str, float]:
    """Both protocols for every kind of feature: ``{"<name>_refit": ..., "<name>_transfer": ...}``.

    ``train`` and ``test`` map feature names (e.g. ``"prior"``, ``"posterior"``,
    as from :func:`collect_features`) to (N, K) features.
    """
    results = {}
    for name in test:
        results[f"{name}_refit"] = refit_accuracy(test[name], test_labels, k, seed=seed, n_init=n_init)
        results[f"{name}_transfer"] = transfer_accuracy(train[name], train_labels, test[name], test_labels, k,
                                                        seed=seed, n_init=n_init)["test"]
    return results
