# %% [markdown]
# # The spatial transformer
#
# A model that thinks in objects has to do two things with an image: *look* at one
# part of it, at whatever place and size the object has, and, when it imagines a
# scene, *draw* each object at its place and size. The spatial transformer
# {cite}`jaderberg2015stn` does both with one differentiable operation: an affine
# map of coordinates followed by bilinear sampling. Because gradients flow through
# it, both to the pixels and to the numbers that say where to look, a network can
# learn where to look.
#
# This chapter builds that operation from PyTorch's two primitives,
# `F.affine_grid` and `F.grid_sample`, and pins down which way each map goes, which
# is where implementations most often go wrong. Chapter 5 (D-VAE-ST) uses it to
# warp a prototype digit; Chapter 6 (AIR) uses it to read objects out of a scene
# and paint them back in. The last sections train a small network that learns
# where to look on its own. The code lives in `objectcentric.spatial`, whose
# conventions are stated once, at the top of the module; we work on real MNIST test
# digits.

# %% tags=["hide-input"]
# Colab: fetch the book's code and install it. Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/objectcentric-book/objectcentric-book"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            clone = ["git", "clone", "--depth", "1", REPOSITORY, CLONE]
            subprocess.run(clone, check=True)
        install = [sys.executable, "-m", "pip", "install", "--quiet", CLONE]
        subprocess.run(install, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {REPOSITORY}: "
            f"{error}.\nCheck that this runtime can reach GitHub and run this cell "
            f"again; or upload a copy of the repository to {CLONE} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))


# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display
from torchvision.transforms.functional import gaussian_blur

from objectcentric import book
from objectcentric.chapters import spatial_transformer as chapter
from objectcentric.chapters.spatial_transformer import WINDOW, draw
from objectcentric.data import load_mnist
from objectcentric.data.distorted_mnist import distorted_mnist
from objectcentric.experiments.spatial_transformer import STNRecipe, evaluate
from objectcentric.models.stn import STN, LocalisationNet, build_model, count_parameters
from objectcentric.modes import QUICK, READ
from objectcentric.records import read_results
from objectcentric.runner import load_or_train
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
from objectcentric.train import replay_history
from objectcentric.viz import compare_rows, show_source

TRAIN = False  # True: train both networks of the last sections here
MODE, device = book.setup("spatial_transformer", train=TRAIN)
test_images, test_labels = load_mnist("test")
digit = test_images[0]  # (1, 28, 28), values in [0, 1]

# %% [markdown]
# ## Normalised coordinates
#
# `F.affine_grid` and `F.grid_sample` do not address pixels by their row and column
# but by *normalised coordinates*: $x$ runs from $-1$ at the left edge to $+1$ at the
# right edge, $y$ from $-1$ at the top to $+1$ at the bottom ($y$ points down, like
# the rows of the array). The same numbers describe a 28×28 crop and a 50×50 canvas,
# so a position means the same thing in both.
#
# One detail decides where the pixels sit. With `align_corners=False`, which this
# package uses everywhere, the *outer edges* of the border pixels are at $\pm 1$ and
# pixel $i$ of $n$ has its centre at $(2i+1)/n - 1$. (With `align_corners=True` the
# *centres* of the border pixels would be at $\pm 1$ instead; mixing the two
# conventions shifts everything by half a pixel.)

# %%
show_source(pixel_centers)

# %% mystnb={"figure": {"caption": "A digit at 28 × 28 pixels and the same digit averaged down to 4 × 4: both span [-1, 1] × [-1, 1] in normalised coordinates. The dots and ticks on the right mark the centres of the 4 × 4 pixels.", "name": "fig-spatial-coordinates"}, "image": {"alt": "Two images of the digit 7 on the same coordinate axes, one at 4 by 4 pixels with dots at the pixel centres"}}
print("centres of 4 pixels:", pixel_centers(4).tolist())

small = F.interpolate(digit[None], size=(4, 4), mode="area")[0]
fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.4), layout="constrained")
for ax, image, title in [
    (left, digit, "28 × 28"),
    (right, small, "the same digit at 4 × 4"),
]:
    extent = (-1, 1, 1, -1)
    ax.imshow(
        image[0], cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest"
    )
    ax.set_xlabel("x"), ax.set_ylabel("y"), ax.set_title(title)
    ax.set_xticks([-1, -0.5, 0, 0.5, 1]), ax.set_yticks([-1, -0.5, 0, 0.5, 1])
