"""Chapter 1 (Variational autoencoders): the figures and tables of its page.

The notebook keeps the lesson (encoder, ELBO, IWAE bound); what only draws or
tabulates lives here: the KL-per-latent bars, the 2-D latent space, the IWAE
curve, the comparison with Burda et al. (2016), and the two pictures of what
fails (grey pixels, holes in the latent space).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..book import fmt, pct, table
from ..viz import image_grid, latent_manifold

# Burda et al. (2016), Table 1, MNIST, trained for 3,280 passes; NLL = -L_5000 on the test set. One stochastic
# layer: 50 latents over two deterministic layers of 200 tanh units. Two stochastic layers: 100 latents over
# 2 x 200 tanh units, then 50 latents over 2 x 100.
PAPER_NLL = {"VAE": 86.76, "IWAE, k = 50": 84.78, "two-layer IWAE, k = 5": 83.89}
PAPER_EPOCHS = 3280


def monitored_on(run) -> str:
    """Which held-out images the validation curves of ``run`` (from ``load_or_train``) are on, in words."""
    from ..checkpoints import read_manifest
    from ..experiments.vae import MONITORED_ON_TEST_IMAGES

    if run.record.get("loaded"):
        entry = read_manifest()["checkpoints"].get(run.record["file"], {})
        if entry.get("sha256") in MONITORED_ON_TEST_IMAGES:
            return ("the first 2,000 test images (this model was trained before the book set validation digits "
                    "apart; nothing was chosen with them, since the last pass is the model, but they are among "
                    "the test images of the likelihood below)")
    return "2,000 validation digits (of MNIST's last 5,000 training digits, which training never sees)"


def plot_kl_per_latent(kl_per_latent: torch.Tensor, threshold: float = 0.01):
    """Mean KL of each latent (d,) -> a bar figure, latents sorted by KL, with how many exceed
    ``threshold`` nats in its title."""
    kl = torch.as_tensor(kl_per_latent).detach().cpu()
    order = torch.argsort(kl, descending=True)
    active = int((kl > threshold).sum())
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.bar(range(len(order)), kl[order])
    ax.set_xlabel("latent, sorted by KL")
    ax.set_ylabel("mean KL (nats)")
    ax.set_title(
        f"{active} of {len(order)} latents carry information "
        f"(KL above {fmt(threshold)} nats)"
    )
    fig.tight_layout()
    return fig


def plot_latent_space(decode, means: torch.Tensor, labels: torch.Tensor, n: int = 15):
    """A 2-D model's latent space: ``decode`` (codes (m, 2) -> images (m, 1, H, W)) over a
    grid at the prior's quantiles, beside the posterior means (N, 2) of test digits coloured
    by their ``labels`` (N,). Returns the figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4.2))
    latent_manifold(decode, n=n, ax=left)
    left.set_title("decoded from a grid of codes")
    points = right.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", s=2)
    right.legend(
        *points.legend_elements(),
        title="digit",
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        title_fontsize=8,
    )
    right.set_xlabel("$z_1$")
    right.set_ylabel("$z_2$")
    right.set_title("posterior means of test digits")
    right.set_aspect("equal")
    fig.tight_layout()
    return fig


def plot_iwae_bounds(ks, bounds, n_images: int):
    """The negative IWAE bound -L_k (nats) against k -> a figure with each value written on it."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(ks, bounds, "o-")
    ax.set_xscale("log")
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel(r"$-\mathcal{L}_k$ (nats per image)")
    ax.set_title(f"The bound tightens with k ({n_images} binarized test images)")
    for k, b in zip(ks, bounds):
        ax.annotate(
            fmt(b, 4), (k, b), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    ax.margins(x=0.15, y=0.25)
    fig.tight_layout()
    return fig


def measured_models(result: dict) -> dict[str, dict]:
    """``results/vae.json`` -> the record of each measured model by name (``plain_vae``, ``iwae``)."""
    if "plain_vae" not in result and "iwae" not in result:  # a file from before the two-layer model
        return {"plain_vae": result}
    return {name: result[name] for name in ("plain_vae", "iwae") if name in result}


def nll_table(result: dict):
    """``results/vae.json`` -> the table of our test NLL and ELBO next to Burda et al.'s numbers."""
    ours = {"plain_vae": ("this chapter's VAE", "50", "2 × 512 ReLU"),
            "iwae": ("this chapter's two-layer IWAE (k = 5)", "100, then 50", "2 × 200, then 2 × 100 tanh")}
    rows = [[*ours[name], fmt(record["training_epochs"]),
             f"{fmt(record['test_nll_nats'], 4)} ± {fmt(record['test_nll_standard_error'], 2)}",
             fmt(record["test_neg_elbo_nats"], 4)] for name, record in measured_models(result).items()]
    paper = {"VAE": ("50", "2 × 200 tanh"), "IWAE, k = 50": ("50", "2 × 200 tanh"),
             "two-layer IWAE, k = 5": ("100, then 50", "2 × 200, then 2 × 100 tanh")}
    rows += [[f"{name}, Burda et al. (2016)", *shape, fmt(PAPER_EPOCHS), fmt(PAPER_NLL[name], 4), "–"]
             for name, shape in paper.items()]
    columns = ["model", "latents", "hidden layers", "passes over the data", f"test NLL, −L_{result['k']} (nats)",
               "test −ELBO (nats)"]
    caption = (
        f"Negative log-likelihood of all {fmt(result['n_test_images'])} binarized MNIST "
        f"test digits, estimated with k = {fmt(result['k'])} importance samples "
        "(lower is better; ± one standard error over images)"
    )
    return table(rows, columns, caption)


