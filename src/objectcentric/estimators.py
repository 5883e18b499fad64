"""Gradients through discrete choices (Chapter 3, discrete gradients).

A model that samples a discrete variable b ~ p(b | logits) and pays a cost
f(b) needs the gradient of E_b[f(b)] with respect to the logits, but sampling
a category is not differentiable. This module holds the estimators of that
gradient that the book derives one from the other, behind one interface:

- ``exact``: enumerate all K outcomes (small K only); the reference.
- ``reinforce``: the score function f(b) ∇ log p(b) (Williams, 1992); unbiased.
- ``nvil``: the score function minus a baseline c(x) (running mean of the cost
  plus a learned constant and, optionally, a network of x); unbiased.
- ``concrete``: relax b to a Gumbel-softmax sample at temperature τ and
  backpropagate through f; biased, no learned parts.
- ``rebar``: the score function with NVIL's baseline and the relaxed cost,
  at z and at z̃ ~ p(z | b), as control variates; unbiased; learns the
  baseline, the temperature λ and the scale η on the estimator's variance.
- ``relax``: REBAR's control variates plus a learned network; unbiased; learns
  the baseline, λ, η and the network.

The interface, shared by every estimator and reused by the D-VAE, AIR and
DAIR chapters::

    out = estimator(logits, f, x=None, group=None)
    loss = out.surrogate.mean() + out.control_loss   # then loss.backward()

- ``logits``: (B, K) unnormalised log-probabilities of B categorical variables
  with K classes (Bernoulli variables: ``bernoulli_logits(logit)``, K = 2).
- ``f``: maps a batch of samples (B, K) to one cost per row, shape (B,). The
  samples are one-hot for the unbiased estimators; CONCRETE, REBAR and RELAX
  also call f on relaxed samples (points of the simplex), so f must accept
  those. Row i of the cost may depend only on row i of the sample (no batch
  statistics), and f may depend on other parameters (a decoder's, say).
- ``out.surrogate`` (B,): a tensor whose value is the cost f(b) of the sample
  (the relaxed cost for CONCRETE) and whose gradient is (i) the estimator's
  gradient with respect to ``logits`` and (ii) the ordinary, pathwise gradient
  of f(b), with b held fixed, for every other parameter f depends on. So a
  decoder inside f trains as usual, and an encoder that produced ``logits``
  gets the estimated gradient by the chain rule.
- ``out.control_loss`` (scalar): trains the estimator's own parameters
  (baseline, temperature, η, surrogate network) and reaches *no other*
  parameter; it is zero for estimators without learned parts. Put the
  estimator inside the model (or into the optimizer) so that these
  parameters are updated.
- ``x`` (optional): the input the variables were inferred from, for the
  input-dependent baselines (NVIL, REBAR, RELAX) and RELAX's network.
- ``group`` (optional, (B,) integers): which copy of the learned parts each
  row uses when the estimator was built with ``n_groups > 1``. The toy
  experiments run many independent repetitions in one batch this way.

When the cost is known only after a whole rollout (AIR), REINFORCE and NVIL
also offer ``score_term(log_prob, cost, x)``: the same estimator for samples
drawn and costs computed elsewhere.

``gradient_samples(logits, f)`` returns one gradient estimate per row at
fixed parameters (what the unbiasedness tests and variance plots use), and
``exact_gradient(logits, f)`` the true gradient by enumeration
(``exact_expectation(logits, f)`` the expected cost itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, RelaxedOneHotCategorical

__all__ = [
    "ESTIMATORS",
    "CONCRETE",
    "NVIL",
    "REBAR",
    "RELAX",
    "REINFORCE",
    "Estimator",
    "EstimatorOutput",
    "Exact",
    "bernoulli_logits",
    "check_logits",
    "conditional_gumbel",
    "exact_expectation",
    "exact_gradient",
    "gumbel",
    "make_estimator",
]

CostFn = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_TEMPERATURE = 0.66  # the toy experiments' temperature (seed 000)


# --- checks and small helpers -------------------------------------------------------------
def check_logits(logits) -> torch.Tensor:
    """Return ``logits`` if it is a finite float tensor shaped (B, K), K >= 2; else raise ValueError."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must be shaped (batch, K) with batch >= 1 and K >= 2 classes, got {tuple(logits.shape)}; "
            "a single variable needs a batch dimension (logits.unsqueeze(0)), and Bernoulli "
            "logits of shape (batch,) become (batch, 2) with bernoulli_logits(logit)"
        )
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or infinite values; check the network that produced them")
    return logits


