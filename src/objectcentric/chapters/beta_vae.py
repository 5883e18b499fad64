"""Chapter 2 (β-VAE and disentanglement): the sweep the page reads, and its tables.

The figures of the sweep are in :mod:`objectcentric.viz` and its widgets in
:mod:`objectcentric.widgets`; this module loads the sweep (recorded, or a quick
run when it is missing), and builds the page's tables from
``results/beta_vae.json``: the families, the sweep's length and where it ran,
the latents in use, the disentanglement scores, and how far the recreation is
from the papers.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..book import _duration, fmt, pct, table
from ..experiments import beta_vae as bv
from ..viz import DATASET_TITLES

# The lengths the chapter compares with: the β-VAE recreation's default (its main.py flags
# max_step and batch_size) and the dSprites studies of Locatello et al. (2019).
RECREATION_STEPS, RECREATION_BATCH = 100_000, 128
DSPRITES_STEPS, DSPRITES_BATCH = 300_000, 64
# Higgins et al. (2017) report about 99 % for their β-VAE on dSprites with the β-VAE metric.
PAPER_BETAVAE_METRIC = 0.99


@dataclass
class Sweep:
    """The sweep a page shows: its results record, traversal frames, checkpoint folder and
    a few words on where it comes from (``source``: "recorded sweep", "quick run", ...)."""

    results: dict
    frames: dict
    checkpoints: Path
    source: str

    @property
    def runs(self) -> list[dict]:
        return self.results["runs"]


def load_sweep(mode: str, device=None) -> Sweep:
    """The notebook's mode -> the sweep to show.

    Read mode reads the recorded ``results/beta_vae.json`` and
    ``checkpoints/beta_vae_frames.pt``; if they are missing, or in quick mode,
    a quick run (a few steps on a few hundred pictures, numbers that are not
    results) is made into a temporary folder; train mode reruns the whole sweep
    at full settings into ``runs/reproduce/`` (never over the recorded files).
    """
    from ..checkpoints import read_shipped
    from ..modes import READ, TRAIN
    from ..paths import project_root
    from ..records import read_results
    from ..runner import reproduce

    root = project_root()
    recorded = (
        mode == READ
        and root is not None
        and (root / "results" / f"{bv.RESULTS_NAME}.json").is_file()
        and (root / "checkpoints" / bv.FRAMES_NAME).is_file()
    )
    if recorded:
        results_dir, checkpoints, source = (
            root / "results",
            root / "checkpoints",
            "recorded sweep",
        )
    else:
        if mode == READ:
            print(
                "The recorded sweep is missing: showing a quick run instead. "
                "Its numbers and pictures are not results."
            )
        scale = "full" if mode == TRAIN else "quick"
        out = (
            root / "runs" / "reproduce"
            if scale == "full" and root
            else Path(tempfile.mkdtemp(prefix="beta_vae_"))
        )
        reproduce(
            ["beta_vae"],
            scale=scale,
            executor="inline",
            out=out,
            device=device,
            into_project=False,
        )
        results_dir, checkpoints = out / scale / "results", out / scale / "checkpoints"
        source = "quick run, not results" if scale == "quick" else "trained here"
    results = read_results(bv.RESULTS_NAME, results_dir)
    frames = read_shipped(bv.FRAMES_NAME, checkpoints)[
        "runs"
    ]  # checked against the manifest
    return Sweep(results, frames, checkpoints, source)


# --- the models ------------------------------------------------------------------------------
def families_table(images: torch.Tensor):
    """One-ball pictures (B, 1, 32, 32) -> a table of each family's weights and what its
    encoder and decoder make of them."""
    rows = []
    for architecture in bv.LATENT_DIMS:
        model = bv.BetaVAERecipe(
            dataset="one_ball", architecture=architecture
        ).build_model()
        with torch.no_grad():
            posterior = model.encode(images)
            logits = model.decode(posterior.rsample())
        rows.append(
            [
                architecture,
                sum(p.numel() for p in model.parameters()),
                str(tuple(posterior.mean.shape[1:])),
                str(tuple(logits.shape[1:])),
            ]
        )
    return table(
        rows,
        [
            "family",
            "weights",
            "q(z|x): mean per picture",
            "decoder: logits per picture",
        ],
        caption=f"The three families on {len(images)} one-ball pictures of 32 × 32 pixels",
    )


def shapes_model(beta: float, checkpoints: Path, device=None):
    """The conv model the sweep trained on shapes at this β, loaded from ``checkpoints``
    (checked against its manifest), in eval mode on ``device``."""
    from ..checkpoints import load_shipped

    recipe = bv.BetaVAERecipe(beta=beta)
    model = recipe.build_model()
    load_shipped(recipe.shipped_name(), model, checkpoints)
    return model.to(device or "cpu").eval()


def decoder_of(model, device=None):
    """A model -> ``decode(codes (n, d)) -> pixel probabilities (n, H, W)`` on the CPU, for
    :func:`objectcentric.widgets.latent_traversal`."""

    def decode(codes):
        with torch.no_grad():
            return torch.sigmoid(model.decode(codes.to(device or "cpu"))).cpu()[:, 0]

    return decode


def explorer_panels(runs: list[dict], frames: dict, size: int = 32) -> dict:
    """The sweep -> ``panels[dataset title][family][β] = (frames in [0, 1], row labels)`` of
    every run of the lowest seed (None where a run is missing), for
    :func:`objectcentric.widgets.traversal_explorer`. Frames larger than ``size`` pixels
    (the 64-pixel shapes) are averaged down to it, so that a run's grid and its sliders fit
    the page side by side."""
    import torch.nn.functional as F

    def shrink(images):
        factor = images.shape[-1] // size
        if factor <= 1:
            return images
        return F.avg_pool2d(images.flatten(0, 1)[:, None], factor)[:, 0].unflatten(
            0, images.shape[:2]
        )

    seed = min(r["seed"] for r in runs)
    panels = {}
    for dataset in bv.DATASETS:
        families = [
            a
            for a in bv.ARCHITECTURES
            if any(r["dataset"] == dataset and r["architecture"] == a for r in runs)
        ]
        betas = sorted({r["beta"] for r in runs if r["dataset"] == dataset})
        if not betas:
            continue
        panels[DATASET_TITLES[dataset]] = {a: {} for a in families}
        for a in families:
            for b in betas:
                run = bv.find_run(runs, dataset, a, b, seed)
                frame = frames.get(run["key"]) if run else None
                panels[DATASET_TITLES[dataset]][a][b] = (
                    None
                    if frame is None
                    else (
                        shrink(frame["frames"].float() / 255),
                        bv.latent_labels(frame),
                    )
                )
    return panels


# --- tables of the sweep ---------------------------------------------------------------------
def _device_name(device: str) -> str:
    """``"cuda: NVIDIA H100 80GB HBM3"`` -> ``"GPU (NVIDIA H100 80GB HBM3)"``; CPUs likewise."""
    kind, _, what = device.partition(": ")
    return f"{'GPU' if kind == 'cuda' else kind.upper()} ({what})" if what else device


def _groups(runs: list[dict]) -> dict:
    groups = defaultdict(list)
    for r in runs:
        groups[(r["dataset"], r["architecture"])].append(r)
    return groups


def sweep_table(runs: list[dict]):
    """The sweep's runs -> one row per dataset and family: the β values, the training length
    planned and done, and the device."""
    rows = []
    for (dataset, architecture), group in _groups(runs).items():
        planned = max(r["planned_steps"] for r in group)
        done = sorted({r["steps"] for r in group})
        steps = f"{fmt(done[0])}–{fmt(done[-1])}" if len(done) > 1 else fmt(done[0])
        rows.append(
            [
                DATASET_TITLES[dataset],
                architecture,
                ", ".join(
                    f"{r['beta']:g}" for r in sorted(group, key=lambda r: r["beta"])
                ),
                f"{fmt(planned)} × {group[0]['batch_size']}",
                steps,
                ", ".join(sorted({_device_name(r["device"]) for r in group})),
            ]
        )
    return table(
        rows,
        ["pictures", "family", "β", "steps planned × batch", "steps done", "device"],
        caption=f"The sweep: {len(runs)} trainings, one seed each",
    )


def device_summary(runs: list[dict]) -> list[dict]:
    """The sweep's runs -> one summary per device: how many runs, which, how many stopped
    before their planned steps, and their summed training time in seconds."""
    by_device = defaultdict(list)
    for r in runs:
        by_device[r["device"]].append(r)
    out = []
    for device, group in by_device.items():
        which = sorted(
            {f"{r['architecture']} on {DATASET_TITLES[r['dataset']]}" for r in group}
        )
        out.append(
            {
                "device": _device_name(device),
                "runs": len(group),
                "which": which,
                "stopped": sum(r["stopped_at_deadline"] for r in group),
                "train_seconds": sum(r["train_wall_time_s"] for r in group),
            }
        )
    return out


def device_table(runs: list[dict]):
    """The sweep's runs -> the table of where they trained (:func:`device_summary`)."""
    rows = [
        [
            s["device"],
            s["runs"],
            "; ".join(s["which"]),
            s["stopped"],
            _duration(s["train_seconds"]),
        ]
        for s in device_summary(runs)
    ]
    return table(
        rows,
        ["device", "runs", "which runs", "stopped early", "training time, summed"],
        caption="Where the recorded sweep trained",
        notes="Runs on one device trained side by side, so their summed time is "
        "more than the time the device was busy.",
    )


