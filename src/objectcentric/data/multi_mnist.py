"""Multi-MNIST: canvases with a few MNIST digits and their true boxes (Chapter 6, AIR).

Attend-Infer-Repeat (Eslami et al., 2016) is trained on 50 x 50 canvases
holding 0, 1 or 2 MNIST digits, each resized to 24 x 24 and placed so that
their centres keep apart; a model that learned to count should then also
handle canvases with 3 digits, which it never saw. This module makes those
data sets, with tensor operations over the whole batch (no Python loop per
image), and keeps the ground truth that AIR's inferences are compared with:
how many digits each canvas holds, where each one is, and which class it is.

Conventions (the same as :mod:`objectcentric.spatial`):

- **Placement.** Each digit is resized once (bilinear, antialiased, like
  ``torchvision.transforms.Resize``) to ``digit_size`` pixels and copied onto
  the canvas at an *integer* pixel offset, so nothing is resampled a second
  time. Its top-left pixel ``(x0, y0)`` is uniform over the positions that
  keep the whole digit inside the canvas (0 to ``canvas - digit_size``, both
  included; y points down, as in the pixel array).
- **Boxes** are ``(x0, y0, x1, y1)`` in pixel-edge coordinates: pixel ``i``
  spans ``[i, i + 1)``, so the digit covers columns ``x0 .. x1 - 1`` and
  ``x1 - x0 == digit_size``; its centre is ``((x0 + x1) / 2, (y0 + y1) / 2)``.
- **z_where** is AIR's where-code ``(s, x, y)`` of the same square:
  ``s = digit_size / canvas`` and ``x = 2 * centre_x / canvas - 1`` (likewise
  y), i.e. the window :func:`objectcentric.spatial.where_to_theta` builds.
  Hence ``paint(resized_digit, where_to_theta(z_where), canvas)`` draws the
  digit exactly where it is in the image (the tests check this).
- **Slots.** Canvas ``n`` holds ``counts[n]`` digits in slots
  ``0 .. counts[n] - 1``, in no particular order; the other slots are padding:
  NaN in ``boxes`` and ``z_where`` (so that using one by mistake shows up),
  -1 in ``classes`` and ``digit_indices``.
- **Centres** of the digits on one canvas are at least
  ``min_center_distance`` pixels apart (Euclidean). The default, three
  quarters of ``digit_size`` (18 pixels for 24), keeps the ink apart: MNIST
  ink fills about the central 20 of 28 pixels, i.e. about 17 of 24 after
  resizing, so two digits side by side do not touch and diagonal neighbours
  share at most a corner, where there is rarely ink. (Seed 002 asks that the
  centres differ by half a digit in x *and* in y, which forbids side-by-side
  digits; the small overlaps left are accepted, as there.) The positions are
  drawn jointly uniformly over the allowed configurations by rejection
  sampling, done for all canvases at once with many candidates per canvas.
  x and y are drawn independently of each other (the thesis's code in seed
  000 took both from one coordinate, putting every digit on the diagonal).
- **Overlaps** are combined with the pixelwise maximum by default
  (``combine="max"``): it keeps values in [0, 1] as a Bernoulli likelihood
  needs, and crossing strokes look like one pen drawn twice rather than a
  brighter blob. ``combine="sum"`` (clamped to [0, 1]) matches an additive
  renderer instead; with the default distance the two differ only on the
  rare pixels where the ink of two digits meets.

Everything is seeded with its own ``torch.Generator``, so a seed gives the
same data set on every machine and does not disturb the global random state.
:func:`multi_mnist_splits` makes the standard sets: training canvases from
MNIST's training digits, test canvases (and the 3-digit generalisation set)
from MNIST's test digits, each with its own seed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from objectcentric.checks import check_image_batch
from objectcentric.data.mnist import load_mnist

__all__ = [
    "COMBINE_MODES",
    "MultiMNIST",
    "derived_seed",
    "make_multi_mnist",
    "multi_mnist_splits",
    "place_digits",
    "resize_digits",
]

COMBINE_MODES = ("max", "sum")
SPLIT_STREAMS = {"train": 0, "test": 1, "test3": 2}
# Rejection sampling gives up on a canvas after this many candidate placements:
# enough for acceptance rates down to about 1e-3 (failure probability < 1e-8).
MAX_TRIES_PER_IMAGE = 20_000
# Candidates drawn per round, at most (each is max_digits * 2 int64 numbers).
MAX_CANDIDATES_PER_ROUND = 2_000_000


@dataclass
class MultiMNIST:
    """A Multi-MNIST data set and its ground truth (see the module docstring).

    Shapes, for ``N`` canvases of ``canvas`` pixels with ``K = max_digits`` slots:

    - ``images``: (N, 1, canvas, canvas) float32 in [0, 1];
    - ``counts``: (N,) int64, the number of digits on each canvas;
    - ``boxes``: (N, K, 4) float32 ``(x0, y0, x1, y1)`` in pixels, NaN in empty slots;
    - ``classes``: (N, K) int64 digit classes, -1 in empty slots;
    - ``z_where``: (N, K, 3) float32 AIR where-codes ``(s, x, y)``, NaN in empty slots;
    - ``digit_indices``: (N, K) int64, which of the source digits, -1 in empty slots.
    """

    images: torch.Tensor
    counts: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    z_where: torch.Tensor
    digit_indices: torch.Tensor
    seed: int
    canvas: int
    digit_size: int
    min_center_distance: float

    TENSOR_FIELDS = ("images", "counts", "boxes", "classes", "z_where")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def max_digits(self) -> int:
        return self.classes.shape[1]

    @property
    def present(self) -> torch.Tensor:
        """(N, K) bool: which slots hold a digit."""
        return self.classes >= 0

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(images, counts, boxes, classes, z_where)``, the order of :meth:`tensor_dataset`."""
        return tuple(getattr(self, name) for name in self.TENSOR_FIELDS)

    def tensor_dataset(self) -> TensorDataset:
        """A ``TensorDataset`` yielding ``(image, count, boxes, classes, z_where)`` per canvas.

        The default ``DataLoader`` collation stacks these as they are; NaN
        padding travels along untouched.
        """
        return TensorDataset(*self.tensors())


