"""Chapter 3 (discrete gradients): the discrete VAE's recipe, and the experiment behind ``results/estimators.json``.

The recipe trains a :class:`CategoricalVAE` (one categorical latent, K = 10)
on dynamically binarized MNIST with one gradient estimator. Its defaults are
the settings of the shipped ``categorical_vae_k10.pt`` (REBAR, seed 1, the
best held-out bound of the recorded runs). The held-out number,
``val_exact_neg_elbo``, sums over all K classes, so it scores every
estimator alike (CONCRETE's training loss is its relaxed cost). It is
watched on validation images, MNIST's last 5,000 training digits (the
first ``n_val`` of them, binarized once), which are never trained on: the
model trains on the first 55,000, so neither the monitoring nor the choice
of the shipped run sees a test image.

The recorded experiment: the VAE with the exact gradient and with every
estimator, for each of ``SEEDS``; the run with the best held-out bound is
shipped, and every estimator's gradient noise is measured at that model,
frozen. The same collection reruns the toy problems
(:func:`toy_estimators.toy_results`), so ``reproduce estimators`` remakes
the whole results file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..data import load_mnist
from ..checkpoints import read_manifest
from ..data.binarize import stochastic_binarize
from ..estimators import ESTIMATORS, exact_gradient, make_estimator
from ..models.categorical_vae import CategoricalVAE, CategoricalVAEConfig
from ..recipes import Recipe, RecipeError, register
from ..runner import Experiment, Job, Outputs, done_records, load_run, register_experiment
from .toy_estimators import ESTIMATOR_NAMES, TEMPERATURE, toy_results

SEEDS = (0, 1, 2, 3, 4)  # the recorded seeds
VAE_NAMES = ("exact", *ESTIMATOR_NAMES)  # the reference first, then the estimators in the chapter's order
SELECTED_BY = "val_exact_neg_elbo"  # the shipped run: the lowest final validation exact -ELBO


def validation_images(n: int, seed: int = 1234) -> torch.Tensor:
    """The first ``n`` validation images (MNIST's last 5,000 training digits), binarized once with a fixed seed."""
    images, _ = load_mnist("val")
    return stochastic_binarize(images[:n], generator=torch.Generator().manual_seed(seed))


@register
@dataclass(frozen=True)
class CategoricalVAERecipe(Recipe):
    """Chapter 3's discrete VAE (K classes, one categorical latent) on dynamically binarized MNIST."""

    name = "categorical_vae"
    chapter = "3"
    QUICK = {"epochs": 2, "n_train": 500, "n_val": 200}
    CHOICES = {"estimator": tuple(ESTIMATORS)}
    HELP = {"estimator": "the encoder's gradient: exact (K decoder calls) or one of the chapter's estimators",
            "num_classes": "K, the classes of the latent",
            "temperature": "CONCRETE's relaxation temperature (REBAR's and RELAX's starting λ)",
            "n_train": "training images (all of MNIST's first 55,000 when not given)",
            "n_val": "validation images (of MNIST's last 5,000 training digits) watched after every epoch"}

    estimator: str = "rebar"  # the shipped model's
    num_classes: int = 10
    temperature: float = TEMPERATURE
    epochs: int = 15
    batch_size: int = 100
    lr: float = 1e-3
    n_train: int | None = None
    n_val: int = 2000

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise RecipeError(f"num_classes must be a whole number of at least 2, got {self.num_classes!r}")
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train < 1):
            raise RecipeError(f"n_train must be a whole number of at least 1 (or None: all), got {self.n_train!r}")
        if not isinstance(self.n_val, int) or self.n_val < 1:
            raise RecipeError(f"n_val must be a whole number of at least 1, got {self.n_val!r}")
        if not self.temperature > 0:
            raise RecipeError(f"temperature must be positive, got {self.temperature!r}")

    def build_model(self) -> CategoricalVAE:
        return CategoricalVAE(CategoricalVAEConfig(num_classes=self.num_classes, estimator=self.estimator,
                                                   temperature=self.temperature))

    def train_data(self) -> TensorDataset:
        images, _ = load_mnist("fit")
        return TensorDataset(images[: self.n_train] if self.n_train else images)

    def step(self, model: CategoricalVAE, batch: tuple) -> dict[str, torch.Tensor]:
        """A fresh binarization of the batch, then the negative ELBO through the estimator."""
        return model.loss(stochastic_binarize(batch[0]))

    def evaluator(self):
        """The exact -ELBO (summed over the K classes) on the validation images."""
        held_out = validation_images(self.n_val)

        def evaluate(model: CategoricalVAE) -> dict[str, float]:
            x = held_out.to(next(model.parameters()).device)
            return {"exact_neg_elbo": float(model.exact_neg_elbo(x).mean())}

        return evaluate

    def shipped_name(self, seed: int = 0) -> str:
        """``categorical_vae_k<K>.pt``, whatever the estimator: the best run of the experiment ships there."""
        return f"categorical_vae_k{self.num_classes}.pt"


