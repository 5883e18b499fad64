# %% [markdown]
# # Gradients through discrete choices
#
# The VAE of Chapter 1 trains because its latent code is continuous: the
# reparameterization trick writes a Gaussian sample as a smooth function of the
# encoder's output. The models of the next chapters make *discrete* choices: which
# prototype an image shows (D-VAE), whether there is one more object in the scene
# (AIR), which class that object belongs to (DAIR). A category cannot be nudged by
# an infinitesimal amount, so there is no path for the gradient to follow.
#
# This chapter builds the estimators that get a gradient anyway, each from the one
# before: the score function (REINFORCE), a learned baseline (NVIL), a continuous
# relaxation (CONCRETE), the relaxation used as a control variate (REBAR), and a
# learned control variate (RELAX). They live behind one interface in
# `objectcentric.estimators`, which the later chapters reuse. We test them on the
# toy problems of seed 000 (the strimadec thesis), where the exact gradient is
# known, and measure their bias, variance and speed.

# %%
# Colab: fetch the book's code and install it. Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/objectcentric-book/objectcentric-book"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, CLONE], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", CLONE], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {REPOSITORY}: {error}.\n"
            "Check that this runtime can reach GitHub and run this cell again; or upload "
            f"a copy of the repository to {CLONE} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))

# %% [markdown]
# ## Set-up
#
# *Read* mode (the default) plots the toy experiments from `results/estimators.json`,
# written by the chapter's experiment (`python -m objectcentric reproduce estimators`,
# or its two parts `benchmarks/estimators.py toys` and `... vae`); *quick* mode
# runs them for a few steps only; *train* mode (`TRAIN = True` or `OBJECTCENTRIC_TRAIN=1`) reruns them at
# full settings, which takes a few minutes on a CPU. The small checks at fixed
# parameters run in every mode: they take seconds.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from objectcentric.estimators import (CONCRETE, NVIL, REBAR, RELAX, REINFORCE, Exact, bernoulli_logits,
                                      conditional_gumbel, exact_expectation, exact_gradient, gumbel, make_estimator)
from objectcentric.experiments import toy_estimators as toy
from objectcentric.modes import QUICK, READ, TRAIN as TRAIN_MODE, run_mode
from objectcentric.records import read_results
from objectcentric.viz import ESTIMATOR_COLORS, histogram_png, plot_curves, show_source
from objectcentric.widgets import choice_widget

TRAIN = False  # True: rerun the toy experiments at full settings instead of reading the recorded ones
MODE = TRAIN_MODE if TRAIN and run_mode() != QUICK else run_mode()
N = 20_000 if MODE == QUICK else 100_000  # samples for the checks at fixed parameters
torch.manual_seed(0)
recorded = read_results("estimators") or None
# who wrote the toy numbers (the file's top-level provenance is that of its newest write)
toy_writer = next((w for w in (recorded or {}).get("writers", []) if "toy_experiments" in w["keys"]), recorded)
print(f"mode: {MODE}; recorded results: {'found' if recorded else 'none'}")

# %% [markdown]
# ## The problem
#
# A categorical variable $b$ with $K$ classes is drawn from
# $p_\theta(b) = \mathrm{softmax}(\theta)_b$, and a cost $f(b)$ is paid; we want
#
# $$
# \nabla_\theta \, \mathbb E_{b\sim p_\theta}\big[f(b)\big]
# = \nabla_\theta \sum_{k=1}^K p_\theta(k)\, f(e_k),
# $$
#
# where $e_k$ is the one-hot vector of class $k$. For small $K$ the sum can be
# enumerated, and that is our reference: `Exact` evaluates $f$ at all $K$ outcomes.
# In a model, $f$ is a decoder's reconstruction error and $K$ evaluations per
# sample are often too many (and for AIR's sequence of choices, exponentially many),
# hence the estimators below, which evaluate $f$ at one sampled $b$.
#
# The two toy problems of seed 000:
#
# - *replication* (the toy of the REBAR and RELAX papers {cite}`tucker2017rebar,grathwohl2018relax`):
#   $b\sim\mathrm{Bernoulli}(\sigma(\theta))$ and $f(b) = (b - t)^2$ with $t = 0.499$. The best
#   choice is $b=1$, but the two outcomes cost $0.251$ and $0.249$: the signal is a
#   difference of $0.002$ on top of an offset of $0.25$. A Bernoulli is a 2-class
#   categorical with logits $[0, \theta]$ (`bernoulli_logits`).
# - *categorical*: $K=3$, $f(b) = \lVert b - t\rVert^2$ with $t = [0.34, 0.33, 0.33]$.