def bernoulli_logits(logit: torch.Tensor) -> torch.Tensor:
    """Bernoulli variables as 2-class categoricals: logit (B,) -> logits (B, 2) = [0, logit].

    Class 1 is "on" with probability sigmoid(logit); a one-hot sample's column 1 is b.
    """
    return torch.stack([torch.zeros_like(logit), logit], dim=-1)


def _cost(f: CostFn, sample: torch.Tensor) -> torch.Tensor:
    """f(sample), checked to give one finite-shaped number per row."""
    value = f(sample)
    batch = sample.shape[0]
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (batch,):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"the cost function must return one number per sample, shape ({batch},), got {shape}")
    return value


def _uniform(like: torch.Tensor) -> torch.Tensor:
    """Uniform noise in (0, 1), kept away from 0 so that log(u) stays finite."""
    return torch.rand_like(like).clamp_min(torch.finfo(like.dtype).tiny)


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise from uniform noise: -log(-log u)."""
    return -torch.log(-torch.log(u))


def conditional_gumbel(log_p: torch.Tensor, index: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z̃ ~ p(z | b): Gumbel-perturbed log-probabilities whose argmax is ``index`` (Tucker et al., 2017).

    ``log_p`` (B, K) are *normalised* log-probabilities, ``index`` (B,) the
    sampled classes b and ``v`` (B, K) fresh uniform noise. Given that class b
    won, z_b = max_k (log p_k + G_k), which is a standard Gumbel whatever b is
    (because sum_k p_k = 1), so z̃_b = -log(-log v_b). Every other z_k is a
    Gumbel with location log p_k truncated to lie below z_b; inverting its CDF
    gives z̃_k = -log(-log v_b - log(v_k) / p_k), computed here in log space.
    z̃ depends on the logits (through p_k, k != b) differentiably.
    """
    neg_log_v = -torch.log(v)  # > 0
    top = neg_log_v.gather(-1, index[:, None])  # -log v_b = exp(-z̃_b), shape (B, 1)
    others = -torch.logaddexp(torch.log(top), torch.log(neg_log_v) - log_p)
    winner = F.one_hot(index, log_p.shape[-1]).bool()
    return torch.where(winner, -torch.log(top), others)


def _one_hot(index: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, k).to(like.dtype)


def _magic(log_p: torch.Tensor) -> torch.Tensor:
    """log_p - stop_gradient(log_p): zero in value, the score ∇ log p in gradient."""
    return log_p - log_p.detach()


def _with_gradient(params: list[nn.Parameter], grads, value: torch.Tensor) -> torch.Tensor:
    """A scalar equal to ``value`` whose gradient is ``grads`` for ``params`` and zero for all else."""
    injected = sum((p * g.detach()).sum() for p, g in zip(params, grads) if g is not None)
    if not torch.is_tensor(injected):
        return value.detach()
    return value.detach() + injected - injected.detach()


@dataclass
class EstimatorOutput:
    """What an estimator returns (Chapter 3, discrete gradients); see the module docstring."""

    surrogate: torch.Tensor  # (B,): value f(b); gradient = the estimate (logits) + pathwise (others)
    cost: torch.Tensor  # (B,): f(b), detached (relaxed cost for CONCRETE; E_b f(b) for exact)
    sample: torch.Tensor  # (B, K): the one-hot sample (relaxed for CONCRETE; probabilities for exact)
    control_loss: torch.Tensor  # scalar: trains the estimator's own parameters only

    def loss(self) -> torch.Tensor:
        """``surrogate.mean() + control_loss``: minimise this for a batch-mean objective."""
        return self.surrogate.mean() + self.control_loss


