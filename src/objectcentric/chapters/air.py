"""Chapter 6 (AIR): the page's canvases, tables, figures and widgets.

The notebook (``notebooks/src/06_air.py``) tells the story and shows AIR's code;
this module draws what it shows:

- :func:`show_canvas`, :func:`true_outlines`, :func:`inferred_outlines`: a canvas
  with its windows, coloured by step;
- :func:`load_models`: the trained AIR (shipped, or trained on the page) and, where
  there is one, the recurrent comparison;
- tables (:func:`count_table`, :func:`benchmark_table`, :func:`speed_table`,
  :func:`beyond_table`, :func:`found_counts_table`, :func:`iou_table`), each an
  :func:`objectcentric.book.table`, and the provenance blocks
  (:func:`training_provenance`, :func:`evaluation_provenance`);
- figures (:func:`canvas_figure`, :func:`glimpse_figure`, :func:`boxes_figure`,
  :func:`three_digit_figure`, :func:`beyond_figure`) and widgets
  (:func:`attention_explorer`, :func:`where_sliders`).

Recorded numbers come from ``results/air.json``; the reference AIR's from
:data:`objectcentric.experiments.air.REFERENCE`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import book, runner
from ..book import fmt, pct
from ..checkpoints import read_manifest
from ..experiments.air import (BEYOND_STEPS, REFERENCE, SMALL_DIGIT, VARIANT_DIGIT_SIZES, AIRRecipe,
                               canvases_apart, count_report)
from ..models.air import count_objects
from ..modes import QUICK, READ
from ..spatial import crop_window, where_to_theta, window_outline

__all__ = ["STEP_COLOURS", "show_canvas", "true_outlines", "inferred_outlines", "load_models",
           "canvas_figure", "glimpse_figure", "boxes_figure", "count_table", "benchmark_table", "speed_table",
           "training_provenance", "evaluation_provenance", "attention_explorer", "where_sliders",
           "three_digit_figure", "beyond_table", "found_counts_table", "beyond_figure", "iou_table",
           "further_rows", "further_table", "further_words", "sizes_model",
           "curve_keys", "training_summary", "recorded_count_table", "caveat", "reference_words", "three_digit_words",
           "reference_three_digits", "count_error_words", "beyond_words"]

STEP_COLOURS = ["tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:brown"]
COLOUR_WORDS = "red, green, blue, orange, purple, brown"


# --- canvases and windows --------------------------------------------------------------------------
def show_canvas(ax, image, boxes=(), colours=STEP_COLOURS, title=None) -> None:
    """Draw a canvas (1, H, W) on ``ax`` with windows, each a (5, 2) outline in normalised coordinates,
    coloured by step (``colours[i]`` for the i-th outline)."""
    ax.imshow(np.asarray(image)[0], cmap="gray", vmin=0, vmax=1, extent=(-1, 1, 1, -1))
    for outline, colour in zip(boxes, colours):
        ax.plot(outline[:, 0], outline[:, 1], color=colour, lw=1.5)
    ax.set_xlim(-1, 1)
    ax.set_ylim(1, -1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def true_outlines(data, n: int) -> list:
    """The true digit boxes of canvas ``n`` of a MultiMNIST set, as window outlines."""
    present = data.present[n]
    return list(window_outline(where_to_theta(data.z_where[n][present]))) if present.any() else []


def _outline(trace, n: int, step: int) -> torch.Tensor:
    where = torch.cat([trace.scale[n, step:step + 1], trace.where[n, step, 1:]])[None]
    return window_outline(where_to_theta(where))[0].cpu()


def inferred_outlines(trace, n: int) -> list:
    """The windows of canvas ``n``'s present steps (an AIRTrace), as outlines in step order."""
    return [_outline(trace, n, step) for step in range(int(trace.counts[n]))]


# --- the models --------------------------------------------------------------------------------------
def load_models(mode: str, device) -> tuple[dict, dict]:
    """``(runs, models)`` by inference kind: the difference network always; the recurrent one where
    the book ships it (read mode) or where the page trains (quick and train mode)."""
    manifest = read_manifest()["checkpoints"]
    kinds = [kind for kind in ("difference", "recurrent") if kind == "difference" or mode != READ
             or AIRRecipe(inference=kind).shipped_name() in manifest]
    runs = {kind: runner.load_or_train(AIRRecipe(inference=kind), mode, device=device) for kind in kinds}
    models = {kind: run.model.to(device).eval() for kind, run in runs.items()}
    return runs, models


