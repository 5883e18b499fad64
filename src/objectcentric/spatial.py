"""Differentiable crops and their inverse (Chapter 4, spatial transformer).

A spatial transformer (Jaderberg et al., 2015) reads an image through an affine
map. Conventions, used by every function here and by the later chapters
(Chapter 5, D-VAE-ST; Chapter 6, AIR):

- **Normalised coordinates.** A position in an image is ``(x, y)`` with ``x``
  from -1 (left edge) to +1 (right edge) and ``y`` from -1 (top edge) to +1
  (bottom edge): y points *down*, as in the pixel array. Pixel ``i`` of ``n``
  has its centre at ``(2 i + 1) / n - 1`` (PyTorch's ``align_corners=False``,
  used throughout), so the image's outer pixel edges are exactly at -1 and +1
  whatever its size.
- **theta maps window coordinates to image coordinates.** A ``(B, 2, 3)``
  matrix ``theta = [A | t]`` describes a *window*: the window point ``w``
  (normalised coordinates of the window, or crop) lies at ``A w + t`` in the
  image. ``t`` is where the window's centre is; the columns of ``A`` are the
  window's half-axes. This is what ``F.affine_grid`` expects, so
  :func:`crop` feeds theta to it directly, and :func:`paint`, which draws the
  window's content back where it came from, feeds it the inverse.
- **AIR's where-code** ``z_where = (s, x, y)`` is the window
  ``theta = [[s, 0, x], [0, s, y]]``: a square centred at ``(x, y)`` reaching
  ``s`` to each side, i.e. the object covers the fraction ``s`` of the canvas's
  width. ``s < 1`` is a window smaller than the image, so its crop is magnified.

Every function is vectorised over the batch, differentiable with respect to
both the images and theta, and runs on whatever device its inputs are on.
Wrong input raises a ``ValueError`` saying what was expected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_image_batch

__all__ = [
    "affine_matrix",
    "where_to_theta",
    "crop_window",
    "invert_affine",
    "compose_affine",
    "pixel_centers",
    "sampling_grid",
    "crop",
    "paint",
    "transform",
    "window_outline",
    "bilinear_taps",
    "apply_taps",
    "sample_bilinear",
]

# One setting for every call: pixel centres at (2i+1)/n - 1, image edges at -1 and +1.
ALIGN_CORNERS = False


# --- input checks ------------------------------------------------------------------
def _check_finite(x: torch.Tensor, name: str) -> None:
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_theta(theta, name: str = "theta") -> torch.Tensor:
    """Return ``theta`` as a floating (B, 2, 3) tensor; a single (2, 3) matrix gets B = 1."""
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped (batch, 2, 3), got {type(theta).__name__}")
    if theta.dim() == 2:
        theta = theta.unsqueeze(0)
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ValueError(f"{name} must be shaped (batch, 2, 3) (or (2, 3) for one matrix), "
                         f"got {tuple(theta.shape)}; build one with affine_matrix or where_to_theta")
    if not theta.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {theta.dtype}")
    _check_finite(theta, name)
    return theta


def _check_images(images, name: str = "images") -> torch.Tensor:
    """Return ``images`` as a floating (B, C, H, W) tensor with finite values, of any range and float dtype."""
    return check_image_batch(images, ("channels", "height", "width"), name, dtype=None, value_range=None,
                             hint="a single image needs x[None] (and a grey (H, W) image x[None, None])")


def _check_size(size, name: str = "size") -> tuple[int, int]:
    """``size`` as (height, width): one positive int (a square) or a pair of them."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                 for n in pair):
        raise ValueError(f"{name} must be a positive int or a pair (height, width) of them, got {size!r}")
    return pair


