"""D-VAE and D-VAE-ST: objects as prototype modifications (Chapter 5, D-VAE-ST).

**D-VAE.** One categorical latent b over K classes with a uniform prior. The
encoder (784-400-400-K, ReLU) gives the logits of q(b | x); the decoder
(one-hot K -> 800 -> 784, linear output) turns a class into the mean of a
Gaussian over pixels with a fixed variance of 0.15. Since b takes only K
values, the decoder can draw only K images, the *prototypes*: the D-VAE
explains every image as one of K prototypes plus Gaussian noise, and so
clusters the data.

**D-VAE-ST.** The same, with the prototype moved by an affine transformation
before it is compared with the image: a second network (784-400-400-12) gives
the mean and log-variance of the six numbers of a window ``theta = [A | t]``
(Chapter 4's convention) from the image alone; the prior on them is
N(identity, 0.01), and the network's last layer starts exactly at the prior.
The reconstruction is the prototype warped by ``theta``: the sampling grid
comes from ``F.affine_grid`` (:func:`objectcentric.spatial.sampling_grid`),
and the bilinear reading of the prototype is what ``F.grid_sample`` computes,
written with gathers (:func:`objectcentric.spatial.bilinear_taps`) so that it
is twice differentiable on any PyTorch and its taps are computed once for all
K prototypes.

The reconstruction term E_q[-log p(x | b, theta)] is the cost f(b) handed to a
gradient estimator (Chapter 3: ``exact``, ``reinforce``, ``nvil``,
``concrete``, ``rebar``, ``relax``); the KL terms are exact. ``theta`` is
sampled **once per image** in :meth:`DVAE.loss` and shared by every call of f
inside that estimate: the K evaluations of the exact gradient, and f(b), f(z)
and f(z̃) of REBAR and RELAX, all see the same transformation, so a control
variate is compared with the cost it is meant to track. (Seed 000's code drew
a fresh transform for each.) With K = 10 the exact gradient costs only K
decoder evaluations per image, and one-hot codes just read the K prototypes,
so it is cheap here and the most reliable choice.

**Replicas.** Both models hold R independent copies of all their networks
(``replicas``; :class:`~objectcentric.modules.ReplicaLinear`), trained side
by side in one batched call: the seeds of an experiment run at the cost of
one. Images come as (B, ...) for all replicas or (R, B, ...) for one batch
each; per-image outputs are (R, B, ...). Each replica's estimator parts are
its own (``n_groups = R``), so NVIL's baseline and RELAX's network read only
the relaxed sample, not the image. (The chapter's recipe trains one seed per
run, ``replicas = 1``; replicas remain for side-by-side experiments.)

**Settings.** :class:`DVAEConfig` holds the D-VAE's, :class:`DVAESTConfig`
adds the transformation network's; build a model from one, or from its fields
as keywords: ``DVAEST(num_classes=10)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import spatial
from ..checks import check_image_batch
from ..estimators import exact_expectation, make_estimator
from ..modules import ReplicaLinear, config_from, replica_mlp

PIXEL_VARIANCE = 0.15
TRANSFORM_PRIOR_VARIANCE = 0.01
LOG_VARIANCE_RANGE = (-12.0, 2.0)  # q(theta | x)'s log-variances are kept in here: no overflow, ever
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # theta = [[1, 0, 0], [0, 1, 0]], row by row


@dataclass(frozen=True)
class DVAEConfig:
    """The settings of a :class:`DVAE` (Chapter 5, D-VAE-ST)."""

    num_classes: int = 10
    estimator: str = "exact"
    replicas: int = 1
    image_shape: tuple[int, int, int] = (1, 28, 28)
    encoder_hidden: tuple[int, ...] = (400, 400)
    decoder_hidden: int = 800
    pixel_variance: float = PIXEL_VARIANCE
    temperature: float = 0.66
    marginal_weight: float = 0.0


@dataclass(frozen=True)
class DVAESTConfig(DVAEConfig):
    """The settings of a :class:`DVAEST`: the D-VAE's and the transformation network's (Chapter 5)."""

    transform_prior_variance: float = TRANSFORM_PRIOR_VARIANCE
    transform_hidden: tuple[int, ...] = (400, 400)


def _generators(seeds, replicas: int):
    """One random generator per replica, so that replica r's weights depend on its own seed alone."""
    if seeds is None:
        return None
    seeds = [int(s) for s in seeds]
    if len(seeds) != replicas:
        raise ValueError(f"need one seed per replica: {replicas} replicas, got {len(seeds)} seeds")
    return [torch.Generator().manual_seed(s) for s in seeds]