# %%
show_source(Exact._estimate)
replication, replication_start = toy.toy_problem("replication")
categorical, categorical_start = toy.toy_problem("categorical")
theta = torch.tensor([[0.2, -0.1, 0.5]])  # a fixed parameter for the checks below
exact = exact_gradient(theta, categorical)[0]
print("p(b) =", theta.softmax(-1)[0].numpy().round(3), "| f(e_k) =", categorical(torch.eye(3)).numpy().round(4))
print("exact gradient of E[f] w.r.t. the logits:", exact.numpy().round(5))


def check(estimator, n=N, logits=theta, cost=categorical, **kwargs):
    """Draw n single-sample estimates at fixed logits; print mean, exact, z-scores and variance."""
    torch.manual_seed(0)
    samples = estimator.gradient_samples(logits.expand(n, -1), cost, **kwargs)
    truth = exact_gradient(logits, cost)[0]
    z = (samples.mean(0) - truth) / (samples.std(0) / n**0.5)
    print(f"{estimator.name:9s} mean {samples.mean(0).numpy().round(5)}  exact {truth.numpy().round(5)}  "
          f"z {z.numpy().round(1)}  variance {samples.var(0).sum():.3g}")
    return samples


# %% [markdown]
# ## 1. The score function: REINFORCE
#
# Differentiate the sum and multiply and divide by $p_\theta(b)$:
#
# $$
# \nabla_\theta \sum_b p_\theta(b) f(b) = \sum_b p_\theta(b)\, f(b)\, \nabla_\theta \log p_\theta(b)
# = \mathbb E_b\big[f(b)\,\nabla_\theta \log p_\theta(b)\big].
# $$
#
# So $\hat g = f(b)\,\nabla_\theta\log p_\theta(b)$ with one sample $b$ is an unbiased
# estimate (Williams, 1992). It needs no gradient of $f$, only its value: it works
# for any $f$, which is also its weakness, since it does not use how $f$ changes.
#
# In code we never write $\hat g$ out. We build a *surrogate*: a number whose value is
# $f(b)$ and whose gradient is the estimate. The helper `_magic(log_p)` returns
# `log_p - log_p.detach()`, which is zero in value but has gradient $\nabla\log p$, so
# `signal * _magic(log_p)` adds nothing to the value and `signal * ∇ log p` to the gradient. Every estimator returns such a `surrogate` (one per sample), so
# a model just calls `.backward()` on it; anything else $f$ depends on, a decoder's
# weights say, gets its ordinary gradient at the sampled $b$.

# %%
show_source(REINFORCE)
reinforce_samples = check(REINFORCE())

# %% [markdown]
# The mean agrees with the exact gradient within a few standard errors (the tests
# check this with 200,000 samples), but look at the variance:
# single estimates are of order $f \approx 0.66$ while the gradient is of order
# $0.005$. Most of the noise comes from the *offset* of $f$: all three outcomes cost
# about $0.66$, and the score function multiplies that offset by a random sign.
#
# ## 2. A baseline: NVIL
#
# Because $\mathbb E_b[\nabla_\theta \log p_\theta(b)] = \nabla_\theta \sum_b p_\theta(b) = 0$,
# we may subtract any $c$ that does not depend on $b$:
#
# $$
# \hat g = \big(f(b) - c(x)\big)\,\nabla_\theta \log p_\theta(b)
# $$
#
# stays unbiased. NVIL {cite}`mnih2014nvil` builds the baseline from a running mean
# of past costs (which never depends on the current sample) plus a learned
# constant and, in a model, a network of the input $x$ the variable was inferred
# from. The learned part regresses $f(b)$: it minimises $\mathbb E[(f(b) - c(x))^2]$
# through the estimator's `control_loss`, which reaches only the baseline's
# parameters. Here, at a fixed parameter, we train it for a few hundred steps
# (`tune_control_variate`) before drawing estimates.

# %%
show_source(NVIL.baseline)
nvil = NVIL()
toy.tune_control_variate(nvil, theta, categorical, steps=300)
baseline = nvil.running_mean.item() + nvil.bias.item()
print(f"baseline c = {baseline:.4f} (E[f] = {float(exact_expectation(theta, categorical)):.4f})")
nvil_samples = check(nvil)

