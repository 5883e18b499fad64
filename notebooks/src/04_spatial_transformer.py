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
# where to look on its own; in read mode they load the trained one, so the chapter
# runs in seconds.

# %%
# Colab: fetch the book's code and install it. Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/objectcentric-book/objectcentric-book"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, CLONE], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", CLONE], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {REPOSITORY}: {error}.\n"
            "Check that this runtime can reach GitHub and run this cell again; or upload "
            f"a copy of the repository to {CLONE} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))

# %% [markdown]
# ## Set-up
#
# The code lives in `objectcentric.spatial`; its conventions are stated once, at the
# top of the module, and every function below follows them. We work on real MNIST
# test digits.

# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from objectcentric import spatial
from objectcentric.data import load_mnist
from objectcentric.spatial import (affine_matrix, compose_affine, crop, invert_affine, paint,
                                   pixel_centers, sampling_grid, transform, where_to_theta,
                                   window_outline)
from torchvision.transforms.functional import gaussian_blur
from objectcentric.viz import compare_rows, show_source
from objectcentric.widgets import frame_slider, to_png

test_images, test_labels = load_mnist("test")
digit = test_images[0]  # (1, 28, 28), values in [0, 1]
WINDOW = "tab:orange"


def draw(ax, image, theta=None, grid_size=None, limit=1.0, title=None, smooth=True):
    """Show a (1, H, W) image in normalised coordinates; outline a window and its sampling points.

    ``smooth=False`` draws without antialiasing: fewer colours, smaller PNG frames for widgets.
    """
    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, extent=(-1, 1, 1, -1), interpolation="nearest")
    if theta is not None:
        if grid_size:
            points = sampling_grid(theta, grid_size)[0].reshape(-1, 2)
            ax.plot(points[:, 0], points[:, 1], "s", color=WINDOW, ms=1.5, mew=0, antialiased=smooth)
        outline = window_outline(theta)[0]
        ax.plot(outline[:, 0], outline[:, 1], color=WINDOW, lw=1.5, antialiased=smooth)
        ax.plot(outline[0, 0], outline[0, 1], "o", color=WINDOW, ms=4,  # the window's top-left
                antialiased=smooth)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(limit, -limit)  # y points down, as in the pixel array
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


print(spatial.__doc__)

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
print("centres of 4 pixels:", pixel_centers(4).tolist())

small = F.interpolate(digit[None], size=(4, 4), mode="area")[0]
fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, image, title in [(left, digit, "28 × 28"), (right, small, "the same digit at 4 × 4")]:
    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, extent=(-1, 1, 1, -1), interpolation="nearest")
    ax.set_xlabel("x"), ax.set_ylabel("y"), ax.set_title(title, fontsize=10)
    ax.set_xticks([-1, -0.5, 0, 0.5, 1]), ax.set_yticks([-1, -0.5, 0, 0.5, 1])
centres = pixel_centers(4)
cx, cy = torch.meshgrid(centres, centres, indexing="xy")
right.plot(cx.flatten(), cy.flatten(), "o", color=WINDOW, ms=4)
right.set_xticks(centres.tolist()), right.set_yticks(centres.tolist())  # ticks at the pixel centres
fig.suptitle("both images span [-1, 1] × [-1, 1]; dots: pixel centres of the 4 × 4 image", fontsize=10)
fig.tight_layout();

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

# %%
poses = {
    "identity": affine_matrix(),
    "scale 0.5 (zoom in)": affine_matrix(scale=0.5),
    "rotation 30°": affine_matrix(scale=0.7, rotation=math.radians(30)),
    "shift x = 0.4, y = -0.3": affine_matrix(scale=0.5, shift_x=0.4, shift_y=-0.3),
    "shear 0.5": affine_matrix(scale=0.6, shear=0.5),
}
print("sampling grid of a 10 × 10 crop:", tuple(sampling_grid(poses["identity"], 10).shape))
fig, axes = plt.subplots(1, len(poses), figsize=(13, 2.9))
for ax, (name, theta) in zip(axes, poses.items()):
    draw(ax, digit, theta, grid_size=10, limit=1.15, title=name)
fig.suptitle("where a 10 × 10 crop reads the digit: one dot per output pixel; "
             "the large dot marks the window's top-left corner", fontsize=10);

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

