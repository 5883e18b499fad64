"""AIR (Chapter 6): the model's pieces, its objective, bad input, and training through the common loop."""

import math

import pytest
import torch

from objectcentric.data.multi_mnist import make_multi_mnist
from objectcentric.experiments.air import QUICK, checkpoint_name, make_optimizer, train_air
from objectcentric.models.air import AIR, AIRConfig, count_accuracy, count_objects
from objectcentric.spatial import crop, crop_window, paint, where_to_theta

SMALL = dict(where_hidden=32, what_hidden=32, z_what=4)


@pytest.fixture(scope="module")
def multi_mnist_data():
    """The recipe's three sets, made from random blobs instead of MNIST (tests stay offline)."""
    generator = torch.Generator().manual_seed(0)
    digits = (torch.rand(30, 1, 28, 28, generator=generator) > 0.7).float()
    labels = torch.arange(30) % 10
    return {"train": make_multi_mnist(digits, labels, 96, seed=1),
            "test": make_multi_mnist(digits, labels, 40, seed=2),
            "test3": make_multi_mnist(digits, labels, 40, seed=3, max_digits=3, counts=(0, 0, 0, 1))}


def canvases(b=6, seed=0):
    return torch.rand(b, 1, 50, 50, generator=torch.Generator().manual_seed(seed)) * 0.3


@pytest.mark.parametrize("inference", ["difference", "recurrent"])
def test_trace_shapes_and_masking(inference):
    torch.manual_seed(0)
    model = AIR(AIRConfig(inference=inference, **SMALL))
    trace = model(canvases(), keep_images=True)
    b, n = 6, model.config.max_steps
    assert trace.pres.shape == (b, n) and trace.where.shape == (b, n, 3) and trace.what.shape == (b, n, 4)
    assert trace.glimpses.shape == (b, n, 1, 24, 24) and trace.painted.shape == (b, n, 1, 50, 50)
    assert trace.canvas.shape == (b, 1, 50, 50)
    # Once a step says "no more objects", every later step is absent too.
    assert torch.all(trace.pres[:, 1:] <= trace.pres[:, :-1])
    assert torch.equal(trace.counts, trace.pres.sum(1).long())
    # Absent objects pay no KL for their where and what; steps not reached pay nothing.
    assert torch.all(trace.kl_where[trace.pres == 0] == 0) and torch.all(trace.kl_what[trace.pres == 0] == 0)
    assert torch.all(trace.kl_pres[trace.alive == 0] == 0)
    # The canvas is the sum of the present objects.
    painted = (trace.painted[:, :, 0] * trace.pres[..., None, None]).sum(1, keepdim=True)
    assert torch.allclose(trace.canvas, painted, atol=1e-6)


def test_initial_steps_start_at_the_prior():
    model = AIR(AIRConfig(**SMALL))
    trace = model(canvases(), greedy=True)
    assert torch.allclose(trace.pres_prob, torch.full_like(trace.pres_prob, torch.sigmoid(torch.tensor(2.0))))
    assert torch.allclose(trace.scale, torch.full_like(trace.scale, 0.4), atol=1e-6)
    assert torch.all(trace.pres == 1)  # greedy: P(present) = 0.88 > 0.5


def test_loss_is_finite_and_trains_every_part():
    torch.manual_seed(0)
    model = AIR(AIRConfig(**SMALL))
    terms = model.loss(canvases(), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert set(terms) >= {"loss", "nll", "kl", "kl_pres", "kl_where", "kl_what", "baseline_loss", "count_accuracy"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    for name, part in [("where", model.where_head), ("what encoder", model.what.encoder),
                       ("what decoder", model.what.decoder), ("baseline", model.baseline.net)]:
        grads = [p.grad for p in part.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reached the {name}"


def test_log_likelihood_is_the_gaussian_density():
    model = AIR(AIRConfig(**SMALL))
    x, mean = canvases(2, 1), canvases(2, 2)
    expected = torch.distributions.Normal(mean, model.config.pixel_std).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_likelihood(x, mean), expected, rtol=1e-5)


def test_bad_canvases_get_clear_errors():
    model = AIR(AIRConfig(**SMALL))
    with pytest.raises(ValueError, match=r"\(batch, 1, 50, 50\)"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(torch.rand(2, 1, 50, 50) * 255)
    with pytest.raises(ValueError, match="NaN"):
        model.loss(torch.full((2, 1, 50, 50), float("nan")))
    with pytest.raises(ValueError, match="inference"):
        AIRConfig(inference="lstm")


def test_crop_window_matches_crop_and_paint():
    z = torch.tensor([[0.48, -0.2, 0.3], [0.3, 0.1, -0.4]])
    x = torch.rand(2, 1, 50, 50)
    assert torch.allclose(crop_window(x, z[:, 0], z[:, 1:], 24), crop(x, where_to_theta(z), (24, 24)), atol=1e-5)
    patch = torch.rand(2, 1, 24, 24)
    assert torch.allclose(crop_window(patch, 1 / z[:, 0], -z[:, 1:] / z[:, :1], 50),
                          paint(patch, where_to_theta(z), (50, 50)), atol=1e-5)


def test_count_accuracy_of_a_model_that_never_sees_objects():
    model = AIR(AIRConfig(**SMALL))
    with torch.no_grad():
        model.where_head.bias[0] = -10.0  # P(present) ~ 0 at every step
    counts = torch.tensor([0, 1, 2, 0, 0, 2])
    assert torch.equal(count_objects(model, canvases(), batch_size=4), torch.zeros(6, dtype=torch.long))
    assert count_accuracy(model, canvases(), counts, batch_size=4) == pytest.approx(0.5)


def test_the_baseline_has_its_own_learning_rate():
    model = AIR(AIRConfig(**SMALL))
    groups = make_optimizer(model, 1e-4, 1e-2).param_groups
    baseline = {id(p) for p in model.baseline.parameters()}
    assert {id(p) for p in groups[1]["params"]} == baseline and groups[1]["lr"] == 1e-2
    assert not baseline & {id(p) for p in groups[0]["params"]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_quick_training_runs_checkpoints_and_resumes(tmp_path, multi_mnist_data):
    run = tmp_path / "air.pt"
    model, result = train_air(AIRConfig(**SMALL), quick=True, epochs=1, checkpoint=run, progress="none",
                              data=multi_mnist_data, device="cpu")
    assert len(result.history) == 1 and run.exists()
    record = result.history[0]
    assert {"count_accuracy", "val_test_count_accuracy", "val_test3_count_accuracy"} <= set(record)
    assert all(math.isfinite(v) for v in record.values())
    model, result = train_air(AIRConfig(**SMALL), quick=True, epochs=2, checkpoint=run, progress="none",
                              data=multi_mnist_data, device="cpu")
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert checkpoint_name("difference").endswith(".pt") and QUICK["epochs"] >= 1