# %% [markdown]
# The baseline removes the offset and the variance drops by four orders of
# magnitude. What is left is the noise of the score function itself.
#
# ## 3. A relaxation: CONCRETE
#
# A different idea: make the sample differentiable. The *Gumbel-max trick* draws
# $b$ as the argmax of perturbed log-probabilities,
# $z = \log p_\theta + G$ with $G_k = -\log(-\log u_k)$, $u_k\sim U(0,1)$, and $b = \mathrm{onehot}(\arg\max_k z_k)$.
# Replacing the argmax by a softmax at temperature $\tau$,
# $\tilde b = \mathrm{softmax}(z/\tau)$, gives the CONCRETE or Gumbel-softmax
# distribution {cite}`maddison2017concrete,jang2017gumbel`, whose samples are smooth
# functions of $\theta$: we can backpropagate through $f(\tilde b)$, as with the
# Gaussian of Chapter 1. `torch.distributions.RelaxedOneHotCategorical` does this.
#
# The price: $f$ is evaluated *between* the corners of the simplex, where it is not
# the cost we care about, so the gradient is biased. Lower temperatures push
# $\tilde b$ towards the corners and shrink the bias, but make the softmax steeper and
# the variance larger.

# %%
show_source(CONCRETE._estimate)
concrete_samples = check(CONCRETE(0.66))
rows = toy.concrete_bias_by_temperature(theta, categorical, temperatures=(2.0, 1.0, 0.66, 0.5, 0.25, 0.1, 0.05),
                                        n_samples=N)
fig, ax = plt.subplots(figsize=(6, 3))
temps = [r["temperature"] for r in rows]
ax.errorbar(temps, [r["bias_norm"] for r in rows], yerr=[3 * r["standard_error_norm"] for r in rows],
            marker="o", label="|bias| (± 3 s.e.)")
ax.plot(temps, [r["variance"] for r in rows], "s--", label="variance")
ax.axhline(float(exact.norm()), color="black", lw=0.8, ls=":", label="|exact gradient|")
ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("temperature τ")
ax.set_title("CONCRETE at fixed logits: bias shrinks and variance grows as τ → 0"); ax.legend(fontsize=8);

# %% [markdown]
# At the temperature of seed 000, 0.66, the bias is several times the gradient
# itself. It shrinks below $\tau \approx 0.5$ (at high temperature the samples all sit
# near the centre of the simplex, and the gradient is simply small), while the
# variance keeps growing.
#
# ## 4. The relaxation as a control variate: REBAR
#
# REBAR {cite}`tucker2017rebar` keeps the unbiased score function and uses the
# relaxed cost as a *control variate*: something correlated with the noise, whose
# mean we can add back exactly. With $c(z) = \eta\, f(\mathrm{softmax}(z/\lambda))$,
#
# $$
# \hat g = \big[f(b) - c_0(x) - c(\tilde z)\big]\,\nabla_\theta \log p_\theta(b)
# \;+\; \nabla_\theta c(z) \;-\; \nabla_\theta c(\tilde z),
# $$
#
# where $z$ is the perturbed vector that produced $b$, $\tilde z$ is a *fresh* draw of
# $z$ conditioned on its argmax being $b$, and $c_0$ is a baseline as in NVIL. Why is
# this unbiased? The baseline term has mean zero, as before. The gradient of
# $\mathbb E[c(z)]$ can be computed in two ways: by reparameterizing $z$ directly,
# $\mathbb E[\nabla_\theta c(z)]$, or by drawing $b$ first and then $\tilde z\sim p(z\mid b)$,
# which gives $z$'s distribution again, and differentiating both steps:
# $\mathbb E[c(\tilde z)\,\nabla_\theta\log p_\theta(b)] + \mathbb E[\nabla_\theta c(\tilde z)]$. The two are
# equal, so their difference, which is exactly what the relaxation adds to
# REINFORCE, has mean zero, whatever $\eta$ and $\lambda$ are. When $c$ tracks $f$,
# it cancels the part of the score function's noise that it tracks. The
# conditional draw, for normalised log-probabilities: the winning coordinate is a
# standard Gumbel, the others are Gumbels truncated below it.

# %%
show_source(conditional_gumbel)
log_p = theta.log_softmax(-1).expand(N, 3)
z = log_p + gumbel(torch.rand(N, 3).clamp_min(1e-30))
b = z.argmax(-1)
z_tilde = conditional_gumbel(log_p, b, torch.rand(N, 3).clamp_min(1e-30))
print("argmax of z̃ is b for every sample:", bool((z_tilde.argmax(-1) == b).all()))
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.hist(z[:, 0].numpy(), bins=80, range=(-4, 6), histtype="step", density=True, label="$z_0$")
ax.hist(z_tilde[:, 0].numpy(), bins=80, range=(-4, 6), histtype="step", density=True, label=r"$\tilde z_0 \sim p(z\mid b)$")
ax.set_title("z and z̃ (drawn given b) have the same distribution"); ax.legend();

