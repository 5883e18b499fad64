"""Chapter 3 (discrete gradients): the checks, figures and tables the chapter shows.

The estimators live in :mod:`objectcentric.estimators`, the toy problems and
their experiments in :mod:`objectcentric.experiments.toy_estimators`, the
discrete VAE's experiment in :mod:`objectcentric.experiments.estimators`.
This module only turns what a cell computed, or read from
``results/estimators.json``, into something a reader looks at.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import book
from ..estimators import REBAR, exact_expectation, exact_gradient, make_estimator
from ..experiments import toy_estimators as toy
from ..viz import ESTIMATOR_COLORS, histogram_png

# The estimators' names as the text writes them.
NAMES = {"exact": "exact gradient", "reinforce": "REINFORCE", "nvil": "NVIL",
         "concrete": "CONCRETE", "rebar": "REBAR", "relax": "RELAX"}
# The recorded toy runs, in words.
TOY_TITLES = {"replication_t0.499": "Bernoulli toy, t = 0.499",
              "replication_t0.501": "Bernoulli toy, t = 0.501",
              "categorical": "categorical toy, K = 3"}


def name_of(key: str) -> str:
    """An estimator's key (``"rebar"``) -> its name in the text (``"REBAR"``)."""
    return NAMES.get(key, key)


# --- at fixed parameters ---------------------------------------------------------------------
def problem_table(logits: torch.Tensor, cost):
    """The categorical toy at ``logits`` (1, K): each class's probability, cost and exact gradient."""
    p = logits.softmax(-1)[0]
    costs = cost(torch.eye(logits.shape[-1]))
    gradient = exact_gradient(logits, cost)[0]
    rows = [[f"class {k + 1}", float(p[k]), float(costs[k]), float(gradient[k])]
            for k in range(logits.shape[-1])]
    return book.table(rows, ["", "p(b = k)", "f(e_k)", "exact dE[f]/dθ_k"],
                      caption="The categorical toy at the fixed logits θ = "
                              f"{[round(v, 2) for v in logits[0].tolist()]}",
                      notes=f"E[f] = {book.fmt(float(exact_expectation(logits, cost)))}.")


def check(estimator, logits: torch.Tensor, cost, n: int, label: str | None = None, **kwargs) -> torch.Tensor:
    """Draw ``n`` single-sample estimates at fixed ``logits`` (1, K); display their mean against the
    exact gradient as a table (captioned with ``label``, default the estimator's name); return the
    estimates (n, K)."""
    from IPython.display import display

    torch.manual_seed(0)
    samples = estimator.gradient_samples(logits.expand(n, -1), cost, **kwargs)
    truth = exact_gradient(logits, cost)[0]
    mean, error = samples.mean(0), samples.std(0) / n**0.5
    rows = [[f"θ_{k + 1}", float(mean[k]), float(truth[k]), float((mean[k] - truth[k]) / error[k])]
            for k in range(len(truth))]
    display(book.table(
        rows, ["", f"mean of {n:,} estimates", "exact gradient", "z-score"],
        caption=f"{label or name_of(estimator.name)}: one-sample estimates at fixed logits",
        notes=f"Variance of one estimate, summed over the logits: {book.fmt(float(samples.var(0).sum()))}. "
              "z-score: (mean − exact) / standard error of the mean; an unbiased estimator "
              "stays within about ±3."))
    return samples


def plot_concrete_bias(rows: list[dict], exact_norm: float):
    """CONCRETE's |bias| (± 3 standard errors) and variance against the temperature, on log axes.

    ``rows`` as ``toy_estimators.concrete_bias_by_temperature`` returns them;
    ``exact_norm`` is the length of the exact gradient, drawn for scale.
    """
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    temperatures = [r["temperature"] for r in rows]
    ax.errorbar(temperatures, [r["bias_norm"] for r in rows],
                yerr=[3 * r["standard_error_norm"] for r in rows], marker="o", label="|bias| (± 3 s.e.)")
    ax.plot(temperatures, [r["variance"] for r in rows], "s--", label="variance")
    ax.axhline(exact_norm, color="black", lw=0.8, ls=":", label="|exact gradient|")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("size of the bias; variance")
    ax.legend()
    return fig


