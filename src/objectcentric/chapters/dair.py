"""Chapter 7 (DAIR): the page's model, measurements, tables, figures and widgets.

The notebook (``notebooks/src/07_dair.py``) tells the story and shows DAIR's
code; this module draws what it shows:

- :func:`load_model`: the trained DAIR (shipped, or trained on the page);
- :func:`evaluation`: the recorded results (``results/dair.json``) in read
  mode, else the same scores measured here on the model trained on the page;
- :func:`class_gradient_noise` and :func:`estimator_table`: the class
  gradient of every present object, exact and sampled;
- tables (:func:`seed_table`, :func:`model_table`, :func:`thesis_table`,
  :func:`speed_table`, :func:`digit_confusion_table`,
  :func:`counting_error_table`), each an :func:`objectcentric.book.table`,
  and sentences generated from their numbers (:func:`comparison_words`,
  :func:`seed_words`, :func:`confusion_words`);
- figures (:func:`prototype_figure`, :func:`scenes_figure`,
  :func:`counting_errors_figure`, :func:`misnamed_figure`) and widgets
  (:func:`step_explorer`, :func:`scene_editor`), whose frames are drawn with
  PIL so that a few hundred of them take seconds.

Recorded numbers come from ``results/dair.json``; our AIR's from
``results/air.json``; the thesis's from :data:`objectcentric.experiments.dair.THESIS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_rgb
from PIL import Image, ImageDraw, ImageFont

from .. import book, runner
from ..book import fmt, pct
from ..estimators import exact_gradient, make_estimator
from ..experiments.air import fresh_test_canvases, validation_canvases
from ..experiments.dair import (
    MAX_DISTANCE,
    NUM_DIGITS,
    THESIS,
    DAIRRecipe,
    baseline_report,
    found_objects,
    labelling_canvases,
    mean_neg_elbo,
    run_report,
    shipped_dvae_st,
)
from ..modes import QUICK, READ
from ..object_metrics import FoundObjects, Matching, match_objects
from ..records import read_results
from ..spatial import crop, invert_affine
from .air import STEP_COLOURS, inferred_outlines, show_canvas

__all__ = [
    "Evaluated",
    "caveat",
    "class_gradient_noise",
    "class_shares",
    "comparison_words",
    "confusion_words",
    "counting_error_table",
    "counting_errors",
    "counting_errors_figure",
    "counting_words",
    "digit_confusion",
    "digit_confusion_table",
    "digit_names",
    "error_words",
    "estimator_table",
    "estimator_words",
    "evaluate_objects",
    "evaluation",
    "evaluation_provenance",
    "load_model",
    "mapping_of",
    "misnamed_figure",
    "model_table",
    "naming_diagnosis",
    "naming_words",
    "prototype_figure",
    "recipe_table",
    "recount_words",
    "scene_editor",
    "scenes_figure",
    "seed_table",
    "seed_words",
    "speed_table",
    "step_explorer",
    "thesis_table",
    "training_provenance",
    "training_words",
    "true_box_naming",
    "window_words",
]

QUICK_WORDS = " (a briefly trained model: not results)"
BASELINES = {"air_kmeans": "AIR + k-means",
             "air_dvae_st": "AIR + D-VAE-ST",
             "dvae_st_true_windows": "D-VAE-ST at the true boxes (a reference)"}
SCORE_COLUMNS = ["count, 0-2", "count, 3", "named", "named (refit)", "scenes", "named, 3 digits",
                 "scenes, 3 digits"]
SCORE_NOTES = ("Count: canvases counted right (0-2 digits; 3 digits, never seen in training). Named: digits "
               "named right, the classes mapped to digits on separate labelling canvases; refit: the mapping "
               "fitted on the test canvases themselves (it sees their labels: an upper bound). A missed digit "
               "and an extra object each count as one error. Scenes: canvases with the count right and every "
               "digit named right.")


def _p(fraction, digits: int = 1) -> str:
    """:func:`objectcentric.book.pct` with a no-break space, so that a narrow column never splits it."""
    return pct(fraction, digits).replace(" ", "\u00a0")


def caveat(mode: str) -> str:
    """What to add to a title or caption in ``mode``: a warning in quick mode, else nothing."""
    return QUICK_WORDS if mode == QUICK else ""


# --- the model and its scores ---------------------------------------------------------------------
def load_model(mode: str, device):
    """``(run, model)``: the shipped DAIR in read mode, else one trained on the page (quick: a few steps)."""
    run = runner.load_or_train(DAIRRecipe(), mode, device=device)
    return run, run.model.to(device).eval()


def evaluation(mode: str, model, history: list[dict], device="cpu") -> dict:
    """The chapter's numbers: ``results/dair.json`` in read mode (``recorded`` True); otherwise the same
    keys measured here, on the model trained on the page and the shipped baselines (fewer canvases:
    200 in quick mode, 2,000 in train mode; ``recorded`` False, no speed)."""
    if mode == READ:
        recorded = read_results("dair")
        if recorded.get("runs"):
            return {**recorded, "recorded": True}
    n = 200 if mode == QUICK else 2000
    tests, labelling = fresh_test_canvases(n), labelling_canvases(n)
    last = history[-1] if history else {}
    neg_elbo = last.get("val_neg_elbo")
    if neg_elbo is None:
        neg_elbo = mean_neg_elbo(model, validation_canvases(min(n, 1000))[""].images)
    row = {"seed": 0, "epochs": len(history), "val_neg_elbo": round(float(neg_elbo), 4),
           **run_report(model, labelling, tests)}
    baselines = baseline_report(labelling, tests, device)
    return {"recorded": False, "n_images": n, "runs": {"this page": row}, "shipped_run": "this page",
            "shipped_seed": 0, "baselines": baselines, "thesis": THESIS, **{k: row[k] for k in row if k != "seed"}}


def mapping_of(results: dict) -> np.ndarray:
    """The shipped (or the page's) run's class-to-digit mapping, fitted on the labelling canvases, (K,)."""
    return np.asarray(results["runs"][results["shipped_run"]]["mapping"], dtype=np.int64)


def digit_names(mapping) -> list[str]:
    """The digit each class is mapped to, as text ("?" for a class mapped to none)."""
    return [str(d) if d >= 0 else "?" for d in np.asarray(mapping)]


@dataclass
class Evaluated:
    """DAIR's greedy objects on a set of canvases, matched to the true digits (Chapter 7).

    ``data`` the canvases (a MultiMNIST set), ``objects`` the found objects
    (:class:`~objectcentric.object_metrics.FoundObjects`), ``matching`` their
    matching, ``mapping`` (K,) each class's digit.
    """

    data: object
    objects: FoundObjects
    matching: Matching
    mapping: np.ndarray

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The matched pairs' canvas, named digit and true digit, (P,) each."""
        m, o = self.matching, self.objects
        return m.canvas, self.mapping[o.found_classes[m.canvas, m.found]], o.true_classes[m.canvas, m.true]


def evaluate_objects(model, data, mapping) -> Evaluated:
    """Greedy inference on ``data`` (a MultiMNIST set), matched to its digits as the recorded scores are."""
    objects = found_objects(model, data)
    return Evaluated(data, objects, match_objects(objects, MAX_DISTANCE), np.asarray(mapping, dtype=np.int64))


def class_shares(evaluated: Evaluated, num_classes: int) -> np.ndarray:
    """The share of the found objects that each class takes, (K,)."""
    classes = evaluated.objects.found_classes[evaluated.objects.found_present]
    return np.bincount(classes, minlength=num_classes) / max(len(classes), 1)


# --- the class gradient ---------------------------------------------------------------------------------
def class_gradient_noise(model, images: torch.Tensor, names=("reinforce", "concrete"), draws: int = 200,
                         seed: int = 0) -> dict:
    """Each present object's class gradient on ``images``: exact (the local expectation) and by the sampling
    estimators ``names`` (``draws`` estimates each), with the errors of one estimate, of the mean of K
    estimates (as many decodes as the exact gradient) and of the mean of all ``draws``.

    Errors are root mean squares over objects of ||estimate - exact||, relative to the exact gradients'
    root mean square size. Returns {"objects": M, "canvases": B, "draws": ..., name: {...}}.
    """
    model.requires_grad_(False)  # gradients with respect to the logits only
    try:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        with torch.no_grad():
            trace = model(images, greedy=False)
        problem = model.class_problem(images, trace)
        logits = problem.logits.detach()
        m, k = logits.shape
        started = time.perf_counter()
        exact = exact_gradient(logits, problem.cost)
        seconds = time.perf_counter() - started
        size = exact.pow(2).sum(-1).mean().sqrt()
        out = {"objects": m, "canvases": len(images), "draws": draws, "num_classes": k,
               "exact": {"decodes": k, "seconds": seconds}}
        for name in names:
            estimator = make_estimator(name, k, temperature=model.config.temperature)
            started = time.perf_counter()
            samples = torch.stack([estimator.gradient_samples(logits, problem.cost) for _ in range(draws)])
            seconds = (time.perf_counter() - started) / draws
            groups = samples[: draws // k * k].view(-1, k, m, k).mean(1)

            def error(estimates):
                return float((estimates - exact).pow(2).sum(-1).mean().sqrt() / size)

            one = error(samples)
            decodes = 3 if name == "rebar" else 1  # REBAR: the sample and two relaxations
            out[name] = {"decodes": decodes, "seconds": seconds, "one": one,
                         "mean_of_k": error(groups), "mean_of_all": error(samples.mean(0)),
                         "noise_of_mean": one / draws**0.5}
        return out
    finally:
        torch.random.set_rng_state(generator_state)
        model.requires_grad_(True)


ESTIMATOR_WORDS = {"exact": "exact (local expectation)", "reinforce": "REINFORCE", "concrete": "CONCRETE",
                   "rebar": "REBAR", "nvil": "NVIL", "relax": "RELAX"}


def estimator_table(noise: dict, caveat_words: str = ""):
    """The errors of :func:`class_gradient_noise` as a table, one row per estimator."""
    k, d = noise["num_classes"], noise["draws"]
    rows = [[ESTIMATOR_WORDS["exact"], k, fmt(1000 * noise["exact"]["seconds"], 2), "0", "0", "0", "0"]]
    for name, r in noise.items():
        if not isinstance(r, dict) or name == "exact":
            continue
        rows.append([ESTIMATOR_WORDS.get(name, name), r["decodes"], fmt(1000 * r["seconds"], 2),
                     fmt(r["one"], 2), fmt(r["mean_of_k"], 2), fmt(r["mean_of_all"], 2),
                     fmt(r["noise_of_mean"], 2)])
    columns = ["estimator", "decodes", "ms", "one", f"mean of {k}", f"mean of {d}", f"noise, mean of {d}"]
    return book.table(rows, columns,
                      caption=f"The class gradient of {noise['objects']} objects on {noise['canvases']} training "
                              f"canvases, at the start of training{caveat_words}",
                      notes="Decodes: prototypes painted per object and estimate; ms: milliseconds per "
                            "estimate of all the objects' gradients. The other columns are errors: the root mean "
                            "square distance to the exact gradient, relative to the exact gradients' root mean "
                            f"square size, of one estimate, of the mean of {k} (for a one-decode estimator, as "
                            f"many decodes as the exact gradient) and of the mean of all {d}. Noise: what the error of the mean of {d} "
                            f"would be for an unbiased estimator, one estimate's error / √{d}.")


def estimator_words(noise: dict) -> str:
    """Two sentences on :func:`class_gradient_noise`'s numbers: how noisy each estimator is, and which is
    biased (its mean of all draws stays well above the noise alone)."""
    k = noise["num_classes"]
    parts = []
    for name, r in noise.items():
        if not isinstance(r, dict) or name == "exact":
            continue
        biased = r["mean_of_all"] > 2 * r["noise_of_mean"]
        parts.append(f"one {ESTIMATOR_WORDS.get(name, name)} estimate is off by {fmt(r['one'], 2)} times the "
                     f"gradient's size, and the mean of {k} of them"
                     + (" (as many decodes as the exact gradient)" if r["decodes"] == 1 else "")
                     + f" still by {fmt(r['mean_of_k'], 2)}; its mean over all {noise['draws']} draws "
                     + ("stays far above what noise alone explains: it is biased"
                        if biased else "shrinks as noise alone would: it is unbiased"))
    return "Measured on this page: " + "; ".join(parts) + "."


# --- tables ----------------------------------------------------------------------------------------------
def _scope(results: dict) -> str:
    if results.get("recorded"):
        return "10,000 fresh test canvases of each kind"
    return f"{results['n_images']:,} test canvases of each kind, the model trained on this page"


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def seed_table(results: dict):
    """Every run's scores and its validation -ELBO, one row per seed, and their mean."""
    runs = sorted(results["runs"].items(), key=lambda item: item[1]["seed"])
    keys = ["count_accuracy", "three_digit_count_accuracy", "object_accuracy", "object_accuracy_refit",
            "scene_accuracy", "three_digit_object_accuracy"]
    rows = []
    for key, r in runs:
        name = f"seed {r['seed']}" + (" (shipped)" if key == results["shipped_run"] else "")
        rows.append([name, *(_p(r[k]) for k in keys), fmt(r["val_neg_elbo"], 4)])
    if len(runs) > 1:
        rows.append([f"mean of {len(runs)}", *(_p(_mean([r[k] for _, r in runs])) for k in keys),
                     fmt(_mean([r["val_neg_elbo"] for _, r in runs]), 4)])
    columns = ["run", *SCORE_COLUMNS[:5], "named, 3 digits", "−ELBO (nats)"]
    return book.table(rows, columns, caption=f"DAIR, run by run, on {_scope(results)}",
                      notes=SCORE_NOTES + " −ELBO: the negative ELBO per canvas on the validation canvases after "
                                          "the last epoch; it needs no labels, and the lowest one chooses the "
                                          "shipped seed.")


def _row(r: dict) -> list:
    keys = ["count_accuracy", "three_digit_count_accuracy", "object_accuracy", "object_accuracy_refit",
            "scene_accuracy", "three_digit_object_accuracy", "three_digit_scene_accuracy"]
    return [_p(r[k]) for k in keys]


def _dair_mean(results: dict) -> dict:
    keys = ["count_accuracy", "three_digit_count_accuracy", "object_accuracy", "object_accuracy_refit",
            "scene_accuracy", "three_digit_object_accuracy", "three_digit_scene_accuracy"]
    return {k: _mean([r[k] for r in results["runs"].values()]) for k in keys}


def model_table(results: dict):
    """DAIR (the mean of its seeds and the shipped one) against the two baselines and the reference."""
    runs = results["runs"]
    rows = {}
    if len(runs) > 1:
        rows[f"DAIR, mean of {len(runs)} seeds"] = _row(_dair_mean(results))
    rows["DAIR, shipped seed" if len(runs) > 1 else "DAIR"] = _row(runs[results["shipped_run"]])
    for key, words in BASELINES.items():
        if key in results.get("baselines", {}):
            rows[words] = _row(results["baselines"][key])
    return book.table(rows, SCORE_COLUMNS, index_name="model",
                      caption=f"Counting and naming, DAIR against two pipelines of the models it started from, on "
                              f"{_scope(results)}",
                      notes=SCORE_NOTES + " The baselines are the AIR DAIR started from (Chapter 6), which counts and "
                            "places, with k-means (k = 10) on its objects' z_what or with the D-VAE-ST it "
                            "started from (Chapter 5) "
                            "naming what its windows hold. The reference is not a model: every digit is read "
                            "at its true box, so its counts are right by construction; it shows what the "
                            "D-VAE-ST's naming alone achieves.")


def thesis_table(results: dict, air_results: dict):
    """Count accuracy (0-2 digits) of DAIR and AIR: the thesis's runs against ours, best, mean and worst."""
    thesis = results["thesis"]

    def spread(values):
        return [_p(max(values)), _p(_mean(values)), _p(min(values)), len(values)]

    dair = [r["count_accuracy"] for r in results["runs"].values()]
    rows = {"DAIR, the thesis": [_p(thesis["count_accuracy_best"]), _p(thesis["count_accuracy_mean"]),
                                 _p(thesis["count_accuracy_worst"]), 10],
            "DAIR, ours": spread(dair)}
    rows["AIR, the thesis"] = [_p(thesis["air_count_accuracy_best"]), _p(thesis["air_count_accuracy_mean"]),
                               _p(thesis["air_count_accuracy_worst"]), 10]
    if air_results.get("runs"):
        rows["AIR, ours (Chapter 6)"] = spread([r["sampled_count_accuracy"] for r in air_results["runs"].values()])
    return book.table(rows, ["best run", "mean", "worst run", "runs"], index_name="model",
                      caption="Count accuracy on canvases with 0-2 digits: the thesis's runs against ours",
                      notes="The thesis counted on its own training canvases (20,000, the first digit on the "
                            "diagonal) with z_pres sampled, after 200 epochs from scratch, and never scored the "
                            "names (its canvases carried counts only); its reported DAIR mean lies below its "
                            "worst run, so its table is inconsistent. Ours: fresh test canvases, greedy for "
                            "DAIR, sampled z_pres for our AIR (the thesis's way).")


def speed_table(results: dict):
    """Training throughput and inference time of DAIR and our AIR, measured in the same process."""
    if not results.get("recorded") or "train_images_per_s" not in results:
        from IPython.display import HTML

        return HTML("<p>The speeds are recorded by the book's benchmark and shown in read mode; the model "
                    "trained on this page is not timed.</p>")
    rows = {"DAIR": [fmt(results["train_images_per_s"]), fmt(results["latency_ms_per_canvas"], 2)],
            "AIR (Chapter 6)": [fmt(results["air_train_images_per_s"]), fmt(results["air_latency_ms_per_canvas"], 2)],
            "AIR ÷ DAIR": [f"{results['air_train_images_per_s'] / results['train_images_per_s']:.1f}×",
                           f"{results['latency_ms_per_canvas'] / results['air_latency_ms_per_canvas']:.1f}×"]}
    return book.table(rows, ["training (canvases per s)", "inference (ms per canvas)"], index_name="model",
                      caption=f"Speed of DAIR and our AIR in one process on the same machine ({results['device']})",
                      notes=results.get("speed_protocol"))


def comparison_words(results: dict, air_results: dict) -> str:
    """The comparisons of :func:`model_table` and :func:`thesis_table` in sentences, from their numbers."""
    runs = list(results["runs"].values())
    mean = _dair_mean(results)
    base = results.get("baselines", {})
    many = len(runs) > 1
    who = f"Over its {len(runs)} seeds DAIR" if many else "DAIR"
    span = (f" (from {pct(min(r['object_accuracy'] for r in runs))} to "
            f"{pct(max(r['object_accuracy'] for r in runs))})") if many else ""
    words = [f"{who} names {pct(mean['object_accuracy'])} of the digits on canvases with 0-2 digits{span}"]
    if "air_kmeans" in base and "air_dvae_st" in base:
        km, two = base["air_kmeans"]["object_accuracy"], base["air_dvae_st"]["object_accuracy"]
        above = [w for w, v in (("AIR with k-means", km), ("AIR with the D-VAE-ST", two)) if mean["object_accuracy"] > v]
        verdict = ("above both baselines" if len(above) == 2 else f"above {above[0]} only" if above
                   else "below both baselines")
        words.append(f", {verdict}: AIR with k-means on z_what names {pct(km)}, AIR with the D-VAE-ST reading "
                     f"its windows {pct(two)}")
    if "dvae_st_true_windows" in base:
        reference = base["dvae_st_true_windows"]["object_accuracy"]
        gap = 100 * (reference - mean["object_accuracy"])
        relation = (f", {gap:.1f} points more than DAIR" if gap > 0.05 else
                    f", {-gap:.1f} points fewer than DAIR" if gap < -0.05 else ", as many as DAIR")
        words.append(f". Read at the true boxes, the D-VAE-ST names {pct(reference)}{relation}")
    text = "".join(words) + "."
    air_count = base.get("air_dvae_st", {}).get("count_accuracy")
    if air_count is not None:
        relation = "more" if mean["count_accuracy"] > air_count else "fewer" if mean["count_accuracy"] < air_count \
            else "as many"
        text += (f" It counts {pct(mean['count_accuracy'], 2)} of the canvases right ({relation} than the AIR "
                 f"it started from, {pct(air_count, 2)}), and {pct(mean['three_digit_count_accuracy'], 2)} of "
                 f"those with three digits (AIR: {pct(base['air_dvae_st']['three_digit_count_accuracy'], 2)}).")
    best = max(r["count_accuracy"] for r in runs)
    thesis = results["thesis"]
    text += (f" The thesis's best DAIR run counted {pct(thesis['count_accuracy_best'])} of its training canvases "
             f"right; our {'best' if many else ''} run counts {pct(best)} of fresh test canvases right.")
    return text


def seed_words(results: dict) -> str:
    """Which seeds fall behind, whether they count or name worse, and whether the lowest validation -ELBO
    (no labels) picks the best-named seed."""
    runs = sorted(results["runs"].values(), key=lambda r: r["seed"])
    if len(runs) < 2:
        return ("Only one model was trained and scored here, so there is nothing to compare; the recorded "
                "results compare five seeds.")
    best = max(runs, key=lambda r: r["object_accuracy"])
    worst = min(runs, key=lambda r: r["object_accuracy"])
    by_elbo = sorted(runs, key=lambda r: r["val_neg_elbo"])
    rank = sorted(runs, key=lambda r: -r["object_accuracy"]).index(by_elbo[0]) + 1
    text = (f"The seeds name from {pct(worst['object_accuracy'])} (seed {worst['seed']}) to "
            f"{pct(best['object_accuracy'])} (seed {best['seed']}) of the digits. ")
    behind = [r for r in runs if r["object_accuracy"] < best["object_accuracy"] - 0.03]
    if behind:
        notes = []
        for r in behind:
            counting = r["count_accuracy"] < best["count_accuracy"] - 0.01
            gap = r["object_accuracy_refit"] - r["object_accuracy"]
            notes.append(f"seed {r['seed']} ({pct(r['object_accuracy'])}) "
                         + ("also counts worse" if counting else "counts as well")
                         + f" ({pct(r['count_accuracy'])} against {pct(best['count_accuracy'])})"
                         + (f", and a mapping refit on the test canvases would name {pct(gap)} more" if gap > 0.01
                            else ", and refitting the mapping on the test canvases does not help it"))
        text += "More than three points behind the best: " + "; ".join(notes) + ". "
    else:
        text += "No seed is more than three points behind the best. "
    highest = max(runs, key=lambda r: r["val_neg_elbo"])
    if highest is worst:
        others = [r["val_neg_elbo"] for r in runs if r is not worst]
        text += (f"The worst seed also has the highest validation −ELBO ({worst['val_neg_elbo']:.1f} nats, "
                 f"against {min(others):.1f} to {max(others):.1f} for the others): the ELBO finds it "
                 "without a label. ")
    pearson = float(np.corrcoef([r["val_neg_elbo"] for r in runs], [r["object_accuracy"] for r in runs])[0, 1])
    text += (f"Without labels, the seed with the lowest validation −ELBO is seed {by_elbo[0]['seed']}, the "
             f"{_ordinal(rank)} best at naming ({pct(by_elbo[0]['object_accuracy'])}); across the seeds the "
             f"correlation between −ELBO and naming accuracy is {pearson:+.2f} "
             + ("(a lower −ELBO goes with better naming)." if pearson < -0.5 else
                "(a higher −ELBO goes with better naming: the ELBO does not find the bad seeds)."
                if pearson > 0.5 else "(too weak to find the bad seeds)."))
    return text


def _ordinal(n: int) -> str:
    return {1: "", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


# --- what fails: names and counts ----------------------------------------------------------------------
def digit_confusion(evaluated: Evaluated) -> tuple[np.ndarray, int, int]:
    """``(matrix (10, 10), missed, extra)``: matched digits by true digit (rows) and named digit (columns),
    true digits matched to no object, and found objects matched to no digit."""
    _, named, true = evaluated.pairs()
    matrix = np.zeros((NUM_DIGITS, NUM_DIGITS), dtype=np.int64)
    ok = named >= 0
    np.add.at(matrix, (true[ok], named[ok]), 1)
    n_true = int(evaluated.objects.true_counts.sum())
    n_found = int(evaluated.objects.found_counts.sum())
    return matrix, n_true - len(true), n_found - len(true)


def digit_confusion_table(evaluated: Evaluated, caveat_words: str = ""):
    """:func:`digit_confusion` as a labelled table."""
    matrix, missed, extra = digit_confusion(evaluated)
    n = len(evaluated.objects)
    right = np.trace(matrix) / max(matrix.sum(), 1)
    caption = (f"How the model names the digits it finds on {n:,} test canvases with 0-2 digits: "
               f"{pct(right)} of the {matrix.sum():,} matched digits named right; besides them, {missed:,} "
               f"digits were matched to no object and {extra:,} objects to no digit{caveat_words}")
    caption += "; rows: the true digit, columns: the digit named"
    return book.confusion_table(matrix, range(NUM_DIGITS), range(NUM_DIGITS), caption, rows_are="true",
                                columns_are="")


def confusion_words(evaluated: Evaluated, top: int = 3) -> str:
    """The most frequent confusions of :func:`digit_confusion`, in a sentence."""
    matrix, _, _ = digit_confusion(evaluated)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.dstack(np.unravel_index(np.argsort(-off, axis=None), off.shape))[0][:top]
    parts = [f"{_a(t)} {t} named {p} ({off[t, p]:,} times, {pct(off[t, p] / max(matrix[t].sum(), 1))} of the "
             f"{t}s)" for t, p in order if off[t, p]]
    worst = int(np.argmin(np.diag(matrix) / np.maximum(matrix.sum(1), 1)))
    text = "The most frequent confusions: " + "; ".join(parts) + "." if parts else "No digit is misnamed."
    return (text + f" The digit named right least often is {worst} "
            f"({pct(matrix[worst, worst] / max(matrix[worst].sum(), 1))}).")


@torch.no_grad()
def naming_diagnosis(model, evaluated: Evaluated, batch_size: int = 500) -> dict:
    """Whether DAIR's names are the encoder's mistakes or the model's: for every matched object, the local
    cost (:meth:`~objectcentric.models.dair.DAIR.class_problem`) of each of the K classes, compared with
    the class the encoder chose and the class of the true digit.

    Returns counts: ``right`` and ``misnamed`` objects; ``right_cheapest``, the right ones whose chosen
    class is also the cheapest; ``model_prefers`` the misnamed ones whose chosen class is the cheapest
    of all (the prototypes explain the pixels better as the wrong digit: the model is wrong), and
    ``encoder_missed`` those for which the true digit's prototype costs less than the chosen one (the
    encoder is wrong). The two last need not add up to ``misnamed`` (a third class may be cheapest).
    """
    device = next(model.parameters()).device
    data, m = evaluated.data, evaluated.matching
    digit_class = {int(d): c for c, d in enumerate(evaluated.mapping) if d >= 0}
    canvas, named, true = evaluated.pairs()
    counts = {"right": 0, "misnamed": 0, "right_cheapest": 0, "model_prefers": 0, "encoder_missed": 0}
    k = model.config.num_classes
    eye = torch.eye(k, device=device)
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].to(device)
        trace = model(x, greedy=True)
        problem = model.class_problem(x, trace)
        if problem is None:
            continue
        costs = torch.stack([problem.cost(eye[j].expand(len(problem.canvas), k)) for j in range(k)], 1).cpu()
        rows = {(int(c) + start, int(st)): i for i, (c, st) in enumerate(zip(problem.canvas, problem.step))}
        for pair in np.flatnonzero((canvas >= start) & (canvas < start + batch_size)):
            cost = costs[rows[(int(canvas[pair]), int(m.found[pair]))]]
            chosen = int(trace.classes[canvas[pair] - start, m.found[pair]])
            cheapest = int(cost.argmin()) == chosen
            if named[pair] == true[pair]:
                counts["right"] += 1
                counts["right_cheapest"] += cheapest
            else:
                counts["misnamed"] += 1
                counts["model_prefers"] += cheapest
                t = digit_class.get(int(true[pair]))
                counts["encoder_missed"] += t is not None and bool(cost[t] < cost[chosen])
    return counts


def naming_words(diagnosis: dict) -> str:
    """:func:`naming_diagnosis` in sentences."""
    d = diagnosis
    if not d["misnamed"]:
        return "No matched digit is misnamed on these canvases."
    return (f"Of the {d['right']:,} digits named right, {pct(d['right_cheapest'] / max(d['right'], 1))} get "
            f"the class whose prototype explains the canvas best (the lowest local cost of the {NUM_DIGITS} "
            f"classes). Of the {d['misnamed']:,} misnamed ones, {d['model_prefers']:,} "
            f"({pct(d['model_prefers'] / d['misnamed'])}) also get the cheapest class: the deformed prototype "
            f"of the wrong digit explains those pixels better than any other, so the *model* is wrong, not the "
            f"encoder. For {d['encoder_missed']:,} ({pct(d['encoder_missed'] / d['misnamed'])}) the true "
            f"digit's prototype would have cost less than the chosen one: there the encoder is wrong.")


COUNTING_KINDS = {"twice": "one digit explained by two objects", "nothing": "an object where no digit is",
                  "merged": "two digits in one window", "missed": "a digit missed"}
SHORT_KINDS = {"twice": "two objects,\none digit", "nothing": "an object,\nno digit",
               "merged": "two digits,\none window", "missed": "a digit\nmissed"}


def _a(digit) -> str:
    """The article before a digit's name: "an 8", "a 7"."""
    return "an" if int(digit) == 8 else "a"


def recount_words(evaluated: Evaluated, results: dict) -> str:
    """The page's own count of the digits named right next to the recorded number for the same model."""
    from ..object_metrics import object_accuracy

    here = object_accuracy(evaluated.objects, evaluated.matching, evaluated.mapping)
    recorded = results["runs"][results["shipped_run"]]["object_accuracy"]
    same = abs(here - recorded) < 5e-4
    return (f"On these {len(evaluated.objects):,} canvases the model names {pct(here, 2)} of the digits right"
            + (", as recorded." if same else f" (recorded: {pct(recorded, 2)}; "
               + ("the same canvases, on another device or code version)." if results.get("recorded")
                  else "the page's own scores above used other canvases).")))


def counting_errors(evaluated: Evaluated) -> dict[str, list[int]]:
    """The canvases whose count is wrong, by kind (:data:`COUNTING_KINDS`): too many objects with two of
    them near one digit (``twice``) or not (``nothing``); too few with a found window near two digits
    (``merged``) or not (``missed``). Near: within the matching's distance (half a digit)."""
    o = evaluated.objects
    kinds = {k: [] for k in COUNTING_KINDS}
    for n in np.flatnonzero(o.found_counts != o.true_counts):
        found = o.found_centres[n][o.found_present[n]]
        true = o.true_centres[n][o.true_present[n]]
        near = np.sqrt(((found[:, None] - true[None]) ** 2).sum(-1)) <= MAX_DISTANCE if len(found) and len(true) \
            else np.zeros((len(found), len(true)), bool)
        if o.found_counts[n] > o.true_counts[n]:
            kinds["twice" if (near.sum(0) >= 2).any() else "nothing"].append(int(n))
        else:
            kinds["merged" if (near.sum(1) >= 2).any() else "missed"].append(int(n))
    return kinds


def error_words(evaluated: Evaluated) -> str:
    """Where the digits that are not named right go: misnamed, missed, or outnumbered by extra objects."""
    matrix, missed, extra = digit_confusion(evaluated)
    slots = int(evaluated.matching.slots.sum())
    right = int(np.trace(matrix))
    misnamed = int(matrix.sum()) - right
    wrong = slots - right
    if not wrong:
        return "Every digit of these canvases is found and named right."
    return (f"On these {len(evaluated.objects):,} canvases, {slots:,} objects had to be right (a digit, or an "
            f"extra object where there is none) and {right:,} were ({pct(right / slots)}). Of the {wrong:,} "
            f"errors, {misnamed:,} ({pct(misnamed / wrong)}) are digits found and misnamed, {missed:,} "
            f"({pct(missed / wrong)}) digits matched to no object, and the rest are canvases with more "
            f"objects than digits ({extra:,} extra objects).")


@torch.no_grad()
def true_box_naming(model, data, results: dict, device="cpu") -> dict:
    """How well DAIR's describer (its class encoder and prototypes) names the digits of ``data`` when it is
    handed the *true* boxes, next to the shipped D-VAE-ST on the same crops, each with its own mapping
    (``results``' shipped run and its D-VAE-ST reference): ``{"dair": ..., "dvae_st": ..., "digits": n}``."""
    from ..spatial import crop_window

    canvas, slot = data.present.nonzero(as_tuple=True)
    where = data.z_where[canvas, slot]
    crops = crop_window(data.images[canvas], where[:, 0], where[:, 1:], model.config.window).to(device)
    truth = data.classes[canvas, slot].numpy()
    _, _, recorded = model.what.describe(crops, greedy=True)
    dair = mapping_of(results)[recorded["classes"].cpu().numpy()]
    dvae_st = shipped_dvae_st(device)
    classes = torch.cat([dvae_st.assign(crops[i:i + 1000])[0].cpu() for i in range(0, len(crops), 1000)])
    reference = np.asarray(results["baselines"]["dvae_st_true_windows"]["mapping"])[classes.numpy()]
    return {"dair": float((dair == truth).mean()), "dvae_st": float((reference == truth).mean()),
            "digits": len(truth)}


def window_words(true_box: dict, evaluated: Evaluated) -> str:
    """:func:`true_box_naming` next to the share of matched digits DAIR names right in its own windows."""
    matrix, _, _ = digit_confusion(evaluated)
    own = np.trace(matrix) / max(matrix.sum(), 1)
    gap = 100 * (true_box["dvae_st"] - true_box["dair"])
    verdict = ("so training the two models together has not spoiled the naming"
               if gap < 0.5 else f"so training the two models together costs {gap:.1f} points of naming")
    return (f"Handed the true boxes of the same {true_box['digits']:,} digits, DAIR's own class encoder and "
            f"prototypes name {pct(true_box['dair'])} of them, the shipped D-VAE-ST {pct(true_box['dvae_st'])}: "
            f"{verdict}. In DAIR's own windows, {pct(own)} of the digits it finds are named right.")


def counting_words(evaluated: Evaluated) -> str:
    """The most frequent kind of counting error, in a sentence."""
    kinds = counting_errors(evaluated)
    total = sum(len(v) for v in kinds.values())
    if not total:
        return "Every canvas is counted right."
    top = max(kinds, key=lambda k: len(kinds[k]))
    text = (f"{pct(total / len(evaluated.objects), 2)} of the canvases are counted wrong; the most frequent "
            f"kind of error is {COUNTING_KINDS[top]} ({len(kinds[top]):,} of {total:,}).")
    o, m = evaluated.objects, evaluated.matching
    matched = np.zeros(o.true_present.shape, bool)
    matched[m.canvas, m.true] = True
    missed = np.bincount(o.true_classes[o.true_present & ~matched], minlength=NUM_DIGITS)
    if missed.sum():
        digit = int(missed.argmax())
        text += (f" Of the {int(missed.sum()):,} digits matched to no object, {int(missed[digit]):,} are "
                 f"{digit}s.")
    return text


def counting_error_table(evaluated: Evaluated, caveat_words: str = ""):
    """How many canvases :func:`counting_errors` finds of each kind."""
    kinds = counting_errors(evaluated)
    total = sum(len(v) for v in kinds.values())
    rows = [[COUNTING_KINDS[k], len(v), pct(len(v) / max(total, 1))] for k, v in kinds.items()]
    n = len(evaluated.objects)
    return book.table(rows, ["kind of error", "canvases", "share of the errors"],
                      caption=f"The {total:,} counting errors on {n:,} test canvases with 0-2 digits, by kind"
                              f"{caveat_words}")


# --- figures ---------------------------------------------------------------------------------------------
def prototype_figure(model, mapping, shares=None, title: str = ""):
    """The K prototypes in the order of their digits, each titled with its digit, its class and (if given)
    the share of found objects it takes."""
    mapping = np.asarray(mapping)
    order = sorted(range(len(mapping)), key=lambda c: (mapping[c] < 0, mapping[c], c))
    prototypes = model.prototypes().cpu()[order]
    titles = [f"digit {digit_names(mapping)[c]}\nclass {c}" + (f"\n{pct(shares[c], 0)}" if shares is not None
                                                               else "") for c in order]
    from ..viz import prototype_grid

    return prototype_grid(prototypes, titles, ncol=min(len(order), 10), size=0.72, title=title or None)


def _named(trace, n: int, mapping) -> list[str]:
    return [digit_names(mapping)[int(trace.classes[n, s])] for s in range(int(trace.counts[n]))]


def scenes_figure(model, data, mapping, n: int = 8, device="cpu", title: str = ""):
    """``n`` canvases of ``data`` with DAIR's windows coloured by step, titled with the true digits and the
    digits DAIR names (top), over its reconstruction (bottom)."""
    with torch.no_grad():
        trace = model(data.images[:n].to(device), greedy=True)
    fig, axes = plt.subplots(2, n, figsize=(8, 2.9), layout="constrained")
    for i in range(n):
        true = [str(int(c)) for c in data.classes[i] if c >= 0]
        boxes = inferred_outlines(trace, i)
        show_canvas(axes[0, i], data.images[i], boxes,
                    title=f"true: {' '.join(true) or '–'}\nnamed: {' '.join(_named(trace, i, mapping)) or '–'}")
        show_canvas(axes[1, i], trace.canvas[i].clamp(0, 1).cpu(), boxes)
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("reconstruction", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def counting_errors_figure(model, evaluated: Evaluated, per_kind: int = 2, device="cpu", title: str = ""):
    """Up to ``per_kind`` canvases of each kind of counting error: the input with DAIR's windows and the
    digits it names (top), its reconstruction (bottom)."""
    kinds = counting_errors(evaluated)
    picked = [(k, n) for k, ns in kinds.items() for n in ns[:per_kind]]
    if not picked:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no counting errors on these canvases", ha="center", va="center")
        return fig
    data = evaluated.data
    index = [n for _, n in picked]
    with torch.no_grad():
        trace = model(data.images[index].to(device), greedy=True)
    fig, axes = plt.subplots(2, len(picked), figsize=(min(8, 1.0 * len(picked) + 0.5), 3.1),
                             layout="constrained", squeeze=False)
    for i, (kind, n) in enumerate(picked):
        true = [str(int(c)) for c in data.classes[n] if c >= 0]
        boxes = inferred_outlines(trace, i)
        show_canvas(axes[0, i], data.images[n], boxes,
                    title=f"true: {' '.join(true) or '–'}\nnamed: {' '.join(_named(trace, i, evaluated.mapping)) or '–'}")
        show_canvas(axes[1, i], trace.canvas[i].clamp(0, 1).cpu(), boxes)
        axes[1, i].set_xlabel(SHORT_KINDS[kind], fontsize=9)
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("reconstruction", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def misnamed_figure(model, evaluated: Evaluated, top: int = 4, per_pair: int = 3, title: str = ""):
    """For the ``top`` most frequent confusions, ``per_pair`` misnamed digits as DAIR saw them (the glimpse,
    its deformation undone), next to the prototype it chose and the prototype of the true digit."""
    matrix, _, _ = digit_confusion(evaluated)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(t), int(p)) for t, p in np.dstack(np.unravel_index(np.argsort(-off, axis=None), off.shape))[0]
             if off[t, p]][:top]
    if not pairs:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no digit misnamed on these canvases", ha="center", va="center")
        return fig
    canvas, named, true = evaluated.pairs()
    found_step = evaluated.matching.found
    prototypes = model.prototypes().cpu()
    mapping = evaluated.mapping
    fig, axes = plt.subplots(len(pairs), per_pair + 2, figsize=(0.95 * (per_pair + 2) + 0.4, 1.15 * len(pairs)),
                             layout="constrained", squeeze=False)
    device = next(model.parameters()).device
    for row, (t, p) in zip(axes, pairs):
        hits = np.flatnonzero((true == t) & (named == p))[:per_pair]
        images = evaluated.data.images[canvas[hits]].to(device)
        with torch.no_grad():
            trace = model(images, greedy=True)
        steps = torch.as_tensor(found_step[hits])
        rows = torch.arange(len(hits))
        glimpses = trace.glimpses[rows, steps]
        theta = trace.theta[rows, steps]
        aligned = crop(glimpses, invert_affine(theta.view(-1, 2, 3)), (glimpses.shape[-1],) * 2, validate=False)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for j in range(len(hits)):
            row[j].imshow(aligned[j, 0].clamp(0, 1).cpu(), cmap="gray", vmin=0, vmax=1)
        row[0].set_ylabel(f"{_a(t)} {t}\nnamed {p}", fontsize=9)
        chosen = [c for c in range(len(mapping)) if mapping[c] == p]
        right = [c for c in range(len(mapping)) if mapping[c] == t]
        for ax, classes in ((row[per_pair], chosen), (row[per_pair + 1], right)):
            if classes:
                ax.imshow(prototypes[classes[0], 0], cmap="gray", vmin=0, vmax=1)
    headings = ["what DAIR read" if j == per_pair // 2 else "" for j in range(per_pair)]
    for ax, words in zip(axes[0], headings + ["prototype\nchosen", "prototype of\nthe true digit"]):
        ax.set_title(words, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --- frames for the widgets, drawn with PIL ---------------------------------------------------------------
FONT = ImageFont.load_default(size=13)
LINE = 16  # pixels per line of text
GREY = (150, 150, 150)
STEP_RGB = [tuple(int(255 * v) for v in to_rgb(c)) for c in STEP_COLOURS]


def _picture(image, scale: int, boxes=()) -> Image.Image:
    """A grey image (H, W) or (1, H, W) in [0, 1], upscaled, with window boxes ``(where, colour)`` on it;
    ``where`` is AIR's (log s, x, y)."""
    array = np.asarray(torch.as_tensor(image).detach().cpu().float().clamp(0, 1))
    array = array[0] if array.ndim == 3 else array
    height, width = array.shape
    array = np.repeat(np.repeat(np.round(255 * array).astype(np.uint8), scale, 0), scale, 1)
    picture = Image.fromarray(array).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for where, colour in boxes:
        s, x, y = float(np.exp(where[0])), float(where[1]), float(where[2])
        corners = [(x - s + 1) * width / 2, (y - s + 1) * height / 2, (x + s + 1) * width / 2,
                   (y + s + 1) * height / 2]
        draw.rectangle([v * scale for v in corners], outline=colour, width=2)
    return picture


def _panel(picture: Image.Image, lines) -> Image.Image:
    """``picture`` under its title (a list of lines)."""
    out = Image.new("RGB", (picture.width, picture.height + LINE * len(lines) + 4), "white")
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text(((picture.width - draw.textlength(line, font=FONT)) / 2, 1 + LINE * i), line, fill="black",
                  font=FONT)
    out.paste(picture, (0, LINE * len(lines) + 4))
    return out


def _strip(panels, footer: str = "", gap: int = 6) -> np.ndarray:
    """Panels side by side (tops aligned) with an optional footer line: an RGB array in [0, 1]."""
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    height = max(p.height for p in panels) + (LINE + 6 if footer else 0)
    out = Image.new("RGB", (width, height), "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    if footer:
        ImageDraw.Draw(out).text((2, height - LINE - 2), footer, fill="black", font=FONT)
    return np.asarray(out, dtype=np.float64) / 255.0


def _aligned(trace, n: int, step: int) -> torch.Tensor:
    """The glimpse of canvas ``n``'s ``step`` with its inferred deformation undone (what names the class)."""
    glimpse = trace.glimpses[n, step][None]
    theta = trace.theta[n, step].view(1, 2, 3)
    return crop(glimpse, invert_affine(theta), (glimpse.shape[-1],) * 2, validate=False)[0]


def _step_frame(model, trace, image, n: int, step: int, mapping) -> np.ndarray:
    present = bool(trace.pres[n, step])
    colour = STEP_RGB[step % len(STEP_RGB)] if present else GREY
    c = int(trace.classes[n, step])
    digit = digit_names(mapping)[c]
    q = float(trace.class_logits[n, step].softmax(-1)[c])
    so_far = (trace.painted[n, :step + 1, 0] * trace.pres[n, :step + 1, None, None]).sum(0)
    panels = [_panel(_picture(image, 2, [(trace.where[n, step].cpu(), colour)]),
                     [f"step {step + 1}", "present" if present else "absent"]),
              _panel(_picture(trace.glimpses[n, step], 3), ["glimpse", ""]),
              _panel(_picture(_aligned(trace, n, step), 3), ["deformation", "undone"]),
              _panel(_picture(model.prototypes()[c], 3), [f"class {c}:", f"the digit {digit}"]),
              _panel(_picture(trace.patches[n, step], 3), ["prototype", "deformed"]),
              _panel(_picture(so_far, 2), ["canvas", "so far"])]
    footer = (f"P(present) = {float(trace.pres_prob[n, step]):.2f}; "
              + (f"named {digit} with q(class) = {q:.2f}" if present else "absent: not painted, not counted"))
    return _strip(panels, footer)


def step_explorer(model, test, test3, mapping, device="cpu"):
    """Sliders over eight test canvases (two each with 2, 1 and 0 digits, two with 3) and over the steps:
    each frame shows the step's window, its glimpse, the glimpse with the deformation undone, the chosen
    prototype with its digit, the prototype deformed, and the canvas painted so far (works in the static
    book: every frame is precomputed)."""
    from ..widgets import choice_grid

    picked = [int(i) for c in (2, 1, 0) for i in torch.nonzero(test.counts == c)[:2, 0]]
    images = torch.stack([test.images[i] for i in picked] + [test3.images[i] for i in range(2)])
    counts = [int(test.counts[i]) for i in picked] + [3, 3]
    with torch.no_grad():
        trace = model(images.to(device), greedy=True)
    steps = model.config.max_steps
    frames = {(n, s): _step_frame(model, trace, images[n], n, s, mapping)
              for n in range(len(images)) for s in range(steps)}
    labels = [f"{n + 1} ({c} digit{'s' if c != 1 else ''})" for n, c in enumerate(counts)]
    axes = [("canvas", labels, 0, "slider"), ("step", [str(s + 1) for s in range(steps)], 0)]
    return choice_grid(frames, axes, css_class="oc-explorer")


MOVES = {"in place": (0.0, 0.0), "left": (-0.2, 0.0), "right": (0.2, 0.0), "up": (0.0, -0.2), "down": (0.0, 0.2)}


@torch.no_grad()
def _edited(model, x, trace, n: int, step: int, code_class: int | None, move) -> tuple[torch.Tensor, float, list]:
    """Canvas ``n`` re-rendered with object ``step`` painted as ``code_class`` (None: as found) and its window
    moved by ``move`` (dx, dy): ``(canvas (1, H, W), reconstruction error in nats, windows)``."""
    k = model.config.num_classes
    present = trace.pres[n].bool()
    where = trace.where[n].clone()
    where[step, 1] += move[0]
    where[step, 2] += move[1]
    classes = trace.classes[n].clone()
    if code_class is not None:
        classes[step] = code_class
    code = torch.cat([torch.nn.functional.one_hot(classes, k).to(where), trace.theta[n]], -1)
    painted, _ = model.what.paint(code, where[:, 0].exp(), where[:, 1:], model.config.canvas)
    canvas = (painted[:, 0] * present[:, None, None]).sum(0, keepdim=True)
    error = float(-model.log_likelihood(x[n][None], canvas[None])[0])
    windows = [(where[s].cpu(), STEP_RGB[s] if s == step else GREY) for s in range(len(present)) if present[s]]
    return canvas.clamp(0, 1).cpu(), error, windows


def scene_editor(model, data, mapping, n_canvases: int = 3, device="cpu"):
    """Pick one of ``n_canvases`` two-digit test canvases that DAIR counts right, one of its two objects,
    a class (by its digit) and a move of its window: the scene is re-rendered with that object changed,
    next to the input and DAIR's own reading, with the reconstruction error of each. Every combination
    is precomputed (3 x 2 x 11 x 5 frames), so the controls work in the static book too."""
    from ..widgets import choice_grid

    with torch.no_grad():
        trace = model(data.images[:100].to(device), greedy=True)
    right = [int(i) for i in torch.nonzero((trace.counts.cpu() == 2) & (data.counts[:100] == 2))[:, 0]]
    chosen = right[:n_canvases]
    x = data.images[chosen].to(device)
    with torch.no_grad():
        trace = model(x, greedy=True)
    names = digit_names(mapping)
    order = sorted(range(len(names)), key=lambda c: (names[c] == "?", names[c], c))
    class_labels = ["as found"] + [names[c] if names.count(names[c]) == 1 else f"{names[c]} ({c})" for c in order]
    side, frames = [], {}
    for i in range(len(chosen)):
        found_error = float(-model.log_likelihood(x[i][None], trace.canvas[i][None])[0])
        windows = [(trace.where[i, s].cpu(), STEP_RGB[s]) for s in range(int(trace.counts[i]))]
        named = " and ".join(_named(trace, i, mapping))
        side.append(_strip([_panel(_picture(x[i], 3), ["input", ""]),
                            _panel(_picture(trace.canvas[i].clamp(0, 1), 3, windows),
                                   ["as DAIR reads it:", named])], f"reconstruction error {found_error:.1f} nats"))
        for step in range(2):
            for j, c in enumerate([None] + order):
                for m, move in enumerate(MOVES.values()):
                    canvas, error, boxes = _edited(model, x, trace, i, step, c, move)
                    change = "as found" if c is None else f"as a {names[c]}"
                    frames[(i, step, j, m)] = _strip(
                        [_panel(_picture(canvas, 3, boxes), ["edited:", f"object {step + 1} {change}"])],
                        f"error {error:.1f} nats")
    axes = [("canvas", [str(i + 1) for i in range(len(chosen))], 0),
            ("object", ["1 (red)", "2 (green)"], 0),
            ("class", class_labels, 0, "slider"),
            ("window", list(MOVES), 0)]
    return choice_grid(frames, axes, side=side, css_class="oc-scene-editor")


# --- training and provenance ---------------------------------------------------------------------------
RECIPE_WORDS = {
    "epochs": "passes over the training canvases",
    "n_train": "training canvases, 0-2 of MNIST's training digits each",
    "batch_size": "canvases per step",
    "lr": "Adam's learning rate",
    "baseline_lr": "learning rate of the NVIL baseline of z_pres",
    "clip_grad_norm": "the gradient's norm is clipped to",
    "estimator": "the class gradient (Chapter 3)",
    "init": "where training starts: the shipped AIR and D-VAE-ST",
    "num_classes": "K, the number of classes and prototypes",
    "marginal_weight": "weight of the extra KL of the batch's mean class distribution",
    "pixel_std": "σ, the standard deviation of each pixel (AIR's)",
    "kl_weight": "weight of the KL terms in the loss (AIR's)",
    "align": "the class encoder reads the glimpse with the deformation undone",
    "n_val": "validation canvases of each kind (0-2 and 3 digits), scored after every epoch",
}


def recipe_table(recipe: DAIRRecipe, caveat_words: str = ""):
    """The training recipe's settings (:data:`RECIPE_WORDS`), in words, with the field's name and value."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(recipe) if f.name != "quick"]
    rows = {f"{RECIPE_WORDS.get(name, name.replace('_', ' '))} ({name})": [getattr(recipe, name)]
            for name in sorted(names, key=lambda n: list(RECIPE_WORDS).index(n) if n in RECIPE_WORDS else 99)}
    return book.table(rows, ["value"], index_name="setting", caption=f"The training recipe{caveat_words}")


def training_words(history: list[dict]) -> str:
    """One line on the last epoch of a training history: its -ELBO and the held-out count accuracies."""
    last = history[-1]
    held = {k: v for k, v in last.items() if k.startswith("val_") and k.endswith("count_accuracy")}
    words = "; ".join(f"{book.curve_words(k)[0]}: {pct(v)}" for k, v in held.items())
    return (f"After {len(history)} epoch{'s' if len(history) != 1 else ''}: negative ELBO "
            f"{fmt(last['neg_elbo'])} nats per canvas on the training batches"
            + (f", {fmt(last['val_neg_elbo'])} on the validation canvases" if "val_neg_elbo" in last else "")
            + (f". On the validation canvases, {words}." if words else "."))


STARTED_FROM_NAMES = {"air_multi_mnist_difference.pt": "AIR (Chapter 6)", "dvae_st_fullmnist.pt": "D-VAE-ST (Chapter 5)"}


def _started_from(entry: dict, shipped: dict) -> dict:
    """What the shipped DAIR started from (its manifest entry's ``started_from``), and whether each of those
    checkpoints is still the one shipped (``shipped``: the manifest's checkpoints)."""
    out = {}
    for name, start in (entry.get("started_from") or {}).items():
        words = f"{name}, seed {start.get('seed')} (sha256 {start['sha256'][:12]}…)"
        if (shipped.get(name) or {}).get("sha256") != start["sha256"]:
            words += (f"; the book now ships another model under that name (seed {shipped.get(name, {}).get('seed')}, "
                      "trained again and chosen without labels), so the DAIR runs above started from its predecessor")
        out[f"started from {STARTED_FROM_NAMES.get(name, name)}"] = words
    return out


def started_from_words(results: dict) -> str:
    """For the page: which recorded models the shipped DAIR and the baselines started from, when the book
    now ships other ones under those names (else nothing)."""
    from ..checkpoints import read_manifest

    shipped = read_manifest()["checkpoints"]
    entry = shipped.get(DAIRRecipe().shipped_name(), {})
    if not results.get("recorded"):
        return ""
    older = [(STARTED_FROM_NAMES.get(name, name), start.get("seed"), shipped.get(name, {}).get("seed"))
             for name, start in (entry.get("started_from") or {}).items()
             if (shipped.get(name) or {}).get("sha256") != start["sha256"]]
    if not older:
        return ""
    which = "; ".join(f"the {model} of seed {old}, which the book has since replaced by seed {new}"
                      for model, old, new in older)
    models = "an earlier model" if len(older) == 1 else "earlier models"
    return (f"The recorded DAIR runs, and the baselines beside them, start from {models}: {which}, "
            "chosen again without labels. Training DAIR on this page starts from the models shipped now.")


def training_provenance(run, results: dict):
    """The "How this was measured" block of the trained models: what trained the shipped model (its
    checkpoint's manifest entry) and every recorded seed's training time (``results/dair.json``)."""
    from IPython.display import HTML

    from ..checkpoints import read_manifest

    if not run.record.get("loaded") or not results.get("recorded"):
        return HTML("<p><small>The model above was trained on this page"
                    + (" for a few steps only; its numbers are not results." if not run.record.get("loaded")
                       else ".") + "</small></p>")
    shipped = read_manifest()["checkpoints"]
    entry = shipped.get(run.record["file"], {})
    details = {}
    if entry:
        minutes = f"{entry['wall_time_s'] / 60:.1f} min" if entry.get("wall_time_s") else "a time not recorded"
        details["the shipped model"] = (f"seed {entry.get('seed')}, {entry.get('metrics', {}).get('epochs', '?')} "
                                        f"epochs in {minutes} on {entry.get('device') or 'a machine not recorded'}")
        if entry.get("note"):
            details["why this seed"] = entry["note"]
        details.update(_started_from(entry, shipped))
    for r in sorted(results["runs"].values(), key=lambda r: r["seed"]):
        seconds = r["training_wall_time_s"]
        took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        details[f"seed {r['seed']}"] = f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''} in {took}"
    details["recipe"] = results.get("notes", "")
    return book.how_measured("dair", keys=["runs"], details=details)


def evaluation_provenance(results: dict, keys, extra: dict | None = None):
    """The "How this was measured" block of recorded numbers ``keys`` (nothing when they were measured on
    the page, whose cells say how)."""
    from IPython.display import HTML

    if not results.get("recorded"):
        return HTML("<p><small>Measured on this page with the model trained here "
                    f"({results['n_images']:,} canvases of each kind).</small></p>")
    return book.how_measured("dair", keys=list(keys), details={"protocol": results.get("protocol", ""),
                                                               **(extra or {})})