# --- what fails ------------------------------------------------------------------------------
def grey_fraction(
    probabilities: torch.Tensor, low: float = 0.1, high: float = 0.9
) -> float:
    """Images (B, ...) of pixel probabilities -> the fraction of pixels strictly between
    ``low`` and ``high``: pixels the image leaves to a coin flip."""
    p = torch.as_tensor(probabilities).float()
    return float(((p > low) & (p < high)).float().mean())


def grey_pixel_table(rows: dict, low: float = 0.1, high: float = 0.9):
    """{what: images of pixel probabilities} -> a table of each one's :func:`grey_fraction`."""
    body = [
        [name, pct(grey_fraction(images, low, high))] for name, images in rows.items()
    ]
    return table(
        body,
        ["images", f"pixels with probability between {fmt(low)} and {fmt(high)}"],
        caption="How much of each picture is left to a coin flip",
    )


@torch.no_grad()
def aggregate_log_density(
    means: torch.Tensor, stds: torch.Tensor, codes: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """Log density of the aggregate posterior q(z) = (1/N) Σ_n q(z | x_n) at ``codes`` (M, d),
    from the N posteriors' means and standard deviations (N, d) -> (M,)."""
    posteriors = torch.distributions.Normal(means[None], stds[None])
    out = [
        torch.logsumexp(posteriors.log_prob(c[:, None]).sum(-1), dim=1)
        for c in codes.split(chunk)
    ]
    return torch.cat(out) - math.log(len(means))


@torch.no_grad()
def log_density_ratio(
    means: torch.Tensor, stds: torch.Tensor, codes: torch.Tensor
) -> torch.Tensor:
    """log q(z) - log p(z) at ``codes`` (M, d): below 0 where the data's codes are rarer than
    the prior N(0, I) expects, far below 0 in the latent space's holes."""
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(codes).sum(-1)
    return aggregate_log_density(means, stds, codes) - prior


def plot_holes(
    means: torch.Tensor,
    stds: torch.Tensor,
    decode,
    hole_ratio: float = 0.1,
    n_shown: int = 8,
    extent: float = 3.0,
    resolution: int = 121,
    seed: int = 0,
):
    """The holes of a 2-D latent space in one figure.

    Takes the posteriors (means, stds (N, 2)) of test digits and ``decode``
    (codes (m, 2) -> images (m, 1, H, W)). Left: log10 q(z)/p(z) over
    [-extent, extent]², with the contour q(z) = ``hole_ratio`` · p(z). Right:
    ``n_shown`` prior draws that fall in a hole (red crosses on the left) and
    ``n_shown`` that do not (white dots), decoded. Returns the figure.
    """
    axis = torch.linspace(-extent, extent, resolution)
    z1, z2 = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([z1.flatten(), z2.flatten()], -1)
    ratio_map = log_density_ratio(means, stds, grid).reshape(
        resolution, resolution
    ) / math.log(10)
    draws = torch.randn(4000, 2, generator=torch.Generator().manual_seed(seed))
    ratio = log_density_ratio(means, stds, draws)
    in_hole = ratio < math.log(hole_ratio)
    holes, filled = draws[in_hole][:n_shown], draws[~in_hole][:n_shown]

    fig = plt.figure(figsize=(8, 4.3))
    left = fig.add_axes([0.07, 0.12, 0.45, 0.78])
    shown = left.imshow(
        ratio_map.clamp(-4, 2).numpy(),
        origin="lower",
        cmap="RdBu",
        vmin=-4,
        vmax=2,
        extent=(-extent, extent, -extent, extent),
    )
    left.contour(
        axis,
        axis,
        ratio_map.numpy(),
        levels=[math.log10(hole_ratio)],
        colors="black",
        linewidths=0.8,
    )
    left.scatter(
        holes[:, 0], holes[:, 1], marker="x", color="red", s=30, label="in a hole"
    )
    left.scatter(
        filled[:, 0],
        filled[:, 1],
        marker="o",
        facecolor="white",
        edgecolor="black",
        s=18,
        label="among the digits",
    )
    left.set_xlabel("$z_1$")
    left.set_ylabel("$z_2$")
    left.set_title("log10 q(z) / p(z)")
    left.legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.colorbar(shown, ax=left, fraction=0.046, pad=0.02)
    for row, (codes, title) in enumerate(
        [(holes, "prior draws in a hole"), (filled, "prior draws among the digits")]
    ):
        ax = fig.add_axes([0.62, 0.52 - 0.42 * row, 0.36, 0.36])
        if len(codes):
            image_grid(decode(codes), nrow=4, ax=ax)
        else:  # a model whose codes fill the prior (an untrained one, say) has no holes
            ax.set_axis_off()
            ax.text(0.5, 0.5, "none among 4,000 draws", ha="center", va="center")
        ax.set_title(title)
    return fig


def hole_fractions(
    means: torch.Tensor,
    stds: torch.Tensor,
    ratios=(0.1, 0.01),
    n: int = 4000,
    seed: int = 0,
) -> dict:
    """{r: fraction of ``n`` prior draws where q(z) < r · p(z)} for each ratio ``r``."""
    draws = torch.randn(
        n, means.shape[1], generator=torch.Generator().manual_seed(seed)
    )
    ratio = log_density_ratio(means, stds, draws)
    return {r: float((ratio < math.log(r)).float().mean()) for r in ratios}


def posterior_std_summary(stds: torch.Tensor) -> dict:
    """Posterior standard deviations (N, d) -> their median and 90th percentile, over images
    and latents."""
    flat = torch.as_tensor(stds).flatten().float()
    return {
        "median": float(flat.median()),
        "p90": float(np.quantile(flat.numpy(), 0.9)),
    }


def training_details(manifest: dict | None = None) -> dict:
    """The checkpoint manifest -> {label: how each shipped model of the chapter was trained}, for the
    ``details`` of :func:`objectcentric.book.how_measured`."""
    from ..book import _duration
    from ..checkpoints import read_manifest
    from ..experiments.vae import IWAERecipe, checkpoint_name

    entries = (manifest or read_manifest())["checkpoints"]
    details = {}
    for name in (checkpoint_name(50), checkpoint_name(2), IWAERecipe().shipped_name()):
        entry = entries.get(name)
        if entry is None:
            continue
        epochs = entry.get("metrics", {}).get("epochs")
        details[f"training of {name}"] = (
            f"{entry['command']} ({fmt(epochs)} passes; {entry['device']}; "
            f"{_duration(entry.get('wall_time_s'))}; commit {entry['commit'][:12]}; "
            f"seed {entry.get('seed', 0)})"
        )
    return details


def nll_gap_sentence(result: dict) -> str:
    """``results/vae.json`` -> sentences comparing our test NLLs with Burda et al.'s models of the same shape."""
    models = measured_models(result)
    plain = models["plain_vae"]
    gap = plain["test_nll_nats"] - PAPER_NLL["VAE"]
    words = (
        f"Burda et al.'s VAE reaches {fmt(PAPER_NLL['VAE'], 4)} nats; ours reaches "
        f"{fmt(plain['test_nll_nats'], 4)}, {fmt(abs(gap), 2)} nats {'worse' if gap > 0 else 'better'}. It was "
        f"trained for {fmt(plain['training_epochs'])} passes over the data, theirs for "
        f"{fmt(PAPER_EPOCHS)}, with wider ReLU layers instead of tanh ones; we have not "
        "measured how much of the gap each difference explains."
    )
    if "iwae" in models:
        iwae = models["iwae"]
        gain = plain["test_nll_nats"] - iwae["test_nll_nats"]
        behind = iwae["test_nll_nats"] - PAPER_NLL["two-layer IWAE, k = 5"]
        words += (
            f" The two-layer IWAE reaches {fmt(iwae['test_nll_nats'], 4)} nats, "
            f"{fmt(abs(gain), 2)} nats {'better' if gain > 0 else 'worse'} than our VAE after "
            f"{fmt(iwae['training_epochs'])} passes; the same model in Burda et al. reaches "
            f"{fmt(PAPER_NLL['two-layer IWAE, k = 5'], 4)} after {fmt(PAPER_EPOCHS)} passes, "
            f"{fmt(abs(behind), 2)} nats {'better than' if behind > 0 else 'worse than'} ours. Theirs had "
            f"{fmt(PAPER_EPOCHS / iwae['training_epochs'], 2)} times as many passes; we have not trained that long."
        )
    return words
