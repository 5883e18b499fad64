"""Chapter 4 (spatial transformer): the recipe, and the experiment behind ``results/spatial_transformer.json``.

A spatial transformer network (Jaderberg et al., 2015) and the same
classifier without it, widened to the same number of parameters, trained on
distorted MNIST (42 x 42 canvases, digits rotated by up to 45 degrees, scaled
by 0.7 to 1.2 and shifted; :mod:`objectcentric.data.distorted_mnist`).

Full settings: Adam from 1e-3 down to 1e-4 on a cosine schedule over 5
epochs of 55,000 canvases, batches of 100, validation on 5,000 canvases of
MNIST's held-out training digits. They are sized for one CPU thread (both
models in about a quarter of an hour); on a GPU the same recipe trains in a
minute or two. The recorded experiment trains one seed of each model: its
numbers are single runs, not means over seeds. It reports the test accuracy
of both on the 10,000 distorted test canvases, their parameter counts and
validation curves, how well the learned windows undo the distortion, and
ships the spatial transformer network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from ..data.distorted_mnist import VAL_SIZE, DistortedMNIST, distorted_mnist
from ..models.stn import MODELS, STN, build_model, count_parameters
from ..recipes import Recipe, RecipeError, register
from ..runner import Experiment, Job, Outputs, done_records, load_run, register_experiment
from ..spatial import compose_affine, invert_affine

TRAIN_SIZE = 60_000 - VAL_SIZE
RESULTS = "spatial_transformer"


@register
@dataclass(frozen=True)
class STNRecipe(Recipe):
    """Chapter 4's spatial transformer network (or its baseline) on distorted MNIST."""

    name = "stn"
    chapter = "4"
    QUICK = {"epochs": 2, "n_train": 500, "n_val": 200}
    CHOICES = {"model": MODELS}
    HELP = {"model": "the spatial transformer network, or the same classifier without it at equal size",
            "final_lr": "learning rate at the end of the cosine schedule",
            "n_train": f"training canvases (of {TRAIN_SIZE:,} from MNIST's training digits)",
            "n_val": f"validation canvases watched after every epoch (of {VAL_SIZE:,} held-out training digits)",
            "data_seed": "the seed of the distortions (every split has its own stream)"}

    model: str = "stn"
    epochs: int = 5
    batch_size: int = 100
    lr: float = 1e-3
    final_lr: float = 1e-4
    n_train: int = TRAIN_SIZE
    n_val: int = VAL_SIZE
    data_seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        for field, most in (("n_train", TRAIN_SIZE), ("n_val", VAL_SIZE)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise RecipeError(f"{field} must be a whole number from 1 to {most:,}, got {value!r}")
        if not 0 < self.final_lr <= self.lr:
            raise RecipeError(f"final_lr must be positive and at most lr ({self.lr:g}), got {self.final_lr!r}")

    def build_model(self) -> STN:
        return build_model(self.model)

    def train_data(self) -> TensorDataset:
        data = distorted_mnist("train", n=self.n_train, seed=self.data_seed)
        return TensorDataset(data.images, data.labels)

    def step(self, model: STN, batch: tuple) -> dict[str, torch.Tensor]:
        return model.loss(*batch)

    def scheduler(self, optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs, eta_min=self.final_lr)

    def evaluator(self):
        data = distorted_mnist("val", n=self.n_val, seed=self.data_seed)
        return lambda model: evaluate(model, data)

    def shipped_name(self, seed: int = 0) -> str | None:
        return "stn_distorted_mnist.pt" if self.model == "stn" else None


@torch.no_grad()
def evaluate(model: STN, data: DistortedMNIST, batch_size: int = 500) -> dict[str, float]:
    """Mean cross-entropy ("loss") and accuracy of ``model`` on every canvas of ``data``."""
    device = next(model.parameters()).device
    sums = {"loss": 0.0, "accuracy": 0.0}
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device)
        labels = data.labels[start : start + batch_size].to(device)
        for name, value in model.loss(images, labels).items():
            sums[name] += float(value) * len(labels)
    return {name: total / len(data) for name, total in sums.items()}


