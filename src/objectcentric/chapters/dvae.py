"""Chapter 5 (D-VAE and D-VAE-ST): the page's runs, tables, figures and explorer.

The notebook (``notebooks/src/05_dvae_st.py``) tells the story and shows the
model's code; this module draws what it shows:

- :class:`Runs` and :func:`load_runs`: the runs a page shows, either the
  recorded ones of ``results/dvae.json`` or runs trained on the page (quick or
  train mode), in the same shape;
- tables (:func:`recipe_table`, :func:`results_table`, :func:`seeds_by_elbo_table`,
  :func:`elbo_pick_table`, :func:`overclustering_table`, :func:`datasets_table`,
  :func:`estimator_table`), each a :func:`objectcentric.book.table`;
- figures (:func:`dataset_figure`, :func:`prototype_figure`, :func:`recipe_curves`,
  :func:`estimator_curves`, :func:`window_figure`, :func:`confusion_figure`);
- :func:`shown_model` (the D-VAE-ST whose pictures the page shows) and
  :func:`explorer` (the prototype explorer).

The thesis's numbers are read from :data:`objectcentric.experiments.dvae.ANCHOR`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import book, runner
from ..book import fmt, pct
from ..checkpoints import CheckpointError, checkpoint_dir, read_manifest
from ..experiments import dvae as recipe
from ..experiments.dvae import DVAERecipe
from ..modes import QUICK, READ, TRAIN
from ..recipes import from_settings
from ..records import read_results, results_dir
from ..viz import confusion_plot, prototype_grid

__all__ = ["Runs", "load_runs", "shown_model", "explorer", "provenance", "shipped_seed_note", "retrained_table",
           "dataset_figure", "prototype_figure", "grid_columns", "recipe_curves", "estimator_curves",
           "window_figure", "confusion_figure", "recipe_table", "results_table", "seeds_by_elbo_table",
           "elbo_pick_table", "overclustering_table", "thesis_table", "datasets_table", "estimator_table",
           "configuration_words", "estimator_words", "thesis_numbers", "MODEL_NAMES", "ESTIMATORS", "EXPLORER_VALUES"]

MODEL_NAMES = {"dvae": "D-VAE", "dvae_st": "D-VAE-ST"}
SPLIT_NAMES = {"train": "training", "test": "test"}
DEFAULT_K = {"SimplifiedMNIST": 3, "Letters": 26}
ESTIMATORS = ("exact", "reinforce", "nvil", "concrete", "rebar", "relax")
RECIPES = ("thesis", "robust", "split", "kmeans")  # the recipe comparison, in this order
RECIPE_COLOURS = {"thesis": "tab:red", "robust": "tab:blue", "split": "tab:orange", "kmeans": "tab:green"}
# What quick mode (and read mode without recorded runs) trains, and what train mode trains.
QUICK_CONFIGS = (("dvae", "robust"), ("dvae_st", "thesis"), ("dvae_st", "robust"))
QUICK_SEEDS = (0, 1)
TRAIN_CONFIGS = (("dvae", "robust"), ("dvae_st", "robust"))
TRAIN_SEEDS = range(5)
FAILED_BY = 0.05  # a seed "failed" when it ends more than this below its configuration's best
# The explorer's slider values: changes from the identity that read well at one decimal.
EXPLORER_VALUES = (-0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6)


# --- the runs a page shows -----------------------------------------------------------------------
@dataclass
class Runs:
    """The runs a Chapter 5 page shows (Chapter 5, D-VAE-ST).

    ``report`` is shaped as ``results/dvae.json`` (``runs``: one entry per
    configuration and split; ``details``: per-seed numbers and histories);
    ``recorded`` says whether it is that file (True) or runs trained on the page;
    ``mode`` is the mode they come from; ``models`` holds the models trained on
    the page by (kind, variant), one per seed.
    """

    report: dict
    recorded: bool
    mode: str
    models: dict = field(default_factory=dict)

    @property
    def details(self) -> dict:
        """Per configuration name: seeds, per-seed accuracies, -ELBOs, mappings, histories."""
        return self.report["details"]

    @property
    def caveat(self) -> str:
        """"" for recorded or fully trained runs; a warning for quick runs, whose numbers are not results."""
        return "" if self.mode != QUICK else " (quick run: a few steps on 1,000 images; not results)"

    def row(self, model: str, dataset: str = "FullMNIST", estimator: str = "exact", k: int | None = None,
            variant: str = "robust", split: str = "train") -> dict | None:
        """The entry of one configuration and split (accuracy by seed, mean, best, worst...), or None."""
        k = k or DEFAULT_K.get(dataset, 10)
        wanted = (model, dataset, estimator, k, variant, split)
        return next((r for r in self.report["runs"] if (r["model"], r["dataset"], r["estimator"], r["k"],
                                                        r["variant"], r["split"]) == wanted), None)

    def prototypes(self, model: str, dataset: str = "FullMNIST", estimator: str = "exact",
                   k: int | None = None, variant: str = "robust") -> np.ndarray | None:
        """Every seed's prototypes (seeds, K, 28, 28) in [0, 1], or None where there are none."""
        k = k or DEFAULT_K.get(dataset, 10)
        if not self.recorded:
            if (model, variant) not in self.models or dataset != "FullMNIST":
                return None
            return np.stack([m.prototypes()[0, :, 0].detach().cpu().numpy() for m in self.models[(model, variant)]])
        path = results_dir() / recipe.PROTOTYPES_FILE
        if not path.exists():
            return None
        with np.load(path) as stored:
            name = recipe.run_name(model, dataset, estimator, k, variant)
            return stored[name] / 255.0 if name in stored else None


