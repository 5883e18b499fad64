"""MIG and the β-VAE metric (Chapter 2) on constructed codes whose answers are known."""

import math

import numpy as np
import pytest
import torch

from objectcentric.data.shapes import FACTOR_SIZES, render_indices, sample_factor_indices
from objectcentric.disentanglement import (
    betavae_metric,
    discretize,
    mutual_information_gap,
    normalized_mutual_information,
    sample_fixed_factor_pairs,
)

N_FACTORS, N_VALUES = 4, 10
# Every code dimension gets ±1/2 of every factor: the most even mixing there is.
HADAMARD = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64) / 2


def random_rotation(seed: int, size: int = N_FACTORS) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * r.diagonal().sign()  # the sign fix makes Q uniform over rotations (Haar)


def copying_code(indices: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each factor, standardized, in its own latent, plus a little noise."""
    noise = torch.randn(indices.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (indices.double() - (N_VALUES - 1) / 2) / math.sqrt((N_VALUES**2 - 1) / 12) + 0.05 * noise


@pytest.fixture(scope="module")
def factors() -> torch.Tensor:
    return torch.randint(N_VALUES, (5000, N_FACTORS), generator=torch.Generator().manual_seed(0))


# --- MIG --------------------------------------------------------------------------
def test_mig_is_near_one_for_a_code_that_copies_the_factors(factors):
    assert mutual_information_gap(copying_code(factors), factors) > 0.97
    # The order of the latents does not matter, nor their scale or sign.
    shuffled = copying_code(factors)[:, [2, 0, 3, 1]] * torch.tensor([3.0, -1.0, 0.1, 7.0], dtype=torch.float64)
    expected = mutual_information_gap(copying_code(factors), factors)
    assert mutual_information_gap(shuffled, factors) == pytest.approx(expected)


def test_mig_is_near_zero_for_mixed_codes(factors):
    code = copying_code(factors)
    assert mutual_information_gap(code @ HADAMARD.T, factors) < 0.02
    # A random rotation mixes less evenly, and now and then one latent leans on
    # a factor: over 10 rotations the gap measured 0.07 to 0.39, mean 0.15.
    gaps = [mutual_information_gap(code @ random_rotation(seed).T, factors) for seed in range(10)]
    assert max(gaps) < 0.5 and np.mean(gaps) < 0.2


def test_mig_is_zero_for_a_code_that_ignores_the_factors(factors):
    noise = torch.randn(len(factors), 6, generator=torch.Generator().manual_seed(1))
    assert mutual_information_gap(noise, factors) < 0.01


def test_normalized_mutual_information_is_one_for_a_copy_and_capped_by_the_bins():
    indices = sample_factor_indices(20000, torch.Generator().manual_seed(0))
    nmi = normalized_mutual_information(indices.double(), indices, n_bins=20)
    diagonal = np.diag(nmi)
    # shape (3 values) and scale (6) fit in 20 bins; rotation (40) and x, y (32) cannot:
    # 40 rotations fall 2 to a bin, so log 20 / log 40; 32 positions fall 1 or 2 to a bin,
    # a little below log 20 / log 32.
    assert diagonal[:2] == pytest.approx(1.0)
    assert diagonal[2] == pytest.approx(math.log(20) / math.log(40), abs=0.01)
    assert (diagonal[3:] < math.log(20) / math.log(32)).all() and (diagonal[3:] > 0.84).all()
    assert (nmi[~np.eye(5, dtype=bool)] < 0.01).all()


def test_discretize_uses_equal_width_bins_per_column():
    codes = np.array([[0.0, 5.0], [0.5, 5.0], [1.0, 5.0]])
    assert discretize(codes, n_bins=4).tolist() == [[0, 0], [2, 0], [3, 0]]


@pytest.mark.parametrize(
    "codes, factors, kwargs, message",
    [
        (np.zeros((10, 2)), np.zeros((9, 2), dtype=int), {}, "one row per example"),
        (np.zeros(10), np.zeros((10, 2), dtype=int), {}, r"shaped \(N, columns\)"),
        (np.zeros((10, 2)), np.full((10, 2), 0.5), {}, "discrete"),
        (np.zeros((10, 2)), np.zeros((10, 2), dtype=int), {}, "single value"),
        (np.zeros((10, 1)), np.arange(20).reshape(10, 2), {}, "at least 2 columns"),
        (np.full((10, 2), np.nan), np.arange(20).reshape(10, 2), {}, "NaN"),
        (np.zeros((10, 2)), np.arange(20).reshape(10, 2), {"n_bins": 1}, "n_bins must be at least 2"),
        ([[0.0, 1.0]], np.arange(2).reshape(1, 2), {}, "torch.Tensor or numpy array"),
    ],
)
def test_mig_rejects_bad_input_saying_what_was_expected(codes, factors, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mutual_information_gap(codes, factors, **kwargs)


# --- the β-VAE metric -------------------------------------------------------------
def test_fixed_factor_pairs_share_exactly_the_chosen_factor():
    first, second, fixed = sample_fixed_factor_pairs(FACTOR_SIZES, 200, 32, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (200, 32, 5) and fixed.shape == (200,)
    same = first == second
    assert same[torch.arange(200), :, fixed].all()
    assert (first < torch.tensor(FACTOR_SIZES)).all() and (first >= 0).all()
    assert torch.bincount(fixed, minlength=5).min() > 20  # every factor gets chosen


def metric(encode, **kwargs):
    return betavae_metric(encode, (N_VALUES,) * N_FACTORS, **{"n_train": 500, "n_eval": 500, **kwargs})


def test_betavae_metric_is_one_for_a_code_that_copies_the_factors():
    result = metric(copying_code)
    assert result["accuracy"] == 1.0 and result["chance"] == 1 / N_FACTORS


def test_betavae_metric_is_at_chance_for_codes_that_carry_no_signal_of_the_fixed_factor():
    # Chance is 1 / 4: the fixed factor is drawn uniformly from 4.
    for encode in (
        lambda indices: copying_code(indices) @ HADAMARD.T,  # evenly mixed: every latent moves alike
        lambda indices: torch.randn(len(indices), 6, dtype=torch.float64),  # blind to the factors
    ):
        assert metric(encode)["accuracy"] == pytest.approx(0.25, abs=0.08)


def test_betavae_metric_is_fooled_by_a_rotation_where_mig_is_not(factors):
    # Known weakness, shown in the chapter: under a random rotation each latent
    # still moves a little less when a factor it leans on is fixed, and a linear
    # classifier reads that off. MIG of the same code is low.
    rotation = random_rotation(0)
    assert metric(lambda indices: copying_code(indices) @ rotation.T)["accuracy"] > 0.8
    assert mutual_information_gap(copying_code(factors) @ rotation.T, factors) < 0.3


def test_betavae_metric_through_rendered_shapes():
    # A hand-made encoder that reports only the centre of mass of each image
    # knows x and y, and nothing of shape, scale or rotation: it names x or y
    # when they were fixed (2 of 5 points) and guesses among the other three,
    # so it should score 2/5 + 3/5 * 1/3 = 0.6, against a chance of 0.2.
    def centre_of_mass(images):
        weights = images[:, 0].double()
        centres = torch.arange(images.shape[-1], dtype=torch.float64) + 0.5
        total = weights.sum((1, 2))
        return torch.stack([(weights.sum(1) * centres).sum(1) / total, (weights.sum(2) * centres).sum(1) / total], 1)

    result = betavae_metric(centre_of_mass, FACTOR_SIZES, render=render_indices, n_train=200, n_eval=200, batch_size=16)
    assert result["chance"] == 0.2
    assert result["accuracy"] == pytest.approx(0.6, abs=0.1)


def test_betavae_metric_is_reproducible():
    assert metric(copying_code, seed=3) == metric(copying_code, seed=3)
    noise = lambda indices: torch.from_numpy(np.random.default_rng(0).normal(size=(len(indices), 3)))  # noqa: E731
    assert metric(noise, seed=3) == metric(noise, seed=3)


@pytest.mark.parametrize(
    "encode, kwargs, message",
    [
        (lambda indices: indices[:, 0].double(), {}, r"codes shaped \(\d+, d\)"),
        (lambda indices: indices[:-1].double(), {}, r"codes shaped \(\d+, d\)"),
        (lambda indices: torch.full(indices.shape, float("nan")), {}, "NaN"),
        (copying_code, {"n_train": 1}, "n_train must be at least 2"),
        (copying_code, {"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_betavae_metric_rejects_bad_input_saying_what_was_expected(encode, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metric(encode, **kwargs)
    with pytest.raises(ValueError, match="at least 2 factors"):
        betavae_metric(copying_code, (10,))
