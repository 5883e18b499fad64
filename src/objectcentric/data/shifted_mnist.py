"""MNIST digits at a random integer shift on a 40 x 40 canvas (Chapter 8, Stacked Capsule Autoencoders).

The official SCAE MNIST run (Kosiorek et al., 2019; ``run_mnist.sh`` with
``--canvas_size=40``) pads every 28 x 28 digit to 40 x 40 at a random integer
offset, drawn again every time a batch is read, for the training *and* the
test batches. This module reproduces that augmentation exactly, with tensor
operations over the whole batch:

- **The offset distribution.** The official ``pad_and_shift`` draws a shift
  ``s`` uniformly from the integers ``-m .. m`` (``m = canvas - 28 = 12``) and
  pads so that the digit's top-left pixel lands at ``ceil((m - s) / 2)``; x and
  y are drawn independently. The offset is therefore in ``0 .. m`` on each
  axis, with offset 0 half as likely as each of the others (probability
  1 / 25 against 2 / 25 for 1 .. 12): :func:`sample_offsets` draws it the same
  way. Offsets are integers, so the digit is copied, never resampled.
- **Training** data is shifted afresh on every pass: :func:`shift_digits`
  places a batch at new offsets, :func:`shifted_batches` yields one shuffled
  pass through a set of digits shifted that way.
- **Test** data is one fixed, seeded set (:func:`shifted_mnist_test`), so that
  every evaluation sees the same canvases. (The official evaluation shifts the
  test digits afresh too; a fixed set gives the same distribution and
  repeatable numbers.)

Every random draw takes a ``torch.Generator``, so a seed gives the same canvases
on every machine without touching the global random state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from objectcentric.data.mnist import load_mnist

__all__ = [
    "CANVAS",
    "DIGIT",
    "offset_probabilities",
    "sample_offsets",
    "place_at",
    "shift_digits",
    "shifted_batches",
    "shifted_mnist_test",
    "mnist_train_digits",
]

CANVAS = 40
DIGIT = 28
TEST_SEED = 8


def _max_shift(canvas: int, digit: int) -> int:
    if not isinstance(canvas, int) or canvas < digit:
        raise ValueError(f"canvas must be an int of at least the digit size ({digit}), got {canvas!r}")
    return canvas - digit


def offset_probabilities(canvas: int = CANVAS, digit: int = DIGIT) -> torch.Tensor:
    """P(top-left offset = k) for k = 0 .. canvas - digit, on one axis, as ``pad_and_shift`` draws it."""
    m = _max_shift(canvas, digit)
    shifts = torch.arange(-m, m + 1)
    offsets = torch.div(m - shifts + 1, 2, rounding_mode="floor")  # ceil((m - s) / 2)
    return torch.bincount(offsets, minlength=m + 1).double() / (2 * m + 1)


def sample_offsets(n: int, generator: torch.Generator | None = None, canvas: int = CANVAS,
                   digit: int = DIGIT) -> torch.Tensor:
    """Top-left offsets (n, 2) as (x, y), int64, drawn independently per axis like ``pad_and_shift``."""
    m = _max_shift(canvas, digit)
    shifts = torch.randint(-m, m + 1, (n, 2), generator=generator)
    return torch.div(m - shifts + 1, 2, rounding_mode="floor")


def place_at(digits: torch.Tensor, offsets: torch.Tensor, canvas: int = CANVAS) -> torch.Tensor:
    """Copy each digit (B, C, h, w) onto an empty canvas (B, C, canvas, canvas), its top-left pixel at offsets (B, 2).

    Offsets are (x, y): column, then row.
    """
    if digits.dim() != 4:
        raise ValueError(f"digits must be shaped (batch, channels, height, width), got {tuple(digits.shape)}")
    b, c, h, w = digits.shape
    offsets = torch.as_tensor(offsets, dtype=torch.int64, device=digits.device)
    if offsets.shape != (b, 2):
        raise ValueError(f"offsets must be shaped ({b}, 2), got {tuple(offsets.shape)}")
    if b and (offsets.min() < 0 or (offsets[:, 0] + w).max() > canvas or (offsets[:, 1] + h).max() > canvas):
        raise ValueError(f"offsets must keep the {h} x {w} digits inside the {canvas} x {canvas} canvas")
    out = digits.new_zeros(b, c, canvas, canvas)
    rows = offsets[:, 1, None] + torch.arange(h, device=digits.device)          # (B, h)
    cols = offsets[:, 0, None] + torch.arange(w, device=digits.device)          # (B, w)
    batch = torch.arange(b, device=digits.device)[:, None, None, None]
    channel = torch.arange(c, device=digits.device)[None, :, None, None]
    out[batch, channel, rows[:, None, :, None], cols[:, None, None, :]] = digits
    return out


def shift_digits(digits: torch.Tensor, generator: torch.Generator | None = None,
                 canvas: int = CANVAS) -> torch.Tensor:
    """A batch of digits (B, C, 28, 28) placed at fresh random offsets: (B, C, canvas, canvas).

    Call it on every batch of every pass: the official training never shows
    the same digit at the same place twice on purpose.
    """
    if digits.dim() != 4:
        raise ValueError(f"digits must be shaped (batch, channels, height, width), got {tuple(digits.shape)}")
    offsets = sample_offsets(digits.shape[0], generator, canvas, digits.shape[-1])
    return place_at(digits, offsets.to(digits.device), canvas)


def shifted_batches(digits: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    generator: torch.Generator | None = None, canvas: int = CANVAS,
                    drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled pass through ``digits`` (N, C, 28, 28): batches ``(canvases, labels)``, each shifted afresh.

    ``drop_last`` (the default) skips a last, smaller batch, as the official
    input pipeline (``.repeat().batch(bs)``) never yields one.
    """
    if len(digits) != len(labels):
        raise ValueError(f"digits and labels must have the same length, got {len(digits)} and {len(labels)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = torch.randperm(len(digits), generator=generator)
    stop = len(digits) - len(digits) % batch_size if drop_last else len(digits)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield shift_digits(digits[index], generator, canvas), labels[index]


def mnist_train_digits(root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's 60k training digits (N, 1, 28, 28) in [0, 1] and labels, to be shifted batch by batch."""
    return load_mnist("train", root=root)


def shifted_mnist_test(seed: int = TEST_SEED, root: str | Path | None = None, canvas: int = CANVAS,
                       split: str = "test") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed, seeded shifted set: ``(canvases (N, 1, canvas, canvas), labels (N,), offsets (N, 2))``.

    By default MNIST's 10k test digits; ``split="train"`` gives a fixed
    shifted copy of the training digits (for collecting training features).
    """
    digits, labels = load_mnist(split, root=root)
    offsets = sample_offsets(len(digits), torch.Generator().manual_seed(seed), canvas, digits.shape[-1])
    return place_at(digits, offsets, canvas), labels, offsets