def shipped_recipe() -> CategoricalVAERecipe:
    """The recipe of the shipped model (its estimator, from the manifest; the default when nothing is shipped)."""
    from ..checkpoints import CheckpointError, read_manifest

    name = CategoricalVAERecipe().shipped_name()
    try:
        entry = read_manifest()["checkpoints"].get(name) or {}
    except CheckpointError:
        entry = {}
    estimator = (entry.get("metrics") or {}).get("estimator")
    return CategoricalVAERecipe(estimator=estimator) if estimator else CategoricalVAERecipe()


# --- the gradient's noise at a trained model -------------------------------------------------------
VAE_VARIANCE_FULL = {"tune_steps": 2000, "n_images": 100, "n_samples": 1000}
VAE_VARIANCE_QUICK = {"tune_steps": 20, "n_images": 8, "n_samples": 50}


def vae_gradient_statistics(model: CategoricalVAE, names=ESTIMATOR_NAMES, *, quick: bool = False, seed: int = 0,
                            batch_size: int = 100, lr: float = 1e-3) -> dict:
    """Each estimator's variance and bias for the encoder's logits of a *trained, frozen* discrete VAE.

    The toy's fixed-parameter check, on the real cost f(b) = -log p(x | b):
    for each estimator a fresh copy of its learned parts (baseline networks
    reading x, as in training) is tuned for ``tune_steps`` training batches
    with the model frozen, then ``n_samples`` estimates are drawn for each of
    ``n_images`` held-out images. ``variance``: per image, summed over the K
    logits, then averaged over images; ``relative_error`` the root mean square
    over images of |mean - exact| / |exact| (noise, and bias for CONCRETE);
    ``bias_z_rms`` the root mean square over images and logits of
    (mean - exact) / standard error, about 1 for an unbiased estimator *if*
    the samples cover every class; when q(b | x) gives some class almost no
    mass, REINFORCE's sample standard error misses it and its z-scores grow.
    """
    settings = VAE_VARIANCE_QUICK if quick else VAE_VARIANCE_FULL
    device = next(model.parameters()).device
    model.requires_grad_(False)
    train_images, _ = load_mnist("fit")
    x = validation_images(settings["n_images"]).to(device)
    m, s, k = settings["n_images"], settings["n_samples"], model.num_classes
    with torch.no_grad():
        logits = model.encode(x)
    exact = exact_gradient(logits, model.reconstruction_cost(x))
    x_rows = x.repeat_interleave(s, 0)
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for name in names:
        torch.manual_seed(seed)
        started = time.perf_counter()
        reads_x = name in ("nvil", "rebar", "relax")
        estimator = make_estimator(name, k, temperature=TEMPERATURE,
                                   in_features=x[0].numel() if reads_x else 0).to(device)
        parameters = [p for p in estimator.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(parameters, lr=lr) if parameters else None
        for _ in range(settings["tune_steps"] if optimizer else 0):
            index = torch.randint(len(train_images), (batch_size,), generator=generator)
            batch = stochastic_binarize(train_images[index]).to(device)
            with torch.no_grad():
                batch_logits = model.encode(batch)
            out = estimator(batch_logits.requires_grad_(True), model.reconstruction_cost(batch), x=batch)
            optimizer.zero_grad(set_to_none=True)
            out.control_loss.backward()
            optimizer.step()
        torch.manual_seed(seed + 1)
        samples = estimator.gradient_samples(logits.repeat_interleave(s, 0), model.reconstruction_cost(x_rows),
                                             x=x_rows).view(m, s, k)
        z = (samples.mean(1) - exact) / (samples.std(1) / s**0.5).clamp_min(1e-12)
        error = ((samples.mean(1) - exact).norm(dim=-1) / exact.norm(dim=-1).clamp_min(1e-12)).pow(2).mean().sqrt()
        results[name] = {"variance": float(samples.var(1).sum(-1).mean()), "relative_error": float(error),
                         "bias_z_rms": float(z.pow(2).mean().sqrt()),
                         "seconds": round(time.perf_counter() - started, 2)}
    model.requires_grad_(True)
    return {"settings": {**settings, "batch_size": batch_size, "lr": lr, "temperature": TEMPERATURE},
            "estimators": results,
            "ordering_by_variance": sorted(results, key=lambda n: results[n]["variance"])}


# --- the recorded experiment: results/estimators.json ------------------------------------------------
def vae_jobs(scale: str) -> list[Job]:
    """The discrete VAE with the exact gradient and every estimator, for each recorded seed (quick: seed 0)."""
    seeds = SEEDS if scale == "full" else SEEDS[:1]
    return [Job(CategoricalVAERecipe(estimator=name).at_scale(scale), seed) for seed in seeds for name in VAE_NAMES]


def _rounded(history: list[dict]) -> list[dict]:
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in history]


