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
