"""Chapter 2 (β-VAE): the data, settings, runs and sweep behind the notebook and ``benchmarks/beta_vae.py``.

The sweep recreates seed 001 (a recreation of Higgins et al., "Early visual
concept learning with unsupervised deep learning", 2016): three encoder/decoder
families × three values of β × one-ball and two-ball pictures (18 runs), and
adds the dSprites-like shapes, where the true factors let us *measure*
disentanglement (MIG and the β-VAE metric) at several β.

Every run trains through :func:`objectcentric.train.fit` and is then
summarised by :func:`evaluate_run`: held-out ELBO terms, the average posterior
standard deviation of every latent (seed 001's measure of which latents are
used), traversal frames from -3 to 3 with the latents ordered by that standard
deviation and, on shapes, MIG and the β-VAE metric. :func:`sweep` runs the
configurations, several at a time in separate processes (``jobs``), and after
each finished run rewrites three files in ``out``: ``beta_vae.json`` (numbers
and provenance), ``beta_vae_frames.pt`` (traversals and reconstructions of
every run, as uint8 images) and ``beta_vae_models.pt`` (the few trained models
the chapter decodes live). :func:`ship` copies them into ``results/`` and
``checkpoints/`` with manifest entries.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..checkpoints import model_payload, read_checkpoint, record_in_manifest, save_checkpoint, sha256_of
from ..data.balls import make_balls
from ..data.shapes import FACTOR_SIZES, factor_values, render_indices, sample_factor_indices, shapes_from_factors
from ..disentanglement import betavae_metric, mutual_information_gap, normalized_mutual_information
from ..models.beta_vae import ARCHITECTURES, BetaVAE
from ..provenance import device_description, provenance
from ..train import TrainResult, fit, pick_device
from .vae import elbo_evaluator

DATASETS = ("one_ball", "two_balls", "shapes")
BALL_DATASETS = ("one_ball", "two_balls")
BALL_SIZE = 32  # seed 001 draws balls on 32 × 32 pictures
BALL_RADIUS = 4.0  # fixed, as in seed 001 (1.2 units of a 10-unit box: 3.8 pixels)
LATENT_DIMS = {"fc": 10, "conv": 10, "allconv": 16}  # allconv: one 4 × 4 channel, as in seed 001
BALL_BETAS = (0.1, 0.5, 1.0)  # seed 001's values
SHAPES_BETAS = (1.0, 2.0, 4.0, 8.0)
SHAPES_ARCHITECTURE = "conv"
TRAVERSAL_VALUES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
N_RECONSTRUCTIONS = 8
# The models kept for live decoding in the notebook: shapes, conv, seed 0, at these β.
SHIPPED_SHAPES_BETAS = (1.0, 4.0)
DATA_SEEDS = {"train": 0, "val": 1}
# With a deadline, training stops this long before it to leave time for evaluation,
# and a run is not started with less than MIN_RUN_S left.
EVALUATION_RESERVE_S = 20.0
MIN_RUN_S = 60.0

# FULL is sized for the book's shared GPU window (about 8 minutes, all chapters at once).
# Measured on an H100: one process trains the shapes model at about 110 steps/s alone
# and about 47 steps/s with 8 processes running; the GPU gives about 380 steps/s in all,
# however many processes share it. 8 epochs are 10,240 steps on shapes and 1,600 steps
# on balls: far fewer than seed 001's 100,000 steps or the 10^5-10^6 steps of the dSprites
# papers (the notebook says by how much).
FULL = {
    "balls": {"n_train": 51_200, "n_val": 2_000, "batch_size": 256, "epochs": 8,
              "lr": {"fc": 2e-4, "conv": 1e-3, "allconv": 1e-3}},
    "shapes": {"n_train": 163_840, "n_val": 10_000, "batch_size": 128, "epochs": 8,
               "lr": {"conv": 5e-4}, "seeds": 1, "betavae_points": (1000, 500), "betavae_batch": 64},
    "final_lr_fraction": 0.1,
}
QUICK = {
    "balls": {"n_train": 256, "n_val": 128, "batch_size": 64, "epochs": 1,
              "lr": {"fc": 2e-4, "conv": 1e-3, "allconv": 1e-3}},
    "shapes": {"n_train": 256, "n_val": 256, "batch_size": 64, "epochs": 1,
               "lr": {"conv": 5e-4}, "seeds": 1, "betavae_points": (40, 20), "betavae_batch": 8},
    "final_lr_fraction": 0.1,
}

RESULTS_NAME, FRAMES_NAME, MODELS_NAME = "beta_vae.json", "beta_vae_frames.pt", "beta_vae_models.pt"


class DeadlineReached(KeyboardInterrupt):
    """A run reached the sweep's deadline; ``fit`` stops as on Ctrl-C and keeps the weights so far."""


