"""A dSprites-like shapes set, drawn procedurally (Chapter 2, β-VAE).

Five independent factors generate every image: the shape (square, ellipse,
heart), its scale, its rotation and the x and y of its centre. Because the
factors are known, Chapter 2 can measure how well a β-VAE's latents line up
with them (MIG, the β-VAE metric in :mod:`objectcentric.disentanglement`).

Each shape is an inside-test on a canonical plane in which the shape fits in
the unit disk. Rendering maps every pixel centre back onto that plane (undo
the shift, then the rotation, then the scale) and asks the test: one tensor
expression for the whole batch, no loop over images, no files, no download.

Conventions: images are 64 × 64, binary, shaped (N, 1, 64, 64); x grows to
the right and y grows downwards, as columns and rows do; a positive rotation
turns the shape counter-clockwise on screen; the centre of every shape is its
centre of mass, so shifting x or y moves the centre of mass by the same amount.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

IMAGE_SIZE = 64
SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
# As in dSprites: 3 shapes, 6 scales, 40 rotations, 32 x and 32 y positions.
FACTOR_SIZES = (3, 6, 40, 32, 32)

# The radius, in pixels, of the disk that holds a shape at scale 1. The centre
# stays this far (plus one pixel) from the border, so that any shape at any
# scale, rotation and position is drawn whole: no factor is ever clipped away.
MAX_RADIUS = 10.0
MARGIN = MAX_RADIUS + 1.0

# The canonical shapes, each inside the unit disk.
SQUARE_HALF_SIDE = 0.7  # corners at distance 0.99
ELLIPSE_AXES = (1.0, 0.5)
# The heart is the curve (X² + Y² - 1)³ = X² Y³. Its centre of mass is at
# Y = 0.2935 and its farthest point is 1.2932 from there, so we shift it down
# by that much and shrink it by 1.3 to bring it into the unit disk, centred.
HEART_CENTRE_Y = 0.2935
HEART_EXTENT = 1.3
# Areas on the canonical plane, so that a reader (or a test) can check a render:
# a shape at scale s covers about AREA * (s * MAX_RADIUS)² pixels.
SHAPE_AREAS = {
    "square": (2 * SQUARE_HALF_SIDE) ** 2,
    "ellipse": math.pi * ELLIPSE_AXES[0] * ELLIPSE_AXES[1],
    "heart": 3.6619 / HEART_EXTENT**2,  # heart area 3.6619, measured on a fine grid
}


class Shapes(NamedTuple):
    """A generated shapes set (Chapter 2, β-VAE): images and the factors that drew them."""

    images: torch.Tensor  # (N, 1, 64, 64), values 0 or 1
    factors: torch.Tensor  # (N, 5) factor values, columns as in FACTOR_NAMES
    indices: torch.Tensor  # (N, 5) int64 position of each value in factor_grid()
    names: tuple[str, ...]


def factor_grid() -> dict[str, torch.Tensor]:
    """The values each factor takes, like dSprites (Chapter 2, β-VAE).

    shape: 0, 1, 2 (index into ``SHAPES``); scale: 6 values from 0.5 to 1;
    rotation: 40 angles 2πk/40 in radians (k = 0..39; dSprites also lists 2π,
    which draws the same image as 0, so we leave it out); x, y: 32 values from
    0 (left, top) to 1 (right, bottom).

    The square looks the same every quarter turn and the ellipse every half
    turn, so for them some rotation values draw identical images; dSprites has
    the same ambiguity and the metrics have to live with it.
    """
    return {
        "shape": torch.arange(FACTOR_SIZES[0], dtype=torch.float32),
        "scale": torch.linspace(0.5, 1.0, FACTOR_SIZES[1]),
        "rotation": torch.arange(FACTOR_SIZES[2], dtype=torch.float32) * (2 * math.pi / FACTOR_SIZES[2]),
        "x": torch.linspace(0.0, 1.0, FACTOR_SIZES[3]),
        "y": torch.linspace(0.0, 1.0, FACTOR_SIZES[4]),
    }


def _check_indices(indices) -> torch.Tensor:
    if not isinstance(indices, torch.Tensor):
        raise ValueError(f"factor indices must be a torch.Tensor, got {type(indices).__name__}")
    if indices.dim() != 2 or indices.shape[1] != len(FACTOR_SIZES):
        raise ValueError(
            f"factor indices must be shaped (N, {len(FACTOR_SIZES)}), one column per factor "
            f"{FACTOR_NAMES}, got {tuple(indices.shape)}"
        )
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError(f"factor indices must be integers, got dtype {indices.dtype}; use .long()")
    sizes = torch.tensor(FACTOR_SIZES)
    if indices.numel() and ((indices < 0).any() or (indices >= sizes).any()):
        raise ValueError(f"factor indices must lie in [0, size) with sizes {FACTOR_SIZES} for {FACTOR_NAMES}")
    return indices.long()


def factor_values(indices: torch.Tensor) -> torch.Tensor:
    """Turn factor indices (N, 5) into the factor values that ``shapes_from_factors`` draws."""
    indices = _check_indices(indices)
    grid = factor_grid()
    return torch.stack([grid[name][indices[:, i]] for i, name in enumerate(FACTOR_NAMES)], dim=1)


def sample_factor_indices(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n factor index vectors (n, 5), each factor drawn uniformly and independently."""
    if n < 0:
        raise ValueError(f"n must be a non-negative number of images, got {n}")
    columns = [torch.randint(size, (n,), generator=generator) for size in FACTOR_SIZES]
    return torch.stack(columns, dim=1)