# %% [markdown]
# REBAR learns $c_0$, $\lambda$ and $\eta$ to make $\hat g$ as quiet as possible. As
# $\mathbb E[\hat g]$ does not depend on them, minimising the variance is minimising
# $\mathbb E\lVert\hat g\rVert^2$, and $\hat g$ is itself a gradient: we compute it
# with `create_graph=True` and differentiate its square once more (double
# backward). The result is handed to $c_0$, $\lambda$ and $\eta$ only, through
# `control_loss`; the model's surrogate holds $\hat g$ detached. (A test checks
# this gradient against finite differences of the measured $\mathbb E\lVert\hat g\rVert^2$.)

# %%
show_source(REBAR._estimate)
rebar = REBAR()
check(rebar)
toy.tune_control_variate(rebar, theta, categorical, steps=300)
print(f"after tuning: λ = {rebar.temperature.item():.3f}, η = {rebar.eta.item():.4f}, "
      f"c₀ = {(rebar.baseline.running_mean + rebar.baseline.bias).item():.4f}")
rebar_samples = check(rebar)

# %% [markdown]
# Why the baseline? A first version of this chapter left it out, the form in
# which REBAR is usually written, and measured REBAR barely below REINFORCE: a
# variance of 0.269 against 0.287 on the categorical toy, and the same as
# REINFORCE on the Bernoulli toy, where $\eta$ had been tuned to nearly zero. That
# was no bug in the tuning: scan $\eta$ at a fixed $\lambda$ and look at the
# variance. Without a baseline the best
# $\eta$ buys a few percent, because the relaxed cost cannot remove the offset of
# $f$: $f$ is a squared distance to a point inside the simplex, so
# $f(\mathrm{softmax}(z/\lambda))$ is small exactly where $f(b)$ is about $0.66$, unless
# $\lambda$ is tiny, and then the reparameterized terms become noisy. With a
# baseline (here simply $c_0 = \mathbb E[f]$) the offset is gone, and what is left
# comes from the differences of about $0.02$ between the classes' costs, which the
# relaxation cannot track either: the best $\eta$ is close to zero. Tucker et al.'s
# own implementation does subtract a learned, input-dependent baseline next to
# the relaxation, and so does ours now.

# %%
c0 = float(exact_expectation(theta, categorical))
etas = np.linspace(-0.5, 2.0, 11)
scan = {}
for label, offset in (("no baseline", 0.0), (f"baseline $c_0 = E[f] = {c0:.3f}$", c0)):
    scan[label] = []
    for eta in etas:
        estimator = REBAR(temperature=0.66, eta=float(eta))
        with torch.no_grad():
            estimator.baseline.bias.fill_(offset)  # untrained: its running mean stays 0
        torch.manual_seed(0)
        scan[label].append(float(estimator.gradient_samples(theta.expand(N, 3), categorical).var(0).sum()))
fig, ax = plt.subplots(figsize=(6, 3))
for label, variances in scan.items():
    ax.plot(etas, variances, "o-", label=f"REBAR, λ = 0.66, {label}")
ax.axhline(float(reinforce_samples.var(0).sum()), color=ESTIMATOR_COLORS["reinforce"], ls="--", label="REINFORCE")
ax.axhline(float(nvil_samples.var(0).sum()), color=ESTIMATOR_COLORS["nvil"], ls=":", label="NVIL (tuned)")
ax.set_yscale("log"); ax.set_xlabel("η"); ax.set_ylabel("variance of one estimate")
ax.set_title("REBAR's variance against η on the categorical toy"); ax.legend(fontsize=7);

# %% [markdown]
# So on a single categorical variable REBAR is as good as its baseline, no
# better: NVIL's level. The relaxation earns its keep when $f$ varies with $b$ in
# a way no constant can follow, for instance when many variables are drawn at
# once and the others' noise lands in each one's learning signal (the REBAR paper's
# binary VAEs have 200 of them); then $f(\mathrm{softmax}(\tilde z/\lambda))$ moves with
# $f(b)$ from sample to sample.
#
# ## 5. A learned control variate: RELAX
#
# RELAX {cite}`grathwohl2018relax` keeps REBAR's estimator but lets the control
# variate be any differentiable function, here
# $c(z) = \eta\, f(\mathrm{softmax}(z/\lambda)) + r_\rho(\mathrm{softmax}(z/\lambda))$
# with a small network $r_\rho$ (starting at zero, so RELAX starts as REBAR, baseline
# included). All of $c_0, \lambda, \eta, \rho$ are trained on the same variance
# objective. Where the relaxed cost fails to follow $f$, the network can learn a
# function of $z$ that does.

# %%
show_source(RELAX.control_variate)
relax = RELAX(3)
toy.tune_control_variate(relax, theta, categorical, steps=300)
relax_samples = check(relax)