def collect_vae(records: dict[str, dict], out: Outputs, device=None) -> dict | None:
    """The ``categorical_vae`` block from the finished runs and the estimators' gradient noise at the best
    run (``trained_vae_variance``), which it ships (by ``SELECTED_BY``); None without finished runs."""
    from .. import records as rec
    from ..provenance import current_command, provenance
    from ..train import pick_device

    done = done_records(records)
    if not done:
        return None
    runs = {}  # estimator -> [(seed, record, history)]
    for key, record in done.items():
        recipe, _, payload = load_run(out.runs / key)
        runs.setdefault(recipe.estimator, []).append((record["seed"], key, record, _rounded(payload["history"])))
    by_name = {}
    for name in [n for n in VAE_NAMES if n in runs] + sorted(set(runs) - set(VAE_NAMES)):
        mine = sorted(runs[name], key=lambda r: r[0])
        finals = np.array([r[2]["metrics"][SELECTED_BY] for r in mine])
        by_name[name] = {
            "seeds": [{"seed": seed, "history": history, "final_val_exact_neg_elbo": round(float(final), 4),
                       "wall_time_s": record["wall_time_s"]}
                      for (seed, _, record, history), final in zip(mine, finals)],
            "final_val_exact_neg_elbo_mean": round(float(finals.mean()), 3),
            "final_val_exact_neg_elbo_std": round(float(finals.std(ddof=1)), 3) if len(finals) > 1 else None,
            "final_val_exact_neg_elbo_ci95": mean_interval(finals),
        }
    everything = [r for rows in runs.values() for r in rows]
    seed, best_key, best, _ = min(everything, key=lambda r: r[2]["metrics"][SELECTED_BY])
    recipe, model, _ = load_run(out.runs / best_key)
    note = (f"the lowest final validation exact -ELBO ({SELECTED_BY}, on MNIST's last 5,000 training digits) of "
            f"the {len(everything)} runs (estimators x seeds) of the chapter's experiment")
    rec.ship(out.runs / best_key, checkpoints=out.checkpoints, note=note, metrics={"estimator": recipe.estimator})
    first = next(iter(done.values()))
    device = pick_device(device)
    started = time.perf_counter()
    variance = vae_gradient_statistics(model.to(device), quick=out.scale == "quick")
    block = {
        "settings": {k: v for k, v in recipe.settings().items() if k not in ("estimator", "quick")},
        "quick": out.scale == "quick",
        "seeds": sorted({r[0] for r in everything}),
        "runs": by_name,
        "shipped": {"file": recipe.shipped_name(), "estimator": recipe.estimator, "seed": seed,
                    "selected_by": SELECTED_BY},
        "provenance": {"command": first.get("command"), "commit": first.get("commit"),
                       "devices": sorted({r.get("device") for r in done.values()}),
                       "wall_time_s": round(sum(r["wall_time_s"] for r in done.values()), 1),
                       "collected_by": current_command()},
    }
    shipped = read_manifest(out.checkpoints)["checkpoints"][recipe.shipped_name()]
    measured = {**variance, "model": {"file": recipe.shipped_name(), "estimator": recipe.estimator, "seed": seed,
                                      "sha256": shipped["sha256"]},
                **provenance(seed=0, wall_time_s=time.perf_counter() - started, device=device)}
    return block, measured


