"""Stacked Capsule Autoencoders (Kosiorek, Sabour, Teh and Hinton, 2019) (Chapter 8, SCAE).

An SCAE explains an image in two stages, each an autoencoder:

- the **part capsule autoencoder** (PCAE) finds M = 40 parts. A CNN reads the
  40 x 40 image and, for each part, pools an attention-weighted summary into a
  *part capsule*: a pose (an affine map, 6 numbers), a presence probability
  and 16 *special features*. Each part owns a learned 11 x 11 template with an
  alpha channel; the decoder paints every template on the canvas with its
  part's pose and explains each pixel as a Gaussian mixture (standard
  deviation 1) over the painted templates and a flat background, mixed by the
  painted alpha maps and the parts' presences;
- the **object capsule autoencoder** (OCAE) explains the *parts*. A Set
  Transformer reads the set of part capsules and gives K = 32 *object
  capsules*; each object has a pose relative to the viewer (OV) and, for every
  part, a learned object-part relation (OP = a static part + a small
  input-dependent part), so it *votes* OV . OP for every part's pose. Each
  part's pose is explained as a mixture over the objects' votes (and a dummy
  component), weighted by the votes' presences.

Objects never reconstruct pixels: the image is reconstructed from the
encoder's part poses, and the OCAE is trained on those poses, held fixed (a
stop-gradient). Four sparsity losses make few objects explain each image and
every object be used in some images; the objects' presences (or the parts'
mass each object explains) then cluster by digit class without labels.

This module holds the model and its loss; the defaults of :class:`SCAEConfig`
are the official MNIST run's (``run_mnist.sh`` of the authors' code), read from
the released TensorFlow code. Conventions and choices worth knowing:

- **The pose maps template coordinates to image coordinates** (the
  conventions of :mod:`objectcentric.spatial`, Chapter 4), so a scale below 1
  *shrinks* the template, and painting a template samples it through the
  *inverse* map (:func:`objectcentric.spatial.paint`). The official code does
  the same (``AffineGridWarper(...).inverse()``); PyTorch ports that hand the
  pose to ``F.affine_grid`` uninverted make an 11 x 11 stroke cover the whole
  canvas. ``SCAEConfig(invert_pose=False)`` reproduces that mistake, for the
  chapter's ablation.
- **Mixing logits from an alpha channel** (``alpha_channel=True``, the
  official MNIST run): each template has a learned alpha map, painted like the
  template. ``alpha_channel=False`` uses the painted template itself divided by
  a learned temperature (the "coupled" variant the ports use), for the ablation.
- **Normalised coordinates** are :mod:`~objectcentric.spatial`'s (pixel
  edges at -1 and +1); the official sampler puts the corner pixels' *centres*
  at -1 and +1 (of the template and of the canvas), so for the same pose its
  templates come out about 7 % larger (39/10 against 40/11 canvas pixels per
  template pixel). The encoder learns the poses, so only their scale's range
  shifts.
- **Set Transformer masking** is the official one: attention logits get
  ``-(1 - presence) * 1e32``. With continuous presences this is no soft mask:
  in float32 the parts whose presence is (numerically) the largest take all
  the attention, and once presences saturate at 1 only the saturated parts are
  attended to. Kept as released.
- **Noise on presence logits** (uniform, width 4, for parts and for objects)
  is added in training and, as in the official code, in evaluation too
  (``eval_noise=True``); ``eval_noise=False`` gives deterministic features.
- **Numerics.** ``log(presence)`` is computed as ``logsigmoid(logit)``
  (the official code takes a clamped log of the sigmoid: the same values where
  both are finite).
- **Speed.** The same functions, computed in orders that suit a CPU: the
  per-capsule networks as one batched matrix product over all capsules; all
  B x M templates and alpha maps painted in one ``grid_sample`` call on a
  grid built by one multiply-add (:func:`canvas_grid`); the image mixture in a
  fused pass with a hand-written gradient
  (:func:`template_mixture_log_likelihood`); the votes composed entry by
  entry; the seeds' attention with its linear maps multiplied out. The tests
  compare each with the plain computation.
- **Initialisation** follows Sonnet 1's defaults: weights truncated normal
  with standard deviation 1 / sqrt(fan-in), biases 0, free variables (the
  static OP, the object seeds, the background value, the temperature)
  Glorot-uniform as TensorFlow's ``get_variable`` draws them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_image_batch
from ..modules import ReplicaLinear
from ..spatial import ALIGN_CORNERS, invert_affine, pixel_centers

__all__ = [
    "SCAEConfig",
    "SCAE",
    "SCAETrace",
    "PartEncoder",
    "TemplateDecoder",
    "SetTransformer",
    "ObjectCapsules",
    "geometric_transform",
    "canvas_grid",
    "paint_templates",
    "template_mixture_log_likelihood",
    "mixture_log_likelihood",
    "part_log_likelihood",
    "prior_sparsity",
    "posterior_sparsity",
]

DUMMY_LOG = -2.0 * math.log(10.0)  # the dummy vote's log density and its mixing logit
MASK = 1e32  # the official attention mask's size


@dataclass(frozen=True)
class SCAEConfig:
    """Sizes, loss weights and the recipe's optimiser of an SCAE; defaults are the official MNIST run's.

    Model (``run_mnist.sh`` and ``model_config.py``): a 40 x 40 canvas; 40 part
    capsules with 6 pose numbers, 16 special features and an 11 x 11 one-channel
    template each (sigmoid of a free parameter, scaled by an intensity from the
    special features); an encoder CNN of four 3 x 3 convolutions with 128
    channels and strides 2, 2, 1, 1 (valid padding: 40 -> 19 -> 9 -> 7 -> 5);
    pixel standard deviation 1; 32 object capsules from a Set Transformer of 3
    layers (1 head, 16 dimensions, layer norm, 256 output dimensions), with
    per-capsule networks [128, 32] and [128, outputs].

    Loss weights: part-pose likelihood 1, dynamic OP penalty 10, prior
    sparsity within / between examples 2 and 0.35, posterior sparsity 0.7 and
    0.2. ``prior_within_constant = 0`` means ``n_objects / n_classes`` (3.2):
    ``run_mnist.sh`` passes 4.3 under a flag name the code never defines, so the
    released run used 3.2.

    The recipe's optimiser (for the training code, not used by the model):
    RMSProp, learning rate 3e-5 (constant: the official decay schedule is built
    but never handed to the optimiser), momentum 0.9, epsilon
    ``1e-2 / batch_size**2``, batch 128, 300k steps, no gradient clipping.
    TensorFlow 1's RMSProp differs from ``torch.optim.RMSprop``'s defaults: its
    decay is 0.9 (``alpha=0.9`` in torch), its epsilon is added *inside* the
    square root, and its running mean of squares starts at 1, not 0.
    """

    canvas: int = 40
    n_parts: int = 40
    template_size: int = 11
    n_special: int = 16
    encoder_channels: tuple[int, ...] = (128, 128, 128, 128)
    encoder_strides: tuple[int, ...] = (2, 2, 1, 1)
    colour_hidden: int = 32
    part_noise: float = 4.0
    pixel_std: float = 1.0
    alpha_channel: bool = True
    invert_pose: bool = True
    n_objects: int = 32
    set_layers: int = 3
    set_heads: int = 1
    set_dims: int = 16
    set_output: int = 256
    object_params: int = 32
    object_hidden: int = 128
    object_noise: float = 4.0
    n_classes: int = 10
    eval_noise: bool = True
    caps_ll_weight: float = 1.0
    dynamic_l2_weight: float = 10.0
    prior_within_weight: float = 2.0
    prior_between_weight: float = 0.35
    prior_within_constant: float = 0.0
    posterior_within_weight: float = 0.7
    posterior_between_weight: float = 0.2
    # The recipe's optimiser and budget (read by the training code, not by the model).
    learning_rate: float = 3e-5
    rmsprop_momentum: float = 0.9
    rmsprop_decay: float = 0.9
    rmsprop_eps_times_batch_squared: float = 1e-2
    batch_size: int = 128
    train_steps: int = 300_000

    def __post_init__(self):
        if len(self.encoder_channels) != len(self.encoder_strides):
            raise ValueError("encoder_channels and encoder_strides must have the same length, got "
                             f"{self.encoder_channels} and {self.encoder_strides}")
        if self.encoder_grid < 1:
            raise ValueError(f"the encoder shrinks a {self.canvas} x {self.canvas} canvas to nothing")
        for name in ("n_parts", "n_objects", "template_size", "set_heads", "n_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def encoder_grid(self) -> int:
        """The side of the encoder's output map (5 for the defaults)."""
        size = self.canvas
        for stride in self.encoder_strides:
            size = (size - 3) // stride + 1
        return size

    @property
    def part_input_dims(self) -> int:
        """What the Set Transformer reads per part: pose 6, 1 - presence, special features, template pixels."""
        return 6 + 1 + self.n_special + self.template_size ** 2

    @property
    def rmsprop_eps(self) -> float:
        return self.rmsprop_eps_times_batch_squared / self.batch_size ** 2

    @property
    def within_constant(self) -> float:
        return self.prior_within_constant or self.n_objects / self.n_classes


