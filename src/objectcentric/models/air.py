"""Attend, Infer, Repeat (Eslami et al., 2016) (Chapter 6, AIR).

AIR explains a canvas as a short sequence of objects. At step i an inference
network looks at the canvas and decides

- ``z_pres`` (0 or 1): is there one more object? Once a step says 0, every
  later step is 0 too, so the number of objects is the count of leading ones;
- ``z_where`` = (log s, x, y): where it is, the square window of half-width
  ``s`` centred at ``(x, y)`` (the conventions of :mod:`objectcentric.spatial`);
- ``z_what`` (20 numbers): what it looks like, inferred by a small VAE (the
  *what-VAE*) from the window cropped out of the canvas (attend).

The generative model decodes each ``z_what`` into a 24 x 24 glimpse, paints it
back into its window with the inverse transform, and adds up the painted
objects; pixels are Gaussian around that sum, with a fixed standard deviation.

Two inference networks are offered (``AIRConfig.inference``):

- ``"recurrent"``: the original's. A network reads the canvas, the previous
  step's latents and its own previous state (a recurrent network); it learns
  *when to stop* partly by counting its own steps.
- ``"difference"``: the variant the AIR talk calls difference AIR. The network
  reads what is left to explain, the canvas minus the objects painted so far,
  and nothing else. Every step is the same function of what it sees, so after
  two objects a third step behaves like the first: if ink is left, there is one
  more object. This is what lets a model trained on 0-2 digits count 3.

The discrete ``z_pres`` has no reparameterisation; its gradient is the
score-function estimator with a learned, input-dependent baseline (NVIL), taken
from :mod:`objectcentric.estimators` (Chapter 3). Each step's choice is
rewarded with the part of the cost that it can influence: the reconstruction
error and the KL terms of its own object and of every later step.

Deviations from seed 002's settings, and why:

- ``z_where`` is parameterised as (log s, x, y) in the book's conventions
  (s = half-width of the window as a fraction of the canvas, x and y its centre),
  so the scale is positive by construction; the priors and the initialisation
  are seed 002's translated to these units (see :class:`AIRConfig`).
- the inference network reads the canvas average-pooled 2 x 2 (25 x 25): where
  an object is needs no more detail, the window it crops is read at full
  resolution, and the first layer, the costliest of the model, shrinks 4 x.
- the KL terms of an object's where and what count only for present objects
  (as in Pyro's AIR; seed 002 charged them to every step reached).

**What describes one object is pluggable.** The loop above needs only three
things from the part that describes an object's appearance, its *describer*:
``describe(glimpse, greedy)`` (the latent code, its KL term and anything else
to keep in the trace), ``paint(code, scale, shift, canvas)`` (the object on
the canvas) and ``decode(code)`` (its reconstruction inside the window, for
pictures). :class:`WhatVAE`, AIR's Gaussian what-VAE, is one; Chapter 7's
DAIR (:mod:`objectcentric.models.dair`) plugs in a class and a deformed
prototype instead and keeps everything else of AIR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from ..checks import check_image_batch
from ..estimators import NVIL
from ..modules import mlp
from ..spatial import crop_window

INFERENCE_KINDS = ("difference", "recurrent")
LOG_SCALE_LIMIT = 7.0  # |log s| of the window used for cropping and painting, at most


@dataclass(frozen=True)
class AIRConfig:
    """The sizes, priors and initialisation of an AIR model.

    Seed 002's values, translated: its prior on the inverse scale, N(3, 0.1²),
    centres the window's half-width near 1/3 of the canvas (digits are 24 of 50
    pixels, 0.48); here the prior is on log s, centred at log 0.4 with standard
    deviation 0.25 (so s = 0.31..0.51 within one standard deviation). Its prior
    N(0, 1) on the shift, in units of the inverse scale, is a standard deviation
    of about 1/3 of the half-canvas for the centre; here 0.5. Its prior
    P(z_pres = 1) = 0.01, its initial P(z_pres = 1) = sigmoid(2) = 0.88 and its
    weight 0.7 on the KL terms are kept.

    The pixel standard deviation is 0.4 instead of seed 002's 0.6. With 0.6 the
    likelihood is so weak that a thin digit (a "1") does not pay for its
    object's KL terms: 5 seeds at 0.6 counted 98.8-99.4 % of test canvases
    right, their errors mostly a lone "1" read as an empty canvas; at 0.4 the
    first seed counted 99.5 % (results/air.json).
    """

    canvas: int = 50
    window: int = 24
    max_steps: int = 3
    z_what: int = 20
    where_hidden: int = 256
    what_hidden: int = 256
    inference: str = "difference"
    pool: int = 2
    prior_pres: float = 0.01
    prior_log_scale: tuple[float, float] = (math.log(0.4), 0.25)
    prior_shift_std: float = 0.5
    pixel_std: float = 0.4
    kl_weight: float = 0.7
    init_pres_logit: float = 2.0
    init_where_log_std: float = -2.5
    glimpse_bias: float = -3.0

    def __post_init__(self):
        if self.inference not in INFERENCE_KINDS:
            raise ValueError(f"inference must be one of {INFERENCE_KINDS}, got {self.inference!r}")
        if self.canvas % self.pool:
            raise ValueError(f"the canvas ({self.canvas}) must be a multiple of pool ({self.pool})")

    @property
    def pooled_pixels(self) -> int:
        return (self.canvas // self.pool) ** 2


@dataclass
class AIRTrace:
    """Everything one pass of inference produced, step by step (N steps: max_steps, or the number asked for).

    ``pres`` (B, N) 0/1; ``where`` (B, N, 3) as (log s, x, y); ``what`` (B, N, z_what);
    ``pres_prob`` (B, N); ``glimpses`` (B, N, 1, w, w) the crops the encoder saw;
    ``patches`` (B, N, 1, w, w) their reconstructions; ``painted`` (B, N, 1, H, W) each
    object on the canvas (whether present or not); ``canvas`` (B, 1, H, W) the
    reconstruction (present objects only); ``log_q_pres`` (B, N), ``kl_pres``,
    ``kl_where``, ``kl_what`` (B, N) per step, already masked (0 where the step did
    not count); ``alive`` (B, N): whether the step was reached (previous z_pres = 1);
    ``baseline_inputs`` (B, N, F) what the NVIL baseline reads. ``glimpses``,
    ``patches`` and ``painted`` are None unless asked for (``keep_images``), and
    ``baseline_inputs`` is None outside the loss.
    """

    pres: torch.Tensor
    where: torch.Tensor
    what: torch.Tensor
    pres_prob: torch.Tensor
    glimpses: torch.Tensor | None
    patches: torch.Tensor | None
    painted: torch.Tensor | None
    canvas: torch.Tensor
    log_q_pres: torch.Tensor
    kl_pres: torch.Tensor
    kl_where: torch.Tensor
    kl_what: torch.Tensor
    alive: torch.Tensor
    baseline_inputs: torch.Tensor | None

    @property
    def counts(self) -> torch.Tensor:
        """(B,) the number of objects found."""
        return self.pres.sum(1).long()

    @property
    def scale(self) -> torch.Tensor:
        """(B, N) the windows' half-widths s."""
        return self.where[..., 0].exp()


