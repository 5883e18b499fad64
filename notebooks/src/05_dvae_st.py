# %% [markdown]
# # D-VAE and D-VAE-ST: objects as prototype modifications
#
# Chapter 3 ended with a VAE whose latent code is a single categorical variable:
# ten classes, and a decoder that can therefore draw only ten images. This chapter
# takes that observation seriously. If a model must explain every image as one of
# $K$ pictures, it has to *sort* the images into $K$ groups, with no labels: it
# clusters. The $K$ pictures are its **prototypes**, and on MNIST we can simply
# look at them and see which digit each group is.
#
# Prototypes alone sort poorly: a slanted 7 and an upright 7 are far apart pixel by
# pixel. Seed 000 (the strimadec thesis) adds the spatial transformer of Chapter 4:
# each image is a prototype *moved* by an inferred affine transformation, the
# **D-VAE-ST**. Its best run found the ten digit classes with 93.52 % accuracy,
# but its ten seeds ranged from 68.5 % to 93.5 % (mean 77.3 %). This chapter builds
# both models from the package, measures them the way the thesis did, finds out why
# seeds fail, and tests a remedy.

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
# *Read* mode (the default) shows the recorded runs from `results/dvae.json`
# (most runs on an H100, the estimator comparison and the overclustering on a
# 2-core CPU; `python -m objectcentric reproduce dvae --scale full` reruns them all)
# and loads the recorded D-VAE-ST shipped in `checkpoints/`. *Quick* mode trains
# tiny models for a few steps so that every cell runs; its numbers are not
# results. *Train* mode (`TRAIN = True` or `OBJECTCENTRIC_TRAIN=1`) trains the
# main configurations at full settings, five seeds each, one run per seed:
# minutes on a GPU, hours on a CPU. If the recorded runs are missing, read mode
# says so and falls back to the quick run.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from objectcentric import runner
from objectcentric.checkpoints import CheckpointError, checkpoint_dir, read_manifest
from objectcentric.clustering import cluster_to_class, clustering_accuracy, confusion_matrix, contingency
from objectcentric.data import DatasetUnavailableError, load_dataset
from objectcentric.experiments import dvae as recipe
from objectcentric.experiments.dvae import DVAERecipe
from objectcentric.models.dvae import DVAE, DVAEST
from objectcentric.modes import QUICK, READ, TRAIN as TRAIN_MODE, run_mode
from objectcentric.recipes import from_settings
from objectcentric.records import read_results, results_dir
from objectcentric.viz import confusion_plot, image_grid, prototype_grid, show_source
from objectcentric.widgets import assignment_slider, prototype_explorer

TRAIN = False  # True: train the main configuration at full settings instead of reading the recorded runs
MODE = TRAIN_MODE if TRAIN and run_mode() != QUICK else run_mode()
PROTOTYPES = results_dir() / recipe.PROTOTYPES_FILE
recorded = (read_results(recipe.RESULTS_NAME) or None) if MODE == READ else None
if recorded is not None and recorded["quick"]:
    recorded = None  # a quick run's numbers are never shown as results
if MODE == READ and recorded is None:
    print("The recorded runs (results/dvae.json) are missing: this page falls back to a quick run below. "
          "Its numbers are not results.")
torch.manual_seed(0)
print(f"mode: {MODE}; recorded runs: {'found' if recorded else 'none'}")

# %% [markdown]
# ## The data
#
# Seed 000's datasets: *SimplifiedMNIST* (only the digits 2, 6 and 9; three
# clusters), *FullMNIST* (ten), *FashionMNIST* (ten kinds of clothes
# {cite}`xiao2017fashion`, offline from Debian's `dataset-fashion-mnist` package) and
# *Letters* (EMNIST's 26 letters {cite}`cohen2017emnist`, only where it can be
# downloaded). The labels are used for one thing only: to score a clustering.

# %%
datasets = {}
for name in ("SimplifiedMNIST", "FullMNIST", "FashionMNIST", "Letters"):
    try:
        datasets[name] = load_dataset(name, "test", download=name != "Letters")
    except DatasetUnavailableError as error:
        print(f"{name}: skipped. {str(error).splitlines()[0]}")
fig, axes = plt.subplots(len(datasets), 1, figsize=(9, 1.1 * len(datasets)))
for ax, (name, data) in zip(np.atleast_1d(axes), datasets.items()):
    image_grid(data.images[:16], nrow=16, ax=ax)
    ax.set_title(f"{name}: {len(data.class_names)} classes, {len(data.images)} test images", loc="left", fontsize=9)
fig.tight_layout()

