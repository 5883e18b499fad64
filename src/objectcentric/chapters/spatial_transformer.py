"""Chapter 4 (spatial transformer): drawing windows, the explorers' frames, and the chapter's tables.

The operations themselves (``affine_matrix``, ``crop``, ``paint``, ...) live
in :mod:`objectcentric.spatial`, the network in :mod:`objectcentric.models.stn`
and its experiment in :mod:`objectcentric.experiments.spatial_transformer`.
This module only draws what a cell computed, or read from
``results/spatial_transformer.json``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import book
from ..spatial import affine_matrix, crop, paint, sampling_grid, window_outline

WINDOW = "tab:orange"  # the colour of every window drawn in the chapter


def draw(ax, image, theta=None, grid_size=None, limit=1.0, title=None, smooth=True):
    """Show a (1, H, W) image in normalised coordinates; outline a window ``theta`` (1, 2, 3) or (2, 3).

    ``grid_size`` adds the window's sampling points (that many per side); the
    large dot marks the window's top-left corner. ``limit`` is how far the
    axes reach (1: the image's edges). ``smooth=False`` draws without
    antialiasing: fewer colours, smaller PNG frames for widgets.
    """
    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, extent=(-1, 1, 1, -1), interpolation="nearest")
    if theta is not None:
        if grid_size:
            points = sampling_grid(theta, grid_size)[0].reshape(-1, 2)
            ax.plot(points[:, 0], points[:, 1], "s", color=WINDOW, ms=1.5, mew=0, antialiased=smooth)
        outline = window_outline(theta)[0]
        ax.plot(outline[:, 0], outline[:, 1], color=WINDOW, lw=1.5, antialiased=smooth)
        ax.plot(outline[0, 0], outline[0, 1], "o", color=WINDOW, ms=4, antialiased=smooth)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(limit, -limit)  # y points down, as in the pixel array
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


# --- the explorers ---------------------------------------------------------------------------
def explorer_frame(digit: torch.Tensor, theta: torch.Tensor) -> np.ndarray:
    """One explorer frame (an RGB array): the window on ``digit`` (1, H, W), its 28 x 28 crop, and
    the crop painted back onto an empty image with the inverse."""
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


# (slider label, affine_matrix argument, its identity value, slider value -> argument)
PARAMETERS = (
    ("scale", "scale", 1.0, float),
    ("rotation (°)", "rotation", 0.0, math.radians),
    ("shear", "shear", 0.0, float),
    ("shift_x", "shift_x", 0.0, float),
    ("shift_y", "shift_y", 0.0, float),
)
ONE_AT_A_TIME = {"scale": np.linspace(0.4, 1.6, 13), "rotation": np.linspace(-90, 90, 13),
                 "shear": np.linspace(-1, 1, 9), "shift_x": np.linspace(-0.8, 0.8, 9),
                 "shift_y": np.linspace(-0.8, 0.8, 9)}
TOGETHER = {"scale": (0.6, 1.0, 1.4), "rotation": (-45, 0, 45), "shear": (-0.5, 0.0, 0.5),
            "shift_x": (-0.4, 0.0, 0.4), "shift_y": (-0.4, 0.0, 0.4)}

PANELS = "<small>window on the digit &nbsp;|&nbsp; crop &nbsp;|&nbsp; painted back</small>"


def one_at_a_time(digit: torch.Tensor, values: dict = ONE_AT_A_TIME):
    """One slider row per parameter of :func:`affine_matrix`, the others at the identity (precomputed)."""
    import ipywidgets as widgets

    from ..widgets import frame_slider

    rows = []
    for label, key, identity, convert in PARAMETERS:
        frames = [explorer_frame(digit, affine_matrix(**{key: convert(v)})) for v in values[key]]
        rows.append(frame_slider(frames, values[key], description=label, readout_format=".2g",
                                 initial=identity, scale=1))
    box = widgets.VBox([widgets.HTML(PANELS), *rows])
    box.add_class("oc-spatial-explorer")
    return box


def all_together(digit: torch.Tensor, values: dict = TOGETHER):
    """Five sliders that move the window together: every combination of ``values`` precomputed
    (3 values each: 243 frames), linked in the browser, so it works in the static book too."""
    import ipywidgets as widgets

    from ..widgets import frame_grid

    keys = [key for _, key, _, _ in PARAMETERS]
    frames = {}
    for index in np.ndindex(*(len(values[k]) for k in keys)):
        arguments = {key: convert(values[key][i]) for (_, key, _, convert), i in zip(PARAMETERS, index)}
        frames[index] = explorer_frame(digit, affine_matrix(**arguments))
    axes = [(label, values[key], identity) for label, key, identity, _ in PARAMETERS]
    grid = frame_grid(frames, axes, scale=1, css_class="oc-spatial-together")
    return widgets.VBox([widgets.HTML(PANELS), grid])


# --- the spatial transformer network ---------------------------------------------------------
MODEL_NAMES = {"stn": "spatial transformer network", "baseline": "the same classifier, no transformer"}
# Test error on the same distortion (rotation, translation, scale; "RTS") in Table 1 of Jaderberg et al.
# (2015): their spatial transformer with a CNN classifier and an affine window, and their plain CNN.
PAPER_ERROR = {"stn": ("ST-CNN", 0.005), "baseline": ("CNN", 0.008)}


def accuracy_table(recorded: dict, parameters: dict, here: dict | None = None):
    """The two models' recorded test accuracy and error next to the paper's error (and, if given,
    ``here``: {model: accuracy} measured on this page), with their sizes."""
    columns = ["parameters", "test accuracy", "test error", "the paper's test error"]
    if here:
        columns.append("accuracy measured on this page")
    rows = {}
    for name, words in MODEL_NAMES.items():
        accuracy = recorded.get(f"{name}_test_accuracy")
        error = None if accuracy is None else 1 - accuracy
        paper_model, paper_error = PAPER_ERROR[name]
        row = [parameters[name], book.pct(accuracy, 2), book.pct(error, 2),
               f"{book.pct(paper_error)} ({paper_model})"]
        if here:
            row.append(book.pct(here.get(name), 2))
        rows[words] = row
    n = recorded.get("n_test_canvases")
    caption = f"Distorted MNIST: accuracy on {n:,} test canvases" if n else "Distorted MNIST: test accuracy"
    return book.table(rows, columns, index_name="model", caption=caption,
                      notes="Ours: one training run of each model, five passes through 55,000 canvases. "
                            "The paper's: Table 1 of Jaderberg et al. (2015), the same distortion "
                            "(rotation, scale, translation), larger networks trained far longer.")


def how_trained(recorded: dict):
    """The "How this was measured" block of the two recorded runs: provenance, seed, training times."""
    minutes = {name: f"{t / 60:.0f} min" for name, t in recorded["training_wall_time_s"].items()}
    details = {"training time": f"spatial transformer network {minutes['stn']}, baseline "
                                f"{minutes['baseline']}, on the device named above",
               "data": recorded["protocol"]}
    runs = f"one training run of each model, seed {recorded['seed']}"
    return book.how_measured("spatial_transformer", ["stn_test_accuracy"], seeds=runs, details=details)


def plot_validation_error(curves: dict):
    """Validation error per pass of both recorded runs (``results["validation_curves"]``), log scale."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    for name, label in (("stn", "spatial transformer network"), ("baseline", "no transformer")):
        curve = curves[name]
        ax.plot(curve["epoch"], [1 - a for a in curve["val_accuracy"]], "o-", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("pass through the training canvases")
    ax.set_ylabel("validation error (fraction)")
    ax.set_xticks(curves["stn"]["epoch"])
    ax.legend()
    return fig


def alignment_table(alignment: dict, n_canvases: int, canvas: int = 42):
    """How much distortion the learned windows leave (``results["window_alignment"]``), in words and units."""
    half = canvas / 2  # normalised coordinates -> pixels of the canvas
    rows = [
        ["rotation (degrees, std)", alignment["distortion_rotation_std_deg"],
         alignment["residual_rotation_std_deg"]],
        ["size (std of the log)", alignment["distortion_log_scale_std"],
         alignment["residual_log_scale_std"]],
        ["position (mean error, pixels)", "–", alignment["mean_centre_error"] * half],
    ]
    return book.table(rows, ["", "the distortion", "left in the crops"],
                      caption=f"Spread of the pose across {n_canvases:,} test canvases: the distortion, and "
                              "what the learned windows leave of it",
                      notes="Position: distance between the crop's centre and the digit's, on the "
                            f"{canvas} x {canvas} canvas.")


def plot_mistakes(images, windows, glimpses, labels, predicted, columns: int = 8):
    """Canvases the network got wrong: each with its learned window (top) and its crop (bottom),
    titled with the true and the predicted label."""
    n = min(columns, len(images))
    fig, axes = plt.subplots(2, n, figsize=(8, 2.5), squeeze=False)
    for i in range(n):
        draw(axes[0, i], images[i], windows[i], title=f"{int(labels[i])}, read {int(predicted[i])}")
        draw(axes[1, i], glimpses[i])
    axes[0, 0].set_ylabel("canvas")
    axes[1, 0].set_ylabel("crop")
    fig.tight_layout()
    return fig
