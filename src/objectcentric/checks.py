"""Input checks shared by every model: wrong input fails early, saying what was expected."""

from collections.abc import Sequence

import torch


def check_image_batch(x, image_shape: Sequence[int], name: str = "images") -> torch.Tensor:
    """Return ``x`` as a float batch shaped ``(B, *image_shape)`` with values in [0, 1].

    A flat batch ``(B, prod(image_shape))`` is accepted and reshaped, since
    fully connected models see images that way. Anything else raises a
    ``ValueError`` naming the expected shape and range, and how to get there.
    """
    image_shape = tuple(image_shape)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be floating point with values in [0, 1], got dtype {x.dtype}; "
            "convert uint8 pixels with x.float() / 255"
        )
    n_pixels = 1
    for size in image_shape:
        n_pixels *= size
    if x.dim() == 2 and x.shape[1] == n_pixels:
        x = x.reshape(-1, *image_shape)
    if x.dim() != len(image_shape) + 1 or tuple(x.shape[1:]) != image_shape:
        raise ValueError(
            f"{name} must be shaped (batch, {', '.join(map(str, image_shape))}) "
            f"or (batch, {n_pixels}), got {tuple(x.shape)}; "
            "a single image needs a batch dimension: x.unsqueeze(0)"
        )
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must have values in [0, 1], got min {x.min().item():.3g} and "
            f"max {x.max().item():.3g}; rescale 0..255 pixels with x / 255"
        )
    return x