def provenance_details(results: dict) -> dict:
    """``results/beta_vae.json`` -> the ``details`` of its "How this was measured" block:
    every part of the sweep (the runs one command trained), from the runs' own records."""
    parts = defaultdict(list)
    for r in results["runs"]:
        parts[r.get("command"), r.get("commit"), _device_name(r["device"])].append(r)
    details = {}
    for i, ((command, commit, device), group) in enumerate(parts.items(), 1):
        which = sorted(
            {f"{r['architecture']} on {DATASET_TITLES[r['dataset']]}" for r in group}
        )
        betas = ", ".join(f"{b:g}" for b in sorted({r["beta"] for r in group}))
        details[f"part {i} of the sweep"] = (
            f"{len(group)} runs ({'; '.join(which)}; β = {betas}) on a {device}, "
            f"trained by {command or 'a command not recorded'} at commit {commit or 'not recorded'}"
        )
    return details


def latents_used_table(runs: list[dict], threshold: float = 0.5):
    """The sweep's runs -> per dataset and family, how many latents have an average posterior
    std below ``threshold`` at each β."""
    betas = sorted({r["beta"] for r in runs})
    rows = []
    for (dataset, architecture), group in _groups(runs).items():
        by_beta = {
            r["beta"]: sum(s < threshold for s in r["posterior_std"]) for r in group
        }
        rows.append(
            [
                DATASET_TITLES[dataset],
                architecture,
                *[by_beta.get(b, "–") for b in betas],
            ]
        )
    return table(
        rows,
        ["pictures", "family", *[f"β = {b:g}" for b in betas]],
        caption=f"Latents with average posterior std below {fmt(threshold)}, per run",
    )