# --- the interface -------------------------------------------------------------------------
class Estimator(nn.Module):
    """Base class of the gradient estimators for categorical variables (Chapter 3, discrete gradients).

    Subclasses implement ``_estimate(logits, f, x, group)``. Learned
    parameters are stored with a leading ``n_groups`` dimension (see the
    module docstring for ``group``).
    """

    name = "estimator"
    unbiased = True
    uses_relaxation = False  # whether f is also called on relaxed samples

    def __init__(self, n_groups: int = 1):
        super().__init__()
        if int(n_groups) < 1:
            raise ValueError(f"n_groups must be at least 1, got {n_groups}")
        self.n_groups = int(n_groups)

    def forward(self, logits: torch.Tensor, f: CostFn, x: torch.Tensor | None = None,
                group: torch.Tensor | None = None) -> EstimatorOutput:
        logits = check_logits(logits)
        return self._estimate(logits, f, x, self._check_group(group, logits))

    def _check_group(self, group, logits) -> torch.Tensor:
        batch = logits.shape[0]
        if group is None:
            return torch.zeros(batch, dtype=torch.long, device=logits.device)
        group = torch.as_tensor(group, device=logits.device)
        if group.shape != (batch,) or group.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"group must hold one integer per row, shape ({batch},), got "
                             f"{tuple(group.shape)} {group.dtype}")
        if group.numel() and (group.min() < 0 or group.max() >= self.n_groups):
            raise ValueError(f"group entries must lie in [0, {self.n_groups}) (n_groups={self.n_groups})")
        return group.long()

    def _zero(self, logits) -> torch.Tensor:
        return logits.new_zeros(())

    def _estimate(self, logits, f, x, group) -> EstimatorOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient_samples(self, logits: torch.Tensor, f: CostFn, x: torch.Tensor | None = None,
                         group: torch.Tensor | None = None) -> torch.Tensor:
        """One gradient estimate per row, (B, K), at fixed parameters (nothing is trained).

        Rows are independent draws; for many draws at one parameter repeat it:
        ``logits.expand(n, K)``.
        """
        logits = check_logits(logits).detach().requires_grad_(True)
        was_training = self.training
        self.eval()  # no control-variate training while measuring
        try:
            with torch.enable_grad():
                out = self(logits, f, x, group)
                (grad,) = torch.autograd.grad(out.surrogate.sum(), logits)
        finally:
            self.train(was_training)
        return grad

    def extra_repr(self) -> str:
        return f"n_groups={self.n_groups}" if self.n_groups > 1 else ""


class Exact(Estimator):
    """The exact gradient by enumerating all K outcomes: Σ_k p_k f(e_k) (Chapter 3, discrete gradients).

    Costs K evaluations of f per row: the reference for small K.
    """

    name = "exact"

    def _estimate(self, logits, f, x, group):
        expected = exact_expectation(logits, f)
        return EstimatorOutput(expected, expected.detach(), logits.softmax(-1).detach(), self._zero(logits))


def exact_expectation(logits: torch.Tensor, f: CostFn) -> torch.Tensor:
    """E_{b ~ softmax(logits)}[f(b)] = Σ_k p_k f(e_k), exactly, by calling f at each of the K one-hot classes.

    ``logits`` (..., K) are unnormalised log-probabilities; leading dimensions
    are flattened to N rows (row-major, as ``logits.reshape(-1, K)``) before
    ``f`` is called, K times, on one-hot batches (N, K) of ``logits``' dtype
    and device; ``f`` must return one cost per row, (N,). Returns the expected
    cost shaped ``logits.shape[:-1]``, differentiable in ``logits`` and in
    whatever ``f`` depends on. Costs K evaluations of f: the reference for
    small K (:class:`Exact`) and the models' exact ELBOs (Chapters 3 and 5).
    """
    k = logits.shape[-1]
    flat = logits.reshape(-1, k)
    eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
    costs = torch.stack([_cost(f, eye[j].expand(flat.shape[0], k)) for j in range(k)], dim=-1)  # (N, K)
    return (flat.softmax(-1) * costs).sum(-1).view(logits.shape[:-1])


