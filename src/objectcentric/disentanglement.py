"""Disentanglement scores from known factors (Chapter 2, β-VAE).

Two ways to ask whether each latent of a model tracks one generative factor:

- the mutual information gap, MIG (Chen et al., 2018): for each factor, how
  much more one latent knows about it than the next best latent;
- the β-VAE metric (Higgins et al., 2017): fix one factor in pairs of
  images, and see whether a linear classifier can tell from the codes alone
  which factor was fixed.

Both need the true factors, which is why the book generates its own data
(:mod:`objectcentric.data.shapes`). Neither knows about any model: MIG takes
codes, the β-VAE metric takes a function from images (or factors) to codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


# --- inputs ---------------------------------------------------------------------
def _as_2d_array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be shaped (N, columns), one row per example, got shape {x.shape}")
    return x


def _check_codes(codes) -> np.ndarray:
    codes = _as_2d_array(codes, "codes")
    if not (np.issubdtype(codes.dtype, np.number) or codes.dtype == bool):
        raise ValueError(f"codes must be numbers, got dtype {codes.dtype}")
    codes = codes.astype(np.float64)
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or infinite values")
    return codes


def _check_factors(factors) -> np.ndarray:
    """Factors as discrete labels, relabelled 0..m-1 per column."""
    factors = _as_2d_array(factors, "factors")
    if np.issubdtype(factors.dtype, np.floating):
        if not (np.isfinite(factors).all() and (factors == np.round(factors)).all()):
            raise ValueError(
                "factors must be discrete: integer indices such as those of shapes.factor_grid(), "
                "got non-integer values; bin continuous factors first (e.g. with np.digitize)"
            )
    elif not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer indices, got dtype {factors.dtype}")
    # Relabelling lets any integer values (negative, sparse) count as categories.
    return np.stack([np.unique(column, return_inverse=True)[1].ravel() for column in factors.T], axis=1)


# --- MIG --------------------------------------------------------------------------
def discretize(codes, n_bins: int = 20) -> np.ndarray:
    """Each code column cut into ``n_bins`` equal-width bins over its own range: (N, d) bin labels.

    This is the histogram estimator used by Locatello et al. (2019) to compute
    MIG from samples. A constant column falls in a single bin.
    """
    codes = _check_codes(codes)
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, high - low, 1.0)
    return np.clip(np.floor((codes - low) / width * n_bins), 0, n_bins - 1).astype(np.int64)


def _entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / labels.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats from the joint histogram of two label arrays."""
    n_b = int(b.max()) + 1
    joint = np.bincount(a * n_b + b).astype(np.float64)
    joint = np.pad(joint, (0, (int(a.max()) + 1) * n_b - joint.size)).reshape(-1, n_b) / a.size
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def normalized_mutual_information(codes, factors, n_bins: int = 20) -> np.ndarray:
    """I(code_i; factor_k) / H(factor_k) for every code and factor: a (d, k) matrix in [0, 1].

    Dividing by the factor's entropy puts factors with many values and factors
    with few on the same scale: 1 means the code determines the factor. With
    ``n_bins`` bins a code can carry at most log(n_bins) nats, so a factor with
    more values than bins cannot reach 1, even for a code that copies it
    (40 rotations in 20 bins: log 20 / log 40 ≈ 0.81; 32 positions: 0.85).
    """
    binned = discretize(codes, n_bins)
    labels = _check_factors(factors)
    if binned.shape[0] != labels.shape[0]:
        raise ValueError(
            f"codes and factors must have one row per example each, "
            f"got {binned.shape[0]} and {labels.shape[0]} rows"
        )
    if binned.shape[0] < 2:
        raise ValueError(f"need at least 2 examples to estimate mutual information, got {binned.shape[0]}")
    entropies = np.array([_entropy(column) for column in labels.T])
    constant = np.flatnonzero(entropies == 0)
    if constant.size:
        raise ValueError(
            f"factor column(s) {constant.tolist()} take a single value, so their information is 0/0; "
            "drop them or sample them too"
        )
    mi = np.array([[_mutual_information(code, factor) for factor in labels.T] for code in binned.T])
    return mi / entropies


def mutual_information_gap(codes, factors, n_bins: int = 20) -> float:
    """MIG (Chen et al., 2018) of codes (N, d) against discrete factors (N, k) (Chapter 2, β-VAE).

    For each factor, the normalized mutual information of the best code minus
    that of the second best; then the mean over factors. A code that copies
    each factor into its own latent scores near 1; one that mixes every factor
    into every latent scores near 0, since no latent stands out.

    Codes are discretized into ``n_bins`` equal-width bins per latent (the
    estimator of Locatello et al., 2019, rather than Chen et al.'s sampling of
    q(z | x)), so pass posterior means, or samples, from many images (thousands).
    """
    nmi = normalized_mutual_information(codes, factors, n_bins)
    if nmi.shape[0] < 2:
        raise ValueError(
            "MIG compares the best latent with the second best, "
            f"so codes need at least 2 columns, got {nmi.shape[0]}"
        )
    top_two = np.sort(nmi, axis=0)[-2:]
    return float((top_two[1] - top_two[0]).mean())


