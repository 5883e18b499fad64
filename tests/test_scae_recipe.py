"""Chapter 8's recipe and recorded experiment: settings, TensorFlow 1's RMSProp, the evaluator, results/scae.json."""

import copy
import json
import math
import shutil

import pytest
import torch

import objectcentric.experiments.scae as exp
from objectcentric.experiments.scae import SCAERecipe, TFRMSprop, evaluate
from objectcentric.models.scae import SCAE, SCAEConfig
from objectcentric.recipes import RecipeError, recipe_class
from objectcentric.checkpoints import load_model_state
from objectcentric.runner import EXPERIMENTS, Outputs, load_run, read_record, reproduce, train
from objectcentric.train import NonFiniteLossError

# A small SCAE with every piece of the official architecture (as in test_scae.py).
TINY = {"n_parts": 5, "n_special": 4, "encoder_channels": (8, 8, 8, 8), "colour_hidden": 8, "n_objects": 4,
        "set_dims": 8, "set_output": 16, "object_params": 8, "object_hidden": 16}


def tiny_model() -> SCAE:
    torch.manual_seed(0)
    return SCAE(SCAEConfig(**TINY)).eval()


# --- the recipe -------------------------------------------------------------------------------------
def test_the_recipe_is_registered_with_the_official_settings():
    assert recipe_class("scae") is SCAERecipe and SCAERecipe.chapter == "8"
    recipe = SCAERecipe()
    assert (recipe.batch_size, recipe.lr, recipe.optimizer_name) == (128, 3e-5, "rmsprop_tf")
    assert (recipe.n_parts, recipe.n_objects, recipe.invert_pose, recipe.alpha_channel) == (40, 32, True, True)
    assert recipe.clip_grad_norm is None
    steps = recipe.epochs * math.ceil(recipe.n_train / recipe.batch_size)
    assert steps == pytest.approx(300_000, rel=0.001)  # the official budget
    model = recipe.build_model()
    optimizer = recipe.optimizer(model)
    assert isinstance(optimizer, TFRMSprop)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["decay"]) == (3e-5, 0.9, 0.9)
    assert group["eps"] == pytest.approx(1e-2 / 128 ** 2)
    assert isinstance(SCAERecipe(optimizer_name="adam").optimizer(model), torch.optim.Adam)
    assert recipe.shipped_name() == "scae_mnist.pt"
    assert SCAERecipe(invert_pose=False).shipped_name() is None
    assert SCAERecipe(alpha_channel=False).shipped_name() is None


def test_rmsprop_epsilon_follows_the_batch_size():
    recipe = SCAERecipe(batch_size=32)
    group = recipe.optimizer(recipe.build_model()).param_groups[0]
    assert group["eps"] == pytest.approx(1e-2 / 32 ** 2)


def test_the_model_gets_the_recipes_switches():
    config = SCAERecipe(n_parts=24, n_objects=24, invert_pose=False, alpha_channel=False).config()
    assert (config.n_parts, config.n_objects, config.invert_pose, config.alpha_channel) == (24, 24, False, False)


@pytest.mark.parametrize("settings, message", [
    ({"n_train": 0}, "n_train must be a whole number from 1 to 55,000"),
    ({"n_train": 60_000}, "n_train must be a whole number from 1 to 55,000"),
    ({"n_val": 10}, "n_val must be a whole number from 20 to 5,000"),
    ({"n_parts": 0}, "n_parts must be a whole number from 1 or more"),
    ({"n_objects": 2.5}, "n_objects must be a whole number"),
    ({"optimizer_name": "sgd"}, "optimizer_name must be one of rmsprop_tf, adam"),
    ({"invert_pose": "yes"}, "invert_pose must be True or False"),
    ({"lr": 0.0}, "lr must be positive"),
    ({"batch_size": 0}, "batch_size must be a whole number"),
])
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(RecipeError, match=message):
        SCAERecipe(**settings)


def test_the_quick_scale_is_a_few_steps_of_the_full_model():
    quick = SCAERecipe().at_scale("quick")
    assert quick.quick and quick.epochs == 1 and quick.n_train // quick.batch_size <= 4
    assert quick.config() == SCAERecipe(batch_size=quick.batch_size).config()  # same architecture


