"""How well clusters found without labels match the true classes (Chapter 5, D-VAE-ST).

A clustering names its K clusters arbitrarily, so it is scored after mapping
each cluster to a class, using the labels for that mapping only:

- K == number of classes: the one-to-one mapping that agrees with the most
  labels (Hungarian matching, ``scipy.optimize.linear_sum_assignment`` on the
  contingency table). This is the usual *unsupervised clustering accuracy*.
- K > number of classes (overclustering): each cluster takes the class most of
  its members have (majority mapping); the accuracy is then the *purity*.
  Several clusters may map to one class.
- K < number of classes: one-to-one matching again; the classes left without
  a cluster count as errors.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["contingency", "cluster_to_class", "clustering_accuracy", "confusion_matrix"]


def _as_labels(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one integer per example, shape (N,), got {array.shape}")
    if array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0):
        raise ValueError(f"{name} must be non-negative integers, got dtype {array.dtype} and min {array.min()}")
    return array.astype(np.int64)


def contingency(clusters, labels, num_clusters: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """Counts (K, C): entry [k, c] is how many examples of class c fell into cluster k."""
    clusters, labels = _as_labels(clusters, "clusters"), _as_labels(labels, "labels")
    if clusters.shape != labels.shape:
        raise ValueError(f"clusters and labels must have the same length, got {len(clusters)} and {len(labels)}")
    k = int(num_clusters if num_clusters is not None else (clusters.max() + 1 if clusters.size else 1))
    c = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 1))
    if clusters.size and (clusters.max() >= k or labels.max() >= c):
        raise ValueError(f"clusters must lie in [0, {k}) and labels in [0, {c})")
    table = np.zeros((k, c), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    return table


def cluster_to_class(table: np.ndarray) -> np.ndarray:
    """The class each cluster is mapped to, (K,), from a contingency table (K, C); -1 for an unmatched cluster.

    One-to-one (Hungarian) when K <= C, majority class per cluster when K > C.
    """
    table = np.asarray(table)
    k, c = table.shape
    if k > c:
        return table.argmax(1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(k, -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def clustering_accuracy(clusters, labels, num_clusters: int | None = None, num_classes: int | None = None) -> float:
    """Fraction of examples whose cluster maps to their class (see the module docstring for the mapping)."""
    table = contingency(clusters, labels, num_clusters, num_classes)
    total = table.sum()
    if total == 0:
        raise ValueError("no examples to score")
    mapping = cluster_to_class(table)
    matched = sum(table[k, c] for k, c in enumerate(mapping) if c >= 0)
    return float(matched / total)


def confusion_matrix(clusters, labels, num_clusters: int | None = None,
                     num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, mapping)``: matrix[true, predicted] counts (C, C) after mapping clusters to classes.

    Examples in a cluster that maps to no class (K < C leaves none such;
    K <= C with unmatched clusters cannot happen) are not counted. ``mapping``
    is :func:`cluster_to_class`'s.
    """
    table = contingency(clusters, labels, num_clusters, num_classes)
    mapping = cluster_to_class(table)
    c = table.shape[1]
    matrix = np.zeros((c, c), dtype=np.int64)
    for k, predicted in enumerate(mapping):
        if predicted >= 0:
            matrix[:, predicted] += table[k]
    return matrix, mapping
