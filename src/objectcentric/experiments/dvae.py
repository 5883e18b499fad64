"""Chapter 5 (D-VAE-ST): the recipe, and the experiment behind ``results/dvae.json``.

:class:`DVAERecipe` trains one configuration (model kind, dataset,
estimator, K, variant) for one seed through the book's runner; the recorded
experiment (``python -m objectcentric reproduce dvae``) trains every recorded
configuration for its seeds, scores each run on the training and test images,
merges the seeds of each configuration into ``results/dvae.json`` (and their
prototypes into ``results/dvae_prototypes.npz``) and ships the seed of the main
configuration whose own training -ELBO is lowest: no labels are used to pick it.

Variants of the recipe (``VARIANTS``):

- ``thesis``: seed 000's set-up (random initial weights, the ELBO alone),
  with its flaws fixed: one transformation per image, shared by every
  evaluation, and exact second derivatives for REBAR and RELAX.
- ``robust``: the same, plus ``MARGINAL_WEIGHT`` times KL(q̄(b) || uniform),
  where q̄ is q(b | x) averaged over the batch
  (:meth:`~objectcentric.models.dvae.DVAE.marginal_kl`). Why seeds fail: early
  in training one prototype that fits many images on average pulls them all
  (the encoder learns its bias first), the other prototypes get no images and
  hence no gradient, and the run settles with dead or duplicated prototypes
  and merged classes. The ELBO already contains KL(q̄ || p) once (its KL term,
  averaged over the data, is I(x; b) + KL(q̄ || p)); weighting that part more
  keeps every prototype in use while they form. It assumes roughly balanced
  classes, as in all four datasets.
- ``split``: instead of that term, a surgical fix: every ``split_every``
  epochs (in the first ``split_until`` of training) a cluster holding less
  than half its share of the images, while another holds more than 1.5 times
  its share, becomes a perturbed copy of the largest and splits its images
  with it (:meth:`~objectcentric.models.dvae.DVAE.split_cluster`).
- ``kmeans``: ``robust`` with the prototypes starting as K training images
  picked by k-means++ (:func:`kmeans_plus_plus`) instead of the decoder's
  random initial outputs.

In short CPU trials (5,000 images, 12 epochs, not results) ``robust`` reached
79-92 % where ``thesis`` reached 54-69 %, and ``kmeans`` without the marginal
term collapsed onto one cluster: sharp, distinct starting prototypes make
the winner-takes-all start worse. The recorded runs compare them at full scale.

Accuracy is measured as seed 000 did, on the training images, and also on the
held-out test images; clusters are matched to classes as
:mod:`objectcentric.clustering` explains. Training is watched (``val_accuracy``)
on the first ``n_monitor`` training images, as in the recorded runs: the
labels score the clustering there and never reach the loss.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..clustering import clustering_accuracy, confusion_matrix
from ..data.single_object import DATASETS, NUM_CLASSES, LabelledImages, load_dataset
from ..estimators import ESTIMATORS
from ..models.dvae import DVAE, DVAEST
from ..recipes import Recipe, RecipeError, register
from ..runner import (
    Experiment,
    Job,
    Outputs,
    load_run,
    read_record,
    register_experiment,
)
from ..train import pick_device

MODELS = {"dvae": DVAE, "dvae_st": DVAEST}
MARGINAL_WEIGHT = 20.0
VARIANTS = {
    "thesis": {"init": "random", "split_every": 0, "split_until": 0.0, "marginal_weight": 0.0},
    "robust": {"init": "random", "split_every": 0, "split_until": 0.0, "marginal_weight": MARGINAL_WEIGHT},
    "split": {"init": "random", "split_every": 2, "split_until": 0.6, "marginal_weight": 0.0},
    "kmeans": {"init": "kmeans++", "split_every": 0, "split_until": 0.0, "marginal_weight": MARGINAL_WEIGHT},
}
SPLIT_BELOW, SPLIT_ABOVE = 0.5, 1.5  # a cluster's share of the images, in units of 1 / K
EVAL_IMAGES = 10_000  # images per evaluation call, over all replicas: bounds the memory of the K warps


def _chunks(model: DVAE, images: torch.Tensor):
    size = max(100, EVAL_IMAGES // model.replicas)
    return (images[start:start + size] for start in range(0, len(images), size))


def run_name(model: str, dataset: str, estimator: str, k: int, variant: str) -> str:
    """The name of one configuration's outputs, e.g. ``dvae_st-FullMNIST-exact-k10-robust``."""
    return f"{model}-{dataset}-{estimator}-k{k}-{variant}"