# --- TensorFlow 1's RMSProp -----------------------------------------------------------------------
def test_tf_rmsprop_matches_a_hand_computation():
    lr, decay, momentum, eps = 0.1, 0.9, 0.5, 0.01
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = TFRMSprop([p], lr=lr, decay=decay, momentum=momentum, eps=eps)
    p.grad = torch.tensor([0.5, -1.0])
    optimizer.step()
    # By hand: ms = 0.9 * 1 + 0.1 * g**2 = (0.925, 1.0) (TensorFlow starts it at 1, not 0);
    # step = 0.1 * g / sqrt(ms + 0.01) (epsilon inside the root) = (0.0517088, -0.0995037).
    torch.testing.assert_close(p.detach(), torch.tensor([0.9482912, -1.9004963]))
    # Later steps, against the formula written out in plain floats.
    value, ms, mom = [0.9482912, -1.9004963], [0.925, 1.0], [0.0517088, -0.0995037]
    for g in ([2.0, 0.0], [-1.0, 3.0]):
        p.grad = torch.tensor(g)
        optimizer.step()
        for i in range(2):
            ms[i] = decay * ms[i] + (1 - decay) * g[i] ** 2
            mom[i] = momentum * mom[i] + lr * g[i] / math.sqrt(ms[i] + eps)  # epsilon inside the root
            value[i] -= mom[i]
        torch.testing.assert_close(p.detach(), torch.tensor(value))


def test_tf_rmsprop_differs_from_torchs_and_resumes_exactly():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5))
    b = torch.nn.Parameter(a.detach().clone())
    ours = TFRMSprop([a], lr=1e-2, decay=0.9, momentum=0.9, eps=1e-6)
    theirs = torch.optim.RMSprop([b], lr=1e-2, alpha=0.9, momentum=0.9, eps=1e-6)
    g = torch.randn(5) * 1e-3
    a.grad, b.grad = g.clone(), g.clone()
    ours.step()
    theirs.step()
    # torch's mean square starts at 0: tiny gradients take steps of about lr; TensorFlow's start at 1.
    assert (a - b).abs().max() > 1e-3
    # The state survives a checkpoint's round trip (what a resumed run loads).
    c = torch.nn.Parameter(a.detach().clone())
    again = TFRMSprop([c], lr=1e-2, decay=0.9, momentum=0.9, eps=1e-6)
    again.load_state_dict(copy.deepcopy(ours.state_dict()))
    a.grad, c.grad = g.clone(), g.clone()
    ours.step()
    again.step()
    torch.testing.assert_close(a.detach(), c.detach())
    with pytest.raises(ValueError, match="momentum must be in"):
        TFRMSprop([a], lr=1e-2, momentum=1.0)