def mean_interval(values) -> list[float] | None:
    """The 95 % confidence interval of the mean of ``values`` (Student's t, n - 1 degrees of freedom)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return [round(float(values.mean() - half), 3), round(float(values.mean() + half), 3)]


def write_toys(out: Outputs, **settings) -> None:
    """Rerun the toy problems (on the CPU) and merge their keys into ``results/estimators.json``."""
    from .. import records as rec

    started = time.perf_counter()
    body = toy_results(quick=out.scale == "quick", **settings)
    rec.write_results("estimators", body, directory=out.results,
                      provenance=rec.provenance(seed=settings.get("seed", 0), device="cpu",
                                                wall_time_s=time.perf_counter() - started, scale=out.scale))


def write_vae(records: dict[str, dict], out: Outputs, device=None) -> None:
    """Merge the ``categorical_vae`` block into ``results/estimators.json`` (the toy keys are kept)."""
    from .. import records as rec

    started = time.perf_counter()
    collected = collect_vae(records, out, device=device)
    if collected is not None:
        block, variance = collected
        rec.write_results("estimators", {"categorical_vae": block, "trained_vae_variance": variance},
                          directory=out.results,
                          provenance=rec.provenance(seed=0, wall_time_s=time.perf_counter() - started,
                                                    scale=out.scale))


def write_trained_variance(out: Outputs, device=None) -> dict:
    """Measure :func:`vae_gradient_statistics` at the shipped discrete VAE and merge it into
    ``results/estimators.json`` as ``trained_vae_variance`` (the toy and training keys are kept)."""
    from .. import records as rec
    from ..runner import load_or_train
    from ..train import pick_device

    device = pick_device(device)
    recipe = shipped_recipe()
    started = time.perf_counter()
    run = load_or_train(recipe, "quick" if out.scale == "quick" else "read")
    entry = read_manifest()["checkpoints"].get(recipe.shipped_name(), {}) if out.scale != "quick" else {}
    block = {**vae_gradient_statistics(run.model.to(device), quick=out.scale == "quick"),
             "model": {"file": recipe.shipped_name(), "estimator": recipe.estimator, "seed": entry.get("seed"),
                       "sha256": entry.get("sha256")}}
    rec.write_results("estimators", {"trained_vae_variance": block}, directory=out.results,
                      provenance=rec.provenance(seed=0, wall_time_s=time.perf_counter() - started, device=device,
                                                scale=out.scale))
    return block


def _collect(records: dict[str, dict], out: Outputs) -> None:
    write_vae(records, out)
    write_toys(out)


register_experiment(Experiment(chapter="estimators", title="Chapter 3: gradients through discrete choices",
                               jobs=vae_jobs, collect=_collect))

__all__ = ["CategoricalVAERecipe", "SEEDS", "VAE_NAMES", "collect_vae", "shipped_recipe", "vae_gradient_statistics",
           "vae_jobs", "write_toys", "write_vae"]
