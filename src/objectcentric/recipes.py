"""Recipes: a chapter's training settings as data (Chapter 1 introduces them).

A recipe is a frozen dataclass. Its fields are the full-scale settings of one
training run, so a run is described completely by ``(recipe, seed)``; the
quick scale is a small override of the same fields (``QUICK``), applied with
``dataclasses.replace``. Besides its numbers a recipe says how to build what
the run needs: the model, the training data, one step's loss, the optimizer
and (optionally) a schedule and the held-out numbers to watch.

Every chapter registers its recipe with :func:`register`; the command line,
the sweep runner and ``reproduce`` find recipes by name in :data:`REGISTRY`.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from .checkpoints import plain_data

# The modules that define the book's recipes and experiments, imported on first use.
RECIPE_MODULES = (
    "objectcentric.experiments.vae",
    "objectcentric.experiments.beta_vae",
    "objectcentric.experiments.spatial_transformer",
    "objectcentric.experiments.estimators",
    "objectcentric.experiments.dvae",
    "objectcentric.experiments.air",
    "objectcentric.experiments.dair",
    "objectcentric.experiments.scae",
)

REGISTRY: dict[str, type[Recipe]] = {}
SCALES = ("quick", "full")


class RecipeError(ValueError):
    """A recipe name, setting or scale that does not exist or makes no sense."""


@dataclass(frozen=True)
class Recipe:
    """The settings of one training run, and how to build what it needs.

    Subclasses set ``name`` (the registry key and the CLI's word), ``chapter``,
    ``QUICK`` (field overrides for the quick scale) and, for fields that take
    one of a few values, ``CHOICES``. ``quick`` is True for a recipe at the
    quick scale: its numbers are never results.
    """

    name: ClassVar[str] = ""
    chapter: ClassVar[str] = ""
    QUICK: ClassVar[dict] = {}
    CHOICES: ClassVar[dict[str, tuple]] = {}
    HELP: ClassVar[dict[str, str]] = {}

    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    clip_grad_norm: float | None = None
    quick: bool = False

    def __post_init__(self):
        for field in ("epochs", "batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise RecipeError(f"{field} must be a whole number of at least 1, got {value!r}")
        if not self.lr > 0:
            raise RecipeError(f"lr must be positive, got {self.lr!r}")
        for field, options in self.CHOICES.items():
            if getattr(self, field) not in options:
                raise RecipeError(f"{field} must be one of {', '.join(map(str, options))}; "
                                  f"got {getattr(self, field)!r}")

    # --- scale and identity ---------------------------------------------------------------
    def at_scale(self, scale: str) -> Recipe:
        """This recipe at ``scale``: "full" as it is, "quick" with ``QUICK``'s overrides."""
        if scale not in SCALES:
            raise RecipeError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if scale == "full" or self.quick:
            return self
        return dataclasses.replace(self, quick=True, **self.QUICK)

    def settings(self) -> dict:
        """Every field as plain data (what a checkpoint and a record store)."""
        return plain_data(dataclasses.asdict(self))

    def changed(self) -> dict:
        """The fields that differ from the class's defaults at the same scale (what names a variant)."""
        default = type(self)().at_scale("quick" if self.quick else "full")
        defaults = default.settings()
        return {k: v for k, v in self.settings().items() if v != defaults[k] and k != "quick"}

    def run_name(self, seed: int) -> str:
        """The run folder's name for this recipe and seed, e.g. ``vae_latent_dim2_seed0``."""
        parts = [self.name] + [f"{k}{_short(v)}" for k, v in sorted(self.changed().items())]
        return "_".join(parts + (["quick"] if self.quick else []) + [f"seed{seed}"])

    def shipped_name(self, seed: int = 0) -> str | None:
        """The file under ``checkpoints/`` that a run of this recipe and seed ships to (None: not shipped)."""
        return None

    # --- what a run needs -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def train_data(self) -> Dataset:
        raise NotImplementedError

    def initialize(self, model: nn.Module, data: Dataset, seed: int) -> None:
        """Data-dependent initialisation before the first step (default: none)."""

    def started_from(self) -> dict:
        """The shipped checkpoints that :meth:`initialize` copies, by file name: ``{"seed": ..., "sha256":
        ...}`` each (default: none). The runner records them with the run when it starts; they travel into
        the checkpoint's provenance and the manifest entry of what it ships."""
        return {}

    def step(self, model: nn.Module, batch: tuple) -> dict[str, torch.Tensor]:
        """One training step's terms; ``"loss"`` is minimised."""
        raise NotImplementedError

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.lr)

    def scheduler(self, optimizer: torch.optim.Optimizer):
        """An LR scheduler stepped once per epoch, or None."""
        return None

    def evaluator(self) -> Callable[[nn.Module], dict[str, float]] | None:
        """Numbers on held-out data after every epoch (stored as ``val_<name>``), or None."""
        return None

    def start_of_epoch(self, model: nn.Module, epoch: int) -> None:
        """A hook before each epoch's first step, a resumed epoch's too (default: none)."""

    def end_of_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, seed: int) -> None:
        """A hook after each epoch's last step, before evaluation (default: none)."""

    def metrics(self, model: nn.Module, history: list[dict]) -> dict:
        """The numbers a finished run reports (default: the last epoch's held-out numbers)."""
        if not history:
            return {}
        return {k: v for k, v in history[-1].items() if k.startswith("val_")}


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(map(_short, value))
    return str(value)


# --- the registry ---------------------------------------------------------------------------
def register(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make a recipe findable by its ``name``."""
    if not cls.name:
        raise RecipeError(f"{cls.__name__} needs a name to be registered")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Recipe]]:
    """Import every chapter's module, so that the registry is complete; returns it."""
    for module in RECIPE_MODULES:
        importlib.import_module(module)
    return REGISTRY


def recipe_class(name: str) -> type[Recipe]:
    """The recipe class registered under ``name``, with an error that lists the names there are."""
    registry = load_all()
    if name not in registry:
        raise RecipeError(f"no recipe named {name!r}; the recipes are: {', '.join(sorted(registry))}")
    return registry[name]


def from_settings(name: str, settings: dict) -> Recipe:
    """Rebuild a recipe from its name and stored settings (e.g. from a checkpoint)."""
    cls = recipe_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise RecipeError(f"recipe {name!r} has no setting {', '.join(unknown)}; "
                          f"its settings are {', '.join(fields)}")
    kinds = field_types(cls)  # a stored list goes back into a tuple field as a tuple
    return cls(**{k: tuple(v) if isinstance(v, list) and kinds[k] is tuple else v for k, v in settings.items()})


def field_types(cls: type[Recipe]) -> dict[str, type]:
    """Each field's plain type (int, float, str, bool, tuple), for the command line."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = typing.get_origin(hint) or hint
        if base in (typing.Union, types.UnionType) and args:
            base = typing.get_origin(args[0]) or args[0]
        out[field.name] = base
    return out
