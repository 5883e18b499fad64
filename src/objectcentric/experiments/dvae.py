"""Chapter 5 (D-VAE-ST): settings, training recipe and evaluation of the clustering experiments.

One call trains one configuration (model, dataset, estimator, K) for several
seeds at once: the seeds are the model's replicas, each with its own initial
weights, its own order of the data and its own random draws, so they are as
independent as separate runs (see :mod:`objectcentric.models.dvae`).

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
:mod:`objectcentric.clustering` explains.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..clustering import clustering_accuracy, confusion_matrix
from ..data.single_object import NUM_CLASSES, load_dataset
from ..models.dvae import DVAE, DVAEST
from ..train import NonFiniteLossError, TrainResult, fit, pick_device

MODELS = {"dvae": DVAE, "dvae_st": DVAEST}
FULL = {"epochs": 60, "batch_size": 1000, "lr": 5e-4, "weight_decay": 1e-6, "n_train": None, "n_monitor": 10_000}
QUICK = {"epochs": 3, "batch_size": 200, "lr": 1e-3, "weight_decay": 1e-6, "n_train": 1000, "n_monitor": 500}
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
def train_dvae(model_name: str = "dvae_st", dataset: str = "FullMNIST", estimator: str = "exact",
               k: int | None = None, seeds=(0,), variant: str = "robust", *, quick: bool = False,
               epochs: int | None = None, device=None, checkpoint=None, progress: str = "auto",
               deadline: float | None = None, provenance: dict | None = None, root=None):
    """Train one configuration for ``seeds`` (one replica each) and evaluate it on train and test images.

    ``deadline`` (a ``time.time()`` value) stops training early, keeping what
    was learned, so that a run with a fixed time budget still reports; the
    number of epochs done is recorded. Returns ``(model, result, report)``;
    ``report`` holds the settings, per-seed accuracies on both splits,
    confusion matrices, cluster sizes, -ELBOs, the splits made and the
    seconds per epoch.
    """
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(MODELS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    settings = {**(QUICK if quick else FULL), **VARIANTS[variant]}
    if epochs is not None:
        settings["epochs"] = int(epochs)
    seeds = [int(s) for s in seeds]
    device = pick_device(device)
    train, test = load_dataset(dataset, "train", root), load_dataset(dataset, "test", root)
    num_classes = NUM_CLASSES[dataset]
    k = int(k or num_classes)
    images = train.images.flatten(1)
    labels = train.labels
    if settings["n_train"]:
        images, labels = images[: settings["n_train"]], labels[: settings["n_train"]]
    images = images.to(device)
    monitor, monitor_labels = images[: settings["n_monitor"]], labels[: settings["n_monitor"]]

    model = MODELS[model_name](num_classes=k, estimator=estimator, replicas=len(seeds), seeds=seeds,
                               marginal_weight=settings["marginal_weight"]).to(device)
    generators = [torch.Generator().manual_seed(10_007 * s + 1) for s in seeds]
    if settings["init"] == "kmeans++":
        pool = images[: 10_000]
        picks = torch.stack([kmeans_plus_plus(pool, k, g) for g in generators])  # (R, K)
        model.init_prototypes(pool[picks.to(device)])
    # Each replica reads the data in its own order: batch i of replica r holds images order_r[batch i].
    orders = torch.stack([torch.randperm(len(images), generator=g) for g in generators]).to(device)

    def step(model, batch):
        return model.loss(images[orders[:, batch[0]]])

    steps_per_epoch = -(-len(images) // settings["batch_size"])
    split_generator = torch.Generator().manual_seed(seeds[0])
    splits: list[dict] = []
    last_split_epoch = int(settings["split_until"] * settings["epochs"])

    def after_step(epoch: int, index: int) -> None:
        if deadline is not None and time.time() > deadline:
            raise KeyboardInterrupt  # fit keeps the model and history, and says so
        if (index == steps_per_epoch and settings["split_every"] and epoch % settings["split_every"] == 0
                and epoch <= last_split_epoch):
            split_generator.manual_seed(seeds[0] * 1000 + epoch)  # the same moves when resumed
            for r, source, target in rebalance(model, optimizer, monitor, split_generator):
                splits.append({"epoch": epoch, "seed": seeds[r], "source": source, "target": target})

    monitored: list[dict] = []  # what evaluate saw, kept in case fit stops on a non-finite loss

    def evaluate(model) -> dict[str, float]:
        clusters = assignments(model, monitor)
        accuracy = [clustering_accuracy(c, monitor_labels, k, num_classes) for c in clusters]
        record = {"accuracy_mean": float(np.mean(accuracy)), "accuracy_min": float(np.min(accuracy)),
                  "accuracy_max": float(np.max(accuracy)), "splits": float(len(splits))}
        monitored.append({"epoch": len(monitored) + 1, **{f"val_{key}": value for key, value in record.items()}})
        return record

    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    train_config = {**settings, "model": model_name, "dataset": dataset, "estimator": estimator, "k": k,
                    "seeds": seeds, "variant": variant, "quick": quick, "provenance": provenance or {}}
    failure = None
    try:
        result: TrainResult = fit(
            model, TensorDataset(torch.arange(len(images))), step, epochs=settings["epochs"],
            batch_size=settings["batch_size"], optimizer=optimizer, evaluate=evaluate, checkpoint=checkpoint,
            seed=seeds[0], device=device, progress=progress, train_config=train_config, after_step=after_step)
    except NonFiniteLossError as error:  # the weights are those of the last good step: report what they do
        failure = str(error)
        print(f"{run_name(model_name, dataset, estimator, k, variant)}: {failure}")
        result = TrainResult(history=monitored, interrupted=True)

    model.eval()
    report = {
        "model": model_name, "dataset": dataset, "estimator": estimator, "k": k, "variant": variant,
        "seeds": seeds, "num_classes": num_classes, "class_names": list(train.class_names),
        "settings": {key: settings[key] for key in sorted(settings)}, "quick": quick,
        "epochs_done": len(result.history), "stopped_early": result.interrupted, "failure": failure,
        "seconds_per_epoch": (float(np.mean([h["seconds"] for h in result.history]))
                              if result.history and "seconds" in result.history[0] else None),
        "wall_time_s": result.wall_time_s, "splits": splits,
        "history": [{key: round(value, 5) if isinstance(value, float) else value for key, value in h.items()}
                    for h in result.history],
    }
    test_images, test_labels = test.images.flatten(1), test.labels
    if quick:
        test_images, test_labels = test_images[: settings["n_train"]], test_labels[: settings["n_train"]]
    for split, (x, y) in (("train", (images, labels)), ("test", (test_images.to(device), test_labels))):
        report[split] = evaluate_split(model, x, y, num_classes)
    return model, result, report


# --- one configuration, written to a folder (the CLI's `train dvae` and benchmarks/dvae.py) ------
def job_stem(model_name: str, dataset: str, estimator: str, k: int, variant: str, seeds) -> str:
    """File stem of one job's outputs, e.g. ``dvae_st-FullMNIST-exact-k10-robust-seeds0-4``."""
    seeds = [int(s) for s in seeds]
    span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else "_".join(map(str, seeds))
    return f"{run_name(model_name, dataset, estimator, k, variant)}-seeds{span}"