def plot_conditional_gumbel(z: torch.Tensor, z_tilde: torch.Tensor):
    """Histograms of the first coordinate of z and of z̃ drawn given b: the same distribution."""
    fig, ax = plt.subplots(figsize=(6, 2.8), layout="constrained")
    ax.hist(z[:, 0].numpy(), bins=80, range=(-4, 6), histtype="step", density=True, label="$z_1$")
    ax.hist(z_tilde[:, 0].numpy(), bins=80, range=(-4, 6), histtype="step", density=True,
            label=r"$\tilde z_1$, drawn given $b$")
    ax.set_xlabel("value of the first coordinate")
    ax.set_ylabel("density")
    ax.legend()
    return fig


def rebar_variance_by_eta(logits: torch.Tensor, cost, etas, n: int, baselines: dict,
                          temperature: float = 0.66) -> dict:
    """REBAR's variance (summed over the logits) at fixed ``logits`` for each η, per baseline.

    ``baselines`` maps a label to the constant baseline c₀ it uses (0: none);
    returns ``{label: [variance per η]}``.
    """
    scan = {}
    for label, offset in baselines.items():
        scan[label] = []
        for eta in etas:
            estimator = REBAR(temperature=temperature, eta=float(eta))
            with torch.no_grad():
                estimator.baseline.bias.fill_(offset)  # untrained: its running mean stays 0
            torch.manual_seed(0)
            samples = estimator.gradient_samples(logits.expand(n, -1), cost)
            scan[label].append(float(samples.var(0).sum()))
    return scan


def plot_eta_scan(etas, scan: dict, references: dict):
    """REBAR's variance against η (one line per baseline) next to ``references`` {estimator: variance}."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
    for label, variances in scan.items():
        ax.plot(etas, variances, "o-", label=f"REBAR, λ = 0.66, {label}")
    for key, value in references.items():
        ax.axhline(value, color=ESTIMATOR_COLORS[key], ls="--", label=name_of(key))
    ax.set_yscale("log")
    ax.set_xlabel("η, the weight of the relaxed cost")
    ax.set_ylabel("variance of one estimate")
    ax.legend(fontsize=8.5)
    return fig


def fixed_parameter_table(problem: str, block: dict):
    """One toy's recorded fixed-parameter measurements (``results["fixed_parameter"][problem]``)."""
    rows = {name_of(name): [s["variance"], s["bias_z"], s["seconds_per_estimate"] * 1e3]
            for name, s in block["estimators"].items()}
    title = {"replication": "Bernoulli toy", "categorical": "categorical toy"}.get(problem, problem)
    logits = ", ".join(book.fmt(v, 2) for v in block["logits"])
    order = " < ".join(name_of(n) for n in block["ordering_by_variance"])
    some = next(iter(block["estimators"].values()))
    return book.table(rows, ["variance of one estimate", "bias (z-score)", "time per estimate (ms)"],
                      caption=f"{title} at fixed logits ({logits}): {some['n_samples']:,} estimates each",
                      index_name="estimator", notes=f"Lowest variance first: {order}.")


# --- the toy experiments ---------------------------------------------------------------------
def plot_toy(curves: dict, name: str):
    """One recorded (or freshly run) toy experiment: expected cost and log-variance over the steps."""
    from ..viz import plot_curves

    loss_ax, _ = plot_curves(curves[name], title=TOY_TITLES.get(name, name))
    for line in loss_ax.get_lines():  # plot_curves labels each line with its estimator's key
        line.set_label(name_of(line.get_label()))
    loss_ax.legend(fontsize=8.5)
    if name.startswith("replication"):
        loss_ax.set_ylim(0.2488, 0.2502)
    return loss_ax.figure


def final_loss_table(curves: dict, repetitions: dict):
    """Each estimator's final exact E[f], mean over repetitions, on every toy (rows: estimators)."""
    problems = list(curves)
    names = list(next(iter(curves.values())))
    rows = {name_of(n): [book.fmt(curves[p][n]["final_loss_mean"], 6) if n in curves[p] else None
                         for p in problems] for n in names}
    return book.table(rows, [TOY_TITLES.get(p, p) for p in problems], index_name="estimator",
                      caption="Expected cost E[f(b)] at the end of training, mean over repetitions",
                      notes="Repetitions per toy: " + ", ".join(
                          f"{TOY_TITLES.get(p, p)} {repetitions.get(p, '–')}" for p in problems) + ".")


