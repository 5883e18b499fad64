"""Gradient estimators (Chapter 3): unbiasedness, CONCRETE's bias, training of the learned parts, bad input.

Every check draws many samples at one fixed parameter in a single batch, so it
is fast, and seeds the generator first, so it is deterministic.
"""

import ipywidgets as widgets
import pytest
import torch
from torch import nn

from objectcentric.estimators import (
    CONCRETE,
    ESTIMATORS,
    NVIL,
    REBAR,
    RELAX,
    REINFORCE,
    bernoulli_logits,
    conditional_gumbel,
    exact_expectation,
    exact_gradient,
    gumbel,
    make_estimator,
)
from objectcentric.widgets import choice_widget

N_SAMPLES = 200_000
TARGET_3 = torch.tensor([0.34, 0.33, 0.33])


def categorical_cost(b):
    """The categorical toy: squared distance of the (one-hot or relaxed) sample to a target."""
    return ((b - TARGET_3) ** 2).sum(-1)


def replication_cost(b):
    """The REBAR/RELAX toy for a Bernoulli b = column 1 of a 2-class sample: (b - 0.499)²."""
    return (b[:, 1] - 0.499) ** 2


PROBLEMS = {
    "K=2": (bernoulli_logits(torch.tensor([0.4])), replication_cost),
    "K=3": (torch.tensor([[0.2, -0.1, 0.5]]), categorical_cost),
}


def configured(name, k):
    """An estimator with its learned parts set away from their initial values: unbiased for any."""
    torch.manual_seed(123)
    estimator = make_estimator(name, k)
    with torch.no_grad():
        if name == "nvil":
            estimator.bias.fill_(0.3)
        if name in ("rebar", "relax"):
            estimator.eta.fill_(0.8)
            estimator.log_temperature.fill_(-1.0)
            estimator.baseline.bias.fill_(0.3)
        if name == "relax":
            nn.init.uniform_(estimator.net.w2, -0.5, 0.5)
            estimator.net.b2.fill_(0.1)
    return estimator


def z_scores(samples, exact):
    mean, standard_error = samples.mean(0), samples.std(0) / samples.shape[0] ** 0.5
    return (mean - exact) / standard_error


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", ["reinforce", "nvil", "rebar", "relax"])
def test_unbiased_estimators_average_to_the_exact_gradient(name, problem):
    logits, cost = PROBLEMS[problem]
    k = logits.shape[1]
    exact = exact_gradient(logits, cost)[0]
    estimator = configured(name, k)
    torch.manual_seed(0)
    samples = estimator.gradient_samples(logits.expand(N_SAMPLES, k), cost)
    z = z_scores(samples, exact)
    assert z.abs().max() < 3, f"{name} on {problem}: mean {samples.mean(0)} vs exact {exact} (z {z})"


@pytest.mark.parametrize("name", ["nvil", "rebar"])
def test_input_dependent_baseline_is_unbiased(name):
    torch.manual_seed(0)
    x = torch.randn(N_SAMPLES, 4)
    estimator = NVIL(in_features=4, hidden=8) if name == "nvil" else REBAR(in_features=4, baseline_hidden=8)
    logits, cost = PROBLEMS["K=3"]
    exact = exact_gradient(logits, cost)[0]
    samples = estimator.gradient_samples(logits.expand(N_SAMPLES, 3), cost, x=x)
    assert z_scores(samples, exact).abs().max() < 3


def test_exact_gradient_matches_the_closed_form_for_a_bernoulli():
    logit = torch.tensor([-0.7, 0.0, 1.3])
    grad = exact_gradient(bernoulli_logits(logit), replication_cost)
    p = torch.sigmoid(logit)
    # E[f] = p (1 - t)² + (1 - p) t², d/dlogit = p (1 - p) (1 - 2t); the logit is column 1
    assert torch.allclose(grad[:, 1], p * (1 - p) * (1 - 2 * 0.499), atol=1e-7)
    assert torch.allclose(grad[:, 0], -grad[:, 1], atol=1e-7)  # softmax gradients sum to zero


def test_concrete_is_biased_and_its_bias_shrinks_with_the_temperature():
    logits, cost = PROBLEMS["K=3"]
    exact = exact_gradient(logits, cost)[0]
    biases, errors = [], []
    for temperature in (0.5, 0.25, 0.1):
        torch.manual_seed(0)
        samples = CONCRETE(temperature).gradient_samples(logits.expand(N_SAMPLES, 3), cost)
        biases.append(float((samples.mean(0) - exact).norm()))
        errors.append(float((samples.std(0) / N_SAMPLES**0.5).norm()))
    assert biases[0] > 10 * errors[0], "CONCRETE should be clearly biased at temperature 0.5"
    for (b1, e1), (b2, e2) in zip(zip(biases, errors), zip(biases[1:], errors[1:])):
        assert b2 < b1 - 3 * (e1**2 + e2**2) ** 0.5, f"bias did not shrink: {biases}"


