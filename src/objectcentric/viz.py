"""Pictures shared by the chapters: image grids, source listings, latent manifolds (Chapter 1)."""


import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid


def show_source(obj, open_: bool = False) -> None:
    """Display the source code of a function or class from the library, highlighted, in a block
    the reader unfolds (``open_``: shown unfolded).

    The chapters show the code they run instead of copying it, so the book
    and the package can never drift apart.
    """
    from IPython.display import display

    from .book import source_block

    display(source_block(obj, open_=open_))


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
    # room above each image for a title of two lines (9 points each)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * size, nrow * (size + 0.5) + (0.4 if title else 0)),
                             squeeze=False, layout="constrained")  # constrained: room for the suptitle
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, label in zip(axes.flat, images, titles):
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def confusion_plot(matrix, class_names, title: str | None = None, ax=None):
    """A confusion matrix (true class by row, predicted by column), shaded by row fraction, with the counts."""
    matrix = np.asarray(matrix)
    fractions = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax = ax or plt.subplots(figsize=(0.5 * len(class_names) + 2, 0.5 * len(class_names) + 1.5))[1]
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if fractions[i, j] > 0.5 else "black")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, fontsize=9, rotation=90 if max(map(len, class_names)) > 2 else 0)
    ax.set_yticks(ticks, class_names, fontsize=9)
    ax.set_xlabel("cluster's class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --- Chapter 2 (β-VAE): the sweep's figures ----------------------------------------------------------
# They draw the records of results/beta_vae.json and the frames of checkpoints/beta_vae_frames.pt
# (objectcentric.experiments.beta_vae writes both).
ARCHITECTURE_COLORS = {"fc": "tab:blue", "conv": "tab:orange", "allconv": "tab:green"}
DATASET_TITLES = {"one_ball": "one ball", "two_balls": "two balls", "shapes": "shapes"}


def plot_traversals(frames: dict, keys: list[str], titles: list[str] | None = None, max_latents: int = 10,
                    columns: int = 2, width: float = 8.0):
    """The traversal figure of the β-VAE recreation (Chapter 2): one panel per run of ``keys``
    (``columns`` per row, ``width`` inches in all); in a panel, rows are latents ordered by
    average posterior std (lowest, i.e. most used, on top), columns the values -3 ... 3 given
    to that latent. Returns the figure."""
    from .experiments.beta_vae import latent_labels

    rows = int(np.ceil(len(keys) / columns))
    panel = width / columns
    shown_rows = min(max_latents, max(len(frames[k]["frames"]) for k in keys))
    fig, axes = plt.subplots(rows, columns, figsize=(width, rows * panel * shown_rows / 7 * 0.8 + 0.5),
                             squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key, title in zip(axes.flat, keys, titles or keys):
        frame = frames[key]
        shown = frame["frames"][:max_latents].float() / 255
        image_grid(shown.flatten(0, 1)[:, None], nrow=shown.shape[1], ax=ax)
        ax.set_title(title, fontsize=9)
        ax.set_axis_on()
        height = shown.shape[-2] + 2
        ax.set_yticks([2 + height * (r + 0.5) for r in range(len(shown))],
                      latent_labels(frame)[:len(shown)], fontsize=8)
        width_px = shown.shape[-1] + 2
        ax.set_xticks([2 + width_px * (c + 0.5) for c in range(shown.shape[1])],
                      [f"{v:g}" for v in frame["values"]], fontsize=8)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    fig.tight_layout()
    return fig


def plot_posterior_std(runs: list[dict]):
    """The second figure of the β-VAE recreation (Chapter 2): each latent's average posterior
    std, sorted, per family and β; an 8-inch figure, one panel per dataset and family.

    A latent at std 1 is unused (its posterior is the prior); the lower the
    curve starts, the fewer latents the model relies on, and the more precisely.
    """
    from .experiments.beta_vae import ARCHITECTURES, BALL_DATASETS, SHAPES_ARCHITECTURE, find_run

    panels = [(d, a) for d in BALL_DATASETS for a in ARCHITECTURES] + [("shapes", SHAPES_ARCHITECTURE)]
    panels = [(d, a) for d, a in panels if any(r["dataset"] == d and r["architecture"] == a for r in runs)]
    columns = len(ARCHITECTURES)
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(8, 2.3 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (dataset, architecture) in zip(axes.flat, panels):
        betas = sorted({r["beta"] for r in runs if r["dataset"] == dataset})
        colors = plt.cm.viridis(np.linspace(0, 0.85, len(betas)))
        for beta, color in zip(betas, colors):
            run = find_run(runs, dataset, architecture, beta)
            if run:
                std = sorted(run["posterior_std"])
                ax.plot(range(1, len(std) + 1), std, "o-", ms=3, color=color, label=f"β = {beta:g}")
        top = max([1.0] + [s for r in runs if (r["dataset"], r["architecture"]) == (dataset, architecture)
                           for s in r["posterior_std"]])
        ax.set_ylim(0, top + 0.1)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_title(f"{DATASET_TITLES[dataset]}, {architecture}", fontsize=9)
        ax.set_xlabel("latent, sorted", fontsize=9)
        ax.set_ylabel("mean posterior std", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reconstruction(runs: list[dict]):
    """The third figure of the β-VAE recreation (Chapter 2): held-out reconstruction error
    against β, per family and dataset, in an 8-inch figure."""
    from .experiments.beta_vae import ARCHITECTURES, DATASETS

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in runs)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(8, 3), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for architecture in ARCHITECTURES:
            points = sorted((r["beta"], r["reconstruction_nats"]) for r in runs
                            if r["dataset"] == dataset and r["architecture"] == architecture)
            if points:
                betas, errors = zip(*points)
                ax.plot(betas, errors, "o-", color=ARCHITECTURE_COLORS[architecture], label=architecture)
        ax.set_xscale("log")
        betas = sorted({r["beta"] for r in runs if r["dataset"] == dataset})
        ax.set_xticks(betas, [f"{b:g}" for b in betas])
        ax.minorticks_off()
        ax.set_xlabel("β")
        ax.set_title(DATASET_TITLES[dataset])
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("reconstruction error\n(nats per picture)")
    fig.tight_layout()
    return fig


def plot_factor_information(runs: list[dict], betas=None, factor_names=None):
    """Which latent knows which factor (Chapter 2): normalized mutual information (latents × factors) on
    shapes, for the runs at ``betas`` (default: the live-decoded models' β), in an 8-inch figure."""
    from .data.shapes import FACTOR_NAMES
    from .experiments.beta_vae import SHAPES_ARCHITECTURE, SHIPPED_SHAPES_BETAS, find_run

    chosen = [find_run(runs, "shapes", SHAPES_ARCHITECTURE, b) for b in (betas or SHIPPED_SHAPES_BETAS)]
    chosen = [r for r in chosen if r and "normalized_mutual_information" in r]
    fig, axes = plt.subplots(1, max(1, len(chosen)), figsize=(8, 4.4), squeeze=False)
    for ax, run in zip(axes[0], chosen):
        nmi = np.asarray(run["normalized_mutual_information"])[run["order_by_std"]]
        ax.imshow(nmi, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        for (i, k), value in np.ndenumerate(nmi):
            if value >= 0.05:
                ax.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value > 0.5 else "black")
        ax.set_xticks(range(nmi.shape[1]), factor_names or FACTOR_NAMES, fontsize=9, rotation=30)
        ax.set_yticks(range(nmi.shape[0]), [f"z[{i}]" for i in run["order_by_std"]], fontsize=9)
        ax.set_title(f"β = {run['beta']:g}: MIG {run['mig']:.2f}", fontsize=10)
    fig.tight_layout()
    return fig


def metric_table(runs: list[dict]) -> str:
    """The disentanglement metrics on shapes (Chapter 2), one row per β, as a Markdown table."""
    lines = ["| β | MIG | β-VAE metric | reconstruction (nats) | KL (nats) | active latents | steps | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for beta in sorted({r["beta"] for r in runs if r["dataset"] == "shapes"}):
        chosen = [r for r in runs if r["dataset"] == "shapes" and r["beta"] == beta]

        def mean(name, digits=3):
            return f"{np.mean([r[name] for r in chosen]):.{digits}f}"

        lines.append(f"| {beta:g} | {mean('mig')} | {mean('betavae_metric')} | {mean('reconstruction_nats', 1)} | "
                     f"{mean('kl_nats', 1)} | {mean('active_latents', 1)} | {mean('steps', 0)} | {len(chosen)} |")
    return "\n".join(lines)


# --- Chapter 3 (discrete gradients): the estimators' curves and the histogram widget's frames ----------
ESTIMATOR_COLORS = {"exact": "black", "reinforce": "tab:red", "nvil": "tab:orange", "concrete": "tab:green",
                    "rebar": "tab:blue", "relax": "tab:purple"}


def plot_curves(results: dict, title: str = "", axes=None):
    """Loss and log-variance over steps, one line per estimator: mean over repetitions ± one std (Chapter 3).

    ``results`` is ``{estimator: summary}`` as ``toy_estimators.summarize`` writes it;
    ``title`` names the problem in words. Returns the two axes (a new 8-inch figure
    when ``axes`` is None).
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    loss_ax, var_ax = axes
    for name, s in results.items():
        color = ESTIMATOR_COLORS.get(name)
        steps, mean, std = np.asarray(s["steps"]), np.asarray(s["loss_mean"]), np.asarray(s["loss_std"])
        loss_ax.plot(steps, mean, color=color, label=name, lw=1.5 if name != "exact" else 1,
                     ls="-" if name != "exact" else "--")
        loss_ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        if "variance_steps" in s:
            steps, mean, std = (np.asarray(s[k]) for k in ("variance_steps", "log_variance_mean", "log_variance_std"))
            var_ax.plot(steps, mean, color=color, label=name)
            var_ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    prefix = f"{title}: " if title else ""
    loss_ax.set(xlabel="step", ylabel="E[f(b)], exact", title=f"{prefix}expected cost")
    var_ax.set(xlabel="step", ylabel="log variance of one estimate", title=f"{prefix}gradient noise")
    loss_ax.legend(fontsize=9)
    return axes


def histogram_png(samples: np.ndarray, exact: float, title: str, xlim=None, bins: int = 40) -> bytes:
    """A PNG (640 x 260 pixels): histogram of 1-d gradient estimates, their mean, the exact gradient (Chapter 3).

    Text is 9 to 10 points at 100 dpi, legible at the page's width. Saved with
    a 16-colour palette: a widget's frames all go into the page, so each one is
    kept to about 5 kB.
    """
    import io

    from matplotlib.figure import Figure  # no pyplot: the frame is never shown on its own
    from PIL import Image

    fig = Figure(figsize=(6.4, 2.6), dpi=100)
    ax = fig.subplots()
    ax.hist(samples, bins=bins, range=xlim, color="tab:gray")
    ax.axvline(exact, color="black", ls="--", label=f"exact gradient {exact:.3g}")
    ax.axvline(samples.mean(), color="tab:red", label=f"mean of these {len(samples):,}: {samples.mean():.3g}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("one estimate of dE[f]/dθ", fontsize=10)
    ax.set_ylabel("estimates", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9, loc="upper right", framealpha=0.9)
    if xlim is not None:
        ax.set_xlim(*xlim)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=16)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()