def plot_wrong_choice(curves: dict, name: str = "replication_t0.499"):
    """The probability of the costlier outcome over training on a Bernoulli toy, per estimator.

    E[f] = P(worse) f_max + (1 − P(worse)) f_min, so P(worse) is read off the
    recorded expected cost exactly: (E[f] − f_min) / (f_max − f_min).
    """
    t = float(name.split("_t")[1])
    f = sorted([t**2, (1 - t) ** 2])
    fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
    for key, s in curves[name].items():
        mean = (np.asarray(s["loss_mean"]) - f[0]) / (f[1] - f[0])
        ax.plot(s["steps"], mean, color=ESTIMATOR_COLORS.get(key), ls="--" if key == "exact" else "-",
                label=name_of(key))
    ax.set_ylim(-0.02, 0.62)
    ax.set_xlabel("step")
    ax.set_ylabel("P(the costlier outcome)")
    ax.set_title(TOY_TITLES.get(name, name))
    ax.legend(ncol=2)
    return fig


# --- the widget's frames ---------------------------------------------------------------------
def estimate_frames(names, temperatures, sizes, draws, cost, logits: torch.Tensor, tune_steps: int):
    """Histograms of single-sample estimates on a Bernoulli toy, for :func:`widgets.choice_widget`.

    For each estimator key in ``names`` (and each temperature, for the relaxed
    ones, whose λ is held fixed while their other learned parts are tuned for
    ``tune_steps`` steps at ``logits`` (1, 2)), ``len(draws)`` independent
    draws of ``max(sizes)`` estimates of dE[f]/dθ. Returns ``(frames, exact)``:
    ``frames[(name, temperature, n, draw)]`` is the PNG of the first ``n``
    estimates of that draw (estimators without a temperature share one
    frame across temperatures), ``exact`` the exact gradient. Runs on one
    thread: its tensors are tiny, and a second thread only waits, the more so
    on a busy machine (here 3.6 s against 8.2 s for the same tuning).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _estimate_frames(names, temperatures, sizes, draws, cost, logits, tune_steps)
    finally:
        torch.set_num_threads(threads)


def _estimate_frames(names, temperatures, sizes, draws, cost, logits, tune_steps):
    truth = float(exact_gradient(logits, cost)[0, 1])
    frames = {}
    for key in names:
        relaxed = key in ("concrete", "rebar", "relax")
        samples = {}
        for t in temperatures if relaxed else (None,):
            torch.manual_seed(0)
            estimator = make_estimator(key, 2, temperature=t or toy.TEMPERATURE)
            if key in ("rebar", "relax"):
                estimator.log_temperature.requires_grad_(False)
            toy.tune_control_variate(estimator, logits, cost, steps=tune_steps)
            for d in draws:
                torch.manual_seed(1000 + d)
                rows = logits.expand(max(sizes), 2)
                samples[(t, d)] = estimator.gradient_samples(rows, cost)[:, 1].numpy()
        low, high = np.quantile(np.concatenate(list(samples.values())), [0.005, 0.995])
        xlim = (min(low, truth) - 1e-3, max(high, truth) + 1e-3)
        for (t, d), estimates in samples.items():
            label = f"{name_of(key)}, τ = {t:g}" if t is not None else f"{name_of(key)} (has no temperature)"
            for n in sizes:
                png = histogram_png(estimates[:n], truth, f"{label}: draw {d}, {n:,} estimates", xlim)
                for shown in temperatures if t is None else (t,):
                    frames[(name_of(key), shown, n, d)] = png
    return frames, truth


# --- the discrete VAE ------------------------------------------------------------------------
def plot_vae_curves(histories: dict):
    """Training −ELBO and held-out exact −ELBO per epoch, one thin line per seed and estimator.

    ``histories`` is ``{estimator key: [history of each seed]}``, each history a
    list of epoch records with ``neg_elbo`` and ``val_exact_neg_elbo``.
    """
    fig, (train_ax, val_ax) = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True, layout="constrained")
    for key, runs in histories.items():
        style = dict(color=ESTIMATOR_COLORS[key], ls="--" if key == "exact" else "-", lw=1, alpha=0.85)
        for i, history in enumerate(runs):
            epochs = [r["epoch"] for r in history]
            label = name_of(key) if i == 0 else None
            train_ax.plot(epochs, [r["neg_elbo"] for r in history], label=label, **style)
            val_ax.plot(epochs, [r["val_exact_neg_elbo"] for r in history], label=label, **style)
    train_ax.set(xlabel="epoch", ylabel="nats per image", title="Training −ELBO, sampled class")
    val_ax.set(xlabel="epoch", title="Held-out −ELBO, exact over classes")
    val_ax.legend(fontsize=8.5)
    return fig


def vae_table(histories: dict, seeds, caption: str):
    """Each estimator's final validation exact −ELBO: mean, 95 % interval of the mean, spread, per seed."""
    from objectcentric.experiments.estimators import mean_interval

    rows = {}
    for key, runs in histories.items():
        finals = [h[-1]["val_exact_neg_elbo"] for h in runs]
        spread = float(np.std(finals, ddof=1)) if len(finals) > 1 else None
        interval = mean_interval(finals)
        between = f"{book.fmt(interval[0], 4)} to {book.fmt(interval[1], 4)}" if interval else "–"
        rows[name_of(key)] = [book.fmt(float(np.mean(finals)), 4), between, book.fmt(spread, 2),
                              *(book.fmt(v, 4) for v in finals)]
    columns = ["mean (nats)", "95 % interval of the mean", "standard deviation"] + [f"seed {s}" for s in seeds]
    return book.table(rows, columns, caption=caption, index_name="encoder's gradient",
                      notes="The exact −ELBO of 2,000 validation images (of MNIST's last 5,000 training "
                            "digits, never trained on), summed over the ten classes, after the last epoch. "
                            "Lower is better. The interval: Student's t over the seeds.")


