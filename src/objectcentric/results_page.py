"""The book's results page: every headline number, read from ``results/*.json`` (the back matter).

Each :class:`Headline` names a results file and the path of one number in it;
the page (``book/results.md``) shows what those paths hold, next to the
number of the paper or reference we compare with, on the protocol the
chapter describes. Nothing on the page is typed in: ``tests/test_browser.py``
reads the built page and checks every number against its file.

A path is a tuple of keys; a dict in it selects the first list entry whose
fields equal the dict's (``("runs", {"model": "dvae_st"}, "mean")``), an int
the list entry at that index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .book import CHAPTERS, Raw, fmt, pct, table
from .records import read_results


@dataclass(frozen=True)
class Headline:
    """One number of the book: where it is, how to show it, and what it is compared with."""

    chapter: str  # a key of book.CHAPTERS
    quantity: str
    results: str  # results/<results>.json
    path: tuple
    unit: str = "%"  # "%": a fraction shown as a percentage; otherwise appended to the number
    seeds: tuple | int | None = None  # a path to the seeds (a list or a count), or a count
    compare: float | tuple | None = None  # the other number: a value (quoted from a paper) or a path in the file
    compare_source: str = ""
    better: str = "higher"  # which direction is better, for the gap's sign


DVAE_ST_TEST = {"model": "dvae_st", "dataset": "FullMNIST", "estimator": "exact", "k": 10, "split": "test",
                "variant": "robust"}

HEADLINES = (
    Headline("vae", "test NLL of MNIST, VAE with 50 latents (nats, lower is better)", "vae",
             ("plain_vae", "test_nll_nats"), unit="", seeds=1, compare=86.76,
             compare_source="Burda et al. (2016), VAE with one stochastic layer", better="lower"),
    Headline("vae", "test NLL of MNIST, two-layer IWAE, k = 5 (nats, lower is better)", "vae",
             ("iwae", "test_nll_nats"), unit="", seeds=1, compare=83.89,
             compare_source="Burda et al. (2016), the same model after 3,280 passes", better="lower"),
    Headline("beta_vae", "MIG on shapes, β = 4", "beta_vae", ("mig_by_beta", "4"), unit="",
             seeds=1),
    Headline("beta_vae", "MIG on shapes, β = 1", "beta_vae", ("mig_by_beta", "1"), unit="", seeds=1),
    Headline("spatial_transformer", "test accuracy on distorted MNIST, with a spatial transformer",
             "spatial_transformer", ("stn_test_accuracy",), seeds=("seeds",), compare=("baseline_test_accuracy",),
             compare_source="the same classifier without it, equal size"),
    Headline("dvae", "D-VAE-ST: unsupervised accuracy on MNIST's test digits, mean over seeds", "dvae",
             ("runs", DVAE_ST_TEST, "mean"), seeds=("runs", DVAE_ST_TEST, "accuracy_by_seed"),
             compare=("anchor", "mean"), compare_source="the thesis, training digits, 10 runs"),
    Headline("dvae", "D-VAE-ST: unsupervised accuracy on MNIST's test digits, best seed", "dvae",
             ("runs", DVAE_ST_TEST, "best"), seeds=("runs", DVAE_ST_TEST, "accuracy_by_seed"),
             compare=("anchor", "best"), compare_source="the thesis, training digits, best of 10 runs"),
    Headline("air", "AIR: count accuracy, 0-2 digits (the shipped seed of 5)", "air", ("count_accuracy",),
             seeds=1, compare=("reference", "count_accuracy"),
             compare_source="the reference AIR, on its own canvases"),
    Headline("air", "AIR: count accuracy, 3 digits, trained on 0-2 (the shipped seed)", "air",
             ("three_digit_count_accuracy",), seeds=1, compare=("reference", "three_digit_count_accuracy"),
             compare_source="the reference AIR, on its own canvases"),
    Headline("air", "AIR: count accuracy, 4 digits, trained on 0-2 (6 steps)", "air",
             ("count_accuracy_by_digits", "4"), seeds=1),
    Headline("air", "AIR: mean IoU of the windows with the true boxes, 0-2 digits", "air", ("mean_iou", "0-2"),
             unit="", seeds=1),
    Headline("dair", "DAIR: count accuracy, 0-2 digits (the shipped seed)", "dair", ("count_accuracy",), seeds=1,
             compare=("thesis", "count_accuracy_best"),
             compare_source="the thesis's DAIR, best of 10 runs, on its training canvases"),
    Headline("dair", "DAIR: digits named right (the shipped seed)", "dair", ("object_accuracy",), seeds=1,
             compare=("baselines", "air_dvae_st", "object_accuracy"),
             compare_source="AIR's windows named by the D-VAE-ST, same canvases"),
    Headline("dair", "DAIR: scenes counted and named right (the shipped seed)", "dair", ("scene_accuracy",),
             seeds=1, compare=("baselines", "air_dvae_st", "scene_accuracy"),
             compare_source="AIR's windows named by the D-VAE-ST, same canvases"),
    Headline("scae", "SCAE: unsupervised accuracy on MNIST's test digits, k-means refit on them (seed 0, "
             "as far as its run has trained)", "scae", ("accuracy_by_seed", "test_refit", 0), seeds=1,
             compare=("paper", "unsupervised_accuracy"),
             compare_source="Kosiorek et al. (2019), after the official 300,000 steps"),
    Headline("scae", "SCAE: the same, k-means fitted on training digits", "scae",
             ("accuracy_by_seed", "train_fit", 0), seeds=1),
)


def lookup(data, path: tuple):
    """The value at ``path`` in ``data`` (see the module docstring), or None where the path does not lead."""
    for step in path:
        if isinstance(step, dict):
            data = next((e for e in data or () if all(e.get(k) == v for k, v in step.items())), None)
        elif isinstance(step, int):  # a list entry
            data = data[step] if isinstance(data, list) and -len(data) <= step < len(data) else None
        elif isinstance(data, dict):
            data = data.get(step)
        else:
            return None
        if data is None:
            return None
    return data


def _show(value, unit: str) -> str:
    if value is None:
        return "–"
    return pct(value) if unit == "%" else fmt(value, 4)


def _n_seeds(headline: Headline, data) -> int | None:
    if headline.seeds is None or isinstance(headline.seeds, int):
        return headline.seeds
    seeds = lookup(data, headline.seeds)
    return len(seeds) if isinstance(seeds, list) else seeds


def rows(directory: Path | None = None) -> list[dict]:
    """Every headline as a row of strings, plus the raw ``value`` it shows."""
    out, cache = [], {}
    for h in HEADLINES:
        if h.results not in cache:
            cache[h.results] = read_results(h.results, directory)
        data = cache[h.results]
        value = lookup(data, h.path)
        other = lookup(data, h.compare) if isinstance(h.compare, tuple) else h.compare
        gap = None if value is None or other is None else value - other
        if gap is not None and h.better == "lower":
            gap = -gap
        chapter = CHAPTERS[h.chapter]
        out.append({
            "chapter": chapter, "quantity": h.quantity, "value": value, "results": h.results,
            "ours": _show(value, h.unit), "compare": _show(other, h.unit),
            "compare_source": h.compare_source or "–",
            "gap": "–" if gap is None else (f"{100 * gap:+.1f} points" if h.unit == "%" else f"{gap:+.3g}"),
            "seeds": "–" if _n_seeds(h, data) is None else str(_n_seeds(h, data)),
            "device": data.get("device", "–"),
        })
    return out


COLUMNS = ("chapter", "what is measured", "this book", "compared with", "source of the comparison",
           "ahead (+) or behind (−)", "seeds", "device (results file)")


def headline_table(directory: Path | None = None):
    """The results page's table, one row per headline number, linked to its chapter."""
    body = []
    for r in rows(directory):
        c = r["chapter"]
        link = Raw(f"<a href='../notebooks/{c.notebook}.html'>{c.number}. {c.title}</a>")
        body.append([link, r["quantity"], r["ours"], r["compare"], r["compare_source"], r["gap"], r["seeds"],
                     f"{r['device']} ({r['results']}.json)"])
    return table(body, COLUMNS, "Every headline number of the book, read from its results file when the book "
                 "was built. Percentages are accuracies; the gap is in percentage points.")