# %% [markdown]
# After 300 tuning steps RELAX is not yet at its best: its network has more to
# learn than REBAR's three numbers. The benchmark below tunes every estimator for
# 5,000 steps.

# %% [markdown]
# ## Bias and variance at fixed parameters, recorded
#
# `benchmarks/estimators.py toys` measures every estimator at fixed logits (those above
# for the categorical toy; $p(b=1) = \sigma(1) = 0.73$ for the Bernoulli) with 100,000 estimates, after tuning its learned parts for
# 5,000 steps, and records the variance (summed over components), the bias as a
# z-score, and the time per estimate (one sample, forward and backward, on the
# machine named below).

# %%
if MODE != QUICK and recorded and not recorded["quick"]:
    for problem, block in recorded["fixed_parameter"].items():
        print(f"{problem} toy at logits {np.round(block['logits'], 3).tolist()}:")
        for name, s in block["estimators"].items():
            print(f"  {name:9s} variance {s['variance']:9.3g}   bias z {s['bias_z']:5.2f}   "
                  f"{s['seconds_per_estimate'] * 1e3:5.2f} ms per estimate")
        print("  lowest variance first:", " < ".join(block["ordering_by_variance"]))
    print(f"\nmeasured by: {toy_writer['command']}\ncommit {toy_writer['commit'][:12]}, {toy_writer['device']}, "
          f"{toy_writer['date']}, {toy_writer['wall_time_s'] / 60:.1f} min")
else:
    print("recorded results are not shown in quick mode (they come from `python benchmarks/estimators.py toys`)")

# %% [markdown]
# The unbiased estimators' bias z-scores stay within noise; CONCRETE's is far
# outside. The issue that started this chapter expected
# RELAX ≤ REBAR < NVIL < REINFORCE. What we measure on these two toys, at tuned
# parameters:
#
# - categorical: RELAX < NVIL ≈ REBAR ≪ CONCRETE < REINFORCE. The baseline removes
#   almost all of REINFORCE's variance (four orders of magnitude); REBAR tunes its
#   $\eta$ to about zero and is as good as its baseline, no better, as the scan
#   above predicts; RELAX's network takes off about another quarter.
# - replication (Bernoulli): REBAR < RELAX ≈ NVIL ≪ CONCRETE < REINFORCE, all three
#   unbiased ones near zero. Here a constant baseline can make the estimator
#   *exact* at a fixed $p$: $(f(b) - c)(b - p)$ takes the same value for both
#   outcomes when $c = (1-p) f(1) + p f(0)$. REBAR trains its baseline on the
#   variance itself and finds that $c$; NVIL regresses $f(b)$ and settles at
#   $\mathbb E[f]$ instead, which is close but not exact; RELAX's extra
#   parameters add a little noise of their own.
#
# So REBAR < NVIL does not hold on a single categorical variable: the
# relaxation has nothing to add to a good baseline there. For the model below,
# the same measurement on a trained VAE's real cost is recorded too.
#
# ## The toy experiments
#
# Now the parameters move: Adam with learning rate 0.01 on the logits (and on each
# estimator's learned parts), temperature 0.66, one sample per step, as in seed 000.
# Each curve is the mean over repetitions, with a band of one standard deviation;
# the loss is the exact $\mathbb E[f(b)]$ at the current logits. The log-variance is
# measured every few steps from fresh samples at the current parameters.

# %%
if MODE == QUICK:
    curves = {name: toy.toy_experiment(problem, quick=True, target=target)
              for name, problem, target in (("replication_t0.499", "replication", 0.499),
                                            ("categorical", "categorical", None))}
    source = "quick run (a few hundred steps, 4 repetitions): not results"
elif MODE == READ and recorded and not recorded["quick"]:
    curves = {name: block["curves"] for name, block in recorded["toy_experiments"].items()}
    source = f"recorded by {toy_writer['command']} (commit {toy_writer['commit'][:12]}, {toy_writer['device']})"
else:
    curves = {name: toy.toy_experiment(problem, target=target)
              for name, problem, target in (("replication_t0.499", "replication", 0.499),
                                            ("replication_t0.501", "replication", 0.501),
                                            ("categorical", "categorical", None))}
    source = "trained here at full settings"
for name, results in curves.items():
    axes = plot_curves(results, title=name)
    if name.startswith("replication"):
        axes[0].set_ylim(0.2488, 0.2502)
print(source)

# %%
for name, results in curves.items():
    finals = ", ".join(f"{e} {s['final_loss_mean']:.5f}" for e, s in results.items())
    print(f"{name}: final E[f] (mean over repetitions): {finals}")