class DVAE(nn.Module):
    """A VAE with one categorical latent whose decoder draws K prototypes (Chapter 5, D-VAE-ST).

    Built from a :class:`DVAEConfig` or from its fields as keywords.
    ``seeds`` (one per replica) fix each replica's initial weights; without
    them the global random state is used.
    """

    CONFIG = DVAEConfig

    def __init__(self, config: DVAEConfig | None = None, *, seeds=None, **settings):
        super().__init__()
        config = config_from(self.CONFIG, config, settings)
        if not isinstance(config, self.CONFIG):
            raise TypeError(f"{type(self).__name__} is built from a {self.CONFIG.__name__}, got {type(config).__name__}")
        if config.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {config.num_classes}")
        self.config = config
        self.num_classes, self.replicas = int(config.num_classes), int(config.replicas)
        self.image_shape = tuple(config.image_shape)
        self.n_pixels = math.prod(self.image_shape)
        self.pixel_variance = float(config.pixel_variance)
        self.marginal_weight = float(config.marginal_weight)
        generators = _generators(seeds, self.replicas)
        # image -> K logits of q(b | x)
        self.encoder = replica_mlp([self.n_pixels, *config.encoder_hidden, self.num_classes],
                                   self.replicas, generators=generators)
        # one-hot class (or a relaxed point of the simplex) -> mean pixel values, linear output
        self.decoder = replica_mlp([self.num_classes, config.decoder_hidden, self.n_pixels],
                                   self.replicas, generators=generators)
        self.estimator = make_estimator(config.estimator, self.num_classes, temperature=config.temperature,
                                        n_groups=self.replicas)
        self._build_transform(generators)

    def _build_transform(self, generators) -> None:
        """D-VAE-ST adds its transformation network here; the D-VAE has none."""

    # --- inputs -------------------------------------------------------------------------------
    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """Images as (R, B, pixels): a batch (B, ...) is shared by all replicas, (R, B, ...) gives each its own."""
        dtype = self.encoder[0].weight.dtype  # float64 or float16 images are converted to the model's dtype
        per_replica = isinstance(x, torch.Tensor) and (
            x.dim() == len(self.image_shape) + 2 or (x.dim() == 3 and x.shape[-1] == self.n_pixels))
        if per_replica:
            if x.shape[0] != self.replicas:
                raise ValueError(f"a per-replica batch must be shaped ({self.replicas}, batch, ...), one batch "
                                 f"per replica; got {tuple(x.shape)}")
            flat = check_image_batch(x.flatten(0, 1), self.image_shape, dtype=dtype).flatten(1)
            return flat.view(self.replicas, x.shape[1], self.n_pixels)
        flat = check_image_batch(x, self.image_shape, dtype=dtype).flatten(1)
        return flat.unsqueeze(0).expand(self.replicas, *flat.shape)

    def _groups(self, batch: int, device) -> torch.Tensor | None:
        """Which replica each row of a flattened (R * B, K) batch belongs to, for the estimator."""
        if self.replicas == 1:
            return None
        return torch.arange(self.replicas, device=device).repeat_interleave(batch)

    # --- the parts ----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(b | x), (R, B, K)."""
        return self.encoder(self.batch(x))

    def prototype_means(self) -> torch.Tensor:
        """The decoder's output for each one-hot class: (R, K, pixels), unclipped."""
        eye = torch.eye(self.num_classes, device=self.encoder[0].weight.device)
        return self.decoder(eye.expand(self.replicas, -1, -1))

    @torch.no_grad()
    def prototypes(self) -> torch.Tensor:
        """The K prototypes as images (R, K, C, H, W), clipped to [0, 1] for display."""
        return self.prototype_means().clamp(0, 1).view(self.replicas, self.num_classes, *self.image_shape)

    def decode(self, b: torch.Tensor, prototype_means: torch.Tensor | None = None) -> torch.Tensor:
        """Mean images (R, B, pixels) for codes b (R, B, K), one-hot or relaxed.

        One-hot codes read the K prototypes (``prototype_means``, computed here
        if not given): the same numbers as running the decoder on each row, and
        the same gradients for its weights. Relaxed codes go through the decoder.
        """
        if bool((((b == 0) | (b == 1)).all() & (b.sum(-1) == 1).all())):
            return torch.bmm(b, self.prototype_means() if prototype_means is None else prototype_means)
        return self.decoder(b)

    def negative_log_likelihood(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """-log N(x; mean, 0.15 I) summed over pixels, (R, B): the reconstruction cost in nats."""
        squared = ((x - mean) ** 2).sum(-1)
        return squared / (2 * self.pixel_variance) + 0.5 * self.n_pixels * math.log(2 * math.pi * self.pixel_variance)

    def sample_transform(self, x: torch.Tensor):
        """``(warp, kl)``: the D-VAE draws nothing (no warp, KL 0); D-VAE-ST overrides this."""
        return None, x.new_zeros(x.shape[:2])

    def taps(self, theta: torch.Tensor):
        """The bilinear taps that warp an image by each theta (R, B, 2, 3): see :func:`spatial.bilinear_taps`."""
        size = tuple(self.image_shape[1:])
        return spatial.bilinear_taps(spatial.sampling_grid(theta.reshape(-1, 2, 3), size), size)

    def warp(self, images: torch.Tensor, taps) -> torch.Tensor:
        """Images (R, B, pixels) warped by one transformation each (``taps``); unchanged without taps."""
        if taps is None:
            return images
        r, b, _ = images.shape
        warped = spatial.apply_taps(images.reshape(r * b, *self.image_shape), taps, self.image_shape[1:])
        return warped.view(r, b, self.n_pixels)

    def reconstruction_cost(self, x: torch.Tensor, taps=None):
        """The estimators' cost f: codes (R * B, K) -> -log p(x | b, theta) per image, (R * B,).

        ``x`` is (R, B, pixels); ``taps`` the warps of the transformations drawn
        for these images, fixed inside f: every call of f, whichever code it is
        given, warps with the same transformation.
        """
        r, batch, _ = x.shape
        prototypes = []  # computed at the first call and reused by the others (the weights do not change)

        def cost(b: torch.Tensor) -> torch.Tensor:
            if not prototypes:
                prototypes.append(self.prototype_means())
            mean = self.warp(self.decode(b.view(r, batch, self.num_classes), prototypes[0]), taps)
            return self.negative_log_likelihood(x, mean).flatten()

        return cost

    def kl_categorical(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q(b | x) || uniform) = Σ_k q_k log q_k + log K, per image."""
        log_q = logits.log_softmax(-1)
        return (log_q.exp() * log_q).sum(-1) + math.log(self.num_classes)

    def marginal_kl(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q̄(b) || uniform) per replica, (R,), where q̄ averages q(b | x) over the batch.

        The ELBO's KL term, averaged over the data, is I(x; b) + KL(q̄(b) || p(b)):
        the second part is what keeps every class in use. ``marginal_weight``
        adds it once more, times that weight, against collapse.
        """
        q_bar = logits.softmax(-1).mean(-2)
        return (q_bar * (q_bar.clamp_min(1e-12).log() + math.log(self.num_classes))).sum(-1)

    # --- the objective ------------------------------------------------------------------------
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The negative ELBO, its reconstruction through the estimator, and the estimator's control loss.

        ``loss`` sums the replicas' mean negative ELBOs (so each replica gets
        exactly the gradient of its own), plus ``marginal_weight`` times their
        :meth:`marginal_kl` and the control losses; the other entries are means
        over replicas and images, for the history.
        """
        x = self.batch(x)
        r, batch, _ = x.shape
        logits = self.encoder(x)
        taps, kl_transform = self.sample_transform(x)  # once per image, shared by every call of f below
        out = self.estimator(logits.reshape(r * batch, self.num_classes), self.reconstruction_cost(x, taps),
                             group=self._groups(batch, x.device))
        kl = self.kl_categorical(logits)
        per_image = out.surrogate.view(r, batch) + kl + kl_transform
        neg_elbo = out.cost.view(r, batch) + kl.detach() + kl_transform.detach()
        marginal = self.marginal_kl(logits)
        return {
            "loss": per_image.mean(1).sum() + self.marginal_weight * marginal.sum() + r * out.control_loss,
            "neg_elbo": neg_elbo.mean(),
            "reconstruction": out.cost.mean(),
            "kl": kl.mean().detach(),
            "kl_transform": kl_transform.mean().detach(),
            "control_loss": out.control_loss.detach(),
            "marginal_kl": marginal.mean().detach(),
        }

    # --- using a trained model ----------------------------------------------------------------
    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(b | x) for each image: (R, B) integers."""
        return self.encode(x).argmax(-1)

    @torch.no_grad()
    def neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """-ELBO per image (R, B), with the expectation over the K classes done exactly (theta: one sample)."""
        x = self.batch(x)
        logits = self.encoder(x)
        taps, kl_transform = self.sample_transform(x)
        expected = exact_expectation(logits, self.reconstruction_cost(x, taps))  # (R, B)
        return expected + self.kl_categorical(logits) + kl_transform

    def transform_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The mean transformation of each image, (R, B, 2, 3); the identity for the D-VAE."""
        x = self.batch(x)
        return x.new_tensor(IDENTITY).view(2, 3).expand(*x.shape[:2], 2, 3)

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """For each image: its class, the prototype, the mean transformation and the reconstruction.

        Returns ``class`` (R, B), ``prototype`` and ``reconstruction`` (R, B, C, H, W)
        in [0, 1], ``theta`` (R, B, 2, 3).
        """
        x = self.batch(x)
        r, batch, _ = x.shape
        k = self.encoder(x).argmax(-1)
        prototype = torch.bmm(nn.functional.one_hot(k, self.num_classes).to(x), self.prototype_means())
        theta = self.transform_matrix(x)
        reconstruction = self.warp(prototype, self.taps(theta))
        shape = (r, batch, *self.image_shape)
        return {"class": k, "prototype": prototype.clamp(0, 1).view(shape), "theta": theta,
                "reconstruction": reconstruction.clamp(0, 1).view(shape)}

    # --- set-up and surgery, used by the training recipe -----------------------------------------
    @torch.no_grad()
    def init_prototypes(self, images: torch.Tensor) -> None:
        """Set the decoder's last layer so that its K prototypes are ``images`` (R, K, C, H, W) or (R, K, pixels).

        The hidden codes h_k of the K one-hot inputs are kept; the last layer is
        the least-norm solution of h_k W + c = image_k (c: the images' mean),
        exact since K is far below the 800 hidden units.
        """
        target = images.reshape(self.replicas, self.num_classes, self.n_pixels).to(self.encoder[0].weight)
        eye = torch.eye(self.num_classes, device=target.device).expand(self.replicas, -1, -1)
        hidden = self.decoder[:-1](eye)  # (R, K, 800)
        last: ReplicaLinear = self.decoder[-1]
        bias = target.mean(1, keepdim=True)
        last.bias.copy_(bias)
        last.weight.copy_(torch.linalg.pinv(hidden) @ (target - bias))

    def cluster_parameters(self):
        """The parameters that hold one slice per class, and the dimension of the class in each.

        ``(parameter, dim)``: the decoder's first layer (class k is its input
        row k) and the encoder's last layer (class k is its output column k).
        """
        first, last = self.decoder[0], self.encoder[-1]
        return [(first.weight, 1), (last.weight, 2), (last.bias, 2)]

    @torch.no_grad()
    def split_cluster(self, replica: int, source: int, target: int, noise: float = 0.05,
                      generator: torch.Generator | None = None) -> None:
        """Make class ``target`` a perturbed copy of class ``source`` in one replica, sharing its images.

        The decoder's input row for ``target`` becomes ``source``'s plus noise
        (``noise`` times its standard deviation), so the two prototypes start
        almost equal; the encoder's output for ``target`` becomes ``source``'s
        and both lose log 2, so that the images of ``source`` are split between
        the two, which then specialise. What was in ``target`` is dropped.
        """
        first = self.decoder[0].weight  # (R, K, hidden)
        row = first[replica, source]
        jitter = torch.randn(row.shape, generator=generator).to(row) * noise * row.std()
        first[replica, target] = row + jitter
        last = self.encoder[-1]
        last.weight[replica, :, target] = last.weight[replica, :, source]
        last.bias[replica, :, source] -= math.log(2)
        last.bias[replica, :, target] = last.bias[replica, :, source]

    def replica(self, index: int) -> "DVAE":
        """Replica ``index`` alone, as a model with one replica (for shipping and pictures)."""
        if not 0 <= index < self.replicas:
            raise ValueError(f"replica index must lie in [0, {self.replicas}), got {index}")
        single = type(self)(dataclasses.replace(self.config, replicas=1))
        state = {name: value[index:index + 1] for name, value in self.state_dict().items()}
        single.load_state_dict(state)
        return single.to(self.encoder[0].weight.device)


class DVAEST(DVAE):
    """The D-VAE whose prototypes are moved by an inferred affine transformation (Chapter 5, D-VAE-ST).

    Built from a :class:`DVAESTConfig` or from its fields as keywords.
    """

    CONFIG = DVAESTConfig

    def _build_transform(self, generators) -> None:
        variance, hidden = self.config.transform_prior_variance, self.config.transform_hidden
        # image -> mean and log-variance of the 6 numbers of theta
        self.transformer = replica_mlp([self.n_pixels, *hidden, 12], self.replicas, generators=generators)
        prior_mean = torch.tensor(IDENTITY)
        prior_log_variance = torch.full((6,), math.log(variance))
        self.register_buffer("prior_mean", prior_mean, persistent=False)
        self.register_buffer("prior_log_variance", prior_log_variance, persistent=False)
        with torch.no_grad():  # the last layer starts at the prior, whatever the image
            self.transformer[-1].weight.zero_()
            self.transformer[-1].bias.copy_(torch.cat([prior_mean, prior_log_variance]))

    def transform_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(theta | x), each (R, B, 6), from images (R, B, pixels).

        The log-variance is clamped to ``LOG_VARIANCE_RANGE`` (the prior's is
        log 0.01 = -4.6), so that exp never overflows.
        """
        mean, log_variance = self.transformer(x).chunk(2, dim=-1)
        return mean, log_variance.clamp(*LOG_VARIANCE_RANGE)

    def sample_transform(self, x: torch.Tensor):
        """One theta per image (reparameterized), as the taps that warp by it, and KL(q(theta | x) || prior)."""
        mean, log_variance = self.transform_posterior(x)
        theta = mean + (0.5 * log_variance).exp() * torch.randn_like(mean)
        prior_var = self.prior_log_variance.exp()
        kl = 0.5 * ((log_variance.exp() + (mean - self.prior_mean) ** 2) / prior_var - 1
                    - log_variance + self.prior_log_variance).sum(-1)
        return self.taps(theta), kl

    def transform_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The mean transformation q(theta | x) infers for each image, (R, B, 2, 3)."""
        mean, _ = self.transform_posterior(self.batch(x))
        return mean.view(*mean.shape[:2], 2, 3)