def test_conditional_relaxation_has_the_marginal_of_the_unconditional_one():
    # z̃ ~ p(z | b) with b ~ p(b) must be distributed as z = log p + G, and argmax z̃ = b.
    torch.manual_seed(0)
    log_p = torch.tensor([0.2, -0.1, 0.5]).log_softmax(-1).expand(N_SAMPLES, 3)
    z = log_p + gumbel(torch.rand(N_SAMPLES, 3).clamp_min(1e-30))
    b = z.argmax(-1)
    z_tilde = conditional_gumbel(log_p, b, torch.rand(N_SAMPLES, 3).clamp_min(1e-30))
    assert torch.equal(z_tilde.argmax(-1), b)
    for q in (0.1, 0.5, 0.9):
        assert torch.allclose(z.quantile(q, dim=0), z_tilde.quantile(q, dim=0), atol=0.02)
        for k in range(3):  # and given each class: z̃ | b = k is distributed as z | argmax z = k
            assert torch.allclose(z[b == k].quantile(q, dim=0), z_tilde[b == k].quantile(q, dim=0), atol=0.05)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_shapes_and_values_of_the_output(name):
    torch.manual_seed(0)
    logits = torch.randn(16, 5, requires_grad=True)
    estimator = make_estimator(name, 5)
    out = estimator(logits, lambda b: (b * torch.arange(5.0)).sum(-1))
    assert out.surrogate.shape == out.cost.shape == (16,)
    assert out.sample.shape == (16, 5) and out.control_loss.shape == ()
    assert torch.allclose(out.surrogate.detach(), out.cost)  # the surrogate's value is the cost
    out.loss().backward()
    assert logits.grad.shape == (16, 5) and torch.isfinite(logits.grad).all()
    if name not in ("concrete", "exact"):
        assert torch.allclose(out.sample.sum(-1), torch.ones(16)) and set(out.sample.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("name", ["nvil", "rebar", "relax"])
def test_control_loss_trains_only_the_estimator_and_surrogate_only_the_model(name):
    torch.manual_seed(0)
    logits = torch.zeros(64, 3, requires_grad=True)
    scale = torch.ones((), requires_grad=True)  # a "decoder" parameter inside f

    def cost(b):
        return scale * categorical_cost(b)

    estimator = make_estimator(name, 3)
    out = estimator(logits, cost)
    out.control_loss.backward(retain_graph=True)
    assert logits.grad is None and scale.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in estimator.parameters())
    estimator.zero_grad(set_to_none=True)
    out.surrogate.mean().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in estimator.parameters())
    # f's own parameter gets the pathwise gradient of f(b) at the sampled b
    assert torch.allclose(scale.grad, categorical_cost(out.sample).mean())
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nvil", "rebar", "relax"])
def test_learned_control_variate_lowers_the_variance(name):
    # 200 steps on the control loss alone, at a fixed parameter, must cut the variance:
    # the cost's offset of about 0.66 is most of REINFORCE's variance, and both learn it.
    logits, cost = PROBLEMS["K=3"]
    torch.manual_seed(0)
    estimator = make_estimator(name, 3)
    before = estimator.gradient_samples(logits.expand(20_000, 3), cost).var(0).sum()
    optimizer = torch.optim.Adam(estimator.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        estimator(logits.expand(256, 3).clone().requires_grad_(True), cost).control_loss.backward()
        optimizer.step()
    after = estimator.gradient_samples(logits.expand(20_000, 3), cost).var(0).sum()
    assert after < 0.01 * before, f"variance {before:.4g} -> {after:.4g}"


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_tuned_relaxation_estimators_are_far_quieter_than_reinforce(name, problem):
    # At tuned parameters REBAR and RELAX must beat REINFORCE by orders of magnitude on both toys.
    # (Before REBAR had a baseline, its variance-optimal η was near 0 and it *was* REINFORCE.)
    logits, cost = PROBLEMS[problem]
    k = logits.shape[1]
    torch.manual_seed(0)
    reinforce = REINFORCE().gradient_samples(logits.expand(20_000, k), cost).var(0).sum()
    estimator = make_estimator(name, k)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        estimator(logits.expand(256, k).clone().requires_grad_(True), cost).control_loss.backward()
        optimizer.step()
    tuned = estimator.gradient_samples(logits.expand(20_000, k), cost).var(0).sum()
    assert tuned < 0.01 * reinforce, f"{name} on {problem}: variance {tuned:.3g} vs REINFORCE {reinforce:.3g}"


def test_rebar_control_loss_has_the_gradient_of_the_estimators_second_moment():
    # control_loss must hand η, λ and the baseline d E|ĝ|² / dθ. With common random numbers,
    # mean |ĝ|² over a batch is a smooth function of them: compare with central differences.
    logits, cost = PROBLEMS["K=3"]
    n, h = 50_000, 1e-2
    estimator = configured("rebar", 3)
    parameters = {"eta": estimator.eta, "log_temperature": estimator.log_temperature,
                  "baseline bias": estimator.baseline.bias}

    def second_moment():
        torch.manual_seed(7)
        return float((estimator.gradient_samples(logits.expand(n, 3), cost).double() ** 2).sum(-1).mean())

    differences = {}
    for label, parameter in parameters.items():
        with torch.no_grad():
            parameter += h
            up = second_moment()
            parameter -= 2 * h
            down = second_moment()
            parameter += h
        differences[label] = (up - down) / (2 * h)
    torch.manual_seed(7)
    estimator.train()
    estimator(logits.expand(n, 3).clone().requires_grad_(True), cost).control_loss.backward()
    for label, parameter in parameters.items():
        analytic = float(parameter.grad.sum())
        assert abs(analytic - differences[label]) < 0.02 * abs(differences[label]) + 1e-6, (
            f"{label}: control-loss gradient {analytic:.6g}, finite difference {differences[label]:.6g}")


def test_groups_keep_separate_learned_parts():
    estimator = RELAX(3, n_groups=4)
    logits = torch.zeros(8, 3, requires_grad=True)
    group = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = estimator(logits, categorical_cost, group=group)
    out.control_loss.backward()
    assert estimator.eta.shape == (4,) and estimator.eta.grad.shape == (4,)
    g0 = estimator.gradient_samples(logits[:2], categorical_cost, group=group[:2])
    assert g0.shape == (2, 3)


def test_evaluation_without_gradients_gives_the_cost():
    estimator = RELAX(3).eval()
    with torch.no_grad():
        out = estimator(torch.zeros(5, 3), categorical_cost)
    assert torch.allclose(out.cost, categorical_cost(out.sample))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_runs_on_the_gpu(name):
    estimator = make_estimator(name, 3).cuda()
    target = TARGET_3.cuda()
    logits = torch.zeros(32, 3, device="cuda", requires_grad=True)
    out = estimator(logits, lambda b: ((b - target) ** 2).sum(-1))
    out.loss().backward()
    assert logits.grad.device.type == "cuda"


@pytest.mark.parametrize(
    "logits, message",
    [
        (torch.zeros(3), "shaped \\(batch, K\\)"),
        (torch.zeros(4, 1), "K >= 2"),
        (torch.zeros(0, 3), "batch >= 1"),
        (torch.tensor([[0.0, float("nan")]]), "NaN or infinite"),
        (torch.tensor([[0.0, float("inf")]]), "NaN or infinite"),
        (torch.zeros(2, 3, dtype=torch.long), "floating point"),
        ([[0.0, 1.0]], "torch.Tensor"),
    ],
)
@pytest.mark.parametrize("name", ["reinforce", "rebar"])
def test_bad_logits_raise_a_clear_error(name, logits, message):
    with pytest.raises(ValueError, match=message):
        make_estimator(name, 3)(logits, categorical_cost)


def test_bad_cost_function_group_and_name_raise_a_clear_error():
    with pytest.raises(ValueError, match="one number per sample"):
        make_estimator("reinforce", 3)(torch.zeros(4, 3), lambda b: b)
    with pytest.raises(ValueError, match="group entries"):
        make_estimator("nvil", 3, n_groups=2)(torch.zeros(2, 3), categorical_cost, group=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="unknown estimator"):
        make_estimator("gumbel", 3)
    with pytest.raises(ValueError, match="built for K=3"):
        make_estimator("relax", 3)(torch.zeros(2, 4, requires_grad=True), lambda b: b.sum(-1))
    with pytest.raises(ValueError, match="pass x="):
        NVIL(in_features=4)(torch.zeros(2, 3), categorical_cost)


# --- the toy experiments and the widget (objectcentric.experiments.toy_estimators) ---------------
def test_toy_run_is_vectorised_over_independent_repetitions_and_summarises_to_plain_numbers():
    import json

    from objectcentric.experiments import toy_estimators as toy

    run = toy.run_toy("relax", "categorical", steps=20, repetitions=3, variance_every=10, variance_samples=20)
    assert run["loss"].shape == (21, 3) and run["log_variance"].shape == (3, 3)
    assert list(run["variance_steps"]) == [0, 10, 20]
    summary = toy.summarize(run, n_points=5)
    json.dumps(summary, allow_nan=False)  # plain, finite numbers
    assert len(summary["steps"]) == len(summary["loss_mean"]) == 5
    # the exact gradient lowers the exact loss of every repetition
    exact = toy.run_toy("exact", "replication", steps=30, repetitions=2, variance_every=10, variance_samples=5)
    assert (exact["loss"][-1] < exact["loss"][0]).all() and len(exact["variance_steps"]) == 0


def test_toy_results_have_the_recorded_files_toy_keys_and_plot():
    import json

    import matplotlib

    matplotlib.use("Agg")
    from objectcentric.experiments import toy_estimators as toy
    from objectcentric.paths import project_root
    from objectcentric.viz import plot_curves

    recorded = json.loads((project_root() / "results" / "estimators.json").read_text())
    torch.manual_seed(0)
    block = toy.fixed_parameter_benchmark("categorical", tune_steps=5, n_samples=500, progress=False)
    assert set(block) == set(recorded["fixed_parameter"]["categorical"])
    assert set(block["estimators"]) == set(recorded["fixed_parameter"]["categorical"]["estimators"])
    assert block["expected_cost"] == pytest.approx(recorded["fixed_parameter"]["categorical"]["expected_cost"])
    curves = {name: toy.summarize(toy.run_toy(name, "categorical", steps=10, repetitions=2, variance_every=5,
                                              variance_samples=5), n_points=3) for name in ("exact", "nvil")}
    assert set(curves["nvil"]) == set(recorded["toy_experiments"]["categorical"]["curves"]["nvil"])
    loss_ax, var_ax = plot_curves(curves, title="categorical")
    assert len(loss_ax.lines) == 2 and len(var_ax.lines) == 1  # the exact gradient has no variance


def test_choice_widget_links_every_control_to_its_frames_in_the_browser():
    from objectcentric.viz import histogram_png

    png = histogram_png(torch.randn(50).numpy(), 0.1, "test", xlim=(-3, 3))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 20_000
    frames = {(name, t, n): png for name in ("a", "b") for t in (0.5, 1.0) for n in (10, 100)}
    box = choice_widget(frames, ("a", "b"), (0.5, 1.0), (10, 100))
    chooser, temperature, n_samples = box.controls
    assert len(box.links) == 1 + 2 + 4  # estimator, temperature per estimator, samples per (estimator, t)
    assert {link.source[0] for link in box.links} == {chooser, temperature, n_samples}


def test_choice_widget_draws_the_selected_frame_again_in_a_kernel():
    from objectcentric.viz import histogram_png

    frames = {(name, t, n): histogram_png(torch.zeros(5).numpy(), 0.0, f"{name} {t} {n}")
              for name in ("a", "b") for t in (0.5, 1.0) for n in (10, 100)}
    calls = []

    def resample(name, temperature, n):
        calls.append((name, temperature, n))
        return histogram_png(torch.ones(n).numpy(), 0.0, f"{name} {temperature} {n}")

    box = choice_widget(frames, ("a", "b"), (0.5, 1.0), (10, 100), resample=resample)
    chooser, temperature, n_samples = box.controls
    chooser.index, temperature.index, n_samples.index = 1, 1, 1
    button = next(w for row in box.children if isinstance(row, widgets.HBox) for w in row.children
                  if isinstance(w, widgets.Button))
    button.click()
    assert calls == [("b", 1.0, 100)]
    top = box.children[-1]
    assert bytes(top.children[1].children[1].children[1].value) == resample("b", 1.0, 100)
    assert bytes(top.children[0].children[0].children[0].value) == frames[("a", 0.5, 10)]  # the others stay
    assert choice_widget(frames, ("a", "b"), (0.5, 1.0), (10, 100)).redraw is None


def test_nvil_running_mean_follows_the_cost_without_touching_the_current_estimate():
    estimator = NVIL(n_groups=2)
    logits = torch.zeros(4, 3, requires_grad=True)
    group = torch.tensor([0, 0, 1, 1])
    estimator(logits, lambda b: torch.full((4,), 5.0), group=group)
    assert torch.allclose(estimator.running_mean, torch.tensor([5.0, 5.0]))  # the first batch sets it
    estimator(logits[:2], lambda b: torch.full((2,), 1.0), group=group[:2])
    assert torch.allclose(estimator.running_mean, torch.tensor([0.9 * 5 + 0.1 * 1, 5.0]))
    estimator.eval()
    estimator(logits, lambda b: torch.full((4,), 100.0), group=group)  # evaluation leaves it alone
    assert torch.allclose(estimator.running_mean, torch.tensor([4.6, 5.0]))


# --- the discrete VAE (objectcentric.models.categorical_vae) ----------------------------------------
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_categorical_vae_trains_encoder_decoder_and_estimator(name):
    from objectcentric.models.categorical_vae import CategoricalVAE

    torch.manual_seed(0)
    model = CategoricalVAE(num_classes=4, hidden_dims=(8,), image_shape=(1, 4, 4), estimator=name)
    x = torch.bernoulli(torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    terms = model.loss(x)
    assert {"loss", "reconstruction", "kl", "neg_elbo", "control_loss"} <= set(terms)
    terms["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0 and model.decoder[0].weight.grad.abs().sum() > 0
    exact = model.exact_neg_elbo(x)
    assert exact.shape == (6,) and torch.isfinite(exact).all()
    assert model.prototypes().shape == (4, 1, 4, 4)


def test_categorical_vae_kl_to_the_uniform_prior():
    from objectcentric.models.categorical_vae import CategoricalVAE

    model = CategoricalVAE(num_classes=4, hidden_dims=(8,), image_shape=(1, 4, 4))
    assert torch.allclose(model.kl(torch.zeros(2, 4)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(model.kl(torch.tensor([[100.0, 0, 0, 0]])), torch.tensor([torch.log(torch.tensor(4.0))]))


def test_score_term_for_costs_computed_after_a_rollout_is_unbiased():
    # AIR's use: the sample is drawn and the cost computed outside the estimator.
    logits, cost = PROBLEMS["K=3"]
    exact = exact_gradient(logits, cost)[0]
    estimator = configured("nvil", 3)
    torch.manual_seed(0)
    rows = logits.expand(N_SAMPLES, 3).clone().requires_grad_(True)
    distribution = torch.distributions.Categorical(logits=rows)
    index = distribution.sample()
    term, control_loss = estimator.score_term(distribution.log_prob(index), cost(torch.eye(3)[index]))
    assert torch.equal(term.detach(), torch.zeros(N_SAMPLES)) and control_loss.shape == ()
    (samples,) = torch.autograd.grad(term.sum(), rows)
    assert z_scores(samples, exact).abs().max() < 3
    with pytest.raises(ValueError, match="shaped \\(batch,\\)"):
        estimator.score_term(torch.zeros(4, 2), torch.zeros(4))


def test_exact_expectation_weights_the_cost_of_each_class_by_its_probability():
    logits = torch.tensor([[0.2, -0.1, 0.5], [1.0, 0.0, -1.0]], requires_grad=True)
    expected = exact_expectation(logits, categorical_cost)
    by_hand = sum(logits.softmax(-1)[:, k] * categorical_cost(torch.eye(3)[k].expand(2, 3)) for k in range(3))
    assert expected.shape == (2,) and torch.allclose(expected, by_hand)
    (grad,) = torch.autograd.grad(expected.sum(), logits)
    assert torch.allclose(grad, exact_gradient(logits, categorical_cost))
    stacked = exact_expectation(logits.detach().expand(4, 2, 3), categorical_cost)  # leading dims kept
    assert stacked.shape == (4, 2) and torch.allclose(stacked, expected.detach().expand(4, 2))
    with pytest.raises(ValueError, match="one number per sample"):
        exact_expectation(logits, lambda b: b.sum())


def test_categorical_vae_takes_float64_images_and_refuses_an_empty_batch():
    from objectcentric.models.categorical_vae import CategoricalVAE

    torch.manual_seed(0)
    model = CategoricalVAE(num_classes=4, hidden_dims=(8,), image_shape=(1, 4, 4), estimator="exact")
    x = torch.bernoulli(torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(model.exact_neg_elbo(x.double()), model.exact_neg_elbo(x))
    assert torch.equal(model.loss(x.double())["loss"], model.loss(x)["loss"])
    assert model.encode(x.half()).dtype == torch.float32
    logits, cost = model.encode(x), model.reconstruction_cost(x)
    costs = torch.stack([cost(torch.eye(4)[k].expand(6, 4)) for k in range(4)], -1)
    assert torch.allclose(model.exact_neg_elbo(x), (logits.softmax(-1) * costs).sum(-1) + model.kl(logits))
    with pytest.raises(ValueError, match="got an empty batch"):
        model.loss(x[:0])