# %%
point = torch.tensor([0.13, -0.27])  # (x, y)
col, row = ((point + 1) * 28 - 1) / 2  # from normalised coordinates to (fractional) pixel indices
c0, r0 = int(col), int(row)
dx, dy = float(col - c0), float(row - r0)
img = digit[0]
by_hand = ((1 - dx) * (1 - dy) * img[r0, c0] + dx * (1 - dy) * img[r0, c0 + 1]
           + (1 - dx) * dy * img[r0 + 1, c0] + dx * dy * img[r0 + 1, c0 + 1])
by_torch = F.grid_sample(digit[None], point.view(1, 1, 1, 2), align_corners=False)
print(f"value at (x, y) = ({point[0]:.2f}, {point[1]:.2f}): by hand {float(by_hand):.4f}, "
      f"grid_sample {float(by_torch):.4f}")

theta = affine_matrix(scale=0.25, shift_x=0.1, shift_y=-0.3)
grid = sampling_grid(theta, 56)
fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
draw(axes[0], digit, theta, title="the window")
for ax, mode in zip(axes[1:], ["nearest", "bilinear"]):
    sampled = F.grid_sample(digit[None], grid, mode=mode, align_corners=False)[0]
    ax.imshow(sampled[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off(), ax.set_title(f"{mode}, 56 × 56", fontsize=9)
fig.tight_layout();

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

# %%
batch = test_images[:8]
z_where = torch.tensor([[0.5, 0.0, 0.0], [0.5, 0.0, -0.5], [0.5, 0.0, 0.5], [0.5, -0.5, 0.0],
                        [0.5, 0.5, 0.0], [0.35, 0.0, 0.0], [0.8, 0.1, 0.1], [1.2, 0.0, 0.0]])
windows = where_to_theta(z_where)
crops = crop(batch, windows, 28)
print("images", tuple(batch.shape), "windows", tuple(windows.shape), "-> crops", tuple(crops.shape))
fig, axes = plt.subplots(2, 8, figsize=(12, 3.5))
for i in range(8):
    title = "({:.2g}, {:.2g}, {:.2g})".format(*z_where[i].tolist())
    draw(axes[0, i], batch[i], windows[i], limit=1.25, title=title)
    draw(axes[1, i], crops[i])
axes[0, 0].set_ylabel("image"), axes[1, 0].set_ylabel("crop (28 × 28)")
fig.suptitle("windows z_where = (s, x, y) and their crops", fontsize=10)
fig.tight_layout();

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

# %%
objects = test_images[[3, 2, 1]]
z_where = torch.tensor([[0.45, -0.45, -0.4], [0.3, 0.55, -0.5], [0.55, 0.3, 0.35]])
windows = where_to_theta(z_where)
layers = paint(objects, windows, 50)  # one canvas per object, (3, 1, 50, 50)
scene = layers.sum(0, keepdim=True).clamp(max=1)  # AIR adds the objects up
read_back = crop(scene, windows, 28)  # the same windows, cropped: one scene, three windows
print("objects", tuple(objects.shape), "-> scene", tuple(scene.shape), "-> crops", tuple(read_back.shape))

fig = plt.figure(figsize=(9, 3.8))
layout = fig.add_gridspec(2, 5)
for i in range(3):
    draw(fig.add_subplot(layout[0, i]), objects[i], title=f"object {i + 1}")
    draw(fig.add_subplot(layout[1, i]), read_back[i], title=f"cropped back {i + 1}")
ax = fig.add_subplot(layout[:, 3:])
draw(ax, scene[0], title="painted into a 50 × 50 scene")
for i, theta in enumerate(windows):
    outline = window_outline(theta)[0]
    ax.plot(outline[:, 0], outline[:, 1], color=WINDOW, lw=1)
    ax.annotate(str(i + 1), outline[3].tolist(), color=WINDOW, xytext=(3, 3), textcoords="offset points")
fig.tight_layout()

alone = crop(paint(objects, windows, 50), windows, 28)
print(f"crop(paint(object)) against the object: mean absolute difference "
      f"{(alone - objects).abs().mean():.3f} (the object was shrunk to fewer pixels and back)")

# %% [markdown]
# ## Which way round? The direction pitfall
#
# Both directions take the same kind of matrix, and nothing checks which one you
# meant: feed `F.affine_grid` a window's pose where it needs the inverse and the
# code runs, the losses go down, and the picture is simply elsewhere. Take the pose
# $(s, x, y) = (0.5, 0.3, 0.2)$. Painted correctly, the digit fills the box outlined
# below. Fed to `affine_grid` uninverted, canvas point $p$ reads the object at
# $s p + (x, y)$: the object's centre lands at $-(x, y)/s = (-0.6, -0.4)$ and its
# size becomes $1/s$ of the canvas instead of $s$, so we see a quarter of a digit
# four times too large. Cropping has the mirror-image mistake.
#
# It is the easiest mistake to make when porting a model built on this operation:
# pass a pose to `affine_grid` without inverting it. Both
# conventions can be made to work if every part of a model agrees on one. Pyro's
# AIR example, for instance, uses the opposite one on purpose: its `z_where` maps
# canvas points into the object, so it paints with `z_where` as it is and crops with
# the inverse, and its scale $3$ is our $s = 1/3$. What breaks a model is mixing the
# two, or reading one as the other: a prior on $s$, the boxes drawn for the reader
# and every position-based metric then mean something else. The tests of this
# package pin our convention down (`tests/test_spatial.py`: a bright pixel is
# cropped with a known shift and must land at a known place).

# %%
theta = where_to_theta(torch.tensor([[0.5, 0.3, 0.2]]))
painted = {"paint: correct (inverse)": paint(digit[None], theta, 50)[0],
           "paint: pose not inverted": crop(digit[None], theta, 50)[0]}
scene_one = paint(digit[None], theta, 50)
cropped = {"crop: correct (pose)": crop(scene_one, theta, 28)[0],
           "crop: inverse by mistake": crop(scene_one, invert_affine(theta), 28)[0]}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (name, image) in zip(axes[:2], painted.items()):
    draw(ax, image, theta, title=name)
axes[1].plot([-0.6], [-0.4], "x", color="tab:red", ms=8)
axes[1].annotate("object's centre: -(x, y)/s", (-0.6, -0.4), color="tab:red", fontsize=8,
                 xytext=(-0.95, 0.9), bbox={"facecolor": "white", "pad": 1})
for ax, (name, image) in zip(axes[2:], cropped.items()):
    draw(ax, image, title=name)
fig.suptitle("the same numbers (s, x, y) = (0.5, 0.3, 0.2) fed both ways; "
             "orange: the window they describe", fontsize=10)
fig.tight_layout();

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

# %%
generator = torch.Generator().manual_seed(4)


def uniform(low, high, n=10):
    return low + (high - low) * torch.rand(n, generator=generator)


warps = affine_matrix(scale=uniform(0.7, 1.3), rotation=uniform(-0.8, 0.8), shear=uniform(-0.4, 0.4),
                      shift_x=uniform(-0.2, 0.2), shift_y=uniform(-0.2, 0.2), scale_y=uniform(0.7, 1.3))
prototype = digit[None]
warped = transform(prototype, warps)  # one prototype, ten warps
unwarped = transform(warped, invert_affine(warps))
compare_rows({"prototype through ten warps": warped, "warped back with the inverse": unwarped}, nrow=10)

a, b = warps[:1], warps[1:2]
twice = transform(transform(prototype, a), b)
once = transform(prototype, compose_affine(a, b))
print(f"two warps against one composed warp: largest pixel difference {(twice - once).abs().max():.3f} "
      "(not 0: resampling twice blurs twice)")

# %% [markdown]
# ## Gradients reach the window
#
# Because every step is differentiable, gradient descent can ask *where* an object
# is: given a 50×50 scene and the digit it contains, adjust `z_where` until the crop
# matches the digit. Three attempts below, each 300 steps of Adam, drawn as the
# window's outline every 30 steps (light to dark):
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

# %%
true_where = torch.tensor([[0.35, -0.4, 0.35]])
scene_one = paint(digit[None], where_to_theta(true_where), 50)


def blur(images):
    return gaussian_blur(images, kernel_size=13, sigma=2.0)


attempts = {  # name: (start, compare raw pixels or blurred ones)
    "raw pixels": ([0.6, 0.0, 0.0], lambda images: images),
    "blurred": ([0.6, 0.0, 0.0], blur),
    "blurred, start on background": ([0.3, 0.55, -0.5], blur),
}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.5))
for ax, (name, (start, look)) in zip(axes, attempts.items()):
    z = torch.tensor([start], requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=0.02)
    target = look(digit[None])
    outlines, losses = [], []
    for step in range(300):
        loss = (look(crop(scene_one, where_to_theta(z), 28)) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 30 == 0:
            outlines.append(window_outline(where_to_theta(z.detach()))[0])
    found = ", ".join(f"{v:.2f}" for v in z.detach()[0].tolist())
    draw(ax, scene_one[0], title=f"{name}\nfound ({found})")
    for i, outline in enumerate(outlines):
        shade = plt.cm.autumn_r(0.15 + 0.85 * i / len(outlines))
        ax.plot(outline[:, 0], outline[:, 1], color=shade, lw=1)
    axes[3].plot(np.array(losses) / losses[0], label=name)
axes[3].set_xlabel("step"), axes[3].set_ylabel("error / error at the start")
axes[3].legend(fontsize=8, loc="center right")
axes[3].set_title("true z_where = ({:.2f}, {:.2f}, {:.2f})".format(*true_where[0].tolist()), fontsize=9)
fig.tight_layout();


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
# what the window did not see.
#
# The rows work in the rendered book without a running kernel: each slider switches
# between frames computed in advance.

# %%
def explorer_frame(theta):
    """One frame: the window on the digit, the crop, and the crop painted back (an RGB array)."""
    window = crop(digit[None], theta, 28)
    back = paint(window, theta, 28)
    fig, axes = plt.subplots(1, 3, figsize=(5.1, 1.75), dpi=72)
    draw(axes[0], digit, theta, grid_size=7, limit=1.6, smooth=False)
    axes[0].plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "--", color="0.6", lw=0.8, antialiased=False)
    draw(axes[1], window[0])
    draw(axes[2], back[0], theta, smooth=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.98, wspace=0.06)
    fig.canvas.draw()
    frame = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    plt.close(fig)
    return frame