def sizes_model(device="cpu"):
    """The shipped AIR trained on digits of several sizes (``results/air.json``'s variant_digit_sizes), or
    None where the book does not ship it."""
    from ..checkpoints import load_shipped

    recipe = AIRRecipe(digit_sizes=VARIANT_DIGIT_SIZES)
    if recipe.shipped_name() not in read_manifest()["checkpoints"]:
        return None
    model = recipe.build_model()
    load_shipped(recipe.shipped_name(), model)
    return model.to(device).eval()


def curve_keys(history: list[dict]) -> list[str]:
    """The few curves the page replays: reconstruction error, KL, and the count accuracy watched on
    canvases the model never trained on (named ``val_test_count_accuracy`` in the shipped history,
    ``val_count_accuracy`` in a run trained here)."""
    held_out = "test_count_accuracy" if history and "val_test_count_accuracy" in history[-1] else "count_accuracy"
    return ["nll", "kl", held_out]


def training_summary(history: list[dict]) -> str:
    """One line on the last epoch of a training history: its reconstruction error, KL and held-out
    count accuracy."""
    last = history[-1]
    held_out = {k: v for k, v in last.items() if k.startswith("val_") and k.endswith("count_accuracy")}
    words = "; ".join(f"{book.curve_words(k)[0]}: {pct(v)}" for k, v in held_out.items())
    return (f"After {len(history)} epochs: reconstruction error {fmt(last['nll'])} and KL {fmt(last['kl'])} "
            f"nats per canvas.\nOn held-out canvases: {words}.")


def training_provenance(runs: dict, results: dict | None):
    """The "How this was measured" block of the trained models: what trained the shipped model (from
    the checkpoint manifest) and each recorded seed's training time and device (``results/air.json``)."""
    if not runs["difference"].record["loaded"] or not results:
        from IPython.display import HTML

        return HTML("<p><small>The model above was trained on this page"
                    + (" for a few steps only; its numbers are not results." if
                       not runs["difference"].record["loaded"] else ".") + "</small></p>")
    entry = read_manifest()["checkpoints"][runs["difference"].record["file"]]
    details = {"the shipped model": f"seed {entry['seed']}, {entry['metrics']['epochs']} epochs in "
                                    f"{entry['wall_time_s'] / 60:.1f} min on {entry['device']}; "
                                    f"trained by {entry['command']}",
               "why this seed": entry.get("note", "")}
    for run in results["runs"].values():
        details[f"seed {run['seed']}"] = (f"{run['epochs']} epochs in {run['training_wall_time_s'] / 60:.1f} min"
                                          f" on {run['training_device'] or 'a machine not recorded'}")
    return book.how_measured("air", keys=["runs"], details=details)


def evaluation_provenance(results: dict, keys, details: dict | None = None):
    """The "How this was measured" block of the recorded numbers ``keys`` of ``results/air.json``."""
    extra = {"protocol": results.get("protocol", "")}
    if "reference_same_canvases" in keys and results.get("reference_same_canvases"):
        extra["the reference on these canvases"] = results["reference_same_canvases"]["protocol"]
    return book.how_measured("air", keys=list(keys), details={**extra, **(details or {})})


# --- figures -----------------------------------------------------------------------------------------
def canvas_figure(test, test3, n: int = 8):
    """``n`` test canvases with their true boxes, the last two from the three-digit set."""
    fig, axes = plt.subplots(1, n, figsize=(8, 1.45))
    for i, ax in enumerate(axes):
        data = test if i < n - 2 else test3
        show_canvas(ax, data.images[i], true_outlines(data, i), title=f"{int(data.counts[i])} digits")
    fig.tight_layout()
    return fig


def glimpse_figure(canvas, outline, glimpse, painted):
    """A canvas with one window, the glimpse cropped from it, and the glimpse painted back."""
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.2))
    show_canvas(axes[0], canvas, [outline], title="canvas and window")
    axes[1].imshow(glimpse[0], cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"the glimpse ({glimpse.shape[-1]}×{glimpse.shape[-1]})", fontsize=9)
    axes[1].axis("off")
    show_canvas(axes[2], painted, title="painted back")
    fig.tight_layout()
    return fig