def metric_table(runs: list[dict]):
    """The shapes runs -> one row per β: MIG, the β-VAE metric, the held-out ELBO terms, the
    latents in use and the training length (means over seeds)."""
    rows = []
    for beta in sorted({r["beta"] for r in runs if r["dataset"] == "shapes"}):
        chosen = [r for r in runs if r["dataset"] == "shapes" and r["beta"] == beta]

        def mean(name, chosen=chosen):
            return sum(r[name] for r in chosen) / len(chosen)

        rows.append(
            [
                f"{beta:g}",
                fmt(mean("mig"), 2),
                pct(mean("betavae_metric")),
                fmt(mean("reconstruction_nats")),
                fmt(mean("kl_nats")),
                fmt(mean("active_latents")),
                f"{fmt(round(mean('steps')))} of {fmt(round(mean('planned_steps')))}",
                len(chosen),
            ]
        )
    return table(
        rows,
        [
            "β",
            "MIG",
            "β-VAE metric",
            "reconstruction (nats)",
            "KL (nats)",
            "active latents",
            "steps",
            "seeds",
        ],
        caption="Disentanglement of the conv family on shapes, by β (held-out pictures)",
        notes="MIG: 0 = every factor spread over latents, 1 = each factor in one latent "
        "alone. β-VAE metric: accuracy of a linear classifier naming the shared "
        "factor; chance is 20 %. Active latents: average KL above 0.01 nats.",
    )