def vae_ranking(histories: dict) -> str:
    """A sentence or two, from the numbers, on which estimators the seeds can and cannot tell apart."""
    from objectcentric.experiments.estimators import mean_interval

    finals = {k: [h[-1]["val_exact_neg_elbo"] for h in runs] for k, runs in histories.items()}
    means = {k: float(np.mean(v)) for k, v in finals.items()}
    order = sorted(means, key=means.get)
    intervals = {k: mean_interval(v) for k, v in finals.items()}
    n = min(len(v) for v in finals.values())
    text = (f"Ordered by their mean over {n} seed{'s' if n > 1 else ''}: "
            + " < ".join(f"{name_of(k)} ({book.fmt(means[k], 4)})" for k in order) + " nats.")
    if n < 2:
        return text + " One seed gives no interval: the order may be chance."
    best = order[0]
    overlapping = [k for k in order[1:] if intervals[k][0] <= intervals[best][1]]
    if overlapping:
        text += (f" The 95 % interval of the best mean, {name_of(best)}'s, overlaps those of "
                 + ", ".join(name_of(k) for k in overlapping)
                 + ": these seeds cannot rank them.")
    else:
        text += f" {name_of(best)}'s interval lies below every other estimator's."
    return text


def gradient_noise_table(statistics: dict):
    """Each estimator's gradient noise at a trained, frozen discrete VAE (``vae_gradient_statistics``,
    or ``results["trained_vae_variance"]``): the variance of one estimate and the bias z-score."""
    settings = statistics["settings"]
    rows = {name_of(n): [s["variance"], s["bias_z_rms"]] for n, s in statistics["estimators"].items()}
    order = " < ".join(name_of(n) for n in statistics["ordering_by_variance"])
    model = statistics.get("model")
    at = (f"the shipped model (trained with {name_of(model['estimator'])}, seed {model['seed']})"
          if model else "the model trained on this page")
    return book.table(rows, ["variance of one estimate", "bias z-score (rms)"], index_name="estimator",
                      caption=f"Gradient noise for the encoder's logits of the discrete VAE, at {at}",
                      notes=f"{settings['n_samples']:,} estimates for each of {settings['n_images']} "
                            f"held-out images, after {settings['tune_steps']:,} tuning steps. Variance: "
                            "summed over the ten logits, averaged over the images. z-score: "
                            "(mean − exact) / standard error, root mean square over images and logits. "
                            f"Lowest variance first: {order}.")