# --- the β-VAE metric -------------------------------------------------------------
def sample_fixed_factor_pairs(
    factor_sizes: Sequence[int], n_points: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs of factor indices that agree on one factor (Higgins et al., 2017).

    For each of ``n_points`` points a factor k is chosen uniformly, then
    ``batch_size`` pairs are drawn uniformly from the factor grid with factor k
    set equal within each pair. Returns ``first`` and ``second``, both
    (n_points, batch_size, len(factor_sizes)) int64, and ``fixed`` (n_points,).
    """
    sizes = [int(s) for s in factor_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(
            f"factor_sizes must list at least 2 factors, each with at least 1 value, got {list(factor_sizes)}"
        )
    if n_points < 1 or batch_size < 1:
        raise ValueError(f"n_points and batch_size must be at least 1, got {n_points} and {batch_size}")
    fixed = torch.randint(len(sizes), (n_points,), generator=generator)

    def draw() -> torch.Tensor:
        return torch.stack([torch.randint(s, (n_points, batch_size), generator=generator) for s in sizes], dim=-1)

    first, second = draw(), draw()
    same = torch.nn.functional.one_hot(fixed, len(sizes)).bool()[:, None, :].expand_as(second)
    second = torch.where(same, first, second)
    return first, second, fixed


def _encode_pairs(encode, render, first: torch.Tensor, second: torch.Tensor, points_per_call: int) -> torch.Tensor:
    """Mean |code(first) - code(second)| over each point's batch: (n_points, d)."""
    n_points, batch_size, _ = first.shape
    features = []
    for start in range(0, n_points, points_per_call):
        both = torch.cat([first[start : start + points_per_call], second[start : start + points_per_call]])
        flat = both.flatten(0, 1)
        inputs = flat if render is None else render(flat)
        codes = encode(inputs)
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(codes)
        if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or codes.shape[0] != flat.shape[0]:
            shape = tuple(codes.shape) if hasattr(codes, "shape") else type(codes).__name__
            raise ValueError(f"encode must return codes shaped ({flat.shape[0]}, d), one row per input, got {shape}")
        codes = codes.detach().to("cpu", torch.float64).unflatten(0, (2, -1, batch_size))
        features.append((codes[0] - codes[1]).abs().mean(1))
    features = torch.cat(features)
    if not torch.isfinite(features).all():
        raise ValueError("encode returned NaN or infinite codes")
    return features


def _fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, steps: int):
    """A multinomial logistic regression fitted by L-BFGS: deterministic, no scikit-learn needed."""
    weight = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def betavae_metric(
    encode: Callable,
    factor_sizes: Sequence[int],
    render: Callable | None = None,
    n_train: int = 1000,
    n_eval: int = 500,
    batch_size: int = 64,
    seed: int = 0,
    weight_decay: float = 1e-4,
    points_per_call: int = 16,
) -> dict[str, float]:
    """The β-VAE disentanglement metric of Higgins et al. (2017) (Chapter 2, β-VAE).

    Each point: choose a factor k, draw ``batch_size`` pairs of factor vectors
    that share factor k, encode both sides, and average |code₁ - code₂| over
    the pairs. In a disentangled code the latent of factor k barely moves, so
    a linear classifier can read k off that average. Returns the classifier's
    accuracy on ``n_eval`` held-out points (``accuracy``), on its ``n_train``
    training points, and the ``chance`` level 1 / (number of factors), the
    score of a code that knows nothing of the factors.

    ``encode`` maps a batch to codes (B, d), for instance a VAE's posterior
    mean. ``render`` maps factor indices (B, k) to that batch, e.g.
    ``shapes.render_indices``; without it ``encode`` receives the indices
    themselves, which is how the tests build codes with known answers.
    The classifier is a multinomial logistic regression on standardized
    features, fitted by L-BFGS: linear, as the metric asks, so that it cannot
    undo an entangled code by itself.

    A caution the book makes: this metric sees only how much each latent moves,
    so a rotated (entangled) code can still score well above chance; MIG is
    the stricter of the two.
    """
    if n_train < 2 or n_eval < 1:
        raise ValueError(f"n_train must be at least 2 and n_eval at least 1, got {n_train} and {n_eval}")
    if points_per_call < 1:
        raise ValueError(f"points_per_call must be at least 1, got {points_per_call}")
    generator = torch.Generator().manual_seed(int(seed))
    n_factors = len(factor_sizes)
    split = {}
    for name, n_points in (("train", n_train), ("eval", n_eval)):
        first, second, fixed = sample_fixed_factor_pairs(factor_sizes, n_points, batch_size, generator)
        split[name] = (_encode_pairs(encode, render, first, second, points_per_call), fixed)
    x_train, y_train = split["train"]
    # Standardizing with training statistics makes one weight decay suit codes of any scale.
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-12)
    weight, bias = _fit_logistic_regression((x_train - mean) / std, y_train, n_factors, weight_decay, steps=500)

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(((((x - mean) / std) @ weight + bias).argmax(1) == y).double().mean())

    return {
        "accuracy": accuracy(*split["eval"]),
        "train_accuracy": accuracy(x_train, y_train),
        "chance": 1.0 / n_factors,
    }