def _match_batch(images: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair images with matrices: equal batches, or one of the two repeated for the other."""
    theta = theta.to(dtype=images.dtype, device=images.device)
    b_img, b_theta = images.shape[0], theta.shape[0]
    if b_img == b_theta:
        return images, theta
    if b_theta == 1:
        return images, theta.expand(b_img, 2, 3)
    if b_img == 1:
        return images.expand(b_theta, *images.shape[1:]), theta
    raise ValueError(f"images and theta must have the same batch size (or one of them 1), "
                     f"got {b_img} images and {b_theta} matrices")


def _batch_of_numbers(**values) -> list[torch.Tensor]:
    """Floats or tensors of shape () or (B,) as finite (B,) tensors of one dtype and device."""
    tensors = [v for v in values.values() if isinstance(v, torch.Tensor)]
    floats = [t.dtype for t in tensors if t.is_floating_point()]
    dtype = floats[0] if floats else torch.get_default_dtype()
    device = tensors[0].device if tensors else None
    params = []
    for name, value in values.items():
        try:
            params.append(torch.as_tensor(value, dtype=dtype, device=device))
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{name} must be a number or a tensor, got {value!r}") from error
    try:
        params = torch.broadcast_tensors(*params)
    except RuntimeError as error:
        shapes = {name: tuple(p.shape) for name, p in zip(values, params)}
        raise ValueError(f"the parameters must be scalars or tensors of one batch size (B,), got "
                         f"shapes {shapes}") from error
    if params[0].dim() > 1:
        raise ValueError(f"the parameters must be scalars or shaped (B,), got shape {tuple(params[0].shape)}")
    for name, p in zip(values, params):
        _check_finite(p, name)
    return [p.reshape(-1) for p in params]


# --- building and inverting the matrices -----------------------------------------------
def affine_matrix(scale=1.0, rotation=0.0, shear=0.0, shift_x=0.0, shift_y=0.0, *,
                  scale_y=None) -> torch.Tensor:
    """The window ``theta = [R(rotation) @ Shear(shear) @ diag(scale, scale_y) | (shift_x, shift_y)]``.

    Each argument is a float or a tensor of shape () or (B,); they broadcast to
    one batch. ``scale`` is the window's half-width as a fraction of the
    image's (``scale_y``, default ``scale``, its half-height), ``rotation`` is
    in radians (y points down, so a positive angle turns the window clockwise
    on screen and its content appears turned anticlockwise in the crop),
    ``shear`` slants the window's vertical axis (x gains ``shear * y``), and
    ``(shift_x, shift_y)`` is the window's centre in the image. Any affine map
    with nonzero determinant can be written this way (QR decomposition), so
    the six numbers can also parametrise a general transformation (Chapter 5).
    Returns (B, 2, 3).
    """
    sx, angle, shear, tx, ty, sy = _batch_of_numbers(
        scale=scale, rotation=rotation, shear=shear, shift_x=shift_x, shift_y=shift_y,
        scale_y=scale if scale_y is None else scale_y)
    if (sx == 0).any() or (sy == 0).any():
        raise ValueError("scale (and scale_y) must be nonzero: a window of zero size has no inverse")
    cos, sin = torch.cos(angle), torch.sin(angle)
    # R @ [[1, shear], [0, 1]] @ diag(sx, sy), multiplied out.
    row_x = torch.stack([cos * sx, (cos * shear - sin) * sy, tx], dim=-1)
    row_y = torch.stack([sin * sx, (sin * shear + cos) * sy, ty], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def where_to_theta(z_where: torch.Tensor) -> torch.Tensor:
    """AIR's where-code (B, 3) = (s, x, y) to the window ``[[s, 0, x], [0, s, y]]`` (B, 2, 3).

    The window is a square centred at ``(x, y)`` whose half-width is ``s``
    times the image's; crop it with :func:`crop`, paint an object into it with
    :func:`paint` (Chapter 6, AIR).
    """
    if not isinstance(z_where, torch.Tensor):
        raise ValueError(f"z_where must be a torch.Tensor shaped (batch, 3), got {type(z_where).__name__}")
    if z_where.dim() == 1:
        z_where = z_where.unsqueeze(0)
    if z_where.dim() != 2 or z_where.shape[1] != 3 or not z_where.is_floating_point():
        raise ValueError(f"z_where must be a float tensor shaped (batch, 3) holding (scale, x, y), "
                         f"got {tuple(z_where.shape)} {z_where.dtype}")
    _check_finite(z_where, "z_where")
    s, x, y = z_where.unbind(-1)
    if (s == 0).any():
        raise ValueError("the scale in z_where must be nonzero: a window of zero size has no inverse")
    zero = torch.zeros_like(s)
    return torch.stack([torch.stack([s, zero, x], -1), torch.stack([zero, s, y], -1)], -2)


def crop_window(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, size: int) -> torch.Tensor:
    """``crop(images, where_to_theta((scale, x, y)), (size, size))`` for square windows, faster.

    ``scale`` (B,) and ``shift`` (B, 2) describe the window as in
    :func:`where_to_theta`. An axis-aligned window's sampling grid is separable
    (x depends on the column only, y on the row only), so it is built from two
    short vectors instead of ``F.affine_grid``'s batched matrix product, which
    dominates a small model's time on a CPU. No checks, for models' inner
    loops: a check for NaN makes a GPU wait for the CPU at every call. Painting
    is the same call with the inverse window, ``(1 / scale, -shift / scale)``.
    """
    base = pixel_centers(size).to(images)                                   # (size,)
    xs = scale[:, None] * base + shift[:, :1]                               # (B, size)
    ys = scale[:, None] * base + shift[:, 1:]
    b = xs.shape[0]
    grid = torch.stack([xs[:, None, :].expand(b, size, size), ys[:, :, None].expand(b, size, size)], -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


def invert_affine(theta: torch.Tensor) -> torch.Tensor:
    """The exact inverse of each affine map: ``[A | t] -> [A^-1 | -A^-1 t]`` (B, 2, 3).

    If ``theta`` takes window coordinates to image coordinates, its inverse
    takes image coordinates to window coordinates; :func:`paint` needs it.
    """
    theta = _check_theta(theta)
    a, b, t_x = theta[:, 0].unbind(-1)
    c, d, t_y = theta[:, 1].unbind(-1)
    det = a * d - b * c
    if (det == 0).any():
        raise ValueError("theta is singular (determinant 0): it squashes the window to a line "
                         "or a point and has no inverse")
    inv_a, inv_b, inv_c, inv_d = d / det, -b / det, -c / det, a / det
    inverse = torch.stack([
        torch.stack([inv_a, inv_b, -(inv_a * t_x + inv_b * t_y)], -1),
        torch.stack([inv_c, inv_d, -(inv_c * t_x + inv_d * t_y)], -1),
    ], -2)
    _check_finite(inverse, "the inverse of theta (nearly singular theta)")
    return inverse


def compose_affine(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The map ``p -> outer(inner(p))`` as one (B, 2, 3) matrix (the product of the 3 x 3 forms).

    Warping twice composes the other way round:
    ``transform(transform(x, a), b) == transform(x, compose_affine(a, b))``,
    because each warp maps *output* coordinates back into its input.
    """
    outer, inner = _check_theta(outer, "outer"), _check_theta(inner, "inner")
    if outer.shape[0] != inner.shape[0] and 1 not in (outer.shape[0], inner.shape[0]):
        raise ValueError(f"outer and inner must have the same batch size (or one of them 1), "
                         f"got {outer.shape[0]} and {inner.shape[0]}")
    matrix = outer[:, :, :2] @ inner[:, :, :2]
    shift = outer[:, :, :2] @ inner[:, :, 2:] + outer[:, :, 2:]
    return torch.cat([matrix, shift], dim=-1)


# --- sampling -------------------------------------------------------------------------
def pixel_centers(n: int) -> torch.Tensor:
    """Normalised coordinates of the centres of ``n`` pixels along one axis: ``(2 i + 1) / n - 1``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return (2 * torch.arange(n, dtype=torch.get_default_dtype()) + 1) / n - 1


def sampling_grid(theta: torch.Tensor, size) -> torch.Tensor:
    """Where each pixel of a ``size`` window reads the image: (B, h, w, 2) image coordinates (x, y).

    This is ``F.affine_grid``: window pixel ``(i, j)`` has window coordinates
    ``w = (pixel_centers(w)[j], pixel_centers(h)[i])`` and reads the image at
    ``theta @ (w, 1)``.
    """
    theta = _check_theta(theta)
    h, w = _check_size(size)
    return F.affine_grid(theta, [theta.shape[0], 1, h, w], align_corners=ALIGN_CORNERS)


def crop(images: torch.Tensor, theta: torch.Tensor, size, *, validate: bool = True) -> torch.Tensor:
    """The window ``theta`` of ``images``, resampled to ``size`` pixels: (B, C, h, w).

    Output pixel ``w`` (window coordinates) takes the image's value at
    ``theta @ (w, 1)``, interpolated bilinearly from its four nearest pixels;
    outside the image the value is 0. One image (or one matrix) is repeated to
    match a batch of the other.

    ``validate=False`` skips the input checks, for a model's inner loop whose
    inputs are checked once at its entrance: checking for NaN makes the GPU
    wait for the CPU at every call. Then shapes must already match.
    """
    if validate:
        images, theta = _match_batch(_check_images(images), _check_theta(theta))
        h, w = _check_size(size)
    else:
        h, w = size
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], h, w], align_corners=ALIGN_CORNERS)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=ALIGN_CORNERS)


def paint(patches: torch.Tensor, theta: torch.Tensor, canvas_size) -> torch.Tensor:
    """Draw ``patches`` into the window ``theta`` of an empty canvas: (B, C, H, W).

    The inverse of :func:`crop`: ``paint(crop(x, theta, size), theta, x.shape[-2:])``
    gives back ``x`` inside the window (up to resampling) and 0 outside. It is
    a crop of the patch with the *inverse* window, because now the canvas is
    the output: canvas point ``p`` reads the patch at ``theta^-1 (p)``.
    """
    return crop(patches, invert_affine(theta), canvas_size)


def transform(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp ``images`` by ``theta`` keeping their size: ``crop(images, theta, (H, W))``."""
    images = _check_images(images)
    return crop(images, theta, tuple(images.shape[-2:]))


def window_outline(theta: torch.Tensor) -> torch.Tensor:
    """The window's corners in image coordinates, closed for plotting: (B, 5, 2) points (x, y).

    Corners in order top-left, top-right, bottom-right, bottom-left (of the
    window), then top-left again; with ``align_corners=False`` these are the
    outer edges of the crop's corner pixels.
    """
    theta = _check_theta(theta)
    corners = theta.new_tensor([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]])
    return corners @ theta.transpose(1, 2)



