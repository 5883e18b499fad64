"""Chapter 1 (VAE): the settings and training recipe behind the notebook and the CLI.

Full settings aim at the binarized-MNIST likelihoods of the IWAE paper
(Burda et al., 2016): 50 latents, Bernoulli pixels, dynamic binarization.
Quick settings only check that every piece runs.
"""

import torch
from torch.utils.data import TensorDataset

from ..data import load_mnist
from ..data.binarize import stochastic_binarize
from ..models import VAE
from ..train import TrainResult, fit

FULL = {"epochs": 300, "batch_size": 100, "lr": 1e-3, "final_lr": 1e-4, "n_train": None, "n_val": 2000}
QUICK = {"epochs": 2, "batch_size": 100, "lr": 1e-3, "final_lr": 1e-4, "n_train": 1000, "n_val": 200}
HIDDEN_DIMS = (512, 512)


def checkpoint_name(latent_dim: int) -> str:
    """File name of the shipped checkpoint of a VAE with ``latent_dim`` latents."""
    return f"vae_mnist_z{latent_dim}.pt"


def vae_step(model: VAE, batch: tuple) -> dict[str, torch.Tensor]:
    """One training step's loss: a fresh binarization of the batch, then the negative ELBO."""
    return model.loss(stochastic_binarize(batch[0]))


def validation_set(n: int, seed: int = 1234) -> torch.Tensor:
    """``n`` test images binarized once with a fixed seed, so epochs compare like with like."""
    images, _ = load_mnist("test")
    return stochastic_binarize(images[:n], generator=torch.Generator().manual_seed(seed))


def elbo_evaluator(images: torch.Tensor, batch_size: int = 1000):
    """``evaluate`` for ``fit``: the ELBO terms on fixed held-out images."""

    def evaluate(model: VAE) -> dict[str, float]:
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].to(device)
            for name, value in model.loss(chunk).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(chunk)
        return {name: total / len(images) for name, total in sums.items() if name != "loss"}

    return evaluate


def train_vae(
    latent_dim: int = 50,
    *,
    quick: bool = False,
    epochs: int | None = None,
    checkpoint=None,
    seed: int = 0,
    device=None,
    progress: str = "auto",
    provenance: dict | None = None,
) -> tuple[VAE, TrainResult]:
    """Train a VAE on MNIST at full (or quick) settings; returns the model and its history.

    ``provenance`` (command, commit, device, seed) is stored in every checkpoint of the run.
    """
    settings = dict(QUICK if quick else FULL)
    if epochs is not None:
        settings["epochs"] = epochs
    images, _ = load_mnist("train")
    if settings["n_train"]:
        images = images[: settings["n_train"]]
    torch.manual_seed(seed)  # the initial weights depend on the seed alone
    model = VAE(latent_dim=latent_dim, hidden_dims=HIDDEN_DIMS)
    n_epochs, final_lr = settings["epochs"], settings["final_lr"]

    def cosine(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs, eta_min=final_lr)

    result = fit(
        model,
        TensorDataset(images),
        vae_step,
        epochs=n_epochs,
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        scheduler=cosine,
        evaluate=elbo_evaluator(validation_set(settings["n_val"])),
        checkpoint=checkpoint,
        seed=seed,
        device=device,
        progress=progress,
        train_config={**settings, "latent_dim": latent_dim, "quick": quick, "provenance": provenance or {}},
    )
    return model, result