# --- initialisation ---------------------------------------------------------------------------
def _sonnet_init(module: nn.Module) -> None:
    """Sonnet 1's defaults: weights truncated normal (2 std) with std 1 / sqrt(fan-in), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            std = 1.0 / math.sqrt(m.weight[0].numel())
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, ReplicaLinear):  # (R, in, out): fan-in is the middle axis
            std = 1.0 / math.sqrt(m.weight.shape[1])
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(m.bias)


def _glorot(*shape: int) -> torch.Tensor:
    """TensorFlow's default ``get_variable`` draw: Glorot uniform with TF's fan-in and fan-out."""
    if len(shape) == 1:
        fan_in = fan_out = shape[0]
    else:
        receptive = math.prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.empty(shape).uniform_(-limit, limit)


# --- geometry, likelihoods and losses (pure functions) ----------------------------------------
def _transform_planes(raw: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """:func:`geometric_transform` on the six numbers given as six tensors: the map's six entries, row by row."""
    sx, sy, angle, shear, tx, ty = raw
    sx, sy = torch.sigmoid(sx) + 1e-2, torch.sigmoid(sy) + 1e-2
    shear, tx, ty = torch.tanh(5 * shear), torch.tanh(5 * tx), torch.tanh(5 * ty)
    angle = angle * (2 * math.pi)
    c, s = torch.cos(angle), torch.sin(angle)
    return sx * c + shear * sy * s, -sx * s + shear * sy * c, tx, sy * s, sy * c, ty


def geometric_transform(raw: torch.Tensor) -> torch.Tensor:
    """Six free numbers (..., 6) to an affine map (..., 2, 3), the official parameterisation.

    ``raw = (sx, sy, angle, shear, tx, ty)`` become scales ``sigmoid + 0.01``
    (0.01 .. 1.01), shear and shifts ``tanh(5 .)`` (-1 .. 1) and an angle
    ``2 pi .``; the map is ``Shear(shear) @ diag(sx, sy) @ R(angle)`` with shift
    ``(tx, ty)``, i.e. the rows ``[sx c + shear sy s, -sx s + shear sy c, tx]``
    and ``[sy s, sy c, ty]``. (Chapter 4's :func:`~objectcentric.spatial.affine_matrix`
    composes the same three factors in another order; both reach every affine
    map, this one is the released code's.) As a pose it maps template
    coordinates to image coordinates.
    """
    return torch.stack(_transform_planes(raw.unbind(-1)), -1).unflatten(-1, (2, 3))