PARAMETERS = [  # (slider label, affine_matrix argument, slider values, slider value -> argument)
    ("scale", "scale", np.linspace(0.4, 1.6, 13), float),
    ("rotation (°)", "rotation", np.linspace(-90, 90, 13), math.radians),
    ("shear", "shear", np.linspace(-1, 1, 9), float),
    ("shift_x", "shift_x", np.linspace(-0.8, 0.8, 9), float),
    ("shift_y", "shift_y", np.linspace(-0.8, 0.8, 9), float),
]
rows = []
for label, key, values, convert in PARAMETERS:
    frames = [explorer_frame(affine_matrix(**{key: convert(v)})) for v in values]
    identity = 1.0 if key == "scale" else 0.0
    rows.append(frame_slider(frames, values, description=label, readout_format=".2g",
                             initial=identity, scale=1))
header = widgets.HTML("<small>window on the digit &nbsp;|&nbsp; crop &nbsp;|&nbsp; painted back</small>")
explorer = widgets.VBox([header, *rows])
explorer.add_class("oc-spatial-explorer")
explorer

# %% [markdown]
# All five parameters at once need Python to draw each new combination, so the
# version below only reacts in a running notebook (on Colab, or `jupyter lab`); in
# the rendered book its sliders do not change the picture.

# %%
sliders = {
    "scale": widgets.FloatSlider(value=1.0, min=0.3, max=2.0, step=0.05, description="scale"),
    "rotation": widgets.FloatSlider(value=0.0, min=-180, max=180, step=5, description="rotation (°)"),
    "shear": widgets.FloatSlider(value=0.0, min=-1.5, max=1.5, step=0.05, description="shear"),
    "shift_x": widgets.FloatSlider(value=0.0, min=-1.0, max=1.0, step=0.05, description="shift_x"),
    "shift_y": widgets.FloatSlider(value=0.0, min=-1.0, max=1.0, step=0.05, description="shift_y"),
}
live_image = widgets.Image(format="png")


