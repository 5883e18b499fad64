"""AIR (Chapter 6): the model's pieces, its objective, bad input, and training through the common loop."""

import dataclasses
import json
import math
import types

import pytest
import torch

from objectcentric import records, runner
from objectcentric.checkpoints import checkpoint_dir, load_shipped, read_manifest
from objectcentric.data.mnist import load_mnist
from objectcentric.data.multi_mnist import place_digits, resize_digits
from objectcentric.experiments.air import (PIXEL_STD, SELECTED_BY, VARIANT_DIGIT_SIZES, VARIANT_PIXEL_STD,
                                           VARIANT_SEEDS, AIRRecipe, box_iou,
                                           canvases_apart, confusion, ink_boxes, load_air_run, matched_ious,
                                           mean_neg_elbo, pick_run, window_boxes)
from objectcentric.models.air import AIR, AIRConfig, count_accuracy, count_objects, joint_counts
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
                                          ({"pixel_std": 0.0}, "pixel_std must be positive"),
                                          ({"digit_sizes": (24, 30)}, "digit_sizes must be distinct whole"),
                                          ({"digit_sizes": (20, 20)}, "digit_sizes must be distinct whole"),
                                          ({"digit_sizes": ()}, "digit_sizes must be distinct whole")])
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
    listed = read_manifest()["checkpoints"][recipe.shipped_name()]
    assert info["seed"] == listed["seed"] and torch.equal(shipped.where_head.bias, model.where_head.bias)


def test_a_confusion_table_counts_true_against_found():
    assert confusion(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]), 2) == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_the_shipped_run_is_picked_by_the_lowest_validation_neg_elbo_not_by_counts():
    assert SELECTED_BY.startswith("val_neg_elbo")
    metrics = {"a": {"metrics": {SELECTED_BY: 171.2, "val_count_accuracy": 0.999}},
               "b": {"metrics": {SELECTED_BY: 170.4, "val_count_accuracy": 0.990}}}
    assert pick_run(metrics) == "b"


def test_the_mean_neg_elbo_is_seeded_and_leaves_the_global_random_state_alone():
    torch.manual_seed(0)
    model, images = AIR(AIRConfig()).eval(), torch.rand(6, 1, 50, 50)
    state = torch.get_rng_state()
    first = mean_neg_elbo(model, images, batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == mean_neg_elbo(model, images, batch_size=4) and math.isfinite(first)
    torch.manual_seed(3)  # the same number as the per-canvas -ELBO averaged by hand, under the same seed
    with torch.no_grad():
        by_hand = float(model.neg_elbo(images).double().mean())
    assert mean_neg_elbo(model, images, batch_size=6, seed=3) == pytest.approx(by_hand, rel=1e-6)


# --- counting beyond training, and box quality ----------------------------------------------------
def test_box_iou_of_constructed_boxes():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4]])
    b = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2], [1, 1, 3, 3], [5, 5, 6, 6]])
    expected = torch.tensor([[1.0, 2 / 6, 1 / 7, 0.0],      # same box; half shifted: 2 / (4 + 4 - 2); a corner
                             [4 / 16, 4 / 16, 4 / 16, 0.0]])  # boxes inside the 4 x 4 box; apart
    assert torch.allclose(box_iou(a, b), expected)


def test_windows_are_matched_to_true_boxes_by_total_iou():
    true = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    found = torch.tensor([[21.0, 20, 31, 30], [0, 0, 10, 10], [0, 0, 12, 10]])  # in another order, one extra
    ious = matched_ious(found, true)
    assert sorted(ious.tolist()) == pytest.approx(sorted([90 / 110, 1.0]))  # the extra window is left out
    # The best pair first (window 2 with box 1, 110/120; then 80/120) is not the best matching.
    found = torch.tensor([[0.0, 0, 10, 10], [0, 0, 12, 10]])
    true = torch.tensor([[0.0, 0, 11, 10], [2, 0, 12, 10]])
    assert matched_ious(found, true).tolist() == pytest.approx([100 / 110, 100 / 120])
    assert matched_ious(found[:0], true).numel() == 0 and matched_ious(found, true[:0]).numel() == 0


