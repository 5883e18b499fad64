"""Chapter 3 (discrete gradients): the toy experiments of seed 000 (their plots are in ``viz``).

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

:func:`toy_results` is everything ``results/estimators.json`` records about
the toys (the chapter's experiment, ``experiments.estimators``, writes it).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..estimators import Estimator, bernoulli_logits, exact_expectation, exact_gradient, make_estimator

ESTIMATOR_NAMES = ("reinforce", "nvil", "concrete", "rebar", "relax")
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
            losses.append(exact_expectation(logits, cost).cpu())
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


# --- what results/estimators.json records about the toys -------------------------------------------
HEADLINE = "categorical"
# Fixed parameters away from the symmetric starting point, where biases can cancel by symmetry.
FIXED_LOGITS = {"replication": [0.0, 1.0], "categorical": [0.2, -0.1, 0.5]}
TOY_RUNS = (("replication_t0.499", "replication", 0.499), ("replication_t0.501", "replication", 0.501),
            ("categorical", "categorical", None))
FIXED_FULL = {"tune_steps": 5000, "n_samples": 100_000}
FIXED_QUICK = {"tune_steps": 50, "n_samples": 5_000}


def fixed_parameter_benchmark(problem: str, *, tune_steps: int, n_samples: int, seed: int = 0,
                              progress: bool = True) -> dict:
    """Every estimator at ``FIXED_LOGITS[problem]``, its learned parts tuned first (the toys' fixed-parameter check)."""
    cost, _ = toy_problem(problem)
    logits = torch.tensor([FIXED_LOGITS[problem]])
    estimators = {}
    for name in ESTIMATOR_NAMES:
        torch.manual_seed(seed)
        estimator = make_estimator(name, logits.shape[-1], temperature=TEMPERATURE)
        tune_control_variate(estimator, logits, cost, steps=tune_steps)
        torch.manual_seed(seed + 1)
        stats = fixed_parameter_statistics(estimator, logits, cost, n_samples=n_samples)
        if name in ("rebar", "relax"):
            stats["learned_temperature"] = estimator.temperature[0].item()
            stats["learned_eta"] = estimator.eta[0].item()
        if name in ("nvil", "rebar", "relax"):
            baseline = estimator.baseline if name in ("rebar", "relax") else estimator
            stats["learned_baseline"] = (baseline.running_mean[0] + baseline.bias[0]).item()
        estimators[name] = stats
        if progress:
            print(f"{problem:12s} {name:10s} variance {stats['variance']:.3e}  bias_z {stats['bias_z']:6.2f}  "
                  f"{stats['seconds_per_estimate'] * 1e3:.2f} ms/estimate", flush=True)
    torch.manual_seed(seed)
    return {
        "logits": logits[0].tolist(),
        "expected_cost": float(exact_expectation(logits, cost)[0]),
        "estimators": estimators,
        "ordering_by_variance": sorted(estimators, key=lambda n: estimators[n]["variance"]),
        "concrete_bias_by_temperature": concrete_bias_by_temperature(logits, cost, n_samples=n_samples),
    }


def toy_results(*, quick: bool = False, seed: int = 0, device="cpu", tune_steps: int | None = None,
                n_samples: int | None = None, progress: bool = True) -> dict:
    """The toy keys of ``results/estimators.json``: fixed-parameter checks and the toy training curves."""
    fixed_settings = {**(FIXED_QUICK if quick else FIXED_FULL),
                      **{k: v for k, v in (("tune_steps", tune_steps), ("n_samples", n_samples)) if v is not None}}
    fixed = {problem: fixed_parameter_benchmark(problem, seed=seed, progress=progress, **fixed_settings)
             for problem in ("replication", "categorical")}
    toys = {}
    for label, problem, target in TOY_RUNS:
        started = time.perf_counter()
        toys[label] = {"problem": problem, "target": target if target is not None else [0.34, 0.33, 0.33],
                       "settings": {**(FULL[problem] if not quick else {}), "lr": LR, "temperature": TEMPERATURE},
                       "curves": toy_experiment(problem, quick=quick, seed=seed, device=device, target=target)}
        if progress:
            print(f"toy {label}: {time.perf_counter() - started:.0f} s", flush=True)
    headline = fixed[HEADLINE]["estimators"]
    return {
        "description": ("Gradient estimators for categorical variables at fixed parameters (the logits in "
                        "fixed_parameter; learned parts tuned first) and on seed 000's toy problems. "
                        "variance: summed over the K components of one single-sample estimate; bias_z: "
                        "largest |mean - exact| / standard error over the components."),
        "quick": quick,
        "headline_problem": HEADLINE,
        "variance": {n: s["variance"] for n, s in headline.items()},
        "bias_z": {n: s["bias_z"] for n, s in headline.items()},
        "seconds_per_estimate": {n: s["seconds_per_estimate"] for n, s in headline.items()},
        "tune_steps": fixed_settings["tune_steps"],
        "fixed_parameter": fixed,
        "toy_experiments": toys,
    }