def load_runs(mode: str) -> Runs:
    """The runs for a page in ``mode``: the recorded ones in read mode, else train them here.

    Read mode reads ``results/dvae.json`` (and falls back to a quick run, saying
    so, when it is missing); quick mode trains :data:`QUICK_CONFIGS` for two seeds
    at the quick scale; train mode trains :data:`TRAIN_CONFIGS` at full settings
    for five seeds. Each run trained here is scored as the recorded experiment
    scores it (:func:`objectcentric.experiments.dvae.run_report`).
    """
    if mode == READ:
        recorded = read_results(recipe.RESULTS_NAME)
        if recorded and not recorded.get("quick"):
            return Runs(recorded, True, READ)
        print("The recorded runs (results/dvae.json) are missing: this page trains a quick run instead. "
              "Its numbers are not results.")
        mode = QUICK
    configs, seeds = (TRAIN_CONFIGS, TRAIN_SEEDS) if mode == TRAIN else (QUICK_CONFIGS, QUICK_SEEDS)
    models, reports = {}, []
    for kind, variant in configs:
        for seed in seeds:
            run = runner.load_or_train(DVAERecipe(kind=kind, variant=variant), mode, seed, progress="none")
            trained = from_settings(DVAERecipe.name, run.record["settings"])
            models.setdefault((kind, variant), []).append(run.model)
            reports.append(recipe.run_report(run.model, trained, run.record, run.history))
    return Runs(recipe.merge_reports(reports), False, mode, models)


def shown_model(runs: Runs):
    """``(model, words)``: the D-VAE-ST whose prototypes and reconstructions the page shows, on the CPU.

    With the recorded runs: the shipped checkpoint of the main configuration.
    Otherwise the run trained here with the lowest negative ELBO on its own
    training images (how the recorded experiment picks the seed it ships: no
    labels). ``words`` says which it is, for the reader.
    """
    name = DVAERecipe().shipped_name()
    if runs.recorded and (checkpoint_dir() / name).is_file():
        try:
            model = runner.load_or_train(DVAERecipe(), READ).model
            seed = read_manifest()["checkpoints"][name]["seed"]
            return model.cpu().eval(), f"the D-VAE-ST shipped with the book (seed {seed} of the main configuration)"
        except CheckpointError as error:
            print(f"The shipped checkpoint is damaged ({error}): the page trains a quick model instead.")
    candidates = runs.models.get(("dvae_st", "robust"))
    if not candidates:
        candidates = [runner.load_or_train(DVAERecipe(), QUICK, progress="none").model]
        runs.models[("dvae_st", "robust")] = candidates
        return candidates[0].cpu().eval(), "a D-VAE-ST trained here for a few steps (not a result)"
    elbo = runs.details.get(recipe.run_name(*recipe.MAIN), {}).get("train", {}).get("neg_elbo", [])
    pick = int(np.argmin(elbo)) if len(elbo) == len(candidates) else 0
    seeds = runs.details.get(recipe.run_name(*recipe.MAIN), {}).get("seeds", list(range(len(candidates))))
    words = f"the D-VAE-ST trained here with the lowest negative ELBO (seed {seeds[pick]})" + runs.caveat
    return candidates[pick].cpu().eval(), words


