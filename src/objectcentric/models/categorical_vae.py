"""A VAE with one categorical latent, trained with any gradient estimator (Chapter 3, discrete gradients).

Encoder: an image to the logits of q(b | x), a categorical over K classes.
Decoder: a class (one-hot, or a relaxed point of the simplex) to the logits
of independent Bernoulli pixels p(x | b). Prior: uniform over the K classes.

The reconstruction term E_q[-log p(x | b)] goes through the estimator (its
gradient for the encoder is what the chapter is about); the KL to the uniform
prior is computed exactly. Chapter 5's D-VAE is this model with prototypes.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_image_batch
from ..estimators import exact_expectation, make_estimator
from ..modules import config_from, mlp


@dataclass(frozen=True)
class CategoricalVAEConfig:
    """The settings of a :class:`CategoricalVAE` (Chapter 3, discrete gradients)."""

    num_classes: int = 10
    hidden_dims: tuple[int, ...] = (400,)
    image_shape: tuple[int, int, int] = (1, 28, 28)
    estimator: str = "reinforce"  # the name of the gradient estimator (objectcentric.estimators.ESTIMATORS)
    temperature: float = 0.66


class CategoricalVAE(nn.Module):
    """A VAE whose latent is one categorical variable with K classes (Chapter 3, discrete gradients).

    Built from a :class:`CategoricalVAEConfig`, or from its fields as keywords:
    ``CategoricalVAE(estimator="nvil")``.
    """

    def __init__(self, config: CategoricalVAEConfig | None = None, **settings):
        super().__init__()
        config = config_from(CategoricalVAEConfig, config, settings)
        self.config = config
        self.num_classes = int(config.num_classes)
        self.image_shape = tuple(int(s) for s in config.image_shape)
        n_pixels = math.prod(self.image_shape)
        hidden = [int(h) for h in config.hidden_dims]
        self.encoder = mlp([n_pixels, *hidden, self.num_classes])  # image -> K logits of q(b | x)
        self.decoder = mlp([self.num_classes, *reversed(hidden), n_pixels])  # class -> pixel logits
        reads_x = config.estimator in ("nvil", "rebar", "relax")  # input-dependent baseline / control variate
        self.estimator = make_estimator(config.estimator, self.num_classes, temperature=config.temperature,
                                        in_features=n_pixels if reads_x else 0)

    def _images(self, x) -> torch.Tensor:
        """``x`` checked by :func:`check_image_batch`, in the model's dtype."""
        return check_image_batch(x, self.image_shape, dtype=self.encoder[0].weight.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(b | x), shape (B, K)."""
        return self.encoder(self._images(x).flatten(1))

    def decode(self, b: torch.Tensor) -> torch.Tensor:
        """Pixel logits of p(x | b) for one-hot or relaxed classes b (..., K), shaped like images."""
        return self.decoder(b).unflatten(-1, self.image_shape)

    def reconstruction_cost(self, x: torch.Tensor):
        """f(b) = -log p(x | b) summed over pixels, one number per image: the estimators' cost."""

        def cost(b: torch.Tensor) -> torch.Tensor:
            logits = self.decode(b)
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)

        return cost

    def kl(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q(b | x) || uniform) = Σ_k q_k log q_k + log K, exactly, per image."""
        log_q = logits.log_softmax(-1)
        return (log_q.exp() * log_q).sum(-1) + math.log(self.num_classes)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The negative ELBO with the reconstruction's gradient from the estimator, plus its control loss.

        ``reconstruction`` is the cost at the sampled class (the relaxed one for
        CONCRETE); ``exact_neg_elbo`` sums over all K classes instead.
        """
        x = self._images(x)
        logits = self.encoder(x.flatten(1))
        out = self.estimator(logits, self.reconstruction_cost(x), x=x)
        kl = self.kl(logits)
        return {
            "loss": out.surrogate.mean() + kl.mean() + out.control_loss,
            "reconstruction": out.cost.mean(),
            "kl": kl.mean().detach(),
            "neg_elbo": (out.cost + kl.detach()).mean(),
            "control_loss": out.control_loss.detach(),
        }

    @torch.no_grad()
    def exact_neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """-ELBO per image with the expectation over q(b | x) done exactly (K decoder calls)."""
        x = self._images(x)
        logits = self.encoder(x.flatten(1))
        return exact_expectation(logits, self.reconstruction_cost(x)) + self.kl(logits)

    @torch.no_grad()
    def prototypes(self) -> torch.Tensor:
        """The K images the decoder draws for the K classes (pixel probabilities)."""
        eye = torch.eye(self.num_classes, device=next(self.parameters()).device)
        return torch.sigmoid(self.decode(eye))
