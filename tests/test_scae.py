"""Stacked Capsule Autoencoders (Chapter 8): the model's pieces, its conventions and its evaluation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import objectcentric.data.shifted_mnist as sm
from objectcentric.capsule_eval import kmeans, refit_accuracy, transfer_accuracy
from objectcentric.models.scae import (
    SCAE,
    SCAEConfig,
    canvas_grid,
    geometric_transform,
    mixture_log_likelihood,
    paint_templates,
    part_log_likelihood,
    posterior_sparsity,
    prior_sparsity,
    template_mixture_log_likelihood,
)
from objectcentric.spatial import sampling_grid

# Small enough for a test, with every piece of the official architecture (40 x 40 canvas, valid convolutions).
TINY = dict(n_parts=5, n_special=4, encoder_channels=(8, 8, 8, 8), colour_hidden=8, n_objects=4,
            set_dims=8, set_output=16, object_params=8, object_hidden=16)


def tiny_model(**overrides) -> SCAE:
    torch.manual_seed(0)
    return SCAE(SCAEConfig(**{**TINY, **overrides}))


def images(n=6, seed=1):
    return torch.rand(n, 1, 40, 40, generator=torch.Generator().manual_seed(seed))


# --- the model ------------------------------------------------------------------------------------
def test_default_config_is_the_official_mnist_run():
    c = SCAEConfig()
    assert (c.canvas, c.n_parts, c.template_size, c.n_special, c.n_objects) == (40, 40, 11, 16, 32)
    assert c.encoder_channels == (128,) * 4 and c.encoder_strides == (2, 2, 1, 1) and c.encoder_grid == 5
    assert (c.set_layers, c.set_heads, c.set_dims, c.set_output) == (3, 1, 16, 256)
    assert (c.caps_ll_weight, c.dynamic_l2_weight) == (1.0, 10.0)
    assert (c.prior_within_weight, c.prior_between_weight) == (2.0, 0.35)
    assert (c.posterior_within_weight, c.posterior_between_weight) == (0.7, 0.2)
    assert c.within_constant == pytest.approx(3.2) and c.part_input_dims == 144
    assert c.learning_rate == 3e-5 and c.batch_size == 128 and c.rmsprop_eps == pytest.approx(1e-2 / 128 ** 2)
    assert c.alpha_channel and c.invert_pose and c.pixel_std == 1.0


def test_trace_loss_and_feature_shapes():
    model = tiny_model()
    b, m, k, t = 6, 5, 4, 11
    trace = model(images(b))
    shapes = {
        "part_pose": (b, m, 2, 3), "part_presence": (b, m), "presence_logit": (b, m), "special": (b, m, 4),
        "templates": (b, m, 1, t, t), "painted": (b, m, 2, 40, 40), "rec_ll": (b,),
        "object_presence": (b, k), "vote_presence": (b, k, m), "votes": (b, k, m, 2, 3), "ov": (b, k, 2, 3),
        "posterior": (b, k, m), "mass": (b, k), "caps_ll": (b,), "dynamic_l2": (),
    }
    for name, shape in shapes.items():
        assert tuple(getattr(trace, name).shape) == shape, name
    assert model.reconstruction(trace).shape == (b, 1, 40, 40)
    assert model.reconstruction(trace, mode=True).shape == (b, 1, 40, 40)
    terms = model.loss(images(b), torch.arange(b) % 10)
    expected = {"loss", "rec_ll", "caps_ll", "dynamic_l2", "prior_within", "prior_between", "posterior_within",
                "posterior_between", "part_presence", "object_presence", "prior_xe", "posterior_xe",
                "prior_acc", "posterior_acc"}
    assert set(terms) == expected and all(v.dim() == 0 for v in terms.values())
    assert "prior_xe" not in model.loss(images(b))
    features = model.features(images(b))
    assert features["prior"].shape == (b, k) and features["posterior"].shape == (b, k)
    # Posterior mass is a share of the parts: each object explains 0..M parts, all together at most M.
    assert (features["posterior"].sum(1) <= m + 1e-4).all()
    assert ((features["prior"] >= 0) & (features["prior"] <= 1)).all()


def test_official_parameter_count():
    # 3.54 M parameters at the official configuration, as the released model (torch-scae counts 3.53 M).
    assert sum(p.numel() for p in SCAE().parameters()) == pytest.approx(3.54e6, rel=0.01)


@pytest.mark.parametrize("alpha_channel", [True, False])
def test_loss_and_gradients_are_finite(alpha_channel):
    model = tiny_model(alpha_channel=alpha_channel)
    terms = model.loss(images(), torch.arange(6) % 10)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # Every stage learns: encoder, templates, the background, the set transformer, the objects.
    for name in ("encoder.cnn.0.weight", "encoder.head.weight", "decoder.template_logits", "decoder.bg_value",
                 "set_transformer.embed.weight", "set_transformer.pool.v.weight", "objects.params1.weight",
                 "objects.out2", "objects.op_static"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_probes_do_not_shape_the_representation():
    model = tiny_model()
    grads = []
    for labels in (None, torch.arange(6) % 10):
        model.zero_grad()
        torch.manual_seed(5)  # the same presence noise both times
        model.loss(images(), labels)["loss"].backward()
        grads.append(model.encoder.head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert model.prior_probe.weight.grad.abs().sum() > 0


def test_noise_only_where_asked():
    model = tiny_model().eval()
    x = images()
    a, b = model.features(x, noise=False), model.features(x, noise=False)
    torch.testing.assert_close(a["prior"], b["prior"])
    c = model.features(x)  # eval_noise=True by default, as in the official evaluation
    assert not torch.allclose(a["prior"], c["prior"])


def test_bad_input_raises_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="40, 40"):
        model.loss(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.loss(torch.rand(2, 1, 40, 40) * 255)
    bad = torch.rand(2, 1, 40, 40)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.features(bad)
    with pytest.raises(ValueError, match="floating point"):
        model(torch.zeros(2, 1, 40, 40, dtype=torch.uint8))


# --- the pose convention ----------------------------------------------------------------------------
def test_geometric_transform_is_the_official_parameterisation():
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    raw = torch.tensor([logit(0.49), logit(0.29), 0.25, 0.0, math.atanh(0.5) / 5, math.atanh(-0.2) / 5])
    pose = geometric_transform(raw)
    # sx = 0.5, sy = 0.3, a quarter turn: [sx c + shear sy s, -sx s + shear sy c, tx; sy s, sy c, ty].
    torch.testing.assert_close(pose, torch.tensor([[0.0, -0.5, 0.5], [0.3, 0.0, -0.2]]), atol=1e-6, rtol=0)
    sheared = geometric_transform(torch.tensor([logit(0.49), logit(0.49), 0.0, math.atanh(0.4) / 5, 0.0, 0.0]))
    torch.testing.assert_close(sheared, torch.tensor([[0.5, 0.2, 0.0], [0.0, 0.5, 0.0]]), atol=1e-6, rtol=0)


def painted_box(invert_pose: bool) -> torch.Tensor:
    """An all-ones template with the pose 'half size, shifted right by half the canvas' painted on 40 x 40."""
    template = torch.ones(1, 1, 1, 11, 11)
    pose = torch.tensor([[[[0.5, 0.0, 0.5], [0.0, 0.5, 0.0]]]])
    return paint_templates(template, pose, 40, invert_pose)[0, 0, 0]


def test_a_template_lands_where_its_pose_says():
    # The pose maps the template's square [-1, 1]^2 to x in [0, 1], y in [-0.5, 0.5]: columns 20-39, rows 10-29.
    box = painted_box(invert_pose=True)
    expected = torch.zeros(40, 40)
    expected[10:30, 20:40] = 1
    inside = box > 0.5
    assert torch.equal(inside, expected.bool())
    assert box[12:28, 22:38].min() > 0.9999  # full strength away from the edges
    assert box.sum().item() == pytest.approx(400, abs=25)


def test_the_uninverted_pose_paints_somewhere_else():
    # The ports' convention: the canvas reads the template at pose(p), so a scale of 0.5 *magnifies* it.
    box = painted_box(invert_pose=False)
    expected = torch.zeros(40, 40)
    expected[10:30, 20:40] = 1
    assert not torch.equal(box > 0.5, expected.bool())
    assert (box > 0.5).sum() > 1000  # it covers most of the canvas


def test_the_models_decoder_follows_config_invert_pose():
    for invert in (True, False):
        model = tiny_model(n_parts=1, invert_pose=invert)
        pose = torch.tensor([[[[0.5, 0.0, 0.5], [0.0, 0.5, 0.0]]]])
        templates = torch.ones(1, 1, 1, 11, 11)
        painted = model.decoder.paint(pose, templates)[0, 0, 0]
        torch.testing.assert_close(painted, painted_box(invert))


def test_canvas_grid_is_affine_grid():
    theta = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(canvas_grid(theta, 40), sampling_grid(theta, 40), atol=1e-6, rtol=0)


def test_the_presence_mask_is_the_official_hard_one():
    # Logits get -(1 - presence) * 1e32: unless presences are exactly 1, the most present part takes it all.
    attention = tiny_model().set_transformer.pool
    q, k = torch.randn(1, 1, 3, 16), torch.randn(1, 1, 5, 16)
    hard = attention._routing(q, k, torch.tensor([[0.9, 0.5, 0.95, 0.2, 0.6]]))
    torch.testing.assert_close(hard, torch.eye(5)[2].expand(1, 1, 3, 5))
    soft = attention._routing(q, k, torch.tensor([[1.0, 1.0, 1.0, 0.2, 0.6]]))
    assert (soft[..., :3] > 0).all() and (soft[..., 3:] == 0).all()
    torch.testing.assert_close(soft.sum(-1), torch.ones(1, 1, 3))


def test_pooling_attention_equals_the_plain_order():
    model = tiny_model()
    st = model.set_transformer
    h = torch.randn(3, 5, 8)
    for presence in (torch.rand(3, 5), torch.ones(3, 5)):
        fused = st.pool.pool(st.seeds, h, st.project, presence)
        plain = st.pool(st.seeds.expand(3, -1, -1), st.project(h), presence)
        torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


# --- likelihoods and losses ---------------------------------------------------------------------------
def test_mixture_likelihood_by_hand():
    # 2 pixels, 2 components: means (0, 1) and (1, 1), mixing logits (0, log 3) and (log 3, 0), std 1.
    x = torch.tensor([0.2, 0.9]).view(1, 1, 1, 2)
    means = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(1, 2, 1, 1, 2)
    logits = torch.tensor([[0.0, math.log(3)], [math.log(3), 0.0]]).view(1, 2, 1, 1, 2)
    normal = lambda v, mu: math.exp(-0.5 * (v - mu) ** 2) / math.sqrt(2 * math.pi)  # noqa: E731
    pixel0 = 0.25 * normal(0.2, 0.0) + 0.75 * normal(0.2, 1.0)
    pixel1 = 0.75 * normal(0.9, 1.0) + 0.25 * normal(0.9, 1.0)
    got = mixture_log_likelihood(x, means, logits, 1.0)
    assert got.item() == pytest.approx(math.log(pixel0) + math.log(pixel1), rel=1e-6)


@pytest.mark.parametrize("std", [1.0, 0.1])
def test_fused_template_mixture_matches_the_plain_mixture(std):
    g = torch.Generator().manual_seed(3)
    b, m = 3, 4
    x = torch.rand(b, 1, 6, 6, generator=g)
    painted = torch.cat([torch.rand(b, m, 1, 6, 6, generator=g), 3 * torch.randn(b, m, 1, 6, 6, generator=g)], 2)
    log_presence = F.logsigmoid(4 * torch.randn(b, m, generator=g))
    bg_mean, bg_logit = torch.tensor([0.3]), torch.tensor([0.7])
    inputs = [t.clone().requires_grad_() for t in (x, painted, log_presence, bg_mean, bg_logit)]
    fused = template_mixture_log_likelihood(*inputs, std)
    fused.sum().backward()
    plain_inputs = [t.clone().requires_grad_() for t in (x, painted, log_presence, bg_mean, bg_logit)]
    xp, pp, lp, bm, bl = plain_inputs
    means = torch.cat([pp[:, :, :1], bm.expand(b, 1, 1, 6, 6)], 1)
    logits = torch.cat([pp[:, :, 1:] + lp[..., None, None, None], bl.expand(b, 1, 1, 6, 6)], 1)
    plain = mixture_log_likelihood(xp, means, logits, std)
    plain.sum().backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-4)
    for a, p in zip(inputs, plain_inputs):
        torch.testing.assert_close(a.grad, p.grad, rtol=1e-4, atol=1e-5)


def test_the_models_likelihood_is_the_mixture_over_templates_and_background():
    model = tiny_model()
    trace = model(images(2))
    means, logits = model.decoder.components(trace.painted, trace.presence_logit)
    torch.testing.assert_close(trace.rec_ll, mixture_log_likelihood(images(2), means, logits, 1.0),
                               rtol=1e-5, atol=1e-3)


def test_part_likelihood_prefers_a_vote_on_the_pose():
    pose = torch.tensor([[[0.5, 0.0, 0.2, 0.0, 0.5, -0.1]]])                  # (B=1, M=1, 6)
    presence = torch.ones(1, 1)
    log_pres = torch.zeros(1, 1, 1)
    scale = torch.full((1, 1, 1), 0.1)
    near, post_near = part_log_likelihood(pose, presence, pose.unsqueeze(1), log_pres, scale)
    far, post_far = part_log_likelihood(pose, presence, pose.unsqueeze(1) + 1.0, log_pres, scale)
    assert near.item() > far.item() + 10
    assert post_near.item() > 0.99 and post_far.item() < 0.01   # the far part goes to the dummy
    # The vote on the pose: log(N(0 | 0, 0.1^2 I_6) + 0.01 * 0.01), the second term the dummy's.
    density = (2 * math.pi * 0.01) ** -3
    assert near.item() == pytest.approx(math.log(density + 1e-4), rel=1e-5)
    # An absent part costs nothing.
    assert part_log_likelihood(pose, torch.zeros(1, 1), pose.unsqueeze(1) + 1, log_pres, scale)[0].item() == 0


def test_sparsity_losses_equal_their_definitions():
    a = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.2, 0.2, 0.2, 0.2], [0.0, 1.0, 1.0, 1.0]])   # B = 3, K = 4
    within, between = prior_sparsity(a, n_classes=2)
    c = 4 / 2
    assert within.item() == pytest.approx(((1.5 - c) ** 2 + (0.8 - c) ** 2 + (3.0 - c) ** 2) / 3)
    column_sums = [1.2, 1.2, 1.7, 1.2]
    assert between.item() == pytest.approx(sum((s - 1.5) ** 2 for s in column_sums) / 4)
    assert prior_sparsity(a, 2, within_constant=1.0)[0].item() == pytest.approx(
        ((0.5) ** 2 + 0.2 ** 2 + 2.0 ** 2) / 3)

    mass = torch.tensor([[2.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    within, between = posterior_sparsity(mass)
    assert within.item() == pytest.approx((0.0 + math.log(4)) / 2, abs=1e-6)   # one-hot 0, uniform log 4
    p = np.array([3.0, 1.0, 1.0, 1.0]) / 6
    assert between.item() == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-6)


# --- evaluation -----------------------------------------------------------------------------------------
def separated(n_per_class=60, seed=0):
    centres = 10 * np.random.default_rng(123).standard_normal((10, 8))   # the same 10 far-apart points
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    features = centres[labels] + 0.1 * rng.standard_normal((len(labels), 8))
    perm = rng.permutation(len(labels))
    return features[perm], labels[perm]


def test_unsupervised_accuracy_on_separated_and_random_features():
    features, labels = separated()
    assert refit_accuracy(features, labels) == 1.0
    # Cluster ids are arbitrary: the matching finds the permutation.
    _, clusters = kmeans(features, 10, seed=1)
    assert len(set(clusters.tolist())) == 10 and not np.array_equal(clusters, labels)
    test_features, test_labels = separated(seed=1)
    both = transfer_accuracy(features, labels, test_features, test_labels)
    assert both == {"train": 1.0, "test": 1.0}
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((2000, 8))
    chance = refit_accuracy(noise, rng.integers(0, 10, 2000))
    assert 0.08 < chance < 0.16
    assert transfer_accuracy(noise[:1000], rng.integers(0, 10, 1000), noise[1000:],
                             rng.integers(0, 10, 1000))["test"] < 0.16


def test_evaluation_rejects_bad_features():
    with pytest.raises(ValueError, match="NaN"):
        refit_accuracy(np.full((20, 3), np.nan), np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        refit_accuracy(np.zeros((20, 3)), np.zeros(19, dtype=int))


# --- data -----------------------------------------------------------------------------------------------
def test_offsets_follow_pad_and_shift():
    probs = sm.offset_probabilities()
    assert probs.shape == (13,)
    torch.testing.assert_close(probs * 25, torch.tensor([1.0] + [2.0] * 12, dtype=torch.float64))
    offsets = sm.sample_offsets(50_000, torch.Generator().manual_seed(0))
    assert offsets.min() == 0 and offsets.max() == 12
    counts = torch.bincount(offsets.flatten(), minlength=13).double() / offsets.numel()
    assert (counts - probs).abs().max() < 0.01


def test_place_and_shift_copy_the_digit():
    digits = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([[0, 0], [12, 12], [3, 7], [12, 0], [5, 5]])
    canvases = sm.place_at(digits, offsets)
    for d, (x, y), c in zip(digits, offsets, canvases):
        assert torch.equal(c[:, y:y + 28, x:x + 28], d)
        assert c.sum().item() == pytest.approx(d.sum().item(), rel=1e-6)
    shifted = sm.shift_digits(digits, torch.Generator().manual_seed(1))
    again = sm.shift_digits(digits, torch.Generator().manual_seed(2))
    assert shifted.shape == (5, 1, 40, 40) and not torch.equal(shifted, again)
    with pytest.raises(ValueError, match="inside"):
        sm.place_at(digits[:1], torch.tensor([[13, 0]]))


def test_batches_cover_a_pass_shifted_afresh():
    digits = torch.rand(10, 1, 28, 28)
    labels = torch.arange(10)
    g = torch.Generator().manual_seed(0)
    batches = list(sm.shifted_batches(digits, labels, 4, g))
    assert [len(y) for _, y in batches] == [4, 4]                                  # the last, short batch dropped
    assert len(set(torch.cat([y for _, y in batches]).tolist())) == 8
    assert [len(y) for _, y in sm.shifted_batches(digits, labels, 4, g, drop_last=False)] == [4, 4, 2]


def test_the_test_set_is_fixed_by_its_seed(monkeypatch):
    digits = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(sm, "load_mnist", lambda split, root=None: (digits, torch.arange(30) % 10))
    a, la, oa = sm.shifted_mnist_test()
    b, _, ob = sm.shifted_mnist_test()
    c, _, oc = sm.shifted_mnist_test(seed=1)
    assert a.shape == (30, 1, 40, 40) and torch.equal(a, b) and torch.equal(oa, ob) and not torch.equal(oa, oc)
    assert torch.equal(la, torch.arange(30) % 10)
