"""The models of the book, one module per chapter; each holds a model and its loss."""

from .beta_vae import BetaVAE
from .dvae import DVAE, DVAEST
from .vae import IWAE, VAE

MODEL_CLASSES = {"VAE": VAE, "IWAE": IWAE, "BetaVAE": BetaVAE, "DVAE": DVAE, "DVAEST": DVAEST}

__all__ = ["VAE", "IWAE", "BetaVAE", "DVAE", "DVAEST", "MODEL_CLASSES"]
