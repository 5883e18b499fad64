"""AIR (Chapter 6): the model's pieces, its objective, bad input, and training through the common loop."""

import dataclasses
import json

import pytest
import torch

from objectcentric import records, runner
from objectcentric.checkpoints import checkpoint_dir, load_shipped, read_manifest
from objectcentric.experiments.air import (PIXEL_STD, SELECTED_BY, VARIANT_PIXEL_STD, AIRRecipe, confusion,
                                           load_air_run, pick_run)
from objectcentric.models.air import AIR, AIRConfig, count_accuracy, count_objects
from objectcentric.recipes import RecipeError, from_settings
from objectcentric.runner import EXPERIMENTS
from objectcentric.spatial import crop, crop_window, paint, where_to_theta

SMALL = dict(where_hidden=32, what_hidden=32, z_what=4)


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
    groups = AIRRecipe(lr=1e-4).optimizer(model).param_groups
    baseline = {id(p) for p in model.baseline.parameters()}
    assert {id(p) for p in groups[1]["params"]} == baseline and groups[1]["lr"] == 1e-2
    assert not baseline & {id(p) for p in groups[0]["params"]} and groups[0]["lr"] == 1e-4
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


# --- the recipe ---------------------------------------------------------------------------------
def test_the_quick_recipe_is_the_full_one_with_its_quick_overrides():
    full = AIRRecipe(inference="recurrent")
    quick = full.at_scale("quick")
    assert quick == dataclasses.replace(full, quick=True, **AIRRecipe.QUICK)
    assert quick.inference == "recurrent" and quick.n_train < full.n_train and quick.epochs < full.epochs
    assert quick.run_name(0) == "air_inferencerecurrent_quick_seed0"
    assert from_settings("air", json.loads(json.dumps(quick.settings()))) == quick
    assert AIRRecipe.CHOICES["inference"] == ("difference", "recurrent")  # the model's own list


def test_the_recurrent_network_trains_at_a_lower_learning_rate_unless_told_otherwise():
    assert AIRRecipe().lr is None and AIRRecipe().learning_rate() == 4e-4
    assert AIRRecipe(inference="recurrent").learning_rate() == 1e-4
    assert AIRRecipe(inference="recurrent", lr=3e-4).learning_rate() == 3e-4
    assert AIRRecipe(inference="recurrent").changed() == {"inference": "recurrent"}  # lr stays unset


@pytest.mark.parametrize("bad, message", [({"inference": "lstm"}, "inference must be one of difference"),
                                          ({"lr": 0.0}, "lr must be positive"),
                                          ({"baseline_lr": -1.0}, "baseline_lr must be positive"),
                                          ({"n_val": 0}, "n_val must be a whole number"),
                                          ({"pixel_std": 0.0}, "pixel_std must be positive")])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(RecipeError, match=message):
        AIRRecipe(**bad)


def test_the_shipped_checkpoint_loads_into_the_recipes_model():
    recipe = AIRRecipe()
    assert recipe.shipped_name() == "air_multi_mnist_difference.pt"
    assert AIRRecipe(inference="recurrent").shipped_name() == "air_multi_mnist_recurrent.pt"
    assert AIRRecipe(pixel_std=VARIANT_PIXEL_STD).shipped_name() is None  # the variant is not shipped
    model = recipe.build_model()
    payload = load_shipped(recipe.shipped_name(), model)
    assert payload["epoch"] == 30 and model.config.pixel_std == PIXEL_STD
    shipped, info = load_air_run(checkpoint_dir() / recipe.shipped_name())  # the benchmark's loader
    assert info["seed"] == 3 and torch.equal(shipped.where_head.bias, model.where_head.bias)


def test_a_confusion_table_counts_true_against_found():
    assert confusion(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]), 2) == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_the_shipped_run_is_picked_by_validation_accuracy():
    metrics = {"a": {"metrics": {SELECTED_BY: 0.99}}, "b": {"metrics": {SELECTED_BY: 0.995}}}
    assert pick_run(metrics) == "b"


# --- training and the recorded experiment, at the quick scale -------------------------------------
def test_a_quick_run_trains_into_a_run_folder_and_watches_validation_canvases(tmp_path):
    recipe = dataclasses.replace(AIRRecipe().at_scale("quick"), epochs=1)
    run = runner.train(recipe, 0, tmp_path / "run", device="cpu", progress="none")
    assert run.record["status"] == "done" and len(run.history) == 1
    assert {"count_accuracy", "val_count_accuracy", "val_three_digit_count_accuracy"} <= set(run.history[0])
    assert 0 <= run.record["metrics"][SELECTED_BY] <= 1
    recipe_back, model, _ = runner.load_run(tmp_path / "run")
    assert recipe_back.epochs == 1 and isinstance(model, AIR)


def test_the_experiment_at_the_quick_scale_writes_every_key_of_the_results(tmp_path):
    experiment = EXPERIMENTS["air"]
    jobs = experiment.jobs("quick")
    assert len(jobs) == 2 and all(job.recipe.quick for job in jobs)
    assert len(experiment.jobs("full")) == 10 and {j.seed for j in experiment.jobs("full")} == {0, 1, 2, 3, 4}
    summary = runner.reproduce(["air"], scale="quick", executor="inline", out=tmp_path, device="cpu")
    assert summary["air"]["done"] == 2
    written = records.read_results("air", tmp_path / "quick" / "results")
    recorded = records.read_results("air")
    speed = {"speed"} | (set(recorded) & set(recorded["speed"]["cpu"]))  # benchmarks/air.py speed writes these
    assert set(recorded) - speed <= set(written)  # every other key of the book's file is written here
    assert written["scale"] == "quick" and len(written["count_accuracy_by_seed"]) == 1
    variant = written[f"variant_pixel_std_{VARIANT_PIXEL_STD:g}"]
    assert set(recorded[f"variant_pixel_std_{VARIANT_PIXEL_STD:g}"]) <= set(variant)
    assert written["shipped_run"] in written["runs"]
    manifest = read_manifest(tmp_path / "quick" / "checkpoints")["checkpoints"]
    assert list(manifest) == ["air_multi_mnist_difference.pt"]