def exact_gradient(logits: torch.Tensor, f: CostFn) -> torch.Tensor:
    """∇_logits E_{b ~ p(b|logits)}[f(b)] per row, (B, K), by enumerating the K outcomes (Chapter 3)."""
    return Exact().gradient_samples(logits, f)


class REINFORCE(Estimator):
    """The score-function estimator f(b) ∇ log p(b) (Williams, 1992) (Chapter 3, discrete gradients).

    Unbiased because E[f(b) ∇ log p(b)] = Σ_b f(b) ∇ p(b) = ∇ E[f(b)]; and since
    E[∇ log p(b)] = Σ_b ∇ p(b) = 0, any
    baseline c that does not depend on b may be subtracted from f(b):
    (f(b) - c) ∇ log p(b). Here c = 0; NVIL learns it.
    """

    name = "reinforce"

    def baseline(self, cost, x, group) -> tuple[torch.Tensor, torch.Tensor]:
        """The baseline c (B,) and the loss that trains it (none here)."""
        return torch.zeros_like(cost), self._zero(cost)

    def _estimate(self, logits, f, x, group):
        distribution = Categorical(logits=logits)
        index = distribution.sample()
        sample = _one_hot(index, logits.shape[-1], logits)
        cost = _cost(f, sample)
        term, control_loss = self.score_term(distribution.log_prob(index), cost, x, group)
        return EstimatorOutput(cost + term, cost.detach(), sample, control_loss)

    def score_term(self, log_prob: torch.Tensor, cost: torch.Tensor, x: torch.Tensor | None = None,
                   group: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The score-function part alone, for samples drawn and costs computed elsewhere.

        For models that cannot hand the estimator a cost function, because
        the cost is known only after a whole rollout (AIR's sequence of
        "one more object?" choices): ``log_prob`` (B,) is the log-probability of
        the drawn samples (summed over steps), ``cost`` (B,) their cost. Returns
        ``(term, control_loss)``: add ``term.mean()`` (zero in value, gradient
        (cost - c) ∇ log_prob) and ``control_loss`` to the loss.
        """
        if log_prob.shape != cost.shape or log_prob.dim() != 1:
            raise ValueError(f"log_prob and cost must both be shaped (batch,), got {tuple(log_prob.shape)} "
                             f"and {tuple(cost.shape)}")
        if group is None:
            group = torch.zeros(cost.shape[0], dtype=torch.long, device=cost.device)
        c, control_loss = self.baseline(cost, x, group)
        signal = (cost - c).detach()  # the learning signal multiplying the score
        return signal * _magic(log_prob), control_loss


class NVIL(REINFORCE):
    """REINFORCE with a learned, input-dependent baseline c(x) (Mnih & Gregor, 2014) (Chapter 3).

    c(x) = m + bias[group] + net(x) when built with ``in_features`` (x is
    flattened to (B, in_features)); without the network, c is a constant per
    group. m is a running mean of past costs (per group, updated after each
    training call, so it never depends on the current sample): Mnih & Gregor's
    centering, which lets the baseline follow costs of any scale at once. The
    learned part is trained by minimising E[(f(b) - c(x))²]: the constant that
    minimises the estimator's variance is close to E[f(b)], and regressing
    f(b) on x gets there per input. Gradients of this loss reach only the
    baseline (f(b) and x are detached).
    """

    name = "nvil"

    def __init__(self, in_features: int = 0, hidden: int = 100, n_groups: int = 1, momentum: float = 0.9):
        super().__init__(n_groups)
        self.in_features, self.momentum = int(in_features), float(momentum)
        self.bias = nn.Parameter(torch.zeros(self.n_groups))
        self.register_buffer("running_mean", torch.zeros(self.n_groups))
        self.register_buffer("seen", torch.zeros(self.n_groups, dtype=torch.bool))
        self.net = None
        if self.in_features:
            self.net = nn.Sequential(nn.Linear(self.in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def baseline(self, cost, x, group):
        c = self.running_mean[group] + self.bias[group]
        if self.net is not None:
            if x is None:
                raise ValueError(f"this NVIL baseline reads the input x ({self.in_features} features): pass x=")
            c = c + self.net(x.detach().flatten(1).to(cost.dtype)).squeeze(-1)
        if self.training and torch.is_grad_enabled():
            self._update_running_mean(cost.detach(), group)
        return c, ((cost.detach() - c) ** 2).mean()

    @torch.no_grad()
    def _update_running_mean(self, cost, group):
        """m <- momentum m + (1 - momentum) (mean cost of the group's rows); the first batch sets m."""
        total = torch.zeros_like(self.running_mean).index_add_(0, group, cost.to(self.running_mean.dtype))
        count = torch.zeros_like(self.running_mean).index_add_(0, group, torch.ones_like(total[group]))
        present = count > 0
        mean = total[present] / count[present]
        old = self.running_mean[present]
        weight = torch.where(self.seen[present], torch.full_like(old, self.momentum), torch.zeros_like(old))
        self.running_mean[present] = weight * old + (1 - weight) * mean
        self.seen[present] = True


class CONCRETE(Estimator):
    """The Gumbel-softmax / CONCRETE relaxation (Jang et al.; Maddison et al., 2017) (Chapter 3).

    b = one_hot(argmax(log p + G)) is replaced by its relaxation
    softmax((log p + G) / τ), which is differentiable in the logits; the
    gradient of f at the relaxed sample is then biased (f is evaluated away
    from the one-hot corners), the less so the lower the temperature τ, at the
    price of a higher variance.
    """

    name = "concrete"
    unbiased = False
    uses_relaxation = True

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, n_groups: int = 1):
        super().__init__(n_groups)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def _estimate(self, logits, f, x, group):
        temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        relaxed = RelaxedOneHotCategorical(temperature, logits=logits).rsample()
        cost = _cost(f, relaxed)
        return EstimatorOutput(cost, cost.detach(), relaxed, self._zero(logits))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}" + (f", n_groups={self.n_groups}" if self.n_groups > 1 else "")