def _compose_planes(outer: tuple[torch.Tensor, ...], inner: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """:func:`objectcentric.spatial.compose_affine` on maps given entry by entry (six broadcasting tensors each).

    The votes are K x B x M = 160k compositions; as a batched product of
    2 x 2 matrices, or with the six entries as a trailing axis, they cost a
    CPU more than the rest of the object capsules.
    """
    a, b, tx, c, d, ty = outer
    ia, ib, itx, ic, id_, ity = inner
    return (a * ia + b * ic, a * ib + b * id_, a * itx + b * ity + tx,
            c * ia + d * ic, c * ib + d * id_, c * itx + d * ity + ty)


class _CanvasGrid(torch.autograd.Function):
    """:func:`canvas_grid` with a backward pass of two matrix products instead of broadcast reductions."""

    @staticmethod
    def forward(ctx, theta, size):
        n = theta.shape[0]
        base = pixel_centers(size).to(theta)
        # Row i of the grid is column_terms + y_i * row_step, each (N, size * 2) with (x, y) interleaved.
        column_terms = theta[:, None, :, 0] * base[None, :, None] + theta[:, None, :, 2]      # (N, size, 2)
        row_step = theta[:, None, :, 1].expand(n, size, 2)
        grid = torch.addcmul(column_terms.reshape(n, 1, 2 * size), base.view(1, size, 1),
                             row_step.reshape(n, 1, 2 * size))
        ctx.save_for_backward(base)
        return grid.view(n, size, size, 2)

    @staticmethod
    def backward(ctx, grad):
        (base,) = ctx.saved_tensors
        n, size = grad.shape[:2]
        # Sum over rows, plain and weighted by y_i: (2, size) @ (N, size, 2 size) -> (N, 2, size, 2).
        rows = torch.stack([torch.ones_like(base), base])
        sums = torch.matmul(rows, grad.reshape(n, size, 2 * size)).view(n, 2, size, 2)
        # theta[:, c, 0] multiplied x_j, theta[:, c, 1] y_i, theta[:, c, 2] nothing.
        grad_theta = torch.stack([(sums[:, 0] * base[None, :, None]).sum(1), sums[:, 1].sum(1), sums[:, 0].sum(1)], -1)
        return grad_theta, None


def canvas_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """Where each pixel of a square ``size`` window reads its source: (N, size, size, 2), for theta (N, 2, 3).

    The same numbers as :func:`objectcentric.spatial.sampling_grid` (``F.affine_grid``
    with ``align_corners=False``; the tests compare them and their
    gradients), computed as one multiply-add over rows: ``F.affine_grid``
    multiplies an (N, size^2, 3) base grid by theta, a batched product with an
    inner size of 3 that on a CPU costs several times more. No checks, for
    the model's inner loop.
    """
    return _CanvasGrid.apply(theta, size)


def paint_templates(templates: torch.Tensor, pose: torch.Tensor, canvas: int,
                    invert_pose: bool = True) -> torch.Tensor:
    """Paint templates (B, M, C, t, t) on the canvas with their poses (B, M, 2, 3): (B, M, C, canvas, canvas).

    The pose maps template coordinates to image coordinates, so the canvas
    reads each template through its inverse (:func:`objectcentric.spatial.paint`,
    computed the same way): bilinearly, with zeros outside the template, all
    B x M templates in one ``grid_sample`` call. ``invert_pose=False`` hands
    the pose to the sampler as it is (the PyTorch ports' mistake): then the
    template covers the part of the canvas that the pose maps *onto* the
    template, and a scale below 1 magnifies it.
    """
    b, m, c, t, _ = templates.shape
    theta = pose.reshape(b * m, 2, 3)
    if invert_pose:
        theta = invert_affine(theta)
    painted = F.grid_sample(templates.reshape(b * m, c, t, t), canvas_grid(theta, canvas), mode="bilinear",
                            padding_mode="zeros", align_corners=ALIGN_CORNERS)
    return painted.view(b, m, c, canvas, canvas)


def mixture_log_likelihood(images: torch.Tensor, means: torch.Tensor, mixing_logits: torch.Tensor,
                           std: float = 1.0) -> torch.Tensor:
    """Per-pixel Gaussian mixture log-likelihood, summed over pixels: (B,).

    ``images`` (B, C, H, W); ``means`` (B, K, C, H, W), one image per
    component; ``mixing_logits`` (B, K, 1 or C, H, W), normalised over the K
    components at every pixel. Pixel x has density
    ``sum_k softmax(logits)_k N(x | mean_k, std^2)``.
    """
    log_mix = mixing_logits - torch.logsumexp(mixing_logits, 1, keepdim=True)
    log_normal = -0.5 * ((images.unsqueeze(1) - means) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_mix + log_normal, 1).flatten(1).sum(1)


class _TemplateMixture(torch.autograd.Function):
    """:func:`template_mixture_log_likelihood` with a hand-written backward pass (see there)."""

    @staticmethod
    def forward(ctx, images, painted, log_presence, bg_mean, bg_logit, std):
        b, m = painted.shape[:2]
        x = images.reshape(b, 1, -1)
        pixels = x.shape[-1]
        flat = painted.reshape(b, m, 2, pixels)
        means, alpha = flat[:, :, 0], flat[:, :, 1]
        a = alpha + log_presence.unsqueeze(-1)                                       # mixing logits (B, M, P)
        top = torch.maximum(a.amax(1), bg_logit)                                     # (B, P), for stability
        a.sub_(top.unsqueeze(1))
        d = x - means
        d_bg = x[:, 0] - bg_mean
        log_weighted = torch.addcmul(a, d, d, value=-0.5 / std ** 2)                 # log w_k N_k - top, + const
        log_weighted_bg = (bg_logit - top) - 0.5 / std ** 2 * d_bg ** 2
        top_weighted = torch.maximum(log_weighted.amax(1), log_weighted_bg)          # (B, P)
        weighted = log_weighted.sub_(top_weighted.unsqueeze(1)).exp_()
        weighted_bg = torch.exp(log_weighted_bg - top_weighted)
        weights = a.exp_()                                                           # w_k / exp(top)
        weight_bg = torch.exp(bg_logit - top)
        total_weighted = weighted.sum(1) + weighted_bg
        total_weight = weights.sum(1) + weight_bg
        ctx.save_for_backward(weighted, weights, d, weighted_bg, weight_bg, d_bg, total_weighted, total_weight)
        ctx.std = std
        ctx.shapes = (painted.shape, log_presence.shape, bg_mean.shape, bg_logit.shape, images.shape)
        constant = pixels * (math.log(std) + 0.5 * math.log(2 * math.pi))
        return (total_weighted.log() + top_weighted - total_weight.log()).sum(-1) - constant

    @staticmethod
    def backward(ctx, grad):
        weighted, weights, d, weighted_bg, weight_bg, d_bg, total_weighted, total_weight = ctx.saved_tensors
        painted_shape, presence_shape, bg_mean_shape, bg_logit_shape, images_shape = ctx.shapes
        inv_var = 1.0 / ctx.std ** 2
        b, m, pixels = weighted.shape
        scale_w = (grad[:, None] / total_weighted).unsqueeze(1)                      # (B, 1, P)
        scale_p = (grad[:, None] / total_weight).unsqueeze(1)
        responsibility = weighted * scale_w                                          # g * posterior
        grad_painted = weighted.new_empty(b, m, 2, pixels)
        torch.sub(responsibility, weights.mul_(scale_p), out=grad_painted[:, :, 1])  # d/d logits
        torch.mul(responsibility, d, out=grad_painted[:, :, 0])                      # d/d means
        if inv_var != 1.0:
            grad_painted[:, :, 0].mul_(inv_var)
        resp_bg = weighted_bg * scale_w[:, 0]
        grad_presence = grad_painted[:, :, 1].sum(-1).reshape(presence_shape) if ctx.needs_input_grad[2] else None
        grad_bg_logit = (resp_bg - weight_bg * scale_p[:, 0]).sum().reshape(bg_logit_shape)
        grad_bg_mean = (resp_bg * d_bg).sum().mul(inv_var).reshape(bg_mean_shape)
        grad_images = None
        if ctx.needs_input_grad[0]:
            grad_images = -inv_var * ((responsibility * d).sum(1) + resp_bg * d_bg)
            grad_images = grad_images.reshape(images_shape)
        return grad_images, grad_painted.reshape(painted_shape), grad_presence, grad_bg_mean, grad_bg_logit, None


def template_mixture_log_likelihood(images: torch.Tensor, painted: torch.Tensor, log_presence: torch.Tensor,
                                    bg_mean: torch.Tensor, bg_logit: torch.Tensor, std: float = 1.0
                                    ) -> torch.Tensor:
    """The image log-likelihood of the alpha-channel decoder, fused: (B,).

    ``painted`` (B, M, 2, H, W) holds each painted template (channel 0) and its
    painted alpha map (channel 1); ``log_presence`` (B, M); ``bg_mean`` and
    ``bg_logit`` one number each, the background's value and mixing logit.
    Equals ``mixture_log_likelihood(images, cat(templates, background),
    cat(alpha + log_presence, bg_logit), std)`` (the tests compare values and
    gradients), but computes the mixture in a few passes over the (B, M, H, W)
    arrays and writes their gradients directly: the mixture is the costliest
    part of the model after the encoder's convolutions. The weights and the
    weighted densities are each scaled by their largest term at every pixel,
    so that nothing overflows or underflows.
    """
    return _TemplateMixture.apply(images, painted, log_presence, bg_mean, bg_logit, float(std))


def part_log_likelihood(poses: torch.Tensor, presence: torch.Tensor, votes: torch.Tensor,
                        vote_log_presence: torch.Tensor, scales: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """How well the objects' votes explain the part poses: ``(log-likelihood (B,), posterior (B, K, M))``.

    ``poses`` (B, M, 6) and ``presence`` (B, M): the parts; ``votes``
    (B, K, M, 6), ``vote_log_presence`` (B, K, M) and ``scales`` (B, K, M): each
    object's vote for each part, its log presence and its isotropic standard
    deviation. Part m's log density is
    ``logsumexp_k [log a_km + log N(pose_m | vote_km, scale_km^2 I)]`` with one
    more, dummy component of log density and log weight -2 ln 10 each (a part
    no object explains costs little); the log presences are *not* normalised
    over k (as released). Each part's term is weighted by its presence and the
    terms are summed over parts. The posterior is the softmax of the same
    terms over the components, without the dummy's column: which object
    explains which part.
    """
    squared = ((poses.unsqueeze(1) - votes) ** 2).sum(-1)                         # (B, K, M)
    return _part_log_likelihood(squared, poses.shape[-1], presence, vote_log_presence, scales, dim=1)


def _part_log_likelihood(squared, dims: int, presence, vote_log_presence, scales, dim: int):
    """:func:`part_log_likelihood` from the squared distances between poses and votes, objects along ``dim``."""
    log_normal = -0.5 * squared / scales ** 2 - dims * torch.log(scales) - 0.5 * dims * math.log(2 * math.pi)
    logits = vote_log_presence + log_normal
    dummy = logits.new_full((1,), 2 * DUMMY_LOG).expand(*logits.shape[:dim], 1, *logits.shape[dim + 1:])
    logits = torch.cat([logits, dummy], dim)                                        # K + 1 components
    per_part = torch.logsumexp(logits, dim)                                         # (B, M)
    posterior = torch.softmax(logits, dim).narrow(dim, 0, logits.shape[dim] - 1)
    return (per_part * presence).sum(-1), posterior


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-16))).sum(dim)


