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


def test_iwae_bound_tightens_towards_the_exact_likelihood():
    torch.manual_seed(3)
    model = VAE(latent_dim=1, hidden_dims=(8,), image_shape=(1, 2, 2))
    x = torch.bernoulli(torch.full((6, 1, 2, 2), 0.5))
    with torch.no_grad():
        exact = exact_log_likelihood(model, x)
        torch.manual_seed(0)
        elbo = torch.stack([model.iwae_log_likelihood(x, k=1) for _ in range(2000)]).mean(0)
        iwae = model.iwae_log_likelihood(x, k=20000, chunk=5000)
    assert (elbo < exact - 1e-3).all()  # the ELBO is a strict lower bound here
    assert (iwae <= exact + 0.01).all() and (iwae > exact - 0.02).all()


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