def bilinear_taps(grid: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Where and how much each sampling point of ``grid`` (B, h, w, 2) reads an image of ``size`` (H, W).

    Returns ``(index, weight)``, each (B, 4, h * w): the flat pixel index of
    the four pixels around each point and their bilinear weights, zero for
    pixels outside the image (``grid_sample``'s zero padding, with
    ``align_corners=False``). The weights are differentiable in the grid.
    Computed once, the taps warp any number of images the same way
    (:func:`apply_taps`): the D-VAE-ST warps all K prototypes with one
    transformation per image (Chapter 5).
    """
    h, w = size
    # Pixel coordinates of the sampling points; pixel i's centre is at (2 i + 1) / n - 1.
    # Points further out than one pixel read only zeros, so clamping them changes nothing.
    px = (((grid[..., 0] + 1) * w - 1) / 2).clamp(-2, w + 1).flatten(1)
    py = (((grid[..., 1] + 1) * h - 1) / 2).clamp(-2, h + 1).flatten(1)
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0  # the weights' only dependence on the grid
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], 1).long()  # (B, 4, h * w)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], 1).long()
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    index = ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)
    return index, weight * inside


def apply_taps(images: torch.Tensor, taps: tuple[torch.Tensor, torch.Tensor], size) -> torch.Tensor:
    """Sample ``images`` (B, C, H, W) at the taps of :func:`bilinear_taps`: (B, C, h, w) with ``size`` = (h, w).

    Gathers and products only, so differentiable to every order in the images
    and the weights. ``images`` may be an expanded view (one prototype for
    many transformations). No checks, for a model's inner loop.
    """
    index, weight = taps
    n, c = images.shape[:2]
    flat = images.reshape(n, c, -1)
    values = flat.gather(2, index.reshape(n, 1, -1).expand(n, c, index.shape[1] * index.shape[2]))
    return (values.view(n, c, *index.shape[1:]) * weight.unsqueeze(1)).sum(2).view(n, c, *size)


def sample_bilinear(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """What ``F.grid_sample(images, grid)`` computes here (bilinear, zeros outside, ``align_corners=False``), from gathers.

    ``images`` (B, C, H, W), ``grid`` (B, h, w, 2) as from :func:`sampling_grid`;
    returns (B, C, h, w). The same numbers as ``grid_sample`` (the tests compare
    them), written with indexing and products only, so that it has derivatives
    of every order in both arguments on every PyTorch version: REBAR and RELAX
    differentiate a gradient that passed through the warp (Chapter 5, D-VAE-ST),
    and ``grid_sample``'s own second derivative exists only in recent PyTorch
    releases. No checks, for a model's inner loop.
    """
    return apply_taps(images, bilinear_taps(grid, images.shape[-2:]), grid.shape[1:3])