def provenance(runs: Runs):
    """The "How this was measured" block of the recorded runs (with the shipped model's training),
    or a line saying that the page trained its own runs."""
    if not runs.recorded:
        from IPython.display import HTML

        return HTML(f"<p><small>These runs were trained on this page ({runs.mode} mode){runs.caveat}."
                    "</small></p>")
    seeds = {name: info["seeds"] for name, info in runs.details.items()}
    devices = sorted({d for r in runs.report["runs"] for d in r.get("devices", ())})
    details = {"seeds": f"{_span(seeds.get(recipe.run_name(*recipe.MAIN), []))} for the main configuration; "
                        f"{min(map(len, seeds.values()))} to 5 seeds, from 0, for the others",
               "devices": "; ".join(devices),
               "what each number is": runs.report.get("description", "").replace("seed 000", "the thesis")}
    entry = read_manifest()["checkpoints"].get(DVAERecipe().shipped_name())
    if entry:
        details["the model shown"] = (f"seed {entry['seed']} of the main configuration, "
                                      f"{entry['metrics']['epochs']} epochs in "
                                      f"{entry['wall_time_s'] / 60:.1f} min on {entry['device']}")
    return book.how_measured(recipe.RESULTS_NAME, details=details)


def _span(seeds) -> str:
    seeds = sorted(seeds)
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def shipped_seed_note(runs: Runs) -> str:
    """Which seed the ELBO picks for the main configuration, and whether the shipped model is that seed."""
    info = runs.details[recipe.run_name(*recipe.MAIN)]
    picked = info["seeds"][int(np.argmin(info["train"]["neg_elbo"]))]
    entry = read_manifest()["checkpoints"].get(DVAERecipe().shipped_name(), {}) if runs.recorded else {}
    shipped = entry.get("seed")
    note = f"The lowest negative ELBO picks seed {picked}."
    retrained = runs.report.get("shipped_main") if runs.recorded else None
    if retrained and shipped == retrained["chosen_seed"]:
        i = retrained["seeds"].index(shipped)
        return note + (f" The recorded runs' weights were not kept, so the model shipped with the book comes from "
                       f"{len(retrained['seeds'])} seeds trained again with the same recipe (the table below); "
                       f"the lowest negative ELBO picks seed {shipped} among them, without labels, and its test "
                       f"accuracy is {retrained['test_accuracy'][i]:.2%}.")
    if shipped not in (None, picked):
        note += (f" The model shipped with the book is seed {shipped}: it was chosen by its accuracy on the "
                 "training images before the experiment picked by the ELBO. Both are among the good seeds.")
    return note


def retrained_table(runs: Runs):
    """The seeds of the main configuration trained again for the shipped model, by negative ELBO; or None."""
    retrained = runs.report.get("shipped_main") if runs.recorded else None
    if not retrained:
        return None
    elbo, accuracy = np.array(retrained["train_neg_elbo"]), np.array(retrained["test_accuracy"])
    rows = [[retrained["seeds"][i], fmt(float(elbo[i])), _pc(retrained["train_accuracy"][i]), _pc(accuracy[i]),
             "shipped" if retrained["seeds"][i] == retrained["chosen_seed"] else ""] for i in np.argsort(elbo)]
    devices = ", ".join(d.split(":")[0] for d in retrained["devices"])
    return book.table(rows, ["seed", "negative ELBO (nats per image)", "training accuracy (%)", "test accuracy (%)",
                             ""],
                      caption=f"{configuration_words(recipe.run_name(*recipe.MAIN))}, trained again on {devices} "
                              "for the shipped model: the seeds ordered by their negative ELBO on the training "
                              "images, lowest first",
                      notes="A seed trained again on another device does not repeat its recorded run: the "
                            "arithmetic differs in the last digits, and over 33 epochs that can decide which "
                            "digits end up sharing a prototype.")


