"""Generated datasets of Chapter 2: balls and dSprites-like shapes, checked against their own factors."""

import math

import numpy as np
import pytest
import torch

from objectcentric.data.balls import draw_balls, make_balls
from objectcentric.data.shapes import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    IMAGE_SIZE,
    MARGIN,
    MAX_RADIUS,
    SHAPE_AREAS,
    SHAPES,
    factor_grid,
    factor_values,
    make_shapes,
    render_indices,
    shapes_from_factors,
)


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(x, y) of each image's lit pixels, pixel (i, j) counting at (j + 0.5, i + 0.5)."""
    weights = images[:, 0].double()
    total = weights.sum((1, 2))
    centres = torch.arange(images.shape[-1], dtype=torch.float64) + 0.5
    x = (weights.sum(1) * centres).sum(1) / total
    y = (weights.sum(2) * centres).sum(1) / total
    return torch.stack([x, y], dim=1)


def shape_at(shape: int, scale=1.0, rotation=0.0, x=0.5, y=0.5) -> torch.Tensor:
    return torch.tensor([[shape, scale, rotation, x, y]], dtype=torch.float32)


# --- shapes -----------------------------------------------------------------------
def test_shapes_are_reproducible_from_the_seed():
    first, again, other = make_shapes(64, seed=3), make_shapes(64, seed=3), make_shapes(64, seed=4)
    assert torch.equal(first.images, again.images) and torch.equal(first.indices, again.indices)
    assert not torch.equal(first.indices, other.indices)
    assert first.names == FACTOR_NAMES
    assert first.images.shape == (64, 1, IMAGE_SIZE, IMAGE_SIZE) and first.images.dtype == torch.float32
    assert set(first.images.unique().tolist()) <= {0.0, 1.0}
    # The stored factors are the grid values of the stored indices, and draw the stored images.
    assert torch.equal(first.factors, factor_values(first.indices))
    assert torch.equal(render_indices(first.indices), first.images)


def test_factor_grid_is_like_dsprites():
    grid = factor_grid()
    assert tuple(grid) == FACTOR_NAMES
    assert tuple(len(values) for values in grid.values()) == FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert grid["scale"][0] == 0.5 and grid["scale"][-1] == 1.0
    assert grid["rotation"][20] == pytest.approx(math.pi) and grid["rotation"][-1] < 2 * math.pi


def test_areas_follow_the_canonical_shapes_and_the_square_of_the_scale():
    # Averaged over positions and rotations, so that pixel rounding evens out.
    grid = torch.cartesian_prod(torch.arange(0, 40, 5), torch.arange(32))  # (rotation, x) pairs
    areas = {}
    for index, name in enumerate(SHAPES):
        mean_area = {}
        for scale in (0, 5):  # scales 0.5 and 1
            head = torch.tensor([[index, scale]]).expand(len(grid), 2)
            rows = torch.cat([head, grid, torch.full((len(grid), 1), 16)], 1)  # y in the middle
            mean_area[scale] = render_indices(rows).sum((1, 2, 3)).mean().item()
        assert mean_area[5] == pytest.approx(SHAPE_AREAS[name] * MAX_RADIUS**2, rel=0.02)
        assert mean_area[5] / mean_area[0] == pytest.approx(4.0, rel=0.05)
        areas[name] = mean_area[5]
    assert areas["heart"] > areas["square"] > areas["ellipse"]


def test_half_turns_and_quarter_turns():
    # Centred at x = y = 0.5 the shape's centre sits on a pixel corner, so a
    # half turn maps pixel centres onto pixel centres and the comparison is exact.
    ellipse = shapes_from_factors(torch.cat([shape_at(1), shape_at(1, rotation=math.pi)]))
    assert torch.equal(ellipse[0], ellipse[1])
    square = shapes_from_factors(torch.cat([shape_at(0), shape_at(0, rotation=math.pi / 2)]))
    assert torch.equal(square[0], square[1])
    # The heart is not symmetric: a half turn turns it upside down (a point reflection).
    heart = shapes_from_factors(torch.cat([shape_at(2), shape_at(2, rotation=math.pi)]))
    assert not torch.equal(heart[0], heart[1])
    assert torch.equal(heart[1], heart[0].flip(-1, -2))
    # The grid's 20th rotation is the half turn: every ellipse on the grid looks the same after it.
    positions = torch.cartesian_prod(torch.arange(32), torch.arange(32))
    indices = torch.cat([torch.tensor([[1, 5, 0]]).expand(len(positions), 3), positions], dim=1)
    turned = indices.clone()
    turned[:, 2] = 20
    assert torch.equal(render_indices(indices), render_indices(turned))


def test_the_heart_points_down_and_rotation_is_counter_clockwise():
    heart = shapes_from_factors(shape_at(2))[0, 0]
    half = IMAGE_SIZE // 2
    assert heart[:half].sum() > heart[half:].sum()  # the two lobes are on top
    # An ellipse lying flat, turned by +45°, has its right end raised: more on the upper right.
    tilted = shapes_from_factors(shape_at(1, rotation=math.pi / 4))[0, 0]
    assert tilted[:half, half:].sum() > 2 * tilted[:half, :half].sum()
    assert torch.equal(shapes_from_factors(shape_at(1, rotation=-math.pi / 4))[0, 0], tilted.flip(0))