# --- input checks ----------------------------------------------------------------------
def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_digits(digits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    digits = check_image_batch(digits, (1, "height", "width"), "digits",
                               hint="e.g. load_mnist's (M, 1, 28, 28)")
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor shaped (M,), got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != digits.shape[0]:
        raise ValueError(f"labels must be shaped (M,) with M = {digits.shape[0]} (one per digit), "
                         f"got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if (labels < 0).any():
        raise ValueError("labels must be >= 0 (-1 marks empty slots in the output)")
    return digits, labels.to(torch.int64)


def _check_counts(counts, max_digits: int) -> torch.Tensor:
    if counts is None:
        return torch.full((max_digits + 1,), 1.0 / (max_digits + 1), dtype=torch.float64)
    try:
        probs = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"counts must be a sequence of probabilities, got {counts!r}") from error
    if probs.numel() != max_digits + 1:
        raise ValueError(f"counts must hold max_digits + 1 = {max_digits + 1} probabilities "
                         f"(for 0 .. {max_digits} digits), got {probs.numel()}")
    if not torch.isfinite(probs).all() or (probs < 0).any() or abs(probs.sum().item() - 1) > 1e-6:
        raise ValueError(f"counts must be nonnegative probabilities summing to 1, got {counts!r}")
    return probs


# --- sampling --------------------------------------------------------------------------
def derived_seed(seed: int, stream: int) -> int:
    """An independent seed for ``stream`` of ``seed`` (numpy's ``SeedSequence``).

    Neighbouring seeds and streams give unrelated random streams, so that,
    say, the test set of seed 0 is not the training set of seed 1.
    """
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))  # < 2**63, accepted by every torch.Generator


def _valid_placements(offsets: torch.Tensor, present: torch.Tensor, min_sq: float) -> torch.Tensor:
    """(R, T) bool: whether the present slots of each candidate keep their centres apart.

    ``offsets`` (R, T, K, 2) are top-left pixels; centres differ by the same
    amounts, so the offsets are compared directly. ``present`` is (R, K).
    """
    k = offsets.shape[2]
    if k < 2 or min_sq <= 0:
        return torch.ones(offsets.shape[:2], dtype=torch.bool)
    i, j = torch.triu_indices(k, k, offset=1)
    diff = offsets[:, :, i] - offsets[:, :, j]                  # (R, T, pairs, 2)
    far = (diff * diff).sum(-1).double() >= min_sq             # (R, T, pairs)
    both = (present[:, i] & present[:, j])[:, None]            # (R, 1, pairs)
    return (far | ~both).all(-1)