# --- figures -------------------------------------------------------------------------------------
def dataset_figure(datasets: dict):
    """The first 16 test images of each dataset ({name: LabelledImages}), one row each, titled."""
    from ..viz import image_grid

    fig, axes = plt.subplots(len(datasets), 1, figsize=(8, 1.05 * len(datasets)), squeeze=False)
    for ax, (name, data) in zip(axes[:, 0], datasets.items()):
        image_grid(data.images[:16], nrow=16, ax=ax)
        ax.set_title(f"{name}: {len(data.class_names)} classes, {len(data.images):,} test images",
                     loc="left", fontsize=9)
    fig.tight_layout()
    return fig


def prototype_figure(runs: Runs, model: str, variant: str = "robust", which: str = "best",
                     dataset: str = "FullMNIST", k: int | None = None, estimator: str = "exact"):
    """One seed's prototypes (its best or worst by accuracy), each titled with its class and share.

    Returns ``(figure, seed index)``, or ``(None, None)`` (with a line saying so)
    where the configuration has no run on this page.
    """
    entry = runs.row(model, dataset, estimator, k, variant)
    pictures = runs.prototypes(model, dataset, estimator, k, variant)
    if entry is None or pictures is None:
        print(f"No {MODEL_NAMES[model]} run ({variant} recipe) on {dataset} on this page.")
        return None, None
    info = runs.details[recipe.run_name(model, dataset, estimator, entry["k"], variant)]
    accuracy = entry["accuracy_by_seed"]
    index = int(np.argmax(accuracy) if which == "best" else np.argmin(accuracy))
    titles = recipe.prototype_titles(info["train"]["mapping"][index], info["train"]["cluster_sizes"][index],
                                     info["class_names"])
    title = (f"{MODEL_NAMES[model]} on {dataset}, K = {entry['k']}: the {which} of {len(accuracy)} "
             f"seeds (seed {info['seeds'][index]}),\n{pct(accuracy[index])} of the training images right"
             + runs.caveat)
    fig = prototype_grid(pictures[index], titles, ncol=grid_columns(len(titles)), title=title, size=1.2)
    return fig, index