def boxes_figure(model, data, n: int = 8, device="cpu", title: str = ""):
    """``n`` canvases of ``data`` with the model's windows (greedy inference), over the input (top
    row) and over its reconstruction (bottom row), each titled with the true and the found count."""
    with torch.no_grad():
        trace = model(data.images[:n].to(device), greedy=True)
    fig, axes = plt.subplots(2, n, figsize=(8, 2.9), layout="constrained")
    for i in range(n):
        boxes = inferred_outlines(trace, i)
        show_canvas(axes[0, i], data.images[i], boxes,
                    title=f"true {int(data.counts[i])}\nfound {int(trace.counts[i])}")
        show_canvas(axes[1, i], trace.canvas[i].clamp(0, 1).cpu(), boxes)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("reconstruction")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --- tables -----------------------------------------------------------------------------------------
def count_table(model, sets, name: str, caveat: str = ""):
    """The count confusion of ``model`` on the 0-2-digit and 3-digit canvases of ``sets`` together:
    rows the true count, columns the count found (greedy inference)."""
    report = count_report(model, sets)
    matrix = np.array(report["confusion"]) + np.array(report["three_digit_confusion"])
    n = len(next(iter(sets.values())).images)
    caption = (f"{name}: counts on {n:,} canvases with 0-2 digits ({pct(report['count_accuracy'])} right) "
               f"and {n:,} with 3 ({pct(report['three_digit_count_accuracy'])} right){caveat}")
    return book.confusion_table(matrix, range(len(matrix)), range(len(matrix)), caption,
                                rows_are="true count", columns_are="found count")


def recorded_count_table(results: dict):
    """The shipped model's recorded count confusion on 10,000 + 10,000 test canvases."""
    matrix = np.array(results["confusion"]) + np.array(results["three_digit_confusion"])
    caption = (f"The shipped model's counts on 10,000 test canvases with 0-2 digits "
               f"({pct(results['count_accuracy'], 2)} right) and 10,000 with 3 "
               f"({pct(results['three_digit_count_accuracy'], 2)} right)")
    return book.confusion_table(matrix, range(len(matrix)), range(len(matrix)), caption,
                                rows_are="true count", columns_are="found count")


def _span(values) -> str:
    return f"{pct(min(values), 2)} to {pct(max(values), 2)}"


def reference_three_digits(results: dict) -> tuple[float, bool]:
    """The reference AIR's sampled 3-digit count accuracy, and whether it was measured on our test canvases
    (``reference_same_canvases``) rather than on its own."""
    same = results.get("reference_same_canvases")
    if same:
        return same["three_digit_count_accuracy_sampled"], True
    return REFERENCE["three_digit_count_accuracy"], False


def benchmark_table(results: dict):
    """Count accuracy of our five seeds and of the reference AIR, greedy and sampled, on 0-2 and 3 digits:
    the reference on our test canvases when it has been measured there, and on its own."""
    shipped = results["runs"][results["shipped_run"]]
    seeds = results["runs"].values()
    rows = [["difference AIR, the shipped seed", pct(shipped["count_accuracy"], 2),
             pct(shipped["sampled_count_accuracy"], 2), pct(shipped["three_digit_count_accuracy"], 2),
             pct(shipped["three_digit_sampled_count_accuracy"], 2)],
            [f"difference AIR, {len(seeds)} seeds", _span([r["count_accuracy"] for r in seeds]),
             _span([r["sampled_count_accuracy"] for r in seeds]),
             _span([r["three_digit_count_accuracy"] for r in seeds]),
             _span([r["three_digit_sampled_count_accuracy"] for r in seeds])]]
    same = results.get("reference_same_canvases")
    if same:
        rows.append(["recurrent AIR, the reference, on these canvases",
                     *(pct(same[f"{kind}count_accuracy{mode}"], 2)
                       for kind in ("", "three_digit_") for mode in ("", "_sampled"))])
    rows.append(["recurrent AIR, the reference, on its own canvases", "–", pct(REFERENCE["count_accuracy"], 2),
                 "–", pct(REFERENCE["three_digit_count_accuracy"], 1)])
    trained = same["reference_training"] if same else {"epochs": 50, "canvases": 10_000}
    return book.table(rows, ["model", "0-2 digits, greedy", "0-2 digits, sampled", "3 digits, greedy",
                             "3 digits, sampled"],
                      caption="Count accuracy on 10,000 fresh test canvases of each kind",
                      notes="Greedy: every latent at its most likely value; sampled: z_pres drawn, as the "
                            "reference AIR measures it. The reference is the recurrent AIR of the AIR blog "
                            f"post's code, rebuilt and trained by us under its own settings for "
                            f"{trained['epochs']} epochs on {trained['canvases']:,} canvases"
                            + (" of this book's generator; its last row is its own evaluation, on canvases "
                               "made by its own code (3-digit: 1,000 of them)." if same else "."))