class REBAR(Estimator):
    """REINFORCE with a baseline and the CONCRETE relaxation as control variates (Tucker et al., 2017) (Chapter 3).

    With z = log p + G (so b = argmax z), z̃ ~ p(z | b), c(z) = η f(softmax(z / λ))
    and a baseline c₀(x) that does not depend on b:

        ĝ = [f(b) - c₀(x) - c(z̃)] ∇ log p(b) + ∇ c(z) - ∇ c(z̃)

    ∇ E[c(z)] can be computed in two ways: by reparameterizing z directly,
    E[∇ c(z)], or by drawing b first and then z̃ ~ p(z | b) (which has the
    same distribution as z): E[c(z̃) ∇ log p(b)] + E[∇ c(z̃)]. Their difference,
    -c(z̃) ∇ log p(b) + ∇ c(z) - ∇ c(z̃), has mean zero, and so has
    c₀ ∇ log p(b): ĝ is unbiased for every η, λ and c₀. The relaxed cost
    cancels the part of the score term's noise that it tracks; the baseline
    cancels the offset of f that it cannot track (f(softmax(z / λ)) is
    evaluated inside the simplex, where it need not be near f(b)). Without
    the baseline the variance-optimal η can be near 0, and REBAR then is
    REINFORCE. The baseline is NVIL's (``self.baseline``: a running mean of
    f(b) - c(z̃), a learned constant and, with ``in_features``, a network of
    x), as in Tucker et al.'s implementation.

    The baseline, λ (learned as log λ) and η are trained to minimise the
    estimator's variance: since E[ĝ] does not depend on them,
    ∇ Var[ĝ] = ∇ E[|ĝ|²], and |ĝ|² is differentiated through the gradient ĝ
    itself (double backward, ``create_graph=True``). ĝ is taken per row with
    respect to that row's logits (for a model, a cheap stand-in for the
    variance of the encoder's gradient).
    """

    name = "rebar"
    uses_relaxation = True

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, eta: float = 1.0, n_groups: int = 1,
                 learn_temperature: bool = True, learn_eta: bool = True, in_features: int = 0,
                 baseline_hidden: int = 100):
        super().__init__(n_groups)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.log_temperature = nn.Parameter(torch.full((self.n_groups,), math.log(temperature)),
                                            requires_grad=learn_temperature)
        self.eta = nn.Parameter(torch.full((self.n_groups,), float(eta)), requires_grad=learn_eta)
        self.baseline = NVIL(in_features=in_features, hidden=baseline_hidden, n_groups=n_groups)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def control_variate(self, z, f, x, group) -> torch.Tensor:
        """c(z) = η f(softmax(z / λ)), one number per row."""
        relaxed = (z / self.temperature[group, None]).softmax(-1)
        return self.eta[group] * _cost(f, relaxed)

    def _estimate(self, logits, f, x, group):
        k = logits.shape[-1]
        log_p = logits.log_softmax(-1)
        z = log_p + gumbel(_uniform(logits))
        index = z.argmax(-1)
        sample = _one_hot(index, k, logits)
        cost = _cost(f, sample)
        if not (torch.is_grad_enabled() and logits.requires_grad):
            # nothing to estimate (evaluation): just the cost, pathwise for f's own parameters
            return EstimatorOutput(cost, cost.detach(), sample, self._zero(logits))
        z_tilde = conditional_gumbel(log_p, index, _uniform(logits))
        c_z, c_z_tilde = self.control_variate(z, f, x, group), self.control_variate(z_tilde, f, x, group)
        # The baseline follows what the relaxed control variate leaves of the cost (its running mean
        # is updated after it is read, so it never depends on the current sample).
        c0, _ = self.baseline.baseline((cost.detach() - c_z_tilde.detach()), x, group)
        log_pb = log_p.gather(-1, index[:, None]).squeeze(-1)
        # The estimator's own surrogate: its gradient w.r.t. the logits is ĝ (cost detached, so that
        # a direct dependence of f on the logits is counted once, in `surrogate` below).
        estimate = (cost.detach() - c0 - c_z_tilde) * _magic(log_pb) + (c_z - c_z_tilde)
        train_control = self.training and any(p.requires_grad for p in self.parameters())
        (g_hat,) = torch.autograd.grad(estimate.sum(), logits, create_graph=train_control)
        # The model's surrogate: pathwise gradient of f(b) for f's parameters, ĝ for the logits.
        # ĝ is detached, so the model's loss sends nothing to the baseline, η, λ or the network.
        logit_term = (logits * g_hat.detach()).sum(-1)
        surrogate = cost + logit_term - logit_term.detach()
        control_loss = self._zero(logits)
        if train_control:
            variance = (g_hat ** 2).sum(-1).mean()  # E|ĝ|² = Var + |E ĝ|², the latter fixed
            params = [p for p in self.parameters() if p.requires_grad]
            grads = torch.autograd.grad(variance, params, allow_unused=True, retain_graph=True)
            control_loss = _with_gradient(params, grads, variance)
        return EstimatorOutput(surrogate, cost.detach(), sample, control_loss)

    def extra_repr(self) -> str:
        return f"n_groups={self.n_groups}" if self.n_groups > 1 else ""


