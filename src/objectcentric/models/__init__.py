"""The models of the book, one module per chapter; each holds a model and its loss."""

from .vae import VAE

MODEL_CLASSES = {"VAE": VAE}

__all__ = ["VAE", "MODEL_CLASSES"]
