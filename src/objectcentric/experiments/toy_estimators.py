"""Chapter 3 (discrete gradients): the toy experiments of seed 000, their plots and the histogram widget.

Two problems, both minimising E_b[f(b)] over the logits of one categorical b:

- *replication* (the toy of the REBAR and RELAX papers): b ~ Bernoulli,
  f(b) = (b - t)² with t = 0.499 (or 0.501). The two outcomes' costs differ
  by only 0.002, so the gradient is tiny next to its noise;
- *categorical*: b one-hot with K = 3 classes, f(b) = |b - t|² with
  t = [0.34, 0.33, 0.33].

Adam with learning rate 0.01 and a relaxation temperature of 0.66, as in seed
000. Repetitions run side by side in one batch: each has its own logits and
its own copy of the estimator's learned parts (``n_groups``), and Adam
updates every element from its own gradient, so they stay independent.
The loss recorded is the exact expectation E_b[f(b)] at the current logits
(K terms), not a noisy sample; the variance is measured every
``variance_every`` steps from ``variance_samples`` fresh estimates per
repetition at the current parameters.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch

from ..estimators import Estimator, bernoulli_logits, exact_gradient, make_estimator

ESTIMATOR_NAMES = ("reinforce", "nvil", "concrete", "rebar", "relax")
COLORS = {"exact": "black", "reinforce": "tab:red", "nvil": "tab:orange", "concrete": "tab:green",
          "rebar": "tab:blue", "relax": "tab:purple"}
LR, TEMPERATURE = 0.01, 0.66
FULL = {
    "replication": {"steps": 10_000, "repetitions": 50, "variance_every": 100, "variance_samples": 200},
    "categorical": {"steps": 5_000, "repetitions": 50, "variance_every": 50, "variance_samples": 200},
}
QUICK = {
    "replication": {"steps": 300, "repetitions": 4, "variance_every": 50, "variance_samples": 100},
    "categorical": {"steps": 300, "repetitions": 4, "variance_every": 50, "variance_samples": 100},
}


# --- the two problems ---------------------------------------------------------------------
class ReplicationCost:
    """f(b) = (b - t)² for a Bernoulli b, read as column 1 of a 2-class (one-hot or relaxed) sample."""

    def __init__(self, target: float = 0.499):
        self.target = float(target)

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        return (b[:, 1] - self.target) ** 2


class CategoricalCost:
    """f(b) = |b - t|², summed over the K classes."""

    def __init__(self, target=(0.34, 0.33, 0.33)):
        self.target = torch.as_tensor(target, dtype=torch.float32)

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        return ((b - self.target.to(b)) ** 2).sum(-1)


def toy_problem(name: str, target=None):
    """``(cost, initial_logits (K,))`` of problem ``"replication"`` or ``"categorical"``; uniform start."""
    if name == "replication":
        return ReplicationCost(0.499 if target is None else target), bernoulli_logits(torch.zeros(1))[0]
    if name == "categorical":
        cost = CategoricalCost((0.34, 0.33, 0.33) if target is None else target)
        return cost, torch.zeros(len(cost.target))
    raise ValueError(f"unknown toy problem {name!r}: choose 'replication' or 'categorical'")


def expected_cost(logits: torch.Tensor, cost) -> torch.Tensor:
    """E_b[f(b)] for every row of ``logits`` (R, K), exactly: Σ_k p_k f(e_k)."""
    k = logits.shape[-1]
    corners = cost(torch.eye(k, dtype=logits.dtype, device=logits.device))  # (K,)
    return logits.softmax(-1) @ corners


def gradient_variance(estimator: Estimator, logits: torch.Tensor, cost, n_samples: int) -> torch.Tensor:
    """Variance of one gradient estimate, summed over the K components, per row of ``logits`` (R, K)."""
    r, k = logits.shape
    group = torch.arange(r, device=logits.device).repeat_interleave(n_samples)
    if estimator.n_groups == 1:
        group = torch.zeros_like(group)
    samples = estimator.gradient_samples(logits.detach().repeat_interleave(n_samples, 0), cost, group=group)
    return samples.view(r, n_samples, k).var(1).sum(-1)


# --- one training run, vectorised over repetitions ------------------------------------------
def run_toy(estimator_name: str, problem: str = "replication", *, steps: int, repetitions: int,
            variance_every: int, variance_samples: int, lr: float = LR, temperature: float = TEMPERATURE,
            target=None, seed: int = 0, device="cpu") -> dict:
    """Minimise E_b[f(b)] with one estimator, ``repetitions`` runs in parallel.

    Returns numpy arrays: ``loss`` (steps + 1, R), the exact expected cost
    before each step and after the last; ``variance_steps`` (n,) and
    ``log_variance`` (n, R), the log of the estimator's variance there (empty
    for ``exact``); and ``seconds``, the wall time of the run.
    """
    torch.manual_seed(seed)
    cost, start = toy_problem(problem, target)
    k = start.numel()
    logits = torch.nn.Parameter(start.to(device).repeat(repetitions, 1))
    estimator = make_estimator(estimator_name, k, temperature=temperature, n_groups=repetitions).to(device)
    optimizer = torch.optim.Adam([logits, *estimator.parameters()], lr=lr)
    group = torch.arange(repetitions, device=device)
    losses, variance_steps, log_variances = [], [], []
    started = time.perf_counter()
    for step in range(steps + 1):
        with torch.no_grad():
            losses.append(expected_cost(logits, cost).cpu())
        if estimator_name != "exact" and step % variance_every == 0:
            variance_steps.append(step)
            # floored at 1e-30: once p saturates to exactly 0 or 1 in float32 every estimate is 0
            variance = gradient_variance(estimator, logits, cost, variance_samples)
            log_variances.append(variance.clamp_min(1e-30).log().cpu())
        if step == steps:
            break
        out = estimator(logits, cost, group=group)
        # A sum over independent repetitions; each copy of the learned parts sees its own rows.
        loss = out.surrogate.sum() + repetitions * out.control_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {
        "loss": torch.stack(losses).numpy(),
        "variance_steps": np.asarray(variance_steps, dtype=int),
        "log_variance": torch.stack(log_variances).numpy() if log_variances else np.zeros((0, repetitions)),
        "seconds": time.perf_counter() - started,
    }


def summarize(run: dict, n_points: int = 61) -> dict:
    """Mean and standard deviation over repetitions, at most ``n_points`` steps: small enough for JSON."""
    loss = run["loss"]
    index = np.unique(np.linspace(0, len(loss) - 1, n_points).round().astype(int))

    def rounded(a):
        return [float(f"{v:.6g}") for v in a]

    summary = {
        "steps": index.tolist(),
        "loss_mean": rounded(loss[index].mean(1)),
        "loss_std": rounded(loss[index].std(1)),
        "final_loss_mean": float(f"{loss[-1].mean():.6g}"),
        "seconds": round(run["seconds"], 2),
    }
    if len(run["variance_steps"]):
        keep = np.unique(np.linspace(0, len(run["variance_steps"]) - 1, n_points).round().astype(int))
        lv = run["log_variance"][keep]
        summary.update({"variance_steps": run["variance_steps"][keep].tolist(),
                        "log_variance_mean": rounded(lv.mean(1)), "log_variance_std": rounded(lv.std(1))})
    return summary


def toy_experiment(problem: str, names=("exact", *ESTIMATOR_NAMES), quick: bool = False, seed: int = 0,
                   device="cpu", target=None, **overrides) -> dict:
    """Run every estimator on one problem at full (or quick) settings; returns ``{name: summary}``."""
    settings = {**(QUICK if quick else FULL)[problem], **overrides}
    return {name: summarize(run_toy(name, problem, seed=seed, device=device, target=target, **settings))
            for name in names}


# --- at a fixed parameter -------------------------------------------------------------------
def tune_control_variate(estimator: Estimator, logits: torch.Tensor, cost, steps: int = 1000,
                         batch: int = 256, lr: float = LR) -> Estimator:
    """Train only the estimator's learned parts at fixed ``logits`` (1, K), by their control loss."""
    parameters = [p for p in estimator.parameters() if p.requires_grad]
    if not parameters:
        return estimator
    optimizer = torch.optim.Adam(parameters, lr=lr)
    estimator.train()
    for _ in range(steps):
        rows = logits.detach().expand(batch, -1).clone().requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        estimator(rows, cost).control_loss.backward()
        optimizer.step()
    return estimator