class _GroupedMLP(nn.Module):
    """One small tanh network per group: (B, in) -> (B,), row i through network group[i]."""

    def __init__(self, n_groups: int, in_features: int, hidden: int):
        super().__init__()
        bound1 = 1 / math.sqrt(in_features)
        self.w1 = nn.Parameter(torch.empty(n_groups, in_features, hidden).uniform_(-bound1, bound1))
        self.b1 = nn.Parameter(torch.zeros(n_groups, hidden))
        # The output layer starts at zero: RELAX starts out as REBAR and learns from there.
        self.w2 = nn.Parameter(torch.zeros(n_groups, hidden))
        self.b2 = nn.Parameter(torch.zeros(n_groups))

    def forward(self, inputs: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        if self.w1.shape[0] == 1:
            h = torch.tanh(inputs @ self.w1[0] + self.b1[0])
            return h @ self.w2[0] + self.b2[0]
        h = torch.tanh(torch.einsum("bi,bih->bh", inputs, self.w1[group]) + self.b1[group])
        return (h * self.w2[group]).sum(-1) + self.b2[group]


class RELAX(REBAR):
    """REBAR with a learned network in the control variate (Grathwohl et al., 2018) (Chapter 3).

    c(z) = η f(softmax(z / λ)) + r(softmax(z / λ)[, x]), where r is a small
    network (tanh, ``hidden`` units) that starts at zero, so RELAX starts as
    REBAR (baseline included). ĝ keeps REBAR's form and stays unbiased for any
    r; the baseline, λ, η and r are all trained to minimise E|ĝ|² (see REBAR).
    With ``in_features`` the network (and the baseline) also reads the
    flattened input x.
    """

    name = "relax"

    def __init__(self, num_classes: int, temperature: float = DEFAULT_TEMPERATURE, eta: float = 1.0,
                 hidden: int = 32, in_features: int = 0, n_groups: int = 1):
        super().__init__(temperature, eta, n_groups, in_features=in_features)
        self.num_classes, self.in_features = int(num_classes), int(in_features)
        self.net = _GroupedMLP(self.n_groups, self.num_classes + self.in_features, hidden)

    def control_variate(self, z, f, x, group):
        if z.shape[-1] != self.num_classes:
            raise ValueError(f"this RELAX network was built for K={self.num_classes} classes, got logits "
                             f"with K={z.shape[-1]}")
        relaxed = (z / self.temperature[group, None]).softmax(-1)
        inputs = relaxed
        if self.in_features:
            if x is None:
                raise ValueError(f"this RELAX network reads the input x ({self.in_features} features): pass x=")
            inputs = torch.cat([relaxed, x.detach().flatten(1).to(z.dtype)], dim=-1)
        return self.eta[group] * _cost(f, relaxed) + self.net(inputs, group)


ESTIMATORS = {cls.name: cls for cls in (Exact, REINFORCE, NVIL, CONCRETE, REBAR, RELAX)}


def make_estimator(name: str, num_classes: int, *, temperature: float = DEFAULT_TEMPERATURE,
                   in_features: int = 0, n_groups: int = 1, hidden: int = 32) -> Estimator:
    """Build an estimator by name with the settings every chapter uses (Chapter 3, discrete gradients).

    ``num_classes`` is K; ``in_features`` the flattened size of x for the
    baseline networks (NVIL, REBAR, RELAX) and RELAX's network (0: they do not
    read x).
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    if name in ("exact", "reinforce"):
        return ESTIMATORS[name](n_groups=n_groups)
    if name == "nvil":
        return NVIL(in_features=in_features, n_groups=n_groups)
    if name == "concrete":
        return CONCRETE(temperature=temperature, n_groups=n_groups)
    if name == "rebar":
        return REBAR(temperature=temperature, in_features=in_features, n_groups=n_groups)
    return RELAX(num_classes, temperature=temperature, hidden=hidden, in_features=in_features, n_groups=n_groups)
