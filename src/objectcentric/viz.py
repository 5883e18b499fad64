"""Pictures shared by the chapters: image grids, source listings, latent manifolds (Chapter 1)."""

import inspect
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid


def show_source(obj) -> None:
    """Display the source code of a function or class from the library, as a highlighted block.

    The chapters show the code they run instead of copying it, so the book
    and the package can never drift apart.
    """
    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{textwrap.dedent(inspect.getsource(obj)).rstrip()}\n```"))


def image_grid(images: torch.Tensor, nrow: int = 10, title: str | None = None, ax=None):
    """Draw a batch of (B, 1, H, W) images in [0, 1] as one grid."""
    grid = make_grid(images.detach().cpu().float(), nrow=nrow, padding=2, pad_value=0.5)
    ax = ax or plt.subplots(figsize=(nrow * 0.6, np.ceil(len(images) / nrow) * 0.6))[1]
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def compare_rows(rows: dict[str, torch.Tensor], nrow: int = 10):
    """Stack several image batches as labelled rows (e.g. data above reconstructions)."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(nrow * 0.6, len(rows) * 0.8))
    for ax, (label, images) in zip(np.atleast_1d(axes), rows.items()):
        image_grid(images[:nrow], nrow=nrow, ax=ax)
        ax.set_title(label, loc="left", fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def latent_manifold(decode, n: int = 15, extent: float = 0.95, ax=None):
    """Decode a grid of 2-d latent codes, placed at the normal quantiles in (1-extent)/2..(1+extent)/2.

    Spacing the grid by quantiles of the prior, not evenly, puts as many
    images where the prior has most of its mass as in its tails.
    """
    quantiles = torch.linspace((1 - extent) / 2, (1 + extent) / 2, n)
    values = torch.distributions.Normal(0.0, 1.0).icdf(quantiles)
    z1, z2 = torch.meshgrid(values, values.flip(0), indexing="xy")  # z2 grows upwards
    codes = torch.stack([z1.flatten(), z2.flatten()], dim=-1)
    images = decode(codes)
    ax = ax or plt.subplots(figsize=(7, 7))[1]
    image_grid(images, nrow=n, ax=ax)
    ax.set_title("decoded from a grid over the 2-d latent space (normal quantiles)")
    return ax


def prototype_grid(prototypes, titles, ncol: int | None = None, title: str | None = None, size: float = 1.1):
    """The K prototypes (K, [1,] H, W) of a clustering model side by side, each under its title (Chapter 5).

    ``titles`` are one string per prototype, e.g. the class it is matched to
    and the share of images it takes. Returns the figure.
    """
    images = torch.as_tensor(prototypes).detach().cpu().float().reshape(len(titles), *np.shape(prototypes)[-2:])
    ncol = ncol or len(titles)
    nrow = int(np.ceil(len(titles) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * size, nrow * (size + 0.35)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, label in zip(axes.flat, images, titles):
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_plot(matrix, class_names, title: str | None = None, ax=None):
    """A confusion matrix (true class by row, predicted by column), shaded by row fraction, with the counts."""
    matrix = np.asarray(matrix)
    fractions = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax = ax or plt.subplots(figsize=(0.5 * len(class_names) + 2, 0.5 * len(class_names) + 1.5))[1]
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6,
                    color="white" if fractions[i, j] > 0.5 else "black")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, fontsize=7, rotation=90 if max(map(len, class_names)) > 2 else 0)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set_xlabel("cluster's class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