centres = pixel_centers(4)
cx, cy = torch.meshgrid(centres, centres, indexing="xy")
right.plot(cx.flatten(), cy.flatten(), "o", color=WINDOW, ms=4)
right.set_xticks(centres.tolist()), right.set_yticks(centres.tolist())
plt.show()

# %% [markdown]
# ## What `F.affine_grid` computes
#
# A crop is described by a $2\times3$ matrix $\theta = [A \mid t]$. Read it as the
# *pose of a window* laid over the image: the point $w$ of the window (in the
# window's own normalised coordinates) lies at
#
# $$
# p = A\,w + t
# $$
#
# in the image. $t$ is where the window's centre is, and the columns of $A$ are its
# half-axes: $A = sI$ is a square window reaching $s$ to each side. `F.affine_grid`
# applies exactly this map to the centre of every pixel of the output (the crop) and
# returns the image points they land on, a tensor $(B, h, w, 2)$ of $(x, y)$ pairs:
# the *sampling grid*. It goes from the output to the input, which is what lets
# every output pixel get exactly one value.
#
# We build $\theta$ from five readable numbers: scale, rotation, shear and a shift
# (any invertible affine map can be written like this, with a second scale for the
# height).

# %%
show_source(affine_matrix)
show_source(sampling_grid)

# %% mystnb={"figure": {"caption": "Five windows on the same digit and where a 10 × 10 crop through each reads it: one dot per output pixel; the large dot marks the window's top-left corner.", "name": "fig-spatial-poses"}, "image": {"alt": "Five copies of a digit, each with an orange window: the full image, a small square, a rotated square, a shifted square and a sheared one"}}
poses = {
    "identity": affine_matrix(),
    "scale 0.5\n(zoom in)": affine_matrix(scale=0.5),
    "rotation 30°": affine_matrix(scale=0.7, rotation=math.radians(30)),
    "shift\nx = 0.4, y = -0.3": affine_matrix(scale=0.5, shift_x=0.4, shift_y=-0.3),
    "shear 0.5": affine_matrix(scale=0.6, shear=0.5),
}
print(
    "sampling grid of a 10 × 10 crop:",
    tuple(sampling_grid(poses["identity"], 10).shape),
)
fig, axes = plt.subplots(1, len(poses), figsize=(8, 2.2), layout="constrained")
for ax, (name, theta) in zip(axes, poses.items()):
    draw(ax, digit, theta, grid_size=10, limit=1.15, title=name)
plt.show()

# %% [markdown]
# ## How `F.grid_sample` reads between pixels
#
# The grid points rarely fall on pixel centres. `F.grid_sample` reads each one
# *bilinearly*: it takes the four pixel centres around the point and mixes their
# values with weights $(1-\Delta x)(1-\Delta y)$, $\Delta x (1-\Delta y)$, ... that
# depend on how close the point is to each of them. The result is a continuous,
# piecewise linear function of the point's position, so it has a gradient with
# respect to $\theta$: this is what makes the spatial transformer trainable. Points
# outside the image read 0 (`padding_mode="zeros"`). Below, one point by hand, then a
# small window magnified eight times: nearest-pixel sampling shows blocks, bilinear
# sampling interpolates.

# %% mystnb={"figure": {"caption": "A small window (left) read out at 56 × 56 pixels, eight times magnified, by nearest-pixel sampling (middle) and by bilinear sampling (right).", "name": "fig-spatial-bilinear"}, "image": {"alt": "A digit with a small window, and two magnified crops: one blocky, one smooth"}}
point = torch.tensor([0.13, -0.27])  # (x, y)
col, row = (
    (point + 1) * 28 - 1
) / 2  # normalised coordinates -> fractional pixel indices
c0, r0 = int(col), int(row)
dx, dy = float(col - c0), float(row - r0)
img = digit[0]
by_hand = (
    (1 - dx) * (1 - dy) * img[r0, c0]
    + dx * (1 - dy) * img[r0, c0 + 1]
    + (1 - dx) * dy * img[r0 + 1, c0]
    + dx * dy * img[r0 + 1, c0 + 1]
)
by_torch = F.grid_sample(digit[None], point.view(1, 1, 1, 2), align_corners=False)
where = f"({point[0]:.2f}, {point[1]:.2f})"
print(f"value at (x, y) = {where}: by hand {float(by_hand):.4f}, ", end="")
print(f"grid_sample {float(by_torch):.4f}")

