"""Chapter 3's discrete VAE on the experiment layer: its recipe, the recorded experiment, the shipped model."""

import json
import shutil

import pytest
import torch

from objectcentric import records
from objectcentric.checkpoints import load_shipped, read_manifest
from objectcentric.estimators import ESTIMATORS
from objectcentric.experiments import estimators as chapter
from objectcentric.experiments.estimators import CategoricalVAERecipe
from objectcentric.models.categorical_vae import CategoricalVAE, CategoricalVAEConfig
from objectcentric.paths import project_root
from objectcentric.recipes import RecipeError, from_settings, recipe_class
from objectcentric.runner import EXPERIMENTS, Job, Outputs, load_or_train, load_run, sweep

ROOT = project_root()
TOY_KEYS = ("description", "headline_problem", "variance", "bias_z", "seconds_per_estimate", "tune_steps",
            "fixed_parameter", "toy_experiments")


def test_recipe_is_registered_with_the_estimators_of_the_code_as_choices():
    assert recipe_class("categorical_vae") is CategoricalVAERecipe
    assert CategoricalVAERecipe.chapter == "3"
    assert CategoricalVAERecipe.CHOICES["estimator"] == tuple(ESTIMATORS)
    assert {"exact", *chapter.ESTIMATOR_NAMES} <= set(CategoricalVAERecipe.CHOICES["estimator"])
    with pytest.raises(RecipeError, match="estimator must be one of .*reinforce"):
        CategoricalVAERecipe(estimator="gumbel")
    for bad in ({"num_classes": 1}, {"n_val": 0}, {"n_train": 0}, {"temperature": 0.0}):
        with pytest.raises(RecipeError):
            CategoricalVAERecipe(**bad)


def test_quick_scale_overrides_only_the_sizes_and_names_the_run():
    full = CategoricalVAERecipe(estimator="nvil")
    quick = full.at_scale("quick")
    assert (quick.epochs, quick.n_train, quick.n_val, quick.quick) == (2, 500, 200, True)
    assert (quick.estimator, quick.lr, quick.batch_size) == ("nvil", full.lr, full.batch_size)
    assert quick.at_scale("quick") is quick and full.at_scale("full") is full
    assert quick.run_name(1) == "categorical_vae_estimatornvil_quick_seed1"
    assert from_settings("categorical_vae", quick.settings()) == quick
    assert full.shipped_name() == "categorical_vae_k10.pt"
    model = full.build_model()
    assert isinstance(model.config, CategoricalVAEConfig) and model.config.estimator == "nvil"


def test_experiment_runs_every_estimator_and_the_exact_gradient_for_each_recorded_seed():
    experiment = EXPERIMENTS["estimators"]
    full, quick = experiment.jobs("full"), experiment.jobs("quick")
    assert {(j.recipe.estimator, j.seed) for j in full} == {(n, s) for n in chapter.VAE_NAMES for s in chapter.SEEDS}
    assert len({j.key for j in full}) == len(full) and not any(j.recipe.quick for j in full)
    assert {j.recipe.estimator for j in quick} == set(chapter.VAE_NAMES) and all(j.recipe.quick for j in quick)
    recorded = records.read_results("estimators")["categorical_vae"]
    assert set(recorded["runs"]) == set(chapter.VAE_NAMES) and tuple(recorded["seeds"]) == chapter.SEEDS
    assert recorded["settings"]["epochs"] == CategoricalVAERecipe.epochs


def test_config_dataclass_and_keywords_build_the_same_model():
    a = CategoricalVAE(CategoricalVAEConfig(num_classes=4, hidden_dims=(8,), image_shape=(1, 4, 4)))
    b = CategoricalVAE(num_classes=4, hidden_dims=[8], image_shape=[1, 4, 4])
    assert a.config == b.config
    with pytest.raises(TypeError, match="not both"):
        CategoricalVAE(CategoricalVAEConfig(), num_classes=3)


