"""Clustering accuracy (Chapter 5): Hungarian matching, majority mapping for overclustering, bad input."""

import numpy as np
import pytest
import torch

from objectcentric.clustering import cluster_to_class, clustering_accuracy, confusion_matrix, contingency


def test_a_relabelled_perfect_clustering_scores_one():
    labels = np.repeat(np.arange(5), 20)
    permutation = np.array([3, 0, 4, 1, 2])
    assert clustering_accuracy(permutation[labels], labels) == 1.0
    assert clustering_accuracy(torch.from_numpy(permutation[labels]), torch.from_numpy(labels)) == 1.0


def test_a_known_confusion_gives_its_known_accuracy():
    # 3 classes, 10 images each; cluster 2 takes 6 of class 0 and 4 of class 1; cluster 0 takes the other
    # 4 of class 0 and all of class 2; cluster 1 the other 6 of class 1.
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    clusters = np.array([2] * 6 + [0] * 4 + [2] * 4 + [1] * 6 + [0] * 10)
    table = contingency(clusters, labels)
    assert table.tolist() == [[4, 0, 10], [0, 6, 0], [6, 4, 0]]
    # Best one-to-one matching: 0->2 (10), 1->1 (6), 2->0 (6): 22 of 30.
    assert cluster_to_class(table).tolist() == [2, 1, 0]
    assert clustering_accuracy(clusters, labels) == pytest.approx(22 / 30)
    matrix, mapping = confusion_matrix(clusters, labels)
    assert matrix.tolist() == [[6, 0, 4], [4, 6, 0], [0, 0, 10]] and matrix.trace() == 22


def test_hungarian_beats_greedy_on_a_crafted_table():
    # Greedy (largest cell first: cluster 0 -> class 0, 5) then cluster 1 -> class 1 (0) gives 5;
    # the best matching is 0 -> 1 (4) and 1 -> 0 (4): 8.
    table = np.array([[5, 4], [4, 0]])
    clusters = np.repeat([0, 0, 1, 1], table.flatten())
    labels = np.repeat([0, 1, 0, 1], table.flatten())
    assert clustering_accuracy(clusters, labels) == pytest.approx(8 / 13)


def test_overclustering_maps_each_cluster_to_its_majority_class():
    labels = np.array([0] * 10 + [1] * 10)
    # Four clusters: two pure halves of class 0, one pure class 1, one mixed (3 of class 0, 2 of class 1).
    clusters = np.array([0] * 4 + [1] * 3 + [3] * 3 + [2] * 8 + [3] * 2)
    assert cluster_to_class(contingency(clusters, labels, 4, 2)).tolist() == [0, 0, 1, 0]
    assert clustering_accuracy(clusters, labels, 4, 2) == pytest.approx(18 / 20)  # purity
    assert clustering_accuracy(np.arange(20), labels) == 1.0  # one cluster per image: purity 1


def test_fewer_clusters_than_classes_leave_classes_unmatched():
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)
    clusters = np.array([0] * 10 + [1] * 5)
    assert clustering_accuracy(clusters, labels, 2, 3) == pytest.approx(10 / 15)


def test_empty_clusters_and_bad_input():
    assert clustering_accuracy(np.array([0, 0, 2, 2]), np.array([1, 1, 0, 0]), num_clusters=3) == 1.0
    with pytest.raises(ValueError, match="same length"):
        clustering_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="non-negative integers"):
        clustering_accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="lie in"):
        contingency([0, 3], [0, 1], num_clusters=2)
    with pytest.raises(ValueError, match="no examples"):
        clustering_accuracy([], [])