def update(_change=None):
    values = {key: slider.value for key, slider in sliders.items()}
    values["rotation"] = math.radians(values["rotation"])
    live_image.value = to_png(explorer_frame(affine_matrix(**values)), scale=1)


for slider in sliders.values():
    slider.observe(update, names="value")
update()
widgets.VBox([widgets.HTML("<b>all five together</b> <small>(needs a running kernel)</small>"),
              widgets.HBox([widgets.VBox(list(sliders.values())), live_image])])

# %% [markdown]
# ## A network that learns where to look
#
# Descending on one crop could not find the digit; a network that sees the whole
# image can propose the window. The spatial transformer network
# {cite}`jaderberg2015stn` puts such a network in front of a classifier. A small *localisation network* looks at the whole image and
# outputs the six numbers of a window $\theta$; `crop` reads the window out at
# 28×28 pixels, and a small convolutional classifier reads the crop. No label says
# where the digit is: the localisation network learns only from the classification
# loss, whose gradient reaches $\theta$ through the bilinear sampling of the
# previous section. Its last layer starts with weights 0 and a bias equal to the
# window where an upright, centred digit sits (the middle 28×28 pixels of the
# canvas), so at the start the network is the plain classifier looking at the
# centre, and training moves the window from there.
#
# The task is the distorted MNIST of the same paper: each digit is turned by up to
# 45° either way, scaled by 0.7 to 1.2 and placed anywhere on a 42×42 canvas where
# it stays whole. The canvases are drawn with this chapter's own functions: the
# digit's pose on the canvas is a window built by `affine_matrix`, and `paint` draws
# the digit into it. That window is the *true distortion*: cropping it gives the
# upright digit back (bottom row below). Training canvases use MNIST's training
# digits, the validation canvases its last 5,000 training digits (never trained on)
# and the test canvases its test digits.