# %% [markdown]
# With $t = 0.499$ the optimum is $b = 1$, where $\mathbb E[f] = 0.249$. The exact
# gradient gets there in a few hundred steps (Adam rescales even a tiny gradient
# to steps of about the learning rate). NVIL follows it closely: once its baseline
# has learned the offset of $0.25$, its estimates are nearly exact, and its
# variance keeps falling as $p$ approaches 1, where every estimator's noise
# vanishes. REBAR and RELAX get there too, more slowly: their variance stalls
# around $e^{-15}$ and $e^{-12}$. Their $\eta$ and $\lambda$ are trained with the same
# learning rate of 0.01, and Adam's noisy steps keep $\eta$ jittering around its
# optimum near zero; every bit of $\eta$ brings the relaxation's noise back (in a
# short run of four REBAR repetitions, the one whose $\eta$ had strayed to $-0.05$
# had the largest variance, the one at $-0.002$ the smallest). REINFORCE makes slow
# progress, its steps dominated by noise, with a wide spread between
# repetitions. CONCRETE fails in its own way: the relaxed problem is minimised by a
# relaxed sample *at* $t$, i.e. in the middle of the simplex, so its biased
# gradient holds $p$ near $0.5$ and it never finds the answer. With $t = 0.501$ the
# picture is mirrored, and the categorical toy tells the same story with three
# classes.
#
# ## Play with the estimators
#
# Pick an estimator, a temperature (CONCRETE's relaxation; REBAR's and RELAX's
# $\lambda$, held fixed here while the baseline, $\eta$ and the network are tuned) and a
# number of samples. The histogram shows that many single-sample estimates of the
# gradient with respect to the Bernoulli logit, on the replication toy with
# $t = 0.45$ (the REBAR paper's target, whose gradient is large enough to see) at
# $p = \sigma(0.5)$; the dashed line is the exact gradient, the red line the mean of
# the samples. The frames are computed in advance, so the widget also works in the
# rendered book, without a kernel; in a running notebook, "draw again" replaces the
# frame shown by a histogram of fresh samples from the same estimator.

# %%
widget_cost, widget_logits = toy.ReplicationCost(0.45), bernoulli_logits(torch.tensor([0.5]))
names, temperatures, sizes = toy.ESTIMATOR_NAMES, (0.1, 0.33, 0.66, 1.0), (10, 100, 1000)
truth = float(exact_gradient(widget_logits, widget_cost)[0, 1])
frames, tuned, xlims = {}, {}, {}
for name in names:
    draws = {}
    for t in temperatures if name in ("concrete", "rebar", "relax") else (None,):
        torch.manual_seed(0)
        estimator = make_estimator(name, 2, temperature=t or 0.66)
        if name in ("rebar", "relax"):
            estimator.log_temperature.requires_grad_(False)
        toy.tune_control_variate(estimator, widget_logits, widget_cost, steps=100 if MODE == QUICK else 300)
        tuned[(name, t)] = estimator
        draws[t] = estimator.gradient_samples(widget_logits.expand(max(sizes), 2), widget_cost)[:, 1].numpy()
    everything = np.concatenate(list(draws.values()))
    xlim = tuple(np.quantile(everything, [0.005, 0.995]) + np.array([-1e-3, 1e-3]))
    xlims[name] = (min(xlim[0], truth - 1e-3), max(xlim[1], truth + 1e-3))
    for t in temperatures:
        key = t if t in draws else None
        for n in sizes:
            if (name, key, n) not in frames:
                label = f"{name}, τ = {t}" if key is not None else name
                frames[(name, key, n)] = histogram_png(draws[key][:n], truth, f"{label}: {n} samples",
                                                      xlims[name])
            frames[(name, t, n)] = frames[(name, key, n)]


def resample(name, t, n):
    """A fresh frame: n new estimates from the same tuned estimator (what "draw again" shows)."""
    key = t if (name, t) in tuned else None
    draws = tuned[(name, key)].gradient_samples(widget_logits.expand(n, 2), widget_cost)[:, 1].numpy()
    label = f"{name}, τ = {t}" if key is not None else name
    return histogram_png(draws, truth, f"{label}: {n} new samples", xlims[name])


choice_widget(frames, names, temperatures, sizes, resample=resample)

# %% [markdown]
# ## The interface the next chapters use
#
# Every estimator has the same call: logits of shape (batch, K), a cost function
# that maps samples (batch, K) to one number per row, optionally the input $x$
# (for input-dependent baselines and networks). The returned `surrogate` gives the
# logits the estimated gradient and every parameter inside $f$ its ordinary one;
# `control_loss` trains the estimator's own parameters and nothing else. Here a toy
# "encoder" produces the logits and a toy "decoder" scores the sample, as in the
# D-VAE of Chapter 5. (When the cost is known only after a whole rollout, as for
# AIR's sequence of "one more object?" choices in Chapter 6, REINFORCE and NVIL
# also take the samples' log-probabilities and the finished cost directly:
# `score_term(log_prob, cost, x)`.)