def three_digit_words(results: dict) -> str:
    """How often the recurrent reference counts three digits right (trained on 0-2), on its canvases and ours."""
    own = pct(REFERENCE["three_digit_count_accuracy"], 1)
    same = results.get("reference_same_canvases")
    if not same:
        return f"The reference AIR counts only {own} of its own three-digit canvases right."
    return (f"The reference AIR counts only {own} of its own three-digit canvases right, and "
            f"{pct(same['three_digit_count_accuracy_sampled'], 1)} of ours (sampled z_pres; our shipped seed: "
            f"{pct(same['ours']['three_digit_count_accuracy_sampled'], 1)}). Its canvases differ from ours in "
            "how the digits are placed and drawn; what a recurrent network does at a step it never needed in "
            "training is not pinned down by training, and it can change with such details and from one "
            "training run to the next. On both sets of canvases it falls far short of the difference network.")


def reference_words(results: dict) -> str:
    """Our 0-2-digit count accuracy against the reference's, on the same canvases when measured there."""
    shipped = results["runs"][results["shipped_run"]]
    seeds = [r["sampled_count_accuracy"] for r in results["runs"].values()]
    ours = (f"our shipped seed {pct(shipped['sampled_count_accuracy'], 2)} on that protocol "
            f"({pct(shipped['count_accuracy'], 2)} greedy), and our {len(seeds)} seeds {_span(seeds)}")
    same = results.get("reference_same_canvases")
    if not same:
        return (f"On canvases with 0-2 digits the reference counts {pct(REFERENCE['count_accuracy'], 2)} of its "
                f"own test canvases right with sampled z_pres; {ours}, on ours.")
    gap = 100 * (shipped["sampled_count_accuracy"] - same["count_accuracy_sampled"])
    side = "ahead of" if gap > 0 else "behind" if gap < 0 else "level with"
    return (f"On the very canvases ours is counted on, the reference, trained under its own settings on "
            f"canvases of our generator, counts {pct(same['count_accuracy_sampled'], 2)} of the 0-2-digit "
            f"canvases right with sampled z_pres ({pct(same['count_accuracy'], 2)} greedy); {ours}. Our shipped "
            f"seed is {abs(gap):.2f} points {side} it. On its own canvases the reference had counted "
            f"{pct(REFERENCE['count_accuracy'], 2)}.")


def speed_table(results: dict):
    """Training throughput and inference time of our AIR against the reference's, on each device."""
    rows = []
    for kind, r in results.get("speed", {}).items():
        rows.append([kind.upper(), f"{fmt(r['train_images_per_s'])} (batch {r['train_batch_size']})",
                     f"{fmt(r['reference_train_images_per_s'])} (batch {r['reference_train_batch_size']})",
                     f"{r['throughput_ratio_vs_reference']:.1f}×", fmt(r["latency_ms_per_image"]),
                     fmt(r["reference_latency_ms_per_image"]), f"{r['latency_ratio_vs_reference']:.1f}×"])
    return book.table(rows, ["device", "ours: canvases per s", "reference: canvases per s", "faster",
                             "ours: ms per canvas", "reference: ms per canvas", "faster"],
                      caption="Training throughput and inference time, our AIR against the reference AIR "
                              "on the same machine",
                      notes="Inference: batches of 1,000 canvases without gradients. At the same batch of "
                            "64 our training is " + ", ".join(
                                f"{r['throughput_ratio_vs_reference_same_batch_64']:.2f}× ({kind.upper()})"
                                for kind, r in results.get("speed", {}).items()) + " as fast as the reference's.")


def beyond_table(beyond: dict, trained_steps: int, scope: str):
    """Count accuracy on canvases with 3, 4 and 5 digits (24 and 19 pixels), in the trained number of
    steps and in :data:`BEYOND_STEPS`."""
    rows = []
    for k, size, key in [(3, 24, "count_accuracy_by_digits"), (4, 24, "count_accuracy_by_digits"),
                         (5, SMALL_DIGIT, "count_accuracy_by_digits"),
                         (3, SMALL_DIGIT, "count_accuracy_by_digits_small"),
                         (4, SMALL_DIGIT, "count_accuracy_by_digits_small")]:
        in_trained = beyond["count_accuracy_by_digits_3_steps"][str(k)] if key == "count_accuracy_by_digits" \
            else None
        rows.append([k, f"{size} px", pct(in_trained), pct(beyond[key][str(k)])])
    return book.table(rows, ["digits", "digit size", f"counted right in {trained_steps} steps",
                             f"in {BEYOND_STEPS} steps"],
                      caption=f"Counting beyond training ({scope})")


