"""One-ball and two-ball images, generated with their ground truth (Chapter 2, β-VAE).

Black-and-white pictures of balls at random positions, the datasets on which
the β-VAE is first seen to find position latents (Higgins et al., "Early
visual concept learning with unsupervised deep learning", 2016, and the
recreation the book follows). Each image keeps the factors that drew it: the
centre and radius of every ball.

Conventions: images are binary, shaped (N, 1, size, size); x grows to the
right and y grows downwards, in pixels, with pixel (row i, column j) covering
[j, j + 1] × [i, i + 1], so a ball centred at (x, y) has its centre of mass
there. Balls lie wholly inside the picture.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Balls(NamedTuple):
    """A generated balls set (Chapter 2, β-VAE): images and the factors that drew them."""

    images: torch.Tensor  # (N, 1, size, size), values 0 or 1
    factors: torch.Tensor  # (N, 3 * n_balls): x, y, radius of each ball, in pixels
    names: tuple[str, ...]


def factor_names(n_balls: int) -> tuple[str, ...]:
    """("x", "y", "radius") for one ball; ("x1", "y1", "radius1", "x2", ...) for more."""
    if n_balls == 1:
        return ("x", "y", "radius")
    return tuple(f"{name}{i}" for i in range(1, n_balls + 1) for name in ("x", "y", "radius"))


def draw_balls(
    factors: torch.Tensor, size: int = 64, dtype: torch.dtype = torch.float32, chunk: int = 2048
) -> torch.Tensor:
    """Draw balls from their factors (N, 3 * n_balls) into binary images (N, 1, size, size).

    A pixel is on when its centre lies inside some ball. Images are made
    ``chunk`` at a time, one tensor expression per chunk, so memory stays bounded.
    """
    if not isinstance(factors, torch.Tensor) or factors.dim() != 2 or factors.shape[1] % 3 or not factors.shape[1]:
        shape = tuple(factors.shape) if isinstance(factors, torch.Tensor) else type(factors).__name__
        raise ValueError(f"ball factors must be a tensor shaped (N, 3 * n_balls): x, y, radius per ball; got {shape}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    balls = factors.to(torch.float32).unflatten(1, (-1, 3))  # (N, n_balls, 3)
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    images = torch.empty(factors.shape[0], 1, size, size, dtype=dtype)
    for start in range(0, balls.shape[0], chunk):
        x, y, radius = (b[..., None, None] for b in balls[start : start + chunk].unbind(-1))  # (n, balls, 1, 1)
        inside = (centres.view(1, 1, 1, -1) - x) ** 2 + (centres.view(1, 1, -1, 1) - y) ** 2 <= radius**2
        images[start : start + chunk, 0] = inside.any(dim=1).to(dtype)
    return images


def make_balls(
    n: int,
    n_balls: int = 1,
    size: int = 64,
    radius: tuple[float, float] = (4.0, 8.0),
    seed: int = 0,
    min_gap: float = 1.0,
    dtype: torch.dtype = torch.float32,
    max_rounds: int = 1000,
) -> Balls:
    """n images of ``n_balls`` white balls on black, with their factors (Chapter 2, β-VAE).

    Each radius is uniform in ``radius`` (give equal bounds for balls of one
    size) and each centre uniform over the positions that keep the ball inside
    the picture. With two balls, pairs closer than ``min_gap`` pixels are
    drawn again, so that both balls stay visible and separate; the balls are
    then listed from left to right, since which ball is "first" is otherwise
    arbitrary and a factor should be a function of the picture.

    The same ``seed`` gives the same images and factors on every machine.
    """
    if n < 0:
        raise ValueError(f"n must be a non-negative number of images, got {n}")
    if n_balls not in (1, 2):
        raise ValueError(f"n_balls must be 1 or 2 (the one-ball and two-ball sets), got {n_balls}")
    low, high = (float(r) for r in radius)
    if not 0 < low <= high:
        raise ValueError(f"radius must be (low, high) with 0 < low <= high, got {radius}")
    if 2 * high >= size:
        raise ValueError(
            f"a ball of radius {high} does not fit in a {size}×{size} picture; expected 2 * radius < size"
        )
    if n_balls == 2 and 4 * high + min_gap > 2 * size:
        raise ValueError(
            f"two balls of radius up to {high} with gap {min_gap} hardly fit side by side in {size} pixels"
        )

    generator = torch.Generator().manual_seed(int(seed))

    def draw(m: int) -> torch.Tensor:
        r = low + (high - low) * torch.rand(m, n_balls, generator=generator)
        # The centre ranges over [r, size - r], so the whole ball is in the picture.
        x = r + (size - 2 * r) * torch.rand(m, n_balls, generator=generator)
        y = r + (size - 2 * r) * torch.rand(m, n_balls, generator=generator)
        return torch.stack([x, y, r], dim=-1)  # (m, n_balls, 3)

    balls = draw(n)
    if n_balls == 2:
        # Redraw only the overlapping pairs, all at once, until none is left:
        # a loop over rounds (a handful), not over images.
        for _ in range(max_rounds):
            gap = (balls[:, 0, :2] - balls[:, 1, :2]).norm(dim=-1) - balls[:, 0, 2] - balls[:, 1, 2]
            bad = gap < min_gap
            if not bad.any():
                break
            balls[bad] = draw(int(bad.sum()))
        else:
            raise ValueError(f"could not place two separate balls in {max_rounds} rounds; use smaller radii or min_gap")
        order = balls[..., 0].argsort(dim=1)
        balls = balls.gather(1, order[..., None].expand(-1, -1, 3))
    factors = balls.flatten(1)
    return Balls(draw_balls(factors, size=size, dtype=dtype), factors, factor_names(n_balls))
