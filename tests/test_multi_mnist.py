"""Multi-MNIST (Chapter 6, AIR): counts, positions, boxes and classes, with synthetic digits.

No real MNIST is needed: each synthetic "digit" of class c is a 20 x 16 block
(taller than wide, so a swap of x and y shows) of constant intensity
(c + 1) / 10 inside a 28 x 28 frame, so a digit's class can be read off the
canvas at its centre.
"""

import math
import time

import pytest
import torch
from torch.utils.data import DataLoader

import objectcentric.data.multi_mnist as mm
from objectcentric.data.multi_mnist import (
    MultiMNIST,
    derived_seed,
    make_multi_mnist,
    multi_mnist_splits,
    place_digits,
    resize_digits,
)
from objectcentric.spatial import paint, where_to_theta

CANVAS, SIZE = 50, 24
ROWS, COLS = slice(4, 24), slice(6, 22)  # the ink block of a synthetic digit


def synthetic_digits(classes=range(10), copies=3):
    """(M, 1, 28, 28) digits whose ink intensity encodes their class, and their labels."""
    labels = torch.tensor([c for c in classes for _ in range(copies)], dtype=torch.int64)
    digits = torch.zeros(len(labels), 1, 28, 28)
    digits[:, 0, ROWS, COLS] = ((labels + 1) / 10.0)[:, None, None]
    return digits, labels


DIGITS, LABELS = synthetic_digits()


@pytest.fixture(scope="module")
def data() -> MultiMNIST:
    return make_multi_mnist(DIGITS, LABELS, n_images=3000, seed=0)


def centres(data: MultiMNIST) -> torch.Tensor:
    """(N, K, 2) box centres (x, y) in pixel-edge coordinates, NaN in empty slots."""
    return (data.boxes[..., :2] + data.boxes[..., 2:]) / 2


# --- shapes, padding, range ------------------------------------------------------------
def test_shapes_dtypes_and_padding(data):
    n, k = 3000, 2
    assert data.images.shape == (n, 1, CANVAS, CANVAS) and data.images.dtype == torch.float32
    assert data.counts.shape == (n,) and data.counts.dtype == torch.int64
    assert data.boxes.shape == (n, k, 4) and data.z_where.shape == (n, k, 3)
    assert data.classes.shape == (n, k) and data.digit_indices.shape == (n, k)
    assert len(data) == n and data.max_digits == k
    present = torch.arange(k) < data.counts[:, None]
    assert torch.equal(data.present, present)
    assert torch.isnan(data.boxes[~present]).all() and torch.isfinite(data.boxes[present]).all()
    assert torch.isnan(data.z_where[~present]).all() and torch.isfinite(data.z_where[present]).all()
    assert (data.classes[~present] == -1).all() and (data.classes[present] >= 0).all()
    assert (data.digit_indices[~present] == -1).all()


@pytest.mark.parametrize("combine", ["max", "sum"])
def test_images_in_unit_interval_and_empty_canvases_blank(combine):
    data = make_multi_mnist(DIGITS, LABELS, 500, seed=1, combine=combine, min_center_distance=0.0)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert (data.images[data.counts == 0] == 0).all()
    assert (data.images[data.counts > 0].flatten(1).amax(1) > 0).all()


def test_boxes_are_digit_sized_squares_inside_the_canvas(data):
    boxes = data.boxes[data.present]
    assert torch.equal(boxes[:, 2] - boxes[:, 0], torch.full_like(boxes[:, 0], SIZE))
    assert torch.equal(boxes[:, 3] - boxes[:, 1], torch.full_like(boxes[:, 0], SIZE))
    assert boxes.min() >= 0 and boxes.max() <= CANVAS
    assert torch.equal(boxes, boxes.round())  # integer offsets: no second resampling


# --- counts and seeds --------------------------------------------------------------------
def test_counts_equally_likely(data):
    observed = torch.bincount(data.counts, minlength=3).double()
    expected = len(data) / 3
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 13.8, f"chi-square {chi2:.2f} with 2 degrees of freedom (p < 0.001): {observed}"