class WhatVAE(nn.Module):
    """Encoder and decoder of one object's appearance: glimpse (w x w) <-> z_what (Chapter 6, AIR).

    AIR's describer (see the module docstring): a Gaussian code with a
    standard normal prior, decoded to a glimpse painted into the window.
    """

    def __init__(self, window: int, hidden: int, z_what: int, glimpse_bias: float):
        super().__init__()
        self.window = window
        self.latent_size = z_what
        self.encoder = mlp([window * window, hidden, 2 * z_what])
        self.decoder = mlp([z_what, hidden, window * window])
        # Seed 002: a negative bias makes new glimpses faint, so objects start small in the cost.
        self.glimpse_bias = glimpse_bias

    def encode(self, glimpse: torch.Tensor) -> Normal:
        loc, log_std = self.encoder(glimpse.flatten(1)).chunk(2, dim=-1)
        return Normal(loc, log_std.exp(), validate_args=False)

    def decode(self, z_what: torch.Tensor) -> torch.Tensor:
        """z_what (B, z_what) -> the reconstructed glimpse (B, 1, w, w) in [0, 1]."""
        logits = self.decoder(z_what) + self.glimpse_bias
        return torch.sigmoid(logits).view(-1, 1, self.window, self.window)

    def describe(self, glimpse: torch.Tensor, greedy: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Glimpses (B, 1, w, w) -> ``(z_what (B, z_what), KL(q || N(0, I)) (B,), {})``.

        ``greedy`` takes the posterior mean instead of a sample.
        """
        q_what = self.encode(glimpse)
        what = q_what.loc if greedy else q_what.rsample()
        kl = kl_divergence(q_what, Normal(torch.zeros_like(what), 1.0, validate_args=False)).sum(-1)
        return what, kl, {}

    def paint(self, what: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
              canvas: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z_what (B, z_what) and windows -> ``(painted (B, 1, canvas, canvas), patch (B, 1, w, w))``."""
        patch = self.decode(what)
        return crop_window(patch, 1.0 / scale, -shift / scale[:, None], canvas), patch


class AIR(nn.Module):
    """Attend, Infer, Repeat (Chapter 6, AIR); see the module docstring. ``AIR(AIRConfig(...))``.

    Subclasses change what describes one object by overriding
    :meth:`_build_describer` and :meth:`_latent_size` (and ``TRACE``, the
    trace class, to hold what their describer records).
    """

    TRACE: type = AIRTrace

    def __init__(self, config: AIRConfig | None = None):
        super().__init__()
        self.config = config = config or AIRConfig()
        n_where = 1 + 3 + 3  # z_pres logit; z_where loc; z_where log std
        if config.inference == "difference":
            where_in = config.pooled_pixels
        else:  # canvas, previous latents, previous state
            where_in = config.pooled_pixels + (1 + 3 + self._latent_size()) + config.where_hidden
        self.where_body = mlp([where_in, config.where_hidden, config.where_hidden])
        self.where_head = nn.Linear(config.where_hidden, n_where)
        self.what = self._build_describer()
        # The baseline reads what is left to explain before the step, and which step it is.
        self.baseline = NVIL(in_features=config.pooled_pixels + config.max_steps, hidden=64)
        self._initialise_where_head()
        log_scale_loc, log_scale_std = config.prior_log_scale
        self.register_buffer("prior_where_loc", torch.tensor([log_scale_loc, 0.0, 0.0]))
        self.register_buffer("prior_where_std", torch.tensor([log_scale_std, config.prior_shift_std,
                                                              config.prior_shift_std]))

    def _latent_size(self) -> int:
        """The length of one object's code (what the recurrent network reads of the previous step)."""
        return self.config.z_what

    def _build_describer(self) -> nn.Module:
        """The module that describes one object (see the module docstring): AIR's :class:`WhatVAE`."""
        c = self.config
        return WhatVAE(c.window, c.what_hidden, c.z_what, c.glimpse_bias)

    def _initialise_where_head(self) -> None:
        """Start every step at the prior's where, a small spread and P(z_pres = 1) = 0.88 (seed 002)."""
        c = self.config
        with torch.no_grad():
            self.where_head.weight.zero_()
            self.where_head.bias.copy_(torch.tensor(
                [c.init_pres_logit, c.prior_log_scale[0], 0.0, 0.0] + [c.init_where_log_std] * 3))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())

    # --- inference --------------------------------------------------------------------------
    def check_canvas(self, x) -> torch.Tensor:
        """``x`` as (B, 1, canvas, canvas) in [0, 1], or a ValueError saying what is wrong."""
        size = self.config.canvas
        return check_image_batch(x, (1, size, size), name="canvases")

    def _pool(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, (H/p)(W/p)): means over p x p blocks.

        Written as p + p strided additions, which on a CPU is several times
        faster than ``F.avg_pool2d`` or a reshape and ``mean``.
        """
        p = self.config.pool
        rows = sum(image[:, 0, i::p, :] for i in range(p))
        return (sum(rows[:, :, j::p] for j in range(p)) / (p * p)).flatten(1)

    def forward(self, x: torch.Tensor, greedy: bool = False, keep_images: bool = True,
                max_steps: int | None = None) -> AIRTrace:
        """Infer objects in canvases ``x`` (B, 1, H, W).

        ``greedy`` takes each latent's most likely value instead of a sample;
        ``keep_images`` keeps every step's glimpse, its reconstruction and its
        painted object in the trace (for pictures; counting does without).
        ``max_steps`` allows more (or fewer) steps than the model was trained
        with; the same weights run every step, so only the loop is longer.
        """
        x = self.check_canvas(x)
        return self._infer(x, greedy, keep_images=keep_images, keep_baseline_inputs=False, max_steps=max_steps)

    def _infer(self, x: torch.Tensor, greedy: bool, keep_images: bool = False,
               keep_baseline_inputs: bool = True, max_steps: int | None = None,
               keep_painted: bool = False, every_step: bool = False) -> AIRTrace:
        """The inference loop: canvases (B, 1, H, W) -> the trace (``self.TRACE``).

        ``keep_painted`` keeps every step's painted object without the glimpses
        and patches (a loss that needs each object's share of the canvas).
        ``every_step`` paints an object at every step whatever z_pres says
        (``pres_prob`` keeps what it said): :func:`joint_counts` reads the
        first n objects of this trace for every n.
        """
        c = self.config
        b, n = x.shape[0], max_steps or c.max_steps
        canvas = torch.zeros_like(x)
        alive = x.new_ones(b)
        pooled_x = self._pool(x)
        pooled_canvas = torch.zeros_like(pooled_x)
        state = x.new_zeros(b, c.where_hidden)
        previous = x.new_zeros(b, 1 + 3 + self._latent_size())
        steps = torch.eye(n, device=x.device, dtype=x.dtype)
        prior_pres = Bernoulli(probs=x.new_full((b,), c.prior_pres), validate_args=False)
        prior_where = Normal(self.prior_where_loc, self.prior_where_std, validate_args=False)
        out: dict[str, list] = {k: [] for k in ("pres", "where", "what", "pres_prob", "glimpses", "patches",
                                                "painted", "log_q_pres", "kl_pres", "kl_where", "kl_what",
                                                "alive", "baseline_inputs")}
        for i in range(n):
            residual = pooled_x - pooled_canvas
            if c.inference == "difference":
                features = self.where_body(residual)
            else:
                features = self.where_body(torch.cat([pooled_x, previous, state], dim=1))
                state = features
            head = self.where_head(features)
            pres_logit, where_loc, where_log_std = head[:, 0], head[:, 1:4], head[:, 4:7]

            q_pres = Bernoulli(logits=pres_logit, validate_args=False)
            draw = (pres_logit > 0).to(x.dtype) if greedy else q_pres.sample()
            pres = torch.ones_like(draw) if every_step else draw * alive
            q_where = Normal(where_loc, where_log_std.exp(), validate_args=False)
            where = where_loc if greedy else q_where.rsample()
            # The window's size is kept within e^±7 of the canvas: a step that is not even present can
            # draw an absurd scale when the where network extrapolates, and painting with a scale that
            # rounds to 0 gives NaN, which survives being multiplied by z_pres = 0.
            scale, shift = where[:, 0].clamp(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT).exp(), where[:, 1:]
            glimpse = crop_window(x, scale, shift, self.what.window)
            what, kl_what, recorded = self.what.describe(glimpse, greedy)
            painted, patch = self.what.paint(what, scale, shift, c.canvas)
            canvas = canvas + painted * pres[:, None, None, None]

            out["kl_pres"].append(kl_divergence(q_pres, prior_pres) * alive)
            out["kl_where"].append(kl_divergence(q_where, prior_where).sum(-1) * pres)
            out["kl_what"].append(kl_what * pres)
            for name, value in recorded.items():  # the describer's own records; its KL parts masked too
                out.setdefault(name, []).append(value * pres if name.startswith("kl_") else value)
            out["log_q_pres"].append(q_pres.log_prob(draw) * alive)
            if keep_baseline_inputs:
                out["baseline_inputs"].append(torch.cat([residual, steps[i].expand(b, n)], 1).detach())
            out["alive"].append(alive)
            for name, value in (("pres", pres), ("where", where), ("what", what),
                                ("pres_prob", torch.sigmoid(pres_logit))):
                out[name].append(value)
            if keep_images:
                patch = self.what.decode(what) if patch is None else patch
                for name, value in (("glimpses", glimpse), ("patches", patch), ("painted", painted)):
                    out[name].append(value)
            elif keep_painted:
                out["painted"].append(painted)
            alive = pres
            pooled_canvas = pooled_canvas + self._pool(painted) * pres[:, None]
            if c.inference == "recurrent":
                previous = torch.cat([pres[:, None], where, what], dim=1)
        return self.TRACE(canvas=canvas, **{name: torch.stack(values, 1) if values else None
                                            for name, values in out.items()})

    # --- the objective ----------------------------------------------------------------------
    def log_likelihood(self, x: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
        """log p(x | objects) (B,): independent Gaussian pixels around the painted canvas."""
        # Written out: the same as Normal(canvas, pixel_std).log_prob(x).sum(), without the object's overhead.
        std = self.config.pixel_std
        squared = (x - canvas).flatten(1).pow(2).sum(1)
        return -0.5 * squared / std**2 - x[0].numel() * (math.log(std) + 0.5 * math.log(2 * math.pi))

    def loss(self, x: torch.Tensor, counts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training loss (negative ELBO, KL weighted) and its terms, batch means.

        ``loss`` = reconstruction + kl_weight * KL + the score-function term for
        z_pres (zero in value) + the baseline's regression loss (trains only the
        baseline). With ``counts`` (B,) the true numbers of objects, also the
        batch's count accuracy.
        """
        x = self.check_canvas(x)
        trace = self._infer(x, greedy=False)
        nll = -self.log_likelihood(x, trace.canvas)
        return self._loss_terms(trace, nll, nll, counts)

    @torch.no_grad()
    def neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """-ELBO per canvas (B,), one sample of every latent (KL terms unweighted, exact per latent)."""
        x = self.check_canvas(x)
        trace = self._infer(x, greedy=False, keep_baseline_inputs=False)
        kl = (trace.kl_pres + trace.kl_where + trace.kl_what).sum(1)
        return -self.log_likelihood(x, trace.canvas) + kl

    def _loss_terms(self, trace: AIRTrace, nll: torch.Tensor, reconstruction: torch.Tensor,
                    counts: torch.Tensor | None, extra_loss: torch.Tensor | None = None,
                    extra_terms: dict | None = None) -> dict[str, torch.Tensor]:
        """The terms of :meth:`loss` from a trace and its -log p(x | objects) ``nll`` (B,).

        ``reconstruction`` (B,) is what the loss differentiates for the
        reconstruction (AIR: ``nll`` itself; DAIR: ``nll``'s value with the
        gradient of its class estimator); ``extra_loss`` is added to the loss
        and ``extra_terms`` to the terms.
        """
        w = self.config.kl_weight
        object_kl = trace.kl_where + trace.kl_what                        # (B, N), 0 for absent objects
        kl = trace.kl_pres + object_kl
        # Cost each step's z_pres can change: the reconstruction, its object's KL and every later step's KL.
        later_kl = kl.flip(1).cumsum(1).flip(1) - kl                        # sum over j > i
        cost_to_go = nll[:, None] + w * (object_kl + later_kl)
        b, n = trace.pres.shape
        score, baseline_loss = self.baseline.score_term(
            trace.log_q_pres.reshape(b * n), cost_to_go.detach().reshape(b * n),
            trace.baseline_inputs.reshape(b * n, -1))
        total_kl = kl.sum(1)
        loss = (reconstruction + w * total_kl + score.reshape(b, n).sum(1)).mean() + baseline_loss
        terms = {
            "loss": loss if extra_loss is None else loss + extra_loss,
            "nll": nll.mean().detach(),
            "kl": total_kl.mean().detach(),
            "kl_pres": trace.kl_pres.sum(1).mean().detach(),
            "kl_where": trace.kl_where.sum(1).mean().detach(),
            "kl_what": trace.kl_what.sum(1).mean().detach(),
            "baseline_loss": baseline_loss.detach(),
            "objects": trace.counts.float().mean(),
        }
        terms.update(extra_terms or {})
        if counts is not None:
            terms["count_accuracy"] = (trace.counts == counts).float().mean()
        return terms


@torch.no_grad()
def count_objects(model: AIR, images: torch.Tensor, batch_size: int = 1000, greedy: bool = True,
                  max_steps: int | None = None) -> torch.Tensor:
    """The number of objects ``model`` finds in each canvas (N,), in batches, on the model's device
    (in at most ``max_steps`` steps; None: the model's own number)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counts = []
    try:
        for start in range(0, len(images), batch_size):
            trace = model(images[start:start + batch_size].to(device), greedy=greedy, keep_images=False,
                          max_steps=max_steps)
            counts.append(trace.counts.cpu())
    finally:
        model.train(was_training)
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def joint_counts(model: AIR, images: torch.Tensor, max_steps: int | None = None,
                 batch_size: int = 500) -> torch.Tensor:
    """The number of objects (N,) that the model's own joint probability prefers (Chapter 6).

    Greedy inference proposes an object at every step; the count is the n whose first n objects give
    the highest log p(x | objects) + log p(objects): the pixels' likelihood, the priors of each
    object's where and what at their inferred values, n log p(z_pres = 1) and, when the count stops
    before the last step, log p(z_pres = 0). A second window on a digit already explained buys
    little likelihood for its prior cost; z_pres alone does not weigh that.
    """
    if not isinstance(model.what, WhatVAE):
        raise ValueError(f"joint_counts needs AIR's Gaussian z_what, not {type(model.what).__name__}")
    device, c = next(model.parameters()).device, model.config
    was_training = model.training
    model.eval()
    counts = []
    try:
        for start in range(0, len(images), batch_size):
            x = model.check_canvas(images[start:start + batch_size].to(device))
            trace = model._infer(x, greedy=True, keep_baseline_inputs=False, max_steps=max_steps,
                                 keep_painted=True, every_step=True)
            steps = trace.pres.shape[1]
            prior = (Normal(model.prior_where_loc, model.prior_where_std).log_prob(trace.where).sum(-1)
                     + Normal(0.0, 1.0).log_prob(trace.what).sum(-1) + math.log(c.prior_pres))
            canvases = torch.cat([torch.zeros_like(x)[:, None], trace.painted.cumsum(1)], 1)  # (B, N+1, ..)
            likelihood = torch.stack([model.log_likelihood(x, canvases[:, n]) for n in range(steps + 1)], 1)
            stop = torch.full((steps + 1,), math.log(1 - c.prior_pres), device=device)
            stop[-1] = 0.0
            joint = likelihood + F.pad(prior.cumsum(1), (1, 0)) + stop
            counts.append(joint.argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


def count_accuracy(model: AIR, images: torch.Tensor, counts: torch.Tensor, batch_size: int = 1000,
                   greedy: bool = True) -> float:
    """Fraction of canvases whose number of objects ``model`` gets right."""
    found = count_objects(model, images, batch_size, greedy)
    return float((found == counts.cpu()).float().mean())