# %% [markdown]
# ## Why a discrete latent gives prototypes
#
# The **D-VAE** has one categorical latent $b \in \{1, \dots, K\}$ with a uniform
# prior. The encoder (784-400-400-$K$) gives the probabilities $q(b \mid x)$; the
# decoder (one-hot $K$ → 800 → 784, linear output) turns class $k$ into a mean image
# $\mu_k$, and the likelihood is a Gaussian with a *fixed* variance $\sigma^2 = 0.15$
# per pixel. So
#
# $$
# -\log p(x \mid b = k) = \frac{\lVert x - \mu_k \rVert^2}{2\sigma^2} + \text{const},
# $$
#
# a squared distance to prototype $\mu_k$, and the negative ELBO is
#
# $$
# \mathcal L(x) = \sum_k q(k \mid x)\, \frac{\lVert x - \mu_k \rVert^2}{2\sigma^2}
# + \mathrm{KL}\big(q(b \mid x) \,\Vert\, \mathrm{uniform}\big) + \text{const}.
# $$
#
# Minimising it over $q$ puts each image on its nearest prototype; over the
# $\mu_k$, it moves each prototype to the mean of its images. That is k-means, with
# the assignment step learned by a network. The prototypes are simply the decoder's
# $K$ outputs:

# %%
show_source(DVAE.prototype_means)
show_source(DVAE.negative_log_likelihood)

# %% [markdown]
# The reconstruction term goes through a gradient estimator from Chapter 3, as the
# cost $f(b)$ of the sampled class. With $K = 10$ the **exact** gradient is cheap:
# it evaluates $f$ at all $K$ classes, and a one-hot code only reads one of the $K$
# prototypes, computed once per step. It is the most reliable choice here, and the
# main runs use it; the other estimators stay selectable for comparison. The model
# can also hold several seeds *side by side* as replicas (every layer holds one
# copy of its weights per seed; the recorded runs before the book's runner were
# trained that way); the chapter's recipe trains one seed per run.

# %%
show_source(DVAE.loss)
model = DVAE(num_classes=10, estimator="exact", replicas=2, seeds=[0, 1])
batch = datasets["FullMNIST"].images[:8]
terms = model.loss(batch)
print("logits:", tuple(model.encode(batch).shape), "(replicas, images, K);  prototypes:",
      tuple(model.prototypes().shape))
print({name: round(float(value.detach()), 2) for name, value in terms.items()})

# %% [markdown]
# ## Scoring a clustering
#
# A clustering names its clusters arbitrarily, so to score it against the labels
# each cluster is first mapped to a class. With as many clusters as classes the
# mapping is one-to-one: the assignment that agrees with the most labels, found by
# the Hungarian algorithm {cite}`kuhn1955hungarian` (`scipy.optimize.linear_sum_assignment`)
# on the table of counts. With more clusters than classes (*overclustering*) each
# cluster takes the majority class of its members, several clusters may share a
# class, and the score is the *purity*. The thesis measured on the training
# images; we report those and the held-out test images.

# %%
show_source(cluster_to_class)
labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
clusters = np.array([2, 2, 2, 0, 1, 1, 1, 1, 0, 0, 0, 2])
print("counts (cluster x class):\n", contingency(clusters, labels))
print("cluster -> class:", cluster_to_class(contingency(clusters, labels)).tolist(),
      f"accuracy {clustering_accuracy(clusters, labels):.3f}")

# %% [markdown]
# ## Training
#
# The recipe (`DVAERecipe` in `objectcentric.experiments.dvae`): Adam with learning rate
# $5\cdot 10^{-4}$ and weight decay $10^{-6}$, batches of 1,000 images, as in the
# thesis, but at most 60 epochs instead of 150, and fewer where a run's time budget
# ended first (the tables below say how many each did). The recorded runs: D-VAE
# and D-VAE-ST on the three datasets, five seeds each and ten for the main one
# (D-VAE-ST on FullMNIST with the exact gradient), overclustering with $K = 11, 12$,
# and every estimator of Chapter 3 on the main configuration, the thesis's RELAX
# included. In quick mode (and in read mode without recorded
# runs) the cell below trains the same configurations on 1,000 images for three
# epochs instead, which shows the machinery and nothing else. Either way, one call
# per run, `runner.load_or_train(DVAERecipe(...), MODE, seed)`, and each run is
# scored as the recorded experiment scores it (`recipe.run_report`).

# %%
show_source(DVAERecipe.step)
show_source(DVAERecipe.end_of_epoch)
QUICK_CONFIGS = [("dvae", "robust"), ("dvae_st", "thesis"), ("dvae_st", "robust")]
quick_models = {}  # (kind, variant) -> the trained models, one per seed