def test_custom_count_probabilities():
    data = make_multi_mnist(DIGITS, LABELS, 2000, seed=2, max_digits=3, counts=(0.5, 0.0, 0.0, 0.5))
    counts = torch.bincount(data.counts, minlength=4)
    assert counts[1] == 0 and counts[2] == 0 and counts.sum() == 2000
    assert abs(counts[0].item() / 2000 - 0.5) < 0.05


def test_same_seed_same_data_other_seed_other_data(data):
    again = make_multi_mnist(DIGITS, LABELS, n_images=3000, seed=0)
    for name in ("images", "counts", "boxes", "classes", "z_where", "digit_indices"):
        torch.testing.assert_close(getattr(again, name), getattr(data, name), rtol=0, atol=0,
                                   equal_nan=True)
    other = make_multi_mnist(DIGITS, LABELS, n_images=3000, seed=1)
    assert not torch.equal(other.images, data.images)
    assert not torch.equal(other.counts, data.counts)


def test_generation_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_multi_mnist(DIGITS, LABELS, 100, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_derived_seeds_differ_and_repeat():
    seeds = {derived_seed(s, stream) for s in range(3) for stream in range(3)}
    assert len(seeds) == 9 and all(0 <= s < 2**63 for s in seeds)
    assert derived_seed(0, 1) == derived_seed(0, 1)


# --- positions -----------------------------------------------------------------------------
def test_centres_at_least_the_minimum_distance_apart(data):
    two = data.counts == 2
    c = centres(data)[two]
    distance = (c[:, 0] - c[:, 1]).norm(dim=-1)
    assert distance.min() >= data.min_center_distance == 0.75 * SIZE
    assert distance.min() < data.min_center_distance + 1  # the bound is used, not overshot


@pytest.mark.parametrize("min_distance", [0.0, 12.0, 20.0])
def test_three_digits_keep_any_minimum_distance(min_distance):
    data = make_multi_mnist(DIGITS, LABELS, 500, seed=3, max_digits=3, counts=(0, 0, 0, 1),
                            min_center_distance=min_distance)
    c = centres(data)
    distance = torch.cdist(c, c)[:, [0, 0, 1], [1, 2, 2]]
    assert distance.min() >= min_distance


def test_x_and_y_independent_and_spread_over_the_canvas():
    data = make_multi_mnist(DIGITS, LABELS, 6000, seed=4)
    c = centres(data)[data.present]  # (n, 2)
    x, y = c[:, 0].double(), c[:, 1].double()
    corr = torch.corrcoef(torch.stack([x, y]))[0, 1].item()
    assert abs(corr) < 0.05, f"x and y correlated: r = {corr:.3f}"
    assert (x == y).double().mean() < 0.1  # the seed-000 bug puts every digit on the diagonal
    low, high = SIZE / 2, CANVAS - SIZE / 2
    for v in (x, y):
        assert v.min() == low and v.max() == high  # every position is reachable
        assert abs(v.mean().item() - CANVAS / 2) < 0.5
    assert abs(x.std().item() / y.std().item() - 1) < 0.05
    # The single digits are uniform over all 27 x 27 offsets; their x and y are independent.
    single = data.boxes[data.counts == 1][:, 0, :2].long()
    joint = torch.zeros(CANVAS - SIZE + 1, CANVAS - SIZE + 1)
    joint.index_put_((single[:, 1], single[:, 0]), torch.ones(len(single)), accumulate=True)
    px, py = joint.sum(0) / len(single), joint.sum(1) / len(single)
    assert px.min() > 0 and py.min() > 0
    assert (px - 1 / 27).abs().max() < 0.02 and (py - 1 / 27).abs().max() < 0.02


# --- boxes, z_where and classes agree with the pixels ---------------------------------------
def test_centre_of_mass_of_a_single_digit_is_its_box_centre(data):
    one = data.counts == 1
    images, box = data.images[one, 0], data.boxes[one, 0]
    grid = torch.arange(CANVAS, dtype=torch.float32) + 0.5  # pixel centres, pixel-edge coordinates
    mass = images.sum((1, 2))
    com_x = (images.sum(1) * grid).sum(1) / mass
    com_y = (images.sum(2) * grid).sum(1) / mass
    assert ((com_x > box[:, 0]) & (com_x < box[:, 2]) & (com_y > box[:, 1]) & (com_y < box[:, 3])).all()
    # The synthetic ink is centred in its frame, so its centre of mass is the box centre.
    torch.testing.assert_close(com_x, (box[:, 0] + box[:, 2]) / 2, atol=1e-3, rtol=0)
    torch.testing.assert_close(com_y, (box[:, 1] + box[:, 3]) / 2, atol=1e-3, rtol=0)


def test_every_digits_mass_lies_inside_its_box(data):
    """Ink outside all boxes of a canvas would mean a misplaced box."""
    rows = torch.arange(CANVAS, dtype=torch.float32) + 0.5
    inside = torch.zeros(len(data), CANVAS, CANVAS, dtype=torch.bool)
    for slot in range(data.max_digits):
        b = data.boxes[:, slot]  # NaN comparisons are False: empty slots cover nothing
        in_x = (rows[None] > b[:, 0:1]) & (rows[None] < b[:, 2:3])
        in_y = (rows[None] > b[:, 1:2]) & (rows[None] < b[:, 3:4])
        inside |= in_y[:, :, None] & in_x[:, None, :]
    assert (data.images[:, 0][~inside] == 0).all()


def test_painting_the_digits_at_z_where_rebuilds_the_image(data):
    """AIR's renderer, fed the true where-codes, reproduces every canvas."""
    present = data.present
    patches = resize_digits(DIGITS[data.digit_indices[present]], SIZE)
    painted = paint(patches, where_to_theta(data.z_where[present]), CANVAS)  # (P, 1, 50, 50)
    per_slot = torch.zeros(len(data), data.max_digits, CANVAS, CANVAS)
    per_slot[present] = painted[:, 0]
    canvases = per_slot.amax(1)  # a max over slots, like combine="max"
    torch.testing.assert_close(canvases, data.images[:, 0], atol=1e-5, rtol=0)


def test_z_where_matches_the_boxes(data):
    z, b = data.z_where[data.present], data.boxes[data.present]
    assert torch.allclose(z[:, 0], torch.tensor(SIZE / CANVAS))
    torch.testing.assert_close(z[:, 1], (b[:, 0] + b[:, 2]) / CANVAS - 1)
    torch.testing.assert_close(z[:, 2], (b[:, 1] + b[:, 3]) / CANVAS - 1)


def test_classes_recorded_correctly(data):
    """The intensity at each box centre is the class's; the index points at a digit of that class."""
    present = data.present
    assert torch.equal(data.classes[present], LABELS[data.digit_indices[present]])
    image_of = torch.arange(len(data))[:, None].expand_as(present)[present]
    corner = data.boxes[present][:, :2].long()
    value = data.images[image_of, 0, corner[:, 1] + SIZE // 2, corner[:, 0] + SIZE // 2]
    torch.testing.assert_close(value, (data.classes[present] + 1) / 10.0)
    assert set(data.classes[present].tolist()) == set(range(10))


# --- placing and combining -----------------------------------------------------------------
def test_place_digits_max_and_clamped_sum():
    patches = torch.full((1, 2, 4, 4), 0.6)
    offsets = torch.tensor([[[0, 0], [2, 1]]])  # overlap: columns 2-3, rows 1-3
    top = place_digits(patches, offsets, 8, "max")[0, 0]
    added = place_digits(patches, offsets, 8, "sum")[0, 0]
    overlap = torch.zeros(8, 8, dtype=torch.bool)
    overlap[1:4, 2:4] = True
    assert torch.allclose(top[overlap], torch.tensor(0.6))
    assert torch.allclose(added[overlap], torch.tensor(1.0))  # 1.2 clamped
    assert torch.equal(top[~overlap], added[~overlap])
    assert top.sum() == pytest.approx(0.6 * (16 + 16 - 6))
    with pytest.raises(ValueError, match="combine"):
        place_digits(patches, offsets, 8, "mean")


def test_combine_modes_differ_only_where_ink_meets():
    kwargs = dict(n_images=300, seed=6, min_center_distance=0.0)
    top = make_multi_mnist(DIGITS, LABELS, combine="max", **kwargs)
    added = make_multi_mnist(DIGITS, LABELS, combine="sum", **kwargs)
    assert torch.equal(top.boxes.nan_to_num(), added.boxes.nan_to_num())
    assert (added.images >= top.images).all()
    assert torch.equal(added.images[added.counts < 2], top.images[top.counts < 2])


# --- the 3-digit set, speed, datasets --------------------------------------------------------
def test_three_digit_set_has_exactly_three():
    data = make_multi_mnist(DIGITS, LABELS, 1000, seed=7, max_digits=3, counts=(0, 0, 0, 1))
    assert (data.counts == 3).all() and data.present.all()
    assert (data.classes >= 0).all() and torch.isfinite(data.boxes).all()


def test_ten_thousand_images_are_fast():
    digits, labels = synthetic_digits(copies=100)
    start = time.perf_counter()
    data = make_multi_mnist(digits, labels, 10_000, seed=8)
    elapsed = time.perf_counter() - start
    assert len(data) == 10_000
    assert elapsed < 2.0, f"10,000 canvases took {elapsed:.2f} s"


def test_tensor_dataset_and_loader(data):
    dataset = data.tensor_dataset()
    assert len(dataset) == len(data)
    image, count, boxes, classes, z_where = dataset[0]
    assert image.shape == (1, CANVAS, CANVAS) and count.shape == () and boxes.shape == (2, 4)
    batch = next(iter(DataLoader(dataset, batch_size=16)))
    assert [t.shape[0] for t in batch] == [16] * 5
    assert torch.equal(batch[0], data.images[:16])


def test_empty_data_set():
    data = make_multi_mnist(DIGITS, LABELS, 0, seed=0)
    assert data.images.shape == (0, 1, CANVAS, CANVAS) and data.boxes.shape == (0, 2, 4)


def test_other_canvas_and_digit_sizes():
    data = make_multi_mnist(DIGITS, LABELS, 200, seed=9, canvas=64, digit_size=20, max_digits=3)
    assert data.images.shape == (200, 1, 64, 64)
    b = data.boxes[data.present]
    assert (b[:, 2] - b[:, 0] == 20).all() and b.max() <= 64
    assert torch.allclose(data.z_where[data.present][:, 0], torch.tensor(20 / 64))


# --- the standard splits, without real MNIST -------------------------------------------------
@pytest.fixture
def fake_mnist(monkeypatch):
    """load_mnist with classes 0-4 in "train" and 5-9 in "test", so each canvas shows its source."""
    calls = []

    def load(split="train", root=None, download=True):
        calls.append(split)
        return synthetic_digits(range(5) if split == "train" else range(5, 10))

    monkeypatch.setattr(mm, "load_mnist", load)
    return calls


def test_splits_draw_train_and_test_digits_from_their_own_split(fake_mnist):
    splits = multi_mnist_splits(seed=0, n_train=600, n_test=300, n_three=200)
    assert sorted(fake_mnist) == ["test", "train"]
    train, test, three = splits["train"], splits["test"], splits["test3"]
    assert set(train.classes[train.present].tolist()) <= set(range(5))
    assert set(test.classes[test.present].tolist()) <= set(range(5, 10))
    assert set(three.classes.flatten().tolist()) <= set(range(5, 10))
    assert (len(train), len(test), len(three)) == (600, 300, 200)
    assert (three.counts == 3).all() and three.max_digits == 3 and train.max_digits == 2
    assert len({train.seed, test.seed, three.seed}) == 3
    again = multi_mnist_splits(seed=0, n_train=600, n_test=300, n_three=200)
    assert all(torch.equal(again[k].images, splits[k].images) for k in splits)
    other = multi_mnist_splits(seed=1, n_train=600, n_test=300, n_three=200)
    assert not torch.equal(other["train"].images, train.images)


def test_splits_pass_options_and_refuse_the_ones_they_set(fake_mnist):
    splits = multi_mnist_splits(seed=0, n_train=50, n_test=50, n_three=50, min_center_distance=20.0)
    assert all(s.min_center_distance == 20.0 for s in splits.values())
    with pytest.raises(ValueError, match="max_digits"):
        multi_mnist_splits(seed=0, n_train=5, n_test=5, n_three=5, max_digits=3)


# --- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("change, match", [
    (dict(digits=DIGITS[:, 0]), r"\(batch, 1, height, width\).*load_mnist"),
    (dict(digits=(DIGITS * 255).to(torch.uint8)), "floating point"),
    (dict(digits=DIGITS * 2), r"\[0, 1\]"),
    (dict(digits=DIGITS[:0], labels=LABELS[:0]), "empty"),
    (dict(digits=DIGITS.clone().fill_(float("nan"))), "NaN"),
    (dict(labels=LABELS[:-1]), "one per digit"),
    (dict(labels=LABELS.float()), "integers"),
    (dict(labels=LABELS - 1), ">= 0"),
    (dict(n_images=-1), "n_images"),
    (dict(n_images=2.5), "n_images"),
    (dict(seed=True), "seed"),
    (dict(max_digits=0), "max_digits"),
    (dict(counts=(0.5, 0.5)), "max_digits \\+ 1"),
    (dict(counts=(0.5, 0.5, 0.5)), "summing to 1"),
    (dict(counts=(1.5, -0.5, 0.0)), "nonnegative"),
    (dict(digit_size=60), "must not exceed canvas"),
    (dict(min_center_distance=-1.0), "min_center_distance"),
    (dict(min_center_distance=float("inf")), "min_center_distance"),
    (dict(min_center_distance=40.0), "no room for two digits"),
    (dict(combine="mean"), "combine"),
])
def test_bad_input_raises(change, match):
    kwargs = dict(digits=DIGITS, labels=LABELS, n_images=10, seed=0) | change
    with pytest.raises(ValueError, match=match):
        make_multi_mnist(**kwargs)