def _normalise(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / (x.sum(dim, keepdim=True) + 1e-8)


def prior_sparsity(object_presence: torch.Tensor, n_classes: int, within_constant: float = 0.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior sparsity penalties on object presences a (B, K): ``(within, between)``, both to be minimised.

    within = mean over examples of ``(sum_k a_bk - c)^2``, with ``c = K / n_classes``
    unless given: each image should use about c objects. between = mean over
    objects of ``(sum_b a_bk - B / n_classes)^2``: each object should be on in
    one image in n_classes.
    """
    b, k = object_presence.shape
    c = within_constant or k / n_classes
    within = ((object_presence.sum(1) - c) ** 2).mean()
    between = ((object_presence.sum(0) - b / n_classes) ** 2).mean()
    return within, between


def posterior_sparsity(mass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior sparsity entropies of the mass each object explains (B, K): ``(within, between)``.

    within = mean over examples of the entropy of ``normalise_k(mass_b)``, to be
    *minimised* (few objects explain an image); between = entropy of
    ``normalise_k(sum_b mass_b)``, to be *maximised* (the objects share the
    batch). ``normalise`` divides by the sum + 1e-8.
    """
    within = _entropy(_normalise(mass, 1), 1).mean()
    between = _entropy(_normalise(mass.sum(0), 0), 0)
    return within, between


# --- part capsule autoencoder ------------------------------------------------------------------
class PartEncoder(nn.Module):
    """Image (B, 1, 40, 40) -> part capsules: raw pose (B, M, 6), special features (B, M, 16), presence logit (B, M)."""

    def __init__(self, config: SCAEConfig):
        super().__init__()
        c = config
        layers: list[nn.Module] = []
        channels = 1
        for out, stride in zip(c.encoder_channels, c.encoder_strides):
            layers += [nn.Conv2d(channels, out, 3, stride), nn.ReLU()]
            channels = out
        self.cnn = nn.Sequential(*layers)
        self.n_parts, self.n_values = c.n_parts, 6 + c.n_special + 1
        self.n_special = c.n_special
        grid = c.encoder_grid
        self.map_bias = nn.Parameter(torch.zeros(channels, grid, grid))
        # Per part: its values at every position and one attention logit.
        self.head = nn.Conv2d(channels, c.n_parts * (self.n_values + 1), 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.head(self.cnn(images) + self.map_bias)                               # (B, M * 24, g, g)
        b = h.shape[0]
        h = h.view(b, self.n_parts, self.n_values + 1, -1)
        values, attention = h[:, :, :-1], torch.softmax(h[:, :, -1:], -1)           # over the positions
        pooled = (values * attention).sum(-1)                                       # (B, M, 23)
        return pooled[..., :6], pooled[..., 6:6 + self.n_special], pooled[..., -1]


class TemplateDecoder(nn.Module):
    """Part poses (B, M, 2, 3), presence logits (B, M) and templates -> the image's mixture and its log-likelihood."""

    def __init__(self, config: SCAEConfig):
        super().__init__()
        c = self.config = config
        t = c.template_size
        # Orthogonal at the start: rows of a random orthogonal matrix, min-max scaled to [0, 1] (then sigmoid).
        n = max(c.n_parts, t * t)
        q = torch.linalg.qr(torch.rand(n, n))[0][:c.n_parts, :t * t]
        q = (q - q.min()) / (q.max() - q.min())
        self.template_logits = nn.Parameter(q.reshape(c.n_parts, 1, t, t).contiguous())
        self.alpha = nn.Parameter(torch.zeros(c.n_parts, 1, t, t)) if c.alpha_channel else None
        self.temperature_logit = None if c.alpha_channel else nn.Parameter(_glorot(1))
        self.bg_value = nn.Parameter(_glorot(1))
        self.bg_mixing_logit = nn.Parameter(torch.zeros(1)) if c.alpha_channel else None
        # Special features -> template intensity in (0, 1); one network shared by all parts.
        self.intensity = nn.Sequential(nn.Linear(c.n_special, c.colour_hidden), nn.ReLU(),
                                       nn.Linear(c.colour_hidden, 1))

    def templates(self, special: torch.Tensor) -> torch.Tensor:
        """The templates as each part shows them, scaled by its intensity: (B, M, 1, t, t)."""
        intensity = torch.sigmoid(self.intensity(special))[..., None, None]          # (B, M, 1, 1, 1)
        return torch.sigmoid(self.template_logits) * intensity

    def paint(self, pose: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
        """Templates (B, M, 1, t, t) painted with their poses (B, M, 2, 3): (B, M, 2, H, W) with the alpha maps.

        Without the alpha channel (``config.alpha_channel=False``) only the templates: (B, M, 1, H, W).
        """
        c = self.config
        if c.alpha_channel:  # template and alpha map painted together, in one call
            b, m = templates.shape[:2]
            templates = torch.cat([templates, self.alpha.expand(b, m, *self.alpha.shape[1:])], 2)
        return paint_templates(templates, pose, c.canvas, c.invert_pose)

    def components(self, painted: torch.Tensor, presence_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's ``(means, mixing_logits)``, each (B, M + 1, 1, H, W), the background last."""
        c = self.config
        b = painted.shape[0]
        bg = torch.sigmoid(self.bg_value).expand(b, 1, 1, c.canvas, c.canvas)
        means = torch.cat([painted[:, :, :1], bg], 1)
        if c.alpha_channel:
            logits = torch.cat([painted[:, :, 1:], F.softplus(self.bg_mixing_logit).expand_as(bg)], 1)
        else:
            logits = means / (F.softplus(self.temperature_logit + 0.5) + 1e-4)
        log_presence = F.logsigmoid(presence_logit)[..., None, None, None]              # (B, M, 1, 1, 1)
        return means, torch.cat([logits[:, :-1] + log_presence, logits[:, -1:]], 1)   # background presence 1

    def log_likelihood(self, images: torch.Tensor, painted: torch.Tensor, presence_logit: torch.Tensor
                       ) -> torch.Tensor:
        """The image log-likelihood (B,), per-pixel Gaussian mixture over the painted templates and the background."""
        c = self.config
        if c.alpha_channel:
            return template_mixture_log_likelihood(images, painted, F.logsigmoid(presence_logit),
                                                   torch.sigmoid(self.bg_value), F.softplus(self.bg_mixing_logit),
                                                   c.pixel_std)
        return mixture_log_likelihood(images, *self.components(painted, presence_logit), c.pixel_std)


# --- object capsule autoencoder ----------------------------------------------------------------
class _Attention(nn.Module):
    """Multi-head attention: queries (B, N, dq), keys and values (B, L, d) -> (B, N, d), presence-masked keys."""

    def __init__(self, query_dims: int, dims: int, heads: int):
        super().__init__()
        self.heads, self.head_dims = heads, math.ceil(dims / heads)
        inner = heads * self.head_dims
        self.q, self.k, self.v = nn.Linear(query_dims, inner), nn.Linear(dims, inner), nn.Linear(dims, inner)
        self.out = nn.Linear(inner, dims)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dims).transpose(1, 2)   # (B, h, L, dh)

    def _routing(self, q: torch.Tensor, k: torch.Tensor, presence) -> torch.Tensor:
        routing = q @ k.transpose(-1, -2)                                           # (B, h, N, L)
        if presence is not None:
            routing = routing - (1.0 - presence)[:, None, None, :] * MASK
        return torch.softmax(routing / math.sqrt(self.head_dims), -1)

    def forward(self, queries, keys, presence=None):
        b, n, _ = queries.shape
        q, k, v = self._split(self.q(queries)), self._split(self.k(keys)), self._split(self.v(keys))
        out = self._routing(q, k, presence) @ v
        return self.out(out.transpose(1, 2).reshape(b, n, -1))

    def pool(self, seeds: torch.Tensor, h: torch.Tensor, project: nn.Linear, presence=None) -> torch.Tensor:
        """``forward(seeds.expand(B, ...), project(h), presence)`` for seeds (1, N, dq), computed in a cheaper order.

        The seeds' queries are the same for every example, so they are
        computed once; the keys and values are linear in ``project(h)``, and
        the output projection is linear in the values, so the products of the
        weights are applied to the small ``h`` (dimension 16) instead of
        projecting every part to 256 dimensions and back (the attention
        weights of each query sum to 1, so the output bias passes through).
        The same function of the same parameters; several times fewer operations.
        """
        heads, dh = self.heads, self.head_dims
        q = self._split(self.q(seeds))                                               # (1, h, N, dh)
        k = self._split(F.linear(h, self.k.weight @ project.weight, self.k(project.bias)))
        wv = (self.v.weight @ project.weight).view(heads, dh, -1)                    # (h, dh, d_small)
        bv = self.v(project.bias).view(heads, dh)
        wo = self.out.weight.view(-1, heads, dh).transpose(0, 1)                     # (h, d_out, dh)
        w_value_out = wo @ wv                                                        # (h, d_out, d_small)
        b_value_out = (wo @ bv.unsqueeze(-1)).squeeze(-1)                            # (h, d_out)
        values = torch.einsum("bls,hos->bhlo", h, w_value_out) + b_value_out[None, :, None, :]
        return (self._routing(q, k, presence) @ values).sum(1) + self.out.bias


class _SelfAttentionBlock(nn.Module):
    """One SAB layer: set (B, L, d) -> set (B, L, d); attention and an MLP, each with a residual and layer norm."""

    def __init__(self, dims: int, heads: int):
        super().__init__()
        self.attention = _Attention(dims, dims, heads)
        self.norm1, self.norm2 = nn.LayerNorm(dims), nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, 2 * dims), nn.ReLU(), nn.Linear(2 * dims, dims))

    def forward(self, x, presence):
        y = (self.attention(x, x, presence) + x) * presence.unsqueeze(-1)
        y = self.norm1(y)
        return self.norm2(self.mlp(y) + y)


class SetTransformer(nn.Module):
    """Part capsules (B, M, 144) with presences (B, M) -> object capsule features (B, K, 256)."""

    def __init__(self, config: SCAEConfig):
        super().__init__()
        c = config
        self.embed = nn.Linear(c.part_input_dims, c.set_dims)
        self.blocks = nn.ModuleList(_SelfAttentionBlock(c.set_dims, c.set_heads) for _ in range(c.set_layers))
        self.project = nn.Linear(c.set_dims, c.set_output)
        self.seeds = nn.Parameter(_glorot(1, c.n_objects, c.set_output))
        self.pool = _Attention(c.set_output, c.set_output, c.set_heads)

    def forward(self, parts: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        h = self.embed(parts)
        for block in self.blocks:
            h = block(h, presence)
        return self.pool.pool(self.seeds, h, self.project, presence)        # seeds attend to project(h)


@dataclass
class ObjectVotes:
    """What the object capsules say, object-major as computed: K objects, B examples, M parts.

    ``ov`` (K, B, 2, 3) object-to-viewer maps; ``votes`` (6, K, B, M) the
    predicted part poses OV . OP, entry by entry (the six entries of each
    2 x 3 map, row by row, first); ``log_presence`` (K, B, 1) and
    ``vote_log_presence`` (K, B, M) the log presences of objects and of their
    votes (noise included); ``scales`` (K, B, M) the votes' standard
    deviations; ``dynamic_l2`` the penalty on the input-dependent OP part.
    """

    ov: torch.Tensor
    votes: torch.Tensor
    log_presence: torch.Tensor
    vote_log_presence: torch.Tensor
    scales: torch.Tensor
    dynamic_l2: torch.Tensor


class ObjectCapsules(nn.Module):
    """Object features (B, K, 256) -> each object's pose, presence and votes for the M parts (:class:`ObjectVotes`)."""

    def __init__(self, config: SCAEConfig):
        super().__init__()
        c = config
        k, m = c.n_objects, c.n_parts
        self.n_parts = m
        # Separate weights per object capsule: (K, B, in) -> (K, B, out) in one batched product.
        self.params1 = ReplicaLinear(k, c.set_output, c.object_hidden)
        self.params2 = ReplicaLinear(k, c.object_hidden, c.object_params)
        self.out1 = ReplicaLinear(k, c.object_params + 1, c.object_hidden)
        self.sizes = (6 * m, 6, 1, m, m)  # OP dynamic, OV, presence logit, vote presence logits, vote scales
        # The last layer has no bias, so that the static OP is the only constant part of OP.
        std = 1.0 / math.sqrt(c.object_hidden)
        self.out2 = nn.Parameter(nn.init.trunc_normal_(torch.empty(k, c.object_hidden, sum(self.sizes)),
                                                       std=std, a=-2 * std, b=2 * std))
        self.ov_bias = nn.Parameter(torch.zeros(k, 1, 6))
        self.presence_bias = nn.Parameter(torch.zeros(k, 1, 1))
        self.vote_presence_bias = nn.Parameter(torch.zeros(k, 1, m))
        self.scale_bias = nn.Parameter(torch.zeros(k, 1, m))
        # OP parameters are stored number by number: (K, 1, 6, M), the six raw numbers of each part's OP.
        self.op_static = nn.Parameter(_glorot(1, k, m, 6)[0].transpose(1, 2).unsqueeze(1).contiguous())
        self.noise = c.object_noise

    def forward(self, features: torch.Tensor, noise: bool) -> ObjectVotes:
        h = features.transpose(0, 1)                                                    # (K, B, 256)
        h = self.params2(F.relu(self.params1(h)))
        h = torch.cat([h, h.new_ones(*h.shape[:2], 1)], -1)                            # the "capsule exists" 1
        out = torch.bmm(F.relu(self.out1(h)), self.out2)
        op_dynamic, ov, pres_logit, vote_logit, scale = out.split(self.sizes, -1)
        k, b = out.shape[:2]
        op_dynamic = op_dynamic.view(k, b, 6, self.n_parts)
        ov, pres_logit = ov + self.ov_bias, pres_logit + self.presence_bias
        vote_logit, scale = vote_logit + self.vote_presence_bias, scale + self.scale_bias
        if noise and self.noise:
            pres_logit = pres_logit + (torch.rand_like(pres_logit) - 0.5) * self.noise
            vote_logit = vote_logit + (torch.rand_like(vote_logit) - 0.5) * self.noise
        ov_planes = _transform_planes(ov.unsqueeze(-1).unbind(-2))                      # six (K, B, 1)
        op_planes = _transform_planes((op_dynamic + self.op_static).unbind(2))          # six (K, B, M)
        log_presence = F.logsigmoid(pres_logit)
        return ObjectVotes(
            ov=torch.cat(ov_planes, -1).unflatten(-1, (2, 3)),
            votes=torch.stack(_compose_planes(ov_planes, op_planes)),
            log_presence=log_presence,
            vote_log_presence=log_presence + F.logsigmoid(vote_logit),
            scales=F.softplus(scale + 0.5) + 1e-2,
            dynamic_l2=0.5 * op_dynamic.pow(2).sum() / b)


# --- the model ---------------------------------------------------------------------------------
@dataclass
class SCAETrace:
    """One pass of an SCAE over a batch (B examples, M parts, K objects).

    Parts: ``part_pose`` (B, M, 2, 3), ``part_presence`` (B, M) and its
    ``presence_logit`` (noise included), ``special`` (B, M, 16), ``templates``
    (B, M, 1, t, t) as each part shows them; ``painted`` (B, M, 2 or 1, H, W)
    each template painted on the canvas (and its alpha map);
    ``rec_ll`` (B,) the image log-likelihood. Objects: ``object_presence``
    (B, K), the largest presence among an object's votes; ``vote_presence``
    (B, K, M); ``votes`` (B, K, M, 2, 3); ``ov`` (B, K, 2, 3); ``posterior``
    (B, K, M) which object explains which part; ``mass`` (B, K) the posterior
    summed over parts; ``caps_ll`` (B,) the part-pose log-likelihood;
    ``dynamic_l2`` the OP penalty (a scalar). :meth:`SCAE.reconstruction` turns
    a trace into images.
    """

    part_pose: torch.Tensor
    part_presence: torch.Tensor
    presence_logit: torch.Tensor
    special: torch.Tensor
    templates: torch.Tensor
    painted: torch.Tensor
    rec_ll: torch.Tensor
    object_presence: torch.Tensor
    vote_presence: torch.Tensor
    votes: torch.Tensor
    ov: torch.Tensor
    posterior: torch.Tensor
    mass: torch.Tensor
    caps_ll: torch.Tensor
    dynamic_l2: torch.Tensor


class SCAE(nn.Module):
    """Stacked Capsule Autoencoder; see the module docstring. ``SCAE(SCAEConfig(...))``."""

    def __init__(self, config: SCAEConfig | None = None):
        super().__init__()
        self.config = config = config or SCAEConfig()
        self.encoder = PartEncoder(config)
        self.decoder = TemplateDecoder(config)
        self.set_transformer = SetTransformer(config)
        self.objects = ObjectCapsules(config)
        # Linear probes on detached features: they watch the representation, never shape it.
        self.prior_probe = nn.Linear(config.n_objects, config.n_classes)
        self.posterior_probe = nn.Linear(config.n_objects, config.n_classes)
        for module in (self.encoder, self.decoder.intensity, self.set_transformer, self.prior_probe,
                       self.posterior_probe):
            _sonnet_init(module)
        _sonnet_init(self.objects)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())

    def check_images(self, images) -> torch.Tensor:
        """``images`` as (B, 1, canvas, canvas) in [0, 1], or a ValueError saying what is wrong."""
        size = self.config.canvas
        return check_image_batch(images, (1, size, size), name="images")

    def forward(self, images: torch.Tensor, noise: bool | None = None) -> SCAETrace:
        """Run both autoencoders on ``images`` (B, 1, 40, 40).

        ``noise``: whether presence logits get their uniform noise; by default
        in training mode, and in evaluation mode if ``config.eval_noise``.
        """
        images = self.check_images(images)
        if noise is None:
            noise = self.training or self.config.eval_noise
        return self._run(images, noise)

    def _parts(self, images: torch.Tensor, noise: bool):
        """The part capsule autoencoder: pose (B, M, 2, 3), special features, presence logits and
        presences, templates, the painted templates and the image log-likelihood (B,)."""
        c = self.config
        raw_pose, special, presence_logit = self.encoder(images)
        if noise and c.part_noise:
            presence_logit = presence_logit + (torch.rand_like(presence_logit) - 0.5) * c.part_noise
        presence = torch.sigmoid(presence_logit)
        pose = geometric_transform(raw_pose)                                          # (B, M, 2, 3)
        templates = self.decoder.templates(special)
        painted = self.decoder.paint(pose, templates)
        rec_ll = self.decoder.log_likelihood(images, painted, presence_logit)
        return pose, special, presence_logit, presence, templates, painted, rec_ll

    def _run(self, images: torch.Tensor, noise: bool) -> SCAETrace:
        pose, special, presence_logit, presence, templates, painted, rec_ll = self._parts(images, noise)

        # The OCAE reads the parts with pose, presence and templates held fixed; special features pass gradients.
        b, m = presence.shape
        flat_pose = pose.detach().reshape(b, m, 6)
        part_input = torch.cat([flat_pose, 1 - presence.detach().unsqueeze(-1), special,
                                templates.detach().reshape(b, m, -1)], -1)
        features = self.set_transformer(part_input, presence.detach())
        out = self.objects(features, noise)
        target = flat_pose.permute(2, 0, 1)                                           # (6, B, M)
        squared = ((target.unsqueeze(1) - out.votes) ** 2).sum(0)                      # (K, B, M)
        caps_ll, posterior = _part_log_likelihood(squared, 6, presence.detach(), out.vote_log_presence,
                                                  out.scales, dim=0)
        posterior = posterior.transpose(0, 1)                                         # (B, K, M)
        vote_presence = out.vote_log_presence.exp().transpose(0, 1)
        votes = out.votes.permute(2, 1, 3, 0).unflatten(-1, (2, 3))                   # (B, K, M, 2, 3), a view
        return SCAETrace(
            part_pose=pose, part_presence=presence, presence_logit=presence_logit, special=special,
            templates=templates, painted=painted, rec_ll=rec_ll, object_presence=vote_presence.amax(2),
            vote_presence=vote_presence, votes=votes, ov=out.ov.transpose(0, 1), posterior=posterior,
            mass=posterior.sum(2), caps_ll=caps_ll, dynamic_l2=out.dynamic_l2)

    def loss(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training loss and its terms, batch means; ``labels`` (B,) also train the two probes.

        ``loss = -rec_ll - w_caps caps_ll + w_dyn dynamic_l2 + w_pri_in prior_within
        + w_pri_btw prior_between + w_post_in posterior_within - w_post_btw posterior_between
        (+ the probes' cross-entropies)``. The probes read detached features, so
        their terms train only themselves.
        """
        c = self.config
        trace = self.forward(images)
        prior_within, prior_between = prior_sparsity(trace.object_presence, c.n_classes, c.within_constant)
        posterior_within, posterior_between = posterior_sparsity(trace.mass / c.n_parts)
        rec_ll, caps_ll = trace.rec_ll.mean(), trace.caps_ll.mean()
        loss = (-rec_ll - c.caps_ll_weight * caps_ll + c.dynamic_l2_weight * trace.dynamic_l2
                + c.prior_within_weight * prior_within + c.prior_between_weight * prior_between
                + c.posterior_within_weight * posterior_within - c.posterior_between_weight * posterior_between)
        terms = {
            "rec_ll": rec_ll.detach(),
            "caps_ll": caps_ll.detach(),
            "dynamic_l2": trace.dynamic_l2.detach(),
            "prior_within": prior_within.detach(),
            "prior_between": prior_between.detach(),
            "posterior_within": posterior_within.detach(),
            "posterior_between": posterior_between.detach(),
            "part_presence": trace.part_presence.detach().sum(1).mean(),
            "object_presence": trace.object_presence.detach().sum(1).mean(),
        }
        if labels is not None:
            labels = labels.to(images.device)
            prior_logits = self.prior_probe(trace.object_presence.detach())
            posterior_logits = self.posterior_probe(trace.mass.detach())
            prior_xe, posterior_xe = F.cross_entropy(prior_logits, labels), F.cross_entropy(posterior_logits, labels)
            loss = loss + prior_xe + posterior_xe
            terms.update(prior_xe=prior_xe.detach(), posterior_xe=posterior_xe.detach(),
                         prior_acc=(prior_logits.argmax(1) == labels).float().mean(),
                         posterior_acc=(posterior_logits.argmax(1) == labels).float().mean())
        return {"loss": loss, **terms}

    def part_loss(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The part capsule autoencoder trained alone (a warm-up before :meth:`loss`): ``loss = -rec_ll``,
        batch mean; the object capsules and the probes are not run."""
        images = self.check_images(images)
        *_, presence, _, _, rec_ll = self._parts(images, self.training or self.config.eval_noise)
        rec_ll = rec_ll.mean()
        return {"loss": -rec_ll, "rec_ll": rec_ll.detach(), "part_presence": presence.detach().sum(1).mean()}

    @torch.no_grad()
    def features(self, images: torch.Tensor, noise: bool | None = None) -> dict[str, torch.Tensor]:
        """The evaluation features: ``prior`` object presences (B, K) and ``posterior`` mass (B, K)."""
        trace = self.forward(images, noise)
        return {"prior": trace.object_presence, "posterior": trace.mass}

    @torch.no_grad()
    def reconstruction(self, trace: SCAETrace, mode: bool = False) -> torch.Tensor:
        """The image a trace explains (B, 1, H, W): the mixture's mean, or with ``mode`` each pixel
        from its most probable component (as the official pictures show it)."""
        means, logits = self.decoder.components(trace.painted, trace.presence_logit)
        if mode:
            return means.expand_as(logits).gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
        return (torch.softmax(logits, 1) * means).sum(1)
