"""Input checks shared by every model: wrong input fails early, saying what was expected."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_BATCH_HINT = "a single image needs a batch dimension: x.unsqueeze(0)"


def _shape_text(shape: Sequence, batched: bool) -> str:
    return "(" + ", ".join((["batch"] if batched else []) + [str(s) for s in shape]) + ")"


def _fits(x: torch.Tensor, shape: Sequence, batched: bool) -> bool:
    sizes = x.shape[1:] if batched else x.shape
    return len(sizes) == len(shape) and all(isinstance(s, str) or n == s for n, s in zip(sizes, shape))


def check_image_batch(
    x,
    image_shape: Sequence,
    name: str = "images",
    *,
    dtype: torch.dtype | None = torch.float32,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    tolerance: float = 0.0,
    batched: bool = True,
    hint: str | None = None,
) -> torch.Tensor:
    """Return ``x`` as a float batch shaped ``(B, *image_shape)``, checked, or raise ``ValueError``.

    The one image-input check of the package (models, :mod:`spatial`, the
    Multi-MNIST maker and the widgets). Each message names what is wrong and
    how to fix it:

    - ``x`` must be a floating-point ``torch.Tensor``; integer pixels are refused
      (``x.float() / 255``). Other float dtypes (float64, float16, bfloat16) are
      converted to ``dtype`` (default float32, the models' dtype); ``dtype=None``
      keeps the input's float dtype (dtype-generic code such as :mod:`spatial`).
    - Its shape must be ``(B, *image_shape)``. ``image_shape`` holds ints (that
      size exactly) and strings (any size, named in the message, e.g.
      ``("channels", "height", "width")``); a list of such shapes accepts any
      of them. A flat batch ``(B, prod(image_shape))`` is accepted and
      reshaped when the shape is all ints, since fully connected models see
      images that way. ``batched=False`` checks one image ``image_shape``
      (no batch dimension, no flat form). ``hint`` replaces the fix suggested
      for a wrong shape.
    - An empty batch (B = 0) raises "got an empty batch", and an image with a
      zero size "must not be empty", rather than giving NaN means later.
    - Values must be finite and, unless ``value_range`` is None, lie in
      ``value_range`` (default [0, 1]) up to ``tolerance`` (for decoders whose
      sigmoid rounds just outside; the caller clips).
    """
    alternatives = len(image_shape) > 0 and isinstance(image_shape[0], (tuple, list))
    shapes = [tuple(s) for s in image_shape] if alternatives else [tuple(image_shape)]
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped {_shape_text(shapes[0], batched)}, "
                         f"got {type(x).__name__}")
    if not x.is_floating_point():
        low_high = "" if value_range is None else f" with values in [{value_range[0]:g}, {value_range[1]:g}]"
        raise ValueError(f"{name} must be floating point{low_high}, got dtype {x.dtype}; "
                         "convert uint8 pixels with x.float() / 255")
    fixed = [s for s in shapes if all(isinstance(n, int) for n in s)]
    if batched and x.dim() == 2 and not any(_fits(x, s, batched) for s in shapes):
        flat = next((s for s in fixed if math.prod(s) == x.shape[1]), None)
        if flat is not None:
            x = x.reshape(-1, *flat)
    if not any(_fits(x, s, batched) for s in shapes):
        expected = " or ".join(_shape_text(s, batched) for s in shapes)
        if batched and len(fixed) == 1:
            expected += f" or (batch, {math.prod(fixed[0])})"
        fix = hint if hint is not None else (_BATCH_HINT if batched else "")
        raise ValueError(f"{name} must be shaped {expected}, got {tuple(x.shape)}" + (f"; {fix}" if fix else ""))
    if batched and x.shape[0] == 0:
        raise ValueError(f"{name}: got an empty batch (0 images, shape {tuple(x.shape)}); "
                         "pass at least one image")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    if not torch.isfinite(x).all():
        expected = "finite" if value_range is None else f"finite, in [{value_range[0]:g}, {value_range[1]:g}]"
        raise ValueError(f"{name} must be {expected}, got NaN or infinite values; check what produced them")
    if value_range is not None:
        low, high = value_range
        if x.min() < low - tolerance or x.max() > high + tolerance:
            raise ValueError(
                f"{name} must have values in [{low:g}, {high:g}], got min {x.min().item():.3g} and "
                f"max {x.max().item():.3g}; apply a sigmoid to logits, or rescale 0..255 pixels with x / 255"
            )
    return x