# %%
encoder, decoder = torch.nn.Linear(4, 3), torch.nn.Linear(3, 4)
x = torch.rand(32, 4)
estimator = make_estimator("relax", 3, in_features=4)  # RELAX's network also reads x
out = estimator(encoder(x), lambda b: ((decoder(b) - x) ** 2).sum(-1), x=x)
(out.surrogate.mean() + out.control_loss).backward()
for label, module in (("encoder", encoder), ("decoder", decoder), ("estimator", estimator)):
    print(f"{label:9s} gradient norm {sum(p.grad.norm() ** 2 for p in module.parameters()) ** 0.5:.4f}")

# %% [markdown]
# ## A discrete VAE on MNIST
#
# The toy has one variable and a known answer. A model is the real test: a VAE
# whose latent is *one* categorical variable with $K = 10$ classes. The encoder
# gives the logits of $q(b\mid x)$; the decoder turns a class (one-hot, or a relaxed
# point of the simplex for the relaxed estimators' control variates) into pixel
# probabilities; the prior is uniform. The reconstruction term
# $\mathbb E_q[-\log p(x\mid b)]$ is the cost $f$ handed to the estimator; the KL to the
# uniform prior has a closed form. With ten classes and nothing else, the decoder
# can only draw ten images: it learns *prototypes*, which is where Chapter 5 (the
# D-VAE) picks up.

# %%
from objectcentric.checkpoints import read_manifest
from objectcentric.experiments.estimators import (VAE_NAMES, CategoricalVAERecipe, shipped_recipe,
                                                  vae_gradient_statistics)
from objectcentric.models.categorical_vae import CategoricalVAE
from objectcentric.runner import load_or_train
from objectcentric.viz import image_grid

show_source(CategoricalVAE.loss)

# %% [markdown]
# We train it with each estimator, and, as a reference, with the exact gradient
# (ten decoder calls per image), each with one call,
# `load_or_train(CategoricalVAERecipe(estimator=name), MODE)`: the recipe holds the
# settings (15 epochs of all 60,000 training images, Adam at $10^{-3}$, batches of
# 100) and the book's one training loop runs it. The held-out curve is the *exact* negative ELBO on 2,000 test images, summed over the
# ten classes, so all estimators are scored alike (CONCRETE's training loss is
# its relaxed cost).

# %%
vae_recorded = recorded.get("categorical_vae") if recorded else None
vae_model = None
if MODE == READ and vae_recorded and not vae_recorded["quick"]:
    # per estimator, one history per seed
    vae_histories = {name: [run["history"] for run in block["seeds"]] for name, block in vae_recorded["runs"].items()}
    p = vae_recorded["provenance"]
    vae_source = (f"recorded by {p['command']}\n(commit {p['commit'][:12]}, {', '.join(p['devices'])}, seeds "
                  f"{vae_recorded['seeds']}, {p['wall_time_s'] / 60:.0f} min of training in all)")
    if vae_recorded.get("note"):
        vae_source += "\n" + vae_recorded["note"]
else:
    vae_histories = {}
    for name in VAE_NAMES:  # the exact gradient, then every estimator
        run = load_or_train(CategoricalVAERecipe(estimator=name), MODE, progress="none")
        vae_model, vae_histories[name] = run.model, [run.history]
    vae_source = ("quick run (500 images, two epochs): not results" if MODE == QUICK
                  else "trained here, one seed per estimator")
fig, (train_ax, val_ax) = plt.subplots(1, 2, figsize=(12, 3.8))
for name, histories in vae_histories.items():
    style = dict(color=ESTIMATOR_COLORS[name], ls="--" if name == "exact" else "-")
    for i, history in enumerate(histories):  # one thin line per seed
        epochs = [r["epoch"] for r in history]
        label = name if i == 0 else None
        train_ax.plot(epochs, [r["neg_elbo"] for r in history], label=label, lw=1, alpha=0.8, **style)
        val_ax.plot(epochs, [r["val_exact_neg_elbo"] for r in history], label=label, lw=1, alpha=0.8, **style)
