"""Unit tests of objectcentric.widgets (no browser; see test_browser.py for the rendered page)."""

import io

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget_link import Link
from PIL import Image as PILImage

from objectcentric.widgets import frame_slider, latent_traversal, to_png


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def test_to_png_gray_and_rgb_sizes_and_values():
    gray = np.zeros((5, 7))
    gray[0, 0] = 1.0
    data = to_png(gray, scale=3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    arr = png_array(data)
    assert arr.shape == (15, 21)
    assert (arr[:3, :3] == 255).all() and arr[3:, :].max() == 0  # nearest neighbour, no blur
    assert png_array(to_png(torch.rand(4, 6, 3), scale=2)).shape == (8, 12, 3)
    assert png_array(to_png(torch.rand(1, 4, 6), scale=1)).shape == (4, 6)  # (1, H, W) channel


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 4), 1.5), r"\[0, 1\]"),
    (np.full((4, 4), -0.2), r"\[0, 1\]"),
    (np.full((4, 4), np.nan), r"\[0, 1\]"),
    (np.zeros((2, 4, 4)), "shape"),
    (np.zeros((0, 4)), "must not be empty"),
])
def test_to_png_rejects_bad_images(bad, message):
    with pytest.raises(ValueError, match=message):
        to_png(bad)


def frames_of(n, size=4):
    return [np.full((size, size), k / max(n - 1, 1)) for k in range(n)]


def test_frame_slider_links_slider_index_to_stack_in_browser():
    values = [-1.0, 0.0, 1.0, 2.0]
    fs = frame_slider(frames_of(4), values, description="z", initial=0.9)
    assert isinstance(fs.slider, widgets.SelectionSlider)
    assert isinstance(fs.stack, widgets.Stack)
    assert len(fs.stack.children) == 4
    assert all(isinstance(c, widgets.Image) for c in fs.stack.children)
    assert isinstance(fs.link, Link)  # jslink: a front-end link, works without kernel
    assert fs.link.source == (fs.slider, "index")
    assert fs.link.target == (fs.stack, "selected_index")
    assert fs.slider.index == fs.stack.selected_index == 2  # nearest value to initial
    assert fs.slider.value == 1.0
    assert [label for label, _ in fs.slider.options] == ["-1.0", "0.0", "1.0", "2.0"]
    assert "oc-frame-slider" in fs._dom_classes


