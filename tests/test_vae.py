"""The VAE: its loss terms, its IWAE bound against an exact likelihood, and bad input."""

import math

import pytest
import torch

from objectcentric.models import VAE


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(4, 1, 5, 4), r"shaped \(batch, 1, 4, 4\)"),
        (torch.rand(1, 4, 4), r"shaped \(batch, 1, 4, 4\)"),
        ((torch.rand(4, 1, 4, 4) * 255).to(torch.uint8), "floating point"),
        (torch.rand(4, 1, 4, 4) * 255, r"values in \[0, 1\].*x / 255"),
        (torch.full((4, 1, 4, 4), float("nan")), "NaN"),
        (torch.rand(4, 1, 4, 4).numpy(), "torch.Tensor"),
    ],
)
def test_bad_input_is_rejected_with_what_was_expected(tiny_vae, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae.loss(bad)
    with pytest.raises(ValueError, match=message):
        tiny_vae.encode(bad)


def test_flat_batches_are_accepted(tiny_vae, tiny_images):
    torch.manual_seed(0)
    flat = tiny_vae.loss(tiny_images.flatten(1))
    torch.manual_seed(0)
    assert torch.allclose(flat["loss"], tiny_vae.loss(tiny_images)["loss"])


def test_wrong_latent_size_is_rejected(tiny_vae):
    with pytest.raises(ValueError, match="end in 3 values"):
        tiny_vae.decode(torch.zeros(2, 4))


def test_loss_is_reconstruction_plus_beta_times_kl(tiny_vae, tiny_images):
    for beta in (1.0, 4.0):
        torch.manual_seed(0)
        terms = tiny_vae.loss(tiny_images, beta=beta)
        assert torch.allclose(terms["loss"], terms["reconstruction"] + beta * terms["kl"])
        assert terms["kl"] > 0 and terms["reconstruction"] > 0


def exact_log_likelihood(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log ∫ N(z; 0, 1) p(x | z) dz on a dense grid (one latent only)."""
    z = torch.linspace(-10, 10, 40001).unsqueeze(-1).unsqueeze(-1)  # (n, 1, 1)
    log_joint = model.log_likelihood(model.decode(z), x) + torch.distributions.Normal(0.0, 1.0).log_prob(z[..., 0])
    dz = 20 / 40000
    return torch.logsumexp(log_joint, dim=0) + math.log(dz)


def assert_the_bound_tightens_towards(exact, model, x, *, k, chunk, below, above):
    """The ELBO strictly under the exact log-likelihood, the k-sample bound within (below, above) of it."""
    with torch.no_grad():
        torch.manual_seed(0)
        elbo = torch.stack([model.iwae_log_likelihood(x, k=1) for _ in range(2000)]).mean(0)
        iwae = model.iwae_log_likelihood(x, k=k, chunk=chunk)
    assert (elbo < exact - 1e-3).all()  # the ELBO is a strict lower bound here
    assert (iwae <= exact + above).all() and (iwae > exact - below).all()


def test_iwae_bound_tightens_towards_the_exact_likelihood():
    torch.manual_seed(3)
    model = VAE(latent_dim=1, hidden_dims=(8,), image_shape=(1, 2, 2))
    x = torch.bernoulli(torch.full((6, 1, 2, 2), 0.5))
    with torch.no_grad():
        exact = exact_log_likelihood(model, x)
    assert_the_bound_tightens_towards(exact, model, x, k=20000, chunk=5000, below=0.02, above=0.01)


def test_samples_and_reconstructions_are_probabilities(tiny_vae, tiny_images):
    for images in (tiny_vae.sample(5), tiny_vae.reconstruct(tiny_images)):
        assert images.min() >= 0 and images.max() <= 1
    assert tiny_vae.sample(5).shape == (5, 1, 4, 4)


def test_float64_and_float16_images_are_converted_to_the_models_float32(tiny_vae, tiny_images):
    torch.manual_seed(0)
    expected = tiny_vae.loss(tiny_images)["loss"]
    torch.manual_seed(0)
    assert torch.equal(tiny_vae.loss(tiny_images.double())["loss"], expected)  # float32 -> float64 is exact
    assert tiny_vae.encode(tiny_images.half()).loc.dtype == torch.float32


def test_an_empty_batch_is_refused_instead_of_giving_nan(tiny_vae):
    with pytest.raises(ValueError, match="got an empty batch"):
        tiny_vae.loss(torch.rand(0, 1, 4, 4))
    with pytest.raises(ValueError, match="got an empty batch"):
        tiny_vae.encode(torch.rand(0, 16))


def test_the_vae_recipe_watches_validation_digits_it_never_trains_on():
    from objectcentric.data import load_mnist
    from objectcentric.experiments.vae import MONITORED_ON_TEST_IMAGES, VAERecipe, validation_set
    from objectcentric.recipes import RecipeError

    recipe = VAERecipe()
    train = recipe.train_data().tensors[0]
    assert len(train) == 55_000
    val_digits, _ = load_mnist("val")
    # validation_set binarizes the validation digits: every black pixel stays black, no test digit is used
    watched = validation_set(50)
    assert watched.shape == (50, 1, 28, 28) and bool((watched[val_digits[:50] == 0] == 0).all())
    assert torch.equal(train[-1], load_mnist("train")[0][54_999])  # the training set ends where validation begins
    for bad in ({"n_val": 5001}, {"n_train": 55_001}, {"n_val": 0}):
        with pytest.raises(RecipeError, match=next(iter(bad))):
            VAERecipe(**bad)
    assert set(MONITORED_ON_TEST_IMAGES.values()) == {"vae_mnist_z50.pt", "vae_mnist_z2.pt"}


# --- the two-layer IWAE ----------------------------------------------------------------------------
def exact_two_layer_log_likelihood(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log ∫∫ p(h2) p(h1 | h2) p(x | h1) dh1 dh2 on a dense grid (one latent per layer)."""
    grid = torch.linspace(-8, 8, 1601)
    step = 16 / 1600
    h2 = grid.view(-1, 1, 1)  # (n, 1, 1)
    p_h1 = model._gaussian(model.decoders[1], h2)  # one Gaussian per grid value of h2
    h1 = grid.view(1, -1, 1, 1)  # (1, n, 1, 1) against (n, 1, 1, 1)
    log_p_h1 = torch.distributions.Normal(p_h1.loc.unsqueeze(1), p_h1.scale.unsqueeze(1)).log_prob(h1)[..., 0]
    logits = model.decoders[0](grid.view(-1, 1))  # (n, pixels)
    logits, pixels = torch.broadcast_tensors(logits.unsqueeze(1), x.flatten(1).unsqueeze(0))
    log_px_h1 = -torch.nn.functional.binary_cross_entropy_with_logits(logits, pixels, reduction="none").sum(-1)
    log_joint = (torch.distributions.Normal(0.0, 1.0).log_prob(grid).view(-1, 1, 1)  # h2, h1, image
                 + log_p_h1.view(len(grid), len(grid), 1) + log_px_h1.unsqueeze(0))
    return torch.logsumexp(log_joint.flatten(0, 1), dim=0) + 2 * math.log(step)


def test_the_two_layer_iwae_bound_tightens_towards_the_exact_likelihood():
    from objectcentric.models import IWAE

    torch.manual_seed(4)
    model = IWAE(latent_dims=(1, 1), hidden_dims=(6, 6), image_shape=(1, 2, 2))
    x = torch.bernoulli(torch.full((5, 1, 2, 2), 0.5))
    with torch.no_grad():
        exact = exact_two_layer_log_likelihood(model, x)
    assert_the_bound_tightens_towards(exact, model, x, k=40000, chunk=10000, below=0.05, above=0.02)


def test_the_iwae_trains_on_its_k_sample_bound_and_refuses_bad_settings():
    from objectcentric.experiments.vae import IWAERecipe
    from objectcentric.models import IWAE
    from objectcentric.recipes import RecipeError

    torch.manual_seed(0)
    model = IWAE(latent_dims=(3, 2), hidden_dims=(8, 8), k=4, image_shape=(1, 4, 4))
    x = torch.bernoulli(torch.rand(32, 1, 4, 4))
    terms = model.loss(x)
    assert set(terms) == {"loss", "neg_iwae_bound_k4", "neg_elbo"}
    assert terms["loss"] <= terms["neg_elbo"]  # log-mean-exp of the weights is at least their mean
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(terms["loss"])
    for _ in range(200):
        loss = model.loss(x)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(model.loss(x)["loss"]) < first - 1.0
    assert model.sample(3).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="one hidden width per stochastic layer"):
        IWAE(latent_dims=(3, 2), hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"shaped \(batch, 1, 4, 4\)"):
        model.loss(torch.rand(2, 1, 5, 5))
    with pytest.raises(RecipeError, match="k must be a whole number"):
        IWAERecipe(k=0)
    assert IWAERecipe().build_model().config.latent_dims == (100, 50)
    assert IWAERecipe().shipped_name() == "iwae_mnist_k5.pt"


def test_results_name_the_best_model_and_the_chapter_words_follow_the_numbers():
    from objectcentric.chapters import vae as chapter
    from objectcentric.experiments.vae import nll_results

    def record(nll):
        return {"test_nll_nats": nll, "test_nll_standard_error": 0.25, "test_neg_elbo_nats": nll + 4, "k": 5000,
                "n_test_images": 10_000, "training_epochs": 400}

    body = nll_results({"plain_vae": record(87.7), "iwae": record(85.2)})
    assert body["best_model"] == "iwae" and body["test_nll_nats"] == 85.2 and body["plain_vae"]["test_nll_nats"] == 87.7
    assert body["meets_target"] is False and nll_results({"iwae": record(84.9)})["meets_target"] is True
    assert nll_results({"plain_vae": record(87.7), "iwae": record(88.0)})["best_model"] == "plain_vae"
    words = chapter.nll_gap_sentence(body)
    assert "85.2 nats, 2.5 nats better than our VAE" in words and "1.3 nats better than ours" in words
    assert "8.2 times as many passes" in words
    html = str(chapter.nll_table(body)._repr_html_())
    assert "two-layer IWAE (k = 5)" in html and "85.2 ± 0.25" in html and "83.89" in html
    old_file = record(87.7)  # a results file from before the two-layer model: one record at the top level
    assert "two-layer" not in chapter.nll_gap_sentence(old_file) and "87.7" in str(chapter.nll_table(old_file)._repr_html_())
    with pytest.raises(ValueError, match="no measured model"):
        nll_results({})