def test_a_window_is_the_box_of_the_same_where_code():
    data, _ = canvases_apart(8, 3, seed=0)
    where = data.z_where.clone()
    where[..., 0] = where[..., 0].log()  # the trace's where is (log s, x, y)
    trace = types.SimpleNamespace(where=where, scale=data.z_where[..., 0])
    assert torch.allclose(window_boxes(trace, data.canvas), data.boxes, atol=1e-4)


@pytest.mark.parametrize("n_digits, size", [(4, 24), (5, 19)])
def test_generated_canvases_hold_digits_whose_ink_does_not_overlap(n_digits, size):
    data, redrawn = canvases_apart(40, n_digits, seed=1, digit_size=size)
    again, _ = canvases_apart(40, n_digits, seed=1, digit_size=size)
    assert torch.equal(data.images, again.images) and redrawn < 40  # seeded
    assert torch.all(data.counts == n_digits) and torch.all(data.present)
    assert torch.all((data.boxes[..., 2:] - data.boxes[..., :2]) == size)
    # Each digit painted alone: no pixel has ink of two digits, and together they are the canvas.
    offsets = data.boxes[..., :2].long()
    patches = resize_digits(load_mnist("test")[0][data.digit_indices.flatten()].float(), size)
    patches = patches.view(40, n_digits, size, size)
    alone = torch.stack([place_digits(patches[:, k:k + 1], offsets[:, k:k + 1], 50)[:, 0]
                         for k in range(n_digits)], 1)
    assert int((alone > 0).sum(1).max()) == 1
    assert torch.allclose(alone.sum(1, keepdim=True), data.images)
    centres = data.boxes[..., :2] + size / 2
    apart = torch.cdist(centres, centres) + torch.eye(n_digits) * 1e3
    assert apart.min() >= 0.75 * size  # the training canvases' rule too


def test_digits_that_cannot_be_placed_apart_are_refused():
    with pytest.raises(ValueError, match="rarely fit apart"):
        canvases_apart(2, 2, seed=0, digit_size=24, canvas=30)


def test_ink_boxes_are_the_tight_boxes_of_non_zero_pixels():
    patch = torch.zeros(1, 6, 6)
    patch[0, 1:3, 2:5] = 0.5  # rows 1-2, columns 2-4
    assert ink_boxes(patch).tolist() == [[2, 1, 5, 3]]


def test_more_steps_at_test_time_keep_the_weights_and_the_first_steps():
    model = AIRRecipe().build_model()
    load_shipped(AIRRecipe().shipped_name(), model)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data, _ = canvases_apart(6, 4, seed=2)
    with torch.no_grad():
        short, long = model(data.images, greedy=True), model(data.images, greedy=True, max_steps=6)
    assert long.pres.shape == (6, 6) and short.pres.shape == (6, 3) and model.config.max_steps == 3
    assert torch.equal(long.where[:, :3], short.where[:, :3]) and torch.equal(long.pres[:, :3], short.pres[:, :3])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.all(count_objects(model, data.images, max_steps=6) >= count_objects(model, data.images))


# --- training and the recorded experiment, at the quick scale -------------------------------------
def test_a_quick_run_trains_into_a_run_folder_and_watches_validation_canvases(tmp_path):
    recipe = dataclasses.replace(AIRRecipe().at_scale("quick"), epochs=1)
    run = runner.train(recipe, 0, tmp_path / "run", device="cpu", progress="none")
    assert run.record["status"] == "done" and len(run.history) == 1
    assert {"count_accuracy", "val_count_accuracy", "val_three_digit_count_accuracy"} <= set(run.history[0])
    assert "val_neg_elbo" in run.history[0] and math.isfinite(run.record["metrics"][SELECTED_BY])
    recipe_back, model, _ = runner.load_run(tmp_path / "run")
    assert recipe_back.epochs == 1 and isinstance(model, AIR)