def fixed_parameter_statistics(estimator: Estimator, logits: torch.Tensor, cost, n_samples: int = 100_000,
                               timing_calls: int = 100) -> dict:
    """Variance, bias and its z-score, and time per estimate at fixed ``logits`` (1, K).

    ``variance`` sums the K components' variances of one estimate; ``bias_z``
    is the largest |mean - exact| / standard error over the components.
    ``seconds_per_estimate`` is the median time of one training call (one
    sample, forward, backward and the control-variate update's gradient);
    ``seconds_per_sample_batched`` the time per sample when 10,000 are drawn
    in one batch.
    """
    exact = exact_gradient(logits, cost)[0]
    samples = estimator.gradient_samples(logits.expand(n_samples, -1), cost)
    mean, variance = samples.mean(0), samples.var(0)
    standard_error = (variance / n_samples).sqrt()
    bias = mean - exact
    times = []
    for _ in range(timing_calls):
        row = logits.detach().clone().requires_grad_(True)
        start = time.perf_counter()
        estimator.train()
        estimator(row, cost).loss().backward()
        times.append(time.perf_counter() - start)
    estimator.zero_grad(set_to_none=True)
    start = time.perf_counter()
    estimator.gradient_samples(logits.expand(10_000, -1), cost)
    batched = (time.perf_counter() - start) / 10_000
    return {
        "variance": float(variance.sum()),
        "log_variance": float(variance.sum().log()),
        "mean": mean.tolist(),
        "exact": exact.tolist(),
        "bias": bias.tolist(),
        "bias_z": float((bias.abs() / standard_error.clamp_min(1e-30)).max()),
        "seconds_per_estimate": float(np.median(times)),
        "seconds_per_sample_batched": batched,
        "n_samples": n_samples,
    }