def run_job(model_name: str, dataset: str, estimator: str, k: int | None, seeds, variant: str, out, *,
            quick: bool = False, epochs: int | None = None, device=None, deadline: float | None = None,
            save_best: bool = False, progress: str = "terminal") -> dict:
    """Train one configuration and write its outputs into the folder ``out``; returns what it wrote.

    ``<stem>.json``: provenance (command, commit, device, seed, wall time,
    date) and the report of :func:`train_dvae`; ``<stem>.npz``: every seed's
    prototypes as uint8 images (R, K, 28, 28); with ``save_best``,
    ``<stem>-best.pt``: the seed with the best training accuracy alone, as a
    checkpoint to ship. A dataset that cannot be had writes ``<stem>.json``
    with ``skipped`` and the reason instead.
    """
    import json
    from pathlib import Path

    from ..checkpoints import model_payload, save_checkpoint
    from ..data.mnist import DatasetUnavailableError
    from ..provenance import current_command, device_description, git_commit, provenance

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    k = int(k or NUM_CLASSES[dataset])
    seeds = [int(s) for s in seeds]
    stem = job_stem(model_name, dataset, estimator, k, variant, seeds)
    device = pick_device(device)
    if device.type == "cuda":  # TF32 matrix products: several times faster, far more precise than this model needs
        torch.set_float32_matmul_precision("high")
    started = time.perf_counter()
    started_by = {"command": current_command(), "commit": git_commit(), "device": device_description(device),
                  "seed": seeds[0]}
    try:
        model, result, report = train_dvae(model_name, dataset, estimator, k, seeds, variant, quick=quick,
                                           epochs=epochs, device=device, progress=progress, deadline=deadline,
                                           provenance=started_by)
    except DatasetUnavailableError as error:
        print(f"Skipped {stem}: {error}")
        record = {"provenance": provenance(seed=seeds[0], wall_time_s=time.perf_counter() - started, device=device),
                  "skipped": str(error), "model": model_name, "dataset": dataset, "estimator": estimator, "k": k,
                  "variant": variant, "seeds": seeds}
        (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
        return {"json": out / f"{stem}.json"}
    written = {"json": out / f"{stem}.json", "prototypes": out / f"{stem}.npz"}
    record = {"provenance": provenance(seed=seeds[0], wall_time_s=time.perf_counter() - started, device=device),
              "report": {**report, "float32_matmul_precision": torch.get_float32_matmul_precision()}}
    written["json"].write_text(json.dumps(record, indent=1) + "\n")
    prototypes = (model.prototypes().cpu().squeeze(2) * 255).round().to(torch.uint8).numpy()
    np.savez_compressed(written["prototypes"], prototypes=prototypes, seeds=np.asarray(seeds))
    if save_best:
        best = int(np.argmax(report["train"]["accuracy"]))
        payload = {**model_payload(model.replica(best).cpu()), "history": result.history,
                   "epoch": len(result.history), "wall_time_s": result.wall_time_s,
                   "train_config": {**report["settings"], "model": model_name, "dataset": dataset,
                                    "estimator": estimator, "k": k, "variant": variant, "seed": seeds[best],
                                    "seeds_trained_together": seeds, "provenance": started_by},
                   "metrics": {"train_accuracy": report["train"]["accuracy"][best],
                               "test_accuracy": report["test"]["accuracy"][best]}}
        written["best"] = save_checkpoint(out / f"{stem}-best.pt", payload)
    summary = ", ".join(f"{split} mean {np.mean(report[split]['accuracy']):.4f}" for split in ("train", "test"))
    print(f"{stem}: {report['epochs_done']} epochs, {summary}; wrote {', '.join(str(p) for p in written.values())}")
    return written


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
    """Group reports of :func:`train_dvae` by configuration and merge their seeds.

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
