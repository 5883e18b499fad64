"""The spatial transformer's conventions (Chapter 4): which way theta goes, and its inverse."""

import math

import pytest
import torch
import torch.nn.functional as F

from objectcentric.spatial import (
    affine_matrix,
    compose_affine,
    crop,
    invert_affine,
    paint,
    pixel_centers,
    sampling_grid,
    transform,
    where_to_theta,
    window_outline,
)

IDENTITY = torch.tensor([[1.0, 0, 0], [0, 1, 0]])


def smooth_images(b=3, c=1, size=28, seed=0):
    """Random images without pixel-level detail, so that bilinear resampling is nearly exact."""
    coarse = torch.rand(b, c, 5, 5, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def dot(row, col, size=28):
    """A black image with one white pixel at (row, col)."""
    image = torch.zeros(1, 1, size, size)
    image[0, 0, row, col] = 1.0
    return image


def argmax2d(image):
    flat = int(image.reshape(-1).argmax())
    return divmod(flat, image.shape[-1])


def random_thetas(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    return affine_matrix(u(0.4, 1.5), u(-3, 3), u(-0.5, 0.5), u(-0.5, 0.5), u(-0.5, 0.5),
                         scale_y=u(0.4, 1.5))


# --- coordinates and matrices ----------------------------------------------------------
def test_pixel_centers_match_affine_grid_identity():
    assert torch.allclose(pixel_centers(4), torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    grid = sampling_grid(IDENTITY, (3, 5))
    assert grid.shape == (1, 3, 5, 2)
    assert torch.allclose(grid[0, 0, :, 0], pixel_centers(5))  # x runs along a row
    assert torch.allclose(grid[0, :, 0, 1], pixel_centers(3))  # y runs down a column


def test_affine_matrix_parameters_and_broadcasting():
    assert torch.allclose(affine_matrix(), IDENTITY[None])
    theta = affine_matrix(scale=torch.tensor([0.5, 2.0]), shift_x=0.25, shift_y=-0.5)
    assert theta.shape == (2, 2, 3)
    expected = torch.tensor([[[0.5, 0, 0.25], [0, 0.5, -0.5]], [[2.0, 0, 0.25], [0, 2.0, -0.5]]])
    assert torch.allclose(theta, expected)
    quarter = affine_matrix(rotation=math.pi / 2)  # window x-axis (1, 0) -> image (0, 1): down
    assert torch.allclose(quarter, torch.tensor([[[0.0, -1, 0], [1, 0, 0]]]), atol=1e-6)
    sheared = affine_matrix(shear=0.5)
    assert torch.allclose(sheared, torch.tensor([[[1.0, 0.5, 0], [0, 1, 0]]]))
    assert torch.allclose(affine_matrix(2.0, scale_y=3.0), torch.tensor([[[2.0, 0, 0], [0, 3, 0]]]))
    assert affine_matrix(torch.tensor(1.0, dtype=torch.float64)).dtype == torch.float64


def test_where_to_theta_is_the_scaled_shifted_window():
    z_where = torch.tensor([[0.5, 0.2, -0.3], [1.0, 0.0, 0.0]])
    theta = where_to_theta(z_where)
    assert torch.allclose(theta, affine_matrix(z_where[:, 0], 0.0, 0.0, z_where[:, 1], z_where[:, 2]))
    assert torch.allclose(theta[1], IDENTITY)
    outline = window_outline(theta)[0]  # corners (x, y): centre (0.2, -0.3), half-width 0.5
    assert torch.allclose(outline[0], torch.tensor([-0.3, -0.8]))
    assert torch.allclose(outline[2], torch.tensor([0.7, 0.2]))


def test_inverse_composed_with_forward_is_identity_matrices():
    theta = random_thetas(8)
    inverse = invert_affine(theta)
    identity = IDENTITY.expand(8, 2, 3)
    assert torch.allclose(compose_affine(theta, inverse), identity, atol=1e-5)
    assert torch.allclose(compose_affine(inverse, theta), identity, atol=1e-5)
    assert torch.allclose(invert_affine(inverse), theta, atol=1e-5)
    assert torch.allclose(inverse[:, :, :2], torch.linalg.inv(theta[:, :, :2]), atol=1e-5)


# --- images -------------------------------------------------------------------------
def test_identity_crop_and_transform_return_the_image():
    images = torch.rand(4, 3, 28, 28)
    assert torch.allclose(crop(images, IDENTITY, 28), images, atol=1e-5)
    assert torch.allclose(transform(images, IDENTITY), images, atol=1e-5)
    assert torch.allclose(paint(images, IDENTITY, 28), images, atol=1e-5)


def test_shift_moves_the_window_not_the_content():
    """The window's centre is at (shift_x, shift_y): this catches a pose fed to affine_grid as is.

    A window of half-width 0.5 centred at x = 0.5 covers the right half of a 28 x 28 image,
    columns 14..27, and rows 7..20; a 14 x 14 crop of it is exact pixel for pixel.
    """
    image = dot(row=10, col=17)
    theta = affine_matrix(scale=0.5, shift_x=0.5)
    window = crop(image, theta, 14)
    assert argmax2d(window) == (10 - 7, 17 - 14)
    assert window.max() == pytest.approx(1.0, abs=1e-5)
    assert argmax2d(paint(window, theta, 28)) == (10, 17)  # painted back where it came from
    # The same numbers fed the wrong way (the inverse) look at another place entirely.
    assert crop(image, invert_affine(theta), 14).max() < 0.5


def test_shift_y_points_down_and_rotation_direction():
    image = dot(row=21, col=14)  # below the centre
    assert argmax2d(crop(image, affine_matrix(scale=0.5, shift_y=0.5), 14)) == (21 - 14, 0 + 7)
    # A quarter turn: the image's "below" is the window's "right" (content turns anticlockwise).
    image = dot(row=14, col=24)  # right of the centre
    turned = transform(image, affine_matrix(rotation=math.pi / 2))
    row, col = argmax2d(turned)
    assert col == pytest.approx(13.5, abs=1) and row < 7  # now above the centre


def test_air_paint_places_the_object_in_its_box():
    """z_where = (0.4, 0.2, -0.2) on a 50 x 50 canvas is the box x in [-0.2, 0.6], y in [-0.6, 0.2]:
    columns 20..39 and rows 10..29; a 20 x 20 object fills it exactly."""
    canvas = paint(torch.ones(1, 1, 20, 20), where_to_theta(torch.tensor([[0.4, 0.2, -0.2]])), 50)
    box = torch.zeros(50, 50)
    box[10:30, 20:40] = 1.0
    assert torch.allclose(canvas[0, 0], box, atol=1e-5)


def test_small_scale_zooms_in():
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 13:15, 13:15] = 1.0  # a 2 x 2 square at the centre
    zoomed = crop(image, affine_matrix(scale=0.5), 28)  # half the width, same pixel count
    assert float(zoomed.sum()) == pytest.approx(4 * float(image.sum()), rel=0.05)
    assert (zoomed > 0.99).sum() >= 4  # the square's middle is 4 x 4 pixels, bilinear at its rim
    assert float(crop(image, affine_matrix(scale=2.0), 28).sum()) == pytest.approx(1.0, rel=0.05)


def test_crop_then_paint_round_trips_the_window():
    images = smooth_images(3, 2)
    theta = random_thetas(3, seed=1)
    back = paint(crop(images, theta, 40), theta, 28)  # oversampled crops: little is lost
    mask = paint(torch.ones(3, 1, 40, 40), theta, 28)
    inside = mask > 0.999
    inside &= F.max_pool2d(1.0 - mask, 3, 1, 1) == 0  # one pixel away from the window's rim
    # ... and away from the image's border, where the window saw zero padding.
    inside[:, :, [0, -1], :] = False
    inside[:, :, :, [0, -1]] = False
    inside = inside.expand_as(images)
    assert inside.sum() > 100
    assert (back - images)[inside].abs().max() < 0.05
    assert back[(mask < 1e-6).expand_as(back)].abs().max() == 0  # nothing outside the window


def test_inverse_transform_undoes_transform_on_images():
    images = smooth_images(4, seed=2)
    theta = affine_matrix(scale=torch.tensor([0.8, 0.9, 1.0, 0.7]), rotation=0.4, shear=0.2,
                          shift_x=0.1, shift_y=-0.1)
    there_and_back = transform(transform(images, theta), invert_affine(theta))
    twice = transform(images, compose_affine(theta, invert_affine(theta)))
    assert torch.allclose(twice, images, atol=1e-4)
    centre = (slice(None), slice(None), slice(9, 19), slice(9, 19))
    assert (there_and_back - images)[centre].abs().max() < 0.05


def test_gradients_flow_to_theta_and_images():
    images = smooth_images(2).requires_grad_()
    params = torch.tensor([[0.7, 0.3, 0.1, 0.2, -0.1], [0.9, -0.2, 0.0, -0.3, 0.2]],
                          requires_grad=True)
    theta = affine_matrix(*params.T)
    out = paint(crop(images, theta, 20), theta, 28)
    out.square().sum().backward()
    assert torch.isfinite(params.grad).all() and (params.grad.abs() > 0).all()
    assert images.grad.abs().sum() > 0
    z_where = torch.tensor([[0.5, 0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    image = smooth_images(1, seed=3).double()
    assert torch.autograd.gradcheck(lambda z: crop(image, where_to_theta(z), 9), (z_where,))


def test_batch_items_are_independent_and_singletons_broadcast():
    images = smooth_images(4, 3)
    theta = random_thetas(4, seed=4)
    batched = crop(images, theta, 12)
    one_by_one = torch.cat([crop(images[i:i + 1], theta[i:i + 1], 12) for i in range(4)])
    assert torch.allclose(batched, one_by_one, atol=1e-6)
    assert crop(images[:1], theta, (12, 10)).shape == (4, 3, 12, 10)  # one image, four windows
    assert torch.allclose(crop(images, theta[1], 12)[1], batched[1], atol=1e-6)  # one window


@pytest.mark.parametrize("call, message", [
    (lambda: crop(torch.rand(1, 28, 28), IDENTITY, 8), "batch, channels, height, width"),
    (lambda: crop(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), IDENTITY, 8), "floating point"),
    (lambda: crop(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 3), 8), r"\(batch, 2, 3\)"),
    (lambda: crop(torch.rand(2, 1, 8, 8), torch.rand(3, 2, 3), 8), "same batch size"),
    (lambda: crop(torch.rand(1, 1, 8, 8), IDENTITY, 0), "positive int"),
    (lambda: crop(torch.rand(1, 1, 8, 8), IDENTITY, (4, 4, 4)), "positive int"),
    (lambda: crop(torch.full((1, 1, 8, 8), math.nan), IDENTITY, 4), "NaN"),
    (lambda: crop(torch.rand(1, 1, 8, 8), IDENTITY * math.inf, 4), "NaN or infinite"),
    (lambda: crop(torch.rand(1, 1, 8, 8), IDENTITY.tolist(), 4), "torch.Tensor"),
    (lambda: affine_matrix(scale=0.0), "nonzero"),
    (lambda: affine_matrix(scale=torch.ones(2), rotation=torch.ones(3)), "batch size"),
    (lambda: affine_matrix(rotation=math.nan), "rotation"),
    (lambda: where_to_theta(torch.tensor([[0.0, 0.1, 0.1]])), "nonzero"),
    (lambda: where_to_theta(torch.rand(2, 4)), r"\(batch, 3\)"),
    (lambda: invert_affine(torch.tensor([[1.0, 2, 0], [2, 4, 0]])), "singular"),
    (lambda: paint(torch.rand(1, 1, 4, 4), torch.zeros(2, 3), 8), "singular"),
    (lambda: pixel_centers(0), "positive int"),
])
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_images_keep_their_float_dtype_and_an_empty_batch_is_refused():
    image = smooth_images(2).double()
    assert crop(image, IDENTITY, 8).dtype == torch.float64  # spatial is dtype-generic (gradcheck in float64)
    assert torch.allclose(crop(image, IDENTITY, 28), image)
    assert crop(image * 5 - 2, IDENTITY, 8).shape == (2, 1, 8, 8)  # any range: not only pixels in [0, 1]
    with pytest.raises(ValueError, match="got an empty batch"):
        crop(torch.rand(0, 1, 8, 8), IDENTITY, 4)
    with pytest.raises(ValueError, match="must not be empty"):
        crop(torch.rand(1, 1, 0, 8), IDENTITY, 4)
