# %% [markdown]
# # Gradients through discrete choices
#
# The VAE of Chapter 1 trains because its latent code is continuous: the
# reparameterization trick writes a Gaussian sample as a smooth function of the
# encoder's output. The models of the next chapters make *discrete* choices: which
# prototype an image shows (the D-VAE of Chapter 5), whether there is one more object
# in the scene (AIR, Chapter 6), which class that object belongs to (DAIR, Chapter 7).
# A category cannot be nudged by an infinitesimal amount, so there is no path for the
# gradient to follow.
#
# This chapter builds the estimators that get a gradient anyway, each from the one
# before: the score function (REINFORCE), a learned baseline (NVIL), a continuous
# relaxation (CONCRETE), the relaxation used as a control variate (REBAR), and a
# learned control variate (RELAX). They live behind one interface in
# `objectcentric.estimators`, which the later chapters reuse. We test them on the
# toy problems of the thesis this book follows {cite}`borea17thesis`, where the exact
# gradient is known, measure their bias, variance and speed, and then train a VAE
# with a discrete latent with each of them.

# %% tags=["hide-input"]
# Colab: fetch the book's code and install it. Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/objectcentric-book/objectcentric-book"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            clone = ["git", "clone", "--depth", "1", REPOSITORY, CLONE]
            subprocess.run(clone, check=True)
        install = [sys.executable, "-m", "pip", "install", "--quiet", CLONE]
        subprocess.run(install, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {REPOSITORY}: "
            f"{error}.\nCheck that this runtime can reach GitHub and run this cell "
            f"again; or upload a copy of the repository to {CLONE} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))


# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from objectcentric import book
from objectcentric.chapters import estimators as chapter
from objectcentric.checkpoints import read_manifest
from objectcentric.estimators import (
    CONCRETE,
    NVIL,
    REBAR,
    RELAX,
    REINFORCE,
    Exact,
    conditional_gumbel,
    exact_expectation,
    exact_gradient,
    gumbel,
    make_estimator,
)
from objectcentric.experiments import toy_estimators as toy
from objectcentric.experiments.estimators import (
    VAE_NAMES,
    CategoricalVAERecipe,
    shipped_recipe,
    vae_gradient_statistics,
)
from objectcentric.models.categorical_vae import CategoricalVAE
from objectcentric.modes import QUICK, READ
from objectcentric.records import read_results
from objectcentric.runner import load_or_train
from objectcentric.viz import image_grid, show_source
from objectcentric.widgets import choice_widget

TRAIN = False  # True: rerun the toy experiments and train the discrete VAEs here
MODE, device = book.setup("estimators", train=TRAIN)
N = 20_000 if MODE == QUICK else 100_000  # estimates per check at fixed parameters
recorded = read_results("estimators") or None
if recorded and recorded["quick"]:
    recorded = None  # a quick run's numbers are not results

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
# The thesis's two toy problems:
#
# - *the Bernoulli toy* (the toy of the REBAR and RELAX papers
#   {cite}`tucker2017rebar,grathwohl2018relax`):
#   $b\sim\mathrm{Bernoulli}(\sigma(\theta))$ and $f(b) = (b - t)^2$ with $t = 0.499$.
#   The better choice is $b = 0$, but the two outcomes cost $0.249$ and $0.251$: the
#   signal is a difference of $0.002$ on top of an offset of $0.25$. A Bernoulli is a
#   2-class categorical with logits $[0, \theta]$ (`bernoulli_logits`).
# - *the categorical toy*: $K=3$, $f(b) = \lVert b - t\rVert^2$ with
#   $t = [0.34, 0.33, 0.33]$.
#
# Below, the exact gradient of the categorical toy at a fixed parameter, which every
# estimator of this chapter is checked against.

# %%
show_source(Exact._estimate)
replication, replication_start = toy.toy_problem("replication")
categorical, categorical_start = toy.toy_problem("categorical")
theta = torch.tensor([[0.2, -0.1, 0.5]])  # a fixed parameter for the checks below
exact = exact_gradient(theta, categorical)[0]
chapter.problem_table(theta, categorical)

# %% [markdown]
# ## 1. The score function: REINFORCE
#
# Differentiate the sum and multiply and divide by $p_\theta(b)$:
#
# $$
# \begin{aligned}
# \nabla_\theta \sum_b p_\theta(b) f(b)
# &= \sum_b p_\theta(b)\, f(b)\, \nabla_\theta \log p_\theta(b) \\
# &= \mathbb E_b\big[f(b)\,\nabla_\theta \log p_\theta(b)\big].
# \end{aligned}
# $$
#
# So $\hat g = f(b)\,\nabla_\theta\log p_\theta(b)$ with one sample $b$ is an unbiased
# estimate {cite}`williams1992reinforce`. It needs no gradient of $f$, only its value:
# it works for any $f$, which is also its weakness, since it does not use how $f$
# changes.
#
# In code we never write $\hat g$ out. We build a *surrogate*: a number whose value is
# $f(b)$ and whose gradient is the estimate. The helper `_magic(log_p)` returns
# `log_p - log_p.detach()`, which is zero in value but has gradient $\nabla\log p$, so
# `signal * _magic(log_p)` adds nothing to the value and `signal * ∇ log p` to the
# gradient. Every estimator returns such a `surrogate` (one per sample), so a model
# just calls `.backward()` on it; anything else $f$ depends on, a decoder's weights
# say, gets its ordinary gradient at the sampled $b$.

# %%
show_source(REINFORCE)
reinforce_samples = chapter.check(REINFORCE(), theta, categorical, N)

# %% [markdown]
# The mean agrees with the exact gradient within a few standard errors (the tests
# check this with 200,000 samples), but look at the variance: single estimates are
# of order $f \approx 0.66$ while the gradient is of order $0.005$. Most of the noise
# comes from the *offset* of $f$: all three outcomes cost about $0.66$, and the score
# function multiplies that offset by a random sign.
#
# ## 2. A baseline: NVIL
#
# Because
# $\mathbb E_b[\nabla_\theta \log p_\theta(b)] = \nabla_\theta \sum_b p_\theta(b) = 0$,
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
expected = float(exact_expectation(theta, categorical))
print(f"learned baseline c = {baseline:.4f}; E[f] = {expected:.4f}")
nvil_samples = chapter.check(nvil, theta, categorical, N)

# %% [markdown]
# The baseline removes the offset and the variance drops by four orders of
# magnitude. What is left is the noise of the score function itself.
#
# ## 3. A relaxation: CONCRETE
#
# A different idea: make the sample differentiable. The *Gumbel-max trick* draws
# $b$ as the argmax of perturbed log-probabilities, $z = \log p_\theta + G$ with
# $G_k = -\log(-\log u_k)$, $u_k\sim U(0,1)$, and
# $b = \mathrm{onehot}(\arg\max_k z_k)$. Replacing the argmax by a softmax at
# temperature $\tau$, $\tilde b = \mathrm{softmax}(z/\tau)$, gives the CONCRETE or
# Gumbel-softmax distribution {cite}`maddison2017concrete,jang2017gumbel`, whose
# samples are smooth functions of $\theta$: we can backpropagate through
# $f(\tilde b)$, as with the Gaussian of Chapter 1.
# `torch.distributions.RelaxedOneHotCategorical` does this.
#
# The price: $f$ is evaluated *between* the corners of the simplex, where it is not
# the cost we care about, so the gradient is biased. Lower temperatures push
# $\tilde b$ towards the corners and shrink the bias, but make the softmax steeper and
# the variance larger.

# %%
show_source(CONCRETE._estimate)
concrete_samples = chapter.check(CONCRETE(0.66), theta, categorical, N)

# %% mystnb={"figure": {"caption": "CONCRETE at the fixed logits of the categorical toy: the size of its bias (with three standard errors) and the variance of one estimate, against the temperature. The dotted line is the length of the exact gradient.", "name": "fig-estimators-concrete-bias"}, "image": {"alt": "Log-log plot: bias falls and variance rises as the temperature goes to zero"}}
temperatures = (2.0, 1.0, 0.66, 0.5, 0.25, 0.1, 0.05)
rows = toy.concrete_bias_by_temperature(theta, categorical, temperatures, n_samples=N)
chapter.plot_concrete_bias(rows, float(exact.norm()))
plt.show()
# %% [markdown]
# At the thesis's temperature, 0.66, the bias is several times the gradient itself
# ({numref}`fig-estimators-concrete-bias`). It shrinks below $\tau \approx 0.5$ (at
# high temperature the samples all sit near the centre of the simplex, and the
# gradient is simply small), while the variance keeps growing.
#
# ## 4. The relaxation as a control variate: REBAR
#
# REBAR {cite}`tucker2017rebar` keeps the unbiased score function and uses the
# relaxed cost as a *control variate*: something correlated with the noise, whose
# mean we can add back exactly. With $c(z) = \eta\, f(\mathrm{softmax}(z/\lambda))$,
#
# $$
# \begin{aligned}
# \hat g = {}& \big[f(b) - c_0(x) - c(\tilde z)\big]\,\nabla_\theta \log p_\theta(b) \\
# & + \nabla_\theta c(z) - \nabla_\theta c(\tilde z),
# \end{aligned}
# $$
#
# where $z$ is the perturbed vector that produced $b$, $\tilde z$ is a *fresh* draw of
# $z$ conditioned on its argmax being $b$, and $c_0$ is a baseline as in NVIL. Why is
# this unbiased? The baseline term has mean zero, as before. The gradient of
# $\mathbb E[c(z)]$ can be computed in two ways: by reparameterizing $z$ directly,
# $\mathbb E[\nabla_\theta c(z)]$, or by drawing $b$ first and then
# $\tilde z\sim p(z\mid b)$, which gives $z$'s distribution again, and differentiating
# both steps:
# $\mathbb E[c(\tilde z)\,\nabla_\theta\log p_\theta(b)]$ +
# $\mathbb E[\nabla_\theta c(\tilde z)]$.
# The two are equal, so their difference, which is exactly what the relaxation adds
# to REINFORCE, has mean zero, whatever $\eta$ and $\lambda$ are. When $c$ tracks $f$,
# it cancels the part of the score function's noise that it tracks. The conditional
# draw, for normalised log-probabilities: the winning coordinate is a standard
# Gumbel, the others are Gumbels truncated below it.

# %%
show_source(conditional_gumbel)

# %% mystnb={"figure": {"caption": "The first coordinate of the perturbed log-probabilities z, and of z̃ drawn afresh given the class b that z chose: the two histograms agree, as the conditional draw requires.", "name": "fig-estimators-conditional-gumbel"}, "image": {"alt": "Two overlapping histograms of the same shape"}}
log_p = theta.log_softmax(-1).expand(N, 3)
z = log_p + gumbel(torch.rand(N, 3).clamp_min(1e-30))
b = z.argmax(-1)
z_tilde = conditional_gumbel(log_p, b, torch.rand(N, 3).clamp_min(1e-30))
print("argmax of z̃ is b for every sample:", bool((z_tilde.argmax(-1) == b).all()))
chapter.plot_conditional_gumbel(z, z_tilde)
plt.show()
# %% [markdown]
# REBAR learns $c_0$, $\lambda$ and $\eta$ to make $\hat g$ as quiet as possible. As
# $\mathbb E[\hat g]$ does not depend on them, minimising the variance is minimising
# $\mathbb E\lVert\hat g\rVert^2$, and $\hat g$ is itself a gradient: we compute it
# with `create_graph=True` and differentiate its square once more (double
# backward). The result is handed to $c_0$, $\lambda$ and $\eta$ only, through
# `control_loss`; the model's surrogate holds $\hat g$ detached. (A test checks this
# gradient against finite differences of the measured $\mathbb E\lVert\hat g\rVert^2$.)
# Below, REBAR before and after 300 tuning steps.

# %%
show_source(REBAR._estimate)
rebar = REBAR()
chapter.check(rebar, theta, categorical, N, label="REBAR before tuning")
toy.tune_control_variate(rebar, theta, categorical, steps=300)
c0 = (rebar.baseline.running_mean + rebar.baseline.bias).item()
print(
    f"after tuning: λ = {rebar.temperature.item():.3f}, η = {rebar.eta.item():.4f}, "
    f"c₀ = {c0:.4f}"
)
rebar_samples = chapter.check(rebar, theta, categorical, N, label="REBAR after tuning")

# %% [markdown]
# Why the baseline? REBAR is often written without one, and then it is barely
# better than REINFORCE on these toys. That is no fault of the tuning: scan $\eta$ at
# a fixed $\lambda$ and look at the variance ({numref}`fig-estimators-eta-scan`).
# Without a baseline the best $\eta$ buys a few percent, because the relaxed cost
# cannot remove the offset of $f$: $f$ is a squared distance to a point inside the
# simplex, so $f(\mathrm{softmax}(z/\lambda))$ is small exactly where $f(b)$ is about
# $0.66$, unless $\lambda$ is tiny, and then the reparameterized terms become noisy.
# With a baseline (here simply $c_0 = \mathbb E[f]$) the offset is gone, and what is
# left comes from the differences of about $0.02$ between the classes' costs, which
# the relaxation cannot track either: the best $\eta$ is close to zero. Tucker et
# al.'s own implementation does subtract a learned, input-dependent baseline next to
# the relaxation, and so does ours.

# %% mystnb={"figure": {"caption": "REBAR's variance on the categorical toy against the weight η of its relaxed cost, at λ = 0.66, without a baseline and with the constant baseline c₀ = E[f]; the dashed lines are REINFORCE and the tuned NVIL at the same logits.", "name": "fig-estimators-eta-scan"}, "image": {"alt": "Variance against eta: without a baseline it stays near REINFORCE's, with one near NVIL's"}}
etas = np.linspace(-0.5, 2.0, 11)
baselines = {"no baseline": 0.0, f"baseline c₀ = E[f] = {expected:.3f}": expected}
scan = chapter.rebar_variance_by_eta(theta, categorical, etas, N, baselines)
references = {
    "reinforce": float(reinforce_samples.var(0).sum()),
    "nvil": float(nvil_samples.var(0).sum()),
}
chapter.plot_eta_scan(etas, scan, references)
plt.show()
# %% [markdown]
# So on a single categorical variable REBAR is as good as its baseline, no better:
# NVIL's level. The relaxation earns its keep when $f$ varies with $b$ in a way no
# constant can follow, for instance when many variables are drawn at once and the
# others' noise lands in each one's learning signal (the REBAR paper's binary VAEs
# have 200 of them); then $f(\mathrm{softmax}(\tilde z/\lambda))$ moves with $f(b)$
# from sample to sample.
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
relax_samples = chapter.check(relax, theta, categorical, N)

# %% [markdown]
# After 300 tuning steps RELAX is not yet at its best: its network has more to
# learn than REBAR's three numbers. The measurements below tune every estimator for
# 5,000 steps.
#
# ## Bias and variance at fixed parameters
#
# Each estimator, measured at fixed logits (those above for the categorical toy;
# $p(b=1) = \sigma(1) = 0.73$ for the Bernoulli toy) with 100,000 estimates, after
# tuning its learned parts for 5,000 steps: the variance of one estimate (summed over
# the logits), the bias as a z-score (the largest over the logits of
# $|\text{mean} - \text{exact}|$ in standard errors), and the time per estimate (one
# sample, forward and backward).

# %%
if recorded:
    for problem, block in recorded["fixed_parameter"].items():
        display(chapter.fixed_parameter_table(problem, block))
    display(book.how_measured("estimators", keys=["fixed_parameter"]))
else:
    print("No recorded measurements: this page has no results file to read.")

# %% [markdown]
# The unbiased estimators' bias z-scores stay within noise; CONCRETE's is far
# outside. The papers' story would lead us to expect
# RELAX ≤ REBAR < NVIL < REINFORCE. What we measure on these two toys, at tuned
# parameters:
#
# - categorical: RELAX < NVIL ≈ REBAR ≪ CONCRETE < REINFORCE. The baseline removes
#   almost all of REINFORCE's variance (four orders of magnitude); REBAR tunes its
#   $\eta$ to about zero and is as good as its baseline, no better, as the scan
#   above predicts; RELAX's network takes off about another quarter.
# - Bernoulli: REBAR < RELAX ≈ NVIL ≪ CONCRETE < REINFORCE, all three unbiased
#   ones near zero. Here a constant baseline can make the estimator *exact* at a
#   fixed $p$: $(f(b) - c)(b - p)$ takes the same value for both outcomes when
#   $c = (1-p) f(1) + p f(0)$. REBAR trains its baseline on the variance itself and
#   finds that $c$; NVIL regresses $f(b)$ and settles at $\mathbb E[f]$ instead,
#   which is close but not exact; RELAX's extra parameters add a little noise of
#   their own.
#
# So REBAR < NVIL does not hold on a single categorical variable: the relaxation
# has nothing to add to a good baseline there. At the trained VAE at the end of
# the chapter, whose cost is not a toy's, it does.
#
# ## The toy experiments
#
# Now the parameters move: Adam with learning rate 0.01 on the logits (and on each
# estimator's learned parts), temperature 0.66, one sample per step, as in the
# thesis. Each curve is the mean over repetitions (50 in the recorded runs), with a
# band of one standard deviation; the cost shown is the exact $\mathbb E[f(b)]$ at
# the current logits. The log-variance is measured every few steps from fresh
# samples at the current parameters.

# %%
TOYS = (
    ("replication_t0.499", "replication", 0.499),
    ("replication_t0.501", "replication", 0.501),
    ("categorical", "categorical", None),
)
if MODE == READ and recorded:
    toy_runs = recorded["toy_experiments"]
    curves = {name: block["curves"] for name, block in toy_runs.items()}
    repetitions = {
        name: block["settings"]["repetitions"] for name, block in toy_runs.items()
    }
else:
    quick = MODE == QUICK
    curves = {
        name: toy.toy_experiment(problem, quick=quick, target=target)
        for name, problem, target in TOYS
    }
    settings = toy.QUICK if quick else toy.FULL
    repetitions = {name: settings[problem]["repetitions"] for name, problem, _ in TOYS}
    if quick:
        print("quick run (300 steps, 4 repetitions): these curves are not results")

# %% mystnb={"figure": {"caption": "The Bernoulli toy with t = 0.499: the exact expected cost over the steps (left; the optimum is 0.249) and the log-variance of one gradient estimate (right), mean over repetitions with a band of one standard deviation.", "name": "fig-estimators-toy-0499"}, "image": {"alt": "Expected cost and gradient log-variance over 10,000 steps, one line per estimator"}}
chapter.plot_toy(curves, "replication_t0.499")
plt.show()
# %% mystnb={"figure": {"caption": "The Bernoulli toy with t = 0.501, the mirror image: now b = 1 is the better choice.", "name": "fig-estimators-toy-0501"}, "image": {"alt": "Expected cost and gradient log-variance over 10,000 steps, one line per estimator"}}
chapter.plot_toy(curves, "replication_t0.501")
plt.show()
# %% mystnb={"figure": {"caption": "The categorical toy (K = 3): expected cost and log-variance over the steps.", "name": "fig-estimators-toy-categorical"}, "image": {"alt": "Expected cost and gradient log-variance over 5,000 steps, one line per estimator"}}
chapter.plot_toy(curves, "categorical")
plt.show()
# %%
display(chapter.final_loss_table(curves, repetitions))
if MODE == READ and recorded:
    display(book.how_measured("estimators", keys=["toy_experiments"]))

# %% [markdown]
# With $t = 0.499$ the optimum is $b = 0$, where $\mathbb E[f] = t^2 = 0.249$
# ({numref}`fig-estimators-toy-0499`). The exact gradient gets there in a few hundred
# steps (Adam rescales even a tiny gradient to steps of about the learning rate).
# NVIL follows it closely: once its baseline has learned the offset of $0.25$, its
# estimates are nearly exact, and its variance keeps falling as $p(b=1)$ approaches
# 0, where every estimator's noise vanishes. REBAR and RELAX get there too, more
# slowly: their variance stalls around $e^{-15}$ and $e^{-12}$. Their $\eta$ and
# $\lambda$ are trained with the same learning rate of 0.01, and Adam's noisy steps
# keep $\eta$ jittering around its optimum near zero; every bit of $\eta$ brings the
# relaxation's noise back. REINFORCE makes slow progress, its steps dominated by
# noise, with a wide spread between repetitions. CONCRETE fails in its own way (see
# "What fails" below). With $t = 0.501$ the picture is mirrored
# ({numref}`fig-estimators-toy-0501`), and the categorical toy tells the same story
# with three classes ({numref}`fig-estimators-toy-categorical`).
#
# ## Play with the estimators
#
# Pick an estimator, a temperature (CONCRETE's relaxation; REBAR's and RELAX's
# $\lambda$, held fixed here while the baseline, $\eta$ and the network are tuned), a
# number of samples and one of three independent draws. The histogram shows that
# many single-sample estimates of the gradient with respect to the Bernoulli logit
# $\theta$, on the Bernoulli toy with $t = 0.45$ (the REBAR paper's choice, whose
# gradient is large enough to see) at $p = \sigma(0.5)$; the dashed line is the exact
# gradient, the red line the mean of the estimates shown. Flip between the draws
# with 10 samples to see how far one small batch of estimates can stray; REINFORCE
# and NVIL have no temperature, so that slider leaves them unchanged. Every frame is
# computed in advance, so the widget works in the rendered book too.

# %% tags=["hide-input"]
widget_cost = toy.ReplicationCost(0.45)
widget_logits = torch.tensor([[0.0, 0.5]])  # bernoulli_logits: p(b = 1) = σ(0.5)
keys, temperatures = toy.ESTIMATOR_NAMES, (0.1, 0.33, 0.66, 1.0)
sizes, draws = (10, 100, 1000), (1, 2, 3)
frames, truth = chapter.estimate_frames(
    keys,
    temperatures,
    sizes,
    draws,
    widget_cost,
    widget_logits,
    tune_steps=100 if MODE == QUICK else 300,
)
names = [chapter.name_of(key) for key in keys]
choice_widget(frames, names, temperatures, sizes, draws=draws)

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
for label, module in (
    ("encoder", encoder),
    ("decoder", decoder),
    ("estimator", estimator),
):
    norm = sum(p.grad.norm() ** 2 for p in module.parameters()) ** 0.5
    print(f"{label:9s} gradient norm {norm:.4f}")

# %% [markdown]
# ## A discrete VAE on MNIST
#
# The toy has one variable and a known answer. A model is the real test: a VAE
# whose latent is *one* categorical variable with $K = 10$ classes. The encoder
# gives the logits of $q(b\mid x)$; the decoder turns a class (one-hot, or a relaxed
# point of the simplex for the relaxed estimators' control variates) into pixel
# probabilities; the prior is uniform. The reconstruction term
# $\mathbb E_q[-\log p(x\mid b)]$ is the cost $f$ handed to the estimator; the KL to
# the uniform prior has a closed form. With ten classes and nothing else, the
# decoder can only draw ten images: it learns *prototypes*, which is where Chapter 5
# (the D-VAE) picks up.

# %%
show_source(CategoricalVAE.loss)

# %% [markdown]
# We train it with each estimator, and, as a reference, with the exact gradient
# (ten decoder calls per image), each with one call,
# `load_or_train(CategoricalVAERecipe(estimator=name), MODE)`: the recipe holds the
# settings (15 epochs of MNIST's first 55,000 training images, Adam at $10^{-3}$,
# batches of 100) and the book's one training loop runs it. Each setting was trained
# five times, with seeds 0 to 4: a *seed* fixes a run's random numbers (its initial
# weights, the order of its batches, the binarization of its images), so five seeds
# are five honest repetitions of the same recipe. The validation curve is the
# *exact* negative ELBO on 2,000 of the last 5,000 training images, which no run
# trains on, summed over the ten classes, so all estimators are scored alike
# (CONCRETE's training loss is its relaxed cost). No test image is used to watch or
# to choose a run.

# %% mystnb={"figure": {"caption": "The discrete VAE trained with the exact gradient (dashed) and with each estimator, one thin line per seed: the −ELBO at the sampled class during training (left) and the exact −ELBO on 2,000 validation images (right).", "name": "fig-estimators-vae-curves"}, "image": {"alt": "Training and validation negative ELBO over 15 epochs, one line per seed and estimator"}}
vae_recorded = recorded.get("categorical_vae") if recorded and MODE == READ else None
vae_model = None
if vae_recorded:  # per estimator, one history per seed
    runs = vae_recorded["runs"]
    vae_histories = {
        name: [run["history"] for run in runs[name]["seeds"]] for name in runs
    }
    vae_seeds = vae_recorded["seeds"]
else:
    vae_histories, vae_seeds = {}, [0]
    for name in VAE_NAMES:  # the exact gradient, then every estimator
        run = load_or_train(CategoricalVAERecipe(estimator=name), MODE, progress="none")
        vae_model, vae_histories[name] = run.model, [run.history]
    if MODE == QUICK:
        print("quick run (500 images, two epochs): these curves are not results")
chapter.plot_vae_curves(vae_histories)
plt.show()
# %%
caption = "Validation exact −ELBO of the discrete VAE after 15 epochs, by estimator"
display(chapter.vae_table(vae_histories, vae_seeds, caption))
print(chapter.vae_ranking(vae_histories))
if vae_recorded:
    p = vae_recorded["provenance"]
    display(
        book.how_measured(
            "estimators",
            keys=["categorical_vae"],
            seeds=vae_seeds,
            details={
                "training runs": p["command"],
                "their code version (commit)": p["commit"],
                "devices": "; ".join(p["devices"]),
                "training time, all runs": f"{p['wall_time_s'] / 60:.0f} min",
            },
        )
    )

# %% [markdown]
# The curves start in one of two ways ({numref}`fig-estimators-vae-curves`). Many
# sit for a while on a plateau near 200 nats: the encoder spreads each image evenly
# over the classes and the decoder draws the same average digit for all of them,
# close to a symmetric saddle where even the exact gradient is nearly zero. In the
# recorded runs NVIL left it within the first epoch with every seed; CONCRETE,
# whose relaxed gradient holds the class probabilities near uniform, stayed longest
# (three to nine of its fifteen epochs); the exact gradient, REBAR and RELAX left it
# after one to three epochs with some seeds and at once with others. So a final
# number reflects when a run escaped as much as the estimator's quality (the thesis
# {cite}`borea17thesis` also reports that these models often get trapped in local
# minima). The interval in the table says how far five seeds pin down each mean;
# the sentence under it says which estimators they can and cannot tell apart.
#
# The ten prototypes the decoder draws, one per class: in read mode from the
# shipped model, the run with the best validation bound among the recorded ones
# (chosen without a test image), otherwise from the last model trained above.

# %% mystnb={"figure": {"caption": "The ten images the trained discrete VAE's decoder draws, one per class of its latent: prototypes of MNIST digits.", "name": "fig-estimators-prototypes"}, "image": {"alt": "Ten blurry average digits in a row"}}
if vae_model is None:
    recipe = shipped_recipe()  # the shipped run's estimator, from the manifest
    run = load_or_train(recipe, MODE)
    vae_model = run.model
    if run.record["loaded"]:
        entry = read_manifest()["checkpoints"][recipe.shipped_name()]
        metrics = entry["metrics"]
        print(
            f"The shipped model: trained with {chapter.name_of(metrics['estimator'])}, "
            f"seed {entry['seed']}, {metrics['epochs']} epochs; validation exact −ELBO "
            f"{book.fmt(metrics['val_exact_neg_elbo'], 4)} nats."
        )
image_grid(vae_model.cpu().prototypes(), nrow=10)
plt.show()
# %% [markdown]
# Finally the question of the toys, asked of the model: at one trained VAE, frozen
# (the shipped one), how noisy is each estimator's gradient for the encoder's
# logits? Each estimator's learned parts (baselines reading the image, as in
# training) are tuned on training batches first; then many estimates are drawn per
# held-out image and compared with the exact gradient (ten decoder calls). Here
# $f(b) = -\log p(x\mid b)$ differs by tens of nats between classes and from image
# to image, which no constant follows.

# %%
statistics = recorded.get("trained_vae_variance") if recorded and MODE == READ else None
if statistics is None and MODE != READ:
    statistics = vae_gradient_statistics(vae_model, quick=MODE == QUICK)
    if MODE == QUICK:
        print("quick run (a tiny model, few samples): these numbers are not results")
if statistics is None:
    print(
        "Not measured in this edition: no recorded gradient noise of the trained VAE."
    )
else:
    display(chapter.gradient_noise_table(statistics))
    if MODE == READ:
        display(book.how_measured("estimators", keys=["trained_vae_variance"]))

# %% [markdown]
# Here, for once, the relaxation earns its keep. REBAR and RELAX have the lowest
# variance, several times below NVIL's, because their relaxed cost
# $f(\mathrm{softmax}(z/\lambda))$ moves with the decoder's cost for each class,
# which a baseline, however well it reads the image, cannot. REINFORCE's variance is
# hundreds of times larger: its learning signal is the whole reconstruction error of
# about 170 nats. CONCRETE's variance is below NVIL's, but its bias z-score is in
# the thousands: it is quiet and wrong.
#
# The z-scores of REINFORCE and NVIL are huge for another reason. Where the encoder
# is all but certain of one class, a thousand samples draw nothing else; their
# estimates are then almost identical, the standard error is almost zero, and the
# tiny contribution of the classes never drawn, which the exact gradient includes,
# amounts to a vast number of those standard errors. That is a rare event overlooked, not a
# bias. REBAR's and RELAX's relaxed terms vary with every draw of $z$ even when $b$
# does not, and carry some of the other classes' costs, so their standard errors
# are honest and their z-scores are near 1, as an unbiased estimator's should be.
# This is the situation the REBAR paper was built for, and the toys, with a single
# variable and a cost no larger than 1, could not show it.

# %% [markdown]
# ## What fails
#
# *A relaxation optimises the wrong problem.* CONCRETE's gradient is the exact
# gradient of the *relaxed* cost $\mathbb E[f(\tilde b)]$, and on the Bernoulli toy
# that cost is smallest when the relaxed sample lands *at* $t \approx 0.5$, in the
# middle between the two outcomes, that is at $p \approx 0.5$. So CONCRETE holds $p$
# there and never finds the better outcome, while every unbiased estimator, however
# noisy, drifts towards it ({numref}`fig-estimators-wrong-choice`). No number of
# samples fixes this: the bias is in the expectation, not in the noise. Lowering the
# temperature shrinks the bias but raises the variance
# ({numref}`fig-estimators-concrete-bias`).
#
# *Noise that drowns a small signal.* REINFORCE is unbiased, yet after 10,000 steps
# of the Bernoulli toy it is still far from the optimum: its learning signal carries
# the offset of $0.25$ with a random sign, and the difference of $0.002$ that matters
# is lost in it. A baseline is not an optional refinement.
#
# *Plateaus that no estimator escapes.* In the discrete VAE, some runs spend many
# epochs on the plateau where all classes draw the same average digit
# ({numref}`fig-estimators-vae-curves`): the exact gradient is nearly zero there, so
# a less noisy estimator is not better at leaving it, and a noisier one can be.

# %% mystnb={"figure": {"caption": "The probability of the costlier outcome (b = 1) during training on the Bernoulli toy with t = 0.499, read off the exact expected cost, mean over repetitions. The unbiased estimators drive it towards 0; CONCRETE holds it near 0.5.", "name": "fig-estimators-wrong-choice"}, "image": {"alt": "Probability of the wrong outcome over steps: near 0 for most estimators, about 0.5 for CONCRETE"}}
chapter.plot_wrong_choice(curves, "replication_t0.499")
plt.show()

# %% [markdown]
# ## Summary
#
# - The score function (REINFORCE) makes any discrete choice differentiable in
#   expectation, but its noise is dominated by the offset of the cost.
# - A baseline (NVIL) removes that offset and cuts the variance by orders of
#   magnitude on the toys; on one variable it is as good as anything else here.
# - A relaxation (CONCRETE) has low variance but a bias that can lead training to
#   the wrong answer.
# - As a control variate next to a baseline, the relaxation keeps the estimate
#   unbiased (REBAR); a learned control variate (RELAX) chooses its own. They gain
#   little over a good baseline on a single toy variable, but at a trained discrete
#   VAE, whose cost differs by tens of nats between classes, they are the quietest.
# - In training the discrete VAE, when a run leaves the symmetric plateau matters as
#   much as which estimator it uses; five seeds per estimator rank some of them and
#   leave others within each other's intervals.
# - The tests (`tests/test_estimators.py`) check at fixed parameters that
#   REINFORCE, NVIL, REBAR and RELAX average to the exact gradient within three
#   standard errors, and that CONCRETE's bias shrinks with the temperature.
#   Chapter 5 trains the D-VAE with these estimators, and Chapter 6 uses NVIL for
#   AIR's "one more object?" choice.
#
# ## Exercises
#
# 1. In the CONCRETE section, add the temperatures 0.02 and 0.01 to
#    `temperatures`. Does the bias keep shrinking, and what does the variance do?
#    Which temperature would you train with?
# 2. On the Bernoulli toy at $\theta = 1$ (`theta = torch.tensor([[0.0, 1.0]])`,
#    cost `replication`), compute $c = (1-p) f(1) + p f(0)$ with $p = \sigma(1)$.
#    Build `NVIL().eval()` (in evaluation mode its running mean stays 0), fill its
#    `bias` with $c$, and run `chapter.check` on it. Why is the variance (almost)
#    zero? Repeat with $c = \mathbb E[f]$.
# 3. In the widget cell, set the target of `widget_cost` to 0.499, the toy of the
#    experiments. With 10 samples, how often does REINFORCE's mean even have the
#    sign of the exact gradient across the three draws? And NVIL's?
# 4. Train the discrete VAE with NVIL and a sixth seed: in train mode,
#    `load_or_train(CategoricalVAERecipe(estimator="nvil"), MODE, seed=5)` (a few
#    minutes on a CPU). Does its final validation bound fall within the recorded
#    interval of NVIL's mean?
# 5. Give the discrete VAE twenty classes instead of ten
#    (`CategoricalVAERecipe(num_classes=20)`) and look at its prototypes. What do
#    the extra classes draw?