def found_counts_table(beyond: dict, scope: str):
    """How many objects the model found in :data:`BEYOND_STEPS` steps, for each true number of digits."""
    found = beyond["found_counts_by_digits"]
    return book.confusion_table([found[k] for k in found], list(found), range(BEYOND_STEPS + 1),
                                f"Objects found in {BEYOND_STEPS} steps ({scope})",
                                rows_are="true count", columns_are="found count")


def iou_table(beyond: dict, scope: str):
    """How well the windows sit on the digits: mean IoU of matched pairs, and the share of digits
    matched with IoU ≥ 0.5."""
    words = {"0-2": "0-2 (test canvases, 3 steps)", "3": "3 (test canvases, 3 steps)",
             "4": "4 (24 px, 6 steps)", "5": f"5 ({SMALL_DIGIT} px, 6 steps)"}
    rows = [[words.get(k, k), f"{iou:.2f}", pct(beyond["box_match_rate_iou50"][k], 0)]
            for k, iou in beyond["mean_iou"].items()]
    return book.table(rows, ["digits", "mean IoU", "digits matched with IoU ≥ 0.5"],
                      caption=f"Windows against the true boxes ({scope})")


SIZES_KEY = "variant_digit_sizes"  # results/air.json: the model trained on digits of several sizes
SIZES_AIM = {"3": 0.95, "4": 0.90, "5": 0.90}  # what we aimed for beyond training


def further_rows(results: dict | None, beyond: dict, here: str) -> dict[str, dict]:
    """The models of the further-counting table: ``beyond`` (the shipped model's results, or one
    measured on the page, named ``here``) and, in the recorded results, the model trained on digits
    of several sizes."""
    rows = {here: beyond}
    if results and SIZES_KEY in results:
        sizes = results[SIZES_KEY]["digit_sizes"]
        rows[f"trained on {min(sizes)}-{max(sizes)} px digits"] = results[SIZES_KEY]
    return rows


def further_table(rows: dict[str, dict], scope: str):
    """Count accuracy of each model in ``rows`` (see :func:`further_rows`) with two ways of reading the
    count: greedy z_pres, and the count the model's joint probability prefers (``joint_counts``)."""
    table = {}
    for name, r in rows.items():
        greedy, joint = r["count_accuracy_by_digits"], r["count_accuracy_joint"]
        table[f"{name}: z_pres"] = [pct(r.get("count_accuracy")), *(pct(greedy[k]) for k in ("3", "4", "5"))]
        table[f"{name}: joint probability"] = [pct(joint[k]) for k in ("0-2", "3", "4", "5")]
    return book.table(table, ["0-2 digits (3 steps)", "3 digits", "4 digits (24 px)",
                              f"5 digits ({SMALL_DIGIT} px)"], index_name="model: count read from",
                      caption=f"Two ways to count further ({scope})",
                      notes=f"3, 4 and 5 digits counted in up to {BEYOND_STEPS} steps.")