def test_the_experiment_at_the_quick_scale_writes_every_key_of_the_results(tmp_path):
    experiment = EXPERIMENTS["air"]
    jobs = experiment.jobs("quick")
    assert len(jobs) == 3 and all(job.recipe.quick for job in jobs)
    full = experiment.jobs("full")
    assert len(full) == 10 + len(VARIANT_SEEDS) and {j.seed for j in full} == {0, 1, 2, 3, 4}
    assert [j.seed for j in full if j.recipe.digit_sizes == VARIANT_DIGIT_SIZES] == list(VARIANT_SEEDS)
    summary = runner.reproduce(["air"], scale="quick", executor="inline", out=tmp_path, device="cpu")
    assert summary["air"]["done"] == 3
    written = records.read_results("air", tmp_path / "quick" / "results")
    recorded = records.read_results("air")
    speed = {"speed"} | (set(recorded) & set(recorded["speed"]["cpu"]))  # benchmarks/air.py speed writes these
    speed |= {"reference_same_canvases"}  # and benchmarks/air.py reference this one
    assert set(recorded) - speed <= set(written)  # every other key of the book's file is written here
    assert written["scale"] == "quick" and len(written["count_accuracy_by_seed"]) == 1
    variant = written[f"variant_pixel_std_{VARIANT_PIXEL_STD:g}"]
    assert set(recorded[f"variant_pixel_std_{VARIANT_PIXEL_STD:g}"]) <= set(variant)
    assert written["shipped_run"] in written["runs"]
    manifest = read_manifest(tmp_path / "quick" / "checkpoints")["checkpoints"]
    assert sorted(manifest) == ["air_multi_mnist_difference.pt", "air_multi_mnist_difference_sizes.pt"]
    sizes = written["variant_digit_sizes"]
    assert sizes["digit_sizes"] == list(VARIANT_DIGIT_SIZES) and set(sizes["count_accuracy_joint"]) == {
        "0-2", "3", "4", "5"}
    assert sizes["shipped_sha256"] == manifest["air_multi_mnist_difference_sizes.pt"]["sha256"]
    if "variant_digit_sizes" in recorded:
        assert set(recorded["variant_digit_sizes"]) <= set(sizes)


def test_the_reference_is_set_beside_ours_on_the_same_canvases_when_it_was_measured_there():
    from objectcentric.chapters import air as chapter

    runs = {"a": {"count_accuracy": 0.99, "sampled_count_accuracy": 0.985, "three_digit_count_accuracy": 0.98,
                  "three_digit_sampled_count_accuracy": 0.97},
            "b": {"count_accuracy": 0.995, "sampled_count_accuracy": 0.99, "three_digit_count_accuracy": 0.99,
                  "three_digit_sampled_count_accuracy": 0.985}}
    results = {"runs": runs, "shipped_run": "b"}
    own = chapter.reference_words(results).replace("\u00a0", " ")
    assert "counts 99.55 % of its own test canvases" in own and "our shipped seed 99.00 %" in own
    assert chapter.reference_three_digits(results) == (0.076, False)
    assert "on these canvases" not in chapter.benchmark_table(results).data
    results["reference_same_canvases"] = {
        "count_accuracy": 0.97, "count_accuracy_sampled": 0.9675, "three_digit_count_accuracy": 0.05,
        "three_digit_count_accuracy_sampled": 0.04, "reference_training": {"epochs": 50, "canvases": 10_000}}
    words = chapter.reference_words(results).replace("\u00a0", " ")
    assert "counts 96.75 % of the 0-2-digit canvases right with sampled z_pres (97.00 % greedy)" in words
    assert "Our shipped seed is 2.25 points ahead of it" in words and "our 2 seeds 98.50 % to 99.00 %" in words
    assert chapter.reference_three_digits(results) == (0.04, True)
    table = chapter.benchmark_table(results).data.replace("\u00a0", " ")
    assert "the reference, on these canvases" in table and "4.00 %" in table and "7.6 %" in table


