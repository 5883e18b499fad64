"""Chapter 2 (β-VAE): the recipe, and the sweep behind ``results/beta_vae.json``.

The sweep recreates seed 001 (a recreation of Higgins et al., "Early visual
concept learning with unsupervised deep learning", 2016): three encoder/decoder
families × three values of β × one-ball and two-ball pictures (18 runs), the
same at three values of β above 1 (18 more), and adds the dSprites-like
shapes, where the true factors let us *measure* disentanglement (MIG and the
β-VAE metric) at several β.

One run is :class:`BetaVAERecipe` and a seed, trained by
:func:`objectcentric.runner.train` into its run folder. The experiment
(:data:`EXPERIMENT`, ``python -m objectcentric reproduce beta_vae``) trains
the runs of :func:`sweep_jobs` with :func:`objectcentric.runner.sweep`, then
its ``collect`` evaluates every run folder (:func:`evaluate_run`: held-out
ELBO terms, each latent's average posterior standard deviation, traversal
frames and, on shapes, MIG and the β-VAE metric) and writes
``results/beta_vae.json``, ``checkpoints/beta_vae_frames.pt`` (traversals and
reconstructions of every run, as uint8 images) and the shapes models the
chapter decodes live. The chapter's figures are in :mod:`objectcentric.viz`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..data.balls import make_balls
from ..data.shapes import FACTOR_SIZES, factor_values, render_indices, sample_factor_indices, shapes_from_factors
from ..disentanglement import betavae_metric, mutual_information_gap, normalized_mutual_information
from ..models.beta_vae import ARCHITECTURES, BetaVAE, BetaVAEConfig
from ..recipes import Recipe, RecipeError, register
from ..runner import Experiment, Job, Outputs, load_run, register_experiment, steps_of
from ..train import pick_device
from .vae import elbo_evaluator

DATASETS = ("one_ball", "two_balls", "shapes")
BALL_DATASETS = ("one_ball", "two_balls")
BALL_SIZE = 32  # seed 001 draws balls on 32 × 32 pictures
BALL_RADIUS = 4.0  # fixed, as in seed 001 (1.2 units of a 10-unit box: 3.8 pixels)
LATENT_DIMS = {"fc": 10, "conv": 10, "allconv": 16}  # allconv: one 4 × 4 channel, as in seed 001
RECREATION_BALL_BETAS = (0.1, 0.5, 1.0)  # seed 001's values
BALL_BETAS = (*RECREATION_BALL_BETAS, 2.0, 4.0, 8.0)  # and the β > 1 the chapter is about
SHAPES_BETAS = (1.0, 2.0, 4.0, 8.0)
SHAPES_ARCHITECTURE = "conv"
TRAVERSAL_VALUES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
N_RECONSTRUCTIONS = 8
# The models kept for live decoding in the notebook: shapes, conv, seed 0, at these β.
SHIPPED_SHAPES_BETAS = (1.0, 4.0)
DATA_SEEDS = {"train": 0, "val": 1}
# Each family's learning rate (seed 001's, on balls), and where shapes differ (the recorded runs').
LEARNING_RATES = {"balls": {"fc": 2e-4, "conv": 1e-3, "allconv": 1e-3}, "shapes": {"conv": 5e-4}}
# The full-scale settings of the ball runs; shapes runs use the recipe's defaults.
BALLS = {"n_train": 51_200, "n_val": 2_000, "batch_size": 256}
# With a deadline (benchmarks/beta_vae.py), training stops this long before it, to leave time for
# collect to evaluate every run one after another (an estimate for a GPU, not a measurement).
EVALUATION_RESERVE_S = 120.0

RESULTS_NAME, FRAMES_NAME = "beta_vae", "beta_vae_frames.pt"


# --- names and data ---------------------------------------------------------------------------------
def run_key(dataset: str, architecture: str, beta: float, seed: int) -> str:
    """The name of one run in the results, e.g. ``shapes/conv/beta4/seed0``."""
    return f"{dataset}/{architecture}/beta{beta:g}/seed{seed}"


def checkpoint_name(key: str) -> str:
    """The shipped checkpoint of a run: ``beta_vae_shapes_conv_beta4_seed0.pt``."""
    return "beta_vae_" + key.replace("/", "_") + ".pt"


def image_shape(dataset: str) -> tuple[int, int, int]:
    return (1, 64, 64) if dataset == "shapes" else (1, BALL_SIZE, BALL_SIZE)


def make_dataset(dataset: str, n: int, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` images (uint8, 0 or 1, on ``device``) and, for shapes, their factor indices (on the CPU).

    The data does not depend on the run's seed: every run of a dataset sees the
    same pictures (``DATA_SEEDS``), and only its initial weights and batch
    order change with the seed. The held-out split is drawn with another data
    seed from the same distribution as the training pictures.
    """
    data_seed = DATA_SEEDS[split]
    if dataset == "shapes":
        indices = sample_factor_indices(n, torch.Generator().manual_seed(data_seed))
        images = shapes_from_factors(factor_values(indices), dtype=torch.uint8, device=device)
        return images, indices
    n_balls = BALL_DATASETS.index(dataset) + 1
    balls = make_balls(n, n_balls=n_balls, size=BALL_SIZE, radius=(BALL_RADIUS, BALL_RADIUS),
                       seed=data_seed, dtype=torch.uint8)
    return balls.images.to(device), None