def further_words(rows: dict[str, dict]) -> str:
    """What :func:`further_table` says: how much the joint probability fixes, what training on several
    digit sizes fixes, and how far the best model is from what we aimed for."""
    (first, base), *others = rows.items()
    g, j = base["count_accuracy_by_digits"], base["count_accuracy_joint"]
    words = (f"Read from the joint probability, the {first} counts four digits right {pct(j['4'])} of the "
             f"time instead of {pct(g['4'])}, and three {pct(j['3'])} instead of {pct(g['3'])}: a second "
             "window on a digit that is already explained buys little likelihood for what its prior costs, "
             "and the joint weighs that where z_pres does not. It does not help on five small digits "
             f"({pct(j['5'])} against {pct(g['5'])}): there the windows themselves are wrong, not the count.")
    best = {k: max(max(r["count_accuracy_by_digits"][k], r["count_accuracy_joint"][k]) for r in rows.values())
            for k in SIZES_AIM}
    for name, r in others:
        gs, js = r["count_accuracy_by_digits"], r["count_accuracy_joint"]
        words += (f" The model {name}, still on 0-2 digits per canvas, counts five {SMALL_DIGIT}-pixel digits "
                  f"right {pct(gs['5'])} of the time with z_pres and {pct(js['5'])} with the joint, four "
                  f"digits {pct(gs['4'])} and {pct(js['4'])}, and 0-2 digits {pct(r.get('count_accuracy'))}.")
        repeats = r.get("too_many_found_by_digits") or {}
        total = sum(v["too_many"] for v in repeats.values())
        if total:
            overlap = sum(v["two_windows_overlap"] for v in repeats.values())
            words += (f" Its errors are mostly extra objects: on {overlap:,} of the {total:,} canvases it counts "
                      "too many, two of its windows overlap, one digit explained twice.")
        iou, base_iou = r.get("mean_iou") or {}, base.get("mean_iou") or {}
        if "4" in iou and "4" in base_iou:
            words += (f" Its windows also sit less well on the digits (mean IoU on four digits {iou['4']:.2f}, "
                      f"against {base_iou['4']:.2f} for the {first}); in the figure below, many are larger than "
                      "the digits they explain.")
    short = [k for k, aim in SIZES_AIM.items() if best[k] < aim]
    aims = ", ".join(f"{pct(SIZES_AIM[k], 0)} on {k} digits" for k in SIZES_AIM)
    if short:
        words += (f" We aimed for {aims}; the best of these readings reaches " + ", ".join(
            f"{pct(best[k])} on {k}" for k in SIZES_AIM) + ", short on " + " and ".join(short) + " digits.")
    else:
        words += f" We aimed for {aims}, and the best reading reaches " + ", ".join(
            f"{pct(best[k])} on {k}" for k in SIZES_AIM) + "."
    return words


def _cells(matrix) -> list[tuple[int, int, int]]:
    """The off-diagonal cells (true, found, canvases) of a count confusion that hold any canvas."""
    m = np.asarray(matrix)
    return [(t, f, int(m[t, f])) for t in range(len(m)) for f in range(len(m)) if t != f and m[t, f]]


def _canvases(n: int, true: int, found: int) -> str:
    return f"{n:,} {'canvas' if n == 1 else 'canvases'} with {true} digit{'' if true == 1 else 's'} counted as {found}"


def count_error_words(results: dict) -> str:
    """Where the shipped model's recorded count errors go: digits missed (found fewer) against objects
    added (found more), on 0-2 digits and on 3."""
    words = []
    for key, name in (("confusion", "0-2 digits"), ("three_digit_confusion", "3 digits")):
        cells = _cells(results[key])
        missed, added = sum(n for t, f, n in cells if f < t), sum(n for t, f, n in cells if f > t)
        if not cells:
            words.append(f"On canvases with {name} it makes no error.")
            continue
        kind = ("a digit missed" if missed > added else "an extra object" if added > missed
                else "as often a digit missed as an extra object")
        share = "all" if not (missed and added) else "most"
        words.append(f"On canvases with {name} {share} of its {missed + added:,} errors are {kind}: "
                     + ", ".join(_canvases(n, t, f) for t, f, n in cells) + ".")
    return " ".join(words)


def _wrong_way(found: list[int], k: int) -> str:
    """How a row of found counts for ``k`` true digits is mostly wrong: too many, too few, one too few..."""
    fewer, more = sum(found[:k]), sum(found[k + 1:])
    if not fewer + more:
        return "nothing else (it makes no error)"
    if more > fewer:
        return "too many" if sum(found[k + 2:]) * 2 > more else "one too many"
    return "too few" if sum(found[:k - 1]) * 2 > fewer else "one too few"