def train_here(configs, seeds, mode):
    """Train (or, in quick mode, train the quick scale of) each configuration for each seed, and score the runs."""
    reports = []
    for kind, variant in configs:
        for seed in seeds:
            run = runner.load_or_train(DVAERecipe(kind=kind, variant=variant), mode, seed, progress="none")
            trained_recipe = from_settings(DVAERecipe.name, run.record["settings"])
            quick_models.setdefault((kind, variant), []).append(run.model)
            reports.append(recipe.run_report(run.model, trained_recipe, run.record, run.history))
    return recipe.merge_reports(reports)


if MODE == TRAIN_MODE:
    runs = train_here([("dvae", "robust"), ("dvae_st", "robust")], range(5), TRAIN_MODE)
    source = "trained here at full settings (main configurations only)"
elif recorded is not None:
    runs = recorded
    commits = ", ".join(dict.fromkeys(commit[:12] for commit in recorded["commit"].split("; ")))
    source = (f"recorded by {recorded['command']}\n(commits {commits}; {recorded['device']}; last run "
              f"{recorded['date'][:10]}; {recorded['wall_time_s'] / 60:.1f} min of wall time in all)")
else:
    runs = train_here(QUICK_CONFIGS, (0, 1), QUICK)
    source = "QUICK RUN (1,000 images, 3 epochs, 2 seeds): not results"
details = runs["details"]
print(source)


def row(model, dataset="FullMNIST", estimator="exact", k=None, variant="robust", split="train"):
    """The recorded entry of one configuration and split, or None."""
    k = k or {"SimplifiedMNIST": 3, "Letters": 26}.get(dataset, 10)
    return next((r for r in runs["runs"] if (r["model"], r["dataset"], r["estimator"], r["k"], r["variant"],
                                             r["split"]) == (model, dataset, estimator, k, variant, split)), None)


def prototypes_of(model, dataset="FullMNIST", estimator="exact", k=None, variant="robust"):
    """Every seed's prototypes (seeds, K, 28, 28) in [0, 1], from the recorded file or the quick models."""
    k = k or {"SimplifiedMNIST": 3, "Letters": 26}.get(dataset, 10)
    if recorded is None and (model, variant) in quick_models and dataset == "FullMNIST":
        return np.stack([m.prototypes()[0, :, 0].cpu().numpy() for m in quick_models[(model, variant)]])
    if PROTOTYPES.exists():
        with np.load(PROTOTYPES) as stored:
            name = recipe.run_name(model, dataset, estimator, k, variant)
            if name in stored:
                return stored[name] / 255.0
    return None


# %% [markdown]
# ## Why prototypes alone fail
#
# Here are the D-VAE's prototypes (its best seed on FullMNIST), each under the class
# it is matched to and the share of the training images it takes:

# %%
def show_prototypes(model, variant="robust", which="best", dataset="FullMNIST", k=None, estimator="exact"):
    entry = row(model, dataset, estimator, k, variant)
    pictures = prototypes_of(model, dataset, estimator, k, variant)
    if entry is None or pictures is None:
        print(f"no recorded {model} {variant} run on {dataset}")
        return None
    name = recipe.run_name(model, dataset, estimator, entry["k"], variant)
    accuracy = entry["accuracy_by_seed"]
    index = int(np.argmax(accuracy) if which == "best" else np.argmin(accuracy))
    info = details[name]
    titles = recipe.prototype_titles(info["train"]["mapping"][index], info["train"]["cluster_sizes"][index],
                                     info["class_names"])
    prototype_grid(pictures[index], titles, ncol=min(len(titles), 12),
                   title=f"{model} ({variant}), {dataset}, seed {info['seeds'][index]} ({which}): "
                         f"{100 * accuracy[index]:.1f} % on the training images")
    return index


show_prototypes("dvae")
entry = row("dvae")
if entry:
    print(f"D-VAE on FullMNIST, training images: mean {entry['mean']:.2%}, best {entry['best']:.2%}, "
          f"worst {entry['worst']:.2%} over {len(entry['accuracy_by_seed'])} seeds (thesis: 58.86 %)")

