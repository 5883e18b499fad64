"""Chapter 8 (stacked capsule autoencoders): the page's model, numbers, tables, figures and widgets.

The notebook (``notebooks/src/08_capsules.py``) tells the story and shows the
model's code (:mod:`objectcentric.models.scae`); this module draws what it
shows:

- :func:`load_model`: the trained SCAE (shipped, or trained on the page);
- :func:`evaluation`: the recorded results (``results/scae.json``) in read
  mode, else the same numbers measured here on the model trained on the page;
- figures: :func:`pose_figure` (a template painted through its pose's
  inverse and uninverted; no training needed), :func:`reconstruction_figure`,
  :func:`templates_figure`, :func:`compute_figure` (accuracy against
  training compute), :func:`presence_map_figure` (object presences in 2-D)
  and :func:`uninverted_figure` (the trained parts painted the uninverted way);
- widgets over precomputed frames, working in the static book:
  :func:`part_explorer` and :func:`object_explorer`;
- tables (:func:`recipe_table`, :func:`accuracy_table`, :func:`ports_table`,
  :func:`ablation_table`), each an :func:`objectcentric.book.table`, and the
  sentences generated from their numbers (``*_words``).

Every number in a sentence comes from the results (or from the model on the
page); the only numbers typed here are quotations of the public PyTorch ports
(:data:`PORTS`), each with its source.
"""

from __future__ import annotations

import dataclasses
import re

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .. import book, runner
from ..book import Raw, fmt, pct
from ..data.shifted_mnist import shifted_mnist_test
from ..experiments.scae import (
    FINAL_CHANGES,
    OFFICIAL_STEPS,
    PAPER,
    SCAERecipe,
    _kind,
    curve,
    features_of,
    final_recipe,
    score_run,
    training_canvases,
)
from ..models.scae import paint_templates
from ..modes import QUICK, READ
from ..records import read_results
from ..spatial import affine_matrix, window_outline
from ..widgets import choice_grid, tile_frames

__all__ = [
    "PORTS",
    "STROKE",
    "ablation_table",
    "ablation_words",
    "accuracy_table",
    "accuracy_words",
    "caveat",
    "compute_figure",
    "evaluation",
    "example_images",
    "explained_ink",
    "how_measured",
    "load_model",
    "object_explorer",
    "part_explorer",
    "pilots_figure",
    "pilots_table",
    "pilots_words",
    "ports_table",
    "pose_figure",
    "presence_map_figure",
    "recipe_table",
    "reconstruction_figure",
    "schedule_words",
    "settings_figure",
    "settings_words",
    "templates_figure",
    "training_words",
    "uninverted_figure",
]

QUICK_WORDS = " (a briefly trained model: not results)"
CANVAS = 40
FONT = ImageFont.load_default(size=13)
LINE = 17  # pixels per line of text under a frame
PART_RGB = [(255, 90, 90), (90, 220, 90), (90, 170, 255), (255, 190, 40)]  # red, green, blue, orange
PART_NAMES = ["red", "green", "blue", "orange"]
RANKS = [f"rank {r}" for r in range(1, 10)]
CLAIMED_RGB, VOTE_RGB = (255, 215, 0), (255, 60, 220)  # yellow: a part's pose; magenta: an object's vote

# The public PyTorch ports, as their own pages report them (quoted, not measured here).
PORTS = [
    {"port": "torch-scae (B. D. Saglam)", "accuracy": "about 85 %; a later user: at most 20 %", "nan": "–",
     "source": [("a user's report", "https://github.com/bdsaglam/torch-scae/issues/5"),
                ("a later one", "https://github.com/bdsaglam/torch-scae/issues/12")]},
    {"port": "stacked_capsule_autoencoders_pytorch (Dinngger)", "accuracy": "about 40 %", "nan": "–",
     "source": [("its README", "https://github.com/Dinngger/stacked_capsule_autoencoders_pytorch")]},
    {"port": "stacked-capsule-networks (P. Gampa)", "accuracy": "about 9.6 % (chance)",
     "nan": "after about 177 epochs",
     "source": [("a user's report", "https://github.com/phanideepgampa/stacked-capsule-networks/issues/16"),
                ("another", "https://github.com/phanideepgampa/stacked-capsule-networks/issues/7")]},
    {"port": "scae-pytorch (ML@Berkeley)", "accuracy": "none (part stage only)", "nan": "at epoch 26",
     "source": [("a user's report", "https://github.com/mlberkeley/scae-pytorch/issues/2")]},
]


def caveat(mode: str) -> str:
    """What to add to a title or caption in ``mode``: a warning in quick mode, else nothing."""
    return QUICK_WORDS if mode == QUICK else ""


def _p(fraction, digits: int = 1) -> str:
    """:func:`objectcentric.book.pct` with a no-break space, so that a narrow column never splits it."""
    return pct(fraction, digits).replace(" ", "\u00a0")


# --- the model and its numbers ----------------------------------------------------------------------
def load_model(mode: str, device):
    """``(run, model)``: the shipped SCAE in read mode, else one trained on the page (quick: a few steps)."""
    run = runner.load_or_train(final_recipe(), mode, device=device)
    return run, run.model.to(device).eval()


