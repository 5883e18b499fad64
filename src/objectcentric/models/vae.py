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
from ..modules import config_from, mlp


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
        config = config_from(VAEConfig, config, settings)
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


# --- Chapter 1's stronger model: two stochastic layers trained on the IWAE bound ------------------
@dataclass(frozen=True)
class IWAEConfig:
    """The settings of an :class:`IWAE`: Burda et al.'s (2016) two-layer MNIST model by default."""

    latent_dims: tuple[int, ...] = (100, 50)  # stochastic layers, from the pixels up
    hidden_dims: tuple[int, ...] = (200, 100)  # width of the two deterministic layers below each
    k: int = 5  # importance samples in the training bound
    image_shape: tuple[int, int, int] = (1, 28, 28)


class IWAE(nn.Module):
    """A VAE with stacked Gaussian latents, trained on the k-sample IWAE bound (Chapter 1).

    Generative model: h_L ~ N(0, I), then each h_l ~ N(mean, std | h_{l+1}), and
    Bernoulli pixels given h_1. Inference runs the other way, q(h_1 | x), then
    q(h_{l+1} | h_l). With one layer and k = 1 it is the VAE above.
    """

    def __init__(self, config: IWAEConfig | None = None, **settings):
        super().__init__()
        config = config_from(IWAEConfig, config, settings)
        if len(config.latent_dims) != len(config.hidden_dims) or not config.latent_dims:
            raise ValueError(f"give one hidden width per stochastic layer, got latent_dims={config.latent_dims} "
                             f"and hidden_dims={config.hidden_dims}")
        if config.k < 1:
            raise ValueError(f"k must be at least 1, got {config.k}")
        self.config = config
        self.image_shape = tuple(config.image_shape)
        below = [math.prod(self.image_shape), *config.latent_dims[:-1]]  # what each stochastic layer sits on
        # Each inference step: the layer below (pixels or h_l) to the mean and log-std of the next latents.
        self.encoders = nn.ModuleList(mlp([n_in, width, width, 2 * n_z], nn.Tanh)
                                      for n_in, width, n_z in zip(below, config.hidden_dims, config.latent_dims))
        # Each generative step: latents h_l to the layer below (pixel logits, or the mean and log-std of h_{l-1}).
        self.decoders = nn.ModuleList(mlp([n_z, width, width, n_out if i == 0 else 2 * n_out], nn.Tanh)
                                      for i, (n_out, width, n_z) in
                                      enumerate(zip(below, config.hidden_dims, config.latent_dims)))
        self.latent_dim = config.latent_dims[-1]

    @staticmethod
    def _gaussian(net: nn.Module, h: torch.Tensor) -> Normal:
        mean, log_std = net(h).chunk(2, dim=-1)
        return Normal(mean, log_std.clamp(-10.0, 5.0).exp())

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x, h) - log q(h | x) for k joint samples h ~ q(h | x) per image: shape (k, batch).

        Samples are reparameterized, so the bound built from them can be differentiated.
        """
        h = x.flatten(1)
        log_w = 0.0
        samples = []
        for layer, encoder in enumerate(self.encoders):
            posterior = self._gaussian(encoder, h)
            h = posterior.rsample((k,)) if layer == 0 else posterior.rsample()
            log_w = log_w - posterior.log_prob(h).sum(-1)
            samples.append(h)
        log_w = log_w + Normal(0.0, 1.0).log_prob(samples[-1]).sum(-1)  # the prior on the top layer
        for layer in range(len(samples) - 1, 0, -1):
            log_w = log_w + self._gaussian(self.decoders[layer], samples[layer]).log_prob(samples[layer - 1]).sum(-1)
        logits = self.decoders[0](samples[0])
        return log_w - F.binary_cross_entropy_with_logits(
            logits, x.flatten(1).expand_as(logits), reduction="none").sum(-1)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The negative k-sample IWAE bound -L_k, averaged over the batch, with the negative ELBO beside it."""
        x = check_image_batch(x, self.image_shape)
        log_w = self.log_weights(x, self.config.k)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.config.k)
        return {"loss": -bound.mean(), f"neg_iwae_bound_k{self.config.k}": -bound.mean().detach(),
                "neg_elbo": -log_w.mean().detach()}

    @torch.no_grad()
    def iwae_log_likelihood(self, x: torch.Tensor, k: int, chunk: int = 500) -> torch.Tensor:
        """The bound L_k per image, as :meth:`VAE.iwae_log_likelihood` (the test NLL is -L_5000)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        x = check_image_batch(x, self.image_shape)
        log_w = torch.cat([self.log_weights(x, min(chunk, k - start)) for start in range(0, k, chunk)])
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixel probabilities of ``n`` images: h_L from the prior, each layer below drawn from its decoder."""
        device = next(self.parameters()).device
        h = torch.randn(n, self.latent_dim, generator=generator, device=device)
        for layer in range(len(self.decoders) - 1, 0, -1):
            p = self._gaussian(self.decoders[layer], h)
            h = p.mean + p.stddev * torch.randn(p.mean.shape, generator=generator, device=device)
        return torch.sigmoid(self.decoders[0](h)).unflatten(-1, self.image_shape)
