"""The variational autoencoder (Chapter 1, VAE) and its β-weighted loss (Chapter 2).

Encoder: an image to the mean and log-scale of a diagonal Gaussian q(z | x).
Decoder: a latent code to the logits of independent Bernoulli pixels p(x | z).
Prior: a standard normal p(z).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from ..checks import check_image_batch
from ..modules import mlp


@dataclass(frozen=True)
class VAEConfig:
    """The settings of a :class:`VAE`."""

    latent_dim: int = 50
    hidden_dims: tuple[int, ...] = (512, 512)
    image_shape: tuple[int, int, int] = (1, 28, 28)


class VAE(nn.Module):
    """A fully connected VAE with a Gaussian posterior and Bernoulli pixels (Chapter 1).

    Built from a :class:`VAEConfig`, or from its fields as keywords: ``VAE(latent_dim=2)``.
    """

    def __init__(self, config: VAEConfig | None = None, **settings):
        super().__init__()
        if config is not None and settings:
            raise TypeError("give a VAEConfig or its fields as keywords, not both")
        config = config or VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
        self.config = config
        self.latent_dim = int(config.latent_dim)
        self.image_shape = tuple(config.image_shape)
        n_pixels = math.prod(self.image_shape)
        hidden = list(config.hidden_dims)
        # The encoder emits 2 numbers per latent: a mean and a log standard deviation.
        self.encoder = mlp([n_pixels, *hidden, 2 * self.latent_dim])
        self.decoder = mlp([self.latent_dim, *reversed(hidden), n_pixels])

    # --- the three distributions -------------------------------------------------
    def encode(self, x: torch.Tensor) -> Normal:
        """q(z | x): a diagonal Gaussian per image."""
        return self._posterior(check_image_batch(x, self.image_shape))

    def _posterior(self, x: torch.Tensor) -> Normal:
        """q(z | x) for a batch already checked by ``check_image_batch``."""
        mean, log_std = self.encoder(x.flatten(1)).chunk(2, dim=-1)
        # Clamping the log-scale keeps exp() finite early in training.
        return Normal(mean, log_std.clamp(-10.0, 5.0).exp())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of p(x | z), shaped like images: (..., *image_shape)."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"latent codes must end in {self.latent_dim} values, got shape {tuple(z.shape)}")
        return self.decoder(z).unflatten(-1, self.image_shape)

    def prior(self) -> Normal:
        """p(z) = N(0, I), on the device of the model."""
        zero = next(self.parameters()).new_zeros(self.latent_dim)
        return Normal(zero, torch.ones_like(zero))

    # --- the ELBO --------------------------------------------------------------
    def log_likelihood(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over pixels: one number per image (and per sample)."""
        logits, x = torch.broadcast_tensors(logits, x)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-3).sum(-1)

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """The negative ELBO, averaged over the batch, with its two terms.

        ``loss = reconstruction + beta * kl`` where ``reconstruction`` is
        -E_q[log p(x | z)] and ``kl`` is KL(q(z | x) || p(z)). ``beta = 1``
        is the VAE; other values give the β-VAE of Chapter 2.
        """
        x = check_image_batch(x, self.image_shape)
        posterior = self._posterior(x)
        z = posterior.rsample()  # the reparameterization trick: z = mean + std * eps
        reconstruction = -self.log_likelihood(self.decode(z), x)
        kl = kl_divergence(posterior, self.prior()).sum(-1)
        return {
            "loss": (reconstruction + beta * kl).mean(),
            "reconstruction": reconstruction.mean(),
            "kl": kl.mean(),
            "neg_elbo": (reconstruction + kl).mean(),
        }

    def kl_per_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Average KL of each latent over a batch: which latents carry information."""
        return kl_divergence(self.encode(x), self.prior()).mean(0)

    # --- the IWAE bound ----------------------------------------------------------
    @torch.no_grad()
    def iwae_log_likelihood(self, x: torch.Tensor, k: int, chunk: int = 500) -> torch.Tensor:
        """The importance-weighted bound log (1/k) Σ p(x, z_i) / q(z_i | x), per image.

        With k = 1 it is the ELBO; it tightens towards log p(x) as k grows
        (Burda et al., 2016). Samples are drawn ``chunk`` at a time so that
        k = 5000 fits in memory.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        x = check_image_batch(x, self.image_shape)
        posterior = self._posterior(x)
        prior = self.prior()
        log_weights = []
        for start in range(0, k, chunk):
            z = posterior.sample((min(chunk, k - start),))  # (n, B, latent)
            log_w = (
                self.log_likelihood(self.decode(z), x)
                + prior.log_prob(z).sum(-1)
                - posterior.log_prob(z).sum(-1)
            )
            log_weights.append(log_w)
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)

    # --- pictures ------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities decoded from the posterior mean."""
        return torch.sigmoid(self.decode(self.encode(x).mean))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixel probabilities of ``n`` images decoded from prior samples."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return torch.sigmoid(self.decode(z))
