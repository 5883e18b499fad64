"""Scoring objects that a model finds and names without labels (Chapter 7, DAIR).

A model that explains a canvas as a few objects, each with a class, is right
about the canvas when it finds every digit, no more, and names each one. Its
classes are arbitrary names (class 3 may be the digit 7), so, as for a
clustering (:mod:`objectcentric.clustering`), they are mapped to digits with
the labels first. The scores, all computed from :class:`FoundObjects`:

- **count accuracy**: the fraction of canvases whose number of objects is
  right;
- **matching**: on each canvas the found objects are matched to the true
  digits by their centres (the window's centre, the digit box's centre), one
  to one, minimising the total distance (Hungarian matching,
  ``scipy.optimize.linear_sum_assignment``); pairs further apart than
  ``max_distance`` pixels (when given) are not matched;
- **class to digit mapping**: the contingency table of the matched pairs'
  (class, digit) gives each class a digit, one to one when K <= 10 digits,
  by majority when K > 10 (:func:`objectcentric.clustering.cluster_to_class`);
  it is fitted on a separate *labelling* set of canvases and applied to the
  test canvases (``transfer``), or fitted on the test canvases themselves
  (``refit``: an upper bound that sees the test labels);
- **object accuracy**: correctly named matched pairs over all objects that
  had to be right, sum over canvases of max(found, true): an unmatched true
  digit (missed) and an unmatched found object (extra) each count as one
  error;
- **scene accuracy**: the fraction of canvases whose count is right and
  whose every digit is matched and named right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .clustering import cluster_to_class, contingency

__all__ = [
    "FoundObjects",
    "Matching",
    "box_centres",
    "count_accuracy",
    "fit_mapping",
    "match_objects",
    "object_accuracy",
    "scene_accuracy",
    "score_objects",
    "window_centres",
]

NUM_DIGITS = 10


def _numpy(value, dtype=None) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


@dataclass
class FoundObjects:
    """What a model found on N canvases, next to the truth (Chapter 7).

    ``found_centres`` (N, S, 2) pixels (x, y); ``found_present`` (N, S) bool;
    ``found_classes`` (N, S) integers (the model's own names; any value where
    absent); ``true_centres`` (N, T, 2); ``true_present`` (N, T) bool;
    ``true_classes`` (N, T) digits (any value where absent). Tensors or
    arrays; they are kept as numpy arrays.
    """

    found_centres: np.ndarray
    found_present: np.ndarray
    found_classes: np.ndarray
    true_centres: np.ndarray
    true_present: np.ndarray
    true_classes: np.ndarray

    def __post_init__(self):
        self.found_centres = _numpy(self.found_centres, np.float64)
        self.true_centres = _numpy(self.true_centres, np.float64)
        self.found_present = _numpy(self.found_present).astype(bool)
        self.true_present = _numpy(self.true_present).astype(bool)
        self.found_classes = _numpy(self.found_classes).astype(np.int64)
        self.true_classes = _numpy(self.true_classes).astype(np.int64)
        n, s = self.found_present.shape
        t = self.true_present.shape[1]
        shapes = {"found_centres": (self.found_centres.shape, (n, s, 2)),
                  "found_classes": (self.found_classes.shape, (n, s)),
                  "true_centres": (self.true_centres.shape, (n, t, 2)),
                  "true_present": (self.true_present.shape, (n, t)),
                  "true_classes": (self.true_classes.shape, (n, t))}
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} must be shaped {want} (N canvases, S found and T true slots), got {got}")
        if (self.found_present & ~np.isfinite(self.found_centres).all(-1)).any() or \
                (self.true_present & ~np.isfinite(self.true_centres).all(-1)).any():
            raise ValueError("a present object has a NaN or infinite centre")

    def __len__(self) -> int:
        return self.found_present.shape[0]

    @property
    def found_counts(self) -> np.ndarray:
        return self.found_present.sum(1)

    @property
    def true_counts(self) -> np.ndarray:
        return self.true_present.sum(1)


@dataclass
class Matching:
    """Found objects paired with true digits, canvas by canvas (Chapter 7).

    ``canvas``, ``found`` and ``true`` (P,) give each matched pair's canvas
    and its slots; ``slots`` (N,) is max(found, true) per canvas, the objects
    that had to be right.
    """

    canvas: np.ndarray
    found: np.ndarray
    true: np.ndarray
    slots: np.ndarray


def window_centres(where, canvas: int) -> torch.Tensor:
    """AIR's where codes (..., 3) as (log s, x, y) -> window centres (..., 2) in pixels (x, y)."""
    return (torch.as_tensor(where)[..., 1:] + 1) * canvas / 2


