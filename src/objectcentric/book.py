"""What a chapter shows its reader, in one place (every chapter).

- :func:`setup`: a chapter's one set-up call: the mode, the device, the seed and
  the header box (what the chapter builds, what it needs, how long it takes to
  read and to train, read from the recorded runs).
- :func:`table`: a real HTML table with a caption. Markdown tables printed by a
  code cell reach the page as a paragraph of pipes (myst-nb renders cell output
  without table support); HTML reaches it as a table, in Jupyter too.
- :func:`how_measured`: the collapsed "How this was measured" block, generated
  from a results file's provenance.
- :data:`CURVE_LABELS` and :func:`curve_label`: the words and units for every
  quantity a training curve shows.
- :func:`fmt` and :func:`pct`: numbers formatted for reading.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .records import read_results, results_dir

__all__ = ["CHAPTERS", "CURVE_LABELS", "Chapter", "Raw", "curve_label", "fmt", "how_measured", "pct", "setup",
           "table", "header_box", "source_block"]

WORDS_PER_MINUTE = 180  # a technical text read with its figures


@dataclass(frozen=True)
class Chapter:
    """One chapter as the header box describes it."""

    number: int
    title: str
    notebook: str  # notebooks/src/<notebook>.py
    builds: str
    needs: str
    results: str | None = None  # results/<results>.json; also the key of its cost in results/reproduce.json


CHAPTERS = {
    "vae": Chapter(1, "Variational autoencoders", "01_vae",
                   "a VAE of MNIST digits: its encoder, decoder and ELBO, a 2-D latent space to walk "
                   "through, and the importance-weighted bound that measures it",
                   "Python and PyTorch; probability densities and the KL divergence", "vae"),
    "beta_vae": Chapter(2, "β-VAE and disentanglement", "02_beta_vae",
                        "the β-VAE on bouncing balls and on shapes, and two measures of whether its "
                        "latents separate the factors of the data",
                        "Chapter 1 (the VAE and its ELBO)", "beta_vae"),
    "estimators": Chapter(3, "Gradients through discrete choices", "03_discrete_gradients",
                          "REINFORCE, NVIL, CONCRETE, REBAR and RELAX, compared on a toy problem and "
                          "inside a VAE with a categorical latent",
                          "Chapter 1 (the VAE); expectations and the score function", "estimators"),
    "spatial_transformer": Chapter(4, "The spatial transformer", "04_spatial_transformer",
                                   "the spatial transformer: affine windows, sampling grids, and a "
                                   "classifier that learns to undo distortions",
                                   "Chapter 1 (PyTorch modules and training)", "spatial_transformer"),
    "dvae": Chapter(5, "Prototypes and deformations: D-VAE and D-VAE-ST", "05_dvae_st",
                    "a VAE whose latent is a class and a deformation, naming MNIST digits without labels",
                    "Chapter 3 (discrete gradients) and Chapter 4 (spatial transformers)", "dvae"),
    "air": Chapter(6, "Attend, Infer, Repeat", "06_air",
                   "AIR, which finds, counts and describes the digits of a scene one at a time, and the "
                   "difference network that lets it count further than it was trained to",
                   "Chapters 1, 3 and 4 (the VAE, NVIL, spatial transformers)", "air"),
    "dair": Chapter(7, "DAIR: objects that are counted and named", "07_dair",
                    "discrete AIR: AIR whose every object is one of ten prototypes, deformed and painted "
                    "into its window, so that a scene's digits are counted and named without a label",
                    "Chapter 5 (D-VAE-ST) and Chapter 6 (AIR)", "dair"),
    "scae": Chapter(8, "Stacked capsule autoencoders", "08_capsules",
                    "the stacked capsule autoencoder: parts as posed templates, objects as sets of parts "
                    "that vote for their poses, and digit classes that appear without a label",
                    "Chapter 4 (spatial transformers); attention, as in a transformer", "scae"),
}

# The quantities a training history records -> (what it is, in words; its unit or "").
CURVE_LABELS = {
    "loss": ("loss", ""),
    "neg_elbo": ("negative ELBO", "nats"),
    "exact_neg_elbo": ("negative ELBO, exact over classes", "nats"),
    "nll": ("reconstruction error", "nats"),
    "reconstruction": ("reconstruction error", "nats"),
    "kl": ("KL divergence", "nats"),
    "kl_pres": ("KL of presence", "nats per canvas"),
    "kl_where": ("KL of where", "nats per canvas"),
    "kl_what": ("KL of what", "nats per canvas"),
    "kl_transform": ("KL of the deformation", "nats"),
    "marginal_kl": ("KL of the class marginal", "nats"),
    "baseline_loss": ("baseline's squared error", "nats²"),
    "control_loss": ("control variate's loss", ""),
    "objects": ("objects found", "per canvas"),
    "count_accuracy": ("count accuracy", "fraction"),
    "test_count_accuracy": ("count accuracy, 0-2 digits", "fraction"),
    "test3_count_accuracy": ("count accuracy, 3 digits", "fraction"),
    "three_digit_count_accuracy": ("count accuracy, 3 digits", "fraction"),
    "accuracy": ("accuracy", "fraction"),
    "accuracy_mean": ("accuracy, mean over seeds", "fraction"),
    "accuracy_min": ("accuracy, worst seed", "fraction"),
    "accuracy_max": ("accuracy, best seed", "fraction"),
    "splits": ("split moves", "per epoch"),
    "kl_class": ("KL of the classes", "nats per canvas"),
    "kl_theta": ("KL of the deformations", "nats per canvas"),
    "class_control_loss": ("class estimator's control loss", ""),
    "lr": ("learning rate", ""),
    "rec_ll": ("image log-likelihood", "nats per image"),
    "caps_ll": ("part-pose log-likelihood", "nats per image"),
    "prior_accuracy": ("unsupervised accuracy, object presences", "fraction"),
    "posterior_accuracy": ("unsupervised accuracy, parts explained", "fraction"),
    "prior_probe_accuracy": ("linear probe accuracy, object presences", "fraction"),
    "posterior_probe_accuracy": ("linear probe accuracy, parts explained", "fraction"),
    "part_presence": ("parts present", "per image"),
    "object_presence": ("objects present", "per image"),
}


def curve_words(key: str) -> tuple[str, str]:
    """``(words, unit)`` for a recorded quantity; a ``val_`` prefix names the same one on validation data,
    and a key not in :data:`CURVE_LABELS` is spelled out with spaces."""
    key = key[4:] if key.startswith("val_") else key
    return CURVE_LABELS.get(key, (key.replace("_", " "), ""))


def curve_label(key: str) -> str:
    """The axis or panel title for a recorded quantity: ``"neg_elbo"`` -> ``"negative ELBO (nats per image)"``."""
    words, unit = curve_words(key)
    return f"{words} ({unit})" if unit else words


def label_curve_axes(ax, key: str, x_label: str = "epoch") -> None:
    """Title a training-curve panel with words, its y axis with the unit and its x axis with ``x_label``."""
    words, unit = curve_words(key)
    ax.set_title(words[0].upper() + words[1:], fontsize=11)
    ax.set_ylabel(unit)
    ax.set_xlabel(x_label)
    lines = ax.get_lines()
    for line in lines:  # livelossplot labels each line with its key
        label = line.get_label().strip()
        line.set_label("validation" if label.startswith(("val_", "validation")) else "training")
    if lines:
        ax.legend(fontsize=9)


# --- numbers ---------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    """A number as a reader wants it: ``6.800000190734863`` -> ``6.8``, ``60000`` -> ``60,000``.

    Floats keep ``digits`` significant digits (trailing zeros dropped), large
    ones are rounded to whole numbers with thousands separators; None is a dash.
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        text = f"{value:.{digits}g}"
        if "e" in text and abs(value) >= 1e-4:  # .g chose an exponent: write the decimals out
            text = f"{value:.{digits - 1 - math.floor(math.log10(abs(value)))}f}"
        return text
    return str(value)