def beyond_words(beyond: dict, trained_steps: int) -> str:
    """What the recorded counts beyond training say: three digits in the trained steps and in
    :data:`BEYOND_STEPS`, the extra windows, four and five digits, and the cost of smaller digits."""
    acc, trained = beyond["count_accuracy_by_digits"], beyond["count_accuracy_by_digits_3_steps"]
    small, found = beyond["count_accuracy_by_digits_small"], beyond["found_counts_by_digits"]
    three = found["3"]
    extra = sum(three[4:]) / sum(three)
    words = (f"In the {trained_steps} steps it was trained with, the model counts {pct(trained['3'])} of the "
             f"three-digit canvases right; allowed {BEYOND_STEPS}, {pct(acc['3'])}, because it gives "
             f"{pct(extra)} of them a fourth object.")
    repeats = beyond.get("too_many_found_by_digits")
    total = sum(r["too_many"] for r in (repeats or {}).values())
    if total:
        overlap = sum(r["two_windows_overlap"] for r in repeats.values())
        how = "almost always" if overlap >= 0.9 * total else "often" if overlap >= 0.5 * total else "sometimes"
        words += (f" An extra window {how} lands on a digit that an earlier window already took "
                  f"({overlap:,} of the {total:,} canvases counted too many, over all three rows, have two "
                  "windows overlapping): an earlier step explained its digit poorly, and what is left of it "
                  "looks like one more object.")
    words += (f" Four digits of the training size are counted right {pct(acc['4'])} of the time, against "
              f"{pct(trained['4'])} when the loop stops at {trained_steps}; when the model is wrong it mostly "
              f"finds {_wrong_way(found['4'], 4)}. Five digits come out right {pct(acc['5'])} of the time, and "
              f"mostly {_wrong_way(found['5'], 5)}: the smaller digits alone already cost much (three "
              f"{SMALL_DIGIT}-pixel digits: {pct(small['3'])}, four: {pct(small['4'])}, against "
              f"{pct(acc['3'])} and {pct(acc['4'])} at 24 pixels), and the model's windows keep the size of "
              "the digits it was trained on, so on a crowded canvas one window often takes in two small "
              "digits at once.")
    return words


# --- the three-digit failure ------------------------------------------------------------------------
def three_digit_figure(model, test3, results: dict | None, device="cpu", caveat: str = ""):
    """What fails on three digits: four 3-digit canvases our model counts right and four it gets wrong
    (where there are any), with its windows; beside them the count accuracy on 3 digits of our seeds
    and of the recurrent reference (its recorded number: no recurrent model is shipped).

    Returns ``(figure, canvases counted wrong, canvases counted)``.
    """
    with torch.no_grad():
        found = count_objects(model, test3.images, greedy=True)
    right = torch.nonzero(found == test3.counts)[:, 0].tolist()
    wrong = torch.nonzero(found != test3.counts)[:4, 0].tolist()
    rows = [("counted right", right[:4]), ("counted wrong", wrong) if wrong else ("counted right", right[4:8])]
    fig = plt.figure(figsize=(8, 4.2), layout="constrained")
    left, right_part = fig.subfigures(1, 2, width_ratios=[2.1, 1])
    axes = left.subplots(2, 4)
    with torch.no_grad():
        for (label, indices), row in zip(rows, axes):
            trace = model(test3.images[indices].to(device), greedy=True)
            for c, ax in enumerate(row):
                if c >= len(indices):
                    ax.axis("off")
                    continue
                show_canvas(ax, test3.images[indices[c]], inferred_outlines(trace, c),
                            title=f"found {int(trace.counts[c])}")
            row[0].set_ylabel(label, fontsize=9)
    left.suptitle(f"our model's windows (red, green, blue by step){caveat}", fontsize=10)
    ax = right_part.subplots()
    if results:
        seeds = [r["three_digit_sampled_count_accuracy"] for r in results["runs"].values()]
        mean = float(np.mean(seeds))
        values = [mean, reference_three_digits(results)[0]]
        ax.bar([0, 1], [100 * v for v in values], color=["tab:blue", "tab:gray"], width=0.6)
        ax.errorbar([0], [100 * mean], yerr=[[100 * (mean - min(seeds))], [100 * (max(seeds) - mean)]],
                    color="black", capsize=4, lw=1)
        for x, v in enumerate(values):
            ax.text(x, 100 * v + 2, pct(v), ha="center", fontsize=9)
        ax.set_xticks([0, 1], ["difference\n(ours,\n5 seeds)", "recurrent\n(reference)"], fontsize=9)
        ax.set_ylim(0, 112)
        ax.set_ylabel("counted right (%)")
        ax.set_title("recorded: 10,000 canvases,\nsampled z_pres", fontsize=9)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no recorded results\non this page", ha="center", va="center", fontsize=9)
    fig.suptitle("Trained on 0-2 digits, shown 3", fontsize=11)
    return fig, int((found != test3.counts).sum()), len(found)


