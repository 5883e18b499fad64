"""The β-VAE's three encoder/decoder families (Chapter 2, β-VAE).

β is not a new model: it is the weight of the KL term in the one VAE loss of
Chapter 1 (:meth:`objectcentric.models.vae.VAE.loss`). What Chapter 2 varies
besides β is the *networks* around that loss, the three families of the
recreation it follows (seed 001):

- ``fc``: fully connected, the network of Higgins et al. (2016): pixels ->
  1200 -> 1200 -> (mean, log-std) per latent; latent -> 1200 -> 1200 -> 1200
  -> pixel logits.
- ``conv``: strided convolutions down to a 4 × 4 map, then two dense layers to
  the latents; the decoder mirrors it with transposed convolutions.
- ``allconv``: no dense layer at all; the latent stays an image, a
  ``latent_dim / 16``-channel 4 × 4 map, and each latent only sees (and only
  draws) one region of the picture.

Each network keeps the interface :class:`~objectcentric.models.vae.VAE`
expects (flat images in, ``2 * latent_dim`` numbers out; codes in, flat logits
out), so the model class below only swaps the networks and inherits the
encoder, decoder, prior, loss and IWAE bound unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..modules import config_from, mlp
from .vae import VAE

ARCHITECTURES = ("fc", "conv", "allconv")
FC_HIDDEN = 1200
CONV_CHANNELS = (32, 32, 64, 64)  # per stride-2 layer, from the image down
DENSE_HIDDEN = 256
LATENT_GRID = 4  # the encoders stop at a 4 × 4 map


def _halvings(image_shape) -> int:
    """How many stride-2 layers take an image of this shape to a 4 × 4 map."""
    channels, height, width = image_shape
    n = round(math.log2(height / LATENT_GRID)) if height >= LATENT_GRID else -1
    if channels < 1 or height != width or n < 1 or LATENT_GRID * 2**n != height:
        raise ValueError(
            f"the conv and allconv families need square images whose side is 4 times a power of 2 "
            f"(8, 16, 32, 64, ...), got image_shape {tuple(image_shape)}"
        )
    return n


def _down(n_in: int, n_out: int) -> nn.Conv2d:
    """A 4 × 4 convolution with stride 2: halves the side of the map."""
    return nn.Conv2d(n_in, n_out, kernel_size=4, stride=2, padding=1)


def _up(n_in: int, n_out: int) -> nn.ConvTranspose2d:
    """The mirror of ``_down``: doubles the side of the map."""
    return nn.ConvTranspose2d(n_in, n_out, kernel_size=4, stride=2, padding=1)


class FlatDecoder(nn.Module):
    """Codes (..., latent_dim) to flat pixel logits (..., n_pixels) through an image-shaped network.

    The VAE decodes codes with any number of leading dimensions (the IWAE bound
    decodes (samples, batch, latent_dim)); convolutions take one batch
    dimension, so this wrapper folds the leading ones in and out again.
    """

    def __init__(self, net: nn.Module, latent_dim: int):
        super().__init__()
        self.net, self.latent_dim = net, latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        return self.net(z.reshape(-1, self.latent_dim)).reshape(*lead, -1)


def conv_networks(latent_dim: int, image_shape) -> tuple[nn.Module, nn.Module]:
    """Encoder: image -> strided convs -> 4 × 4 map -> 256 -> 2 × latent_dim; decoder: the mirror."""
    n = _halvings(image_shape)
    # Larger images than 64 × 64 repeat the last width.
    channels = [image_shape[0], *(CONV_CHANNELS + CONV_CHANNELS[-1:] * n)[:n]]
    flat = channels[-1] * LATENT_GRID**2
    encoder = [nn.Unflatten(1, tuple(image_shape))]
    for n_in, n_out in zip(channels[:-1], channels[1:]):
        encoder += [_down(n_in, n_out), nn.ReLU()]
    encoder += [nn.Flatten(1), nn.Linear(flat, DENSE_HIDDEN), nn.ReLU(), nn.Linear(DENSE_HIDDEN, 2 * latent_dim)]
    decoder = [nn.Linear(latent_dim, DENSE_HIDDEN), nn.ReLU(), nn.Linear(DENSE_HIDDEN, flat), nn.ReLU(),
               nn.Unflatten(1, (channels[-1], LATENT_GRID, LATENT_GRID))]
    reversed_channels = channels[::-1]
    for i, (n_in, n_out) in enumerate(zip(reversed_channels[:-1], reversed_channels[1:])):
        decoder.append(_up(n_in, n_out))
        if i < n - 1:
            decoder.append(nn.ReLU())
    decoder.append(nn.Flatten(1))
    return nn.Sequential(*encoder), FlatDecoder(nn.Sequential(*decoder), latent_dim)


def allconv_networks(latent_dim: int, image_shape) -> tuple[nn.Module, nn.Module]:
    """Encoder: image -> strided convs -> (2 × latent channels) 4 × 4 map; decoder: transposed convs back.

    The code is the 4 × 4 map itself, ``latent_dim / 16`` channels deep: mean
    channels first, then log-std channels, flattened channel by channel, so
    that the VAE's ``chunk(2)`` splits them correctly.
    """
    n = _halvings(image_shape)
    cells = LATENT_GRID**2
    if latent_dim % cells:
        raise ValueError(f"the allconv family keeps the code as a 4 × 4 map, so latent_dim must be a "
                         f"multiple of {cells}, got {latent_dim}")
    latent_channels = latent_dim // cells
    hidden = CONV_CHANNELS[0]
    encoder = [nn.Unflatten(1, tuple(image_shape)), _down(image_shape[0], hidden), nn.ReLU(),
               nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU()]
    for _ in range(n - 2):
        encoder += [_down(hidden, hidden), nn.ReLU()]
    encoder += [_down(hidden, 2 * latent_channels), nn.Flatten(1)]
    decoder = [nn.Unflatten(1, (latent_channels, LATENT_GRID, LATENT_GRID)), _up(latent_channels, hidden), nn.ReLU()]
    for _ in range(n - 2):
        decoder += [_up(hidden, hidden), nn.ReLU()]
    decoder += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(), _up(hidden, image_shape[0]), nn.Flatten(1)]
    return nn.Sequential(*encoder), FlatDecoder(nn.Sequential(*decoder), latent_dim)


def fc_networks(latent_dim: int, image_shape) -> tuple[nn.Module, nn.Module]:
    """Higgins et al.'s fully connected networks: pixels -> 1200 -> 1200 -> 2 × latent_dim, and
    latent_dim -> 1200 -> 1200 -> 1200 -> pixels."""
    n_pixels = math.prod(image_shape)
    return (mlp([n_pixels, FC_HIDDEN, FC_HIDDEN, 2 * latent_dim]),
            mlp([latent_dim, FC_HIDDEN, FC_HIDDEN, FC_HIDDEN, n_pixels]))


NETWORKS = {"fc": fc_networks, "conv": conv_networks, "allconv": allconv_networks}


@dataclass(frozen=True)
class BetaVAEConfig:
    """The settings of a :class:`BetaVAE` (Chapter 2, β-VAE): the family, the code size, the pictures."""

    architecture: str = "conv"
    latent_dim: int = 10
    image_shape: tuple[int, int, int] = (1, 64, 64)

    def __post_init__(self):
        if self.architecture not in NETWORKS:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if int(self.latent_dim) < 1:
            raise ValueError(f"latent_dim must be at least 1, got {self.latent_dim}")
        object.__setattr__(self, "latent_dim", int(self.latent_dim))
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))


class BetaVAE(VAE):
    """Chapter 1's VAE with one of Chapter 2's encoder/decoder families (Chapter 2, β-VAE).

    Only the networks change: ``loss(x, beta)``, ``encode``, ``decode`` and the
    IWAE bound are the VAE's own. Built from a :class:`BetaVAEConfig` or its
    fields as keywords: ``BetaVAE(architecture="allconv", latent_dim=16)``
    (the families: see the module docstring).
    """

    def __init__(self, config: BetaVAEConfig | None = None, **settings):
        config = config_from(BetaVAEConfig, config, settings)
        # Skip VAE.__init__, which would build Chapter 1's networks only to replace them.
        nn.Module.__init__(self)
        self.config = config
        self.architecture = config.architecture
        self.latent_dim = config.latent_dim
        self.image_shape = config.image_shape
        self.encoder, self.decoder = NETWORKS[config.architecture](self.latent_dim, self.image_shape)