# %% [markdown]
# Each prototype is an average of the images assigned to it, so it is blurred by
# everything that varies within a class: slant, thickness, position, size. In
# squared distance a slanted 1 can be closer to a blurry 7 than to an upright 1, so
# clusters can form around *styles* (thin and slanted, round and heavy) as much as
# around digits. The thesis's D-VAE reached 58.86 %.
#
# ## D-VAE-ST: a prototype plus a transformation
#
# The D-VAE-ST lets each image move its prototype first. A second network
# (784-400-400-12) reads the image and outputs the mean and log-variance of the six
# numbers of an affine window $\theta = [A \mid t]$ (Chapter 4's convention: the
# reconstruction at point $p$ reads the prototype at $A p + t$). The prior on
# $\theta$ is $\mathcal N(\text{identity}, 0.01)$, and the network's last layer starts
# with zero weights and the prior as bias, so at first every transformation is a
# small random jitter around the identity. The reconstruction is the warped prototype
#
# $$
# -\log p(x \mid b = k, \theta) = \frac{\lVert x - \mathrm{warp}(\mu_k, \theta) \rVert^2}{2\sigma^2} + \text{const},
# $$
#
# and the ELBO gains a term $\mathrm{KL}(q(\theta \mid x) \,\Vert\, p(\theta))$.

# %%
show_source(DVAEST.sample_transform)
show_source(DVAE.reconstruction_cost)

# %% [markdown]
# One detail matters for the estimators. The transformation is sampled **once per
# image**, before the estimator runs, and the cost function $f$ it receives warps
# with that same sample whichever class it is asked about: the exact gradient's $K$
# evaluations, and REBAR's and RELAX's $f(b)$, $f(z)$ and $f(\tilde z)$, all compare
# prototypes under one transformation. The thesis code drew a fresh transformation
# inside each evaluation, so its control variates tracked a different cost than the
# one they were meant to cancel. (The tests check both: one draw per loss, and the
# same transformation object in every call of $f$.)
#
# The warp itself is `F.affine_grid` followed by the bilinear reading that
# `F.grid_sample` does, written with gathers (`spatial.bilinear_taps`): the same
# numbers, but with derivatives of every order on any PyTorch version. REBAR and
# RELAX need the second derivative (they differentiate the variance of a gradient
# that went through the warp), and `grid_sample` only has one in recent releases; the
# thesis had to detach part of that objective for this reason. Computing the taps
# once also serves all $K$ prototypes.
#
# ## Why seeds fail, and a remedy
#
# How does a seed go wrong? In short runs of the thesis recipe on a CPU (5,000
# training images, 12 epochs: a probe, not a result) one seed ended with two
# prototypes holding 8 and 20 of the 5,000 images while another held 29 %. The
# mechanism is a rich-get-richer start: a prototype that fits many images on
# average pulls them (the encoder's output bias learns this first), and a
# prototype that receives no images receives no gradient either, so it stays dead.
# Then some prototype has to draw two digits (a 4 that also draws the 9s), and the
# gradient has no way out of that state.
#
# The ELBO already holds the cure, in small dose. Averaged over the data, its KL
# term splits into two parts {cite}`hoffman2016elbo`:
#
# $$
# \mathbb E_x\, \mathrm{KL}\big(q(b \mid x) \,\Vert\, p(b)\big)
# = I_q(x; b) + \mathrm{KL}\big(\bar q(b) \,\Vert\, p(b)\big),
# \qquad \bar q(b) = \mathbb E_x\, q(b \mid x).
# $$
#
# The second part is zero only when the prototypes are used as often as the
# uniform prior says. The *robust* recipe adds it once more, with weight 20,
# computed on each batch of 1,000 images: a collapse onto few prototypes now costs
# more than the reconstruction gains early on, so every prototype keeps images and
# gradient while the prototypes form. It assumes roughly balanced classes, which
# holds for all four datasets. Two other remedies are recorded as ablations:
# *split* (move a nearly empty cluster onto the largest one, as a perturbed copy
# that splits its images) and *kmeans* (start the prototypes from training images
# picked by k-means++ {cite}`arthur2007kmeanspp`). In short CPU trials the
# k-means++ start, *without* the extra term, made things worse: distinct sharp
# prototypes only make the rich-get-richer start faster: all images went to one
# cluster within an epoch. In the same probes the robust recipe reached 79-92 %
# on five seeds where the thesis recipe reached 54-69 % on two, and a lower
# negative ELBO (68 against 78 nats), i.e. a better optimum of the ELBO itself.
# The recorded runs below are the real test.

# %%
show_source(DVAE.marginal_kl)


# %% [markdown]
# The recorded evidence: D-VAE-ST on FullMNIST with the exact gradient, per seed,
# for each recipe, and the accuracy over training (on 10,000 training images,
# after every epoch; the band spans the seeds). Runs of one seed each record
# `val_accuracy`; the recorded runs, trained several seeds side by side, their
# seeds' mean, lowest and highest.

