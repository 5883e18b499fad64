"""Binarized MNIST, the protocol of the likelihood papers the book compares with."""

import torch


def stochastic_binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each pixel becomes 1 with probability equal to its grey value.

    Drawn afresh at every training step ("dynamic binarization"), this is the
    protocol under which VAE and IWAE test likelihoods on MNIST are reported
    (Burda et al., 2016); a Bernoulli likelihood then fits the data exactly.
    """
    if generator is None:
        return torch.bernoulli(images)
    return torch.bernoulli(images, generator=generator)