def _check_factors(factors) -> torch.Tensor:
    if not isinstance(factors, torch.Tensor):
        raise ValueError(f"factors must be a torch.Tensor, got {type(factors).__name__}")
    if factors.dim() != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(
            f"factors must be shaped (N, {len(FACTOR_NAMES)}), columns {FACTOR_NAMES}, "
            f"got {tuple(factors.shape)}; a single image needs a batch dimension: f.unsqueeze(0)"
        )
    factors = factors.to(torch.float32)
    if factors.numel() == 0:
        return factors
    if not torch.isfinite(factors).all():
        raise ValueError("factors contain NaN or infinite values")
    shape, scale, _, x, y = factors.unbind(1)
    if not ((shape == shape.round()) & (shape >= 0) & (shape < len(SHAPES))).all():
        raise ValueError(f"the shape factor must be 0, 1 or 2 (for {SHAPES}), got values {shape.unique().tolist()}")
    if ((scale <= 0) | (scale > 1)).any():
        raise ValueError(
            f"scale must lie in (0, 1], got min {scale.min().item():.3g} and max {scale.max().item():.3g}; "
            "at scale 1 a shape is already as large as the margins allow"
        )
    for name, value in (("x", x), ("y", y)):
        if ((value < 0) | (value > 1)).any():
            raise ValueError(
                f"{name} must lie in [0, 1] (0 = {'left' if name == 'x' else 'top'}), got min "
                f"{value.min().item():.3g} and max {value.max().item():.3g}"
            )
    return factors


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The canonical inside-tests, evaluated for every shape and picked per image.

    ``u`` points right and ``v`` points up on the canonical plane. Computing all
    three tests and selecting costs three cheap comparisons per pixel and keeps
    the whole batch one tensor expression.
    """
    square = torch.maximum(u.abs(), v.abs()) <= SQUARE_HALF_SIDE
    a, b = ELLIPSE_AXES
    ellipse = (u / a) ** 2 + (v / b) ** 2 <= 1
    hx = u * HEART_EXTENT
    hy = v * HEART_EXTENT + HEART_CENTRE_Y
    heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    shape = shape.view(-1, 1, 1)
    return torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))


def shapes_from_factors(
    factors: torch.Tensor, dtype: torch.dtype = torch.float32, chunk: int = 2048, device=None
) -> torch.Tensor:
    """Draw exactly the given factors (Chapter 2, β-VAE): (N, 5) values to (N, 1, 64, 64) binary images.

    Columns are (shape index, scale, rotation in radians, x, y) as in
    ``FACTOR_NAMES``; any values in range are drawn, not only those of
    ``factor_grid()``. Images are made ``chunk`` at a time so that memory stays
    bounded for the full 737,280-image grid; ``dtype=torch.uint8`` or
    ``torch.bool`` stores such a set in a quarter or less of the float size.
    ``device`` (e.g. ``"cuda"``) draws and returns the images there: on a GPU
    a training set of 10⁵ images takes a fraction of a second.
    """
    factors = _check_factors(factors)
    device = torch.device(device) if device is not None else factors.device
    factors = factors.to(device)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    images = torch.empty(factors.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE, dtype=dtype, device=device)
    # Pixel centres sit at j + 0.5, so that a shape centred at c has its centre of mass at c.
    centres = torch.arange(IMAGE_SIZE, dtype=torch.float32, device=device) + 0.5
    px = centres.view(1, 1, -1)
    py = centres.view(1, -1, 1)
    travel = IMAGE_SIZE - 2 * MARGIN  # how far the centre moves as x or y goes from 0 to 1
    for start in range(0, factors.shape[0], chunk):
        shape, scale, rotation, x, y = (f.view(-1, 1, 1) for f in factors[start : start + chunk].unbind(1))
        radius = scale * MAX_RADIUS
        # Undo the shift and the scale; flip y so that v points up on screen.
        du = (px - (MARGIN + x * travel)) / radius
        dv = -(py - (MARGIN + y * travel)) / radius
        # Undo a counter-clockwise rotation by rotating the pixel clockwise.
        cos, sin = torch.cos(rotation), torch.sin(rotation)
        u = cos * du + sin * dv
        v = -sin * du + cos * dv
        images[start : start + chunk, 0] = _inside(shape, u, v).to(dtype)
    return images


def render_indices(indices: torch.Tensor, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Draw factor indices (N, 5) from ``factor_grid()``: what the disentanglement metrics call."""
    return shapes_from_factors(factor_values(indices.cpu()), dtype=dtype, device=device)


def make_shapes(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Shapes:
    """n shapes with factors drawn uniformly from ``factor_grid()`` (Chapter 2, β-VAE).

    The same ``seed`` gives the same images and factors on every machine: the
    factors come from a seeded CPU generator and the drawing is deterministic.
    """
    generator = torch.Generator().manual_seed(int(seed))
    indices = sample_factor_indices(n, generator)
    factors = factor_values(indices)
    return Shapes(shapes_from_factors(factors, dtype=dtype), factors, indices, FACTOR_NAMES)