# --- configurations -------------------------------------------------------------------------------
def run_key(dataset: str, architecture: str, beta: float, seed: int) -> str:
    """The name of one run, e.g. ``shapes/conv/beta4/seed0``."""
    return f"{dataset}/{architecture}/beta{beta:g}/seed{seed}"


def checkpoint_name(key: str) -> str:
    """The shipped checkpoint of a run: ``beta_vae_shapes_conv_beta4_seed0.pt``."""
    return "beta_vae_" + key.replace("/", "_") + ".pt"


def image_shape(dataset: str) -> tuple[int, int, int]:
    return (1, 64, 64) if dataset == "shapes" else (1, BALL_SIZE, BALL_SIZE)


def settings_for(dataset: str, quick: bool) -> dict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    table = QUICK if quick else FULL
    return {**table["shapes" if dataset == "shapes" else "balls"], "final_lr_fraction": table["final_lr_fraction"]}


def sweep_configs(quick: bool = False, seed: int = 0, datasets=DATASETS) -> list[dict]:
    """Every run of the sweep, the longest first: shapes at each β and seed, then the 18 ball runs."""
    configs = []
    if "shapes" in datasets:
        for s in range(seed, seed + settings_for("shapes", quick)["seeds"]):
            configs += [{"dataset": "shapes", "architecture": SHAPES_ARCHITECTURE, "beta": b, "seed": s}
                        for b in SHAPES_BETAS]
    for architecture in ARCHITECTURES:  # fc first: it has the most weights
        for dataset in BALL_DATASETS:
            if dataset in datasets:
                configs += [{"dataset": dataset, "architecture": architecture, "beta": b, "seed": seed}
                            for b in BALL_BETAS]
    for config in configs:
        config["key"] = run_key(config["dataset"], config["architecture"], config["beta"], config["seed"])
    return configs