def differences_table(runs: list[dict]):
    """The sweep's runs -> how far the recreation is from the recreation it follows and from
    the papers: pictures seen in training, and the β-VAE metric."""
    balls = [r for r in runs if r["dataset"] != "shapes"]
    shapes = [r for r in runs if r["dataset"] == "shapes"]
    rows = []
    if balls:
        seen = max(r["steps"] * r["batch_size"] for r in balls)
        rows.append(
            [
                "pictures seen by a ball model",
                fmt(seen),
                f"{fmt(RECREATION_STEPS * RECREATION_BATCH)} (the β-VAE recreation)",
                f"{RECREATION_STEPS * RECREATION_BATCH / seen:.0f} × fewer",
            ]
        )
    if shapes:
        seen = max(r["steps"] * r["batch_size"] for r in shapes)
        rows.append(
            [
                "pictures seen by a shapes model",
                fmt(seen),
                f"{fmt(DSPRITES_STEPS * DSPRITES_BATCH)} (Locatello et al., dSprites)",
                f"{DSPRITES_STEPS * DSPRITES_BATCH / seen:.0f} × fewer",
            ]
        )
        best = max(shapes, key=lambda r: r["betavae_metric"])
        rows.append(
            [
                f"β-VAE metric, best run (β = {best['beta']:g})",
                pct(best["betavae_metric"]),
                f"about {pct(PAPER_BETAVAE_METRIC, 0)} (Higgins et al. 2017, dSprites)",
                f"{100 * (PAPER_BETAVAE_METRIC - best['betavae_metric']):.0f} points lower",
            ]
        )
    return table(
        rows,
        ["quantity", "this sweep", "the reference", "gap"],
        caption="How far the recorded sweep is from what it recreates",
    )


def kl_price_figure(means=(0.0, 1.0, 2.0)):
    """The KL of N(μ, σ²) from N(0, 1) against σ for a few means μ -> a figure."""
    sigma = torch.linspace(0.02, 2.0, 200)
    fig, ax = plt.subplots(figsize=(6, 3))
    prior = torch.distributions.Normal(0.0, 1.0)
    for mu in means:
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(mu, sigma), prior
        )
        ax.plot(sigma, kl, label=f"mean μ = {mu:g}")
    ax.set_xlabel("posterior std σ")
    ax.set_ylabel("KL to the prior (nats)")
    ax.set_ylim(0, 5)
    ax.set_title("The price of one latent: zero only at μ = 0, σ = 1")
    ax.legend()
    fig.tight_layout()
    return fig


def where_it_ran(runs: list[dict]) -> str:
    """The sweep's runs -> one sentence saying on which devices its runs trained, how many
    on each and how many stopped before their planned steps."""
    parts = []
    for s in device_summary(runs):
        stopped = (
            f", {s['stopped']} of them stopped early by a time limit"
            if s["stopped"]
            else ""
        )
        parts.append(f"{s['runs']} on a {s['device']}{stopped}")
    return f"Of the {len(runs)} runs, " + "; ".join(parts) + "."


def metric_verdict(runs: list[dict]) -> str:
    """The shapes runs -> what the recorded scores say about β, in two or three sentences."""
    shapes = sorted(
        (r for r in runs if r["dataset"] == "shapes"), key=lambda r: r["beta"]
    )
    if not shapes:
        return "No shapes run was recorded."
    mig = {r["beta"]: r["mig"] for r in shapes}
    metric = {r["beta"]: r["betavae_metric"] for r in shapes}
    low = shapes[0]["beta"]
    best_mig, best_metric = max(mig, key=mig.get), max(metric, key=metric.get)
    text = (
        f"MIG is highest at β = {best_mig:g} ({fmt(mig[best_mig], 2)}) and is "
        + ", ".join(f"{fmt(mig[b], 2)} at β = {b:g}" for b in mig if b != best_mig)
        + f"; every value is below {fmt(max(mig.values()), 2)} on a scale that ends at 1. "
        f"The β-VAE metric is highest at β = {best_metric:g} ({pct(metric[best_metric])})."
    )
    worse = [
        b for b in mig if b > low and mig[b] <= mig[low] and metric[b] <= metric[low]
    ]
    if worse:
        listed = " and ".join(f"{b:g}" for b in worse)
        text += (
            f" A larger β did not help: at β = {listed} both scores are lower than at "
            f"β = {low:g}."
        )
    return text