MAIN = ("dvae_st", "FullMNIST", "exact", 10, "robust")  # (kind, dataset, estimator, K, variant): the shipped one


def checkpoint_name(model: str = "dvae_st", dataset: str = "FullMNIST") -> str:
    """File name of the shipped checkpoint (the best seed of the main configuration)."""
    return f"{model}_{dataset.lower()}.pt"


# --- initialisation and surgery ----------------------------------------------------------
def kmeans_plus_plus(images: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``k`` rows of ``images`` (N, D) picked by k-means++ (Arthur & Vassilvitskii, 2007).

    The first uniformly, each next one with probability proportional to its
    squared distance to the nearest one picked so far.
    """
    n = images.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    picked = [first]
    nearest = ((images - images[first]) ** 2).sum(-1)
    for _ in range(k - 1):
        weights = nearest.clamp_min(0).double().cpu()
        index = int(torch.multinomial(weights / weights.sum(), 1, generator=generator))
        picked.append(index)
        nearest = torch.minimum(nearest, ((images - images[index]) ** 2).sum(-1))
    return torch.tensor(picked)


def cluster_shares(model: DVAE, images: torch.Tensor) -> torch.Tensor:
    """Fraction of ``images`` (N, D) the encoder assigns to each class, per replica: (R, K)."""
    counts = torch.zeros(model.replicas, model.num_classes, device=images.device)
    for chunk in _chunks(model, images):
        k = model.assign(chunk)
        counts += torch.nn.functional.one_hot(k, model.num_classes).sum(1)
    return counts / len(images)


@torch.no_grad()
def rebalance(model: DVAE, optimizer: torch.optim.Optimizer, images: torch.Tensor,
              generator: torch.Generator) -> list[tuple[int, int, int]]:
    """Split the largest cluster into the smallest one, in every replica where that is lopsided.

    A replica qualifies when its smallest cluster holds less than
    ``SPLIT_BELOW / K`` of ``images`` and its largest more than
    ``SPLIT_ABOVE / K``. The optimizer's running moments of the moved slices
    are copied along with the weights. Returns ``(replica, source, target)``
    for each split.
    """
    shares = cluster_shares(model, images).cpu()
    k = model.num_classes
    moves = []
    for r in range(model.replicas):
        target, source = int(shares[r].argmin()), int(shares[r].argmax())
        if shares[r, target] < SPLIT_BELOW / k and shares[r, source] > SPLIT_ABOVE / k:
            model.split_cluster(r, source, target, generator=generator)
            for parameter, dim in model.cluster_parameters():
                for moment in optimizer.state.get(parameter, {}).values():
                    if torch.is_tensor(moment) and moment.shape == parameter.shape:
                        moment[r].select(dim - 1, target).copy_(moment[r].select(dim - 1, source))
            moves.append((r, source, target))
    return moves


# --- evaluation ----------------------------------------------------------------------------
@torch.no_grad()
def assignments(model: DVAE, images: torch.Tensor) -> torch.Tensor:
    """The class each replica gives each image: (R, N) on the CPU."""
    model.eval()
    return torch.cat([model.assign(chunk).cpu() for chunk in _chunks(model, images)], 1)


@torch.no_grad()
def mean_neg_elbo(model: DVAE, images: torch.Tensor) -> list[float]:
    """-ELBO per image, averaged over ``images``, per replica (one transformation sample per image)."""
    model.eval()
    total = torch.zeros(model.replicas, dtype=torch.float64)
    for chunk in _chunks(model, images):
        total += model.neg_elbo(chunk).double().sum(1).cpu()
    return (total / len(images)).tolist()


def evaluate_split(model: DVAE, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Accuracy, confusion matrix, cluster mapping and cluster sizes of every replica on one split."""
    clusters = assignments(model, images)
    labels = labels.cpu()
    out = {"accuracy": [], "confusion": [], "mapping": [], "cluster_sizes": []}
    for r in range(model.replicas):
        out["accuracy"].append(clustering_accuracy(clusters[r], labels, model.num_classes, num_classes))
        matrix, mapping = confusion_matrix(clusters[r], labels, model.num_classes, num_classes)
        out["confusion"].append(matrix.tolist())
        out["mapping"].append(mapping.tolist())
        out["cluster_sizes"].append(np.bincount(clusters[r].numpy(), minlength=model.num_classes).tolist())
    out["neg_elbo"] = mean_neg_elbo(model, images)
    return out


# --- the recipe ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _load(dataset: str, split: str) -> LabelledImages:
    return load_dataset(dataset, split)


@register
@dataclass(frozen=True)
class DVAERecipe(Recipe):
    """Chapter 5's D-VAE and D-VAE-ST: K prototypes that sort images without labels."""

    name = "dvae"
    chapter = "5"
    QUICK = {"epochs": 3, "batch_size": 200, "lr": 1e-3, "n_train": 1000, "n_monitor": 500}
    CHOICES = {"kind": tuple(MODELS), "dataset": DATASETS, "estimator": tuple(ESTIMATORS),
               "variant": tuple(VARIANTS)}
    HELP = {"kind": "dvae (prototypes alone) or dvae_st (prototypes moved by an affine transformation)",
            "dataset": "the images to sort", "estimator": "the gradient estimator of Chapter 3",
            "k": "number of clusters (default: the dataset's number of classes)",
            "variant": "thesis, robust (+ weighted KL of the mean assignment), split (rebalancing surgery) "
                       "or kmeans (robust, prototypes started by k-means++)",
            "weight_decay": "Adam's weight decay", "n_train": "training images (all when not given)",
            "n_monitor": "training images whose clustering accuracy is watched after every epoch"}

    kind: str = "dvae_st"
    dataset: str = "FullMNIST"
    estimator: str = "exact"
    k: int | None = None
    variant: str = "robust"
    epochs: int = 60
    batch_size: int = 1000
    lr: float = 5e-4
    weight_decay: float = 1e-6
    n_train: int | None = None
    n_monitor: int = 10_000

    def __post_init__(self):
        super().__post_init__()
        if self.k is None:  # the dataset's classes, written into the settings
            object.__setattr__(self, "k", NUM_CLASSES[self.dataset])
        if not isinstance(self.k, int) or self.k < 2:
            raise RecipeError(f"k must be a whole number of at least 2, got {self.k!r}")
        for field in ("n_train", "n_monitor"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RecipeError(f"{field} must be a whole number of at least 1, got {value!r}")

    @property
    def setup(self) -> dict:
        """The variant's settings: prototype start, split schedule, weight of the marginal KL."""
        return VARIANTS[self.variant]

    def labelled(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
        """Images (N, pixels), labels and class names of a split (the quick scale keeps ``n_train`` of each)."""
        data = _load(self.dataset, split)
        n = self.n_train if split == "train" or self.quick else None
        return data.images.flatten(1)[:n], data.labels[:n], data.class_names

    def build_model(self) -> DVAE:
        config = MODELS[self.kind].CONFIG(num_classes=self.k, estimator=self.estimator,
                                          marginal_weight=self.setup["marginal_weight"])
        return MODELS[self.kind](config)

    def train_data(self) -> TensorDataset:
        return TensorDataset(self.labelled("train")[0])

    def initialize(self, model: DVAE, data: TensorDataset, seed: int) -> None:
        """The kmeans variant starts the prototypes at K training images picked by k-means++."""
        if self.setup["init"] == "kmeans++":
            pool = data.tensors[0][:10_000]
            picks = kmeans_plus_plus(pool, self.k, torch.Generator().manual_seed(10_007 * seed + 1))
            model.init_prototypes(pool[picks][None])

    def step(self, model: DVAE, batch: tuple) -> dict[str, torch.Tensor]:
        return model.loss(batch[0])

    def optimizer(self, model: DVAE) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _monitor(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, _ = self.labelled("train")
        return images[: self.n_monitor].to(device), labels[: self.n_monitor]

    def end_of_epoch(self, model: DVAE, optimizer, epoch: int, seed: int) -> None:
        """The split variant: every ``split_every`` epochs (early in training), :func:`rebalance`."""
        every, until = self.setup["split_every"], int(self.setup["split_until"] * self.epochs)
        if not every or epoch % every or epoch > until:
            return
        monitor, _ = self._monitor(next(model.parameters()).device)
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)  # the same moves when resumed
        moves = rebalance(model, optimizer, monitor, generator)
        model.splits = [*getattr(model, "splits", []),
                        *({"epoch": epoch, "seed": seed, "source": s, "target": t} for _, s, t in moves)]

    def evaluator(self):
        """Clustering accuracy on the first ``n_monitor`` training images, and the splits made so far."""
        num_classes = NUM_CLASSES[self.dataset]

        def evaluate(model: DVAE) -> dict[str, float]:
            images, labels = self._monitor(next(model.parameters()).device)
            clusters = assignments(model, images)[0]
            return {"accuracy": clustering_accuracy(clusters, labels, self.k, num_classes),
                    "splits": float(len(getattr(model, "splits", ())))}

        return evaluate

    def metrics(self, model: DVAE, history: list[dict]) -> dict:
        """The last epoch's numbers, its mean training -ELBO, and the splits made in this process."""
        return {**super().metrics(model, history), "neg_elbo": history[-1]["neg_elbo"],
                "splits": list(getattr(model, "splits", []))}

    def configuration(self) -> tuple:
        """(kind, dataset, estimator, k, variant): what names a configuration in the results."""
        return self.kind, self.dataset, self.estimator, self.k, self.variant

    def shipped_name(self, seed: int = 0) -> str | None:
        """``dvae_st_fullmnist.pt`` for the main configuration (D-VAE-ST, FullMNIST, exact, K = 10, robust)."""
        return checkpoint_name() if self.configuration() == MAIN else None


# --- one run, scored ------------------------------------------------------------------------------
def run_report(model: DVAE, recipe: DVAERecipe, record: dict, history: list[dict], device=None) -> dict:
    """One trained run on the training and test images: accuracy, confusion, mapping, cluster sizes, -ELBO.

    Shaped as one member of :func:`merge_reports` (per-seed lists of length one).
    The -ELBO's draws of the transformation are seeded (0), so a run scores
    the same every time.
    """
    device = pick_device(device)
    model = model.to(device).eval()
    num_classes = NUM_CLASSES[recipe.dataset]
    seconds = [h["seconds"] for h in history if "seconds" in h]
    started_by = {key: record.get(key) for key in ("device", "commit", "command")}
    report = {
        "model": recipe.kind, "dataset": recipe.dataset, "estimator": recipe.estimator, "k": recipe.k,
        "variant": recipe.variant, "seeds": [int(record["seed"])], "num_classes": num_classes,
        "class_names": list(recipe.labelled("test")[2]), "settings": recipe.settings(), "quick": recipe.quick,
        "epochs_done": len(history), "stopped_early": record.get("status") != "done", "failure": None,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "wall_time_s": record.get("wall_time_s"), "splits": (record.get("metrics") or {}).get("splits", []),
        "history": [{key: round(value, 5) if isinstance(value, float) else value for key, value in h.items()}
                    for h in history],
        "provenance": {key: value for key, value in started_by.items() if value is not None},
    }
    torch.manual_seed(0)
    for split in ("train", "test"):
        images, labels, _ = recipe.labelled(split)
        report[split] = evaluate_split(model, images.to(device), labels, num_classes)
    return report


def pick_by_elbo(reports: list[dict]) -> int:
    """The index of the run whose -ELBO on its own training images is lowest (no labels involved)."""
    return int(np.argmin([r["train"]["neg_elbo"][0] for r in reports]))


# --- pictures (the notebook's prototype explorer and labels) ------------------------------------------
TRANSFORM_PARAMETERS = ("scale", "rotation", "shear", "shift x", "shift y")
TRAVERSAL_VALUES = tuple(round(v, 2) for v in np.linspace(-0.45, 0.45, 7))


def theta_from_changes(changes) -> torch.Tensor:
    """The window theta (1, 2, 3) whose :data:`TRANSFORM_PARAMETERS` differ from the identity by ``changes``.

    scale 1 + c₀, rotation c₁ radians, shear c₂, shift (c₃, c₄), as
    :func:`objectcentric.spatial.affine_matrix` builds them (Chapter 4).
    """
    from ..spatial import affine_matrix

    scale, rotation, shear, shift_x, shift_y = (float(c) for c in changes)
    return affine_matrix(1 + scale, rotation, shear, shift_x, shift_y)


@torch.no_grad()
def transform_traversal(prototype: torch.Tensor, values=TRAVERSAL_VALUES) -> np.ndarray:
    """Frames (parameters, values, H, W): the prototype (C, H, W) warped with one parameter changed at a time."""
    from ..spatial import transform

    prototype = prototype.detach().cpu().float()
    rows = []
    for p in range(len(TRANSFORM_PARAMETERS)):
        thetas = []
        for v in values:
            changes = [0.0] * len(TRANSFORM_PARAMETERS)
            changes[p] = v
            thetas.append(theta_from_changes(changes))
        warped = transform(prototype.expand(len(values), *prototype.shape), torch.cat(thetas))
        rows.append(warped[:, 0].clamp(0, 1).numpy())
    return np.stack(rows)


def prototype_titles(mapping, sizes, class_names) -> list[str]:
    """One label per cluster: the class it is matched to and the share of images it holds."""
    total = max(sum(sizes), 1)
    return [f"→ {class_names[c] if c >= 0 else '?'}\n{100 * n / total:.1f} %" for c, n in zip(mapping, sizes)]


# --- merging jobs into results/dvae.json's shape --------------------------------------------------------
def merge_reports(reports: list[dict]) -> dict:
    """Group reports of :func:`run_report` by configuration and merge their seeds.

    Returns ``{"runs": [...], "details": {run_name: {...}}}``: ``runs`` holds one
    entry per configuration and split, shaped as results/dvae.json's (model,
    dataset, estimator, k, split, accuracy_by_seed, best, worst, mean,
    seconds_per_epoch, plus variant, seeds, epochs and, for reports that carry
    a ``provenance``, the ``devices``, ``commits`` and ``commands`` of their jobs); ``details`` the
    per-seed numbers (accuracies, -ELBOs, mappings, cluster sizes, training
    confusion matrices), the histories and the splits made.
    """
    groups: dict[tuple, list[dict]] = {}
    for report in reports:
        identity = tuple(report[key] for key in ("model", "dataset", "estimator", "k", "variant"))
        groups.setdefault(identity, []).append(report)
    runs, details = [], {}
    for identity, members in sorted(groups.items()):
        members.sort(key=lambda r: r["seeds"][0])
        seeds = [s for r in members for s in r["seeds"]]
        merged = {split: {field: [v for r in members for v in r[split][field]] for field in members[0][split]}
                  for split in ("train", "test")}
        seconds = [r["seconds_per_epoch"] for r in members if r["seconds_per_epoch"] is not None]
        origins = {key: list(dict.fromkeys(r["provenance"][key] for r in members if "provenance" in r))
                   for key in ("device", "commit", "command")}
        for split in ("train", "test"):
            accuracy = [round(a, 5) for a in merged[split]["accuracy"]]
            runs.append({
                "model": identity[0], "dataset": identity[1], "estimator": identity[2], "k": identity[3],
                "split": split, "accuracy_by_seed": accuracy, "best": max(accuracy), "worst": min(accuracy),
                "mean": round(float(np.mean(accuracy)), 5),
                "seconds_per_epoch": round(float(np.mean(seconds)), 3) if seconds else None,
                "variant": identity[4], "seeds": seeds,
                "epochs": [r["epochs_done"] for r in members for _ in r["seeds"]],
                **{f"{key}s": values for key, values in origins.items() if values},
            })
        merged["test"].pop("confusion", None)  # the training images' matrices are the protocol's; keep those
        details[run_name(*identity)] = {
            "seeds": seeds, "class_names": members[0]["class_names"], "settings": members[0]["settings"],
            "quick": members[0]["quick"], "stopped_early": [r["stopped_early"] for r in members],
            "failures": [r.get("failure") for r in members],
            "splits": [s for r in members for s in r["splits"]], **merged,
            "histories": [{"seeds": r["seeds"], "history": r["history"]} for r in members],
        }
    return {"runs": runs, "details": details}


# --- the recorded experiment: results/dvae.json -------------------------------------------------------
# (kind, dataset, estimator, K, variant, seeds, epochs), most important first: results/dvae.json's
# configurations and seeds. The recorded runs stopped at a time budget after the epochs given here
# (60 were planned); training that many reproduces them. split and kmeans were planned and not
# reached; Letters was skipped where EMNIST could not be downloaded.
RECORDED = (
    (*MAIN, range(10), 33),
    ("dvae_st", "FullMNIST", "exact", 10, "thesis", range(5), 33),
    ("dvae", "FullMNIST", "exact", 10, "robust", range(5), 41),
    ("dvae", "FullMNIST", "exact", 10, "thesis", range(5), 41),
    ("dvae_st", "SimplifiedMNIST", "exact", 3, "robust", range(5), 60),
    ("dvae", "SimplifiedMNIST", "exact", 3, "robust", range(5), 60),
    ("dvae_st", "FashionMNIST", "exact", 10, "robust", range(5), 22),
    ("dvae", "FashionMNIST", "exact", 10, "robust", range(5), 22),
    ("dvae_st", "FullMNIST", "exact", 11, "robust", range(5), 18),
    ("dvae_st", "FullMNIST", "exact", 12, "robust", range(5), 18),
    ("dvae_st", "FullMNIST", "relax", 10, "robust", range(5), 33),
    ("dvae_st", "FullMNIST", "nvil", 10, "robust", range(3), 33),
    ("dvae_st", "FullMNIST", "reinforce", 10, "robust", range(5), 33),
    ("dvae_st", "FullMNIST", "concrete", 10, "robust", range(5), 33),
    ("dvae_st", "FullMNIST", "rebar", 10, "robust", range(5), 33),
    ("dvae_st", "FullMNIST", "relax", 10, "thesis", range(4), 33),
    ("dvae_st", "FullMNIST", "exact", 10, "split", range(5), 33),
    ("dvae_st", "FullMNIST", "exact", 10, "kmeans", range(5), 33),
    ("dvae_st", "Letters", "exact", 26, "robust", range(5), 60),
)
# The quick scale: two seeds of the main configuration (so that the ELBO has a choice) and one D-VAE.
QUICK_SUBSET = ((*MAIN, range(2), 3), ("dvae", "FullMNIST", "exact", 10, "robust", range(1), 3))
RESULTS_NAME = "dvae"
PROTOTYPES_FILE = "dvae_prototypes.npz"
SELECTED_BY = ("the lowest -ELBO on its own training images (one seeded draw of the transformation per "
               "image); no labels are used to choose")
DESCRIPTION = ("Unsupervised clustering accuracy of D-VAE and D-VAE-ST (Chapter 5): clusters mapped to classes "
               "by Hungarian matching (K = classes) or majority (K > classes), on the training images (seed "
               "000's protocol) and the test images. One run per seed (the runs before the experiment layer "
               "trained a configuration's seeds side by side in one process); seconds_per_epoch is the mean over "
               "a configuration's runs, measured while other runs shared the machine; each run lists the devices "
               "and commits of its jobs.")
ANCHOR = {"source": "seed 000 (strimadec thesis), D-VAE-ST, FullMNIST, RELAX, 10 seeds, training images",
          "best": 0.9352, "mean": 0.773, "worst": 0.685,
          "targets": {"dvae_st FullMNIST mean": 0.90, "dvae_st FullMNIST best": 0.95,
                      "dvae FullMNIST": 0.5886, "FashionMNIST": 0.6191, "SimplifiedMNIST": 0.9943}}


def experiment_jobs(scale: str) -> list[Job]:
    """The recorded configurations times their seeds (at the quick scale, :data:`QUICK_SUBSET`)."""
    table = RECORDED if scale == "full" else QUICK_SUBSET
    return [Job(DVAERecipe(kind=kind, dataset=dataset, estimator=estimator, k=k, variant=variant,
                           epochs=epochs).at_scale(scale), seed)
            for kind, dataset, estimator, k, variant, seeds, epochs in table for seed in seeds]


def write_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez_compressed`` through a temporary file, so a crash never leaves half a results file.

    (records.py writes JSON only; this is its counterpart for the prototypes' arrays.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as file:
        np.savez_compressed(file, **arrays)
    os.replace(tmp, path)
    return path


def _job_entry(key: str, record: dict | None) -> dict:
    record = record or {}
    settings = record.get("settings", {})
    job = [settings.get(k) for k in ("kind", "dataset", "estimator", "k", "variant")] + [record.get("seed")]
    entry = {"job": job, "run": key, "status": record.get("status", "missing")}
    for field in ("epochs_done", "wall_time_s", "stopped_by", "error"):
        if record.get(field) is not None:
            entry[field] = record[field]
    return entry


def collect(records: dict[str, dict], out: Outputs, device=None) -> dict:
    """Score every run that trained, merge the seeds, write results/dvae.json and the prototypes, ship.

    A run stopped early (a time budget) is scored with what it learned and
    marked ``stopped_early``; a run whose dataset could not be had is listed
    in ``skipped``. The main configuration's shipped seed is the one with the
    lowest training -ELBO (:func:`pick_by_elbo`). Returns the results file.
    """
    from .. import records as rec

    started = time.perf_counter()
    reports, run_dirs, pictures, skipped = [], [], [], []
    for key, record in records.items():
        record = record or {}
        status = record.get("status")
        if status == "failed":
            if "DatasetUnavailableError" in record.get("error", ""):
                settings = record["settings"]
                skipped.append({**{k: settings[k] for k in ("dataset", "estimator", "k", "variant")},
                                "model": settings["kind"], "skipped": record["error"].split(": ", 1)[-1]})
            continue  # a crash is listed in "jobs" with its error
        if status not in ("done", "stopped") or not record.get("epochs_done"):
            continue
        recipe, model, payload = load_run(out.runs / key)
        reports.append(run_report(model, recipe, record, payload.get("history", []), device))
        run_dirs.append(out.runs / key)
        pictures.append((model.prototypes()[0, :, 0].cpu() * 255).round().to(torch.uint8).numpy())
        print(f"{key}: train accuracy {reports[-1]['train']['accuracy'][0]:.4f}, "
              f"-ELBO {reports[-1]['train']['neg_elbo'][0]:.2f}", flush=True)
    if not reports:
        print(f"no trained D-VAE runs in {out.runs}: nothing collected")
        return {}
    merged = merge_reports(reports)
    prototypes = {}  # per configuration: (seeds, K, 28, 28) uint8, in the order of the seeds
    for report, picture in sorted(zip(reports, pictures), key=lambda pair: pair[0]["seeds"][0]):
        name = run_name(*(report[key] for key in ("model", "dataset", "estimator", "k", "variant")))
        prototypes.setdefault(name, []).append(picture)
    prototypes = {n: np.stack(p) for n, p in prototypes.items()}
    jobs = [_job_entry(key, record) for key, record in records.items()]
    kept = _keep_earlier(out, set(merged["details"]), {s["dataset"] for s in skipped})
    if kept:  # configurations scored by an earlier collect whose run folders are not on this machine
        planned = {job.key: run_name(*job.recipe.configuration()) for job in experiment_jobs(out.scale)}
        jobs = [j for j in jobs if not (j["status"] == "missing" and planned.get(j["run"]) in kept["names"])]
        jobs += kept["jobs"]
        merged["runs"] = sorted(merged["runs"] + kept["runs"], key=_row_order)
        merged["details"] = dict(sorted({**merged["details"], **kept["details"]}.items()))
        prototypes = dict(sorted({**prototypes, **kept["prototypes"]}.items()))
        skipped += kept["skipped"]
    write_npz_atomic(Path(out.results) / PROTOTYPES_FILE, prototypes)
    _ship_by_elbo(reports, run_dirs, out)  # what was shipped, and why, is in the manifest
    body = {"description": DESCRIPTION, "quick": out.scale == "quick", "anchor": ANCHOR, **merged, "skipped": skipped,
            "jobs": jobs, "job_wall_time_s_total": round(sum(r["wall_time_s"] or 0 for r in reports), 1)}
    return rec.write_results(RESULTS_NAME, body, directory=out.results, provenance=rec.provenance(
        seed=min(r["seeds"][0] for r in reports), wall_time_s=time.perf_counter() - started,
        device=pick_device(device), scale=out.scale))


def _row_order(row: dict) -> tuple:
    return row["model"], row["dataset"], row["estimator"], row["k"], row["variant"], row["split"] != "train"


def _keep_earlier(out: Outputs, scored: set[str], skipped_now: set[str]) -> dict:
    """What the existing ``results/dvae.json`` holds for configurations this collect did not score.

    A configuration trained on another machine (its run folders are not here)
    keeps its rows, details, prototypes, jobs and skip note, each row and
    detail marked ``scored_at`` (the commit and date of the collect that scored
    it), instead of vanishing from the results. Only a file written at the
    same scale is kept from. Returns ``{}`` when nothing is kept.
    """
    from .. import records as rec

    earlier = rec.read_results(RESULTS_NAME, out.results)
    writer = next((w for w in earlier.get("writers", []) if "runs" in w["keys"]), {})
    scale = writer.get("scale") or ("quick" if earlier.get("quick") else "full")
    if not earlier.get("runs") or scale != out.scale:
        return {}
    stamp = {k: writer.get(k) for k in ("commit", "date")}

    def name(row):
        return run_name(*(row[k] for k in ("model", "dataset", "estimator", "k", "variant")))

    names = {name(row) for row in earlier["runs"]} - scored
    if not names:
        return {}
    pictures = Path(out.results) / PROTOTYPES_FILE
    with (np.load(pictures) if pictures.exists() else contextlib.nullcontext({})) as stored:
        prototypes = {n: stored[n] for n in names if n in stored}
    return {
        "names": names,
        "runs": [{**row, "scored_at": row.get("scored_at", stamp)} for row in earlier["runs"] if name(row) in names],
        "details": {n: {**earlier["details"][n], "scored_at": earlier["details"][n].get("scored_at", stamp)}
                    for n in names if n in earlier.get("details", {})},
        "prototypes": prototypes,
        "jobs": [j for j in earlier.get("jobs", []) if run_name(*j["job"][:5]) in names],
        "skipped": [s for s in earlier.get("skipped", []) if s["dataset"] not in skipped_now],
    }


def _elbo_and_accuracy(report: dict) -> dict:
    """A run report's train and test accuracy and -ELBO, rounded: ``{"train_accuracy": ..., ...}``."""
    return {f"{split}_{name}": round(report[split][name][0], 5)
            for split in ("train", "test") for name in ("accuracy", "neg_elbo")}


def _ship_by_elbo(reports: list[dict], run_dirs: list[Path], out: Outputs) -> dict | None:
    """Ship the finished run of the main configuration with the lowest training -ELBO; its manifest entry."""
    from .. import records as rec

    main = [(r, d) for r, d in zip(reports, run_dirs)
            if (r["model"], r["dataset"], r["estimator"], r["k"], r["variant"]) == MAIN and not r["stopped_early"]]
    if not main:
        return None
    chosen_report, chosen_dir = main[pick_by_elbo([r for r, _ in main])]
    seed = chosen_report["seeds"][0]
    how = f"seed {seed} of {len(main)} ({', '.join(str(r['seeds'][0]) for r, _ in main)}), chosen by {SELECTED_BY}"
    metrics = _elbo_and_accuracy(chosen_report)
    return rec.ship(chosen_dir, expect=DVAERecipe.name, checkpoints=out.checkpoints, note=how, metrics=metrics,
                    extra={"selected_by": "train_neg_elbo", "run": chosen_dir.name})


def ship_lowest_elbo(run_dirs: list, results: str | Path | None = None, checkpoints=None) -> dict:
    """Score finished runs of the main configuration, ship the one with the lowest training -ELBO; its entry.

    For when the recorded experiment's weights were not kept: the same recipe is
    trained again for several seeds (one run folder each), every run is scored
    like the recorded ones (:func:`run_report`), and the lowest -ELBO on its own
    training images picks the one shipped: no labels. What every candidate
    scored is written to ``results/dvae.json`` under ``shipped_main`` (the other
    keys are kept), so the book can show the choice next to the accuracies.
    """
    from .. import records as rec

    started = time.perf_counter()
    runs = []
    for run_dir in map(Path, run_dirs):
        recipe, model, payload = load_run(run_dir)
        record = read_record(run_dir) or {}
        if not isinstance(recipe, DVAERecipe) or recipe.configuration() != MAIN:
            raise RecipeError(f"{run_dir} is not a run of the main configuration {run_name(*MAIN)}")
        if record.get("status") != "done":
            raise RecipeError(f"{run_dir} has not finished ({record.get('status')}): rerun its training "
                              "command to complete it, or leave it out")
        runs.append((run_dir, record, run_report(model, recipe, record, payload.get("history") or [])))
    if not runs:
        raise RecipeError("no runs given: train the main configuration for a few seeds first")
    index = pick_by_elbo([report for _, _, report in runs])
    chosen_dir = runs[index][0]
    seeds = [record["seed"] for _, record, _ in runs]
    summary = {"seeds": seeds, "chosen_seed": seeds[index], "selected_by": "train_neg_elbo",
               "devices": sorted({record.get("device") for _, record, _ in runs}),
               "commands": [record.get("command") for _, record, _ in runs],
               **{key: [_elbo_and_accuracy(report)[key] for _, _, report in runs]
                  for key in _elbo_and_accuracy(runs[index][2])}}
    rec.write_results(RESULTS_NAME, {"shipped_main": summary}, directory=results, provenance=rec.provenance(
        seed=seeds[index], wall_time_s=time.perf_counter() - started, device=pick_device()))
    metrics = {f"{split}_{name}": summary[f"{split}_{name}"][index]
               for split in ("train", "test") for name in ("accuracy", "neg_elbo")}
    how = (f"seed {seeds[index]} of {len(seeds)} ({', '.join(map(str, seeds))}) of the main configuration trained "
           f"again for the book (the recorded runs' weights were not kept), chosen by {SELECTED_BY}")
    return rec.ship(chosen_dir, expect=DVAERecipe.name, checkpoints=checkpoints, note=how, metrics=metrics,
                    extra={"selected_by": "train_neg_elbo", "run": chosen_dir.name, "candidates": seeds})


EXPERIMENT = register_experiment(Experiment(chapter="dvae", title="Chapter 5: D-VAE and D-VAE-ST",
                                            jobs=experiment_jobs, collect=collect))