# --- data -------------------------------------------------------------------------------------------
def make_dataset(dataset: str, n: int, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` images (uint8, 0 or 1, on ``device``) and, for shapes, their factor indices (on the CPU).

    The data does not depend on the run's seed: every run of a dataset sees the
    same pictures (``DATA_SEEDS``), and only its initial weights and batch
    order change with the seed.
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


# --- one run ------------------------------------------------------------------------------------------
def beta_vae_step(model: BetaVAE, batch: tuple, beta: float) -> dict[str, torch.Tensor]:
    """One training step's loss: the VAE's negative ELBO with the KL weighted by ``beta``."""
    return model.loss(batch[0].float(), beta=beta)


def build_model(dataset: str, architecture: str) -> BetaVAE:
    return BetaVAE(architecture, LATENT_DIMS[architecture], image_shape(dataset))


def train_run(config: dict, *, quick: bool = False, device=None, checkpoint=None, progress: str = "none",
              train_images: torch.Tensor | None = None, val_images: torch.Tensor | None = None,
              provenance_info: dict | None = None, stop_at: float | None = None) -> tuple[BetaVAE, TrainResult, int]:
    """Train one configuration (dataset, architecture, beta, seed) at full or quick settings.

    Returns the model, its history and the number of optimizer steps taken in
    all. ``stop_at`` (a ``time.time()`` value) ends training early, keeping the
    weights so far, when the clock passes it: a sweep's deadline.
    """
    settings = settings_for(config["dataset"], quick)
    device = pick_device(device)
    if train_images is None:
        train_images, _ = make_dataset(config["dataset"], settings["n_train"], "train", device)
    if val_images is None:
        val_images, _ = make_dataset(config["dataset"], settings["n_val"], "val", device)
    torch.manual_seed(config["seed"])  # the initial weights depend on the seed alone
    model = build_model(config["dataset"], config["architecture"])
    lr = settings["lr"][config["architecture"]]
    epochs = settings["epochs"]

    def cosine(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs,
                                                          eta_min=lr * settings["final_lr_fraction"])

    steps_per_epoch = math.ceil(len(train_images) / settings["batch_size"])
    last = {"epoch": 0, "index": 0}

    def after_step(epoch: int, index: int) -> None:
        last.update(epoch=epoch, index=index)
        if stop_at is not None and index % 20 == 0 and time.time() > stop_at:
            raise DeadlineReached

    result = fit(
        model, TensorDataset(train_images), partial(beta_vae_step, beta=config["beta"]),
        epochs=epochs, batch_size=settings["batch_size"], lr=lr, scheduler=cosine,
        evaluate=elbo_evaluator(val_images[:1000].float()), checkpoint=checkpoint, seed=config["seed"],
        device=device, progress=progress, after_step=after_step,
        train_config={**config, **settings, "quick": quick, "provenance": provenance_info or {}},
    )
    steps = len(result.history) * steps_per_epoch
    if result.interrupted and last["epoch"] > len(result.history):  # the steps of the unfinished epoch
        steps += last["index"]
    return model, result, steps


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


def evaluate_run(model: BetaVAE, config: dict, val_images: torch.Tensor, val_indices=None,
                 quick: bool = False) -> tuple[dict, dict]:
    """The record of a trained run (numbers for ``beta_vae.json``) and its frames (pictures)."""
    model.eval()
    summary = posterior_summary(model, val_images, config["beta"])
    std = summary["posterior_std"]
    order = torch.argsort(std).tolist()  # lowest average std first: the latents the model uses most
    record = {
        **{k: config[k] for k in ("key", "dataset", "architecture", "beta", "seed")},
        "latent_dim": model.latent_dim,
        "n_val": len(val_images),
        **{k: round(summary[k], 4) for k in ("reconstruction_nats", "kl_nats", "neg_elbo_nats")},
        "posterior_std": [round(float(s), 5) for s in std],
        "kl_per_latent": [round(float(k), 5) for k in summary["kl_per_latent"]],
        "active_latents": int((summary["kl_per_latent"] > 0.01).sum()),
        "order_by_std": order,
    }
    if config["dataset"] == "shapes" and val_indices is not None:
        record.update(disentanglement(model, summary["means"], val_indices, quick, seed=config["seed"]))
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


def disentanglement(model: BetaVAE, means: torch.Tensor, indices: torch.Tensor, quick: bool, seed: int = 0) -> dict:
    """MIG of the posterior means against the true factors, and the β-VAE metric (shapes only)."""
    device = next(model.parameters()).device
    settings = settings_for("shapes", quick)
    n_train, n_eval = settings["betavae_points"]
    nmi = normalized_mutual_information(means, indices)

    def encode(images):
        return model.encode(images).mean

    metric = betavae_metric(encode, FACTOR_SIZES, render=partial(render_indices, device=device),
                            n_train=n_train, n_eval=n_eval, batch_size=settings["betavae_batch"], seed=seed)
    return {
        "mig": round(mutual_information_gap(means, indices), 4),
        "normalized_mutual_information": np.round(nmi, 4).tolist(),  # (latents, factors)
        "betavae_metric": round(metric["accuracy"], 4),
        "betavae_metric_train": round(metric["train_accuracy"], 4),
        "betavae_metric_chance": metric["chance"],
    }


def run_one(config: dict, quick: bool = False, device=None, runs_dir=None, threads: int | None = None,
            provenance_info: dict | None = None, progress: str = "none",
            deadline: float | None = None) -> tuple[dict, dict, dict | None] | None:
    """Train and evaluate one configuration; what a worker process of :func:`sweep` does.

    Returns the run's record, its frames, and (for the models the chapter
    decodes live) the model's weights, else None. ``runs_dir`` holds the
    resumable training checkpoint of the run. With a ``deadline``
    (``time.time()`` value) training stops ``EVALUATION_RESERVE_S`` before it,
    and a run that would start with less than ``MIN_RUN_S`` left is skipped
    (returns None).
    """
    if deadline is not None and time.time() > deadline - MIN_RUN_S:
        return None
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.perf_counter()
    settings = settings_for(config["dataset"], quick)
    train_images, _ = make_dataset(config["dataset"], settings["n_train"], "train", device)
    val_images, val_indices = make_dataset(config["dataset"], settings["n_val"], "val", device)
    checkpoint = Path(runs_dir) / (config["key"].replace("/", "_") + ".pt") if runs_dir else None
    stop_at = deadline - EVALUATION_RESERVE_S if deadline is not None else None
    model, result, steps = train_run(config, quick=quick, device=device, checkpoint=checkpoint, progress=progress,
                                     train_images=train_images, val_images=val_images,
                                     provenance_info=provenance_info, stop_at=stop_at)
    stopped = result.interrupted and stop_at is not None and time.time() > stop_at
    if result.interrupted and not stopped:
        raise KeyboardInterrupt(f"run {config['key']} was interrupted")
    record, frames = evaluate_run(model, config, val_images, val_indices, quick)
    planned = settings["epochs"] * math.ceil(settings["n_train"] / settings["batch_size"])
    record.update({
        "epochs": len(result.history),
        "steps": steps,
        "planned_steps": planned,
        "stopped_at_deadline": bool(stopped),
        "batch_size": settings["batch_size"],
        "lr": settings["lr"][config["architecture"]],
        "n_train": settings["n_train"],
        "train_wall_time_s": round(result.wall_time_s, 1),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "device": device_description(device),
        "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in result.history],
    })
    shipped = None
    if config["dataset"] == "shapes" and config["seed"] == 0 and config["beta"] in SHIPPED_SHAPES_BETAS:
        model.cpu()
        shipped = {**model_payload(model), "history": record["history"], "epoch": len(result.history),
                   "train_config": {**config, **settings, "quick": quick}, "wall_time_s": result.wall_time_s}
    return record, frames, shipped


# --- the sweep ----------------------------------------------------------------------------------------
def by_beta(runs: list[dict], metric: str) -> dict[str, float]:
    """Mean of ``metric`` over seeds for each β of the shapes runs: ``{"4": 0.31, ...}``."""
    values: dict[float, list[float]] = {}
    for run in runs:
        if run["dataset"] == "shapes" and metric in run:
            values.setdefault(run["beta"], []).append(run[metric])
    return {f"{b:g}": round(float(np.mean(v)), 4) for b, v in sorted(values.items())}


def summarize(runs: list[dict], quick: bool, started: float, device, seed: int, command: str | None = None,
              skipped=(), failed=None) -> dict:
    """The whole of ``beta_vae.json``: settings, per-run records, metrics by β, target, provenance."""
    runs = sorted(runs, key=lambda r: (DATASETS.index(r["dataset"]), ARCHITECTURES.index(r["architecture"]),
                                       r["beta"], r["seed"]))
    mig = by_beta(runs, "mig")
    target = None
    if "4" in mig and "1" in mig:
        target = {"mig_at_beta4": mig["4"], "mig_at_beta1": mig["1"],
                  "ratio": round(mig["4"] / mig["1"], 3) if mig["1"] > 0 else None,
                  "wanted": "MIG >= 0.35 at beta = 4 and >= 2 x the beta = 1 value",
                  "met": bool(mig["4"] >= 0.35 and mig["4"] >= 2 * mig["1"])}
    return {
        "description": ("beta-VAE sweep (Chapter 2): seed 001's 3 architectures x 3 beta x one-/two-ball "
                        "pictures, plus beta on dSprites-like shapes with MIG and the beta-VAE metric. "
                        "reconstruction_nats, kl_nats: held-out ELBO terms per image (one posterior sample); "
                        "posterior_std: each latent's posterior std averaged over held-out images; "
                        "mig, betavae_metric: from the posterior means, on shapes."),
        "quick": quick,
        "settings": {**(QUICK if quick else FULL), "latent_dims": LATENT_DIMS,
                     "ball_betas": BALL_BETAS, "shapes_betas": SHAPES_BETAS, "ball_size": BALL_SIZE,
                     "ball_radius": BALL_RADIUS, "traversal_values": TRAVERSAL_VALUES},
        "mig_by_beta": mig,
        "betavae_metric_by_beta": by_beta(runs, "betavae_metric"),
        "target": target,
        "n_runs": len(runs),
        "skipped_at_deadline": sorted(skipped),
        "failed": dict(sorted((failed or {}).items())),
        "runs": runs,
        **provenance(seed=seed, wall_time_s=time.perf_counter() - started, device=device, command=command),
    }


def write_outputs(out: Path, results: dict, frames: dict, models: dict) -> None:
    """Write the three output files atomically (a sweep killed mid-write keeps the previous ones)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RESULTS_NAME + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, out / RESULTS_NAME)
    save_checkpoint(out / FRAMES_NAME, {"quick": results["quick"], "runs": frames})
    if models:
        save_checkpoint(out / MODELS_NAME, {"quick": results["quick"], "models": models})


def _previous(out: Path, quick: bool) -> tuple[list[dict], dict, dict]:
    """Runs already recorded in ``out`` by a sweep of the same kind (so that a rerun only adds the rest)."""
    try:
        results = json.loads((out / RESULTS_NAME).read_text())
        frames = read_checkpoint(out / FRAMES_NAME)["runs"]
        models = read_checkpoint(out / MODELS_NAME)["models"] if (out / MODELS_NAME).exists() else {}
    except (OSError, ValueError, KeyError, RuntimeError):
        return [], {}, {}
    if results.get("quick") != quick:
        return [], {}, {}
    runs = [r for r in results["runs"] if r["key"] in frames]
    return runs, {r["key"]: frames[r["key"]] for r in runs}, models


def sweep(out, *, quick: bool = False, jobs: int = 1, device=None, seed: int = 0, datasets=DATASETS,
          runs_dir=None, threads: int | None = None, command: str | None = None, resume: bool = True,
          deadline_s: float | None = None, log=print) -> dict:
    """Run every configuration of :func:`sweep_configs`, ``jobs`` at a time, and write the outputs.

    With ``jobs > 1`` each run goes to its own process (spawned, so that each
    has its own CUDA context); the outputs in ``out`` are rewritten after every
    finished run, so a sweep stopped early keeps what it finished, and a rerun
    with ``resume`` only trains the runs not yet recorded there. With
    ``deadline_s``, every run stops training in time for the sweep to end
    within that many seconds (records say ``stopped_at_deadline`` and their
    ``steps``), and runs that cannot start in time are listed as skipped.
    """
    started = time.perf_counter()
    deadline = time.time() + deadline_s if deadline_s else None
    skipped: list[str] = []
    failed: dict[str, str] = {}
    out = Path(out)
    device = pick_device(device)
    configs = sweep_configs(quick, seed, datasets)
    runs, frames, models = _previous(out, quick) if resume else ([], {}, {})
    done = {r["key"] for r in runs}
    todo = [c for c in configs if c["key"] not in done]
    if done:
        log(f"{len(done)} runs already recorded in {out}; training the other {len(todo)}")
    started_by = {"command": command, "device": device_description(device), "seed": seed}

    def finished(config, outcome):
        if isinstance(outcome, BaseException):  # one broken run must not cost the others
            failed[config["key"]] = f"{type(outcome).__name__}: {outcome}"
            log(f"FAILED {config['key']}: {failed[config['key']]}")
            return
        if outcome is None:
            skipped.append(config["key"])
            log(f"skipped {config['key']}: not enough time left before the deadline")
            return
        record, frame, shipped = outcome
        runs.append(record)
        frames[record["key"]] = frame
        if shipped is not None:
            models[record["key"]] = shipped
        extra = f", MIG {record['mig']:.3f}, beta-VAE metric {record['betavae_metric']:.3f}" if "mig" in record else ""
        stop = ", stopped at the deadline" if record["stopped_at_deadline"] else ""
        log(f"[{len(runs)}/{len(configs)}] {record['key']}: reconstruction {record['reconstruction_nats']:.2f}, "
            f"KL {record['kl_nats']:.2f} nats{extra} ({record['steps']} steps{stop}, {record['wall_time_s']:.0f} s)")
        write_outputs(out, summarize(runs, quick, started, device, seed, command, skipped, failed), frames, models)

    if jobs <= 1:
        for config in todo:
            try:
                outcome = run_one(config, quick, device, runs_dir, threads, started_by, deadline=deadline)
            except Exception as error:
                outcome = error
            finished(config, outcome)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(run_one, config, quick, str(device), runs_dir, threads, started_by,
                                   deadline=deadline): config for config in todo}
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.exception() or future.result())
    results = summarize(runs, quick, started, device, seed, command, skipped, failed)
    write_outputs(out, results, frames, models)
    return results


# --- shipping and reading -------------------------------------------------------------------------------
def ship(out, results_dir, checkpoints_dir) -> list[Path]:
    """Copy a sweep's outputs into the book: ``results/beta_vae.json``, and into ``checkpoints/`` the
    frames file and one checkpoint per live-decoded model, each listed in the manifest."""
    out, results_dir, checkpoints_dir = Path(out), Path(results_dir), Path(checkpoints_dir)
    results = json.loads((out / RESULTS_NAME).read_text())
    if results.get("quick"):
        raise ValueError(f"{out / RESULTS_NAME} comes from a --quick sweep: quick numbers are not results")
    info = {k: results[k] for k in ("command", "commit", "device", "seed", "wall_time_s", "date")}
    results_dir.mkdir(parents=True, exist_ok=True)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / RESULTS_NAME).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    written = [results_dir / RESULTS_NAME]
    frames = checkpoints_dir / FRAMES_NAME
    save_checkpoint(frames, read_checkpoint(out / FRAMES_NAME))
    record_in_manifest(frames, info, {"runs": results["n_runs"]})
    written.append(frames)
    if (out / MODELS_NAME).exists():
        by_key = {r["key"]: r for r in results["runs"]}
        for key, payload in read_checkpoint(out / MODELS_NAME)["models"].items():
            path = save_checkpoint(checkpoints_dir / checkpoint_name(key), payload)
            run = by_key[key]
            metrics = {k: run[k] for k in ("reconstruction_nats", "kl_nats", "mig", "betavae_metric", "epochs")
                       if k in run}
            record_in_manifest(path, info, metrics)
            written.append(path)
    return written


def load_recorded(results_dir, checkpoints_dir) -> tuple[dict, dict] | None:
    """The shipped sweep (results and frames) if both are there and the frames match the manifest, else None."""
    results_file, frames_file = Path(results_dir) / RESULTS_NAME, Path(checkpoints_dir) / FRAMES_NAME
    if not (results_file.is_file() and frames_file.is_file()):
        return None
    manifest = json.loads((Path(checkpoints_dir) / "manifest.json").read_text())
    entry = manifest["checkpoints"].get(FRAMES_NAME)
    if entry is None or entry["sha256"] != sha256_of(frames_file):
        raise ValueError(f"{frames_file} does not match its manifest entry; restore it or ship the sweep again")
    return json.loads(results_file.read_text()), read_checkpoint(frames_file)["runs"]


# --- the chapter's figures (matplotlib is imported only when one is drawn) -----------------------------
ARCHITECTURE_COLORS = {"fc": "tab:blue", "conv": "tab:orange", "allconv": "tab:green"}
DATASET_TITLES = {"one_ball": "one ball", "two_balls": "two balls", "shapes": "shapes"}


def find_run(runs: list[dict], dataset: str, architecture: str, beta: float, seed: int | None = None) -> dict | None:
    """The record of one run in a results list (the lowest seed unless ``seed`` is given), or None."""
    matches = [r for r in runs if (r["dataset"], r["architecture"], r["beta"]) == (dataset, architecture, beta)
               and (seed is None or r["seed"] == seed)]
    return min(matches, key=lambda r: r["seed"]) if matches else None


def latent_labels(frame: dict) -> list[str]:
    """Row labels of a run's traversal, in its order: ``z[3]  σ 0.04``."""
    std = frame["posterior_std"]
    return [f"z[{i}]  σ {float(std[i]):.2f}" for i in frame["order"]]


def plot_traversals(frames: dict, keys: list[str], titles: list[str] | None = None, max_latents: int = 10):
    """Seed 001's traversal figure: for each run, rows are latents ordered by average posterior std
    (lowest, i.e. most used, on top), columns the values -3 ... 3 given to that latent."""
    import matplotlib.pyplot as plt

    from ..viz import image_grid

    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 4.6), squeeze=False)
    for ax, key, title in zip(axes[0], keys, titles or keys):
        frame = frames[key]
        shown = frame["frames"][:max_latents].float() / 255
        image_grid(shown.flatten(0, 1)[:, None], nrow=shown.shape[1], ax=ax)
        ax.set_title(title, fontsize=9)
        ax.set_axis_on()
        height = shown.shape[-2] + 2
        ax.set_yticks([2 + height * (r + 0.5) for r in range(len(shown))],
                      latent_labels(frame)[:len(shown)], fontsize=7)
        width = shown.shape[-1] + 2
        ax.set_xticks([2 + width * (c + 0.5) for c in range(shown.shape[1])],
                      [f"{v:g}" for v in frame["values"]], fontsize=7)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    fig.tight_layout()
    return fig


def plot_posterior_std(runs: list[dict]):
    """Seed 001's second figure: each latent's average posterior std, sorted, per architecture and β.

    A latent at std 1 is unused (its posterior is the prior); the lower the
    curve starts, the fewer latents the model relies on, and the more precisely.
    """
    import matplotlib.pyplot as plt

    panels = [(d, a) for d in BALL_DATASETS for a in ARCHITECTURES] + [("shapes", SHAPES_ARCHITECTURE)]
    panels = [(d, a) for d, a in panels if any(r["dataset"] == d and r["architecture"] == a for r in runs)]
    columns = len(ARCHITECTURES)
    fig, axes = plt.subplots(math.ceil(len(panels) / columns), columns,
                             figsize=(11, 2.6 * math.ceil(len(panels) / columns)), squeeze=False)
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
        ax.set_title(f"{DATASET_TITLES[dataset]}, {architecture}", fontsize=10)
        ax.set_xlabel("latent, sorted", fontsize=8)
        ax.set_ylabel("mean posterior std", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_reconstruction(runs: list[dict]):
    """Seed 001's third figure: held-out reconstruction error against β, per architecture and dataset."""
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in runs)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.2), squeeze=False)
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
        ax.set_ylabel("reconstruction error (nats per image)")
        ax.set_title(DATASET_TITLES[dataset])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_factor_information(runs: list[dict], betas=SHIPPED_SHAPES_BETAS, factor_names=None):
    """Which latent knows which factor: normalized mutual information (latents × factors) on shapes."""
    import matplotlib.pyplot as plt

    from ..data.shapes import FACTOR_NAMES

    chosen = [find_run(runs, "shapes", SHAPES_ARCHITECTURE, b) for b in betas]
    chosen = [r for r in chosen if r and "normalized_mutual_information" in r]
    fig, axes = plt.subplots(1, max(1, len(chosen)), figsize=(3.4 * max(1, len(chosen)), 3.8), squeeze=False)
    for ax, run in zip(axes[0], chosen):
        nmi = np.asarray(run["normalized_mutual_information"])[run["order_by_std"]]
        ax.imshow(nmi, vmin=0, vmax=1, cmap="Blues")
        for (i, k), value in np.ndenumerate(nmi):
            if value >= 0.05:
                ax.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 0.5 else "black")
        ax.set_xticks(range(nmi.shape[1]), factor_names or FACTOR_NAMES, fontsize=8, rotation=30)
        ax.set_yticks(range(nmi.shape[0]), [f"z[{i}]" for i in run["order_by_std"]], fontsize=7)
        ax.set_title(f"β = {run['beta']:g}: MIG {run['mig']:.2f}", fontsize=10)
    fig.tight_layout()
    return fig


def metric_table(runs: list[dict]) -> str:
    """The disentanglement metrics on shapes, one row per β, as a Markdown table."""
    lines = ["| β | MIG | β-VAE metric | reconstruction (nats) | KL (nats) | active latents | steps | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for beta in sorted({r["beta"] for r in runs if r["dataset"] == "shapes"}):
        chosen = [r for r in runs if r["dataset"] == "shapes" and r["beta"] == beta]

        def mean(name, digits=3):
            return f"{np.mean([r[name] for r in chosen]):.{digits}f}"

        lines.append(f"| {beta:g} | {mean('mig')} | {mean('betavae_metric')} | {mean('reconstruction_nats', 1)} | "
                     f"{mean('kl_nats', 1)} | {mean('active_latents', 1)} | {mean('steps', 0)} | {len(chosen)} |")
    return "\n".join(lines)
