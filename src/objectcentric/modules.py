"""Building blocks shared by the models of every chapter."""

import math
from collections.abc import Sequence

import torch
from torch import nn


def config_from(cls: type, config, settings: dict):
    """A model's config: ``config`` as given, or a ``cls`` built from ``settings`` (its fields as keywords;
    lists are read as tuples, as a checkpoint's JSON stores them). Both at once are a TypeError."""
    if config is not None and settings:
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"give {article} {cls.__name__} or its fields as keywords, not both")
    return config or cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A fully connected network: ``sizes[0]`` inputs to ``sizes[-1]`` outputs.

    The activation follows every layer but the last, whose output is left
    linear so that it can be read as means, log-scales or logits.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ReplicaLinear(nn.Module):
    """R independent fully connected layers applied side by side: (R, N, in) -> (R, N, out).

    Trains R independent copies of a network in one batched call (Chapter 5,
    D-VAE-ST, runs its seeds this way): replica r only ever sees its own
    weights, so with an element-wise optimizer such as Adam the copies stay
    exactly as independent as separate runs, at the cost of one. Each copy is
    initialised like ``nn.Linear``, from its own generator when ``generators``
    (one per replica) are given.
    """

    def __init__(self, replicas: int, n_in: int, n_out: int, generators=None):
        super().__init__()
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.weight = nn.Parameter(torch.empty(replicas, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(replicas, 1, n_out))
        bound = 1 / math.sqrt(n_in)  # nn.Linear's default initialisation, for weight and bias
        with torch.no_grad():
            for r in range(replicas):
                g = generators[r] if generators is not None else None
                self.weight[r].uniform_(-bound, bound, generator=g)
                self.bias[r].uniform_(-bound, bound, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        r, n_in, n_out = self.weight.shape
        return f"replicas={r}, in_features={n_in}, out_features={n_out}"


def replica_mlp(sizes: Sequence[int], replicas: int, activation: type[nn.Module] = nn.ReLU,
                generators=None) -> nn.Sequential:
    """:func:`mlp` for R independent replicas: (R, N, sizes[0]) -> (R, N, sizes[-1]) (Chapter 5)."""
    if len(sizes) < 2:
        raise ValueError(f"replica_mlp needs at least an input and an output size, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(ReplicaLinear(replicas, n_in, n_out, generators))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