def test_impossible_three_digit_placement_raises_instead_of_looping():
    # 7 x 7 offsets: two digits can be 8.5 px apart, three cannot all be 8 px apart.
    with pytest.raises(ValueError, match="could not place 3 digits"):
        make_multi_mnist(DIGITS, LABELS, 10, seed=0, canvas=30, max_digits=3,
                         counts=(0, 0, 0, 1), min_center_distance=8.0)
    # Zero-probability counts need no room.
    data = make_multi_mnist(DIGITS, LABELS, 10, seed=0, canvas=24, max_digits=2, counts=(0, 1, 0))
    assert (data.counts == 1).all()


def test_the_correlation_check_catches_the_seed_000_bug():
    """Positions taking x and y from one coordinate (seed 000's bug) fail the check above."""
    data = make_multi_mnist(DIGITS, LABELS, 500, seed=10)
    c = centres(data)[data.present]
    buggy = torch.stack([c[:, 0], c[:, 0]], 1)
    r = torch.corrcoef(buggy.T.double())[0, 1].item()
    assert math.isclose(r, 1.0, rel_tol=1e-9)
    assert abs(torch.corrcoef(c.T.double())[0, 1].item()) < 0.1


def test_float64_digits_are_accepted_as_float32():
    data = make_multi_mnist(DIGITS.double(), LABELS, 20, seed=3)
    assert data.images.dtype == torch.float32
    assert torch.equal(data.images, make_multi_mnist(DIGITS, LABELS, 20, seed=3).images)