# --- the recipe -------------------------------------------------------------------------------------
@register
@dataclass(frozen=True)
class BetaVAERecipe(Recipe):
    """Chapter 2's β-VAE: one network family, one β, on balls or shapes."""

    name = "beta_vae"
    chapter = "2"
    CHOICES = {"dataset": DATASETS, "architecture": ARCHITECTURES}
    QUICK = {"epochs": 1, "n_train": 256, "n_val": 256, "batch_size": 64,
             "betavae_train_points": 40, "betavae_eval_points": 20, "betavae_batch": 8}
    HELP = {"dataset": "the pictures: one ball, two balls (32 × 32) or the dSprites-like shapes (64 × 64)",
            "architecture": "the encoder/decoder family",
            "beta": "the weight of the KL term (1: the VAE)",
            "n_train": "training pictures", "n_val": "held-out pictures (another draw of the same set)",
            "lr": "Adam's learning rate (default: the family's, LEARNING_RATES)",
            "final_lr_fraction": "the cosine schedule ends at this fraction of lr",
            "betavae_train_points": "β-VAE metric: training points of its classifier (shapes only)",
            "betavae_eval_points": "β-VAE metric: points it is scored on",
            "betavae_batch": "β-VAE metric: picture pairs averaged per point"}

    dataset: str = "shapes"
    architecture: str = SHAPES_ARCHITECTURE
    beta: float = 4.0
    n_train: int = 163_840
    n_val: int = 10_000
    epochs: int = 8
    batch_size: int = 128
    lr: float | None = None  # None: the family's (learning_rate)
    final_lr_fraction: float = 0.1
    betavae_train_points: int = 1000
    betavae_eval_points: int = 500
    betavae_batch: int = 64

    def __post_init__(self):
        if self.lr is None:  # the family's rate is valid by construction: check the rest as the base does
            dataclasses.replace(self, lr=1.0)
        else:
            super().__post_init__()
        for field in ("n_train", "n_val", "betavae_train_points", "betavae_eval_points", "betavae_batch"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise RecipeError(f"{field} must be a whole number of at least 1, got {getattr(self, field)!r}")
        if not self.beta >= 0:
            raise RecipeError(f"beta must be zero or more, got {self.beta!r}")
        if not 0 < self.final_lr_fraction <= 1:
            raise RecipeError(f"final_lr_fraction must be in (0, 1], got {self.final_lr_fraction!r}")

    def learning_rate(self) -> float:
        """``lr``, or when it is None the family's rate on this dataset (``LEARNING_RATES``)."""
        if self.lr is not None:
            return self.lr
        shapes = LEARNING_RATES["shapes"] if self.dataset == "shapes" else {}
        return {**LEARNING_RATES["balls"], **shapes}[self.architecture]

    def build_model(self) -> BetaVAE:
        return BetaVAE(BetaVAEConfig(self.architecture, LATENT_DIMS[self.architecture], image_shape(self.dataset)))

    def train_data(self) -> TensorDataset:
        """The training pictures, drawn on the best device (shapes: a fraction of a second on a GPU)."""
        return TensorDataset(make_dataset(self.dataset, self.n_train, "train", pick_device())[0])

    def step(self, model: BetaVAE, batch: tuple) -> dict[str, torch.Tensor]:
        """The VAE's negative ELBO with the KL weighted by β."""
        return model.loss(batch[0].float(), beta=self.beta)

    def optimizer(self, model: BetaVAE) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.learning_rate())

    def scheduler(self, optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.epochs, eta_min=self.learning_rate() * self.final_lr_fraction)

    def evaluator(self):
        """The ELBO terms (β = 1) on the first 1,000 held-out pictures."""
        images, _ = make_dataset(self.dataset, self.n_val, "val", pick_device())
        return elbo_evaluator(images[:1000].float())

    def shipped_name(self, seed: int = 0) -> str | None:
        """``beta_vae_shapes_conv_beta4_seed0.pt`` for the models the chapter decodes live, else None.

        The file names the run's seed; the book ships seed 0's runs (collect ships no other seed).
        """
        if (self.dataset, self.architecture) != ("shapes", SHAPES_ARCHITECTURE) or self.beta not in SHIPPED_SHAPES_BETAS:
            return None
        return checkpoint_name(run_key(self.dataset, self.architecture, self.beta, seed))


