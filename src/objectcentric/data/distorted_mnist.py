"""Distorted MNIST: digits rotated, scaled and shifted on a larger canvas (Chapter 4, spatial transformer).

The rotated-translated-scaled ("RTS") MNIST of Jaderberg et al. (2015): each
28 x 28 digit is turned by an angle drawn uniformly from -45 to +45 degrees,
scaled by a factor drawn uniformly from 0.7 to 1.2, and placed at a random
position on an empty 42 x 42 canvas, where it stays whole. The canvases are
drawn with the chapter's own functions: the digit's pose on the canvas is a
window (:func:`objectcentric.spatial.affine_matrix`) and
:func:`objectcentric.spatial.paint` draws the digit into it. That window is
also the *true distortion*: cropping it out of the canvas
(:func:`objectcentric.spatial.crop`, 28 x 28) gives the upright digit back,
which is what a spatial transformer can learn to do.

Splits: ``"train"`` and ``"val"`` draw from MNIST's training digits (the
last :data:`VAL_SIZE` of them are the validation digits, never trained on),
``"test"`` from its test digits. Every split's distortions come from its own
``torch.Generator`` seeded by ``(seed, split)``, so a seed gives the same
canvases on every machine without touching the global random state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..spatial import affine_matrix, paint
from .mnist import load_mnist

__all__ = ["CANVAS", "DIGIT", "ROTATION_DEG", "SCALE_RANGE", "SPLITS", "VAL_SIZE", "DistortedMNIST",
           "distorted_mnist", "draw_distortions"]

CANVAS = 42
DIGIT = 28
ROTATION_DEG = 45.0  # angles uniform in [-45, 45] degrees
SCALE_RANGE = (0.7, 1.2)  # the digit's size as a multiple of its 28 pixels
VAL_SIZE = 5000  # MNIST's last 5,000 training digits are the validation split
SPLITS = ("train", "val", "test")
_CHUNK = 5000  # canvases drawn at a time, so that the sampling grids stay small


@dataclass(frozen=True)
class DistortedMNIST:
    """Distorted canvases (N, 1, canvas, canvas) in [0, 1], their labels (N,) and the true distortion.

    ``theta`` (N, 2, 3) is the digit's window on the canvas (Chapter 4's
    convention: window coordinates to canvas coordinates);
    ``crop(images, theta, 28)`` is the upright digit. ``rotation`` (radians),
    ``scale`` (a multiple of the digit's 28 pixels) and ``shift`` (N, 2, the
    digit's centre in normalised coordinates) are the numbers it was built from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    theta: torch.Tensor
    rotation: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def draw_distortions(n: int, generator: torch.Generator, canvas: int = CANVAS, digit: int = DIGIT
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random poses: rotation (n,) in radians, scale (n,) and shift (n, 2), the digit kept on the canvas.

    The shift moves the digit's 28 x 28 box anywhere it stays inside the
    canvas: each coordinate of its centre is uniform in ``±(1 - h)``, where
    ``h`` is the box's half-width in normalised coordinates.
    """
    rotation = (2 * torch.rand(n, generator=generator) - 1) * math.radians(ROTATION_DEG)
    low, high = SCALE_RANGE
    scale = low + (high - low) * torch.rand(n, generator=generator)
    half_width = scale * digit / canvas
    shift = (2 * torch.rand(n, 2, generator=generator) - 1) * (1 - half_width)[:, None]
    return rotation, scale, shift


def distorted_mnist(split: str = "train", *, n: int | None = None, seed: int = 0, canvas: int = CANVAS,
                    root=None) -> DistortedMNIST:
    """The first ``n`` canvases (all when None) of a split of distorted MNIST, drawn from ``seed``.

    ``split`` is "train" (MNIST's first 55,000 training digits), "val" (its
    last 5,000) or "test" (its 10,000 test digits). The same ``(split, seed,
    canvas)`` always gives the same canvases, and the first ``n`` of a larger
    draw are the same as a draw of ``n``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(canvas, int) or canvas < DIGIT:
        raise ValueError(f"canvas must be an int of at least {DIGIT} pixels, got {canvas!r}")
    digits, labels = load_mnist("test" if split == "test" else "train", root=root)
    if split != "test":
        cut = len(digits) - VAL_SIZE
        digits, labels = (digits[:cut], labels[:cut]) if split == "train" else (digits[cut:], labels[cut:])
    generator = torch.Generator().manual_seed(int(seed) * len(SPLITS) + SPLITS.index(split))
    rotation, scale, shift = draw_distortions(len(digits), generator, canvas)  # for the whole split, then cut
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(digits):
            raise ValueError(f"n must be a whole number from 1 to {len(digits)} for the {split!r} split, got {n!r}")
        digits, labels, rotation, scale, shift = digits[:n], labels[:n], rotation[:n], scale[:n], shift[:n]
    theta = affine_matrix(scale=scale * DIGIT / canvas, rotation=rotation, shift_x=shift[:, 0], shift_y=shift[:, 1])
    images = torch.cat([paint(digits[i : i + _CHUNK], theta[i : i + _CHUNK], canvas).clamp_(0, 1)
                        for i in range(0, len(digits), _CHUNK)])
    return DistortedMNIST(images=images, labels=labels, theta=theta, rotation=rotation, scale=scale, shift=shift)