def test_count_errors_are_told_as_missed_or_extra_from_the_confusion():
    from objectcentric.chapters import air as chapter

    results = {"confusion": [[10, 0, 0, 0], [3, 7, 0, 0], [0, 2, 6, 1], [0, 0, 0, 0]],
               "three_digit_confusion": [[0] * 4, [0] * 4, [0] * 4, [0, 0, 0, 5]]}
    words = chapter.count_error_words(results).replace("\u00a0", " ")
    assert "most of its 6 errors are a digit missed: 3 canvases with 1 digit counted as 0, 2 canvases " \
           "with 2 digits counted as 1, 1 canvas with 2 digits counted as 3." in words
    assert "On canvases with 3 digits it makes no error." in words
    results["confusion"] = [[10, 1], [0, 9]]
    assert "all of its 1 errors are an extra object" in chapter.count_error_words(results)


def test_the_words_beyond_training_follow_the_found_counts():
    from objectcentric.chapters import air as chapter

    beyond = {"count_accuracy_by_digits": {"3": 0.9, "4": 0.5, "5": 0.2},
              "count_accuracy_by_digits_3_steps": {"3": 0.95, "4": 0.0, "5": 0.0},
              "count_accuracy_by_digits_small": {"3": 0.7, "4": 0.4, "5": 0.2},
              "found_counts_by_digits": {"3": [0, 0, 5, 90, 5, 0, 0], "4": [0, 0, 0, 10, 50, 40, 0],
                                         "5": [0, 0, 30, 50, 20, 0, 0]},
              "too_many_found_by_digits": {"3": {"too_many": 5, "two_windows_overlap": 5},
                                           "4": {"too_many": 40, "two_windows_overlap": 39},
                                           "5": {"too_many": 0, "two_windows_overlap": 0}}}
    words = chapter.beyond_words(beyond, 3).replace("\u00a0", " ")
    assert "gives 5.0 % of them a fourth object" in words
    assert "almost always lands on a digit" in words and "(44 of the 45 canvases" in words
    assert "Four digits of the training size are counted right 50.0 % of the time" in words
    assert "mostly finds one too many" in words  # 40 found five, none six
    assert "Five digits come out right 20.0 % of the time, and mostly too few" in words  # 30 two too few of 80
    beyond["too_many_found_by_digits"] = {k: {"too_many": 0, "two_windows_overlap": 0} for k in "345"}
    assert "lands on a digit" not in chapter.beyond_words(beyond, 3)


@pytest.mark.parametrize("n_digits, repeats", [(2, 0), (1, 1)])
def test_repeated_windows_counts_a_digit_explained_twice(n_digits, repeats):
    from objectcentric.experiments.air import repeated_windows

    class TwoWindows(torch.nn.Module):  # two present windows, both on the same spot
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images, **_):
            b = len(images)
            where = torch.tensor([[math.log(0.3), 0.0, 0.0]]).repeat(b, 2, 1)
            return types.SimpleNamespace(where=where, scale=torch.full((b, 2), 0.3), pres=torch.ones(b, 2),
                                         counts=torch.full((b,), 2))

    data = _Sized(images=torch.zeros(4, 1, 50, 50), counts=torch.full((4,), n_digits), canvas=50)
    got = repeated_windows(TwoWindows(), data, max_steps=2)
    assert got == {"too_many": 4 * repeats, "two_windows_overlap": 4 * repeats}


class _Sized(types.SimpleNamespace):
    """A namespace with a length, as repeated_windows reads a MultiMNIST."""

    def __len__(self):
        return len(self.images)