@pytest.mark.parametrize("shape", range(3))
def test_x_and_y_move_the_centre_of_mass_independently(shape):
    steps = torch.arange(FACTOR_SIZES[3])
    step = (IMAGE_SIZE - 2 * MARGIN) / (FACTOR_SIZES[3] - 1)  # pixels per grid step
    for column, moved in ((3, 0), (4, 1)):  # x moves the first coordinate, y the second
        indices = torch.stack([torch.full_like(steps, value) for value in (shape, 5, 7, 16, 16)], 1)
        indices[:, column] = steps
        centres = centre_of_mass(render_indices(indices))
        expected = MARGIN + steps.double() * step
        # x to the right, y downwards, one grid step at a time, up to pixel rounding
        assert (centres[:, moved].diff() > 0).all()
        assert torch.allclose(centres[:, moved], expected, atol=0.5)
        other = centres[:, 1 - moved]
        assert other.max() - other.min() < 0.5


def test_every_shape_stays_inside_the_picture():
    # The extreme corners of the grid at the largest scale, every rotation.
    corners = torch.tensor([[0, 0], [0, 31], [31, 0], [31, 31]])
    rows = [[s, 5, r, x, y] for s in range(3) for r in range(40) for x, y in corners.tolist()]
    images = render_indices(torch.tensor(rows))
    border = images[..., 0, :].sum() + images[..., -1, :].sum() + images[..., :, 0].sum() + images[..., :, -1].sum()
    assert border == 0
    # Every shape is whole: the same area wherever it is (up to pixel rounding).
    areas = images.sum((1, 2, 3)).view(3, 40, 4)
    assert ((areas.amax(-1) - areas.amin(-1)) / areas.amax(-1) < 0.06).all()


def test_shapes_can_be_stored_compactly():
    as_bytes = make_shapes(8, seed=0, dtype=torch.uint8).images
    assert as_bytes.dtype == torch.uint8 and torch.equal(as_bytes.float(), make_shapes(8, seed=0).images)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(5), r"shaped \(N, 5\)"),
        (torch.zeros(2, 4), r"shaped \(N, 5\)"),
        (np.zeros((2, 5)), "torch.Tensor"),
        (shape_at(3), "shape factor must be 0, 1 or 2"),
        (shape_at(0.5), "shape factor must be 0, 1 or 2"),
        (shape_at(0, scale=0.0), r"scale must lie in \(0, 1\]"),
        (shape_at(0, x=1.5), r"x must lie in \[0, 1\]"),
        (shape_at(0, y=-0.1), r"y must lie in \[0, 1\]"),
        (shape_at(0, rotation=float("nan")), "NaN"),
    ],
)
def test_bad_factors_are_rejected_with_what_was_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        shapes_from_factors(bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[0, 0, 0, 0, 32]]), r"lie in \[0, size\)"),
        (torch.tensor([[0, -1, 0, 0, 0]]), r"lie in \[0, size\)"),
        (torch.zeros(1, 5), "integers"),
        (torch.zeros(1, 4, dtype=torch.long), r"shaped \(N, 5\)"),
    ],
)
def test_bad_indices_are_rejected_with_what_was_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        render_indices(bad)


# --- balls ------------------------------------------------------------------------
@pytest.mark.parametrize("n_balls", [1, 2])
def test_balls_are_reproducible_from_the_seed(n_balls):
    first, again, other = (make_balls(32, n_balls=n_balls, seed=s) for s in (5, 5, 6))
    assert torch.equal(first.images, again.images) and torch.equal(first.factors, again.factors)
    assert not torch.equal(first.factors, other.factors)
    assert first.images.shape == (32, 1, 64, 64) and first.factors.shape == (32, 3 * n_balls)
    assert set(first.images.unique().tolist()) <= {0.0, 1.0}  # black and white
    assert len(first.names) == 3 * n_balls


def test_one_ball_sits_where_its_factors_say():
    balls = make_balls(500, n_balls=1, seed=0)
    assert balls.names == ("x", "y", "radius")
    x, y, radius = balls.factors.double().unbind(1)
    assert torch.allclose(centre_of_mass(balls.images), torch.stack([x, y], 1), atol=0.3)
    assert torch.allclose(balls.images.sum((1, 2, 3)).double(), math.pi * radius**2, rtol=0.1)
    assert (radius >= 4).all() and (radius <= 8).all()
    assert ((x - radius >= 0) & (x + radius <= 64) & (y - radius >= 0) & (y + radius <= 64)).all()


def test_two_balls_are_separate_ordered_and_where_their_factors_say():
    balls = make_balls(300, n_balls=2, seed=0, radius=(3.0, 6.0), size=48)
    assert balls.names == ("x1", "y1", "radius1", "x2", "y2", "radius2")
    first, second = draw_balls(balls.factors[:, :3], size=48), draw_balls(balls.factors[:, 3:], size=48)
    assert torch.equal(torch.maximum(first, second), balls.images)
    assert not (first * second).any()  # no pixel shared
    assert (balls.factors[:, 0] <= balls.factors[:, 3]).all()  # listed left to right
    for ball, factors in ((first, balls.factors[:, :2]), (second, balls.factors[:, 3:5])):
        assert torch.allclose(centre_of_mass(ball), factors.double(), atol=0.35)


def test_balls_of_one_size():
    balls = make_balls(10, radius=(5.0, 5.0), seed=1)
    assert torch.equal(balls.factors[:, 2], torch.full((10,), 5.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_balls": 3}, "n_balls must be 1 or 2"),
        ({"radius": (8.0, 4.0)}, "0 < low <= high"),
        ({"radius": (0.0, 4.0)}, "0 < low <= high"),
        ({"radius": (4.0, 40.0)}, "does not fit"),
        ({"n": -1}, "non-negative"),
    ],
)
def test_bad_ball_settings_are_rejected_with_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_balls(**{"n": 4, **kwargs})
    with pytest.raises(ValueError, match=r"shaped \(N, 3 \* n_balls\)"):
        draw_balls(torch.zeros(4, 4))