# --- one training step and the evaluator -----------------------------------------------------------
def test_a_training_step_shifts_the_digits_and_trains_every_part():
    recipe = SCAERecipe().at_scale("quick")
    torch.manual_seed(0)
    model = SCAE(SCAEConfig(**TINY)).train()
    digits, labels = torch.rand(4, 1, 28, 28), torch.arange(4)
    terms = recipe.step(model, (digits, labels))
    assert {"loss", "rec_ll", "caps_ll", "prior_acc"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.encoder.head.weight.grad.abs().sum() > 0 and model.prior_probe.weight.grad.abs().sum() > 0


def test_the_parts_warm_up_trains_the_parts_alone_and_a_resumed_run_goes_on_to_the_objects(tmp_path):
    import dataclasses

    from objectcentric.train import Stop
    recipe = dataclasses.replace(SCAERecipe().at_scale("quick"), epochs=2, parts_epochs=1)
    steps = math.ceil(recipe.n_train / recipe.batch_size)
    torch.manual_seed(0)
    fresh = recipe.build_model().state_dict()  # the runner seeds before building, so the start is this model
    train(recipe, 0, tmp_path / "run", device="cpu", progress="none", stop=Stop(steps=steps))
    _, warmed, payload = load_run(tmp_path / "run")
    assert payload["epoch"] == 1 and "caps_ll" not in payload["history"][0]
    changed = {name for name, value in warmed.state_dict().items() if not torch.equal(value, fresh[name])}
    assert any(n.startswith("encoder.") for n in changed) and any(n.startswith("decoder.") for n in changed)
    assert not any(n.startswith(("set_transformer.", "objects.", "prior_probe.")) for n in changed)
    train(recipe, 0, tmp_path / "run", device="cpu", progress="none")  # resumes at epoch 2: the whole SCAE
    _, trained, payload = load_run(tmp_path / "run")
    assert payload["epoch"] == 2 and "caps_ll" in payload["history"][1]
    assert not torch.equal(trained.state_dict()["prior_probe.weight"], fresh["prior_probe.weight"])
    with pytest.raises(RecipeError, match="parts_epochs must be a whole number from 0 to 1"):
        dataclasses.replace(recipe, parts_epochs=2)


def test_a_quick_run_trains_and_reports_the_held_out_numbers(tmp_path):
    recipe = SCAERecipe().at_scale("quick")
    run = train(recipe, 0, tmp_path / "run", device="cpu", progress="none")
    record = read_record(tmp_path / "run")
    assert record["status"] == "done" and record["steps"] == math.ceil(recipe.n_train / recipe.batch_size)
    metrics = record["metrics"]
    for key in ("val_loss", "val_rec_ll", "val_caps_ll", "val_prior_accuracy", "val_posterior_accuracy",
                "val_prior_probe_accuracy", "val_posterior_probe_accuracy"):
        assert math.isfinite(metrics[key]), key
    assert 0 <= metrics["val_prior_accuracy"] <= 1
    assert run.history[0]["rec_ll"] < 0


def test_the_validation_canvases_are_held_out_training_digits():
    from objectcentric.data.mnist import load_mnist

    images, labels = exp.validation_canvases(30)
    digits, all_labels = load_mnist("train")
    assert images.shape == (30, 1, 40, 40) and torch.equal(labels, all_labels[55_000:55_030])
    # Each canvas holds its digit unchanged, somewhere; the same canvases every time.
    assert torch.allclose(images.flatten(1).sum(1), digits[55_000:55_030].flatten(1).sum(1))
    assert torch.equal(images, exp.validation_canvases(30)[0])
    assert SCAERecipe().train_data().tensors[0].shape == (55_000, 1, 28, 28)


def test_the_evaluator_on_a_tiny_model():
    model = tiny_model()
    images = torch.rand(40, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 10
    state = torch.get_rng_state()
    row = evaluate(model, images, labels, batch_size=16)
    assert torch.equal(torch.get_rng_state(), state)  # the presence noise is seeded apart from training's
    assert set(row) == {"loss", "rec_ll", "caps_ll", "prior_accuracy", "posterior_accuracy",
                        "prior_probe_accuracy", "posterior_probe_accuracy"}
    assert all(math.isfinite(v) for v in row.values())
    assert all(0 <= row[k] <= 1 for k in row if k.endswith("accuracy"))
    assert evaluate(model, images, labels, batch_size=16) == row  # repeatable
    assert not model.training


def test_the_evaluator_stops_on_a_nan():
    model = tiny_model()
    with torch.no_grad():
        model.decoder.bg_value.fill_(float("nan"))
    images, labels = torch.rand(20, 1, 40, 40), torch.arange(20) % 10
    with pytest.raises(NonFiniteLossError, match="validation .* became NaN"):
        evaluate(model, images, labels, batch_size=10)



def test_the_log_likelihood_landmarks_are_those_of_a_constant_and_of_a_perfect_image():
    from objectcentric.models.scae import mixture_log_likelihood

    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    levels = exp.rec_ll_levels(images)
    one = torch.zeros(6, 1, 1, 8, 8)  # a single mixture component
    constant = mixture_log_likelihood(images, one + images.mean(), one).mean()
    assert levels["constant"] == pytest.approx(float(constant), abs=0.01)
    assert levels["perfect"] == pytest.approx(float(mixture_log_likelihood(images, images.unsqueeze(1), one).mean()), abs=0.01)
    # No other grey value does better than the mean one.
    assert float(mixture_log_likelihood(images, one + images.mean() + 0.05, one).mean()) < levels["constant"]


# --- the recorded experiment ---------------------------------------------------------------------
def test_the_full_experiment_is_three_seeds_and_two_ablations():
    jobs = EXPERIMENTS["scae"].jobs("full")
    final = [j for j in jobs if j.recipe == exp.final_recipe()]
    assert exp.final_recipe() == SCAERecipe(lr=3e-4)  # the official setting at ten times its learning rate
    assert all(j.recipe.lr == 3e-4 and j.recipe.optimizer_name == "rmsprop_tf" for j in jobs)
    assert sorted(j.seed for j in final) == [0, 1, 2] and len(jobs) == 5
    assert {(j.recipe.invert_pose, j.recipe.alpha_channel) for j in jobs} == {(True, True), (False, True),
                                                                                (True, False)}
    assert all(j.recipe.quick for j in EXPERIMENTS["scae"].jobs("quick"))


@pytest.fixture(scope="module")
def quick_experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("scae")
    summary = reproduce(["scae"], scale="quick", executor="inline", out=out)
    return out / "quick", summary


def test_the_quick_experiment_writes_the_results_keys_and_ships_nothing(quick_experiment):
    out, summary = quick_experiment
    assert summary["scae"]["failed"] == 0 and summary["scae"]["done"] == 3
    data = json.loads((out / "results" / "scae.json").read_text())
    assert data["scale"] == "quick"
    for key in ("command", "commit", "device", "seed", "wall_time_s", "date", "torch"):
        assert key in data, key
    for protocol in ("train_fit", "test_refit"):
        values = data["accuracy_by_seed"][protocol]
        assert len(values) == 1 and 0 <= values[0] <= 1
    assert len(data["linear_probe_by_seed"]["prior"]) == 1
    assert data["nan_runs"] == 0 and data["seeds"] == [0]
    assert data["steps_by_seed"] == [3] and data["training_device_by_seed"][0].startswith("cpu")
    curve = data["accuracy_vs_compute"]["0"]
    assert curve["steps"] == [3] and len(curve["cpu_hours"]) == len(curve["val_prior_accuracy"]) == 1
    assert set(data["ablations"]) == {"uninverted_pose", "no_alpha_channel"}
    assert data["ablations"]["uninverted_pose"]["settings"] == {"invert_pose": False, "lr": 3e-4}
    assert 0 <= data["ablations"]["no_alpha_channel"]["prior_test_refit"] <= 1
    assert data["training_seconds_per_step"]["cpu"] > 0
    assert data["shipped_checkpoint"] is None and data["selected_by"] == "val_loss" and data["selected_seed"] == 0
    assert not (out / "checkpoints" / exp.SHIPPED).exists()


def test_a_run_stopped_by_a_nan_is_counted_and_listed_with_its_error(quick_experiment, tmp_path):
    out, _ = quick_experiment
    runs = out / "scae"
    records = {p.name: read_record(p) for p in runs.iterdir() if (p / "record.json").exists()}
    final = next(k for k, r in records.items() if r["settings"]["invert_pose"] and r["settings"]["alpha_channel"])
    failed = {**records[final], "status": "failed", "seed": 1,
              "error": "NonFiniteLossError: the loss became nan at epoch 3, step 7"}
    records["scae_quick_seed1"] = failed  # no run folder: nothing to score
    exp._collect(records, Outputs(runs=runs, results=tmp_path, checkpoints=tmp_path / "ck", scale="quick"))
    data = json.loads((tmp_path / "scae.json").read_text())
    assert data["nan_runs"] == 1 and data["seeds"] == [0]
    assert data["runs"]["scae_quick_seed1"]["nan"] and data["runs"]["scae_quick_seed1"]["status"] == "failed"


def test_a_run_still_training_is_collected_as_far_as_it_got_and_shipped_in_float16(quick_experiment, tmp_path):
    out, _ = quick_experiment
    records = {p.name: read_record(p) for p in (out / "scae").iterdir() if (p / "record.json").exists()}
    final = next(k for k, r in records.items() if r["settings"]["invert_pose"] and r["settings"]["alpha_channel"])
    runs = tmp_path / "runs"
    shutil.copytree(out / "scae" / final, runs / final)
    (runs / final / "record.json").unlink()  # a run still training has written no record yet
    results, shipped = tmp_path / "results", tmp_path / "ck"
    results.mkdir()
    not_started = SCAERecipe(invert_pose=False, **exp.FINAL_CHANGES).run_name(0)  # planned, no folder, no record
    exp._collect({final: None, not_started: None},
                 Outputs(runs=runs, results=results, checkpoints=shipped, scale="full"))
    data = json.loads((results / "scae.json").read_text())
    assert data["ablations"]["uninverted_pose"]["status"] == "not started"
    assert data["complete"] is False and data["status_by_seed"] == ["training"]
    assert data["seeds"] == [0] and data["steps_by_seed"] == [3] and data["official_steps"] == 300_000
    entry = json.loads((shipped / "manifest.json").read_text())["checkpoints"][exp.SHIPPED]
    assert entry["stored_as"] == "float16" and "no labels" in entry["note"]
    payload = torch.load(shipped / exp.SHIPPED, weights_only=False)
    assert {v.dtype for v in payload["model_state"].values() if v.is_floating_point()} == {torch.float16}
    recipe, model, _ = load_run(out / "scae" / final)
    restored = recipe.build_model()
    load_model_state(shipped / exp.SHIPPED, restored)
    for name, value in model.state_dict().items():
        assert restored.state_dict()[name].dtype == value.dtype
        assert torch.allclose(restored.state_dict()[name], value, rtol=1e-3, atol=1e-4), name


def test_a_run_scored_earlier_whose_folder_is_gone_keeps_its_recorded_row(quick_experiment, tmp_path):
    out, _ = quick_experiment
    records = {p.name: read_record(p) for p in (out / "scae").iterdir() if (p / "record.json").exists()}
    final = next(k for k, r in records.items() if r["settings"]["invert_pose"] and r["settings"]["alpha_channel"])
    ablation = next(k for k, r in records.items() if not r["settings"]["invert_pose"])
    earlier = json.loads((out / "results" / "scae.json").read_text())
    runs, results = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(out / "scae" / final, runs / final)  # the ablation was trained on another machine
    results.mkdir()
    shutil.copy(out / "results" / "scae.json", results / "scae.json")
    exp._collect({final: records[final], ablation: None},
                 Outputs(runs=runs, results=results, checkpoints=tmp_path / "ck", scale="quick"))
    data = json.loads((results / "scae.json").read_text())
    kept = data["ablations"]["uninverted_pose"]
    assert kept["status"] == earlier["ablations"]["uninverted_pose"]["status"] == "done"
    assert kept["posterior_test_refit"] == earlier["ablations"]["uninverted_pose"]["posterior_test_refit"]
    assert kept["curve"] == earlier["ablations"]["uninverted_pose"]["curve"] and kept["curve"]["steps"] == [3]
    assert kept["scored_at"]["commit"] == earlier["commit"]
    assert "scored_at" not in data["runs"][final]  # the run that is here is scored afresh
    # Rows of another scale are not taken over.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(out / "results" / "scae.json", other / "scae.json")
    exp._collect({final: records[final], ablation: None},
                 Outputs(runs=runs, results=other, checkpoints=tmp_path / "ck2", scale="full"))
    assert json.loads((other / "scae.json").read_text())["runs"][ablation] == {"seed": None, "status": "not started",
                                                                              "settings": {}}


def test_the_ablation_words_place_each_ablation_against_the_final_seeds_at_the_same_steps():
    from objectcentric.chapters import scae as chapter

    def curve(mass, rec_ll=-1485.0):
        return {"steps": [430, 860], "val_rec_ll": [-1500.0, rec_ll], "val_prior_accuracy": [0.1, 0.12],
                "val_posterior_accuracy": [0.2, mass]}

    longer = {"steps": [430, 860, 1290], "val_rec_ll": [-1500.0, -1484.0, -1480.0],
              "val_prior_accuracy": [0.1, 0.15, 0.2], "val_posterior_accuracy": [0.2, 0.40, 0.5]}
    results = {"seeds": [0, 1], "accuracy_vs_compute": {"0": longer, "1": curve(0.30, -1486.0)},
               "ablations": {"uninverted_pose": {"steps": 860, "status": "stopped", "curve": curve(0.25),
                                                 "posterior_test_refit": 0.2},
                             "no_alpha_channel": {"steps": 860, "status": "stopped", "curve": curve(0.35),
                                                  "posterior_test_refit": 0.3}}}
    words = chapter.ablation_words(results).replace("\u00a0", " ")
    uninverted, alpha = words.split("Trained ")[1:3]
    assert "30.0 % to 40.0 %, 5 points below all of them" in uninverted  # the seeds at 860 steps, not 1,290
    assert "-1,486 to -1,484" in uninverted and "within their range" in uninverted
    assert "30.0 % to 40.0 %, within their range" in alpha and "without a NaN" in alpha
    assert "lie 10 points apart" in words
    table = chapter.ablation_table(results).data
    assert table.count("final setting, seeds 0, 1, after 860 steps") == 1 and "30.0\u00a0% to 40.0\u00a0%" in table
    one_seed = chapter.ablation_words({**results, "seeds": [1]}).replace("\u00a0", " ")
    assert "(the final setting: 30.0 %)" in one_seed and "apart" not in one_seed
    assert "has not been run" in chapter.ablation_words({"seeds": [], "ablations": {}})


def test_the_page_model_words_name_the_shipped_seed_and_compare_at_its_step_count():
    from objectcentric.chapters import scae as chapter

    results = {"recorded": True, "selected_seed": 1, "seeds": [0, 1], "steps_by_seed": [800, 400],
               "runs": {"a": {"seed": 0, "val_loss": 1219.0, "settings": {"lr": 3e-4}},
                        "b": {"seed": 1, "val_loss": 1201.0, "settings": {"lr": 3e-4}},
                        "ablation": {"seed": 0, "val_loss": 900.0, "settings": {"alpha_channel": False}}},
               "accuracy_vs_compute": {"0": {"steps": [400, 800], "val_loss": [1230.0, 1219.0]}}}
    words = chapter.page_model_words(results)
    assert words.startswith("The model in the figures and explorers below is seed 1 after 400 steps")
    assert "(1,201, against 1,219 for seed 0)" in words and "900" not in words  # ablations are not candidates
    assert "after 400 steps its loss was 1,230, higher as well" in words
    results["accuracy_vs_compute"]["0"]["val_loss"][0] = 1190.0
    assert "lower: the validation loss is not monotone" in chapter.page_model_words(results)
    assert chapter.page_model_words({**results, "recorded": False}) == ""


def test_the_pilots_benchmark_keeps_pilots_scored_earlier_whose_run_folders_are_gone():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "scae_pilots.py"
    spec = importlib.util.spec_from_file_location("scae_pilots_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for settings in bench.PILOTS.values():  # every pilot is a valid recipe
        SCAERecipe(**settings)
    old = {"settings_per_hour": {"pilots": {"rmsprop_lr3e-4_b128": {"settings": {"lr": 3e-4}, "steps": 10},
                                            "adam_lr3e-4_b128": {"settings": {"optimizer_name": "adam"},
                                                                 "scored_at": {"commit": "a", "date": "b"}},
                                            "gone_from_the_list": {"settings": {}}}},
           "writers": [{"keys": ["seconds_per_step"], "commit": "x"},
                       {"keys": ["settings_per_hour"], "commit": "c1", "date": "d1"}]}
    kept = bench.earlier_rows(old, here={"adam_lr3e-4_b128"})
    assert set(kept) == {"rmsprop_lr3e-4_b128"}  # scored here now: not kept; no longer a pilot: dropped
    assert kept["rmsprop_lr3e-4_b128"]["scored_at"] == {"commit": "c1", "date": "d1"}
    assert kept["rmsprop_lr3e-4_b128"]["steps"] == 10
    again = bench.earlier_rows(old, here=set())
    assert again["adam_lr3e-4_b128"]["scored_at"] == {"commit": "a", "date": "b"}  # the first stamp stays
    assert bench.earlier_rows({}, here=set()) == {}


def test_the_pilots_are_compared_at_the_training_time_all_of_them_reached():
    from objectcentric.chapters import scae as chapter

    def pilot(settings, seconds, mass, rec_ll, steps_per_pass):
        n = len(seconds)
        return {"settings": settings, "curve": {
            "steps": [steps_per_pass * (i + 1) for i in range(n)], "training_seconds": seconds,
            "digits_seen": [1000 * (i + 1) for i in range(n)], "val_rec_ll": rec_ll,
            "val_prior_accuracy": [0.1] * n, "val_posterior_accuracy": mass}}

    results = {
        "seeds": [0, 1], "accuracy_vs_compute": {
            "0": {"steps": [430, 860], "val_posterior_accuracy": [0.2, 0.5]},
            "1": {"steps": [430], "val_posterior_accuracy": [0.3]}},
        "settings_per_hour": {"official": {"settings": {}, "curve": {"steps": [430], "val_rec_ll": [-1500.0],
                                                                      "val_prior_accuracy": [0.1],
                                                                      "val_posterior_accuracy": [0.1]}},
                              "pilots": {
            "a": pilot({"lr": 3e-4}, [300.0, 600.0, 900.0], [0.2, 0.3, 0.9], [-1500.0, -1490.0, -1480.0], 430),
            "b": pilot({"lr": 3e-4, "batch_size": 32}, [350.0, 700.0], [0.35, 0.45], [-1495.0, -1488.0], 1719),
            "c": pilot({"lr": 3e-4, "n_parts": 24, "n_objects": 16}, [200.0, 400.0, 650.0],
                       [0.1, 0.2, 0.25], [-1499.0, -1497.0, -1496.0], 430)}}}
    budget, rows = chapter._pilot_rows(results)
    assert budget == 650.0  # the shortest pilot's last point
    assert {label: i for label, (_, i) in rows.items()} == {
        "RMSProp, learning rate 3e-4": 1, "RMSProp, learning rate 3e-4, batch 32": 0,
        "RMSProp, learning rate 3e-4, 24 parts and 16 objects": 2}  # not a's 90 % after 900 s
    words = chapter.pilots_words(results).replace("\u00a0", " ")
    assert words.startswith("Given the same 11 minutes of one CPU thread, RMSProp, learning rate 3e-4, batch 32 "
                            "sorts the most validation canvases right by the parts' mass (35.0 %)")
    assert "then RMSProp, learning rate 3e-4 (30.0 %); RMSProp, learning rate 3e-4, 24 parts and 16 objects (25.0 %)" \
        in words
    assert "lie 10 points apart after 430 steps" in words  # the final seeds' spread where both have numbers
    table = chapter.pilots_table(results).data
    assert "1,719" in table and "11" in table
    # The step-count figure and sentences keep to settings whose steps cost the same as the official ones.
    assert list(chapter._setting_curves(results)) == ["official (RMSProp, learning rate 3e-5)",
                                                      "RMSProp, learning rate 3e-4"]
    assert "batch 32" not in chapter.settings_words(results)
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = chapter.pilots_figure(results)
    assert len(fig.axes[0].lines) == 3 + 1  # three pilots and the budget line
    plt.close(fig)
    assert chapter.warm_up_words(results) == ""  # no pilot trains the parts alone first
    results["settings_per_hour"]["pilots"]["d"] = pilot({"lr": 3e-4, "parts_epochs": 1}, [280.0, 560.0],
                                                        [0.1, 0.4], [-1501.0, -1491.0], 430)
    assert chapter.warm_up_words(results).replace("\u00a0", " ") == (
        "With RMSProp, learning rate 3e-4, training the parts alone for the first pass sorts 40.0 % of the "
        "validation canvases right by the parts' mass after 860 steps, against 30.0 % without it.")
    assert "RMSProp, learning rate 3e-4, parts alone for the first pass" in chapter._pilot_rows(results)[1]
    # The budget is now d's 560 s; c (batch 128, not the final setting) went on to 650 s and 1,290 steps, and
    # is set against the final seeds that reached as many steps (a is the final setting, b another batch).
    assert chapter._longest_pilot_words(results) == ""  # no final seed reached 1,290 steps
    results["accuracy_vs_compute"]["0"] = {"steps": [430, 860, 1290], "val_posterior_accuracy": [0.2, 0.5, 0.55]}
    assert chapter.pilots_words(results).replace("\u00a0", " ").endswith(
        " RMSProp, learning rate 3e-4, 24 parts and 16 objects was then trained on to 1,290 steps: 25.0 % of the "
        "validation canvases right by the parts' mass, against 55.0 % for the final setting's seed after as many "
        "steps.")
    lone = {"settings_per_hour": {"pilots": {"a": results["settings_per_hour"]["pilots"]["a"]}}}
    assert chapter.pilots_table(lone) is None and chapter.pilots_figure(lone) is None
    assert "nothing to compare" in chapter.pilots_words(lone)
