"""DAIR: AIR whose objects are named by a class (Chapter 7, DAIR).

AIR (Chapter 6) finds objects one step at a time and describes each by a
Gaussian code ``z_what``. DAIR, the thesis's *discrete* AIR (not the
difference AIR of Chapter 6), describes each found object the way the
D-VAE-ST of Chapter 5 describes a whole image:

- a **class** c in {1..K}, with a uniform prior; class c has a **prototype**,
  a learned image (the D-VAE-ST's decoder: one-hot c -> 800 -> 28 x 28);
- an affine **deformation** theta (six numbers, ``[A | t]`` row by row) with
  the prior N(identity, 0.01) on each number, as in the D-VAE-ST;
- the object is prototype c, warped by theta, painted into AIR's window
  ``z_where``. The two maps are composed into one: canvas pixel p reads the
  prototype at ``theta((p - centre) / s)``, one bilinear reading instead of
  a warp followed by a paint (so no blur is added twice). With the identity
  theta this is exactly AIR's painting of the prototype.

Both are inferred from the glimpse AIR crops out of the window (28 x 28 here,
the D-VAE-ST's image size), by the D-VAE-ST's two networks. Everything else
is AIR's, *shared*, not copied: the where network, z_pres and its NVIL
gradient with the cost-to-go, difference and recurrent inference, the priors
and the Gaussian pixel likelihood (:class:`~objectcentric.models.air.AIR`;
DAIR only plugs in another describer, :class:`ClassWhat`).

**Naming an aligned glimpse** (``align``, the default). The D-VAE-ST's class
encoder is a fully connected network trained on centred MNIST digits, and
AIR's windows sit a pixel or two off the digits' centres: read as they are,
the shipped D-VAE-ST names about 70 % of the digits in the shipped AIR's
windows and 93 % in windows at the true boxes. With ``align`` the deformation
is inferred first, q(theta | glimpse), and the class encoder reads the glimpse
with theta undone (resampled at theta^-1: the object in its prototype's
frame), q(c | glimpse, theta) (Chapter 4's spatial transformer, in front of
the classifier). In short CPU trials (4 epochs of 60,000 canvases, scored on
1,000 test canvases, not results) the aligned model named 88 % of the digits
against 82 % unaligned, its accuracy fell far less with the window's offset,
and its -ELBO was lower too (79.8 against 81.3 nats), so the choice needs no
labels.

**The gradient of the class.** Object i's class has no reparameterisation;
its gradient comes from any estimator of Chapter 3, chosen by name
(``DAIRConfig.estimator``: exact, reinforce, nvil, concrete, rebar, relax).
The cost it is handed, f(b), is a *local* one: the negative log-likelihood of
the canvas with object i's painted prototype replaced by class b's, every
other object (its class, window and deformation) held at its sample, and
object i's window and deformation held at theirs (drawn once, shared by every
call of f, as in the D-VAE-ST). ``exact`` then sums over the K classes: K
decodes per object, the *local expectation* gradient (Titsias and
Lázaro-Gredilla, 2015), exact for each object given the others. The
sampling estimators draw their own class for object i; both it and the class
painted in the trace are draws from q, so the estimate stays unbiased. The
baselines of NVIL, REBAR and RELAX read what is left for object i to explain
(the canvas minus the other objects, pooled as AIR's where network sees it).
Objects that are not present have no class cost and no class or deformation
KL; the estimator sees only the present ones.

The same f carries the *pathwise* gradient of the reconstruction for the
prototypes, the deformation and the window of each object, with the other
objects fixed: summed over the objects, that is the gradient of the canvas's
reconstruction error (for ``exact`` averaged over object i's class, a
Rao-Blackwellised form). So the loss's reconstruction term has the value of
-log p(x | objects) and the gradient of the estimators; AIR's z_pres keeps its
own score-function gradient with the cost-to-go (reconstruction plus the KL
terms of its object and every later one). The KL of the class against the
uniform prior and of theta against its prior are exact, as in the D-VAE-ST,
and weighted like AIR's other KL terms (``kl_weight``). ``marginal_weight``
adds KL(q̄(c) || uniform) once more, q̄ the mean class distribution over the
batch's present objects, against class collapse (Chapter 5's ``robust``).

**Initialisation.** :meth:`DAIR.from_pretrained` (used by the book's recipe)
copies the where network, the z_pres head and its baseline from a trained
AIR (the shipped ``air_multi_mnist_difference.pt``) and the class encoder,
the transformation network and the prototypes from a trained D-VAE-ST (the
shipped ``dvae_st_fullmnist.pt``, 28 x 28 digits, so the glimpse is 28 x 28).
The thesis trained DAIR from scratch: its best of 10 runs counted 82.8 % of
the canvases right (its AIR 98.37 %) and only about half of its prototypes
were recognisable digits. Counting and naming are learned well by the two
simpler models, so DAIR starts from what they learned and training makes them
work together (the where network now sees prototypes' residuals, the encoder
reads crops of canvases). Training from scratch works too (the recipe's
``init="scratch"``): random weights, the prototypes started at K training
digits picked by k-means++ (:meth:`DAIR.init_prototypes`, Chapter 5's
``kmeans`` start).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence

from ..estimators import ESTIMATORS, EstimatorOutput, make_estimator
from ..spatial import (
    ALIGN_CORNERS,
    apply_taps,
    bilinear_taps,
    crop,
    invert_affine,
    pixel_centers,
)
from .air import AIR, LOG_SCALE_LIMIT, AIRConfig, AIRTrace
from .dvae import DVAEST, TRANSFORM_PRIOR_VARIANCE, DVAESTConfig

THETA_SIZE = 6


@dataclass(frozen=True)
class DAIRConfig(AIRConfig):
    """The settings of a :class:`DAIR` (Chapter 7, DAIR): AIR's, and those of the class and deformation.

    ``window`` is the glimpse's size (28: the D-VAE-ST's images). AIR's
    what-VAE fields (``z_what``, ``what_hidden``, ``glimpse_bias``) are unused.
    ``num_classes`` is K; ``estimator`` the class gradient's (Chapter 3),
    ``temperature`` its relaxation's (concrete, rebar, relax);
    ``transform_prior_variance`` the prior variance of each number of theta
    around the identity; ``marginal_weight`` the weight of the extra
    KL(q̄(c) || uniform) against collapse; ``class_hidden``,
    ``prototype_hidden`` and ``transform_hidden`` the D-VAE-ST's hidden sizes;
    ``align``: the class encoder reads the glimpse with theta undone (module
    docstring), not the glimpse itself as the D-VAE-ST does.
    """

    window: int = 28
    num_classes: int = 10
    estimator: str = "exact"
    temperature: float = 0.66
    transform_prior_variance: float = TRANSFORM_PRIOR_VARIANCE
    marginal_weight: float = 20.0
    class_hidden: tuple[int, ...] = (400, 400)
    prototype_hidden: int = 800
    transform_hidden: tuple[int, ...] = (400, 400)
    align: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be a whole number of at least 2, got {self.num_classes!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        for name in ("temperature", "transform_prior_variance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.marginal_weight >= 0:
            raise ValueError(f"marginal_weight must be 0 or more, got {self.marginal_weight!r}")

    def dvae_config(self) -> DVAESTConfig:
        """The D-VAE-ST whose networks describe one glimpse (its own estimator is unused: exact, no parameters)."""
        return DVAESTConfig(num_classes=self.num_classes, estimator="exact", image_shape=(1, self.window, self.window),
                            encoder_hidden=tuple(self.class_hidden), decoder_hidden=self.prototype_hidden,
                            temperature=self.temperature, marginal_weight=self.marginal_weight,
                            transform_prior_variance=self.transform_prior_variance,
                            transform_hidden=tuple(self.transform_hidden))


@dataclass
class DAIRTrace(AIRTrace):
    """AIR's trace (:class:`~objectcentric.models.air.AIRTrace`) and, per step, what named the object.

    ``what`` (B, N, K + 6) is the one-hot class followed by theta;
    ``class_logits`` (B, N, K) the logits of q(c | glimpse); ``classes``
    (B, N) the class drawn (or the most likely one, greedy); ``theta``
    (B, N, 6) the deformation drawn (or its mean); ``kl_class`` and
    ``kl_theta`` (B, N) their KL terms, 0 for absent objects (``kl_what`` is
    their sum).
    """

    class_logits: torch.Tensor
    classes: torch.Tensor
    theta: torch.Tensor
    kl_class: torch.Tensor
    kl_theta: torch.Tensor


def canvas_grid(theta: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, canvas: int) -> torch.Tensor:
    """Where each canvas pixel reads a window's content warped by ``theta``: (B, canvas, canvas, 2) (Chapter 7).

    ``theta`` (B, 6) is ``[A | t]`` row by row, ``scale`` (B,) and ``shift``
    (B, 2) the window (:func:`objectcentric.spatial.crop_window`'s
    convention). Canvas point p (normalised) lies at w = (p - shift) / scale
    in the window, and the warped prototype there is the prototype at
    theta(w) = A w + t: the grid is the composition of painting (the inverse
    window) and the warp, in ``F.grid_sample``'s convention (x, y). The grid
    is separable in w, so it is built from two short vectors.
    """
    base = pixel_centers(canvas).to(theta)
    wx = (base[None, :] - shift[:, :1]) / scale[:, None]                   # (B, W): columns
    wy = (base[None, :] - shift[:, 1:]) / scale[:, None]                   # (B, H): rows
    a, b, tx, c, d, ty = (v[:, None, None] for v in theta.unbind(-1))
    ux = a * wx[:, None, :] + b * wy[:, :, None] + tx
    uy = c * wx[:, None, :] + d * wy[:, :, None] + ty
    return torch.stack([ux, uy], -1)


class ClassWhat(nn.Module):
    """One object as a class and a deformed prototype: the D-VAE-ST's networks on AIR's glimpse (Chapter 7).

    DAIR's describer (the interface of :class:`~objectcentric.models.air.WhatVAE`,
    see :mod:`objectcentric.models.air`). ``dvae`` is a D-VAE-ST
    (:class:`~objectcentric.models.dvae.DVAEST`, one replica) whose encoder,
    transformation network and prototypes are used as they are;
    ``estimator`` is the class gradient's estimator, its baseline reading
    ``baseline_features`` numbers (what is left to explain, pooled).
    """

    def __init__(self, config: DAIRConfig):
        super().__init__()
        self.window = config.window
        self.align = config.align
        self.num_classes = config.num_classes
        self.latent_size = config.num_classes + THETA_SIZE
        self.dvae = DVAEST(config.dvae_config())
        self.estimator = make_estimator(config.estimator, config.num_classes, temperature=config.temperature,
                                        in_features=config.pooled_pixels)

    def transform_posterior(self, glimpse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Glimpses (B, 1, w, w) -> the mean and log-variance of q(theta | glimpse), (B, 6) each."""
        mean, log_variance = self.dvae.transform_posterior(glimpse.flatten(1)[None])
        return mean[0], log_variance[0]

    def class_logits(self, glimpse: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The logits (B, K) of q(c | glimpse): the class encoder reads the glimpse, or with ``align``
        the glimpse with the deformation ``theta`` (B, 6) undone (read at theta^-1: the object in its
        prototype's frame)."""
        if self.align:
            inverse = invert_affine(theta.view(-1, 2, 3))
            glimpse = crop(glimpse, inverse, (self.window, self.window), validate=False)
        return self.dvae.encoder(glimpse.flatten(1)[None])[0]

    def describe(self, glimpse: torch.Tensor, greedy: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Glimpses -> ``(code (B, K + 6), KL (B,), records)``: a class and a theta, drawn (or the most likely).

        The code is the one-hot class followed by theta. The records hold the
        logits, the class, theta and the two KL terms (exact: the class's
        against the uniform prior, theta's against N(identity, variance)).
        """
        mean, log_variance = self.transform_posterior(glimpse)
        std = (0.5 * log_variance).exp()
        theta = mean if greedy else mean + std * torch.randn_like(mean)
        logits = self.class_logits(glimpse, theta)
        classes = logits.argmax(-1) if greedy else Categorical(logits=logits, validate_args=False).sample()
        kl_class = self.dvae.kl_categorical(logits)
        prior = Normal(self.dvae.prior_mean, (0.5 * self.dvae.prior_log_variance).exp(), validate_args=False)
        kl_theta = kl_divergence(Normal(mean, std, validate_args=False), prior).sum(-1)
        code = torch.cat([F.one_hot(classes, self.num_classes).to(theta), theta], -1)
        recorded = {"class_logits": logits, "classes": classes, "theta": theta,
                    "kl_class": kl_class, "kl_theta": kl_theta}
        return code, kl_class + kl_theta, recorded

    def prototype_images(self, codes: torch.Tensor, prototype_means: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, K), one-hot or relaxed -> the decoded prototypes (B, 1, w, w) (linear, unclipped)."""
        means = self.dvae.decode(codes[None], prototype_means)[0]
        return means.view(-1, 1, self.window, self.window)

    def paint(self, code: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
              canvas: int) -> tuple[torch.Tensor, None]:
        """Codes (B, K + 6) and windows -> ``(painted (B, 1, canvas, canvas), None)``: the prototype of the
        class, warped by theta, in the window (one bilinear reading, :func:`canvas_grid`).

        ``F.grid_sample`` here (fast); the class costs read the same grid with
        :func:`objectcentric.spatial.apply_taps` (the same numbers, reusable
        for K prototypes and twice differentiable).
        """
        k = self.num_classes
        grid = canvas_grid(code[:, k:], scale, shift, canvas)
        return F.grid_sample(self.prototype_images(code[:, :k]), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=ALIGN_CORNERS), None

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Codes (B, K + 6) -> the warped prototype as seen in the window (B, 1, w, w), for pictures."""
        k, b = self.num_classes, code.shape[0]
        prototypes = self.prototype_images(code[:, :k]).view(1, b, -1)
        warped = self.dvae.warp(prototypes, self.dvae.taps(code[None, :, k:]))
        return warped.view(b, 1, self.window, self.window)


@dataclass
class ClassProblem:
    """Object i's class choice as an estimator sees it (Chapter 7): the present objects of a batch, one per row.

    ``canvas`` and ``step`` (M,) say which object each row is; ``logits``
    (M, K) its q(c | glimpse); ``cost`` the local cost f: codes (M, K) ->
    -log p(x | the other objects, this one painted with that class) (M,);
    ``baseline_inputs`` (M, F) what the baselines read.
    """

    canvas: torch.Tensor
    step: torch.Tensor
    logits: torch.Tensor
    cost: object
    baseline_inputs: torch.Tensor


class DAIR(AIR):
    """AIR whose objects are classes with deformed prototypes (Chapter 7, DAIR); see the module docstring.

    ``DAIR(DAIRConfig(...))``; ``DAIR.from_pretrained(air, dvae_st)`` starts
    from a trained AIR and a trained D-VAE-ST.
    """

    TRACE = DAIRTrace

    def __init__(self, config: DAIRConfig | None = None):
        config = config or DAIRConfig()
        if not isinstance(config, DAIRConfig):
            raise TypeError(f"DAIR is built from a DAIRConfig, got {type(config).__name__}")
        super().__init__(config)

    def _latent_size(self) -> int:
        return self.config.num_classes + THETA_SIZE

    def _build_describer(self) -> ClassWhat:
        return ClassWhat(self.config)

    # --- starting points --------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, air: AIR, dvae_st: DVAEST, **settings) -> DAIR:
        """A DAIR whose where network and z_pres (with its baseline) are ``air``'s and whose class encoder,
        transformation network and prototypes are ``dvae_st``'s (one replica).

        The configuration takes AIR's settings and the D-VAE-ST's sizes (the
        glimpse is its image size); ``settings`` set the rest (estimator,
        marginal_weight, ...).
        """
        air_fields = {f.name for f in dataclasses.fields(AIRConfig)} - {"window"}
        d = dvae_st.config
        if d.image_shape[0] != 1 or d.image_shape[1] != d.image_shape[2]:
            raise ValueError(f"the D-VAE-ST must read square grey images, got {tuple(d.image_shape)}")
        config = DAIRConfig(**{name: getattr(air.config, name) for name in air_fields},
                            window=int(d.image_shape[1]), num_classes=dvae_st.num_classes,
                            class_hidden=tuple(d.encoder_hidden), prototype_hidden=d.decoder_hidden,
                            transform_hidden=tuple(d.transform_hidden),
                            transform_prior_variance=d.transform_prior_variance, **settings)
        model = cls(config)
        model.load_pretrained(air, dvae_st)
        return model

    @torch.no_grad()
    def load_pretrained(self, air: AIR, dvae_st: DVAEST) -> None:
        """Copy ``air``'s where network, z_pres head and baseline, and ``dvae_st``'s networks, into this model.

        Raises ValueError when their sizes do not fit this model's.
        """
        mine, theirs = self.config, air.config
        for name in ("canvas", "pool", "max_steps", "where_hidden", "inference"):
            if getattr(mine, name) != getattr(theirs, name):
                raise ValueError(f"the AIR has {name}={getattr(theirs, name)!r}, this DAIR {getattr(mine, name)!r}")
        if mine.inference != "difference":  # the recurrent network reads the previous code, of another size
            raise ValueError("only a difference-inference AIR can be copied: the recurrent network reads the "
                             "previous step's code, whose size differs between AIR and DAIR")
        if dvae_st.replicas != 1:
            raise ValueError(f"the D-VAE-ST must have one replica (use .replica(i)), got {dvae_st.replicas}")
        for part in ("where_body", "where_head", "baseline"):
            getattr(self, part).load_state_dict(getattr(air, part).state_dict())
        for part in ("encoder", "decoder", "transformer"):
            try:
                getattr(self.what.dvae, part).load_state_dict(getattr(dvae_st, part).state_dict())
            except RuntimeError as error:
                raise ValueError(f"the D-VAE-ST's {part} does not fit this DAIR's: {error}") from error

    @torch.no_grad()
    def init_prototypes(self, images: torch.Tensor) -> None:
        """Start the K prototypes at ``images`` (K, 1, w, w) (the D-VAE-ST's least-norm fit of its last layer)."""
        self.what.dvae.init_prototypes(images.reshape(1, self.config.num_classes, -1))

    @torch.no_grad()
    def prototypes(self) -> torch.Tensor:
        """The K prototypes as images (K, 1, w, w), clipped to [0, 1] for display."""
        return self.what.dvae.prototypes()[0]

    # --- the objective ------------------------------------------------------------------------
    def class_problem(self, x: torch.Tensor, trace: DAIRTrace) -> ClassProblem | None:
        """The present objects' class choices with their local costs (see the module docstring); None if none.

        ``trace`` must hold the painted objects (``keep_painted``).
        """
        canvas, step = trace.pres.nonzero(as_tuple=True)
        if canvas.numel() == 0:
            return None
        c = self.config
        where, theta = trace.where[canvas, step], trace.theta[canvas, step]
        scale = where[:, 0].clamp(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT).exp()  # as the trace painted them
        taps = bilinear_taps(canvas_grid(theta, scale, where[:, 1:], c.canvas), (c.window, c.window))
        rest = (trace.canvas[canvas] - trace.painted[canvas, step]).detach()  # the other objects, held fixed
        target = x[canvas]
        prototypes = []  # decoded once, at the first call of f

        def cost(codes: torch.Tensor) -> torch.Tensor:
            if not prototypes:
                prototypes.append(self.what.dvae.prototype_means())
            painted = apply_taps(self.what.prototype_images(codes, prototypes[0]), taps, (c.canvas, c.canvas))
            return -self.log_likelihood(target, rest + painted)

        return ClassProblem(canvas=canvas, step=step, logits=trace.class_logits[canvas, step], cost=cost,
                            baseline_inputs=self._pool(target - rest))

    def loss(self, x: torch.Tensor, counts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training loss (negative ELBO, KL weighted, + the marginal KL) and its terms, batch means.

        As AIR's (:meth:`AIR.loss`), with the reconstruction's gradient from
        the class estimator (module docstring) and, among the terms, the
        unweighted ``neg_elbo``, ``kl_class``, ``kl_theta``, ``marginal_kl``
        and ``class_control_loss`` (what trains the estimator's own parts).
        """
        x = self.check_canvas(x)
        trace = self._infer(x, greedy=False, keep_painted=True)
        nll = -self.log_likelihood(x, trace.canvas)
        problem = self.class_problem(x, trace)
        pathwise = torch.zeros_like(nll)
        control = marginal = nll.new_zeros(())
        if problem is not None:
            out: EstimatorOutput = self.what.estimator(problem.logits, problem.cost, x=problem.baseline_inputs)
            pathwise = pathwise.index_add(0, problem.canvas, out.surrogate - out.surrogate.detach())
            control = out.control_loss
            marginal = self.what.dvae.marginal_kl(problem.logits[None])[0]
        total_kl = (trace.kl_pres + trace.kl_where + trace.kl_what).sum(1)
        extra = {"neg_elbo": (nll + total_kl).mean().detach(),
                 "kl_class": trace.kl_class.sum(1).mean().detach(),
                 "kl_theta": trace.kl_theta.sum(1).mean().detach(),
                 "marginal_kl": marginal.detach(), "class_control_loss": control.detach()}
        return self._loss_terms(trace, nll, nll.detach() + pathwise, counts,
                                extra_loss=control + self.config.marginal_weight * marginal, extra_terms=extra)