def box_centres(boxes) -> torch.Tensor:
    """Boxes (..., 4) as (x0, y0, x1, y1) pixels -> their centres (..., 2)."""
    boxes = torch.as_tensor(boxes)
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def match_objects(objects: FoundObjects, max_distance: float | None = None) -> Matching:
    """Hungarian matching of found objects to true digits by centre distance, on each canvas."""
    canvases, found, true = [], [], []
    for n in range(len(objects)):
        f_slots = np.flatnonzero(objects.found_present[n])
        t_slots = np.flatnonzero(objects.true_present[n])
        if not len(f_slots) or not len(t_slots):
            continue
        f, t = objects.found_centres[n, f_slots], objects.true_centres[n, t_slots]
        distance = np.sqrt(((f[:, None] - t[None]) ** 2).sum(-1))
        rows, cols = linear_sum_assignment(distance)
        if max_distance is not None:
            keep = distance[rows, cols] <= max_distance
            rows, cols = rows[keep], cols[keep]
        canvases += [n] * len(rows)
        found += f_slots[rows].tolist()
        true += t_slots[cols].tolist()
    slots = np.maximum(objects.found_counts, objects.true_counts)
    as_int = lambda v: np.asarray(v, dtype=np.int64)
    return Matching(as_int(canvases), as_int(found), as_int(true), slots)


def _pairs(objects: FoundObjects, matching: Matching) -> tuple[np.ndarray, np.ndarray]:
    """The matched pairs' found classes and true digits, (P,) each."""
    return (objects.found_classes[matching.canvas, matching.found],
            objects.true_classes[matching.canvas, matching.true])


def fit_mapping(objects: FoundObjects, matching: Matching, num_classes: int,
                num_digits: int = NUM_DIGITS) -> np.ndarray:
    """The digit of each of the ``num_classes`` classes (K,), -1 for a class given none, from matched pairs.

    One to one (Hungarian) when K <= digits, majority when K > digits
    (:func:`objectcentric.clustering.cluster_to_class`).
    """
    classes, digits = _pairs(objects, matching)
    return cluster_to_class(contingency(classes, digits, num_classes, num_digits))


def _named_right(objects: FoundObjects, matching: Matching, mapping: np.ndarray) -> np.ndarray:
    classes, digits = _pairs(objects, matching)
    mapping = np.asarray(mapping, dtype=np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= len(mapping)):
        raise ValueError(f"found classes must lie in [0, {len(mapping)}) to be mapped, "
                         f"got {classes.min()}..{classes.max()}")
    return mapping[classes] == digits


def count_accuracy(objects: FoundObjects) -> float:
    """The fraction of canvases whose number of found objects is the number of digits."""
    return float((objects.found_counts == objects.true_counts).mean())


def object_accuracy(objects: FoundObjects, matching: Matching, mapping: np.ndarray) -> float:
    """Correctly named matched pairs over sum of max(found, true) per canvas (NaN when no canvas has an object)."""
    total = int(matching.slots.sum())
    return float(_named_right(objects, matching, mapping).sum() / total) if total else float("nan")


def scene_accuracy(objects: FoundObjects, matching: Matching, mapping: np.ndarray) -> float:
    """The fraction of canvases with the right count whose every digit is matched and named right."""
    right = np.bincount(matching.canvas[_named_right(objects, matching, mapping)], minlength=len(objects))
    counts = objects.true_counts
    return float(((objects.found_counts == counts) & (right == counts)).mean())


def score_objects(labelling: FoundObjects, test: FoundObjects, num_classes: int,
                  max_distance: float | None = None, num_digits: int = NUM_DIGITS) -> dict:
    """Every score of the module docstring on ``test``, with the mapping fitted on ``labelling``.

    Returns ``count_accuracy``, ``object_accuracy`` and ``scene_accuracy``
    (mapping from the labelling set), ``object_accuracy_refit`` and
    ``scene_accuracy_refit`` (mapping fitted on ``test``), ``matched_fraction``
    (true digits matched to a found object) and both ``mapping``s.
    """
    label_match, test_match = match_objects(labelling, max_distance), match_objects(test, max_distance)
    mapping = fit_mapping(labelling, label_match, num_classes, num_digits)
    refit = fit_mapping(test, test_match, num_classes, num_digits)
    n_true = int(test.true_counts.sum())
    return {
        "count_accuracy": count_accuracy(test),
        "object_accuracy": object_accuracy(test, test_match, mapping),
        "scene_accuracy": scene_accuracy(test, test_match, mapping),
        "object_accuracy_refit": object_accuracy(test, test_match, refit),
        "scene_accuracy_refit": scene_accuracy(test, test_match, refit),
        "matched_fraction": float(len(test_match.canvas) / n_true) if n_true else float("nan"),
        "mapping": mapping.tolist(),
        "mapping_refit": refit.tolist(),
    }