# %%
def curves(ax, name, label, color):
    by_epoch = {}  # epoch -> every seed's (lowest, mean, highest) accuracy
    for part in details[name]["histories"]:
        for h in part["history"]:
            keys = ("val_accuracy",) * 3 if "val_accuracy" in h else \
                tuple(f"val_accuracy_{key}" for key in ("min", "mean", "max"))
            by_epoch.setdefault(h["epoch"], []).append([h[key] for key in keys])
    epochs = sorted(by_epoch)
    low = [min(v[0] for v in by_epoch[e]) for e in epochs]
    high = [max(v[2] for v in by_epoch[e]) for e in epochs]
    mean = [np.mean([v[1] for v in by_epoch[e]]) for e in epochs]
    ax.fill_between(epochs, low, high, color=color, alpha=0.2, lw=0)
    ax.plot(epochs, mean, color=color, label=label)


lines = ["| recipe | seeds | training images: per seed | mean | best | worst | test mean |", "|---|---|---|---|---|---|---|"]
fig, ax = plt.subplots(figsize=(7, 3.2))
for variant, color in (("thesis", "tab:red"), ("robust", "tab:blue"), ("split", "tab:orange"), ("kmeans", "tab:green")):
    train_row, test_row = row("dvae_st", variant=variant), row("dvae_st", variant=variant, split="test")
    if train_row is None:
        continue
    seeds = ", ".join(f"{100 * a:.1f}" for a in train_row["accuracy_by_seed"])
    lines.append(f"| {variant} | {len(train_row['accuracy_by_seed'])} | {seeds} | {100 * train_row['mean']:.1f} | "
                 f"{100 * train_row['best']:.1f} | {100 * train_row['worst']:.1f} | {100 * test_row['mean']:.1f} |")
    curves(ax, recipe.run_name("dvae_st", "FullMNIST", "exact", 10, variant), variant, color)
ax.axhline(0.773, color="gray", ls=":", lw=1, label="thesis mean (RELAX, 150 epochs)")
ax.set(xlabel="epoch", ylabel="accuracy", title=f"D-VAE-ST, FullMNIST: accuracy during training ({source.splitlines()[0][:40]}…)")
ax.legend(fontsize=8)
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Results against the thesis
#
# Every recorded configuration, on the training images (the thesis's protocol) and
# on the test images, in percent. *Epochs* is what each configuration completed
# within its time budget (60 were planned; the thesis ran 150).

# %%
TARGETS = {("dvae_st", "FullMNIST"): "thesis best 93.52, mean 77.3, worst 68.5; issue: mean ≥ 90, best ≥ 95",
           ("dvae", "FullMNIST"): "thesis 58.86", ("dvae_st", "FashionMNIST"): "thesis 61.91",
           ("dvae_st", "SimplifiedMNIST"): "thesis 99.43"}