def concrete_bias_by_temperature(logits: torch.Tensor, cost, temperatures=(1.0, 0.66, 0.5, 0.25, 0.1, 0.05),
                                 n_samples: int = 200_000) -> list[dict]:
    """CONCRETE's bias |E ĝ - ∇| and variance at each temperature, at fixed ``logits`` (1, K)."""
    exact = exact_gradient(logits, cost)[0]
    rows = []
    for temperature in temperatures:
        samples = make_estimator("concrete", logits.shape[-1], temperature=temperature).gradient_samples(
            logits.expand(n_samples, -1), cost)
        rows.append({"temperature": temperature,
                     "bias_norm": float((samples.mean(0) - exact).norm()),
                     "standard_error_norm": float((samples.var(0) / n_samples).sqrt().norm()),
                     "variance": float(samples.var(0).sum())})
    return rows


# --- plots ------------------------------------------------------------------------------------
def plot_curves(results: dict, title: str = "", axes=None):
    """Loss and log-variance over steps, one line per estimator: mean over repetitions ± one std."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    loss_ax, var_ax = axes
    for name, s in results.items():
        color = COLORS.get(name)
        steps, mean, std = np.asarray(s["steps"]), np.asarray(s["loss_mean"]), np.asarray(s["loss_std"])
        loss_ax.plot(steps, mean, color=color, label=name, lw=1.5 if name != "exact" else 1, ls="-" if name != "exact" else "--")
        loss_ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        if "variance_steps" in s:
            steps, mean, std = (np.asarray(s[k]) for k in ("variance_steps", "log_variance_mean", "log_variance_std"))
            var_ax.plot(steps, mean, color=color, label=name)
            var_ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    loss_ax.set(xlabel="step", ylabel="E[f(b)] (exact)", title=f"{title}: loss")
    var_ax.set(xlabel="step", ylabel="log variance of one estimate", title=f"{title}: gradient variance")
    loss_ax.legend(fontsize=8)
    var_ax.legend(fontsize=8)
    return axes


def histogram_png(samples: np.ndarray, exact: float, title: str, xlim=None, bins: int = 40) -> bytes:
    """A small PNG: histogram of 1-d gradient estimates, their mean, and the exact gradient.

    Saved with a 64-colour palette: a widget's frames all go into the page, so each
    one is kept to a few kB.
    """
    from matplotlib.figure import Figure  # no pyplot: the frame is never shown on its own
    from PIL import Image

    fig = Figure(figsize=(5.6, 2.6), dpi=72)
    ax = fig.subplots()
    ax.hist(samples, bins=bins, range=xlim, color="tab:gray")
    ax.axvline(exact, color="black", ls="--", label=f"exact {exact:.3g}")
    ax.axvline(samples.mean(), color="tab:red", label=f"mean of {len(samples)}: {samples.mean():.3g}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("estimate of d E[f] / d logit", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    if xlim is not None:
        ax.set_xlim(*xlim)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=64)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


# --- beyond the toy: a discrete VAE on MNIST ----------------------------------------------------
VAE_FULL = {"epochs": 15, "batch_size": 100, "lr": 1e-3, "n_train": None, "n_val": 2000}
VAE_CHECKPOINT = "categorical_vae_k10.pt"  # the shipped model (best run of benchmarks/estimators.py vae)
VAE_QUICK = {"epochs": 2, "batch_size": 100, "lr": 1e-3, "n_train": 500, "n_val": 200}


def train_categorical_vae(estimator: str, *, quick: bool = False, epochs: int | None = None,
                          n_train: int | None = None, checkpoint=None, seed: int = 0, device=None,
                          progress: str = "auto"):
    """Train a ``CategoricalVAE`` (K = 10) on dynamically binarized MNIST with one estimator, via ``fit``.

    The held-out number, ``val_exact_neg_elbo``, sums over all 10 classes, so it
    compares estimators fairly (CONCRETE's training loss is a relaxed one).
    Returns the model and ``fit``'s result.
    """
    from torch.utils.data import TensorDataset

    from ..data import load_mnist
    from ..data.binarize import stochastic_binarize
    from ..models.categorical_vae import CategoricalVAE
    from ..train import fit
    from .vae import validation_set

    settings = dict(VAE_QUICK if quick else VAE_FULL)
    settings.update({k: v for k, v in (("epochs", epochs), ("n_train", n_train)) if v is not None})
    images, _ = load_mnist("train")
    if settings["n_train"]:
        images = images[: settings["n_train"]]
    held_out = validation_set(settings["n_val"])
    torch.manual_seed(seed)
    model = CategoricalVAE(num_classes=10, estimator=estimator, temperature=TEMPERATURE)

    def step(model, batch):
        return model.loss(stochastic_binarize(batch[0]))

    def evaluate(model):
        x = held_out.to(next(model.parameters()).device)
        return {"exact_neg_elbo": float(model.exact_neg_elbo(x).mean())}

    result = fit(model, TensorDataset(images), step, epochs=settings["epochs"], batch_size=settings["batch_size"],
                 lr=settings["lr"], evaluate=evaluate, checkpoint=checkpoint, seed=seed, device=device,
                 progress=progress, train_config={**settings, "estimator": estimator, "quick": quick})
    return model, result


VAE_VARIANCE_FULL = {"tune_steps": 2000, "n_images": 100, "n_samples": 1000}
VAE_VARIANCE_QUICK = {"tune_steps": 20, "n_images": 8, "n_samples": 50}


def vae_gradient_statistics(model, names=ESTIMATOR_NAMES, *, quick: bool = False, seed: int = 0,
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
    from ..data import load_mnist
    from ..data.binarize import stochastic_binarize
    from .vae import validation_set

    settings = VAE_VARIANCE_QUICK if quick else VAE_VARIANCE_FULL
    device = next(model.parameters()).device
    model.requires_grad_(False)
    train_images, _ = load_mnist("train")
    x = validation_set(settings["n_images"]).to(device)
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


def load_categorical_vae():
    """The shipped discrete VAE (``VAE_CHECKPOINT``) and its manifest entry; ``CheckpointError`` if absent.

    The model is rebuilt from the settings stored in the checkpoint (its
    estimator included) and its sha256 checked against the manifest.
    """
    from .. import checkpoints
    from ..models.categorical_vae import CategoricalVAE

    path = checkpoints.checkpoint_dir() / VAE_CHECKPOINT
    model = CategoricalVAE(**checkpoints.read_checkpoint(path)["model_config"])
    checkpoints.load_shipped(VAE_CHECKPOINT, model, path.parent)
    return model.eval(), checkpoints.read_manifest(path.parent)["checkpoints"][VAE_CHECKPOINT]
