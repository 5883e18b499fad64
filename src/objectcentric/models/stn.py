"""A spatial transformer network and the same classifier without it (Chapter 4, spatial transformer).

The spatial transformer network of Jaderberg et al. (2015) classifies an image
in two stages. A *localisation network* looks at the whole canvas and outputs
six numbers, the window ``theta`` (2 x 3) to read; the window is cropped out
with :func:`objectcentric.spatial.crop` (the chapter's convention: ``theta``
maps window coordinates to canvas coordinates) and a small convolutional
*classifier* reads the crop. Nothing tells the localisation network where the
digit is: the only signal is the classification loss, whose gradient reaches
``theta`` through the bilinear sampling.

The localisation network's last layer starts at the window where an upright,
centred digit sits (weights 0, bias the centre ``crop_size`` x ``crop_size``
pixels of the canvas), so at initialisation the network is the plain
classifier looking at the canvas's centre, and training moves the window
from there. The baseline (:func:`baseline_config`) is the same classifier
reading the whole canvas, with its layers widened until it has as many
parameters as the spatial transformer network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_image_batch
from ..modules import config_from
from ..spatial import crop

__all__ = ["MODELS", "STNConfig", "STN", "ConvClassifier", "LocalisationNet", "baseline_config", "build_model",
           "count_parameters"]

MODELS = ("stn", "baseline")  # the two models the chapter compares
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of MNIST's training pixels: the classifier standardises its input


@dataclass(frozen=True)
class STNConfig:
    """The settings of an :class:`STN` (Chapter 4): with ``transformer=False`` it is the plain classifier."""

    canvas_size: int = 42
    crop_size: int = 28
    transformer: bool = True
    classifier_channels: tuple[int, int, int] = (16, 32, 64)
    classifier_hidden: int = 64
    localisation_channels: tuple[int, int] = (20, 20)
    localisation_hidden: int = 50
    n_classes: int = 10


def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ConvClassifier(nn.Module):
    """Three convolutions, an average over a 3 x 3 grid of regions, two linear layers (Chapter 4).

    Two 5 x 5 convolutions each followed by 2 x 2 max pooling, one 3 x 3
    convolution, then each feature averaged over the nine regions of a 3 x 3
    grid: the classifier knows roughly *where* each feature was (as a fully
    connected layer over the whole feature map would), reads an image of any
    size, and has the same number of parameters whatever the size. Pixels are
    standardised with MNIST's mean and standard deviation first.
    """

    def __init__(self, channels: tuple[int, int, int], hidden: int, n_classes: int):
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(9 * c3, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((images - MNIST_MEAN) / MNIST_STD))


class LocalisationNet(nn.Module):
    """The canvas to the six numbers of a window (Chapter 4), as in Jaderberg et al.'s MNIST networks.

    2 x 2 max pooling, two 5 x 5 convolutions (the first followed by 2 x 2
    pooling), a hidden linear layer and the last linear layer, whose weights
    start at 0 and whose bias is ``initial_window``: every image starts with
    that window.
    """

    def __init__(self, canvas_size: int, channels: tuple[int, int], hidden: int, initial_window: torch.Tensor):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.MaxPool2d(2), nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 5), nn.ReLU(),
        )
        side = ((canvas_size // 2 - 4) // 2) - 4
        if side < 1:
            raise ValueError(f"canvas_size {canvas_size} is too small for the localisation network (at least 28)")
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU())
        self.to_theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.to_theta.weight)
        with torch.no_grad():
            self.to_theta.bias.copy_(initial_window.reshape(6))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_theta(self.hidden(self.features(images))).view(-1, 2, 3)


class STN(nn.Module):
    """Spatial transformer network: a localisation network picks a window, a classifier reads its crop (Chapter 4).

    Built from an :class:`STNConfig`, or from its fields as keywords. With
    ``transformer=False`` there is no localisation network and the classifier
    reads the whole canvas (the baseline).
    """

    def __init__(self, config: STNConfig | None = None, **settings):
        super().__init__()
        config = config_from(STNConfig, config, settings)
        if not config.crop_size <= config.canvas_size:
            raise ValueError(f"crop_size ({config.crop_size}) must not exceed canvas_size ({config.canvas_size})")
        self.config = config
        self.image_shape = (1, config.canvas_size, config.canvas_size)
        self.localisation = (LocalisationNet(config.canvas_size, tuple(config.localisation_channels),
                                             config.localisation_hidden, self.initial_window())
                             if config.transformer else None)
        self.classifier = ConvClassifier(tuple(config.classifier_channels), config.classifier_hidden,
                                         config.n_classes)

    def initial_window(self) -> torch.Tensor:
        """The centre ``crop_size`` x ``crop_size`` pixels of the canvas, where an undistorted digit sits: (2, 3)."""
        s = self.config.crop_size / self.config.canvas_size
        return torch.tensor([[s, 0.0, 0.0], [0.0, s, 0.0]])

    # --- the two stages ------------------------------------------------------------------
    def window(self, images: torch.Tensor) -> torch.Tensor:
        """The window each canvas is read through: (B, 2, 3), window coordinates to canvas coordinates."""
        images = check_image_batch(images, self.image_shape)
        if self.localisation is None:
            return torch.eye(2, 3, device=images.device).expand(len(images), 2, 3)
        return self.localisation(images)

    def glimpse(self, images: torch.Tensor) -> torch.Tensor:
        """What the classifier reads: the crop of each canvas's window (B, 1, crop, crop); the canvas itself without a transformer."""
        images = check_image_batch(images, self.image_shape)
        return self._glimpse(images)

    def _glimpse(self, images: torch.Tensor) -> torch.Tensor:
        if self.localisation is None:
            return images
        size = self.config.crop_size
        return crop(images, self.localisation(images), (size, size), validate=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes)."""
        return self.classifier(self._glimpse(check_image_batch(images, self.image_shape)))

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of the labels, averaged over the batch, and the accuracy of the most likely class."""
        images = check_image_batch(images, self.image_shape)
        labels = _check_labels(labels, len(images), self.config.n_classes)
        logits = self.classifier(self._glimpse(images))
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return {"loss": F.cross_entropy(logits, labels), "accuracy": accuracy.detach()}