train_ax.set(xlabel="epoch", ylabel="nats", title="training -ELBO at the sampled class (one line per seed)")
val_ax.set(xlabel="epoch", ylabel="nats", title="held-out exact -ELBO (one line per seed)")
val_ax.legend(fontsize=8)
print(vae_source)
for name, histories in vae_histories.items():
    finals = np.array([h[-1]["val_exact_neg_elbo"] for h in histories])
    spread = f" ± {finals.std(ddof=1):.2f} (std over {len(finals)} seeds)" if len(finals) > 1 else " (one seed)"
    print(f"{name:9s} held-out exact -ELBO after {len(histories[0])} epochs: {finals.mean():.2f}{spread}; "
          f"per seed {np.round(finals, 2).tolist()}")

# %% [markdown]
# In the recorded runs (two seeds per estimator, 15 epochs; the exact-gradient runs on
# a GPU, the others on a 2-core CPU) the curves start in one of two ways. Some sit on
# a plateau near 201 nats: the encoder spreads each image evenly over the classes
# and the decoder draws the same average digit for all of them, close to a symmetric
# saddle where even the exact gradient is nearly zero. With seed 0, the exact
# gradient, CONCRETE, REBAR and RELAX all stayed there for several epochs (REBAR was
# still at 192 nats after 15), while REINFORCE and NVIL, whose noise is largest, left
# it in the first epoch. With seed 1 every estimator left it at once. NVIL has the
# best mean (166.4 ± 0.7 nats over the two seeds), REBAR the best single run (164.8).
# So a final number reflects when a run escaped as much as the estimator's quality
# (seed 000 also reports that these models often get trapped in local minima): two
# seeds are too few to rank the estimators by their means, and the spread between
# the seeds, one line each, is the honest reading of the plot.
#
# The ten prototypes the decoder draws, one per class: in read mode from the
# shipped model (the run with the best held-out bound among the recorded ones,
# named below), otherwise from the last model trained above.

# %%
if vae_model is None:
    recipe = shipped_recipe()  # the shipped run's estimator, from the manifest
    run = load_or_train(recipe, MODE)
    vae_model = run.model
    if run.record["loaded"]:
        entry = read_manifest()["checkpoints"][recipe.shipped_name()]
        print(f"shipped {recipe.shipped_name()}: {entry['metrics']['estimator']}, seed {entry['seed']}, "
              f"held-out exact -ELBO {entry['metrics']['val_exact_neg_elbo']:.2f} after "
              f"{entry['metrics']['epochs']} epochs; made by {entry['command']} on {entry['device']}")
image_grid(vae_model.cpu().prototypes(), nrow=10);

# %% [markdown]
# Finally the question of the toys, asked of the model: at one trained VAE, frozen
# (the shipped one), how noisy is each estimator's gradient for the encoder's
# logits? Each estimator's learned parts (baselines reading the image, as in
# training) are tuned on training batches first; then many estimates are drawn
# per held-out image and compared with the exact gradient (ten decoder calls).
# Here $f(b) = -\log p(x\mid b)$ differs by tens of nats between classes and from
# image to image, which no constant follows.

# %%
if MODE == READ:
    statistics = vae_recorded.get("gradient_variance") if vae_recorded else None
    if statistics is None:
        print("not recorded yet: `python benchmarks/estimators.py vae` measures it after training")
    else:
        print(f"recorded by {statistics['command']} (commit {statistics['commit'][:12]}, {statistics['device']}), "
              f"at the model trained with {statistics['model']['estimator']}, seed {statistics['model']['seed']}")
else:
    statistics = vae_gradient_statistics(vae_model, quick=MODE == QUICK)
    print("quick run (a tiny model, few samples): not results" if MODE == QUICK else "measured here")
if statistics is not None:
    settings = statistics["settings"]
    print(f"{settings['n_samples']} estimates for each of {settings['n_images']} held-out images, "
          f"after {settings['tune_steps']} tuning steps")
    for name, s in statistics["estimators"].items():
        print(f"  {name:9s} variance {s['variance']:10.4g}   |mean - exact| / |exact| {s['relative_error']:7.3g}")
    print("  lowest variance first:", " < ".join(statistics["ordering_by_variance"]))

# %% [markdown]
# ## What we built
#
# One chain of ideas: the score function makes any discrete choice differentiable
# in expectation; a baseline removes the offset that makes it noisy; a relaxation
# offers low variance at the price of bias; as a control variate, next to a
# baseline, the relaxation keeps the unbiasedness; a learned control variate chooses itself. The tests
# (`tests/test_estimators.py`) check at fixed parameters that REINFORCE, NVIL,
# REBAR and RELAX average to the exact gradient within three standard errors, and
# that CONCRETE's bias shrinks with the temperature. Chapter 5 trains the D-VAE with
# these estimators, and Chapter 6 uses NVIL for AIR's "one more object?" choice.