def test_frame_slider_rejects_length_mismatch_and_bad_frames():
    with pytest.raises(ValueError, match="one frame per value: got 3 frames and 4 values"):
        frame_slider(frames_of(3), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        frame_slider([np.full((3, 3), 2.0)], [0.0])
    with pytest.raises(ValueError, match="at least one frame"):
        frame_slider([], [])


class FakeDecoder:
    """Writes each code into its image: pixel (0, j) = (z[j] + 4) / 8, so values stay in [0, 1]."""

    def __init__(self, size=12):
        self.size, self.calls = size, []

    def __call__(self, z):
        assert z.dtype == torch.float32 and z.ndim == 2
        self.calls.append(z.clone())
        images = torch.zeros(z.shape[0], self.size, self.size)
        images[:, 0, : z.shape[1]] = (z + 4) / 8
        return images


def test_latent_traversal_one_batched_decode_with_the_right_codes():
    decode, base = FakeDecoder(), torch.tensor([0.5, -1.0, 0.0, 2.0])
    values = np.array([-2.0, 0.0, 2.0])
    tr = latent_traversal(decode, base, latent_order=[3, 0, 2], values=values, live=True)
    assert len(decode.calls) == 1  # every frame from one batched call
    z = decode.calls[0]
    assert z.shape == (3 * 3 + 1, 4)
    for r, i in enumerate([3, 0, 2]):
        block = z[r * 3:(r + 1) * 3]
        assert torch.equal(block[:, i], torch.tensor(values, dtype=torch.float32))
        others = [j for j in range(4) if j != i]
        assert torch.equal(block[:, others], base[others].expand(3, -1))
    # rows come in latent_order and show the decoded frames in value order
    assert tr.latents == [3, 0, 2]
    for r, (i, fs) in enumerate(zip(tr.latents, tr.rows)):
        shown = [png_array(img.value)[0, 3 * i] / 255 * 8 - 4 for img in fs.stack.children]
        np.testing.assert_allclose(shown, values, atol=0.05)
    # each slider starts at the value nearest the base code
    assert [fs.slider.value for fs in tr.rows] == [2.0, 0.0, 0.0]
    assert "oc-traversal" in tr._dom_classes


def test_latent_traversal_labels_max_latents_and_static_mode():
    decode = FakeDecoder()
    labels = {7: "z[7]  KL 3.21"}
    tr = latent_traversal(decode, torch.zeros(10), latent_order=[7, 1, 2, 3, 4],
                          max_latents=2, labels=labels, live=False)
    assert tr.latents == [7, 1] and len(tr.rows) == 2
    row_labels = [c.children[0].value for c in tr.children]
    assert row_labels == ["z[7]  KL 3.21", "z[1]"]
    assert tr.combined is None and len(decode.calls) == 1
    assert len(tr.rows[0].stack.children) == 13  # default values: linspace(-3, 3, 13)
    with pytest.raises(ValueError, match="one entry per latent"):
        latent_traversal(decode, torch.zeros(10), [0], labels=["a", "b"])


def test_latent_traversal_combined_image_follows_all_sliders_in_a_kernel():
    decode = FakeDecoder()
    tr = latent_traversal(decode, np.zeros(3), latent_order=[1, 2], values=[-1.0, 0.0, 1.0])
    before = tr.combined.value
    tr.rows[0].slider.index = 2  # z[1] = 1
    tr.rows[1].slider.index = 0  # z[2] = -1
    assert len(decode.calls) == 3 and tr.combined.value != before
    torch.testing.assert_close(decode.calls[-1], torch.tensor([[0.0, 1.0, -1.0]]))


def test_latent_traversal_rejects_bad_input():
    with pytest.raises(ValueError, match="latent_order entries must lie in"):
        latent_traversal(FakeDecoder(), torch.zeros(3), [5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latent_traversal(lambda z: torch.full((z.shape[0], 4, 4), 3.0), torch.zeros(3), [0])
    with pytest.raises(ValueError, match="returned 1 images"):
        latent_traversal(lambda z: torch.zeros(1, 4, 4), torch.zeros(3), [0])


def test_frame_table_links_both_sliders_to_the_frames():
    from objectcentric.widgets import frame_table

    frames = [[np.full((4, 4), (r * 3 + c) / 6.0) for c in range(3)] for r in range(2)]
    box = frame_table(frames, ["a", "b"], [1, 2, 3], "image", "step")
    rows, columns = box.sliders
    outer = box.children[2]
    assert len(outer.children) == 2 and all(len(s.children) == 3 for s in outer.children)
    assert len(box.links) == 3 and "oc-explorer" in box._dom_classes
    # jslink copies the index in the browser; in the kernel the Stacks stay where they were built.
    assert outer.selected_index == 0 and rows.index == 0 and columns.index == 0
    with pytest.raises(ValueError, match="2 rows of 3 frames"):
        frame_table(frames[:1], ["a", "b"], [1, 2, 3])


def test_to_png_takes_any_float_dtype_and_tolerates_sigmoid_round_off():
    image = np.linspace(0, 1, 12).reshape(3, 4)
    expected = png_array(to_png(image, scale=1))
    assert np.array_equal(png_array(to_png(image.astype(np.float32), scale=1)), expected)
    assert np.array_equal(png_array(to_png(torch.tensor(image, dtype=torch.float16), scale=1)), expected)
    assert png_array(to_png(np.full((2, 2), 1 + 1e-6), scale=1)).min() == 255  # clipped, not refused


def test_linked_stack_shows_the_frame_its_control_selects_in_the_browser():
    from objectcentric.widgets import _linked_stack

    control = widgets.ToggleButtons(options=["a", "b", "c"])
    children = [widgets.HTML(str(k)) for k in range(3)]
    links = [None]
    stack = _linked_stack(children, control, links, selected_index=1, css_class="oc-frames")
    assert isinstance(stack, widgets.Stack) and list(stack.children) == children
    assert stack.selected_index == 1 and "oc-frames" in stack._dom_classes
    assert len(links) == 2 and isinstance(links[1], Link)
    assert links[1].source == (control, "index") and links[1].target == (stack, "selected_index")