lines = ["| model | dataset | estimator | K | recipe | split | mean | best | worst | seeds | epochs | compare |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in runs["runs"]:
    compare = TARGETS.get((r["model"], r["dataset"]), "") if r["split"] == "train" and r["k"] in (3, 10) else ""
    epochs = sorted(set(r["epochs"]))
    lines.append(f"| {r['model']} | {r['dataset']} | {r['estimator']} | {r['k']} | {r['variant']} | {r['split']} | "
                 f"{100 * r['mean']:.2f} | {100 * r['best']:.2f} | {100 * r['worst']:.2f} | {len(r['seeds'])} | "
                 f"{'/'.join(map(str, epochs))} | {compare} |")
display(Markdown("\n".join(lines)))
for skipped in runs.get("skipped", []):
    print(f"not run: {skipped['model']} on {skipped['dataset']}: {skipped['skipped'].splitlines()[0]}")
main = row("dvae_st")
if main and (recorded is not None or MODE == TRAIN_MODE):
    verdicts = {"mean ≥ 90 %": main["mean"] >= 0.90, "best ≥ 95 %": main["best"] >= 0.95,
                "mean above the thesis's 77.3 %": main["mean"] > 0.773}
    print("D-VAE-ST, FullMNIST, exact, robust recipe:", "; ".join(f"{k}: {'met' if v else 'MISSED'}"
                                                                  for k, v in verdicts.items()),
          f"(measured mean {main['mean']:.2%}, best {main['best']:.2%}, worst {main['worst']:.2%})")
print(source)

# %% [markdown]
# ## The best D-VAE-ST: prototypes, assignments, transformations
#
# In read mode this is the recorded seed of the main configuration shipped as a
# checkpoint; otherwise the run trained here with the lowest negative ELBO on its
# own training images (how the recorded experiment picks the seed it ships: no
# labels). Its clusters are mapped to classes here on the test images.

# %%
CHECKPOINT = DVAERecipe().shipped_name()
best = None
if MODE == READ and recorded is not None and (checkpoint_dir() / CHECKPOINT).is_file():
    try:
        best = runner.load_or_train(DVAERecipe(), READ).model
        entry = read_manifest()["checkpoints"][CHECKPOINT]
        print(f"seed {entry['seed']}, trained by {entry['command']}\n"
              f"commit {entry['commit'][:12]}, {entry['device']}; {entry['metrics']}")
    except CheckpointError as error:
        print(f"the shipped checkpoint is damaged ({error}); using a quick model instead")
if best is None:
    if ("dvae_st", "robust") not in quick_models:  # recorded runs but no checkpoint: a quick model, for the pictures
        quick_models[("dvae_st", "robust")] = [runner.load_or_train(DVAERecipe(), QUICK, progress="none").model]
    main_info = details.get(recipe.run_name(*recipe.MAIN), {})
    candidates = quick_models[("dvae_st", "robust")]
    elbo = main_info.get("train", {}).get("neg_elbo", []) if recorded is None else []
    pick = int(np.argmin(elbo)) if len(elbo) == len(candidates) else 0
    best = candidates[pick]
    print(f"the seed trained here with the lowest training -ELBO (seed {main_info['seeds'][pick]})"
          if len(elbo) == len(candidates) else "a quick model", "" if MODE == TRAIN_MODE else
          "— QUICK MODEL (not a result): trained for a few steps only")
best = best.cpu().eval()
test = datasets["FullMNIST"]
with torch.no_grad():
    assigned = torch.cat([best.assign(chunk)[0] for chunk in test.images.split(2000)])
matrix, mapping = confusion_matrix(assigned, test.labels, best.num_classes, 10)
sizes = np.bincount(assigned.numpy(), minlength=best.num_classes)
print(f"accuracy on the {len(test.images)} test images: {clustering_accuracy(assigned, test.labels):.2%}")
prototype_grid(best.prototypes()[0, :, 0], recipe.prototype_titles(mapping, sizes, test.class_names),
               title="the prototypes, with the class each is matched to and its share of the test images");

# %% [markdown]
# For some test images: the image, the prototype its cluster draws, and that
# prototype moved by the transformation inferred from the image (the mean of
# $q(\theta \mid x)$), which is the reconstruction. Move the slider to step through
# the images.

# %%
chosen = test.images[:24]
explained = best.explain(chosen)
strips = torch.stack([chosen[:, 0], explained["prototype"][0, :, 0], explained["reconstruction"][0, :, 0]], 1)
assignment_slider(strips.numpy(), captions="image · its prototype · the prototype moved by the inferred "
                  "transformation (reconstruction)", description="test image")

# %%
fig, axes = plt.subplots(1, 6, figsize=(10, 2))
for i, ax in enumerate(axes):
    theta = explained["theta"][0, i]
    ax.imshow(torch.cat([chosen[i, 0], explained["reconstruction"][0, i, 0]], 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title("A = [[{:.2f} {:.2f}]\n     [{:.2f} {:.2f}]]\nt = ({:.2f}, {:.2f})".format(
        *theta[:, :2].flatten().tolist(), *theta[:, 2].tolist()), fontsize=7, family="monospace")
    ax.set_axis_off()
fig.suptitle("image | reconstruction, with the inferred window θ = [A | t]", fontsize=9);

# %% [markdown]
# ## The prototype explorer
#
# Pick a prototype and move it along each parameter of the transformation: scale,
# rotation (radians), shear and shift, each as a change from the identity. Recall
# Chapter 4's direction: $\theta$ describes the *window* the reconstruction reads,
# so a larger window scale draws a smaller digit. The frames are computed in
# advance, so the sliders also work in the static book; in a running notebook, the
# image at the top applies all five sliders of the shown prototype at once.

# %%
prototype_images = best.prototypes()[0]
names = [f"{k}→{test.class_names[c]}" if c >= 0 else str(k) for k, c in enumerate(mapping)]
frames = {name: recipe.transform_traversal(prototype_images[k]) for k, name in enumerate(names)}


def render(name, changes):
    from objectcentric.spatial import transform

    k = names.index(name)
    return transform(prototype_images[k][None], recipe.theta_from_changes(changes))[0, 0].clamp(0, 1)


prototype_explorer(frames, recipe.TRANSFORM_PARAMETERS, recipe.TRAVERSAL_VALUES, render=render)

# %% [markdown]
# ## Where it still fails
#
# The worst recorded seed of the main configuration: its prototypes and its
# confusion matrix on the training images (rows: true digit; columns: the class
# its cluster was matched to). Failures have a typical shape: two prototypes
# for one digit and one prototype for two.

# %%
name = recipe.run_name("dvae_st", "FullMNIST", "exact", 10, "robust")
worst = show_prototypes("dvae_st", which="worst")
if worst is not None:
    info = details[name]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    best_index = int(np.argmax(row("dvae_st")["accuracy_by_seed"]))
    for ax, index, label in ((axes[0], best_index, "best"), (axes[1], worst, "worst")):
        confusion_plot(info["train"]["confusion"][index], info["class_names"], ax=ax,
                       title=f"{label} seed ({info['seeds'][index]}): "
                             f"{100 * info['train']['accuracy'][index]:.1f} %")
    fig.tight_layout()
    elbo, accuracy = np.array(info["train"]["neg_elbo"]), np.array(info["train"]["accuracy"])
    order = np.argsort(elbo)
    print("seeds by training -ELBO (lower is better):",
          ", ".join(f"seed {info['seeds'][i]}: {elbo[i]:.1f} nats, {100 * accuracy[i]:.1f} %" for i in order))
    picked = info["seeds"][order[0]]
    shipped_seed = read_manifest()["checkpoints"].get(CHECKPOINT, {}).get("seed") if recorded is not None else None
    print(f"the ELBO picks seed {picked}" + ("" if shipped_seed in (None, picked) else
          f"; the shipped checkpoint holds seed {shipped_seed}, recorded before the experiment picked by the "
          "ELBO (it was chosen by training accuracy then)"))

# %% [markdown]
# The last line asks whether the model itself knows which seed is best: if the
# seed with the lowest negative ELBO is also the most accurate, restarting several
# seeds and keeping the best ELBO is a fair, label-free way to pick one. The table
# does this for every recorded configuration with more than one seed: the accuracy
# of the seed the ELBO picks, next to the mean and the best, and whether every
# seed that ended more than five points below the best also has a worse ELBO than
# all the good ones.

# %%
lines = ["| configuration | seeds | mean | best | picked by the ELBO | failed seeds ranked last by the ELBO |",
         "|---|---|---|---|---|---|"]
for name, info in details.items():
    accuracy, elbo = np.array(info["train"]["accuracy"]), np.array(info["train"]["neg_elbo"])
    if len(accuracy) < 2:
        continue
    failed = accuracy < accuracy.max() - 0.05
    separated = "no failed seed" if not failed.any() else \
        ("yes" if failed.all() or elbo[failed].min() > elbo[~failed].max() else "no")
    lines.append(f"| {name} | {len(accuracy)} | {100 * accuracy.mean():.1f} | {100 * accuracy.max():.1f} | "
                 f"{100 * accuracy[np.argmin(elbo)]:.1f} | {separated} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# **More clusters than classes.** With $K = 11$ or 12 a digit written in two styles
# can get two prototypes without costing another digit its own. The clusters are
# then mapped to classes by majority, so the accuracy (purity) can only gain from
# the extra clusters:

# %%
for k in (10, 11, 12):
    r = row("dvae_st", k=k)
    if r:
        print(f"K = {k}: mean {r['mean']:.2%}, best {r['best']:.2%}, worst {r['worst']:.2%} "
              f"({len(r['accuracy_by_seed'])} seeds, training images)")
show_prototypes("dvae_st", k=12);

# %% [markdown]
# **Other datasets.** SimplifiedMNIST needs only three well-separated prototypes; on
# FashionMNIST, shirts, T-shirts and pullovers differ in ways that an affine move of
# one prototype may not express:

# %%
for dataset in ("SimplifiedMNIST", "FashionMNIST"):
    for model in ("dvae", "dvae_st"):
        r = row(model, dataset)
        if r:
            print(f"{model:8s} {dataset:16s} mean {r['mean']:.2%}, best {r['best']:.2%}, worst {r['worst']:.2%}")

# %% [markdown]
# ## Which gradient estimator?
#
# Everything above trained with the exact gradient, which Chapter 3's estimators
# only approximate. The thesis trained its best D-VAE-ST with RELAX. Here is the
# same configuration (FullMNIST, $K = 10$, the robust recipe) with each estimator of
# Chapter 3, for the same 33 epochs the exact runs completed. The exact runs ran on
# an H100, ten seeds side by side; the single-sample estimators ran on a 2-core
# CPU, one process per seed. So *seconds per epoch* compare estimators within a
# device only: on the CPU they are per seed, on the GPU for five seeds at once.

# %%
ESTIMATORS = ("exact", "reinforce", "nvil", "concrete", "rebar", "relax")
lines = ["| estimator | recipe | seeds | epochs | training images: per seed | mean | best | worst | test mean "
         "| s / epoch | device |", "|---|---|---|---|---|---|---|---|---|---|---|"]
fig, ax = plt.subplots(figsize=(7, 3.4))
for color, estimator in zip(plt.cm.tab10.colors, ESTIMATORS):
    for variant in ("robust", "thesis"):
        train_row, test_row = row("dvae_st", estimator=estimator, variant=variant), \
            row("dvae_st", estimator=estimator, variant=variant, split="test")
        if train_row is None:
            continue
        seeds = ", ".join(f"{100 * a:.1f}" for a in train_row["accuracy_by_seed"])
        devices = ", ".join(d.split(" (")[0] for d in train_row.get("devices", ["?"]))
        lines.append(f"| {estimator} | {variant} | {len(train_row['seeds'])} | "
                     f"{'/'.join(map(str, sorted(set(train_row['epochs']))))} | {seeds} | "
                     f"{100 * train_row['mean']:.1f} | {100 * train_row['best']:.1f} | "
                     f"{100 * train_row['worst']:.1f} | {100 * test_row['mean']:.1f} | "
                     f"{train_row['seconds_per_epoch']} | {devices} |")
        if variant == "robust":
            curves(ax, recipe.run_name("dvae_st", "FullMNIST", estimator, 10, variant), estimator, color)
ax.axhline(0.773, color="gray", ls=":", lw=1, label="thesis mean (RELAX, 150 epochs)")
ax.set(xlabel="epoch", ylabel="accuracy (10,000 training images)",
       title="D-VAE-ST, FullMNIST, robust recipe: one estimator per colour")
ax.legend(fontsize=7, ncol=2)
display(Markdown("\n".join(lines)))
if len(lines) <= 3:
    print("only the exact gradient has a recorded (or quick) run here")

# %% [markdown]
# What the recorded runs say, with a caveat first: three to five seeds per
# estimator and 33 epochs cannot rank estimators whose seeds differ by a point or
# two.
#
# - **Failed seeds**, with the shape seen above (one digit split over two
#   prototypes while another prototype draws two digits), appear with the exact
#   gradient (3 of 10 seeds), RELAX (2 of 5), REBAR (1 of 5) and NVIL (2 of 3);
#   none of the three seeds of REINFORCE or CONCRETE failed. The exact gradient has no noise at
#   all and still fails, so a failure comes from the path the prototypes take while
#   they form, not from gradient noise as such.
# - **The remedy, with the thesis's own estimator.** With the thesis recipe (no
#   extra term), RELAX's four seeds ended at 70.0-82.1 % (mean 75.5 %), close to
#   the thesis's 68.5-93.5 % (mean 77.3 %) after 150 epochs. The robust recipe
#   raises RELAX's mean to 87.6 %, and the exact gradient's from 83.4 % to 89.9 %.
# - **Among the seeds that did not fail**, the final negative ELBO orders the
#   estimators as Chapter 3's variances predict: exact about 62.5 nats, REBAR and
#   RELAX about 63.2, NVIL 64.6, REINFORCE 65.0, CONCRETE 67.7. CONCRETE is
#   biased: it trains a relaxed model that blends prototypes, not the discrete
#   one. Accuracy follows the ELBO: 93.6-93.7 % for the exact gradient, 92.2-93.4 %
#   for REBAR and RELAX, about 90 % for REINFORCE and CONCRETE.
# - **Cost.** REBAR and RELAX cost about twice as much per step as REINFORCE, NVIL
#   or CONCRETE, because they also differentiate their own variance. (The seconds
#   in the table were measured while two or three jobs shared the CPU's two cores;
#   they are rough.) With ten classes, the exact gradient needs no estimator at
#   all. Estimators earn their keep when $K$ is large or when there are many
#   discrete choices, as in AIR's presence variables (Chapter 6).

# %% [markdown]
# ## What we built
#
# A discrete latent turns a VAE into a clustering model whose clusters can be
# read off its prototypes. A spatial transformer lets one prototype stand for a
# whole family of moved and sheared variants. The exact gradient over ten classes
# is cheap and gives the best ELBO; of the sampling estimators, REBAR and RELAX
# come closest. Prototypes that die early explain part of the seed-to-seed spread
# the thesis reported: weighting the ELBO's own KL(q̄ ‖ p) term more keeps them
# alive, and the tables above say how much of the spread that removes. What is
# left (a digit split over two prototypes) the model's own ELBO detects: train a
# few seeds and keep the one with the lowest negative ELBO, no labels needed. Chapter 7 (DAIR) puts this model inside
# AIR, to name each object it finds.