def _sample_offsets(present: torch.Tensor, n_positions: int, min_distance: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Top-left pixels (N, K, 2) as (x0, y0), uniform over the allowed configurations.

    Batched rejection sampling: each round draws ``tries`` candidate
    configurations for every canvas still without one and keeps the first
    that is allowed; ``tries`` grows with the observed rejection rate.
    """
    n, k = present.shape
    min_sq = float(min_distance) ** 2
    offsets = torch.randint(n_positions, (n, k, 2), generator=generator)
    todo = torch.nonzero(~_valid_placements(offsets[:, None], present, min_sq)[:, 0]).flatten()
    tries, spent = 1, 1
    while todo.numel():
        if spent >= MAX_TRIES_PER_IMAGE:
            raise ValueError(
                f"could not place {int(present[todo].sum(1).max())} digits with centres "
                f"{min_distance:g} pixels apart on the canvas in {spent} tries: lower "
                "min_center_distance or max_digits, or enlarge the canvas")
        tries = min(max(tries, 1), MAX_CANDIDATES_PER_ROUND // max(todo.numel() * k, 1),
                    MAX_TRIES_PER_IMAGE - spent)
        tries = max(tries, 1)
        candidates = torch.randint(n_positions, (todo.numel(), tries, k, 2), generator=generator)
        valid = _valid_placements(candidates, present[todo], min_sq)   # (R, tries)
        found = valid.any(1)
        first = valid.to(torch.int8).argmax(1)                          # first allowed candidate
        rows = torch.nonzero(found).flatten()
        offsets[todo[rows]] = candidates[rows, first[rows]]
        rate = valid.double().mean().item()
        spent += tries
        todo = todo[~found]
        # Enough candidates that most of the remaining canvases succeed next round.
        tries = math.ceil(4 / rate) if rate > 0 else tries * 8
    return offsets


def place_digits(patches: torch.Tensor, offsets: torch.Tensor, canvas: int,
                 combine: str = "max") -> torch.Tensor:
    """Copy square ``patches`` (N, K, d, d) to top-left pixels ``offsets`` (N, K, 2) of empty canvases.

    Returns (N, 1, canvas, canvas). Overlapping pixels take the maximum
    (``combine="max"``) or the sum clamped to [0, 1] (``"sum"``); empty slots
    should hold zero patches. One scatter per slot (not per image), so each
    scatter writes every pixel at most once per canvas and the result is
    deterministic.
    """
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
    n, k, d, _ = patches.shape
    rows = torch.arange(d).repeat_interleave(d)
    cols = torch.arange(d).repeat(d)
    within = rows * canvas + cols                                          # (d*d,)
    start = offsets[..., 1] * canvas + offsets[..., 0]                    # (N, K)
    index = start[..., None] + within                                     # (N, K, d*d)
    flat = patches.new_zeros(n, canvas * canvas)
    values = patches.reshape(n, k, d * d)
    for slot in range(k):
        if combine == "max":
            flat.scatter_reduce_(1, index[:, slot], values[:, slot], reduce="amax")
        else:
            flat.scatter_add_(1, index[:, slot], values[:, slot])
    if combine == "sum":
        flat.clamp_(0.0, 1.0)
    return flat.reshape(n, 1, canvas, canvas)


def resize_digits(digits: torch.Tensor, digit_size: int) -> torch.Tensor:
    """Digits (M, 1, h, w) resized to (M, 1, digit_size, digit_size), bilinear with antialiasing."""
    if tuple(digits.shape[-2:]) == (digit_size, digit_size):
        return digits.clone()
    resized = F.interpolate(digits, size=(digit_size, digit_size), mode="bilinear",
                            align_corners=False, antialias=True)
    return resized.clamp_(0.0, 1.0)


def make_multi_mnist(
    digits: torch.Tensor,
    labels: torch.Tensor,
    n_images: int,
    seed: int,
    max_digits: int = 2,
    counts=None,
    canvas: int = 50,
    digit_size: int = 24,
    min_center_distance: float | None = None,
    combine: str = "max",
) -> MultiMNIST:
    """``n_images`` canvases with 0 .. ``max_digits`` digits drawn from ``digits``.

    Args:
        digits: (M, 1, h, w) float images in [0, 1] to draw from (with
            replacement), e.g. ``load_mnist("train")[0]``.
        labels: (M,) their integer classes.
        n_images: how many canvases.
        seed: seeds a private ``torch.Generator``; the same arguments give the
            same data set.
        max_digits: the most digits on one canvas (slots per canvas).
        counts: probabilities of 0, 1, ..., ``max_digits`` digits; ``None`` is
            uniform. ``counts=(0, 0, 0, 1)`` with ``max_digits=3`` gives the
            3-digit set.
        canvas: canvas side in pixels.
        digit_size: side of the resized digits in pixels.
        min_center_distance: least distance between two digits' centres, in
            pixels; ``None`` is ``0.75 * digit_size``.
        combine: ``"max"`` or ``"sum"`` (clamped): how overlapping ink adds up.

    Returns a :class:`MultiMNIST`; see the module docstring for conventions.
    Raises ``ValueError`` for wrong input or a distance that leaves no room.
    """
    digits, labels = _check_digits(digits, labels)
    n_images = _check_int(n_images, "n_images", 0)
    seed = _check_int(seed, "seed", 0)
    max_digits = _check_int(max_digits, "max_digits", 1)
    canvas = _check_int(canvas, "canvas", 1)
    digit_size = _check_int(digit_size, "digit_size", 1)
    if digit_size > canvas:
        raise ValueError(f"digit_size ({digit_size}) must not exceed canvas ({canvas})")
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
    if min_center_distance is None:
        min_center_distance = 0.75 * digit_size
    if (isinstance(min_center_distance, bool) or not isinstance(min_center_distance, numbers.Real)
            or not math.isfinite(min_center_distance) or min_center_distance < 0):
        raise ValueError(f"min_center_distance must be a finite number >= 0 (pixels), "
                         f"got {min_center_distance!r}")
    probs = _check_counts(counts, max_digits)
    n_positions = canvas - digit_size + 1
    largest = (n_positions - 1) * math.sqrt(2)  # corner to corner: the most two digits can be apart
    if (probs[2:] > 0).any() and min_center_distance > largest:
        raise ValueError(f"min_center_distance {min_center_distance:g} leaves no room for two digits: "
                         f"on a {canvas}-pixel canvas, {digit_size}-pixel digits' centres are at most "
                         f"{largest:.3g} pixels apart")

    generator = torch.Generator().manual_seed(seed)
    k = max_digits
    n_digits = torch.multinomial(probs, n_images, replacement=True, generator=generator) \
        if n_images else torch.zeros(0, dtype=torch.int64)
    present = torch.arange(k)[None, :] < n_digits[:, None]                     # (N, K)
    chosen = torch.randint(digits.shape[0], (n_images, k), generator=generator)
    offsets = _sample_offsets(present, n_positions, min_center_distance, generator)

    patches = digits.new_zeros(n_images, k, digit_size, digit_size, dtype=torch.float32)
    if present.any():
        patches[present] = resize_digits(digits[chosen[present]].float(), digit_size)[:, 0]
    images = place_digits(patches, offsets, canvas, combine)

    corner = offsets.to(torch.float32)
    boxes = torch.cat([corner, corner + digit_size], dim=-1)                     # (N, K, 4)
    centre = corner + digit_size / 2
    z_where = torch.cat([torch.full_like(centre[..., :1], digit_size / canvas),
                         2 * centre / canvas - 1], dim=-1)                     # (N, K, 3)
    nan = torch.tensor(float("nan"))
    boxes = torch.where(present[..., None], boxes, nan)
    z_where = torch.where(present[..., None], z_where, nan)
    classes = torch.where(present, labels[chosen], -1)
    digit_indices = torch.where(present, chosen, -1)
    return MultiMNIST(images=images, counts=n_digits, boxes=boxes, classes=classes,
                      z_where=z_where, digit_indices=digit_indices, seed=seed, canvas=canvas,
                      digit_size=digit_size, min_center_distance=float(min_center_distance))


def multi_mnist_splits(
    seed: int = 0,
    n_train: int = 60_000,
    n_test: int = 10_000,
    n_three: int = 10_000,
    root=None,
    download: bool = True,
    **options,
) -> dict[str, MultiMNIST]:
    """The standard sets: ``{"train", "test", "test3"}`` as :class:`MultiMNIST`.

    - ``"train"``: ``n_train`` canvases with 0, 1 or 2 digits (equally likely)
      from MNIST's *training* digits;
    - ``"test"``: ``n_test`` such canvases from MNIST's *test* digits;
    - ``"test3"``: ``n_three`` canvases with exactly 3 test digits, which a
      model trained on ``"train"`` never saw (generalisation in counting).

    Each set has its own seed, :func:`derived_seed` of ``seed`` (streams 0, 1,
    2), recorded in its ``seed`` field. ``root`` and ``download`` go to
    :func:`~objectcentric.data.mnist.load_mnist`; other keyword arguments
    (``canvas``, ``digit_size``, ``min_center_distance``, ``combine``) to
    :func:`make_multi_mnist`. Memory: 10 kB per canvas (600 MB for 60k).
    """
    seed = _check_int(seed, "seed", 0)
    for bad in ("max_digits", "counts", "n_images", "seed"):
        if bad in options:
            raise ValueError(f"multi_mnist_splits sets {bad} itself; call make_multi_mnist to choose it")
    train_digits, train_labels = load_mnist("train", root=root, download=download)
    test_digits, test_labels = load_mnist("test", root=root, download=download)
    return {
        "train": make_multi_mnist(train_digits, train_labels, n_train,
                                  derived_seed(seed, SPLIT_STREAMS["train"]), **options),
        "test": make_multi_mnist(test_digits, test_labels, n_test,
                                 derived_seed(seed, SPLIT_STREAMS["test"]), **options),
        "test3": make_multi_mnist(test_digits, test_labels, n_three,
                                  derived_seed(seed, SPLIT_STREAMS["test3"]), max_digits=3,
                                  counts=(0.0, 0.0, 0.0, 1.0), **options),
    }