def _check_labels(labels, batch: int, n_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32, torch.int16,
                                                                     torch.uint8, torch.int8):
        raise ValueError(f"labels must be an integer torch.Tensor shaped ({batch},), got "
                         f"{type(labels).__name__ if not isinstance(labels, torch.Tensor) else labels.dtype}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"labels must be shaped ({batch},), one per image, got {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0 .. {n_classes - 1}, got {labels.min().item()} .. {labels.max().item()}")
    return labels.long()


def baseline_config(config: STNConfig = STNConfig()) -> STNConfig:
    """The plain classifier of ``config``, widened to as many parameters as the spatial transformer network.

    Every width of the classifier (its channels and hidden units) is
    multiplied by one factor, the one (in steps of 0.01) whose parameter count
    comes closest to that of ``STN(config)``.
    """
    goal = count_parameters(STN(dataclasses.replace(config, transformer=True)))

    def widened(factor: float) -> STNConfig:
        return dataclasses.replace(config, transformer=False,
                                   classifier_channels=tuple(round(c * factor) for c in config.classifier_channels),
                                   classifier_hidden=round(config.classifier_hidden * factor))

    def size(candidate: STNConfig) -> int:
        return count_parameters(ConvClassifier(candidate.classifier_channels, candidate.classifier_hidden,
                                               candidate.n_classes))

    candidates = [widened(1 + i / 100) for i in range(301)]
    return min(candidates, key=lambda c: abs(size(c) - goal))


def build_model(model: str, config: STNConfig = STNConfig()) -> STN:
    """One of the chapter's two models by name (:data:`MODELS`): "stn" or its "baseline"."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    return STN(dataclasses.replace(config, transformer=True) if model == "stn" else baseline_config(config))