# %%
from IPython.display import Markdown, display

from objectcentric.data.distorted_mnist import distorted_mnist
from objectcentric.experiments.spatial_transformer import STNRecipe, evaluate
from objectcentric.models.stn import STN, LocalisationNet, build_model, count_parameters
from objectcentric.modes import QUICK, READ, run_mode
from objectcentric.records import read_results
from objectcentric.runner import load_or_train
from objectcentric.train import replay_history

MODE = run_mode()
distorted = distorted_mnist("test", n=1000 if MODE == QUICK else None)
shown = range(10)
fig, axes = plt.subplots(2, 10, figsize=(12, 2.8))
for column, i in enumerate(shown):
    draw(axes[0, column], distorted.images[i], distorted.theta[i], title=f"label {distorted.labels[i].item()}")
    draw(axes[1, column], crop(distorted.images[i : i + 1], distorted.theta[i : i + 1], 28)[0])
axes[0, 0].set_ylabel("canvas"), axes[1, 0].set_ylabel("true window")
fig.suptitle("distorted test canvases (orange: the digit's window) and the crops of those windows", fontsize=10)
fig.tight_layout();

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
# loss and accuracy on the 5,000 validation canvases after every pass. In read mode
# we load the trained spatial transformer network and replay its recorded curves;
# the baseline's numbers come from the recorded run (it is trained here in the other
# modes).

# %%
stn_run = load_or_train(STNRecipe(), MODE)
stn = stn_run.model.cpu()
if stn_run.record["loaded"]:
    replay_history(stn_run.history)
baseline = None if MODE == READ else load_or_train(STNRecipe(model="baseline"), MODE).model.cpu()

# %%
recorded = read_results("spatial_transformer")
rows = ["| | parameters | test accuracy (recorded) | measured here |", "|---|---|---|---|"]
for name, model in [("stn", stn), ("baseline", baseline)]:
    label = "spatial transformer network" if name == "stn" else "the same classifier, no transformer"
    here = "" if model is None else f"{evaluate(model, distorted)['accuracy']:.2%} ({len(distorted):,} canvases)"
    accuracy = recorded.get(f"{name}_test_accuracy")
    rows.append(f"| {label} | {count_parameters(build_model(name)):,} | {'' if accuracy is None else f'{accuracy:.2%}'} | {here} |")
display(Markdown("\n".join(rows)))
if recorded:
    print(f"recorded on {recorded['n_test_canvases']:,} test canvases, one training run of each model, "
          f"trained on {recorded['device']}")
if MODE == QUICK:
    print("quick mode: the models here trained for a few steps, so their numbers are not results")