def pct(fraction, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.99375`` -> ``99.4 %``; None is a dash."""
    return "–" if fraction is None else f"{100 * fraction:.{digits}f} %"


# --- tables ----------------------------------------------------------------------------------
TABLE_STYLE = ("<style>.oc-table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.9em}"
               ".oc-table caption{caption-side:top;text-align:left;font-weight:600;padding:0.3em 0}"
               ".oc-table th,.oc-table td{border-bottom:1px solid #ccc;padding:0.25em 0.7em;text-align:right}"
               ".oc-table th:first-child,.oc-table td:first-child{text-align:left}"
               ".oc-table thead th{border-bottom:2px solid #888}</style>")


class _HTML:
    """An object that Jupyter and myst-nb show as HTML (``_repr_html_``), and tests can read as text."""

    def __init__(self, text: str):
        self.data = text

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:  # the plain-text fallback: no markup
        return re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", self.data)).strip()


class Raw(str):
    """A table cell that is already HTML (a link, say): :func:`table` does not escape it."""


def _cell(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    return html.escape(value if isinstance(value, str) else fmt(value))


def table(rows, columns, caption: str, *, index_name: str | None = None, notes: str | None = None) -> _HTML:
    """An HTML table with a caption.

    ``rows`` is a list of sequences (one value per column) or a dict
    {row name: sequence}, in which case ``index_name`` heads the row names'
    column. Values that are not strings are formatted with :func:`fmt`;
    ``notes`` is a line under the table.
    """
    if isinstance(rows, dict):
        columns = [index_name or ""] + list(columns)
        rows = [[name, *values] for name, values in rows.items()]
    rows = [list(r) for r in rows]
    for r in rows:
        if len(r) != len(columns):
            raise ValueError(f"a row has {len(r)} values for {len(columns)} columns: {r!r}")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    foot = f"<p class='oc-table-notes'><small>{html.escape(notes)}</small></p>" if notes else ""
    return _HTML(f"{TABLE_STYLE}<table class='oc-table'><caption>{html.escape(caption)}</caption>"
                 f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{foot}")


def confusion_table(matrix, row_names, column_names, caption: str, *, rows_are: str, columns_are: str) -> _HTML:
    """A confusion matrix as a table whose rows and columns say what they are."""
    rows = {f"{rows_are} {name}": [int(v) for v in line] for name, line in zip(row_names, matrix)}
    return table(rows, [f"{columns_are} {name}" for name in column_names], caption, index_name="")


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- provenance ------------------------------------------------------------------------------
PROVENANCE_ROWS = (("command", "command"), ("code version (commit)", "commit"), ("device", "device"),
                   ("date", "date"), ("wall time", "wall_time_s"))


def read_writers(name: str, directory: Path | None = None) -> list[dict]:
    """Who wrote ``results/<name>.json``: one provenance record per writer, each with the ``keys`` it wrote.

    A file written by one benchmark only has its top-level provenance, and that is its one writer.
    """
    data = read_results(name, directory)
    if not data:
        path = Path(directory or results_dir()) / f"{name}.json"
        raise FileNotFoundError(f"{path} does not exist: its chapter's benchmark writes it")
    if data.get("writers"):
        return data["writers"]
    return [{"keys": sorted(k for k in data if k not in dict(PROVENANCE_ROWS).values()),
             **{k: data.get(k) for _, k in PROVENANCE_ROWS}}]


def how_measured(name: str, keys=None, *, seeds=None, details: dict | None = None,
                 directory: Path | None = None) -> _HTML:
    """The collapsed "How this was measured" block for ``results/<name>.json``.

    One table per benchmark run that wrote the numbers (only those that wrote
    one of ``keys``, if given): its command, commit, device, date and wall
    time, from the file's provenance; plus ``seeds`` and any ``details``
    ({label: text}) the chapter adds.
    """
    writers = read_writers(name, directory)
    if keys is not None:
        writers = [w for w in writers if set(keys) & set(w.get("keys", ()))] or writers
    parts = []
    for writer in writers:
        rows = [(label, _duration(writer.get(k)) if k == "wall_time_s" else writer.get(k))
                for label, k in PROVENANCE_ROWS]
        if len(writers) > 1:  # which run wrote which numbers
            keys = [k for k in writer.get("keys", ()) if "target" not in k]
            rows.append(("numbers it wrote", ", ".join(keys)))
        parts.append("<table class='oc-table'>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>"
            for k, v in rows if v is not None) + "</table>")
    extra = [("seeds", seeds if isinstance(seeds, str) else ", ".join(map(str, seeds)))] if seeds is not None else []
    extra += list((details or {}).items())
    if extra:
        parts.append("<table class='oc-table'>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in extra) + "</table>")
    return _HTML(f"<details class='oc-provenance'><summary>How this was measured (results/{name}.json)"
                 f"</summary>{''.join(parts)}</details>")


# --- source listings -------------------------------------------------------------------------
def source_block(obj, summary: str | None = None, open_: bool = False) -> _HTML:
    """The source of a library function or class, highlighted, in a block a reader can fold."""
    import inspect
    import textwrap

    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    listing = highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=False))
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", "code"))
    title = summary or f"The code of <code>{html.escape(name)}</code> ({code.count(chr(10)) + 1} lines)"
    return _HTML(f"<details class='oc-source'{' open' if open_ else ''}><summary>{title}</summary>"
                 f"<div style='overflow-x:auto;font-size:0.85em'>{listing}</div></details>")


# --- the header box --------------------------------------------------------------------------
def reading_minutes(chapter: Chapter) -> int:
    """Minutes to read the chapter's prose, from the words in its source (``notebooks/src``)."""
    source = results_dir().parent / "notebooks" / "src" / f"{chapter.notebook}.py"
    text = source.read_text() if source.exists() else ""
    prose = [line[2:] for line in text.splitlines() if line.startswith("# ") and not line.startswith("# %%")]
    words = sum(len(line.split()) for line in prose)
    return max(5, 5 * round(words / WORDS_PER_MINUTE / 5))


def training_cost(chapter: Chapter, directory: Path | None = None) -> dict:
    """What training this chapter's recorded runs costs, from ``results/reproduce.json``.

    ``cpu_hours``: every recorded run on one CPU thread (measured per step,
    an upper bound); ``gpu_minutes``: the same runs on the GPU they were
    trained on, where that was recorded. Missing numbers are None.
    """
    data = read_results("reproduce", directory)
    key = chapter.results
    cpu = data.get("cpu", {}).get("chapters", {}).get(key, {})
    gpu = data.get("gpu_recorded_minutes", {}).get(key, {})
    if not cpu:  # a chapter timed by its own results file: the recorded runs' wall times, when on a CPU
        own = read_results(key, directory)
        recorded = own.get("training_wall_time_s")
        runs = own.get("runs")
        if recorded is None and isinstance(runs, dict) and all(
                isinstance(r, dict) and "training_wall_time_s" in r for r in runs.values()):
            recorded = {k: r["training_wall_time_s"] for k, r in runs.items()}  # each run's own wall time
        if isinstance(recorded, dict) and "cpu" in own.get("device", ""):
            cpu = {"train_hours": sum(recorded.values()) / 3600, "runs": len(recorded)}
    return {"cpu_hours": cpu.get("train_hours"), "runs": cpu.get("runs"), "gpu_minutes": gpu.get("minutes"),
            "gpu_runs": gpu.get("runs")}


def header_box(key: str, mode: str | None = None, device=None) -> _HTML:
    """The box at the top of a chapter: what it builds, what it needs, and how long it takes."""
    chapter = CHAPTERS[key]
    cost = training_cost(chapter)
    times = [f"reading: about {reading_minutes(chapter)} minutes"]
    if cost["cpu_hours"] is not None:
        n = cost["runs"] or 1
        runs = "the recorded run" if n == 1 else "both recorded runs" if n == 2 else f"all {n} recorded runs"
        times.append(f"training {runs}: about {_duration(cost['cpu_hours'] * 3600)} on one CPU core")
    if cost["gpu_minutes"] is not None:
        on_gpu = cost["gpu_runs"]
        which = f" for the {on_gpu} runs trained there" if on_gpu and cost["runs"] and on_gpu != cost["runs"] else ""
        times.append(f"about {cost['gpu_minutes']:.0f} minutes on one GPU{which}")
    mode_words = {"read": "loads the trained models shipped with the book and shows their recorded results",
                  "quick": "trains for a few steps only, to check that every cell runs; its numbers are not results",
                  "train": "trains every model of the page from scratch"}
    rows = [("You will build", chapter.builds), ("You need", chapter.needs), ("Time", "; ".join(times))]
    if mode is not None:
        rows.append(("This page", f"{mode_words.get(mode, mode)} (device: {device})"))
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return _HTML(f"<div class='admonition note oc-header'><p class='admonition-title'>Chapter {chapter.number}: "
                 f"{html.escape(chapter.title)}</p><dl>{body}</dl></div>")


# Text legible on the page: figures at most 8 inches wide at 100 dpi fit the page at about 0.9x,
# so 9-point text stays above 9 pixels.
FIGURE_STYLE = {"figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 10,
                "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
                "figure.titlesize": 11}


def setup(key: str, train: bool = False, seed: int = 0):
    """A chapter's set-up: ``(mode, device)``, with the header box displayed and the seed set.

    The mode is *read* (load what the book ships), *quick* (the tests' few
    steps; ``OBJECTCENTRIC_QUICK=1``) or *train* (``train=True`` or
    ``OBJECTCENTRIC_TRAIN=1``); the device is a GPU when there is one.
    """
    import torch
    from IPython.display import display

    from .modes import QUICK, TRAIN, run_mode
    from .train import pick_device

    import matplotlib as mpl

    mpl.rcParams.update(FIGURE_STYLE)
    mode = TRAIN if train and run_mode() != QUICK else run_mode()
    device = pick_device()
    torch.manual_seed(seed)
    display(header_box(key, mode, device))
    return mode, device