def grid_columns(k: int) -> int:
    """Columns for a grid of ``k`` prototypes that fits the page's 8 inches at 1.2 inches each:
    one row up to 6, else two rows (ten prototypes: 2 x 5)."""
    return k if k <= 6 else min(6, -(-k // 2))


def accuracy_curves(ax, runs: Runs, name: str, label: str, colour) -> None:
    """Draw configuration ``name``'s accuracy during training on ``ax``: the seeds' mean, and a band
    from the lowest to the highest seed (histories of one seed record ``val_accuracy``; of several
    seeds trained side by side, their ``val_accuracy_min``/``_mean``/``_max``)."""
    by_epoch = {}  # epoch -> every seed's (lowest, mean, highest) accuracy
    for part in runs.details[name]["histories"]:
        for h in part["history"]:
            keys = ("val_accuracy",) * 3 if "val_accuracy" in h else \
                tuple(f"val_accuracy_{key}" for key in ("min", "mean", "max"))
            by_epoch.setdefault(h["epoch"], []).append([h[key] for key in keys])
    epochs = sorted(by_epoch)
    low = [min(v[0] for v in by_epoch[e]) for e in epochs]
    high = [max(v[2] for v in by_epoch[e]) for e in epochs]
    mean = [np.mean([v[1] for v in by_epoch[e]]) for e in epochs]
    ax.fill_between(epochs, low, high, color=colour, alpha=0.2, lw=0)
    ax.plot(epochs, mean, color=colour, label=label)


def _thesis_mean_line(ax) -> None:
    ax.axhline(recipe.ANCHOR["mean"], color="gray", ls=":", lw=1, label="thesis mean (RELAX, 150 epochs)")


def recipe_curves(runs: Runs):
    """D-VAE-ST on FullMNIST with the exact gradient: accuracy during training for each recipe run."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for variant in RECIPES:
        name = recipe.run_name("dvae_st", "FullMNIST", "exact", 10, variant)
        if name in runs.details:
            accuracy_curves(ax, runs, name, f"{variant} recipe", RECIPE_COLOURS[variant])
    _thesis_mean_line(ax)
    ax.set(xlabel="epoch", ylabel="accuracy (fraction right)",
           title="D-VAE-ST, FullMNIST: accuracy on 10,000 training images" + runs.caveat)
    ax.legend()
    fig.tight_layout()
    return fig


def _pc(fraction) -> str:
    """A fraction as a number of percent for a table whose header says "%": 0.8992 -> "89.9"."""
    return "–" if fraction is None else f"{100 * fraction:.1f}"


def _seeds(values) -> str:
    return ", ".join(map(_pc, values))


def _epochs(entry: dict) -> str:
    return "/".join(map(str, sorted(set(entry["epochs"]))))


def configuration_words(name_or_entry) -> str:
    """A configuration in words: ``"dvae_st-FullMNIST-exact-k10-robust"`` (or its runs entry) ->
    ``"D-VAE-ST, FullMNIST, exact gradient, K = 10, robust recipe"``."""
    if isinstance(name_or_entry, str):
        model, dataset, estimator, k, variant = name_or_entry.split("-")
        k = int(k[1:])
    else:
        model, dataset, estimator, k, variant = (name_or_entry[key] for key in
                                                 ("model", "dataset", "estimator", "k", "variant"))
    return f"{MODEL_NAMES[model]}, {dataset}, {estimator}, K = {k}, {variant}"


def recipe_table(runs: Runs):
    """Per recipe: its seeds' accuracies on the training images, their mean, best and worst, and the
    test images' mean (D-VAE-ST, FullMNIST, exact gradient)."""
    rows = []
    for variant in RECIPES:
        train, test = (runs.row("dvae_st", variant=variant, split=s) for s in ("train", "test"))
        if train is None:
            continue
        rows.append([variant, _seeds(train["accuracy_by_seed"]), _pc(train["mean"]), _pc(train["best"]),
                     _pc(train["worst"]), _pc(test["mean"])])
    missing = [v for v in RECIPES if runs.row("dvae_st", variant=v) is None]
    return book.table(rows, ["recipe", "training images, each seed (%)", "mean (%)", "best (%)", "worst (%)",
                             "test images, mean (%)"],
                      caption="D-VAE-ST on FullMNIST with the exact gradient, by recipe" + runs.caveat,
                      notes=f"No runs of the {' and '.join(missing)} recipe{'s' if len(missing) > 1 else ''} "
                            "on this page." if missing else None)


def thesis_numbers() -> dict[tuple[str, str], str]:
    """The thesis's accuracies on the training images in percent, by (model, dataset), as tables show them."""
    anchor, reported = recipe.ANCHOR, recipe.ANCHOR["targets"]
    return {("dvae_st", "FullMNIST"): f"{_pc(anchor['mean'])} (best {100 * anchor['best']:.2f})",
            ("dvae", "FullMNIST"): f"{100 * reported['dvae FullMNIST']:.2f}",
            ("dvae_st", "FashionMNIST"): f"{100 * reported['FashionMNIST']:.2f}",
            ("dvae_st", "SimplifiedMNIST"): f"{100 * reported['SimplifiedMNIST']:.2f}"}


def results_table(runs: Runs):
    """Every configuration on this page: its seeds and epochs, its accuracy on the training images (mean,
    and from the worst seed to the best) and the test images' mean."""
    rows = []
    for train in (r for r in runs.report["runs"] if r["split"] == "train"):
        test = runs.row(train["model"], train["dataset"], train["estimator"], train["k"], train["variant"],
                        "test")
        rows.append([configuration_words(train), len(train["seeds"]), _epochs(train), _pc(train["mean"]),
                     f"{_pc(train['worst'])}–{_pc(train['best'])}", _pc(test["mean"]) if test else "–"])
    skipped = [f"{MODEL_NAMES[s['model']]} on {s['dataset']} (its data could not be downloaded)"
               for s in runs.report.get("skipped", [])]
    return book.table(rows, ["configuration (model, data, gradient, K, recipe)", "seeds", "epochs",
                             "mean (%)", "worst to best (%)", "test mean (%)"],
                      caption="Clustering accuracy of every configuration on this page, on the training "
                              "images and the test images" + runs.caveat,
                      notes="Not run: " + "; ".join(skipped) + "." if skipped else None)


# (model, dataset, estimator, recipe) of our runs that the thesis table sets against the thesis's numbers
AGAINST_THE_THESIS = (("dvae", "FullMNIST", "exact", "thesis"), ("dvae", "FullMNIST", "exact", "robust"),
                      ("dvae_st", "FullMNIST", "relax", "thesis"), ("dvae_st", "FullMNIST", "exact", "robust"),
                      ("dvae_st", "FashionMNIST", "exact", "robust"),
                      ("dvae_st", "SimplifiedMNIST", "exact", "robust"))


def thesis_table(runs: Runs):
    """Our runs next to the thesis's numbers (training images): mean, best and worst seed."""
    thesis = thesis_numbers()
    rows = []
    for model, dataset, estimator, variant in AGAINST_THE_THESIS:
        r = runs.row(model, dataset, estimator, variant=variant)
        if r is not None:
            rows.append([f"{MODEL_NAMES[model]}, {dataset}", f"{estimator}, {variant}", _epochs(r),
                         _pc(r["mean"]), f"{_pc(r['worst'])}–{_pc(r['best'])}", thesis[(model, dataset)]])
    return book.table(rows, ["model, data", "our gradient, recipe", "our epochs", "our mean (%)",
                             "our worst to best (%)", "the thesis (%)"],
                      caption="Against the thesis: accuracy on the training images" + runs.caveat,
                      notes="The thesis trained for 150 epochs. Its D-VAE-ST numbers on FullMNIST are over "
                            f"10 seeds trained with RELAX (worst seed {_pc(recipe.ANCHOR['worst'])} %); its "
                            "other numbers are the single figures it reports.")


def _failed(accuracy: np.ndarray) -> np.ndarray:
    return accuracy < accuracy.max() - FAILED_BY


def seeds_by_elbo_table(runs: Runs, name: str):
    """The seeds of configuration ``name`` ordered by their negative ELBO on the training images."""
    info = runs.details[name]
    elbo, accuracy = np.array(info["train"]["neg_elbo"]), np.array(info["train"]["accuracy"])
    rows = [[info["seeds"][i], fmt(float(elbo[i])), _pc(accuracy[i]),
             "failed" if _failed(accuracy)[i] else ""] for i in np.argsort(elbo)]
    return book.table(rows, ["seed", "negative ELBO (nats per image)", "accuracy (%)", ""],
                      caption=f"{configuration_words(name)}: the seeds ordered by their negative ELBO on the "
                              "training images, lowest first" + runs.caveat,
                      notes=f"A seed has failed when it ends more than {100 * FAILED_BY:.0f} percentage "
                            "points below the best seed.")


def elbo_pick_table(runs: Runs):
    """Per configuration with several seeds: the accuracy of the seed with the lowest negative ELBO,
    next to the mean and the best, and whether the ELBO ranks every failed seed below the others."""
    rows = []
    for name, info in runs.details.items():
        accuracy, elbo = np.array(info["train"]["accuracy"]), np.array(info["train"]["neg_elbo"])
        if len(accuracy) < 2:
            continue
        failed = _failed(accuracy)
        separated = "no failed seed" if not failed.any() else \
            ("yes" if failed.all() or elbo[failed].min() > elbo[~failed].max() else "no")
        rows.append([configuration_words(name), len(accuracy), _pc(accuracy.mean()), _pc(accuracy.max()),
                     _pc(accuracy[np.argmin(elbo)]), separated])
    return book.table(rows, ["configuration", "seeds", "mean (%)", "best (%)", "picked by the ELBO (%)",
                             "failed seeds ranked last"],
                      caption="Picking a seed without labels: the one with the lowest negative ELBO"
                              + runs.caveat, notes="Accuracy on the training images.")


def overclustering_table(runs: Runs):
    """D-VAE-ST on FullMNIST with K = 10, 11 and 12 clusters (robust recipe, training images)."""
    rows = [[k, len(r["seeds"]), _epochs(r), _pc(r["mean"]), _pc(r["best"]), _pc(r["worst"])]
            for k in (10, 11, 12) if (r := runs.row("dvae_st", k=k)) is not None]
    return book.table(rows, ["K", "seeds", "epochs", "mean (%)", "best (%)", "worst (%)"],
                      caption="More clusters than classes: D-VAE-ST on FullMNIST, training images" + runs.caveat)


def datasets_table(runs: Runs):
    """D-VAE and D-VAE-ST on SimplifiedMNIST and FashionMNIST (robust recipe, training images)."""
    thesis = thesis_numbers()
    rows = [[MODEL_NAMES[model], dataset, len(r["seeds"]), _epochs(r), _pc(r["mean"]), _pc(r["best"]),
             _pc(r["worst"]), thesis.get((model, dataset), "")]
            for dataset in ("SimplifiedMNIST", "FashionMNIST") for model in ("dvae", "dvae_st")
            if (r := runs.row(model, dataset)) is not None]
    return book.table(rows, ["model", "dataset", "seeds", "epochs", "mean (%)", "best (%)", "worst (%)",
                             "the thesis (%)"],
                      caption="The other datasets, training images" + runs.caveat,
                      notes=None if rows else "No runs on these datasets on this page.")


def _device_kind(device: str) -> str:
    return "GPU" if device.startswith("cuda") else "CPU" if device.startswith("cpu") else device


def estimator_table(runs: Runs):
    """D-VAE-ST on FullMNIST (K = 10) for each gradient estimator and recipe: the seeds' accuracies,
    their mean and worst, the test mean, seconds per epoch and the kind of device it ran on."""
    rows = []
    for estimator in ESTIMATORS:
        for variant in ("robust", "thesis"):
            train = runs.row("dvae_st", estimator=estimator, variant=variant)
            if train is None:
                continue
            test = runs.row("dvae_st", estimator=estimator, variant=variant, split="test")
            devices = ", ".join(dict.fromkeys(_device_kind(d) for d in train.get("devices", ["this machine"])))
            rows.append([estimator, variant, _seeds(train["accuracy_by_seed"]), _pc(train["mean"]),
                         _pc(train["worst"]), _pc(test["mean"]), fmt(train["seconds_per_epoch"]), devices])
    epochs = sorted({e for r in runs.report["runs"] if r["model"] == "dvae_st" for e in r["epochs"]
                     if r["dataset"] == "FullMNIST" and r["k"] == 10})
    return book.table(rows, ["estimator", "recipe", "training images, each seed (%)", "mean (%)",
                             "worst (%)", "test mean (%)", "seconds per epoch", "device"],
                      caption="D-VAE-ST on FullMNIST (K = 10) with each gradient estimator of Chapter 3, "
                              f"{'/'.join(map(str, epochs))} epochs" + runs.caveat,
                      notes=None if len(rows) > 2 else "Only the exact gradient has runs on this page.")


ESTIMATOR_NAMES = {"exact": "the exact gradient", "reinforce": "REINFORCE", "nvil": "NVIL", "concrete": "CONCRETE",
                   "rebar": "REBAR", "relax": "RELAX"}


def _and(words: list[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def estimator_words(runs: Runs) -> str:
    """What the estimator runs (D-VAE-ST, FullMNIST, K = 10, robust) say, as Markdown bullets from their
    numbers: which failed how often, the negative ELBO and accuracy of the seeds that did not fail, and the
    best mean of a sampling estimator."""
    rows = {e: (runs.row("dvae_st", estimator=e), runs.details.get(recipe.run_name("dvae_st", "FullMNIST", e, 10,
                                                                                  "robust")))
            for e in ESTIMATORS}
    rows = {e: (row, info) for e, (row, info) in rows.items() if row is not None and info is not None}
    if len(rows) < 2:
        return "- Only the exact gradient has runs on this page, so there is nothing to compare yet."
    failed, clean, kept = [], [], {}
    for e, (row, info) in rows.items():
        accuracy, elbo = np.array(info["train"]["accuracy"]), np.array(info["train"]["neg_elbo"])
        bad = _failed(accuracy)
        if bad.any():
            failed.append(f"{ESTIMATOR_NAMES[e]} ({int(bad.sum())} of {len(bad)} seeds)")
        else:
            clean.append(f"{ESTIMATOR_NAMES[e]} ({len(bad)} seeds)")
        kept[e] = (float(elbo[~bad].mean()), accuracy[~bad])
    lines = []
    if failed:
        text = ("- **Failed seeds**, with the shape seen below (one digit split over two prototypes while "
                f"another prototype draws two digits), appear with {_and(failed)}")
        text += f"; with {_and(clean)} no seed failed." if clean else "."
        lines.append(text)
    order = sorted(kept, key=lambda e: kept[e][0])
    lines.append("- **Among the seeds that did not fail**, the final negative ELBO orders the estimators: "
                 + ", ".join(f"{ESTIMATOR_NAMES[e]} {kept[e][0]:.1f}" for e in order)
                 + " nats per image; their accuracies: "
                 + ", ".join(f"{ESTIMATOR_NAMES[e]} {_pc(kept[e][1].min())}-{_pc(kept[e][1].max())} %"
                             if kept[e][1].min() != kept[e][1].max() else f"{ESTIMATOR_NAMES[e]} {_pc(kept[e][1][0])} %"
                             for e in order) + ".")
    sampling = {e: row for e, (row, _) in rows.items() if e != "exact"}
    if sampling:
        best = max(sampling, key=lambda e: sampling[e]["mean"])
        row = sampling[best]
        lines.append(f"- **The best mean of a sampling estimator** is {ESTIMATOR_NAMES[best]}'s: "
                     f"{_pc(row['mean'])} % over {len(row['accuracy_by_seed'])} seeds (best seed "
                     f"{_pc(row['best'])} %, worst {_pc(row['worst'])} %).")
    return "\n".join(lines)


def estimator_curves(runs: Runs):
    """Accuracy during training for each estimator (robust recipe), one colour each."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for colour, estimator in zip(plt.cm.tab10.colors, ESTIMATORS):
        name = recipe.run_name("dvae_st", "FullMNIST", estimator, 10, "robust")
        if name in runs.details:
            accuracy_curves(ax, runs, name, estimator, colour)
    _thesis_mean_line(ax)
    ax.set(xlabel="epoch", ylabel="accuracy (fraction right)",
           title="D-VAE-ST, FullMNIST, robust recipe: one estimator per colour" + runs.caveat)
    ax.legend(ncol=2)
    fig.tight_layout()
    return fig


def window_figure(images: torch.Tensor, explained: dict, n: int = 6):
    """``n`` images beside their reconstructions, each titled with its inferred window θ = [A | t]."""
    fig, axes = plt.subplots(1, n, figsize=(8, 2.3))
    for i, ax in enumerate(axes):
        theta = explained["theta"][0, i]
        ax.imshow(torch.cat([images[i, 0], explained["reconstruction"][0, i, 0]], 1), cmap="gray",
                  vmin=0, vmax=1)
        (a, b), (c, d) = theta[:, :2].tolist()
        tx, ty = theta[:, 2].tolist()
        ax.set_title(f"A = [{a:.2f} {b:.2f}\n     {c:.2f} {d:.2f}]\nt = ({tx:.2f}, {ty:.2f})",
                     fontsize=8, family="monospace")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def confusion_figure(runs: Runs, name: str):
    """The confusion matrices on the training images of configuration ``name``'s best and worst seed."""
    info = runs.details[name]
    accuracy = np.array(info["train"]["accuracy"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for ax, index, label in ((axes[0], int(np.argmax(accuracy)), "best"),
                             (axes[1], int(np.argmin(accuracy)), "worst")):
        confusion_plot(info["train"]["confusion"][index], info["class_names"], ax=ax,
                       title=f"{label} seed ({info['seeds'][index]}): {pct(accuracy[index])}")
    fig.tight_layout()
    return fig


# --- the prototype explorer ----------------------------------------------------------------------
def explorer(model, mapping, class_names, values=EXPLORER_VALUES):
    """The prototype explorer of ``model``'s prototypes, each named by its cluster and matched class.

    ``values`` are the changes from the identity each slider steps through.
    Every frame is computed in advance, so the sliders work in the static book;
    in a running notebook an image beside the buttons also applies all five
    sliders of the shown prototype at once (hidden in the static book).
    """
    from ..spatial import transform
    from ..widgets import prototype_explorer

    prototypes = model.prototypes()[0]
    names = [f"{k}→{class_names[c]}" if c >= 0 else str(k) for k, c in enumerate(mapping)]
    values = tuple(round(float(v), 6) + 0.0 for v in values)  # + 0.0: no "-0.0" on a slider
    frames = {name: recipe.transform_traversal(prototypes[k], values) for k, name in enumerate(names)}

    def render(name, changes):
        k = names.index(name)
        return transform(prototypes[k][None], recipe.theta_from_changes(changes))[0, 0].clamp(0, 1)

    return prototype_explorer(frames, recipe.TRANSFORM_PARAMETERS, values, render=render)