def test_the_variant_trains_on_equally_many_canvases_of_each_digit_size():
    recipe = AIRRecipe(n_train=30, digit_sizes=(16, 20, 24))
    images, counts = recipe.train_data().tensors
    assert images.shape == (30, 1, 50, 50) and set(counts.tolist()) <= {0, 1, 2}
    standard = AIRRecipe(n_train=30).train_data().tensors[0]
    assert not torch.equal(images, standard)
    ink = [(part.flatten(1) > 0).sum(1).float()[c > 0] / c[c > 0] for part, c in
           zip(images.split(10), counts.split(10))]  # ink per digit grows with the digit's size
    assert ink[0].mean() < ink[1].mean() < ink[2].mean()
    assert AIRRecipe(digit_sizes=(16, 24)).shipped_name() == "air_multi_mnist_difference_sizes.pt"
    assert from_settings("air", AIRRecipe(digit_sizes=(16, 24)).settings()).digit_sizes == (16, 24)


def test_every_step_paints_every_object_and_keeps_what_greedy_inference_found():
    torch.manual_seed(0)
    model = AIR(AIRConfig(**SMALL)).eval()
    x = canvases()
    with torch.no_grad():
        greedy = model(x, greedy=True, max_steps=4)
        every = model._infer(x, greedy=True, keep_baseline_inputs=False, max_steps=4, every_step=True)
    assert torch.all(every.pres == 1)
    kept = greedy.pres.bool()  # where greedy inference went on, both saw the same residual
    assert torch.allclose(every.where[kept], greedy.where[kept]) and torch.allclose(
        every.pres_prob[kept], greedy.pres_prob[kept])


def test_the_joint_count_is_the_number_of_objects_that_explains_the_canvas():
    torch.manual_seed(0)
    model = AIR(AIRConfig(**SMALL, glimpse_bias=6.0)).eval()  # every glimpse paints a bright square
    blank = torch.zeros(3, 1, 50, 50)
    with torch.no_grad():
        first = model._infer(blank, greedy=True, keep_painted=True, every_step=True).painted[:, 0]
    assert first.sum() > 50  # a square of ink
    assert torch.equal(joint_counts(model, blank, max_steps=4), torch.zeros(3, dtype=torch.long))
    # the canvas is exactly the first proposed object: one object explains it, a second adds ink to it
    model.where_body.register_forward_hook(lambda m, i, out: out * 0)  # the same proposal at every step
    with torch.no_grad():
        first = model._infer(blank, greedy=True, keep_painted=True, every_step=True).painted[:, 0]
    assert torch.equal(joint_counts(model, first.clamp(0, 1), max_steps=4), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="needs AIR's Gaussian z_what"):
        joint_counts(types.SimpleNamespace(what=None), blank)


def test_the_further_counting_words_follow_the_recorded_numbers():
    from objectcentric.chapters import air as chapter

    def beyond(greedy, joint, zero_two=0.99):
        return {"count_accuracy": zero_two, "count_accuracy_by_digits": dict(zip("345", greedy)),
                "count_accuracy_joint": {"0-2": zero_two, **dict(zip("345", joint))}}

    shipped = beyond((0.958, 0.8535, 0.2035), (0.965, 0.8945, 0.064))
    sizes = {**beyond((0.97, 0.92, 0.93), (0.975, 0.95, 0.91)), "digit_sizes": [16, 24]}
    rows = chapter.further_rows({chapter.SIZES_KEY: sizes}, shipped, "shipped model")
    assert list(rows) == ["shipped model", "trained on 16-24 px digits"]
    assert chapter.further_rows(None, shipped, "x") == {"x": shipped}
    html = chapter.further_table(rows, "recorded").data
    assert "89.5 %" in html and "93.0 %" in html and "shipped model: joint probability" in html
    words = chapter.further_words(rows)
    assert "four digits right 89.5 % of the time instead of 85.4 %" in words
    assert "reaches 97.5 % on 3, 95.0 % on 4, 93.0 % on 5." in words and "short" not in words
    assert "short on 4 and 5 digits" in chapter.further_words({"shipped model": shipped})