def sweep_jobs(scale: str = "full", datasets=DATASETS, betas=None) -> list[Job]:
    """Every run of the sweep, the longest first: shapes at each β, then the 36 ball runs.

    ``datasets`` and ``betas`` keep only the runs on those pictures and at those β
    (a part of the sweep, e.g. the ball runs at β > 1).
    """
    recipes = [BetaVAERecipe(beta=beta) for beta in SHAPES_BETAS]
    for architecture in ARCHITECTURES:  # fc first: it has the most weights
        recipes += [BetaVAERecipe(dataset=d, architecture=architecture, beta=beta, **BALLS)
                    for d in BALL_DATASETS for beta in BALL_BETAS]
    return [Job(recipe.at_scale(scale), seed=0) for recipe in recipes
            if recipe.dataset in datasets and (betas is None or recipe.beta in betas)]


def job_row_key(job: Job) -> str:
    """The key of a job's row in the results (``run_key``)."""
    r = job.recipe
    return run_key(r.dataset, r.architecture, r.beta, job.seed)


# --- evaluating a trained run ---------------------------------------------------------------------------
def _uint8(probabilities: torch.Tensor) -> torch.Tensor:
    return (probabilities.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


@torch.no_grad()
def posterior_summary(model: BetaVAE, images: torch.Tensor, beta: float, batch_size: int = 1000) -> dict:
    """Held-out ELBO terms, posterior means, and each latent's average posterior std and KL."""
    totals = {"reconstruction": 0.0, "kl": 0.0, "neg_elbo": 0.0}
    means, std_sum, kl_sum = [], 0.0, 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float()
        terms = model.loss(x, beta=beta)
        for name in totals:
            totals[name] += float(terms[name]) * len(x)
        posterior = model.encode(x)
        means.append(posterior.mean.cpu())
        std_sum = std_sum + posterior.stddev.sum(0)
        kl_sum = kl_sum + torch.distributions.kl_divergence(posterior, model.prior()).sum(0)
    n = len(images)
    return {**{f"{name}_nats": total / n for name, total in totals.items()},
            "posterior_std": (std_sum / n).cpu(), "kl_per_latent": (kl_sum / n).cpu(),
            "means": torch.cat(means)}


@torch.no_grad()
def traversal_frames(model: BetaVAE, base_image: torch.Tensor, order, values=TRAVERSAL_VALUES) -> torch.Tensor:
    """Seed 001's traversal: encode one picture, set each latent in turn to each value (the others
    stay at the picture's posterior mean), decode. Returns uint8 (latents in ``order``, values, H, W)."""
    base = model.encode(base_image[None].float()).mean[0]
    grid = torch.as_tensor(values, dtype=base.dtype, device=base.device)
    codes = base.repeat(len(order), len(grid), 1)  # (L, V, d)
    for row, latent in enumerate(order):
        codes[row, :, latent] = grid
    return _uint8(torch.sigmoid(model.decode(codes))[:, :, 0])


def evaluate_run(model: BetaVAE, recipe: BetaVAERecipe, seed: int, val_images: torch.Tensor,
                 val_indices=None) -> tuple[dict, dict]:
    """The record of a trained run (numbers for ``beta_vae.json``) and its frames (pictures)."""
    model.eval()
    summary = posterior_summary(model, val_images, recipe.beta)
    std = summary["posterior_std"]
    order = torch.argsort(std).tolist()  # lowest average std first: the latents the model uses most
    record = {
        "key": run_key(recipe.dataset, recipe.architecture, recipe.beta, seed),
        "dataset": recipe.dataset, "architecture": recipe.architecture, "beta": recipe.beta, "seed": seed,
        "latent_dim": model.latent_dim,
        "n_val": len(val_images),
        **{k: round(summary[k], 4) for k in ("reconstruction_nats", "kl_nats", "neg_elbo_nats")},
        "posterior_std": [round(float(s), 5) for s in std],
        "kl_per_latent": [round(float(k), 5) for k in summary["kl_per_latent"]],
        "active_latents": int((summary["kl_per_latent"] > 0.01).sum()),
        "order_by_std": order,
    }
    if recipe.dataset == "shapes" and val_indices is not None:
        record.update(disentanglement(model, summary["means"], val_indices, recipe, seed))
    shown = val_images[:N_RECONSTRUCTIONS].float()
    frames = {
        "frames": traversal_frames(model, val_images[0], order),
        "order": order,
        "values": list(TRAVERSAL_VALUES),
        "posterior_std": std.clone(),
        "originals": _uint8(shown[:, 0]),
        "reconstructions": _uint8(model.reconstruct(shown)[:, 0]),
    }
    return record, frames


def disentanglement(model: BetaVAE, means: torch.Tensor, indices: torch.Tensor, recipe: BetaVAERecipe,
                    seed: int = 0) -> dict:
    """MIG of the posterior means against the true factors, and the β-VAE metric (shapes only)."""
    device = next(model.parameters()).device
    nmi = normalized_mutual_information(means, indices)

    def encode(images):
        return model.encode(images).mean

    metric = betavae_metric(encode, FACTOR_SIZES, render=partial(render_indices, device=device),
                            n_train=recipe.betavae_train_points, n_eval=recipe.betavae_eval_points,
                            batch_size=recipe.betavae_batch, seed=seed)
    return {
        "mig": round(mutual_information_gap(means, indices), 4),
        "normalized_mutual_information": np.round(nmi, 4).tolist(),  # (latents, factors)
        "betavae_metric": round(metric["accuracy"], 4),
        "betavae_metric_train": round(metric["train_accuracy"], 4),
        "betavae_metric_chance": metric["chance"],
    }


def evaluate_run_folder(run_dir: Path, record: dict, device, held_out) -> tuple[dict, dict, BetaVAERecipe]:
    """:func:`evaluate_run` on a run folder, with what the runner recorded of its training.

    ``held_out(dataset, n)`` gives the held-out pictures (and factors) of a
    dataset. Returns the run's row of the results, its frames and its recipe.
    """
    started = time.perf_counter()
    recipe, model, payload = load_run(run_dir, device)
    row, frames = evaluate_run(model, recipe, record["seed"], *held_out(recipe.dataset, recipe.n_val))
    history = payload.get("history", [])
    row.update({
        "run": Path(run_dir).name,
        "epochs": len(history),
        "steps": record["steps"],
        "planned_steps": steps_of(recipe, recipe.n_train),
        "stopped_at_deadline": record["status"] == "stopped",
        "stopped_by": record.get("stopped_by"),
        "batch_size": recipe.batch_size,
        "lr": recipe.learning_rate(),
        "n_train": recipe.n_train,
        "train_wall_time_s": round(record["wall_time_s"], 1),
        "wall_time_s": round(record["wall_time_s"] + time.perf_counter() - started, 1),
        **{k: record.get(k) for k in ("device", "command", "commit")},
        "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in history],
    })
    return row, frames, recipe


# --- the recorded experiment: results/beta_vae.json -----------------------------------------------------
def by_beta(runs: list[dict], metric: str) -> dict[str, float]:
    """Mean of ``metric`` over seeds for each β of the shapes runs: ``{"4": 0.31, ...}``."""
    values: dict[float, list[float]] = {}
    for run in runs:
        if run["dataset"] == "shapes" and metric in run:
            values.setdefault(run["beta"], []).append(run[metric])
    return {f"{b:g}": round(float(np.mean(v)), 4) for b, v in sorted(values.items())}


def spread_by_beta(runs: list[dict], metric: str) -> dict[str, dict]:
    """Median, range and number of seeds of ``metric`` for each β of the shapes runs:
    ``{"4": {"median": 0.2, "min": 0.1, "max": 0.4, "seeds": [0, 1, 2]}, ...}``."""
    values: dict[float, list[tuple[int, float]]] = {}
    for run in runs:
        if run["dataset"] == "shapes" and metric in run:
            values.setdefault(run["beta"], []).append((run["seed"], run[metric]))
    return {f"{b:g}": {"median": round(float(np.median([v for _, v in pairs])), 4),
                       "min": min(v for _, v in pairs), "max": max(v for _, v in pairs),
                       "seeds": sorted(seed for seed, _ in pairs)}
            for b, pairs in sorted(values.items())}


SHAPES_RUN_FIELDS = ("key", "beta", "seed", "steps", "mig", "betavae_metric", "device")


def shapes_statistics(runs: list[dict]) -> dict:
    """What the shapes runs say about β: one short entry per run (``shapes_runs``), the median and range
    of MIG and of the β-VAE metric per β, and the target on the medians."""
    mig = spread_by_beta(runs, "mig")
    target = None
    if "4" in mig and "1" in mig:
        m4, m1 = mig["4"]["median"], mig["1"]["median"]
        target = {"median_mig_at_beta4": m4, "median_mig_at_beta1": m1,
                  "best_mig_at_beta4": mig["4"]["max"], "seeds_at_beta4": len(mig["4"]["seeds"]),
                  "seeds_at_beta1": len(mig["1"]["seeds"]),
                  "ratio_of_medians": round(m4 / m1, 3) if m1 > 0 else None,
                  "wanted": "median MIG at beta = 4 >= 2 x the median at beta = 1, and the best beta = 4 seed >= 0.35",
                  "met": bool(m4 >= 2 * m1 and mig["4"]["max"] >= 0.35)}
    return {
        "shapes_runs": [{k: r.get(k) for k in SHAPES_RUN_FIELDS} for r in runs if r["dataset"] == "shapes"],
        "mig_median_by_beta": {b: v["median"] for b, v in mig.items()},
        "mig_spread_by_beta": mig,
        "betavae_metric_median_by_beta": {b: v["median"] for b, v in spread_by_beta(runs, "betavae_metric").items()},
        "betavae_metric_spread_by_beta": spread_by_beta(runs, "betavae_metric"),
        "mig_by_beta": by_beta(runs, "mig"),
        "betavae_metric_by_beta": by_beta(runs, "betavae_metric"),
        "target": target,
    }


def summarize(runs: list[dict], scale: str, failed: dict[str, str]) -> dict:
    """The body of ``beta_vae.json``: settings, per-run records, metrics by β, the target."""
    runs = sorted(runs, key=lambda r: (DATASETS.index(r["dataset"]), ARCHITECTURES.index(r["architecture"]),
                                       r["beta"], r["seed"]))
    return {
        "description": ("beta-VAE sweep (Chapter 2): seed 001's 3 architectures x one-/two-ball pictures at "
                        "its 3 beta and at 3 beta above 1, plus beta on dSprites-like shapes with MIG and the "
                        "beta-VAE metric. "
                        "reconstruction_nats, kl_nats: held-out ELBO terms per image (one posterior sample); "
                        "posterior_std: each latent's posterior std averaged over held-out images; "
                        "mig, betavae_metric: from the posterior means, on shapes. Each run records where "
                        "and by which command it trained; the top-level provenance is the collection's "
                        "(wall_time_s: the runs' training time summed, plus the evaluation)."),
        "quick": scale == "quick",
        "settings": {"recipe": BetaVAERecipe().at_scale(scale).settings(), "balls": BALLS,
                     "learning_rates": LEARNING_RATES, "latent_dims": LATENT_DIMS,
                     "ball_betas": BALL_BETAS, "recreation_ball_betas": RECREATION_BALL_BETAS, "shapes_betas": SHAPES_BETAS, "ball_size": BALL_SIZE,
                     "ball_radius": BALL_RADIUS, "traversal_values": TRAVERSAL_VALUES},
        **shapes_statistics(runs),
        "n_runs": len(runs),
        "failed": dict(sorted(failed.items())),
        "runs": runs,
    }


def held_out_data(device):
    """``held_out(dataset, n)`` for :func:`evaluate_run_folder`, drawing each set once."""
    cache: dict[tuple[str, int], tuple] = {}

    def held_out(dataset: str, n: int):
        if (dataset, n) not in cache:
            cache[dataset, n] = make_dataset(dataset, n, "val", device)
        return cache[dataset, n]

    return held_out


def earlier_runs(out: Outputs, keys: set[str]) -> tuple[list[dict], dict]:
    """The rows and frames of the runs ``keys`` as the results in ``out`` recorded them: ``(rows, frames)``.

    For a part of the sweep trained on its own (``sweep_jobs(betas=...)``): the
    runs it did not train keep their earlier evaluation, and each row its own
    command, commit and device. Rows without frames, and a file of the other
    scale, are not kept.
    """
    from ..checkpoints import read_shipped
    from .. import records as rec

    old = rec.read_results(RESULTS_NAME, out.results)
    if not keys or not old.get("runs") or old.get("quick") != (out.scale == "quick"):
        return [], {}
    frames = read_shipped(FRAMES_NAME, out.checkpoints)["runs"]
    rows = [r for r in old["runs"] if r["key"] in keys and r["key"] in frames]
    return rows, {r["key"]: frames[r["key"]] for r in rows}


def collect(records: dict[str, dict], out: Outputs) -> dict:
    """Evaluate every trained run of the sweep; write ``beta_vae.json``, the frames and the live models.

    Runs that finished or were stopped early (their records say which) are
    evaluated as they are; failed runs are listed under ``failed``. The sweep's
    runs that ``records`` does not hold (a part of the sweep was trained) keep
    their recorded rows and frames (:func:`earlier_runs`), listed under
    ``kept_from_earlier``. Returns the whole results file.
    """
    from .. import records as rec

    started = time.perf_counter()
    device = pick_device()
    held_out = held_out_data(device)
    rows, frames, failed, shipped = [], {}, {}, []
    for key, record in records.items():
        status = (record or {}).get("status", "missing")
        if status not in ("done", "stopped"):
            failed[key] = (record or {}).get("error", status)
            continue
        row, frame, recipe = evaluate_run_folder(out.runs / key, record, device, held_out)
        rows.append(row)
        frames[row["key"]] = frame
        if row["seed"] == 0 and recipe.shipped_name():  # the book ships seed 0 (see shipped_name)
            shipped.append(row)
        print(f"{row['key']}: reconstruction {row['reconstruction_nats']:.2f}, KL {row['kl_nats']:.2f} nats"
              + (f", MIG {row['mig']:.3f}, beta-VAE metric {row['betavae_metric']:.3f}" if "mig" in row else ""))
    by_run = {job.key: job_row_key(job) for job in sweep_jobs(out.scale)}
    not_run = {key for run, key in by_run.items() if run not in records} - {row["key"] for row in rows}
    kept, kept_frames = earlier_runs(out, not_run)
    frames.update(kept_frames)
    body = summarize(rows + kept, out.scale, failed)
    body["kept_from_earlier"] = sorted(r["key"] for r in kept)
    wall = sum(r["train_wall_time_s"] for r in rows + kept) + time.perf_counter() - started
    provenance = rec.provenance(seed=0, wall_time_s=wall, device=device, scale=out.scale)
    # Two keys of the file recorded before each run carried its own provenance; a new sweep makes them stale.
    whole = rec.write_results(RESULTS_NAME, body, provenance=provenance, directory=out.results,
                              drop=("runs_from_earlier_command", "skipped_at_deadline"))
    info = {k: provenance[k] for k in ("command", "commit", "device", "seed", "wall_time_s", "date")}
    rec.ship_payload(out.checkpoints, FRAMES_NAME, {"quick": body["quick"], "runs": frames}, info,
                     {"runs": len(frames), "evaluated_here": len(rows)})
    for row in shipped:
        rec.ship(out.runs / row["run"], expect=BetaVAERecipe.name, checkpoints=out.checkpoints,
                 metrics={k: row[k] for k in ("reconstruction_nats", "kl_nats", "mig", "betavae_metric")})
    return whole


def restate(out: Outputs) -> dict:
    """Recompute the statistics of the recorded runs (:func:`shapes_statistics`) in ``beta_vae.json``,
    training and evaluating nothing: the rows stay as their runs recorded them. Returns the whole file."""
    from .. import records as rec

    started = time.perf_counter()
    old = rec.read_results(RESULTS_NAME, out.results)
    if not old.get("runs"):
        raise FileNotFoundError(f"{out.results / (RESULTS_NAME + '.json')} has no recorded runs to restate: "
                                "train and collect the sweep first (benchmarks/beta_vae.py)")
    provenance = rec.provenance(seed=0, wall_time_s=time.perf_counter() - started, scale=out.scale)
    return rec.write_results(RESULTS_NAME, shapes_statistics(old["runs"]), provenance=provenance,
                             directory=out.results)


EXPERIMENT = register_experiment(Experiment(chapter="beta_vae", title="Chapter 2: the β-VAE sweep",
                                            jobs=sweep_jobs, collect=collect))


# --- reading the results ----------------------------------------------------------------------------------
def find_run(runs: list[dict], dataset: str, architecture: str, beta: float, seed: int | None = None) -> dict | None:
    """The record of one run in a results list (the lowest seed unless ``seed`` is given), or None."""
    matches = [r for r in runs if (r["dataset"], r["architecture"], r["beta"]) == (dataset, architecture, beta)
               and (seed is None or r["seed"] == seed)]
    return min(matches, key=lambda r: r["seed"]) if matches else None


def latent_labels(frame: dict) -> list[str]:
    """Row labels of a run's traversal, in its order: ``z[3]  σ 0.04``."""
    std = frame["posterior_std"]
    return [f"z[{i}]  σ {float(std[i]):.2f}" for i in frame["order"]]