def pose_of(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation (radians) and size (square root of the area ratio) of each affine map (B, 2, 3)."""
    a = theta[:, :, :2]
    return torch.atan2(a[:, 1, 0] - a[:, 0, 1], a[:, 0, 0] + a[:, 1, 1]), torch.linalg.det(a).abs().sqrt()


@torch.no_grad()
def window_alignment(model: STN, data: DistortedMNIST, batch_size: int = 500) -> dict[str, float]:
    """How much of the distortion the learned windows undo, on the canvases of ``data``.

    The crop's pose in the upright digit's own frame is
    ``residual = true^-1 ∘ learned``: a window that undoes the distortion
    exactly gives the same residual for every canvas (whatever fixed pose the
    classifier prefers). So the spread of the residual's rotation and
    log-size across canvases, against the spread of the distortion's own, says
    how much of the distortion is left in the crops; the mean distance of the
    crop's centre from the digit's centre (in the canvas's normalised
    coordinates) says how well the windows find the digit.
    """
    device = next(model.parameters()).device
    learned = torch.cat([model.window(data.images[s : s + batch_size].to(device)).cpu()
                         for s in range(0, len(data), batch_size)])
    residual = compose_affine(invert_affine(data.theta), learned)
    angle, size = pose_of(residual)
    true_angle, true_size = pose_of(data.theta)
    # The circular spread of the residual rotation, so that angles near +-180 degrees do not inflate it.
    mean_angle = torch.atan2(angle.sin().mean(), angle.cos().mean())
    spread = torch.atan2((angle - mean_angle).sin(), (angle - mean_angle).cos())
    return {"residual_rotation_std_deg": round(math.degrees(float(spread.std())), 2),
            "distortion_rotation_std_deg": round(math.degrees(float(true_angle.std())), 2),
            "residual_log_scale_std": round(float(size.log().std()), 4),
            "distortion_log_scale_std": round(float(true_size.log().std()), 4),
            "mean_residual_rotation_deg": round(math.degrees(float(mean_angle)), 2),
            "mean_centre_error": round(float((learned[:, :, 2] - data.theta[:, :, 2]).norm(dim=-1).mean()), 4)}


# --- the recorded experiment: results/spatial_transformer.json --------------------------------------
def _jobs(scale: str) -> list[Job]:
    return [Job(STNRecipe(model=model).at_scale(scale), seed=0) for model in MODELS]


def _curves(history: list[dict]) -> dict[str, list]:
    keys = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
    return {k: [round(r[k], 5) if isinstance(r[k], float) else r[k] for r in history] for k in keys}


def _collect(records: dict[str, dict], out: Outputs) -> None:
    from .. import records as rec

    started = time.perf_counter()
    done = done_records(records)
    if len(done) < len(records):
        missing = sorted(set(records) - set(done))
        print(f"spatial_transformer: runs not done ({', '.join(missing)}): no results written")
        return
    quick = out.scale == "quick"
    test = distorted_mnist("test", n=1000 if quick else None)
    body: dict = {"parameters": {}, "validation_curves": {}, "training_wall_time_s": {}, "training": {}}
    for key, record in done.items():
        recipe, model, payload = load_run(out.runs / key)
        body[f"{recipe.model}_test_accuracy"] = round(evaluate(model, test)["accuracy"], 4)
        body["parameters"][recipe.model] = count_parameters(model)
        body["validation_curves"][recipe.model] = _curves(payload["history"])
        body["training_wall_time_s"][recipe.model] = record.get("wall_time_s")
        body["training"][recipe.model] = {"settings": recipe.changed(), "epochs": recipe.epochs,
                                          "device": record.get("device"), "run": key}
        if recipe.shipped_name() is not None:
            entry = rec.ship(out.runs / key, checkpoints=out.checkpoints)
            body["checkpoint"] = f"checkpoints/{entry['file']}"
            body["checkpoint_sha256"] = entry["sha256"]
            body["window_alignment"] = window_alignment(model, test)
    body.update({"n_test_canvases": len(test), "seeds": 1,
                 "protocol": ("one seed per model; accuracy on MNIST's test digits as distorted MNIST "
                              "(42 x 42 canvases, rotation uniform in +-45 degrees, scale 0.7-1.2, shifted "
                              "inside the canvas; data seed 0); validation curves on 5,000 canvases of "
                              "MNIST's last 5,000 training digits, never trained on")})
    rec.write_results(RESULTS, body, directory=out.results,
                      provenance=rec.provenance(seed=0, wall_time_s=time.perf_counter() - started, scale=out.scale))


register_experiment(Experiment(chapter="spatial_transformer", title="Chapter 4: the spatial transformer",
                               jobs=_jobs, collect=_collect))