def beyond_figure(model, steps: int = BEYOND_STEPS, device="cpu", caveat: str = "",
                  title: str = "The trained model"):
    """Four canvases with 4 digits (24 px) and four with 5 (19 px), with the windows of all ``steps``."""
    fig, axes = plt.subplots(2, 4, figsize=(6.4, 3.9), layout="constrained")
    for row, (k, size) in zip(axes, [(4, 24), (5, SMALL_DIGIT)]):
        crowded, _ = canvases_apart(len(row), k, seed=k, digit_size=size)
        with torch.no_grad():
            trace = model(crowded.images.to(device), greedy=True, max_steps=steps)
        for n, ax in enumerate(row):
            show_canvas(ax, crowded.images[n], inferred_outlines(trace, n), title=f"found {int(trace.counts[n])}")
        row[0].set_ylabel(f"{k} digits ({size} px)", fontsize=9)
    fig.suptitle(f"{title} run for {steps} steps{caveat}", fontsize=10)
    return fig


# --- widgets ----------------------------------------------------------------------------------------
def explorer_frame(trace, image, n: int, step: int) -> np.ndarray:
    """One frame of the attention explorer for canvas ``n`` and ``step``: the step's window, the glimpse,
    its reconstruction, the object as painted and the canvas so far, as an RGB array in [0, 1]."""
    fig, axes = plt.subplots(1, 5, figsize=(7.5, 1.8), dpi=90)
    present = bool(trace.pres[n, step])
    colour = STEP_COLOURS[step] if present else "0.6"
    show_canvas(axes[0], image, [_outline(trace, n, step)], colours=[colour],
                title=f"step {step + 1}: z_pres = {int(present)}")
    axes[1].imshow(trace.glimpses[n, step, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("glimpse", fontsize=9)
    axes[2].imshow(trace.patches[n, step, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[2].set_title("reconstruction", fontsize=9)
    show_canvas(axes[3], (trace.painted[n, step] * trace.pres[n, step]).clamp(0, 1).cpu(), title="painted")
    so_far = (trace.painted[n, :step + 1, 0] * trace.pres[n, :step + 1, None, None]).sum(0, keepdim=True)
    show_canvas(axes[4], so_far.clamp(0, 1).cpu(), title="canvas so far")
    for ax in axes[1:3]:
        ax.axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    frame = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    plt.close(fig)
    return frame


def attention_explorer(model, test, test3, device="cpu"):
    """Sliders over eight canvases (two each with 2, 1 and 0 digits, two with 3) and over the steps:
    :func:`explorer_frame` for each, precomputed (works in the static book)."""
    from ..widgets import frame_table

    picked = [int(i) for c in (2, 1, 0) for i in torch.nonzero(test.counts == c)[:2, 0]]
    images = [test.images[i] for i in picked] + [test3.images[i] for i in range(2)]
    counts = [int(test.counts[i]) for i in picked] + [3, 3]
    with torch.no_grad():
        trace = model(torch.stack(images).to(device), greedy=True)
    steps = model.config.max_steps
    frames = [[explorer_frame(trace, images[n], n, step) for step in range(steps)] for n in range(len(images))]
    labels = [f"{n + 1} ({c} digit{'s' if c != 1 else ''})" for n, c in enumerate(counts)]
    return frame_table(frames, labels, list(range(1, steps + 1)), "canvas", "step", scale=1), trace


def where_sliders(model, what: torch.Tensor, device="cpu"):
    """One object's decoder painted with a where-code of the reader's choice: a slider each for the
    scale s and the centre (x, y), over precomputed frames (works in the static book)."""
    from ..widgets import latent_traversal

    def paint(where_codes):
        """(n, 3) where-codes (s, x, y) -> (n, 50, 50) canvases with the object painted there."""
        where_codes = where_codes.to(device)
        patch = model.what.decode(what.expand(len(where_codes), -1))
        s, shift = where_codes[:, 0], where_codes[:, 1:]
        return crop_window(patch, 1 / s, -shift / s[:, None], 50)[:, 0].clamp(0, 1).cpu()

    # steps of 0.1 and 0.2, which the sliders' one-decimal readout shows exactly
    grids = np.stack([np.linspace(0.3, 0.9, 7), np.linspace(-0.6, 0.6, 7), np.linspace(-0.6, 0.6, 7)])
    return latent_traversal(paint, torch.tensor([0.5, 0.0, 0.0]), [0, 1, 2], values=grids.round(6) + 0.0,
                            labels=["scale s", "shift x", "shift y"], scale=2, live=False)


QUICK_WORDS = " (a briefly trained model: not results)"


def caveat(mode: str) -> str:
    """What to add to a title or caption in ``mode``: a warning in quick mode, else nothing."""
    return QUICK_WORDS if mode == QUICK else ""
