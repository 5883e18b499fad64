"""Chapter 4's spatial transformer network: the model, the distorted MNIST data, the recipe and its experiment."""

import json

import pytest
import torch
import torch.nn.functional as F

from objectcentric import runner
from objectcentric.checkpoints import checkpoint_dir, load_shipped
from objectcentric.data import load_mnist
from objectcentric.data.distorted_mnist import CANVAS, VAL_SIZE, distorted_mnist
from objectcentric.experiments.spatial_transformer import RESULTS, STNRecipe, evaluate, pose_of, window_alignment
from objectcentric.models.stn import STN, STNConfig, baseline_config, build_model, count_parameters
from objectcentric.recipes import RecipeError
from objectcentric.spatial import affine_matrix, crop


@pytest.fixture(scope="module")
def canvases():
    return distorted_mnist("val", n=64)


def centred(digits: torch.Tensor, canvas: int = CANVAS) -> torch.Tensor:
    """Undistorted canvases: each 28 x 28 digit copied into the middle of an empty canvas."""
    pad = (canvas - 28) // 2
    return F.pad(digits, (pad, canvas - 28 - pad, pad, canvas - 28 - pad))


# --- the model ----------------------------------------------------------------------------------------
def test_shapes_of_both_models(canvases):
    stn, baseline = build_model("stn"), build_model("baseline")
    x = canvases.images[:5]
    assert stn.window(x).shape == (5, 2, 3)
    assert stn.glimpse(x).shape == (5, 1, 28, 28)
    assert stn(x).shape == baseline(x).shape == (5, 10)
    assert torch.equal(baseline.glimpse(x), x)  # without a transformer the classifier reads the canvas
    terms = stn.loss(x, canvases.labels[:5])
    assert set(terms) == {"loss", "accuracy"} and terms["loss"].dim() == 0 and 0 <= terms["accuracy"] <= 1


def test_the_window_starts_where_an_undistorted_digit_sits():
    torch.manual_seed(0)
    digits, _ = load_mnist("test")
    model = STN()
    canvas = centred(digits[:8])
    expected_window = torch.tensor([[28 / 42, 0, 0], [0, 28 / 42, 0]])
    assert torch.allclose(model.window(canvas), expected_window.expand(8, 2, 3))
    # The centre 28 x 28 pixels, resampled at exactly their own pixel centres: the digit itself.
    assert torch.allclose(model.glimpse(canvas), digits[:8], atol=1e-5)
    assert torch.allclose(model.glimpse(canvas), crop(canvas, expected_window, 28), atol=1e-6)


def test_the_baseline_has_as_many_parameters_within_five_percent():
    stn, baseline = build_model("stn"), build_model("baseline")
    n_stn, n_baseline = count_parameters(stn), count_parameters(baseline)
    assert abs(n_baseline - n_stn) / n_stn < 0.05
    assert baseline.localisation is None and not baseline.config.transformer
    assert all(w > s for w, s in zip(baseline.config.classifier_channels, stn.config.classifier_channels))
    smaller = STNConfig(classifier_channels=(8, 16, 32), classifier_hidden=32)
    n = count_parameters(STN(smaller))
    assert abs(count_parameters(STN(baseline_config(smaller))) - n) / n < 0.05


def test_gradients_reach_the_window(canvases):
    model = STN()
    model.loss(canvases.images[:16], canvases.labels[:16])["loss"].backward()
    assert model.localisation.to_theta.weight.grad.abs().sum() > 0
    assert model.localisation.to_theta.bias.grad.abs().sum() > 0