# %%
if recorded:
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, label in [("stn", "spatial transformer network"), ("baseline", "no transformer")]:
        curve = recorded["validation_curves"][name]
        ax.plot(curve["epoch"], [1 - a for a in curve["val_accuracy"]], "o-", label=label)
    ax.set_yscale("log"), ax.set_xlabel("pass through the training canvases"), ax.set_ylabel("validation error")
    ax.set_xticks(curve["epoch"]), ax.legend(fontsize=8), ax.set_title("recorded runs", fontsize=10)
    fig.tight_layout()

# %% [markdown]
# At the same size and with the same training, the spatial transformer network
# makes well under half as many mistakes on the test canvases as the classifier
# without it, and its validation error is lower after every pass. These are single
# training runs of five passes each, and the baseline's error was still falling at
# the end; the paper trains both kinds of network far longer and reaches lower
# errors with both. What carries over is the order: a network that first looks in
# the right place needs less capacity to recognise what it sees.

# %% [markdown]
# ## What the windows do
#
# Top row: test canvases with the window the trained network chose (orange). Middle
# row: what the classifier reads, the crop of that window. Bottom row: the digits as
# MNIST has them, before the distortion. The windows follow the digits across the
# canvas and grow and shrink with them, so the crops come out centred and at nearly
# one size (larger than MNIST draws its digits: the windows are a little smaller
# than the digits' boxes, so the network zooms in); they turn with the digits only
# part of the way. The network has learned to undo much of the distortion from
# class labels alone.

# %%
digits, _ = load_mnist("test")
with torch.no_grad():
    windows = stn.window(distorted.images[:10])
    glimpses = stn.glimpse(distorted.images[:10])
fig, axes = plt.subplots(3, 10, figsize=(12, 4.1))
for i in range(10):
    draw(axes[0, i], distorted.images[i], windows[i])
    draw(axes[1, i], glimpses[i])
    draw(axes[2, i], digits[i])
for ax, name in zip(axes[:, 0], ["canvas", "learned crop", "undistorted"]):
    ax.set_ylabel(name)
fig.tight_layout();

# %% [markdown]
# How much of the distortion is left? Compose each learned window with the inverse
# of the true one: the result is the crop's pose in the upright digit's own frame.
# A window that undid the distortion exactly would give the same pose for every
# canvas (whichever fixed pose the classifier likes best), so the spread of that
# pose across canvases, next to the spread of the distortion itself, measures what
# is left: rotation in degrees, size as the spread of its logarithm.
#
# Position is undone almost completely (about a pixel off), size roughly halfway,
# rotation the least. Nothing in the loss asks for upright crops: a convolutional
# classifier already copes with a digit turned by twenty degrees or so, which is
# presumably why the windows stop turning before the digits are upright.

# %%
alignment = recorded.get("window_alignment")
if alignment:
    print(f"rotation: the distortion spreads {alignment['distortion_rotation_std_deg']:.1f}° (std), "
          f"the crops {alignment['residual_rotation_std_deg']:.1f}°\n"
          f"size: the distortion spreads {alignment['distortion_log_scale_std']:.3f} (std of the log), "
          f"the crops {alignment['residual_log_scale_std']:.3f}\n"
          f"position: the crop's centre is on average {alignment['mean_centre_error'] * 21:.1f} pixels "
          f"from the digit's (all {recorded['n_test_canvases']:,} test canvases)")


# %% [markdown]
# ## What we built
#
# Six small functions in `objectcentric.spatial`, each a line or two over
# `F.affine_grid` and `F.grid_sample`: `affine_matrix` and `where_to_theta` describe a
# window by its pose (where its centre is, how large and how turned it is);
# `crop` reads the window out of an image; `invert_affine` and `paint` write a
# patch back into it; `transform` warps a whole image. The one rule to remember:
# `affine_grid` maps *output* points to *input* points, so a crop takes the window's
# pose and a paint takes its inverse. A spatial transformer network puts a
# localisation network in front of `crop` and learns, from class labels alone, to
# choose windows that undo rotation, scaling and shifts. Chapter 5 warps prototypes
# with `transform`, and Chapter 6 (AIR) reads each object with `crop` and draws it
# with `paint`.