def test_the_shipped_model_loads_and_gives_its_recorded_held_out_bound():
    recipe = chapter.shipped_recipe()
    entry = read_manifest()["checkpoints"][recipe.shipped_name()]
    assert recipe.estimator == entry["metrics"]["estimator"]
    run = load_or_train(recipe, "read")
    assert run.record["loaded"] and len(run.history) == entry["metrics"]["epochs"]
    held_out = chapter.validation_images(recipe.n_val)
    bound = float(run.model.cpu().exact_neg_elbo(held_out).mean())
    assert bound == pytest.approx(entry["metrics"]["val_exact_neg_elbo"], abs=0.05)
    assert run.model.prototypes().shape == (10, 1, 28, 28)


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    """Two estimators at the quick scale, trained inline, with a copy of the recorded results file."""
    root = tmp_path_factory.mktemp("estimators")
    out = Outputs(runs=root / "runs", results=root / "results", checkpoints=root / "checkpoints", scale="quick")
    out.results.mkdir()
    shutil.copy(ROOT / "results" / "estimators.json", out.results / "estimators.json")
    jobs = [Job(CategoricalVAERecipe(estimator=name).at_scale("quick"), 0) for name in ("exact", "nvil")]
    torch.set_num_threads(1)
    return out, sweep(jobs, out.runs, executor="inline")


def test_quick_sweep_is_collected_into_the_results_keeping_the_toy_keys(quick_sweep):
    out, done = quick_sweep
    assert all(r["status"] == "done" for r in done.values())
    before = json.loads((ROOT / "results" / "estimators.json").read_text())
    chapter.write_vae(done, out)
    after = records.read_results("estimators", out.results)
    assert {k: after[k] for k in TOY_KEYS} == {k: before[k] for k in TOY_KEYS}
    block = after["categorical_vae"]
    assert block["quick"] and after["scale"] == "quick" and set(block["runs"]) == {"exact", "nvil"}
    for name, runs in block["runs"].items():
        (run,) = runs["seeds"]
        assert len(run["history"]) == 2 and run["final_val_exact_neg_elbo"] == run["history"][-1]["val_exact_neg_elbo"]
    variance = after["trained_vae_variance"]
    assert set(variance["estimators"]) == set(chapter.ESTIMATOR_NAMES)
    best = min(block["runs"], key=lambda n: block["runs"][n]["seeds"][0]["final_val_exact_neg_elbo"])
    assert block["shipped"]["estimator"] == best == variance["model"]["estimator"]
    entry = read_manifest(out.checkpoints)["checkpoints"]["categorical_vae_k10.pt"]
    assert variance["model"]["sha256"] == entry["sha256"]
    assert entry["metrics"]["estimator"] == best and entry["recipe"] == "categorical_vae"
    load_shipped("categorical_vae_k10.pt", CategoricalVAERecipe(estimator=best).build_model(), out.checkpoints)
    best_key = next(k for k, r in done.items() if r["settings"]["estimator"] == best)
    recipe, _, _ = load_run(out.runs / best_key)
    assert recipe.estimator == best and recipe.quick


def test_the_experiments_collect_also_reruns_the_toys(quick_sweep, tmp_path):
    out, done = quick_sweep
    out = Outputs(runs=out.runs, results=tmp_path / "results", checkpoints=tmp_path / "checkpoints", scale="quick")
    EXPERIMENTS["estimators"].collect(done, out)
    written = records.read_results("estimators", out.results)
    recorded = json.loads((ROOT / "results" / "estimators.json").read_text())
    assert set(written) - {"scale"} <= set(recorded), "the collection writes keys the recorded file lacks"
    assert {*TOY_KEYS, "categorical_vae", "trained_vae_variance"} <= set(written) and written["quick"] is True
    assert set(written["toy_experiments"]) == set(recorded["toy_experiments"])
    assert sorted(k for w in written["writers"] for k in w["keys"]) == sorted(
        {*TOY_KEYS, "quick", "categorical_vae", "trained_vae_variance"})


def test_the_mean_interval_is_students_t():
    low, high = chapter.mean_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.303 / 3**0.5, 2 + 4.303 / 3**0.5), abs=2e-3)
    assert chapter.mean_interval([5.0]) is None