def test_bad_input_is_refused_with_a_clear_message(canvases):
    model = STN()
    with pytest.raises(ValueError, match="shaped"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="floating point"):
        model(torch.zeros(2, 1, 42, 42, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.zeros(0, 1, 42, 42))
    x = canvases.images[:4]
    with pytest.raises(ValueError, match="one per image"):
        model.loss(x, canvases.labels[:3])
    with pytest.raises(ValueError, match="0 .. 9"):
        model.loss(x, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="integer"):
        model.loss(x, canvases.labels[:4].float())
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("cnn")
    with pytest.raises(TypeError):
        STN(STNConfig(), canvas_size=42)


# --- the data --------------------------------------------------------------------------------------------
def test_distorted_mnist_is_deterministic_and_keeps_the_labels():
    a, b = distorted_mnist("val", n=50, seed=3), distorted_mnist("val", n=50, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.theta, b.theta)
    other = distorted_mnist("val", n=50, seed=4)
    assert not torch.equal(a.images, other.images) and torch.equal(a.labels, other.labels)
    assert torch.equal(distorted_mnist("val", n=20, seed=3).images, a.images[:20])  # a prefix of a larger draw
    train_digits, train_labels = load_mnist("train")
    test_digits, test_labels = load_mnist("test")
    assert torch.equal(a.labels, train_labels[-VAL_SIZE:][:50])  # validation: the last training digits
    assert torch.equal(distorted_mnist("train", n=30).labels, train_labels[:30])
    test = distorted_mnist("test", n=30)
    assert torch.equal(test.labels, test_labels[:30])
    assert a.images.shape == (50, 1, 42, 42) and a.images.dtype == torch.float32
    assert 0 <= a.images.min() and a.images.max() <= 1
    # The true distortion is the digit's window: cropping it gives the upright digit back.
    assert (crop(test.images, test.theta, 28) - test_digits[:30]).abs().mean() < 0.05
    assert (test.images - centred(test_digits[:30])).abs().mean() > 0.05


def test_the_distortions_have_the_stated_ranges():
    data = distorted_mnist("test", n=2000)
    assert data.rotation.abs().max() <= torch.pi / 4 and data.rotation.abs().max() > 0.95 * torch.pi / 4
    assert 0.7 <= data.scale.min() and data.scale.max() <= 1.2
    half_width = data.scale * 28 / 42
    assert (data.shift.abs() <= (1 - half_width)[:, None] + 1e-6).all()  # the digit's box stays on the canvas
    rotation, size = pose_of(data.theta)
    assert torch.allclose(rotation, data.rotation, atol=1e-5) and torch.allclose(size, half_width, atol=1e-5)
    expected = affine_matrix(scale=half_width, rotation=data.rotation, shift_x=data.shift[:, 0],
                             shift_y=data.shift[:, 1])
    assert torch.allclose(data.theta, expected)


def test_bad_data_requests_are_refused():
    with pytest.raises(ValueError, match="split"):
        distorted_mnist("validation")
    with pytest.raises(ValueError, match="n must be"):
        distorted_mnist("val", n=VAL_SIZE + 1)
    with pytest.raises(ValueError, match="canvas"):
        distorted_mnist("val", n=5, canvas=20)


def test_window_alignment_of_the_true_windows_leaves_nothing():
    data = distorted_mnist("val", n=200)

    class Oracle(STN):
        def window(self, images):
            return data.theta[: len(images)]

    found = window_alignment(Oracle(), data, batch_size=200)
    assert found["residual_rotation_std_deg"] < 0.01 and found["mean_centre_error"] < 1e-5
    assert found["distortion_rotation_std_deg"] > 20


# --- the recipe and the experiment -----------------------------------------------------------------------
def test_recipe_validates_its_settings():
    with pytest.raises(RecipeError, match="model must be one of"):
        STNRecipe(model="cnn")
    with pytest.raises(RecipeError, match="n_train"):
        STNRecipe(n_train=60_000)
    with pytest.raises(RecipeError, match="final_lr"):
        STNRecipe(final_lr=1e-2)
    assert STNRecipe().shipped_name() == "stn_distorted_mnist.pt"
    assert STNRecipe(model="baseline").shipped_name() is None
    assert STNRecipe(model="baseline").run_name(0) == "stn_modelbaseline_seed0"


@pytest.mark.parametrize("model", ["stn", "baseline"])
def test_a_quick_run_of_each_recipe_trains(model, tmp_path):
    recipe = STNRecipe(model=model).at_scale("quick")
    run = runner.train(recipe, 0, tmp_path / model, progress="none")
    assert run.record["status"] == "done" and len(run.history) == recipe.epochs
    assert {"val_loss", "val_accuracy"} <= set(run.history[-1])
    assert (tmp_path / model / "checkpoint.pt").is_file()
    _, loaded, _ = runner.load_run(tmp_path / model)
    assert count_parameters(loaded) == count_parameters(build_model(model))


def test_collect_writes_the_results_and_ships_the_stn(tmp_path):
    summary = runner.reproduce(["spatial_transformer"], scale="quick", executor="inline", out=tmp_path)
    assert summary["spatial_transformer"]["done"] == 2
    result = json.loads((tmp_path / "quick" / "results" / f"{RESULTS}.json").read_text())
    assert {"stn_test_accuracy", "baseline_test_accuracy", "parameters", "validation_curves",
            "window_alignment", "checkpoint"} <= set(result)
    assert set(result["parameters"]) == {"stn", "baseline"} and result["scale"] == "quick"
    assert len(result["validation_curves"]["stn"]["val_accuracy"]) == STNRecipe.QUICK["epochs"]
    checkpoints = tmp_path / "quick" / "checkpoints"
    manifest = json.loads((checkpoints / "manifest.json").read_text())
    assert list(manifest["checkpoints"]) == ["stn_distorted_mnist.pt"]
    load_shipped("stn_distorted_mnist.pt", STNRecipe().build_model(), checkpoints)


def test_the_shipped_checkpoint_loads():
    name = STNRecipe().shipped_name()
    if not (checkpoint_dir() / name).is_file():
        pytest.skip(f"{name} is not shipped yet")
    model = STNRecipe().build_model()
    load_shipped(name, model)
    accuracy = evaluate(model.eval(), distorted_mnist("test", n=500))["accuracy"]
    assert accuracy > 0.9