theta = affine_matrix(scale=0.25, shift_x=0.1, shift_y=-0.3)
grid = sampling_grid(theta, 56)
fig, axes = plt.subplots(1, 3, figsize=(8, 2.9), layout="constrained")
draw(axes[0], digit, theta, title="the window")
for ax, mode in zip(axes[1:], ["nearest", "bilinear"]):
    sampled = F.grid_sample(digit[None], grid, mode=mode, align_corners=False)[0]
    ax.imshow(sampled[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off(), ax.set_title(f"{mode}, 56 × 56", fontsize=9)
plt.show()

# %% [markdown]
# ## Cropping a window
#
# Put together, cropping is two lines: the sampling grid of the window, then
# bilinear sampling. AIR (Chapter 6) describes each object's window by three
# numbers, `z_where` $= (s, x, y)$: a square centred at $(x, y)$ that reaches $s$ to
# each side, i.e. $\theta = \begin{pmatrix} s & 0 & x \\ 0 & s & y \end{pmatrix}$.
# A window smaller than the image ($s<1$) is magnified in its crop. Whatever the
# window's size, the crop has the size we ask for (here 28×28), so the network that
# reads it always sees objects at one size.

# %%
show_source(where_to_theta)
show_source(crop)

# %% mystnb={"figure": {"caption": "Eight windows z_where = (s, x, y) on eight test digits (top, titled with their three numbers) and their 28 × 28 crops (bottom).", "name": "fig-spatial-crops"}, "image": {"alt": "Eight digits with orange square windows of different sizes and places, and below each the magnified crop"}}
batch = test_images[:8]
z_where = torch.tensor(
    [
        [0.5, 0.0, 0.0],
        [0.5, 0.0, -0.5],
        [0.5, 0.0, 0.5],
        [0.5, -0.5, 0.0],
        [0.5, 0.5, 0.0],
        [0.35, 0.0, 0.0],
        [0.8, 0.1, 0.1],
        [1.2, 0.0, 0.0],
    ]
)
windows = where_to_theta(z_where)
crops = crop(batch, windows, 28)
print(
    "images",
    tuple(batch.shape),
    "windows",
    tuple(windows.shape),
    "-> crops",
    tuple(crops.shape),
)
fig, axes = plt.subplots(2, 8, figsize=(8, 2.6), layout="constrained")
for i in range(8):
    title = "({:.2g}, {:.2g}, {:.2g})".format(*z_where[i].tolist())
    draw(axes[0, i], batch[i], windows[i], limit=1.25, title=title)
    draw(axes[1, i], crops[i])
axes[0, 0].set_ylabel("image"), axes[1, 0].set_ylabel("crop")
plt.show()

# %% [markdown]
# ## Painting a crop back with the inverse
#
# Going the other way, AIR's decoder draws an object (a 28×28 image) into its window
# on a larger, empty canvas (50×50). The output is now the *canvas*, and
# `F.affine_grid` always wants the map from output points to input points, here from
# canvas points to the object's own coordinates. That is the inverse of the window's
# pose:
#
# $$
# w = A^{-1}(p - t), \qquad \theta^{-1} = [\,A^{-1} \mid -A^{-1}t\,].
# $$
#
# So painting is cropping the *object* with the inverted matrix. Canvas points
# outside the window read the object outside its edges and get 0, which is what
# makes the canvas empty there.

# %%
show_source(invert_affine)
show_source(paint)

# %% mystnb={"figure": {"caption": "Three digits (top left) painted into their windows on one 50 × 50 scene (right, windows numbered), and the same windows cropped back out of the scene (bottom left).", "name": "fig-spatial-paint"}, "image": {"alt": "Three digits, a scene with the three digits at different places and sizes, and the three crops read back"}}
objects = test_images[[3, 2, 1]]
z_where = torch.tensor([[0.45, -0.45, -0.4], [0.3, 0.55, -0.5], [0.55, 0.3, 0.35]])
windows = where_to_theta(z_where)
layers = paint(objects, windows, 50)  # one canvas per object, (3, 1, 50, 50)
scene = layers.sum(0, keepdim=True).clamp(max=1)  # AIR adds the objects up
read_back = crop(
    scene, windows, 28
)  # the same windows, cropped: one scene, three windows
print(
    "objects",
    tuple(objects.shape),
    "-> scene",
    tuple(scene.shape),
    "-> crops",
    tuple(read_back.shape),
)

fig = plt.figure(figsize=(8, 3.6), layout="constrained")
layout = fig.add_gridspec(2, 5)
for i in range(3):
    draw(fig.add_subplot(layout[0, i]), objects[i], title=f"object {i + 1}")
    draw(fig.add_subplot(layout[1, i]), read_back[i], title=f"cropped back {i + 1}")
ax = fig.add_subplot(layout[:, 3:])
draw(ax, scene[0], title="painted into a 50 × 50 scene")
for i, theta in enumerate(windows):
    outline = window_outline(theta)[0]
    ax.plot(outline[:, 0], outline[:, 1], color=WINDOW, lw=1)
    ax.annotate(
        str(i + 1),
        outline[3].tolist(),
        color=WINDOW,
        xytext=(3, 3),
        textcoords="offset points",
    )

alone = crop(paint(objects, windows, 50), windows, 28)
difference = (alone - objects).abs().mean()
print(
    f"crop(paint(object)) against the object: mean absolute difference {difference:.3f}"
)
print("(the object was shrunk to fewer pixels and back)")
plt.show()

# %% [markdown]
# ## Which way round? The direction pitfall
#
# Both directions take the same kind of matrix, and nothing checks which one you
# meant: feed `F.affine_grid` a window's pose where it needs the inverse and the
# code runs, the losses go down, and the picture is simply elsewhere. Take the pose
# $(s, x, y) = (0.5, 0.3, 0.2)$. Painted correctly, the digit fills the box outlined
# in {numref}`fig-spatial-direction`. Fed to `affine_grid` uninverted, canvas point
# $p$ reads the object at $s p + (x, y)$: the object's centre lands at
# $-(x, y)/s = (-0.6, -0.4)$ and its size becomes $1/s$ of the canvas instead of
# $s$, so we see a quarter of a digit four times too large. Cropping has the
# mirror-image mistake.
#
# It is the easiest mistake to make when porting a model built on this operation:
# pass a pose to `affine_grid` without inverting it. Both conventions can be made to
# work if every part of a model agrees on one. Pyro's AIR example, for instance,
# uses the opposite one on purpose: its `z_where` maps canvas points into the
# object, so it paints with `z_where` as it is and crops with the inverse, and its
# scale $3$ is our $s = 1/3$. What breaks a model is mixing the two, or reading one
# as the other: a prior on $s$, the boxes drawn for the reader and every
# position-based metric then mean something else. The tests of this package pin our
# convention down (`tests/test_spatial.py`: a bright pixel is cropped with a known
# shift and must land at a known place).

# %% mystnb={"figure": {"caption": "The same numbers (s, x, y) = (0.5, 0.3, 0.2) fed both ways; orange: the window they describe. Painting with the pose itself instead of its inverse puts a four-times enlarged digit centred at -(x, y)/s (red cross); cropping with the inverse by mistake reads the wrong part of the scene.", "name": "fig-spatial-direction"}, "image": {"alt": "Four panels: a digit painted into its box, a huge misplaced digit, a correct crop, and a wrong crop"}}
theta = where_to_theta(torch.tensor([[0.5, 0.3, 0.2]]))
painted = {
    "paint: correct\n(inverse)": paint(digit[None], theta, 50)[0],
    "paint: pose\nnot inverted": crop(digit[None], theta, 50)[0],
}
scene_one = paint(digit[None], theta, 50)
cropped = {
    "crop: correct\n(pose)": crop(scene_one, theta, 28)[0],
    "crop: inverse\nby mistake": crop(scene_one, invert_affine(theta), 28)[0],
}
fig, axes = plt.subplots(1, 4, figsize=(8, 2.5), layout="constrained")
for ax, (name, image) in zip(axes[:2], painted.items()):
    draw(ax, image, theta, title=name)
axes[1].plot([-0.6], [-0.4], "x", color="tab:red", ms=8, mew=2)
for ax, (name, image) in zip(axes[2:], cropped.items()):
    draw(ax, image, title=name)
plt.show()

# %% [markdown]
# ## Warping a whole image
#
# `transform` warps an image keeping its size; it is a crop whose output is as large
# as its input. D-VAE-ST (Chapter 5) explains a digit as a prototype seen through
# such a warp, with all six numbers of $\theta$ free. Warping by $\theta$ and then by
# $\theta^{-1}$ brings the digit back, except for what the first warp pushed out of
# the frame. Two warps in a row compose *in reverse*: each maps output points back
# into its input, so `transform(transform(x, a), b)` reads `x` at $a(b(p))$, which
# `compose_affine(a, b)` writes as one matrix.

# %%
show_source(transform)
show_source(compose_affine)

# %% mystnb={"figure": {"caption": "One digit through ten random warps (top) and each warped digit warped back with the inverse (bottom): everything returns except what the first warp pushed out of the frame.", "name": "fig-spatial-warps"}, "image": {"alt": "Two rows of ten digits: distorted copies, and the restored copies with some corners cut off"}}
generator = torch.Generator().manual_seed(4)


def uniform(low, high, n=10):
    return low + (high - low) * torch.rand(n, generator=generator)


warps = affine_matrix(
    scale=uniform(0.7, 1.3),
    rotation=uniform(-0.8, 0.8),
    shear=uniform(-0.4, 0.4),
    shift_x=uniform(-0.2, 0.2),
    shift_y=uniform(-0.2, 0.2),
    scale_y=uniform(0.7, 1.3),
)
prototype = digit[None]
warped = transform(prototype, warps)  # one prototype, ten warps
unwarped = transform(warped, invert_affine(warps))
rows = {"prototype through ten warps": warped, "warped back with the inverse": unwarped}
compare_rows(rows, nrow=10)

a, b = warps[:1], warps[1:2]
twice = transform(transform(prototype, a), b)
once = transform(prototype, compose_affine(a, b))
print(
    f"two warps against one composed warp: largest pixel difference "
    f"{(twice - once).abs().max():.3f} (not 0: resampling twice blurs twice)"
)
plt.show()

# %% [markdown]
# ## Gradients reach the window
#
# Because every step is differentiable, gradient descent can ask *where* an object
# is: given a 50×50 scene and the digit it contains, adjust `z_where` until the crop
# matches the digit. Three attempts in {numref}`fig-spatial-descent`, each 300 steps
# of Adam, drawn as the window's outline every 30 steps (light to dark):
#
# 1. comparing raw pixels, starting from a large window over the middle: the window
#    *grows* instead of finding the digit. A thin stroke matches only when it is
#    almost exactly in place, so the pixel error has no slope that leads there, and
#    a large window, whose crop is a small faint digit, is a local optimum;
# 2. comparing *blurred* crops with the blurred digit, from the same start: the
#    blur spreads every stroke over a few pixels, the error now falls smoothly
#    towards the right window, and the window slides and shrinks onto the digit;
# 3. blurred again, but starting on empty background: the crop stays black when
#    the window moves a little, so the gradient is exactly zero and nothing moves.
#    Bilinear sampling only ever looks at the four nearest pixels.
#
# This is why AIR does not search for objects by descending on the crop alone: an
# encoder that sees the whole image proposes the window.

# %% mystnb={"figure": {"caption": "Gradient descent on the window alone, three ways. Top: the window's outline every 30 steps (light to dark) and where it ended. Bottom: the error of each attempt relative to its start.", "name": "fig-spatial-descent"}, "image": {"alt": "Three scenes with windows drifting: one grows, one slides onto the digit, one does not move; below, three error curves"}}
true_where = torch.tensor([[0.35, -0.4, 0.35]])
scene_one = paint(digit[None], where_to_theta(true_where), 50)


def blur(images):
    return gaussian_blur(images, kernel_size=13, sigma=2.0)


attempts = {  # name: (start, compare raw pixels or blurred ones)
    "raw pixels": ([0.6, 0.0, 0.0], lambda images: images),
    "blurred": ([0.6, 0.0, 0.0], blur),
    "blurred, start\non background": ([0.3, 0.55, -0.5], blur),
}
fig = plt.figure(figsize=(8, 5), layout="constrained")
layout = fig.add_gridspec(2, 3, height_ratios=(1.1, 1))
error_ax = fig.add_subplot(layout[1, :])
for column, (name, (start, look)) in enumerate(attempts.items()):
    z = torch.tensor([start], requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=0.02)
    wanted = look(digit[None])
    outlines, losses = [], []
    for step in range(300):
        loss = (look(crop(scene_one, where_to_theta(z), 28)) - wanted).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 30 == 0:
            outlines.append(window_outline(where_to_theta(z.detach()))[0])
    found = ", ".join(f"{v:.2f}" for v in z.detach()[0].tolist())
    ax = fig.add_subplot(layout[0, column])
    draw(ax, scene_one[0], title=f"{name}\nends at ({found})")
    for i, outline in enumerate(outlines):
        shade = plt.cm.autumn_r(0.15 + 0.85 * i / len(outlines))
        ax.plot(outline[:, 0], outline[:, 1], color=shade, lw=1)
    error_ax.plot(np.array(losses) / losses[0], label=name.replace("\n", " "))
error_ax.set_xlabel("step"), error_ax.set_ylabel("error / error at the start")
where = "({:.2f}, {:.2f}, {:.2f})".format(*true_where[0].tolist())
(
    error_ax.legend(loc="center right"),
    error_ax.set_title(f"the digit's true z_where is {where}"),
)
plt.show()

# %% [markdown]
# ## Explorer
#
# Each row below moves one parameter of the window while the others stay at the
# identity. Each frame shows, left to right: the digit with the window's outline,
# its sampling points and its top-left corner (the dashed square is the image's
# border); the 28×28 crop; and the crop painted back onto an empty canvas with the
# inverse. Watch the directions: moving the window right moves the digit *left* in
# the crop, and turning the window clockwise turns the crop's content
# anticlockwise. Everything lands back where it came from in the third panel, minus
# what the window did not see. Every frame is computed in advance, so the sliders
# work in the rendered book too.

# %% tags=["hide-input"]
chapter.one_at_a_time(digit)

# %% [markdown]
# All five parameters at once: here each slider has three values, and every one of
# the $3^5 = 243$ combinations is drawn in advance, so this explorer too follows its
# sliders without a running notebook. Combine a rotation with a shear, or a small
# scale with a shift, and compare the window with the two parameters' separate
# effects above: the shift moves the window's centre in the image's coordinates,
# whatever its size and angle, while the shear slants the window's own vertical axis
# before the rotation turns it.

# %% tags=["hide-input"]
chapter.all_together(digit)

# %% [markdown]
# ## A network that learns where to look
#
# Descending on one crop could not find the digit; a network that sees the whole
# image can propose the window. The spatial transformer network
# {cite}`jaderberg2015stn` puts such a network in front of a classifier. A small
# *localisation network* looks at the whole image and outputs the six numbers of a
# window $\theta$; `crop` reads the window out at 28×28 pixels, and a small
# convolutional classifier reads the crop. No label says where the digit is: the
# localisation network learns only from the classification loss, whose gradient
# reaches $\theta$ through the bilinear sampling of the previous section. Its last
# layer starts with weights 0 and a bias equal to the window where an upright,
# centred digit sits (the middle 28×28 pixels of the canvas), so at the start the
# network is the plain classifier looking at the centre, and training moves the
# window from there.
#
# The task is the distorted MNIST of the same paper: each digit is turned by up to
# 45° either way, scaled by 0.7 to 1.2 and placed anywhere on a 42×42 canvas where
# it stays whole. The canvases are drawn with this chapter's own functions: the
# digit's pose on the canvas is a window built by `affine_matrix`, and `paint` draws
# the digit into it. That window is the *true distortion*: cropping it gives the
# upright digit back ({numref}`fig-spatial-distorted`, bottom row). Training
# canvases use MNIST's training digits, the validation canvases its last 5,000
# training digits (never trained on) and the test canvases its test digits.

# %% mystnb={"figure": {"caption": "Distorted MNIST: eight test canvases with the window of each digit's true distortion (orange, top), and the crops of those windows, the upright digits (bottom).", "name": "fig-spatial-distorted"}, "image": {"alt": "Eight 42 by 42 canvases with rotated, scaled, shifted digits and orange windows, and below them the upright digits"}}
distorted = distorted_mnist("test", n=1000 if MODE == QUICK else None)
fig, axes = plt.subplots(2, 8, figsize=(8, 2.5), layout="constrained")
for i in range(8):
    title = f"label {distorted.labels[i].item()}"
    draw(axes[0, i], distorted.images[i], distorted.theta[i], title=title)
    draw(
        axes[1, i], crop(distorted.images[i : i + 1], distorted.theta[i : i + 1], 28)[0]
    )
axes[0, 0].set_ylabel("canvas"), axes[1, 0].set_ylabel("true window")
plt.show()

# %% [markdown]
# The two stages, and the loss. The classifier averages its last features over a
# 3×3 grid of regions, so it knows roughly where each feature was, whatever the size
# of the image it reads. The baseline is the same classifier reading the whole
# canvas, with every layer widened until it has as many parameters as the
# localisation network and the classifier together: what the spatial transformer
# adds is a way of looking, not more capacity.

# %%
show_source(LocalisationNet)
show_source(STN.forward)
show_source(STN._glimpse)
show_source(STN.loss)

# %% [markdown]
# Both models train with the same recipe: Adam from $10^{-3}$ down to $10^{-4}$ on a
# cosine schedule over five passes through 55,000 canvases, batches of 100, with the
# loss and accuracy on the 5,000 validation canvases after every pass. The book
# ships the trained spatial transformer network; the baseline's numbers come from
# its recorded run unless this page trains both.

# %% mystnb={"figure": {"caption": "Training and validation loss (cross-entropy) of the spatial transformer network after each of its five passes through the training canvases.", "name": "fig-spatial-stn-loss"}, "image": {"alt": "Loss curves falling over five epochs"}}
stn_run = load_or_train(STNRecipe(), MODE)
stn = stn_run.model.cpu()
if stn_run.record["loaded"]:
    replay_history(stn_run.history, keys=["loss"])
baseline = None
if MODE != READ:
    baseline = load_or_train(
        STNRecipe(model="baseline"), MODE, progress="none"
    ).model.cpu()
plt.show()

# %%
recorded = read_results("spatial_transformer")
parameters = {name: count_parameters(build_model(name)) for name in ("stn", "baseline")}
here = None
if MODE != READ:  # the models trained on this page, on this page's test canvases
    here = {"stn": evaluate(stn, distorted)["accuracy"]}
    here["baseline"] = evaluate(baseline, distorted)["accuracy"]
display(chapter.accuracy_table(recorded, parameters, here))
if MODE == QUICK:
    print(
        "quick mode: the models trained for a few steps; their numbers are not results"
    )
display(chapter.how_trained(recorded))

# %% mystnb={"figure": {"caption": "Validation error after each pass of the two recorded runs, on a log scale: the spatial transformer network and the same classifier without it, at equal size.", "name": "fig-spatial-validation"}, "image": {"alt": "Two validation error curves over five passes; the spatial transformer's is lower throughout"}}
chapter.plot_validation_error(recorded["validation_curves"])
plt.show()

# %% [markdown]
# At the same size and with the same training, the spatial transformer network
# makes well under half as many mistakes on the test canvases as the classifier
# without it, and its validation error is lower after every pass
# ({numref}`fig-spatial-validation`). We fall well short of the paper's numbers,
# though. On this distortion (rotation, scale and translation on 42×42 canvases) the
# paper reports about 0.5 % test error for its spatial transformer network with a
# convolutional classifier and about 0.8 % for a plain convolutional network
# {cite}`jaderberg2015stn`; our two networks make several times as many mistakes
# (the last columns of the table above). The reason is the budget: ours are single
# runs of five passes each, small enough to train on one CPU core in minutes, and
# the baseline's error was still falling at the end, while the paper trains larger
# networks far longer. What carries over is the order: a network that first looks in
# the right place needs less capacity to recognise what it sees.

# %% [markdown]
# ## What the windows do
#
# {numref}`fig-spatial-learned`, top row: test canvases with the window the trained
# network chose (orange). Middle row: what the classifier reads, the crop of that
# window. Bottom row: the digits as MNIST has them, before the distortion. The
# windows follow the digits across the canvas and grow and shrink with them, so the
# crops come out centred and at nearly one size (larger than MNIST draws its digits:
# the windows are a little smaller than the digits' boxes, so the network zooms in);
# they turn with the digits only part of the way. The network has learned to undo
# much of the distortion from class labels alone.

# %% mystnb={"figure": {"caption": "What the trained network looks at: eight test canvases with its learned windows (top), the crops it classifies (middle), and the same digits before the distortion (bottom).", "name": "fig-spatial-learned"}, "image": {"alt": "Three rows of eight: distorted canvases with windows, centred crops, and the original digits"}}
with torch.no_grad():
    windows = stn.window(distorted.images[:8])
    glimpses = stn.glimpse(distorted.images[:8])
fig, axes = plt.subplots(3, 8, figsize=(8, 3.3), layout="constrained")
for i in range(8):
    draw(axes[0, i], distorted.images[i], windows[i])
    draw(axes[1, i], glimpses[i])
    draw(axes[2, i], test_images[i])
for ax, name in zip(axes[:, 0], ["canvas", "learned\ncrop", "undistorted"]):
    ax.set_ylabel(name)
plt.show()

# %% [markdown]
# How much of the distortion is left? Compose each learned window with the inverse
# of the true one: the result is the crop's pose in the upright digit's own frame.
# A window that undid the distortion exactly would give the same pose for every
# canvas (whichever fixed pose the classifier likes best), so the spread of that
# pose across canvases, next to the spread of the distortion itself, measures what
# is left: rotation in degrees, size as the spread of its logarithm.

# %%
alignment = recorded.get("window_alignment")
if alignment:
    display(chapter.alignment_table(alignment, recorded["n_test_canvases"]))
    display(book.how_measured("spatial_transformer", keys=["window_alignment"]))

# %% [markdown]
# Position is undone almost completely (about a pixel off), size roughly halfway,
# rotation the least. Nothing in the loss asks for upright crops: a convolutional
# classifier already copes with a digit turned by twenty degrees or so, which is
# presumably why the windows stop turning before the digits are upright.
#
# ## What fails
#
# *The direction of the map.* Feeding `affine_grid` a pose where it needs the
# inverse, or the other way round, raises no error: the picture is just elsewhere,
# and at the wrong size ({numref}`fig-spatial-direction`).
#
# *Searching by gradient alone.* Descending on the crop's pixel error finds a window
# only when the start is close and the image is blurred enough to give the error a
# slope; from empty background the gradient is exactly zero
# ({numref}`fig-spatial-descent`).
#
# *The network's own mistakes.* {numref}`fig-spatial-mistakes` shows test canvases
# the trained network misreads, with the window it chose and the crop it classified.
# Most of the crops are centred and about the right size: the window did its job,
# and the digit's shape is what misleads the classifier, strokes that could belong
# to another digit even upright (a closed loop turns a 5 into a 6). In a few the
# crop is still turned, or a stroke runs to the window's edge, because the windows
# undo rotation only partly and cut their digits a little tight.

# %% mystnb={"figure": {"caption": "Test canvases the trained spatial transformer network misclassifies, titled with the true label and the label it read: each with its learned window (top) and the crop its classifier saw (bottom).", "name": "fig-spatial-mistakes"}, "image": {"alt": "Eight misclassified distorted digits with their windows, and the crops the classifier read"}}
with torch.no_grad():
    batches = distorted.images.split(500)
    predicted = torch.cat([stn(images).argmax(-1) for images in batches])
misread = (predicted != distorted.labels).nonzero().flatten()
wrong = misread[:8]
print(
    f"{len(misread):,} of {len(distorted):,} test canvases misread; the first 8 shown"
)
with torch.no_grad():
    chosen = distorted.images[wrong]
    chapter.plot_mistakes(
        chosen,
        stn.window(chosen),
        stn.glimpse(chosen),
        distorted.labels[wrong],
        predicted[wrong],
    )
plt.show()

# %% [markdown]
# ## Summary
#
# - `F.affine_grid` maps *output* points to *input* points: a crop takes the window's
#   pose $\theta$, and painting a patch back takes its inverse $\theta^{-1}$.
# - Positions are normalised coordinates from $-1$ to $1$, with $y$ pointing down
#   and `align_corners=False` everywhere, so a position means the same thing at
#   every image size.
# - Bilinear sampling makes the crop a continuous function of $\theta$, so the
#   gradient reaches the window; but it sees only the four nearest pixels, so it
#   cannot find an object from far away.
# - Six small functions in `objectcentric.spatial` do all of it: `affine_matrix`
#   and `where_to_theta` describe a window, `crop` reads it, `invert_affine` and
#   `paint` write a patch back, `transform` warps a whole image.
# - A spatial transformer network learns, from class labels alone, windows that
#   undo position and size and part of the rotation, and at equal size it makes
#   well under half the mistakes of the same classifier without it. Chapter 5 warps
#   prototypes with `transform`, and Chapter 6 (AIR) reads each object with `crop`
#   and draws it with `paint`.
#
# ## Exercises
#
# 1. In the direction-pitfall cell, change the pose to $(s, x, y) = (0.25, 0, 0)$.
#    Where, and how large, does the uninverted paint put the digit? Check your
#    answer against $-(x, y)/s$ and $1/s$.
# 2. In the gradient-descent cell, add a fourth attempt that compares blurred
#    crops with `sigma=4.0` from the background start. Does a wider blur give the
#    gradient a way out of the empty region?
# 3. Use `compose_affine` to build one matrix that first rotates by 30° and then
#    shifts by $(0.3, 0)$, and check with `transform` that it gives the same image
#    as the two warps in a row. Does the order of the two matter?
# 4. In the cell that draws the learned windows, use `pose_of` from
#    `objectcentric.experiments.spatial_transformer` on `windows` and on
#    `distorted.theta[:8]`: by how many degrees does each learned window turn
#    compared with its digit's true distortion?
# 5. Train the spatial transformer network with ten passes instead of five
#    (`STNRecipe(epochs=10)`, in train mode; about ten minutes on one CPU core).
#    How much closer does it come to the paper's error?
