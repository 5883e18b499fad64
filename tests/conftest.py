"""Shared test fixtures: tests run on the CPU, offline, with small models."""

import pytest
import torch

from objectcentric.models import VAE


@pytest.fixture
def tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(latent_dim=3, hidden_dims=(16,), image_shape=(1, 4, 4))


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.rand(48, 1, 4, 4, generator=torch.Generator().manual_seed(1))
