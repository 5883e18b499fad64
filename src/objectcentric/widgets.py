"""Widgets that let the reader play with a trained model (Chapter 1, VAE).

Chapter 1 introduces them on the VAE; Chapter 2 (beta-VAE) reuses
:func:`latent_traversal` for its traversals and Chapter 6 (AIR) reuses
:func:`frame_slider` for attention crops.

The same widget has to work in two places: in a live kernel, and in the
rendered book, where there is no kernel. So every frame is decoded in advance
and the slider is linked to the frames *in the browser* (``jslink``): moving it
only changes which precomputed image is shown. Only the optional "combined"
image of :func:`latent_traversal` needs Python, and it says so.

nbclient stores every widget alive at the end of a notebook in the page, so
frames live only in the widgets shown, as small PNGs.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
from PIL import Image as PILImage  # pillow is a dependency of matplotlib

__all__ = ["to_png", "frame_slider", "latent_traversal", "choice_widget", "FrameSlider", "LatentTraversal",
           "tile_frames", "traversal_explorer", "prototype_explorer", "assignment_slider", "frame_grid"]

# Decoders end in a sigmoid, so float round-off may step just outside [0, 1].
_TOLERANCE = 1e-5


def _as_numpy(x) -> np.ndarray:
    """A numpy array from a numpy array or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_image(image, what: str = "image") -> np.ndarray:
    """Return ``image`` as (H, W) or (H, W, 3) floats in [0, 1], or raise ValueError.

    A (1, H, W) image (a conv decoder's single channel) loses its channel; the
    checks are :func:`objectcentric.checks.check_image_batch`'s, for one image.
    """
    import torch  # here, so that the widgets module stays cheap to import

    from .checks import check_image_batch

    arr = _as_numpy(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    checked = check_image_batch(torch.as_tensor(np.ascontiguousarray(arr)), [("H", "W"), ("H", "W", 3)], what,
                                dtype=None, tolerance=_TOLERANCE, batched=False)
    return np.clip(checked.numpy(), 0.0, 1.0)


def to_png(image, scale: int = 3) -> bytes:
    """PNG bytes of a (H, W) or (H, W, 3) image in [0, 1], upscaled ``scale`` times.

    Nearest-neighbour upscaling keeps the pixels of a 28 x 28 digit sharp
    instead of letting the browser blur them (Chapter 1, VAE).
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    arr = _check_image(image)
    arr = np.repeat(np.repeat(arr, int(scale), axis=0), int(scale), axis=1)
    buffer = io.BytesIO()
    PILImage.fromarray(np.round(arr * 255).astype(np.uint8)).save(buffer, format="png")
    return buffer.getvalue()


def _linked_stack(children, control, links: list, selected_index: int = 0,
                  css_class: str | None = None) -> widgets.Stack:
    """A ``Stack`` of precomputed ``children`` that shows the one ``control`` selects, in the browser too.

    ``control`` is any widget with an integer ``index`` (a ``SelectionSlider``,
    ``ToggleButtons``); the ``jslink`` from its ``index`` to the stack's
    ``selected_index`` is appended to ``links``, so the pair works in a kernel
    and in the static book alike. The stack starts at ``selected_index`` and
    carries ``css_class`` if given.
    """
    stack = widgets.Stack(list(children), selected_index=selected_index)
    if css_class:
        stack.add_class(css_class)
    links.append(widgets.jslink((control, "index"), (stack, "selected_index")))
    return stack


class FrameSlider(widgets.HBox):
    """A slider showing one of several precomputed frames (Chapter 1, VAE).

    Build it with :func:`frame_slider`. The browser only sees an ``HBox``;
    ``slider``, ``stack`` and ``link`` are kept here for tests and callers.
    """

    def __init__(self, slider, stack, link, **kwargs):
        super().__init__(children=[stack, slider], **kwargs)
        self.slider, self.stack, self.link = slider, stack, link


def frame_slider(
    frames,
    values,
    description: str = "",
    readout_format: str = ".1f",
    initial=None,
    scale: int = 3,
) -> FrameSlider:
    """A slider over ``values`` that shows the matching image of ``frames`` (Chapter 1, VAE).

    ``frames`` are images as for :func:`to_png`, one per value. The slider's
    index is linked to a ``Stack`` of ``Image`` widgets with ``jslink``, so it
    works in a kernel and in the static book alike. A ``SelectionSlider`` is
    used because its ``index`` is an integer that ``jslink`` can copy into
    ``Stack.selected_index`` while its readout still shows the value.
    ``initial`` is a value; the slider starts at the nearest one (default: first).
    """
    frames, values = list(frames), [float(v) for v in values]
    if len(frames) != len(values):
        raise ValueError(f"frame_slider needs one frame per value: got {len(frames)} frames "
                         f"and {len(values)} values")
    if not frames:
        raise ValueError("frame_slider needs at least one frame")
    # One Layout shared by all frames: each widget model costs ~1 KB of page state.
    layout = widgets.Layout()
    images = [widgets.Image(value=to_png(f, scale), format="png", layout=layout) for f in frames]
    index = 0 if initial is None else int(np.argmin(np.abs(np.asarray(values) - float(initial))))
    slider = widgets.SelectionSlider(
        options=[(format(v, readout_format), v) for v in values],
        index=index,
        description=description,
        style={"description_width": "initial"},
        layout=widgets.Layout(width="260px"),
    )
    links = []
    stack = _linked_stack(images, slider, links, index, "oc-frames")
    box = FrameSlider(slider, stack, links[0], layout=widgets.Layout(align_items="center"))
    box.add_class("oc-frame-slider")
    return box


class LatentTraversal(widgets.VBox):
    """Rows of latent traversals, one latent per row (Chapter 1, VAE; reused in Chapter 2).

    Build it with :func:`latent_traversal`. ``rows`` are the :class:`FrameSlider`
    widgets in display order, ``latents`` their latent indices and ``combined``
    the live image (``None`` when ``live=False``).
    """

    def __init__(self, children, rows, latents, combined, **kwargs):
        super().__init__(children=children, **kwargs)
        self.rows, self.latents, self.combined = rows, latents, combined


def _row_labels(labels, rows: Sequence[int], d: int) -> list[str]:
    """Labels by latent index (a length-``d`` sequence or a mapping); ``z[i]`` by default."""
    if labels is None:
        return [f"z[{i}]" for i in rows]
    if isinstance(labels, Mapping):
        return [str(labels.get(i, f"z[{i}]")) for i in rows]
    if len(labels) != d:
        raise ValueError(f"labels must have one entry per latent (d={d}), indexed by latent, "
                         f"or be a mapping {{latent: label}}; got {len(labels)} entries")
    return [str(labels[i]) for i in rows]


def latent_traversal(
    decode: Callable,
    base,
    latent_order,
    values=None,
    max_latents: int = 8,
    labels=None,
    scale: int = 3,
    live: bool = True,
) -> LatentTraversal:
    """Traverse the most important latents of a decoder, one slider per latent (Chapter 1, VAE).

    Row ``i`` shows ``decode(z)`` where ``z`` is ``base`` with ``z[i]`` set to each
    of ``values`` (absolute values, default ``linspace(-3, 3, 13)``, i.e. +-3 prior
    standard deviations); every other latent keeps its ``base`` value. Rows follow
    ``latent_order`` (most important first, e.g. by KL), at most ``max_latents``.
    ``labels`` names latents by index: a length-``d`` sequence or a mapping.
    ``values`` may also give each row its own grid: shape (rows, n_values)
    (Chapter 6 moves an object's scale and position, which live on different ranges).

    All frames come from ONE batched ``decode`` call on a float tensor ``(n, d)``;
    ``decode`` returns images ``(n, H, W)`` (or ``(n, 1, H, W)``, ``(n, H, W, 3)``)
    in [0, 1]. The rows work without a kernel. With ``live=True`` an image above
    them decodes ``base`` with every row's slider value applied at once; that
    needs a running kernel, and its caption says so.
    """
    import torch  # imported here so that the widgets module stays cheap to import

    base_t = torch.as_tensor(_as_numpy(base), dtype=torch.float32).flatten()
    d = base_t.numel()
    rows = [int(i) for i in list(latent_order)[:max_latents]]
    if not rows:
        raise ValueError("latent_order must name at least one latent")
    if any(not 0 <= i < d for i in rows):
        raise ValueError(f"latent_order entries must lie in [0, {d}), got {rows}")
    names = _row_labels(labels, rows, d)
    grid = np.linspace(-3.0, 3.0, 13) if values is None else np.asarray(_as_numpy(values), dtype=float)
    if grid.size == 0:
        raise ValueError("values must not be empty")
    if grid.ndim == 2 and grid.shape[0] != len(rows):
        raise ValueError(f"values with one grid per row must have {len(rows)} rows, got {grid.shape[0]}")
    grids = np.broadcast_to(grid.ravel() if grid.ndim < 2 else grid, (len(rows), grid.shape[-1]))

    # Start each slider at the grid value nearest the base code, so that the
    # frames shown first and the combined image agree.
    start = [int(np.argmin(np.abs(grids[r] - base_t[i].item()))) for r, i in enumerate(rows)]
    n_values = grids.shape[1]
    z = base_t.repeat(len(rows) * n_values + 1, 1)
    grid_t = torch.tensor(np.array(grids), dtype=torch.float32)   # (rows, n_values), a writable copy
    for r, i in enumerate(rows):
        z[r * n_values:(r + 1) * n_values, i] = grid_t[r]
        z[-1, i] = grid_t[r, start[r]]  # last code: the combined image at the start
    with torch.no_grad():
        images = _as_numpy(decode(z))
    if images.shape[0] != z.shape[0]:
        raise ValueError(f"decode returned {images.shape[0]} images for {z.shape[0]} codes")

    frame_rows, children = [], []
    for r, (i, name) in enumerate(zip(rows, names)):
        frames = images[r * n_values:(r + 1) * n_values]
        fs = frame_slider(frames, grids[r], description="", initial=grids[r][start[r]], scale=scale)
        label = widgets.Label(name, layout=widgets.Layout(width="150px"))
        frame_rows.append(fs)
        children.append(widgets.HBox([label, fs], layout=widgets.Layout(align_items="center")))

    combined = None
    if live:
        combined = widgets.Image(value=to_png(images[-1], scale), format="png")
        caption = widgets.HTML("all rows combined<br><small>(redrawn by the running kernel)</small>"
                               + KERNEL_ONLY_STYLE, layout=widgets.Layout(width="150px"))
        _observe_combined(decode, base_t, rows, grid_t, frame_rows, combined, scale)
        live_row = widgets.HBox([caption, combined], layout=widgets.Layout(align_items="center"))
        live_row.add_class(KERNEL_ONLY)  # without a kernel it would stay fixed: hidden on static pages
        children.insert(0, live_row)
    box = LatentTraversal(children, frame_rows, rows, combined)
    box.add_class("oc-traversal")
    return box


def _observe_combined(decode, base_t, rows, grid_t, frame_rows, combined, scale):
    """Re-decode ``combined`` in Python whenever any row's slider moves (kernel only)."""
    import torch

    def update(_change=None):
        z = base_t.clone()
        for r, (i, fs) in enumerate(zip(rows, frame_rows)):
            z[i] = grid_t[r, fs.slider.index]
        with torch.no_grad():
            combined.value = to_png(_as_numpy(decode(z[None]))[0], scale)

    for fs in frame_rows:
        fs.slider.observe(update, names="index")


def choice_widget(frames: dict, names, temperatures, sample_sizes, resample: Callable | None = None,
                  draws=None):
    """Pick an estimator, temperature and number of samples; the browser shows the matching frame (Chapter 3).

    ``frames[(name, temperature, n)]`` are PNG bytes. With ``draws`` (a list of
    labels), ``frames[(name, temperature, n, draw)]`` are several independent
    draws of the same histogram and a fourth control, "draw", picks one: the
    reader sees fresh samples without a kernel. Nested ``Stack`` widgets
    (estimator > temperature > n [> draw]) are linked to the controls with
    ``jslink``, so the widget works in a kernel and in the static book alike;
    only the selected frame is visible. With ``resample(name, temperature, n)
    -> PNG`` a "draw again" button replaces the selected frame by a fresh
    draw; that needs a running kernel, and its caption says so. Returns the
    box (its ``controls`` attribute holds the controls, ``redraw`` the
    button's handler or None, for tests).
    """
    layout = widgets.Layout()
    chooser = widgets.ToggleButtons(options=list(names), description="estimator",
                                    style={"button_width": "110px"})

    def selection(options, description):
        return widgets.SelectionSlider(options=options, description=description,
                                       style={"description_width": "initial"},
                                       layout=widgets.Layout(width="250px"))

    temperature = selection([(f"{t:g}", t) for t in temperatures], "temperature")
    n_samples = selection([(f"{n:,}", n) for n in sample_sizes], "samples")
    draw = None if draws is None else selection([(str(d), d) for d in draws], "draw")
    images = {}  # one Image per distinct frame: estimators without a temperature share theirs

    def image(png):
        if id(png) not in images:
            images[id(png)] = widgets.Image(value=png, format="png", layout=layout)
        return images[id(png)]

    def leaf(name, t, n, links):
        if draw is None:
            return image(frames[(name, t, n)])
        return _linked_stack([image(frames[(name, t, n, d)]) for d in draws], draw, links)

    by_name, links = [], []
    for name in names:
        by_temperature = [_linked_stack([leaf(name, t, n, links) for n in sample_sizes], n_samples, links)
                          for t in temperatures]
        by_name.append(_linked_stack(by_temperature, temperature, links))
    top = _linked_stack(by_name, chooser, links, css_class="oc-frames")
    sliders = [temperature, n_samples] + ([] if draw is None else [draw])
    children = [chooser, widgets.HBox(sliders, layout=widgets.Layout(flex_flow="row wrap")), top]
    redraw = None
    if resample is not None:
        def redraw(_button=None):
            """Draw the selected frame again from fresh samples (kernel only)."""
            selected = top.children[chooser.index].children[temperature.index].children[n_samples.index]
            if draw is not None:
                selected = selected.children[draw.index]
            selected.value = resample(names[chooser.index], temperatures[temperature.index],
                                      sample_sizes[n_samples.index])

        button = widgets.Button(description="draw again", tooltip="new samples for the frame shown")
        button.on_click(redraw)
        children.insert(2, widgets.HBox([button, widgets.HTML("<small>(needs a running kernel)</small>")],
                                        layout=widgets.Layout(align_items="center")))
    box = widgets.VBox(children)
    box.add_class("oc-choice")
    box.controls, box.links, box.redraw = (chooser, temperature, n_samples, *sliders[2:]), links, redraw
    return box


def frame_grid(frames: Mapping, axes, scale: int = 1, css_class: str = "oc-frame-grid") -> widgets.VBox:
    """One slider per axis choosing one of ``frames[(i, j, ...)]``, in the static book too (Chapter 4).

    ``axes`` is a list of ``(description, values, initial value)``, one per
    axis; ``frames`` maps every tuple of indices (one per axis) to an image
    (as for :func:`to_png`). The frames sit in nested ``Stack`` widgets, one
    level per axis, each linked to its slider with ``jslink``: every
    combination of the sliders is precomputed, so the picture follows all of
    them without a kernel. The number of frames is the product of the axes'
    lengths; keep it to a few hundred. The box carries ``css_class``; its
    ``sliders`` attribute holds the sliders, ``links`` the links.
    """
    axes = [(description, [float(v) for v in values], initial) for description, values, initial in axes]
    shape = tuple(len(values) for _, values, _ in axes)
    expected = set(np.ndindex(*shape))
    if set(frames) != expected:
        raise ValueError(f"frame_grid needs one frame per index tuple of shape {shape}: "
                         f"{len(expected - set(frames))} missing, {len(set(frames) - expected)} extra")
    sliders = []
    for description, values, initial in axes:
        index = int(np.argmin(np.abs(np.asarray(values) - float(initial))))
        sliders.append(widgets.SelectionSlider(
            options=[(f"{v:g}", i) for i, v in enumerate(values)], index=index, description=description,
            style={"description_width": "90px"}, layout=widgets.Layout(width="300px")))
    layout, links = widgets.Layout(), []

    def level(prefix: tuple):
        depth = len(prefix)
        if depth == len(axes):
            return widgets.Image(value=to_png(frames[prefix], scale), format="png", layout=layout)
        children = [level(prefix + (i,)) for i in range(shape[depth])]
        return _linked_stack(children, sliders[depth], links, sliders[depth].index,
                             "oc-frames" if depth == 0 else None)

    stack = level(())
    box = widgets.VBox([stack, *sliders])
    box.add_class(css_class)
    box.sliders, box.links = sliders, links
    return box


def frame_table(frames, row_values, column_values, row_description: str = "", column_description: str = "",
                scale: int = 2, css_class: str = "oc-explorer") -> widgets.VBox:
    """Two sliders choosing one of ``frames[row][column]`` (Chapter 6, AIR's attention explorer).

    Each row is a ``Stack`` over the columns, all linked to the column slider,
    and the rows form an outer ``Stack`` linked to the row slider (``jslink``),
    so the table works in the static book as in a kernel. The box carries
    ``css_class``; its ``sliders`` attribute holds (row slider, column slider).
    """
    frames = [list(row) for row in frames]
    if not frames or any(len(row) != len(column_values) for row in frames) or len(frames) != len(row_values):
        raise ValueError(f"frame_table needs {len(row_values)} rows of {len(column_values)} frames, "
                         f"got {[len(row) for row in frames]}")
    layout = widgets.Layout()

    def slider(values, description):
        return widgets.SelectionSlider(options=[(str(v), i) for i, v in enumerate(values)], index=0,
                                       description=description, style={"description_width": "initial"},
                                       layout=widgets.Layout(width="320px"))

    rows, columns = slider(row_values, row_description), slider(column_values, column_description)
    links = []
    inner = [_linked_stack([widgets.Image(value=to_png(f, scale), format="png", layout=layout) for f in row],
                           columns, links) for row in frames]
    outer = _linked_stack(inner, rows, links, css_class="oc-frames")
    box = widgets.VBox([rows, columns, outer])
    box.add_class(css_class)
    box.sliders, box.links = (rows, columns), links
    return box


def tile_frames(frames, gap: int = 1, gap_value: float = 0.5) -> np.ndarray:
    """Tile frames (rows, columns, H, W) in [0, 1] into one image, ``gap`` grey pixels apart (Chapter 2)."""
    frames = _as_numpy(frames)
    if frames.ndim != 4 or 0 in frames.shape:
        raise ValueError(f"frames must be shaped (rows, columns, H, W), got {frames.shape}")
    n_rows, n_columns, height, width = frames.shape
    tiled = np.full((n_rows * (height + gap) - gap, n_columns * (width + gap) - gap), gap_value)
    for r in range(n_rows):
        for c in range(n_columns):
            tiled[r * (height + gap):r * (height + gap) + height,
                  c * (width + gap):c * (width + gap) + width] = frames[r, c]
    return tiled


def _traversal_panel(frames, labels, values, max_latents: int, scale: int, grid_height: int, layouts: dict):
    """One run of :func:`traversal_explorer`: its whole traversal grid, and a slider per leading latent.

    ``layouts`` are shared by every panel: each widget model costs page weight.
    """
    if frames is None:
        return widgets.HTML("<i>this run was not recorded</i>")
    frames = _as_numpy(frames)
    if frames.shape[1] != len(values) or len(labels) != frames.shape[0]:
        raise ValueError(f"frames must be (latents, {len(values)} values, H, W) with one label per latent, "
                         f"got {frames.shape} and {len(labels)} labels")
    grid = tile_frames(frames)
    grid_image = widgets.Image(value=to_png(grid, max(1, grid_height // grid.shape[0])), format="png")
    initial = float(values[int(np.argmin(np.abs(np.asarray(values, dtype=float))))])
    rows = []
    for row, label in zip(frames[:max_latents], labels):
        fs = frame_slider(row, values, initial=initial, scale=scale)
        rows.append(widgets.HBox([widgets.Label(label, layout=layouts["label"]), fs], layout=layouts["row"]))
    return widgets.HBox([grid_image, widgets.VBox(rows)], layout=layouts["panel"])


def traversal_explorer(panels: Mapping, values, max_latents: int = 5, scale: int = 2, grid_height: int = 420,
                       descriptions=("dataset", "architecture", "β"), css_class: str = "oc-beta-explorer"):
    """Pick a dataset, an architecture and β; see that run's traversals (Chapter 2, β-VAE).

    ``panels[dataset][architecture][beta]`` is ``(frames, labels)``: ``frames``
    shaped (latents, len(values), H, W) in [0, 1], one row per latent in the
    order to show them, one label per row; or None for a run not recorded.
    Every architecture of a dataset must list the same β values. Each run shows
    its whole traversal grid (rows: latents; columns: ``values``) and, beside
    it, one slider per leading latent (at most ``max_latents``). Toggle buttons
    (dataset, architecture) and a β slider pick the run through nested
    ``Stack`` widgets linked with ``jslink``, and the latent sliders switch
    precomputed frames, so everything works in the static book, offline.
    The box carries ``css_class``; ``controls`` maps each dataset to its
    (architecture, β) controls, ``dataset`` is the dataset toggle.
    """
    if not panels:
        raise ValueError("traversal_explorer needs at least one dataset")
    datasets = list(panels)
    chooser = widgets.ToggleButtons(options=datasets, description=descriptions[0],
                                    style={"description_width": "initial", "button_width": "110px"})
    by_dataset, links, controls = [], [], {}
    # The panel wraps: where the page is too narrow for the grid and the sliders side by side,
    # the sliders go under the grid instead of being squashed beside it.
    layouts = {"label": widgets.Layout(width="130px", flex="0 0 auto"),
               "row": widgets.Layout(align_items="center", flex="0 0 auto"),
               "panel": widgets.Layout(align_items="flex-start", flex_flow="row wrap", grid_gap="8px")}
    for dataset in datasets:
        architectures = list(panels[dataset])
        betas = list(panels[dataset][architectures[0]])
        if any(list(panels[dataset][a]) != betas for a in architectures):
            raise ValueError(f"every architecture of {dataset!r} must list the same β values")
        architecture = widgets.ToggleButtons(options=architectures, description=descriptions[1],
                                             style={"description_width": "initial", "button_width": "80px"})
        beta = widgets.SelectionSlider(options=[(f"{b:g}", b) for b in betas], description=descriptions[2],
                                       style={"description_width": "initial"})
        by_architecture = [_linked_stack([_traversal_panel(*(panels[dataset][a][b] or (None, None)), values,
                                                           max_latents, scale, grid_height, layouts)
                                          for b in betas], beta, links)
                           for a in architectures]
        stack = _linked_stack(by_architecture, architecture, links)
        by_dataset.append(widgets.VBox([widgets.VBox([architecture, beta]), stack]))  # a control a row
        controls[dataset] = (architecture, beta)
    top = _linked_stack(by_dataset, chooser, links)
    box = widgets.VBox([chooser, top])
    box.add_class(css_class)
    box.dataset, box.controls, box.links = chooser, controls, links
    return box


# A part of a widget that only Python can redraw carries this class. KERNEL_ONLY_STYLE, placed in
# any HTML widget, hides it inside the book theme's article (.bd-article): on the static pages, where
# no kernel runs and it would stay fixed. Jupyter, Colab and VS Code have no such element and show it.
KERNEL_ONLY = "oc-kernel-only"
KERNEL_ONLY_STYLE = f"<style>.bd-article .{KERNEL_ONLY} {{display: none !important}}</style>"


def prototype_explorer(frames: Mapping, labels, values, render: Callable | None = None, scale: int = 3,
                       grid_height: int = 260, css_class: str = "oc-prototype-explorer") -> widgets.VBox:
    """Pick a prototype and move it along each parameter of its transformation (Chapter 5, D-VAE-ST).

    ``frames[name]`` is (parameters, len(values), H, W) in [0, 1]: row p shows
    the prototype warped with parameter p set to each of ``values`` (a change
    from the identity) and the others at the identity; ``labels`` name the
    rows. Each prototype gets :func:`traversal_explorer`'s panel (its whole
    grid and a slider per parameter), and toggle buttons pick the prototype
    through a ``Stack`` linked with ``jslink``, so it works in the static book.
    With ``render(name, changes) -> image`` (``changes``: one value per
    parameter) an image beside the buttons applies all sliders of the shown
    prototype at once; only a running kernel can redraw it, so it carries
    :data:`KERNEL_ONLY` and is hidden on the book's static pages.
    The box carries ``css_class``; ``chooser`` and ``sliders`` (per prototype)
    are kept for tests.
    """
    names = list(frames)
    if not names:
        raise ValueError("prototype_explorer needs at least one prototype")
    labels = list(labels)
    chooser = widgets.ToggleButtons(options=names, description="prototype",
                                    style={"description_width": "initial", "button_width": "52px"})
    layouts = {"label": widgets.Layout(width="80px"), "row": widgets.Layout(align_items="center"),
               "panel": widgets.Layout(align_items="flex-start")}
    panels = [_traversal_panel(frames[name], labels, values, len(labels), scale, grid_height, layouts)
              for name in names]
    # A panel is HBox([grid, VBox([HBox([label, FrameSlider]), ...])]).
    sliders = [[row.children[1].slider for row in panel.children[1].children] for panel in panels]
    links = []
    top = _linked_stack(panels, chooser, links)
    header = [chooser]
    combined = None
    if render is not None:
        values = [float(v) for v in values]

        def update(_change=None):
            k = chooser.index
            combined.value = to_png(render(names[k], [values[s.index] for s in sliders[k]]), scale)

        initial = [float(values[s.index]) for s in sliders[0]]
        combined = widgets.Image(value=to_png(render(names[0], initial), scale), format="png")
        for slider in [s for row in sliders for s in row]:
            slider.observe(update, names="index")
        chooser.observe(update, names="index")
        live = widgets.HBox([combined, widgets.HTML("all sliders at once<br><small>(in a running "
                                                    "notebook)</small>" + KERNEL_ONLY_STYLE)],
                            layout=widgets.Layout(align_items="center"))
        live.add_class(KERNEL_ONLY)  # Python redraws it: without a kernel it would stay fixed
        header.append(live)
    box = widgets.VBox([widgets.HBox(header, layout=widgets.Layout(align_items="center")), top])
    box.add_class(css_class)
    box.chooser, box.sliders, box.links, box.combined = chooser, sliders, links, combined
    return box


def assignment_slider(strips, captions=None, description: str = "image", scale: int = 3,
                      css_class: str = "oc-assignment") -> widgets.VBox:
    """Step through images, each shown as a strip of panels (Chapter 5: image, prototype, reconstruction).

    ``strips`` are (panels, H, W) arrays in [0, 1], tiled side by side with
    :func:`tile_frames`; ``captions`` (one string, or None) head the panels. A
    :func:`frame_slider` over the strips, so it works in the static book.
    """
    strips = [_as_numpy(s) for s in strips]
    frames = [tile_frames(s[None]) for s in strips]
    slider = frame_slider(frames, range(len(frames)), description=description, readout_format=".0f", scale=scale)
    children = ([widgets.HTML(f"<small>{captions}</small>")] if captions else []) + [slider]
    box = widgets.VBox(children)
    box.add_class(css_class)
    box.slider = slider
    return box



def compact_png(image, scale: int = 1, colors: int = 64) -> bytes:
    """PNG bytes of an image as for :func:`to_png`, an RGB one reduced to ``colors`` colours (Chapter 7).

    Widget frames of grey digits with a few coloured boxes and some text
    lose nothing visible at 64 colours and take about half the bytes, which
    matters when a page holds hundreds of them.
    """
    png = to_png(image, scale)
    picture = PILImage.open(io.BytesIO(png))
    if picture.mode != "RGB":
        return png
    buffer = io.BytesIO()
    picture.quantize(colors=colors, method=PILImage.Quantize.MEDIANCUT).save(buffer, format="png", optimize=True)
    return buffer.getvalue() if buffer.tell() < len(png) else png


def choice_grid(frames: Mapping, axes, side=None, scale: int = 1,
                css_class: str = "oc-choice-grid") -> widgets.VBox:
    """Controls with named choices selecting one of ``frames[(i, j, ...)]``, in the static book too (Chapter 7).

    ``axes`` is a list of ``(description, labels, initial index)`` or
    ``(description, labels, initial index, "slider")``, one per axis: each
    axis is a row of toggle buttons (a ``SelectionSlider`` with ``"slider"``)
    whose choices read ``labels``. ``frames`` maps every tuple of indices to
    an image (as for :func:`to_png`); they sit in nested ``Stack`` widgets
    linked to their controls in the browser (``jslink``), as in
    :func:`frame_grid`, so every combination is precomputed: keep the product
    of the axes' lengths to a few hundred. ``side`` is one image per choice
    of the first axis, shown left of the frames and following that axis only
    (what does not change with the other controls need not be repeated in
    every frame). The box's ``controls`` attribute holds the controls,
    ``links`` the links.
    """
    axes = [(a[0], [str(label) for label in a[1]], int(a[2]), a[3] if len(a) > 3 else "buttons") for a in axes]
    shape = tuple(len(labels) for _, labels, _, _ in axes)
    expected = set(np.ndindex(*shape))
    if set(frames) != expected:
        raise ValueError(f"choice_grid needs one frame per index tuple of shape {shape}: "
                         f"{len(expected - set(frames))} missing, {len(set(frames) - expected)} extra")
    if side is not None and len(side) != shape[0]:
        raise ValueError(f"choice_grid's side needs one image per choice of the first axis ({shape[0]}), "
                         f"got {len(side)}")
    controls, rows = [], []
    for description, labels, initial, kind in axes:
        if not 0 <= initial < len(labels):
            raise ValueError(f"the initial index of {description!r} must lie in [0, {len(labels)}), got {initial}")
        options = [(label, i) for i, label in enumerate(labels)]
        if kind == "slider":
            control = widgets.SelectionSlider(options=options, index=initial, readout=True,
                                              layout=widgets.Layout(width="300px"))
        else:
            width = max(36, 8 * max(len(label) for label in labels) + 16)
            control = widgets.ToggleButtons(options=options, index=initial, style={"button_width": f"{width}px"})
        controls.append(control)
        # The name in a label of its own: a ToggleButtons' description would sit above its buttons.
        label = widgets.HTML(f"<b>{description}</b>", layout=widgets.Layout(width="70px", min_width="70px"))
        rows.append(widgets.HBox([label, control], layout=widgets.Layout(align_items="center")))
    layout, links = widgets.Layout(), []

    def level(prefix: tuple):
        depth = len(prefix)
        if depth == len(axes):
            return widgets.Image(value=compact_png(frames[prefix], scale), format="png", layout=layout)
        children = [level(prefix + (i,)) for i in range(shape[depth])]
        return _linked_stack(children, controls[depth], links, controls[depth].index,
                             "oc-frames" if depth == 0 else None)

    pictures = [level(())]
    if side is not None:
        images = [widgets.Image(value=compact_png(image, scale), format="png", layout=layout) for image in side]
        pictures.insert(0, _linked_stack(images, controls[0], links, controls[0].index))
    box = widgets.VBox([widgets.HBox(pictures, layout=widgets.Layout(align_items="flex-start")), *rows])
    box.add_class(css_class)
    box.controls, box.links = controls, links
    return box