def example_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test canvases (MNIST's test digits at their fixed shifts) and their labels."""
    images, labels, _ = shifted_mnist_test()
    return images[:n], labels[:n]


def _n_test(results: dict):
    match = re.search(r"applied to the ([\d,]+) test digits", results.get("protocol", ""))
    return int(match.group(1).replace(",", "")) if match else results.get("n_test")


def evaluation(mode: str, run, model) -> dict:
    """The chapter's numbers: ``results/scae.json`` in read mode when it holds a scored run (``recorded``
    True); otherwise the same keys measured here on the model of the page (``recorded`` False): both
    k-means protocols and the probes on 200 test canvases in quick mode (2,000 otherwise), k-means fitted
    on as many training canvases, and the run's own curve; no ablations."""
    if mode == READ:
        recorded = read_results("scae")
        if recorded.get("accuracy_by_seed", {}).get("test_refit"):
            return {**recorded, "recorded": True, "n_test": _n_test(recorded)}
    n = 200 if mode == QUICK else 2000
    row = score_run(model, training_canvases(n), example_images(n))
    recipe = final_recipe().at_scale("quick") if mode == QUICK else final_recipe()
    history = run.history
    steps_per_epoch = -(-recipe.n_train // recipe.batch_size)
    steps = run.record.get("steps") or len(history) * steps_per_epoch
    device = run.record.get("device", "")
    seconds = sum(r.get("seconds", 0.0) for r in history)
    status = run.record.get("status", "done")
    return {
        "recorded": False, "n_test": n, "complete": status == "done", "status_by_seed": [status],
        "official_steps": OFFICIAL_STEPS, "seeds": [0], "steps_by_seed": [steps], "nan_runs": 0,
        "accuracy_by_seed": {"train_fit": [row["prior_train_fit"]], "test_refit": [row["prior_test_refit"]],
                             "posterior_train_fit": [row["posterior_train_fit"]],
                             "posterior_test_refit": [row["posterior_test_refit"]]},
        "linear_probe_by_seed": {"prior": [row.get("prior_probe")], "posterior": [row.get("posterior_probe")]},
        "accuracy_vs_compute": {"0": curve(history, steps_per_epoch, device)} if history else {},
        "training_seconds_per_step": {"gpu" if device.startswith("cuda") else "cpu": seconds / max(steps, 1)},
        "ablations": {"uninverted_pose": None, "no_alpha_channel": None}, "paper": PAPER,
    }


def how_measured(results: dict, keys):
    """The "How this was measured" block of recorded numbers ``keys`` (a line saying so when they were
    measured on the page instead)."""
    from IPython.display import HTML

    if not results.get("recorded"):
        return HTML(f"<p><small>Measured on this page with the model trained here, on "
                    f"{results['n_test']:,} test canvases.</small></p>")
    return book.how_measured("scae", keys=list(keys), details={"protocol": results.get("protocol", "")})


def _chance(n: int) -> float:
    """The share of the most common digit among the first ``n`` test canvases: what one guess scores."""
    labels = example_images(n)[1]
    return float(torch.bincount(labels, minlength=10).max()) / len(labels)


RECIPE_WORDS = {
    "epochs": "passes over the training digits",
    "batch_size": "digits per step",
    "lr": "constant learning rate",
    "optimizer_name": "optimiser",
    "n_train": "training digits, shifted afresh in every batch",
    "n_val": "validation canvases watched after every pass",
    "n_parts": "part capsules (one template each)",
    "n_objects": "object capsules",
    "invert_pose": "templates painted through the inverse of their pose",
    "alpha_channel": "mixing weights from learned alpha maps",
}


def recipe_table(mode: str):
    """The training recipe of the model on the page in ``mode`` (quick: its few steps), in words, with each
    field's name and value."""
    recipe = final_recipe().at_scale("quick") if mode == QUICK else final_recipe()
    caveat_words = caveat(mode)
    rows = {f"{words} ({name})": [getattr(recipe, name)] for name, words in RECIPE_WORDS.items()}
    steps = recipe.epochs * -(-recipe.n_train // recipe.batch_size)
    return book.table(rows, ["value"], index_name="setting",
                      caption=f"The training recipe{caveat_words}",
                      notes=f"{fmt(steps)} steps in all; optimiser rmsprop_tf is RMSProp as TensorFlow 1 "
                            "computes it, with momentum 0.9, as the official code trains. Everything is the "
                            f"official run's but the learning rate, {recipe.lr / SCAERecipe().lr:g} times the "
                            f"official {SCAERecipe().lr:g}: the setting that learned fastest per hour in short "
                            "trial runs (the section on what training costs).")


def _share(steps: int, official: int) -> str:
    """``steps`` as a share of the official schedule, in words ("less than 0.1 %" for a sliver)."""
    share = steps / official
    return "less than 0.1 %" if 0 < share < 0.001 else pct(share)


def _status_words(status: str) -> str:
    return {"done": "finished its schedule", "training": "was still training when these numbers were collected",
            "stopped": "was stopped before the end of its schedule",
            "interrupted": "was interrupted before the end of its schedule",
            "failed": "stopped on an error"}.get(status, status)


def schedule_words(results: dict, mode: str) -> str:
    """Where the run stands against the official schedule, and what finishing it would cost here."""
    if mode == QUICK:
        steps = results["steps_by_seed"][0]
        return (f"This page trained its model for {steps:,} steps only, to check that every cell runs: the "
                "numbers below are not results.")
    official = results.get("official_steps", OFFICIAL_STEPS)
    parts = []
    for seed, steps, status in zip(results["seeds"], results["steps_by_seed"], results["status_by_seed"]):
        parts.append(f"seed {seed} has trained for {steps:,} steps ({_share(steps, official)} of the official "
                     f"{official:,}) and {_status_words(status)}")
    text = ("The recorded run, " + parts[0].replace(" has", ", has", 1) if len(parts) == 1
            else "Of the recorded runs, " + "; ".join(parts)) + "."
    speed = results.get("seconds_per_step") or {}
    pace = (results.get("training_seconds_per_step") or {}).get("cpu")
    by_threads = {int(k): v for k, v in (speed.get("cpu_by_threads") or {}).items()}
    if not by_threads and speed.get("cpu"):
        by_threads = {int(speed.get("cpu_threads", 1)): speed["cpu"]}
    if by_threads:
        timed = " and ".join(f"{fmt(v)} s on {'one thread' if k == 1 else f'{k} threads'}"
                             for k, v in sorted(by_threads.items()))
        text += (f" Timed on its own at the official configuration, one training step takes {timed} of this "
                 "book's CPU")
        port = speed.get("port") or {}
        threads = speed.get("cpu_threads")
        if port.get("seconds_per_step") and threads in by_threads:
            text += (f"; a public PyTorch port, timed on a machine like this one with {port.get('threads')} "
                     f"threads, took {fmt(port['seconds_per_step'])} s")
        text += "."
    if pace:
        who = "The recorded run" if len(parts) == 1 else "The recorded runs"
        text += f" {who}, sharing the machine with other work, went at {fmt(pace)} s per step."
    rate = by_threads.get(1) or pace or (min(by_threads.values()) if by_threads else None)
    left = max(official - max(results["steps_by_seed"]), 0)
    if rate and left:
        hours = left * rate / 3600
        text += f" At {fmt(rate)} s per step the {left:,} steps left would take about {fmt(hours)} hours"
        if hours > 24:
            text += (f" ({fmt(hours / 24)} days) on one CPU core per seed: finishing the official schedule "
                     "needs a GPU.")
        else:
            text += " on one CPU core per seed."
    if speed.get("gpu"):
        text += (f" On a GPU ({speed.get('gpu_device', 'as recorded')}) a step takes {fmt(speed['gpu'])} s, "
                 f"so the whole schedule would take about {fmt(official * speed['gpu'] / 3600)} hours there.")
    return text


def page_model_words(results: dict) -> str:
    """Which recorded seed the page's figures and explorers show, and how it was picked ("" when the numbers
    were measured on the page)."""
    seed = results.get("selected_seed")
    if not results.get("recorded") or seed not in (results.get("seeds") or []):
        return ""
    steps = dict(zip(results["seeds"], results["steps_by_seed"]))
    losses = {run["seed"]: run["val_loss"] for run in (results.get("runs") or {}).values()
              if run.get("seed") in steps and run.get("val_loss") is not None
              and _kind(run.get("settings") or {}) == "final"}
    text = (f"The model in the figures and explorers below is seed {seed} after {steps[seed]:,} steps: of the "
            f"{len(steps)} recorded runs it has the lowest loss on the validation canvases after its last pass")
    others = [f"{fmt(losses[s])} for seed {s}" for s in sorted(losses) if s != seed]
    if seed in losses and others:
        text += f" ({fmt(losses[seed])}, against {', '.join(others)})"
    text += "; no labels are used to choose."
    longest = max(steps, key=steps.get)
    if steps[longest] > steps[seed]:
        text += f" Seed {longest} has trained longer ({steps[longest]:,} steps)"
        then = _curve_at((results.get("accuracy_vs_compute") or {}).get(str(longest)) or {}, "val_loss", steps[seed])
        if then is not None and seed in losses:
            text += (f"; after {steps[seed]:,} steps its loss was {fmt(then)}, "
                     + ("higher as well, so the choice is not a matter of training length." if then > losses[seed]
                        else "lower: the validation loss is not monotone in training, so compare the accuracy "
                             "table too."))
        else:
            text += "."
    return text


def training_words(history: list[dict]) -> str:
    """One line on the last recorded pass of a training history: its held-out losses and accuracies."""
    if not history:
        return "No training history was recorded with this model."
    last = history[-1]
    text = f"After pass {last['epoch']:,} over the training digits"
    if "val_rec_ll" in last:
        text += (f", the validation canvases have an image log-likelihood of {fmt(last['val_rec_ll'])} nats "
                 f"and a part-pose log-likelihood of {fmt(last['val_caps_ll'])} nats per image")
    if "val_prior_accuracy" in last:
        text += (f"; k-means on their object presences names {pct(last['val_prior_accuracy'])} of them right "
                 f"(on the parts' mass: {pct(last['val_posterior_accuracy'])})")
    return text + "."


# --- results tables and words ---------------------------------------------------------------------
ACCURACY_ROWS = [("optimiser steps", None), ("presences, refit", "test_refit"),
                 ("presences, train-fit", "train_fit"), ("parts' mass, refit", "posterior_test_refit"),
                 ("parts' mass, train-fit", "posterior_train_fit"), ("linear probe, presences", "prior"),
                 ("linear probe, parts' mass", "posterior")]


def accuracy_table(results: dict, caveat_words: str = ""):
    """Unsupervised accuracy (both protocols, both features) and the linear probes, one column per seed,
    and the paper's numbers."""
    acc, probe = results["accuracy_by_seed"], results["linear_probe_by_seed"]
    columns = [f"seed {seed}" for seed in results["seeds"]] if results.get("recorded") else ["this page"]
    paper = results.get("paper", PAPER)
    paper_values = {"test_refit": paper["unsupervised_accuracy"], "prior": paper["linear_accuracy"]}
    rows = {}
    for words, key in ACCURACY_ROWS:
        if key is None:
            values = list(results["steps_by_seed"]) + [OFFICIAL_STEPS]
        else:
            source = probe if key in ("prior", "posterior") else acc
            values = [_p(v) for v in source[key]] + [_p(paper_values[key]) if key in paper_values else "–"]
        rows[words] = values
    n = results.get("n_test")
    return book.table(rows, [*columns, "paper"], index_name="",
                      caption=f"Test accuracy without labels, and of the linear probes{caveat_words}",
                      notes=(f"On {fmt(n) if n else 'the'} test digits. Refit: k-means (k = 10) fitted on "
                             "the test features, clusters matched to digits one to one (the paper's "
                             "protocol). Train-fit: k-means fitted on training digits and applied to the "
                             "test features. Presences: the object capsules' presences; parts' mass: how "
                             "much of the parts each object explains. Paper: Kosiorek et al. (2019), one "
                             "unsupervised number for its best features (in the first refit row); its probe "
                             "number is recalled from its Table 2, not checked against the paper."))


def ports_table():
    """What the public PyTorch ports report about themselves (:data:`PORTS`), with links to the sources."""
    rows = [[p["port"], p["accuracy"], p["nan"],
             Raw(", ".join(f"<a href='{url}'>{text}</a>" for text, url in p["source"]))] for p in PORTS]
    return book.table(rows, ["port", "accuracy", "loss became NaN", "source"],
                      caption="Public PyTorch ports of the SCAE on MNIST, as their pages report them",
                      notes="Quoted from each port's README or from its users' reports on its GitHub page "
                            "(their own protocols), not measured here. torch-scae's 85 % came after about "
                            "100 epochs and a fix by its author; its README calls its results inferior to "
                            "the original's \"due to an unknown bug\". Dinngger's README gives the original "
                            "code 97 %. The user who saw scae-pytorch's NaN found the loss stable with the "
                            "alpha channel on.")


def _best(values) -> float:
    values = [v for v in values if v is not None]
    return max(values) if values else float("nan")


def accuracy_words(results: dict, mode: str) -> str:
    """The recorded accuracy against chance, the ports and the paper, in sentences that hold for any
    numbers."""
    acc, probes = results["accuracy_by_seed"], results["linear_probe_by_seed"]
    longest = max(range(len(results["steps_by_seed"])), key=results["steps_by_seed"].__getitem__)
    refit = _best([acc["test_refit"][longest], acc["posterior_test_refit"][longest]])
    transfer = _best([acc["train_fit"][longest], acc["posterior_train_fit"][longest]])
    probe = _best([probes["prior"][longest], probes["posterior"][longest]])
    paper = results.get("paper", PAPER)
    chance = _chance(results.get("n_test") or 200)
    steps = results["steps_by_seed"][longest]
    official = results.get("official_steps", OFFICIAL_STEPS)
    seeds = len(results["seeds"])
    who = "this page's model" if not results.get("recorded") else (
        "the recorded run" if seeds == 1 else
        f"the longest-trained of the {seeds} recorded runs (seed {results['seeds'][longest]})")
    text = (f"After {steps:,} steps, {_share(steps, official)} of the official schedule, {who} names "
            f"{pct(refit)} of the test digits right without labels under the paper's protocol and "
            f"{pct(transfer)} with k-means fitted on training digits; its linear probe reaches {pct(probe)}. "
            f"Always guessing the most common digit scores {pct(chance)}, the paper {pct(paper['unsupervised_accuracy'])}.")
    if transfer < chance + 0.05:  # judged by the protocol that sees no test label
        text += (" So far the object capsules carry next to nothing about the digit's class: k-means fitted on "
                 "training digits does little better than one guess")
        if refit > transfer + 0.02:
            text += (", and the refit protocol's lead is what fitting and matching the clusters on the test "
                     "digits themselves buys")
        text += ". At this point of the schedule the classes have not appeared yet."
    elif refit < 0.85:
        text += (" The classes have begun to appear, but the accuracy is still below the best that a public "
                 "PyTorch port reports (about 85 %).")
    elif refit < paper["unsupervised_accuracy"] - 0.01:
        text += (" That is above every public PyTorch port's report and below the paper by "
                 f"{fmt(100 * (paper['unsupervised_accuracy'] - refit), 2)} percentage points.")
    else:
        text += " That matches the paper's number."
    if steps < official and mode != QUICK:
        curves = (results.get("accuracy_vs_compute") or {}).values()
        unit = "GPU-minute" if any("gpu_minutes" in c for c in curves) else "CPU-hour"
        text += (" The paper's number is for the whole schedule; the curves below show how far the "
                 f"accuracy has come per step and per {unit}.")
    if results.get("nan_runs"):
        text += f" {results['nan_runs']} of the recorded runs stopped on a NaN."
    return text


def seeds_words(results: dict) -> str:
    """How far the seeds of the final setting agree, on the validation canvases at the largest step count
    that all of their curves reach ("" for fewer than two seeds)."""
    curves = [(seed, (results.get("accuracy_vs_compute") or {}).get(str(seed)) or {}) for seed in results["seeds"]]
    curves = [(seed, c) for seed, c in curves if c.get("steps")]
    if len(curves) < 2:
        return ""
    steps = min(c["steps"][-1] for _, c in curves)
    at = {key: [_curve_at(c, key, steps) for _, c in curves]
          for key in ("val_rec_ll", "val_posterior_accuracy", "val_prior_accuracy")}
    names = ", ".join(f"seed {seed}" for seed, _ in curves[:-1]) + f" and seed {curves[-1][0]}"
    mass = [v for v in at["val_posterior_accuracy"] if v is not None]
    text = (f"After {steps:,} steps, as far as every seed has trained, {names} reach image log-likelihoods of "
            f"{', '.join(fmt(v) for v in at['val_rec_ll'])} nats on the validation canvases, and k-means on "
            f"their parts' mass names {', '.join(pct(v) for v in at['val_posterior_accuracy'])} of them right "
            f"(on the presences: {', '.join(pct(v) for v in at['val_prior_accuracy'])}).")
    if mass:
        spread = 100 * (max(mass) - min(mass))
        text += (f" The seeds lie {spread:.1f} percentage points apart on the parts' mass"
                 + (": at this point of training the seed matters as much as the setting." if spread >= 10 else
                    ", so one seed's curve is a fair picture of the setting." if spread < 5 else "."))
    return text


def _curve_at(points: dict, key: str, steps: int):
    """The value of ``key`` in a curve at the last point with at most ``steps`` steps (None if none)."""
    values = [(s, v) for s, v in zip(points.get("steps", []), points.get(key, [])) if s <= steps]
    return values[-1][1] if values else None


ABLATION_NAMES = {"uninverted_pose": "template pose not inverted", "no_alpha_channel": "no alpha channel"}
ABLATION_PHRASES = {"uninverted_pose": "with the template pose handed to the sampler uninverted",
                    "no_alpha_channel": "without the alpha channel"}


def _scored_ablations(results: dict) -> dict:
    return {name: row for name, row in (results.get("ablations") or {}).items()
            if row and "steps" in row and (row.get("curve") or {}).get("steps")}


ABLATION_COLUMNS = [("val_rec_ll", "image log-likelihood (nats)"), ("val_prior_accuracy", "presences"),
                    ("val_posterior_accuracy", "parts' mass")]


def _final_curves(results: dict, steps: int) -> list[tuple[int, dict]]:
    """``(seed, curve)`` of every final-setting seed whose curve reaches ``steps`` steps."""
    curves = [(seed, (results.get("accuracy_vs_compute") or {}).get(str(seed)) or {})
              for seed in results.get("seeds") or []]
    return [(seed, c) for seed, c in curves if c.get("steps") and c["steps"][-1] >= steps]


def _final_at(results: dict, key: str, steps: int) -> list:
    """``key`` of every final-setting seed whose curve reaches ``steps`` steps, at that step count."""
    return [_curve_at(c, key, steps) for _, c in _final_curves(results, steps)]


def _value(key: str, value) -> str:
    """A log-likelihood in nats, an accuracy as a percentage."""
    return fmt(value) if "rec_ll" in key else _p(value)


def _span(key: str, values: list) -> str:
    """One value, or the lowest to the highest of several."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "–"
    if len(values) == 1 or values[0] == values[-1]:
        return _value(key, values[0])
    return f"{_value(key, values[0])} to {_value(key, values[-1])}"


def _seed_names(results: dict, steps: int) -> list[str]:
    return [str(seed) for seed, _ in _final_curves(results, steps)]


def ablation_table(results: dict):
    """The ablations next to the final setting's seeds at the same number of steps (lowest to highest), on
    the validation canvases; None while no ablation or no final seed has numbers."""
    ablations = _scored_ablations(results)
    if not ablations or not results.get("seeds"):
        return None
    rows = {}
    for name, row in ablations.items():
        points = row["curve"]
        steps = points["steps"][-1]
        seeds = _seed_names(results, steps)
        if seeds:
            label = f"final setting, seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}, after {steps:,} steps"
            rows[label] = [*(_span(key, _final_at(results, key, steps)) for key, _ in ABLATION_COLUMNS), "no"]
        rows[f"{ABLATION_NAMES.get(name, name)}, after {steps:,} steps"] = [
            *(_value(key, _curve_at(points, key, steps)) for key, _ in ABLATION_COLUMNS),
            "yes" if row.get("nan") else "no"]
    return book.table(rows, [words for _, words in ABLATION_COLUMNS] + ["stopped on a NaN"], index_name="",
                      caption="The ports' mistakes, trained here, next to the final setting after as many steps",
                      notes="On the validation canvases after the last pass each ablation finished: the image "
                            "log-likelihood and the accuracy of k-means (fitted on half of the canvases, scored "
                            "on the other half) on the object presences and on the parts' mass; for the final "
                            "setting, the lowest to the highest of its seeds. Each ablation is one seed.")


def _against(value: float, others: list, unit: str) -> str:
    """Where ``value`` lies against the final setting's seeds, in words."""
    others = [v for v in others if v is not None]
    if len(others) < 2:
        return ""
    low, high = min(others), max(others)
    if low <= value <= high:
        return ", within their range"
    scale, name = (100, "points") if unit == "%" else (1, "nats")
    gap, side = (low - value, "below") if value < low else (value - high, "above")
    return f", {fmt(scale * gap, 1)} {name} {side} all of them"


def ablation_words(results: dict) -> str:
    """What the ablation runs say against the final setting's seeds at the same step count, or plainly that
    they have not been run."""
    out = []
    scored = _scored_ablations(results)
    for name, phrase in ABLATION_PHRASES.items():
        row = (results.get("ablations") or {}).get(name) or {}
        status = row.get("status", "not started")
        if status == "failed":
            where = re.search(r"at epoch (\d+), step (\d+)", row.get("error") or "")
            at = f" at epoch {where.group(1)}, step {where.group(2)}" if where else ""
            cause = "its loss became NaN" if row.get("nan") else "it stopped on an error"
            out.append(f"Trained {phrase}, {cause}{at}; the last good checkpoint was kept.")
        elif name in scored:
            points = row["curve"]
            steps = points["steps"][-1]
            seeds = _seed_names(results, steps)
            who = (f"the final setting's {len(seeds)} seeds" if len(seeds) > 1 else "the final setting")
            text = f"Trained {phrase} for {steps:,} steps"
            if status != "done":
                text += " (stopped there by this page's budget, long before the end of its schedule)"
            text += (f" without a NaN, the model reaches an image log-likelihood of {fmt(points['val_rec_ll'][-1])} "
                     "nats on the validation canvases")
            ours = _final_at(results, "val_rec_ll", steps)
            if seeds:
                text += (f", where {who} had {_span('val_rec_ll', ours)} after as many steps"
                         + _against(points["val_rec_ll"][-1], ours, "nats"))
            mass = points["val_posterior_accuracy"][-1]
            ours_mass = _final_at(results, "val_posterior_accuracy", steps)
            text += f"; k-means on its parts' mass names {pct(mass)} of them right"
            if seeds:
                text += f" ({who}: {_span('val_posterior_accuracy', ours_mass)}{_against(mass, ours_mass, '%')})"
            text += (f", and on the test digits {pct(row.get('posterior_test_refit'))} (refit protocol; the final "
                     "setting's, after all its steps, are in the accuracy table above)")
            out.append(text + ".")
        else:
            out.append(f"The training {phrase} has not been run for this page yet.")
    steps = min((row["curve"]["steps"][-1] for row in scored.values()), default=0)
    mass = [v for v in _final_at(results, "val_posterior_accuracy", steps) if v is not None] if steps else []
    if len(mass) > 1:
        out.append(f"Each ablation is a single seed, while the final setting's seeds alone lie "
                   f"{fmt(100 * (max(mass) - min(mass)), 1)} points apart on the parts' mass after {steps:,} steps: "
                   "a difference smaller than that says little about the setting.")
    return " ".join(out)


# --- pictures -----------------------------------------------------------------------------------------
STROKE = torch.zeros(11, 11)
STROKE[1:10, 3] = 1.0  # an upright stroke with a foot: an "L" whose orientation shows
STROKE[9, 3:9] = 1.0


def pose_figure():
    """One 11 x 11 template painted on the 40 x 40 canvas with three poses, through the pose's inverse
    (top, the official convention) and with the pose handed to the sampler as it is (bottom); the red
    outline is where the pose says the part is."""
    poses = affine_matrix(scale=torch.tensor([0.2, 0.3, 0.5]), rotation=torch.tensor([0.0, 0.5, -0.3]),
                          shift_x=torch.tensor([-0.4, 0.2, 0.0]), shift_y=torch.tensor([-0.3, 0.3, 0.0]))
    template = STROKE.expand(1, 3, 1, 11, 11)
    fig, axes = plt.subplots(2, 4, figsize=(7.6, 4.1))
    for row, inverted in enumerate((True, False)):
        painted = paint_templates(template, poses[None], CANVAS, invert_pose=inverted)[0, :, 0]
        for j in range(3):
            ax = axes[row, j + 1]
            ax.imshow(painted[j], cmap="gray", vmin=0, vmax=1)
            corners = (window_outline(poses[j:j + 1])[0] + 1) / 2 * CANVAS - 0.5
            ax.plot(corners[:, 0], corners[:, 1], color="red", lw=1)
            s = float(poses[j, 0, 0] ** 2 + poses[j, 1, 0] ** 2) ** 0.5
            ax.set_title(f"scale {s:.1f}: {int((painted[j] > 0.05).sum())} px", fontsize=9)
            ax.set_xlim(-0.5, CANVAS - 0.5)
            ax.set_ylim(CANVAS - 0.5, -0.5)
        axes[row, 1].set_ylabel("through the inverse" if inverted else "pose uninverted")
    axes[0, 0].imshow(STROKE, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("the 11 × 11 template", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    fig.tight_layout()
    return fig


@torch.no_grad()
def explained_ink(model, images: torch.Tensor, trace) -> torch.Tensor:
    """How much of each image's ink each part explains, (B, M): the pixels' intensities weighted by the
    part's responsibility for them under the image mixture (its share of each pixel's likelihood)."""
    means, logits = model.decoder.components(trace.painted, trace.presence_logit)
    std = model.config.pixel_std
    x = images.to(means.device).unsqueeze(1)
    joint = torch.log_softmax(logits, 1) - 0.5 * ((x - means) / std) ** 2
    responsibility = torch.softmax(joint, 1)[:, :-1]  # without the background
    return (responsibility * x).flatten(2).sum(-1)


def _trace(model, images):
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(images.to(device), noise=False)


def reconstruction_figure(model, images: torch.Tensor, index: int = 0, n_parts: int = 6, title: str = ""):
    """One test canvas, its reconstruction (the mixture's mean) and the ``n_parts`` parts that explain most
    of its ink, each painted with its pose and intensity and titled with its presence."""
    image = images[index:index + 1]
    trace = _trace(model, image)
    recon = model.reconstruction(trace)[0, 0].cpu()
    ink = explained_ink(model, image, trace)[0].cpu()
    order = torch.argsort(ink, descending=True)[:n_parts]
    fig, axes = plt.subplots(1, n_parts + 2, figsize=(8, 1.9))
    panels = [(image[0, 0], "test canvas"), (recon, "reconstruction")]
    painted = trace.painted[0, :, 0].cpu()
    for m in order.tolist():
        panels.append((painted[m], f"part {m}\npresence {float(trace.part_presence[0, m]):.2f}"))
    for ax, (picture, words) in zip(axes, panels):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
        ax.set_title(words, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title.strip(), fontsize=9)
    fig.tight_layout()
    return fig


def templates_figure(model, images: torch.Tensor, title: str = ""):
    """The learned templates (top) and their alpha maps (bottom), ordered by how much of the ink of
    ``images`` each part explains, most first."""
    trace = _trace(model, images)
    order = torch.argsort(explained_ink(model, images, trace).sum(0).cpu(), descending=True)
    decoder = model.decoder
    templates = torch.sigmoid(decoder.template_logits.detach().float().cpu())[order, 0]
    n = len(templates)
    columns = 10
    rows = -(-n // columns)

    def tiled(maps):  # white gaps (NaN is not drawn)
        padded = torch.full((rows * columns, *maps.shape[1:]), float("nan"))
        padded[:n] = maps
        return tile_frames(padded.view(rows, columns, *maps.shape[1:]).numpy(), gap=1, gap_value=float("nan"))

    has_alpha = decoder.alpha is not None
    fig, axes = plt.subplots(2 if has_alpha else 1, 1, figsize=(7.6, 6.2 if has_alpha else 3.2), squeeze=False)
    axes[0, 0].imshow(tiled(templates), cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("templates (before each part's intensity)")
    if has_alpha:
        alpha = decoder.alpha.detach().float().cpu()[order, 0]
        limit = max(float(alpha.abs().max()), 1e-6)
        shown = axes[1, 0].imshow(tiled(alpha), cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[1, 0].set_title("alpha maps (mixing logits; 0 outside the template)")
        fig.colorbar(shown, ax=axes[1, 0], fraction=0.025, pad=0.02)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title.strip(), fontsize=9)
    fig.tight_layout()
    return fig


def compute_figure(results: dict, title: str = ""):
    """Validation accuracy (k-means on the object presences and on the parts' mass) against optimiser
    steps and against training time, and the validation image log-likelihood against steps; one line per
    seed, with the paper's accuracy and chance drawn in."""
    curves = results.get("accuracy_vs_compute") or {}
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
    time_key = "cpu_hours"
    for seed, points in curves.items():
        time_key = "cpu_hours" if "cpu_hours" in points else "gpu_minutes"
        for key, style in (("val_prior_accuracy", "-"), ("val_posterior_accuracy", "--")):
            if key not in points:
                continue
            label = f"seed {seed}, {'presences' if 'prior' in key else 'parts’ mass'}"
            for ax, x in ((axes[0], points["steps"]), (axes[1], points.get(time_key, []))):
                ax.plot(x, points[key], style, marker=".", label=label)
        if "val_rec_ll" in points:
            axes[2].plot(points["steps"], points["val_rec_ll"], marker=".", label=f"seed {seed}")
    paper = results.get("paper", PAPER)["unsupervised_accuracy"]
    chance = _chance(results.get("n_test") or 200)
    for ax in axes[:2]:
        ax.axhline(paper, color="black", lw=0.8, ls=":")
        ax.axhline(chance, color="grey", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[0], paper, " paper", va="bottom", fontsize=8)
        ax.text(ax.get_xlim()[0], chance, " chance", va="top", fontsize=8, color="grey")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("validation accuracy")
    axes[0].set_xlabel("optimiser steps (128 digits each)")
    axes[1].set_xlabel("CPU hours" if time_key == "cpu_hours" else "GPU minutes")
    axes[2].set_xlabel("optimiser steps")
    axes[2].set_ylabel("nats per image")
    axes[0].set_title("accuracy per step")
    axes[1].set_title("accuracy per training time")
    axes[2].set_title("image log-likelihood")
    if curves:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title.strip(), fontsize=9)
    fig.tight_layout()
    return fig


def _setting_words(settings: dict) -> str:
    if not settings:
        return f"official ({_setting_words({'lr': SCAERecipe().lr})})"
    lr = settings.get("lr", SCAERecipe().lr)
    name = {"adam": "Adam", "rmsprop_tf": "RMSProp"}[settings.get("optimizer_name", "rmsprop_tf")]
    mantissa, exponent = f"{lr:.0e}".split("e")
    words = f"{name}, learning rate {mantissa}e{int(exponent)}"
    if "batch_size" in settings:
        words += f", batch {settings['batch_size']}"
    if "n_parts" in settings or "n_objects" in settings:
        recipe = SCAERecipe()
        words += (f", {settings.get('n_parts', recipe.n_parts)} parts and "
                  f"{settings.get('n_objects', recipe.n_objects)} objects")
    if settings.get("parts_epochs"):
        words += f", parts alone for the first {_plural(settings['parts_epochs'], 'pass', 'passes')}"
    return words


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else f"{n} {many}"


def _rate_only(settings: dict) -> bool:
    """A setting that changes the learning rate alone (its steps cost what the official ones do)."""
    return set(settings) <= {"lr"}


def _setting_curves(results: dict, official: bool = True, rate_only: bool = True) -> dict:
    """{label: curve} of the official setting (``official``) and of the pilots (those that change the
    learning rate alone, with ``rate_only``), from ``settings_per_hour``."""
    section = results.get("settings_per_hour") or {}
    rows = {}
    if official and section.get("official"):
        rows[_setting_words({})] = section["official"]["curve"]
    for row in (section.get("pilots") or {}).values():
        if (row.get("curve") or {}).get("steps") and (_rate_only(row["settings"]) or not rate_only):
            rows[_setting_words(row["settings"])] = row["curve"]
    return rows


def settings_figure(results: dict):
    """The validation image log-likelihood and k-means accuracy against optimiser steps, for the official
    learning rate and the pilots' settings; None when there are no pilot runs."""
    curves = _setting_curves(results)
    if len(curves) < 2:
        return None
    levels = results["settings_per_hour"].get("val_rec_ll_levels") or {}
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for (label, points), colour in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        axes[0].plot(points["steps"], points["val_rec_ll"], marker=".", color=colour, label=label)
        axes[1].plot(points["steps"], points["val_posterior_accuracy"], marker=".", color=colour)
        axes[1].plot(points["steps"], points["val_prior_accuracy"], ls="--", color=colour)
    right = max(points["steps"][-1] for points in curves.values())
    for name, words in (("constant", "one grey value everywhere"), ("perfect", "every pixel exact")):
        if name in levels:
            axes[0].axhline(levels[name], color="grey", lw=0.8, ls=":")
            axes[0].text(right, levels[name], f"{words} ", ha="right", va="bottom", fontsize=8, color="grey")
    axes[1].axhline(PAPER["unsupervised_accuracy"], color="black", lw=0.8, ls=":")
    axes[1].text(0, PAPER["unsupervised_accuracy"], " paper", va="top", fontsize=8)
    axes[1].set_ylim(0, 1.05)
    axes[0].set_ylabel("nats per image")
    axes[1].set_ylabel("validation accuracy")
    axes[0].set_title("image log-likelihood")
    axes[1].set_title("k-means accuracy\nsolid: parts' mass; dashed: presences", fontsize=9)
    for ax in axes:
        ax.set_xlabel("optimiser steps (128 digits each)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(curves), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def settings_words(results: dict) -> str:
    """The learning-rate pilots against the official learning rate after as many steps, in sentences from
    the numbers."""
    section = results.get("settings_per_hour") or {}
    official = (section.get("official") or {}).get("curve")
    if not official:
        return "No trial of other training settings has been recorded for this page."
    out = []
    for row in (section.get("pilots") or {}).values():
        points = row.get("curve") or {}
        if not points.get("steps") or not _rate_only(row["settings"]):
            continue
        steps = min(points["steps"][-1], official["steps"][-1])
        ours, theirs = (_curve_at(points, "val_rec_ll", steps), _curve_at(official, "val_rec_ll", steps))
        if ours is None or theirs is None:
            continue
        level = (section.get("val_rec_ll_levels") or {}).get("constant")
        text = (f"After {steps:,} steps, {_setting_words(row['settings'])} reaches an image log-likelihood of "
                f"{fmt(ours)} nats per image on the validation canvases and the official rate {fmt(theirs)}")
        if level is not None:
            text += f" (one grey value everywhere scores {fmt(level)})"
        text += (f"; k-means on the parts' mass names {pct(_curve_at(points, 'val_posterior_accuracy', steps))} "
                 f"of the canvases right, against {pct(_curve_at(official, 'val_posterior_accuracy', steps))}.")
        out.append(text)
    return " ".join(out)


def _pilot_budget(curves: dict) -> float | None:
    """The training seconds every pilot's curve reaches: the shortest of their last points."""
    ends = [c["training_seconds"][-1] for c in curves.values() if c.get("training_seconds")]
    return min(ends) if ends else None


def pilots_figure(results: dict):
    """Every pilot (one thread each) against training minutes: the validation image log-likelihood and the
    k-means accuracy on the parts' mass; None with fewer than two pilots."""
    curves = _setting_curves(results, official=False, rate_only=False)
    if len(curves) < 2:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.0))
    for label, points in curves.items():
        minutes = [s / 60 for s in points["training_seconds"]]
        axes[0].plot(minutes, points["val_rec_ll"], marker=".", label=label)
        axes[1].plot(minutes, points["val_posterior_accuracy"], marker=".")
    budget = _pilot_budget(curves)
    for ax in axes:
        ax.axvline(budget / 60, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("training minutes, one CPU thread")
    axes[0].set_ylabel("nats per image")
    axes[1].set_ylabel("validation accuracy")
    axes[1].set_ylim(0, 1)
    axes[0].set_title("image log-likelihood")
    axes[1].set_title("k-means accuracy on the parts' mass")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.04 + 0.05 * -(-len(curves) // 2), 1, 1))  # room for the legend's rows
    return fig


def _pilot_rows(results: dict) -> tuple[float | None, dict]:
    """(budget, {label: (points, index of its last point within the budget)})."""
    curves = _setting_curves(results, official=False, rate_only=False)
    budget = _pilot_budget(curves)
    rows = {}
    for label, points in curves.items():
        within = [i for i, s in enumerate(points["training_seconds"]) if s <= budget]
        if within:
            rows[label] = (points, within[-1])
    return budget, rows


def pilots_table(results: dict):
    """Each pilot at its last validation within the training time all of them reached; None with fewer
    than two pilots."""
    budget, rows = _pilot_rows(results)
    if len(rows) < 2:
        return None
    table = {}
    for label, (points, i) in rows.items():
        table[label] = [fmt(points["training_seconds"][i] / 60, 0), f"{points['steps'][i]:,}",
                        f"{points['digits_seen'][i]:,}" if points.get("digits_seen") else "–",
                        *(_value(key, points[key][i]) for key, _ in ABLATION_COLUMNS)]
    return book.table(table, ["training minutes", "steps", "digits seen", *(w for _, w in ABLATION_COLUMNS)],
                      index_name="setting",
                      caption="Training settings after the same training time on one CPU thread",
                      notes=f"Each setting's last validation (after a whole pass) within {fmt(budget / 60, 0)} "
                            "training minutes, the time every pilot reached; one seed each, validation canvases, "
                            "k-means fitted on half of them and scored on the other half.")


def pilots_words(results: dict) -> str:
    """Which setting got furthest in the same training time, against the seeds' own spread, in words."""
    budget, rows = _pilot_rows(results)
    if len(rows) < 2:
        return "Only one training setting has been timed on this page, so there is nothing to compare yet."
    mass = {label: points["val_posterior_accuracy"][i] for label, (points, i) in rows.items()}
    rec_ll = {label: points["val_rec_ll"][i] for label, (points, i) in rows.items()}
    best = max(mass, key=mass.get)
    ranked = sorted(mass, key=mass.get, reverse=True)
    text = (f"Given the same {fmt(budget / 60, 0)} minutes of one CPU thread, {best} sorts the most validation "
            f"canvases right by the parts' mass ({_p(mass[best])}), then "
            + "; ".join(f"{label} ({_p(mass[label])})" for label in ranked[1:]) + ". "
            f"The image log-likelihood ranks them {'; '.join(sorted(rec_ll, key=rec_ll.get, reverse=True))}, "
            f"from {fmt(max(rec_ll.values()))} down to {fmt(min(rec_ll.values()))} nats.")
    finals = _final_curves(results, 0)
    steps = min(c["steps"][-1] for _, c in finals) if finals else None
    spread = _final_at(results, "val_posterior_accuracy", steps) if steps else []
    if len(spread) > 1:
        text += (f" Each pilot is one seed, and the final setting's {len(spread)} seeds alone lie "
                 f"{fmt(100 * (max(spread) - min(spread)), 1)} points apart after {steps:,} steps: a gap "
                 "smaller than that is not a finding.")
    return text + _longest_pilot_words(results)


def _longest_pilot_words(results: dict) -> str:
    """The pilot at batch 128 trained furthest past the common budget, against the final setting's seeds
    after as many steps (at one batch size a step is as many digits)."""
    budget, _ = _pilot_rows(results)
    pilots = [row for row in ((results.get("settings_per_hour") or {}).get("pilots") or {}).values()
              if row.get("curve") and row["settings"] != FINAL_CHANGES and "batch_size" not in row["settings"]]
    row = max(pilots, key=lambda r: r["curve"]["training_seconds"][-1], default=None)
    if row is None or budget is None or row["curve"]["training_seconds"][-1] <= budget:
        return ""
    points = row["curve"]
    steps = points["steps"][-1]
    finals = _final_at(results, "val_posterior_accuracy", steps)
    if not finals:
        return ""
    seeds = "seed" if len(finals) == 1 else f"{len(finals)} seeds"
    return (f" {_setting_words(row['settings'])} was then trained on to {steps:,} steps: "
            f"{_p(points['val_posterior_accuracy'][-1])} of the validation canvases right by the parts' mass, "
            f"against {_span('val_posterior_accuracy', finals)} for the final setting's {seeds} after as many "
            "steps.")


def warm_up_words(results: dict) -> str:
    """Each pilot that trains the parts alone first against the same setting without it, at the steps both
    reached (a warm-up step costs less than a whole one, so steps favour neither), in sentences."""
    rows = [r for r in ((results.get("settings_per_hour") or {}).get("pilots") or {}).values() if r.get("curve")]
    out = []
    for row in rows:
        if not row["settings"].get("parts_epochs"):
            continue
        plain = {k: v for k, v in row["settings"].items() if k != "parts_epochs"}
        twin = next((r for r in rows if r["settings"] == plain), None)
        if twin is None:
            continue
        steps = min(row["curve"]["steps"][-1], twin["curve"]["steps"][-1])
        ours, theirs = (_curve_at(c["curve"], "val_posterior_accuracy", steps) for c in (row, twin))
        out.append(f"With {_setting_words(plain)}, training the parts alone for the first "
                   f"{_plural(row['settings']['parts_epochs'], 'pass', 'passes')} sorts {_p(ours)} of the "
                   f"validation canvases right by the parts' mass after {steps:,} steps, against {_p(theirs)} "
                   "without it.")
    return " ".join(out)


def presence_map_figure(model, images: torch.Tensor, labels: torch.Tensor, title: str = ""):
    """The object presences of ``images`` (features as the evaluation computes them) projected on their
    first two principal components (``torch.pca_lowrank``), each point coloured by its true digit."""
    features = features_of(model, images)["prior"].double()
    centred = features - features.mean(0)
    if float(centred.abs().max()) > 0:
        _, _, v = torch.pca_lowrank(centred, q=2, center=False)
        points = centred @ v[:, :2]
    else:  # every image has the same presences: nothing to spread out
        points = torch.zeros(len(features), 2, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colours = plt.get_cmap("tab10")
    for digit in range(10):
        chosen = labels == digit
        ax.scatter(points[chosen, 0], points[chosen, 1], s=6, color=colours(digit), label=str(digit),
                   alpha=0.7)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.legend(title="digit", fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"object presences of {len(images):,} test canvases{title}")
    fig.tight_layout()
    return fig


def uninverted_figure(model, images: torch.Tensor, title: str = ""):
    """Test canvases (top), the model's reconstruction (middle) and the same parts, with the same poses,
    painted with the pose handed to the sampler uninverted (bottom), titled with the image
    log-likelihood of each."""
    trace = _trace(model, images)
    decoder = model.decoder
    b, m = trace.templates.shape[:2]
    templates = trace.templates
    if decoder.alpha is not None:
        templates = torch.cat([templates, decoder.alpha.expand(b, m, *decoder.alpha.shape[1:])], 2)
    with torch.no_grad():
        wrong = paint_templates(templates, trace.part_pose, model.config.canvas, invert_pose=False)
        wrong_ll = decoder.log_likelihood(images.to(wrong.device), wrong, trace.presence_logit)
    rows = [(images[:, 0], None, "test canvas"),
            (model.reconstruction(trace)[:, 0].cpu(), trace.rec_ll.cpu(), "inverse of the pose"),
            (model.reconstruction(dataclasses.replace(trace, painted=wrong))[:, 0].cpu(), wrong_ll.cpu(),
             "pose uninverted")]
    fig, axes = plt.subplots(3, b, figsize=(min(8, 1.45 * b + 0.6), 4.6), squeeze=False)
    for r, (pictures, ll, words) in enumerate(rows):
        for j in range(b):
            ax = axes[r, j]
            ax.imshow(pictures[j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if ll is not None:
                ax.set_title(f"{fmt(float(ll[j]), 4)} nats", fontsize=8)
        axes[r, 0].set_ylabel(words, fontsize=9)
    if title:
        fig.suptitle(title.strip(), fontsize=9)
    fig.tight_layout()
    return fig


# --- widgets over precomputed frames -------------------------------------------------------------------
def _picture(image, scale: int) -> Image.Image:
    """A grey image (H, W) in [0, 1], upscaled ``scale`` times, as an RGB PIL image."""
    array = np.asarray(torch.as_tensor(image).detach().cpu().float().clamp(0, 1))
    array = np.repeat(np.repeat(np.round(255 * array).astype(np.uint8), scale, 0), scale, 1)
    return Image.fromarray(array).convert("RGB")


def _outline(draw: ImageDraw.ImageDraw, pose: torch.Tensor, colour, scale: int, width: int = 2,
             canvas: int = CANVAS) -> None:
    """Draw where a pose (2, 3) puts its template: the template square's outline, in canvas pixels."""
    corners = (window_outline(pose.detach().cpu().float()[None])[0] + 1) / 2 * canvas * scale
    draw.line([tuple(p) for p in corners.tolist()], fill=colour, width=width)


def _with_text(picture: Image.Image, lines) -> np.ndarray:
    """``picture`` with lines of text under it, as a float array (H, W, 3) in [0, 1]."""
    out = Image.new("RGB", (picture.width, picture.height + LINE * len(lines) + 4), (255, 255, 255))
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((3, picture.height + 2 + LINE * i), line, fill=(0, 0, 0), font=FONT)
    return np.asarray(out, dtype=np.float64) / 255


def _first_of(labels: torch.Tensor, digits) -> list[int]:
    """The index of the first canvas of each digit in ``digits`` (skipping digits not there)."""
    return [int(torch.nonzero(labels == d)[0, 0]) for d in digits if (labels == d).any()]


def part_explorer(model, images: torch.Tensor, labels: torch.Tensor, digits=(2, 4, 7),
                  shifts=(-6, -3, 0, 3, 6), scale: int = 4):
    """Pick a test canvas (the first of each of ``digits``), switch each of its four parts that explain
    the most ink on or off, and move the first of them sideways by ``shifts`` pixels: the reconstruction
    and its image log-likelihood follow. Every combination is precomputed (works in the static book)."""
    picked = _first_of(labels, digits)
    chosen = images[picked]
    trace = _trace(model, chosen)
    ink = explained_ink(model, chosen, trace)
    n = len(PART_NAMES)
    switches = list(np.ndindex(*(2,) * n))  # 0: on, 1: off
    frames, side = {}, []
    for i in range(len(picked)):
        parts = torch.argsort(ink[i], descending=True)[:n].tolist()
        combos = [(s, d) for s in switches for d in shifts]
        pose = trace.part_pose[i:i + 1].repeat(len(combos), 1, 1, 1)
        logit = trace.presence_logit[i:i + 1].repeat(len(combos), 1)
        for c, (switch, dx) in enumerate(combos):
            pose[c, parts[0], 0, 2] += 2 * dx / model.config.canvas
            for j, off in enumerate(switch):
                if off:
                    logit[c, parts[j]] = -1e4  # presence exp(-1e4): the part is gone from the mixture
        templates = trace.templates[i:i + 1].expand(len(combos), *trace.templates.shape[1:])
        with torch.no_grad():
            painted = model.decoder.paint(pose, templates)
            edited = dataclasses.replace(trace, painted=painted, presence_logit=logit)
            recon = model.reconstruction(edited)[:, 0].cpu()
            ll = model.decoder.log_likelihood(chosen[i:i + 1].to(painted.device).expand(len(combos), -1, -1, -1),
                                              painted, logit).cpu()
        for c, (switch, dx) in enumerate(combos):
            picture = _picture(recon[c], scale)
            draw = ImageDraw.Draw(picture)
            for j, off in enumerate(switch):
                if not off:
                    _outline(draw, pose[c, parts[j]], PART_RGB[j], scale)
            frames[(i, *switch, shifts.index(dx))] = _with_text(
                picture, ["reconstruction", f"log-lik. {fmt(float(ll[c]), 5)}"])
        picture = _picture(chosen[i, 0], scale)
        draw = ImageDraw.Draw(picture)
        for j in range(n):
            _outline(draw, trace.part_pose[i, parts[j]], PART_RGB[j], scale)
        side.append(_with_text(picture, [f"test canvas (a {int(labels[picked[i]])})",
                                         f"log-lik. {fmt(float(trace.rec_ll[i]), 5)}"]))
    axes = [("image", [str(k + 1) for k in range(len(picked))], 0)]
    axes += [(name, ["on", "off"], 0) for name in PART_NAMES]
    axes.append((f"move {PART_NAMES[0]}", [f"{d:+d} px" if d else "0 px" for d in shifts],
                 shifts.index(0), "slider"))
    return choice_grid(frames, axes, side=side, css_class="oc-scae-parts")


def object_explorer(model, images: torch.Tensor, labels: torch.Tensor, digits=(0, 3, 5, 8),
                    n_objects: int = 4, scale: int = 4):
    """Pick a test canvas (the first of each of ``digits``) and one of its ``n_objects`` most present object
    capsules: the parts it claims (a present part whose likeliest explanation it is, ahead of the dummy)
    are outlined in yellow at their inferred poses and the object's votes for them in magenta; beside it
    those parts' templates, painted with their poses and presences. Precomputed frames (works in the static
    book)."""
    picked = _first_of(labels, digits)
    chosen = images[picked]
    trace = _trace(model, chosen)
    frames = {}
    for i in range(len(picked)):
        presence, mass = trace.object_presence[i].cpu(), trace.mass[i].cpu()
        order = sorted(range(len(presence)), key=lambda k: (-round(float(presence[k]), 2), -float(mass[k])))
        posterior = trace.posterior[i].cpu()                                            # (K, M)
        present = trace.part_presence[i].cpu() > 0.5
        best = posterior.argmax(0)
        beats_dummy = posterior.max(0).values > 1 - posterior.sum(0)
        for r, k in enumerate(order[:n_objects]):
            claimed = [m for m in range(posterior.shape[1]) if best[m] == k and beats_dummy[m] and present[m]]
            shown = claimed or torch.argsort(trace.vote_presence[i, k].cpu(), descending=True)[:5].tolist()
            left = _picture(chosen[i, 0] * 0.6, scale)
            draw = ImageDraw.Draw(left)
            for m in shown:
                if claimed:
                    _outline(draw, trace.part_pose[i, m], CLAIMED_RGB, scale)
                _outline(draw, trace.votes[i, k, m], VOTE_RGB, scale, width=1)
            painted = trace.painted[i, claimed, 0] * trace.part_presence[i, claimed, None, None]
            alone = painted.sum(0).clamp(0, 1).cpu() if claimed else torch.zeros(*painted.shape[-2:])
            right = _picture(alone, scale)
            both = Image.new("RGB", (left.width * 2 + 6, left.height), (255, 255, 255))
            both.paste(left, (0, 0))
            both.paste(right, (left.width + 6, 0))
            words = (f"claims {len(claimed)} of the {int(present.sum())} present parts" if claimed else
                     "claims no part; shown: its 5 most present votes")
            heading = (f"object {k}: presence {float(presence[k]):.2f}, explains {float(mass[k]):.1f} "
                       "parts' worth")
            frames[(i, r)] = _with_text(both, [heading, words])
    axes = [("image", [f"{k + 1} (a {int(labels[p])})" for k, p in enumerate(picked)], 0),
            ("object", [RANKS[r] if r < len(RANKS) else f"number {r + 1}" for r in range(n_objects)], 0)]
    return choice_grid(frames, axes, css_class="oc-scae-objects")
