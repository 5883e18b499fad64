"""Chapter 2 (β-VAE): the three network families, β in the one VAE loss, the recipe, the sweep and its widget."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from objectcentric.chapters import beta_vae as chapter
from objectcentric.checkpoints import CheckpointError, load_model_state, load_shipped, model_payload, read_shipped
from objectcentric.experiments import beta_vae as bv
from objectcentric.models import MODEL_CLASSES, VAE, BetaVAE
from objectcentric.models.beta_vae import BetaVAEConfig
from objectcentric.recipes import RecipeError, from_settings
from objectcentric import records
from objectcentric.records import read_results
from objectcentric.runner import EXPERIMENTS, Job, Outputs, load_or_train, load_run, read_record, sweep, train
from objectcentric.train import Stop

ROOT = Path(__file__).resolve().parents[1]
CASES = [("fc", 10, (1, 32, 32)), ("conv", 10, (1, 32, 32)), ("allconv", 16, (1, 32, 32)),
         ("conv", 10, (1, 64, 64)), ("allconv", 16, (1, 64, 64))]


def binary_images(n, shape, seed=0):
    return (torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) > 0.7).float()


@pytest.mark.parametrize("architecture, latent_dim, shape", CASES)
def test_each_family_round_trips_shapes(architecture, latent_dim, shape):
    torch.manual_seed(0)
    model = BetaVAE(BetaVAEConfig(architecture, latent_dim, shape))
    x = binary_images(5, shape)
    posterior = model.encode(x)
    assert posterior.mean.shape == posterior.stddev.shape == (5, latent_dim)
    assert model.decode(posterior.mean).shape == (5, *shape)
    # Codes with extra leading dimensions decode too (the IWAE bound decodes (samples, batch, d)).
    assert model.decode(torch.randn(3, 5, latent_dim)).shape == (3, 5, *shape)
    assert model.encode(x.flatten(1)).mean.shape == (5, latent_dim)  # flat images, as the VAE accepts
    bound = model.iwae_log_likelihood(x, k=4)
    assert bound.shape == (5,) and torch.isfinite(bound).all()
    assert model.reconstruct(x).shape == (5, *shape) and model.sample(2).shape == (2, *shape)


@pytest.mark.parametrize("architecture, latent_dim, shape", CASES)
def test_loss_is_finite_and_trains_both_networks(architecture, latent_dim, shape):
    torch.manual_seed(0)
    model = BetaVAE(BetaVAEConfig(architecture, latent_dim, shape))
    terms = model.loss(binary_images(4, shape), beta=4.0)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    first_encoder = next(p for p in model.encoder.parameters())
    last_decoder = list(model.decoder.parameters())[-1]
    assert first_encoder.grad.abs().sum() > 0 and last_decoder.grad.abs().sum() > 0


def test_beta_weighs_the_kl_term_of_the_one_vae_loss():
    assert BetaVAE.loss is VAE.loss  # no second loss: the β-VAE is the VAE's loss with a weight
    model = BetaVAE(BetaVAEConfig("conv", 10, (1, 32, 32)))
    x = binary_images(8, (1, 32, 32))
    losses = {}
    for beta in (0.5, 1.0, 4.0):
        torch.manual_seed(1)  # the same posterior sample for every β
        losses[beta] = model.loss(x, beta=beta)
    kl = losses[1.0]["kl"]
    assert kl > 0
    for beta, terms in losses.items():
        torch.testing.assert_close(terms["kl"], kl)
        torch.testing.assert_close(terms["loss"], terms["reconstruction"] + beta * kl)
        torch.testing.assert_close(terms["neg_elbo"], losses[1.0]["loss"])  # the ELBO itself does not move
    assert (losses[4.0]["loss"] - losses[0.5]["loss"]).item() == pytest.approx(3.5 * kl.item(), abs=2e-4)


def test_allconv_code_is_an_image_each_latent_draws_its_own_region():
    torch.manual_seed(0)
    model = BetaVAE(architecture="allconv", latent_dim=16, image_shape=(1, 32, 32)).eval()
    z = torch.zeros(1, 16)
    moved = z.clone()
    moved[0, 0] = 3.0  # the top-left cell of the 4 × 4 code
    with torch.no_grad():
        change = (model.decode(moved) - model.decode(z)).abs()[0, 0]
    assert change[:8, :8].sum() > 0  # its own corner changes
    assert change[20:, :].max() == 0 and change[:, 20:].max() == 0  # the far side of the picture does not


def test_bad_configurations_say_what_is_expected():
    with pytest.raises(ValueError, match="architecture must be one of"):
        BetaVAE(architecture="mlp")
    with pytest.raises(ValueError, match="latent_dim must be at least 1"):
        BetaVAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match="multiple of 16"):
        BetaVAE(BetaVAEConfig("allconv", 10, (1, 32, 32)))
    with pytest.raises(ValueError, match="4 times a power of 2"):
        BetaVAE(BetaVAEConfig("conv", 10, (1, 28, 28)))
    with pytest.raises(TypeError, match="not both"):
        BetaVAE(BetaVAEConfig(), latent_dim=3)
    with pytest.raises(ValueError, match="must end in 10 values"):
        BetaVAE(BetaVAEConfig("conv", 10, (1, 32, 32))).decode(torch.zeros(2, 3))


def test_checkpoint_knows_the_family():
    assert MODEL_CLASSES["BetaVAE"] is BetaVAE
    conv, other = BetaVAE(BetaVAEConfig("conv", 10, (1, 32, 32))), BetaVAE(BetaVAEConfig("conv", 10, (1, 32, 32)))
    payload = model_payload(conv)
    load_model_state("in memory", other, payload)
    assert all(torch.equal(a, b) for a, b in zip(conv.state_dict().values(), other.state_dict().values()))
    with pytest.raises(CheckpointError, match="architecture=conv"):
        load_model_state("in memory", BetaVAE(architecture="allconv", latent_dim=16, image_shape=(1, 32, 32)), payload)


def test_the_config_is_a_dataclass_that_stores_as_the_shipped_dicts_did():
    model = BetaVAE(architecture="conv", latent_dim=10, image_shape=[1, 64, 64])  # a list, as JSON gives it back
    assert dataclasses.is_dataclass(model.config) and model.config == BetaVAEConfig()
    assert model_payload(model)["model_config"] == {"architecture": "conv", "latent_dim": 10, "image_shape": [1, 64, 64]}


@pytest.mark.parametrize("beta", bv.SHIPPED_SHAPES_BETAS)
def test_the_shipped_shapes_models_load(beta):
    recipe = bv.BetaVAERecipe(beta=beta)
    assert recipe.shipped_name() == f"beta_vae_shapes_conv_beta{beta:g}_seed0.pt"
    run = load_or_train(recipe, "read", device="cpu")  # through the manifest's sha256 check
    assert run.record["loaded"] and run.history
    model = BetaVAE(BetaVAEConfig("conv", 10, (1, 64, 64)))
    load_shipped(recipe.shipped_name(), model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), run.model.state_dict().values()))
    assert model.encode(torch.zeros(2, 1, 64, 64)).mean.shape == (2, 10)


# --- the recipe --------------------------------------------------------------------------------------
def test_the_quick_scale_is_the_full_recipe_with_its_quick_overrides():
    full = bv.BetaVAERecipe(dataset="one_ball", architecture="fc", beta=0.5, **bv.BALLS)
    quick = full.at_scale("quick")
    assert quick == dataclasses.replace(full, quick=True, **bv.BetaVAERecipe.QUICK)
    assert (quick.dataset, quick.architecture, quick.beta, quick.epochs, quick.n_train) == ("one_ball", "fc", 0.5, 1, 256)
    assert quick.learning_rate() == full.learning_rate() == 2e-4 and quick.at_scale("quick") == quick
    assert from_settings("beta_vae", json.loads(json.dumps(quick.settings()))) == quick


def test_the_learning_rate_is_the_familys_unless_given():
    assert bv.BetaVAERecipe().learning_rate() == 5e-4  # shapes, conv: the recorded runs'
    assert bv.BetaVAERecipe(dataset="two_balls").learning_rate() == 1e-3
    assert bv.BetaVAERecipe(dataset="shapes", architecture="fc").learning_rate() == 2e-4
    assert bv.BetaVAERecipe(lr=3e-3).learning_rate() == 3e-3
    assert bv.BetaVAERecipe(lr=3e-3).run_name(1) == "beta_vae_lr0.003_seed1"


def test_bad_settings_are_refused_with_what_is_allowed():
    for settings, message in [({"dataset": "mnist"}, "dataset must be one of one_ball, two_balls, shapes"),
                              ({"architecture": "mlp"}, "architecture must be one of fc, conv, allconv"),
                              ({"beta": -1.0}, "beta must be zero or more"),
                              ({"n_train": 0}, "n_train must be a whole number"),
                              ({"epochs": 0}, "epochs must be a whole number"),
                              ({"lr": -1.0}, "lr must be positive"),
                              ({"final_lr_fraction": 0.0}, "final_lr_fraction must be in")]:
        with pytest.raises(RecipeError, match=message):
            bv.BetaVAERecipe(**settings)


def test_only_the_live_decoded_shapes_models_ship():
    assert bv.BetaVAERecipe(beta=1.0).at_scale("quick").shipped_name() == "beta_vae_shapes_conv_beta1_seed0.pt"
    assert bv.BetaVAERecipe(beta=2.0).shipped_name() is None
    assert bv.BetaVAERecipe(dataset="one_ball", beta=1.0).shipped_name() is None
    assert bv.BetaVAERecipe(architecture="allconv", beta=4.0).shipped_name() is None


def test_the_full_sweep_is_the_recorded_one():
    jobs = bv.sweep_jobs("full")
    assert EXPERIMENTS["beta_vae"] is bv.EXPERIMENT and len({job.key for job in jobs}) == len(jobs) == 40
    recorded = read_results(bv.RESULTS_NAME)
    by_config = {(j.recipe.dataset, j.recipe.architecture, j.recipe.beta, j.seed): j.recipe for j in jobs}
    for run in recorded["runs"]:
        recipe = by_config[run["dataset"], run["architecture"], run["beta"], run["seed"]]
        assert (recipe.batch_size, recipe.learning_rate(), recipe.n_train, recipe.n_val) == (
            run["batch_size"], run["lr"], run["n_train"], run["n_val"]), run["key"]
        assert recipe.epochs == 8 and not recipe.quick
    assert [j.recipe.dataset for j in jobs[:4]] == ["shapes"] * 4  # the longest first
    part = bv.sweep_jobs("full", bv.BALL_DATASETS, (2.0, 4.0, 8.0))  # the ball runs at beta > 1
    assert len(part) == 18 and {j.recipe.beta for j in part} == {2.0, 4.0, 8.0}
    assert {j.key for j in part} <= {j.key for j in jobs} and {j.recipe.dataset for j in part} == set(bv.BALL_DATASETS)


# --- the sweep, on the one runner ---------------------------------------------------------------------
SUBSET = [(d, a, b) for d, a, b in [("shapes", "conv", 1.0), ("shapes", "conv", 4.0)]] + \
         [("one_ball", a, 1.0) for a in ("fc", "conv", "allconv")]


def subset_jobs(scale="quick"):
    return [j for j in bv.sweep_jobs(scale) if (j.recipe.dataset, j.recipe.architecture, j.recipe.beta) in SUBSET]


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    outputs = Outputs(runs=root / "runs", results=root / "results", checkpoints=root / "checkpoints", scale="quick")
    records = sweep(subset_jobs(), outputs.runs, executor="inline", device="cpu")
    returned = bv.collect(records, outputs)
    return outputs, records, returned


def test_the_quick_sweep_trains_every_job_into_its_run_folder(quick_sweep):
    outputs, records, _ = quick_sweep
    assert sorted(records) == sorted(j.key for j in subset_jobs()) and len(records) == len(SUBSET)
    for key, record in records.items():
        assert record["status"] == "done" and read_record(outputs.runs / key)["status"] == "done"
        recipe, model, _ = load_run(outputs.runs / key)
        assert recipe.quick and recipe.run_name(0) == key and isinstance(model, BetaVAE)


def test_collect_writes_every_key_the_notebook_reads(quick_sweep):
    outputs, records, returned = quick_sweep
    results = read_results(bv.RESULTS_NAME, outputs.results)
    assert results == json.loads(json.dumps(returned)) and results["quick"] is True and results["scale"] == "quick"
    for key in ("command", "commit", "device", "seed", "wall_time_s", "date", "n_runs", "runs", "target",
                "shapes_runs", "mig_median_by_beta", "betavae_metric_median_by_beta"):
        assert key in results, key
    assert {(r["beta"], r["seed"]) for r in results["shapes_runs"]} == {
        (r["beta"], r["seed"]) for r in results["runs"] if r["dataset"] == "shapes"}
    assert results["settings"]["traversal_values"] == list(bv.TRAVERSAL_VALUES) and results["n_runs"] == len(SUBSET)
    assert set(results["mig_by_beta"]) == set(results["betavae_metric_by_beta"]) == {"1", "4"}
    assert results["target"]["met"] in (True, False) and results["failed"] == {}
    frames = read_shipped(bv.FRAMES_NAME, outputs.checkpoints)["runs"]
    for run in results["runs"]:
        for key in ("key", "dataset", "architecture", "beta", "seed", "reconstruction_nats", "kl_nats",
                    "posterior_std", "active_latents", "order_by_std", "steps", "planned_steps", "batch_size",
                    "stopped_at_deadline", "wall_time_s", "device", "command", "history"):
            assert key in run, (run["key"], key)
        assert run["key"] == bv.run_key(run["dataset"], run["architecture"], run["beta"], run["seed"])
        assert len(run["posterior_std"]) == bv.LATENT_DIMS[run["architecture"]]
        assert all(s > 0 for s in run["posterior_std"]) and np.isfinite(run["reconstruction_nats"])
        assert sorted(run["order_by_std"]) == list(range(len(run["posterior_std"])))
        assert run["steps"] == run["planned_steps"] == 4 and not run["stopped_at_deadline"]
        if run["dataset"] == "shapes":
            assert -1 <= run["mig"] <= 1 and 0 <= run["betavae_metric"] <= 1
            assert np.shape(run["normalized_mutual_information"]) == (10, 5)
        frame = frames[run["key"]]
        size = 64 if run["dataset"] == "shapes" else bv.BALL_SIZE
        assert frame["frames"].shape == (run["latent_dim"], len(bv.TRAVERSAL_VALUES), size, size)
        assert frame["frames"].dtype == torch.uint8 and frame["order"] == run["order_by_std"]
        assert frame["reconstructions"].shape == frame["originals"].shape == (bv.N_RECONSTRUCTIONS, size, size)
        assert len(bv.latent_labels(frame)) == run["latent_dim"]


def test_collect_ships_the_live_models_by_their_recipes_names(quick_sweep):
    outputs, _, _ = quick_sweep
    for beta in bv.SHIPPED_SHAPES_BETAS:
        recipe = bv.BetaVAERecipe(beta=beta)
        model = recipe.build_model()
        payload = load_shipped(recipe.shipped_name(), model, outputs.checkpoints)
        assert payload["train_config"]["recipe"] == "beta_vae" and payload["train_config"]["seed"] == 0
    names = sorted(p.name for p in outputs.checkpoints.glob("*.pt"))
    assert names == [bv.FRAMES_NAME, "beta_vae_shapes_conv_beta1_seed0.pt", "beta_vae_shapes_conv_beta4_seed0.pt"]


def test_the_figures_draw_the_collected_runs(quick_sweep):
    import matplotlib.pyplot as plt

    from objectcentric import viz

    outputs, _, results = quick_sweep
    runs, frames = results["runs"], read_shipped(bv.FRAMES_NAME, outputs.checkpoints)["runs"]
    keys = [bv.find_run(runs, "shapes", "conv", b)["key"] for b in bv.SHIPPED_SHAPES_BETAS]
    for fig in (viz.plot_traversals(frames, keys, max_latents=4), viz.plot_posterior_std(runs),
                viz.plot_reconstruction(runs), viz.plot_factor_information(runs)):
        assert fig.axes
        plt.close(fig)
    table = viz.metric_table(runs).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| 1 |")


def test_a_stopped_run_is_recorded_as_stopped_evaluated_and_resumed(tmp_path):
    recipe = bv.BetaVAERecipe(dataset="one_ball", architecture="conv", beta=1.0).at_scale("quick")
    job = Job(dataclasses.replace(recipe, n_train=64 * 6), seed=0)  # one epoch of 6 steps
    outputs = Outputs(runs=tmp_path / "runs", results=tmp_path / "results", checkpoints=tmp_path / "ck", scale="quick")
    records = sweep([job], outputs.runs, executor="inline", device="cpu", stop=Stop(steps=2))
    assert records[job.key]["status"] == "stopped" and records[job.key]["steps"] == 2
    records["never_ran"] = {"status": "failed", "error": "RuntimeError: out of memory, say"}
    results = bv.collect(records, outputs)
    (run,) = results["runs"]
    assert run["stopped_at_deadline"] and run["steps"] == 2 and run["planned_steps"] == 6 and run["epochs"] == 0
    assert results["failed"] == {"never_ran": "RuntimeError: out of memory, say"}
    again = sweep([job], outputs.runs, executor="inline", device="cpu")  # resumes where it stopped
    assert again[job.key]["status"] == "done" and again[job.key]["steps"] == 6
    whole = train(job.recipe, 0, tmp_path / "uninterrupted", device="cpu", progress="none")
    _, resumed, _ = load_run(outputs.runs / job.key)
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.model.state_dict().values()))


def test_a_part_of_the_sweep_keeps_the_recorded_rows_and_frames_of_the_rest(tmp_path):
    first, second = (j for j in subset_jobs() if j.recipe.dataset == "one_ball" and j.recipe.architecture != "allconv")
    outputs = Outputs(runs=tmp_path / "runs", results=tmp_path / "results", checkpoints=tmp_path / "ck", scale="quick")
    before = bv.collect(sweep([first], outputs.runs, executor="inline", device="cpu"), outputs)
    assert [r["key"] for r in before["runs"]] == [bv.job_row_key(first)] and before["kept_from_earlier"] == []
    after = bv.collect(sweep([second], outputs.runs, executor="inline", device="cpu"), outputs)
    assert sorted(r["key"] for r in after["runs"]) == sorted(map(bv.job_row_key, (first, second)))
    assert after["kept_from_earlier"] == [bv.job_row_key(first)] and after["n_runs"] == 2
    assert bv.find_run(after["runs"], "one_ball", first.recipe.architecture, 1.0) == before["runs"][0]
    frames = read_shipped(bv.FRAMES_NAME, outputs.checkpoints)["runs"]
    assert sorted(frames) == sorted(r["key"] for r in after["runs"])
    (part,) = chapter.provenance_details(after).values()  # one command trained both, in two calls
    assert part.startswith("2 runs (conv on one ball; fc on one ball; β = 1) on a CPU")
    both = sweep([first, second], outputs.runs, executor="inline", device="cpu")  # trained: evaluated, not kept
    again = bv.collect(both, outputs)
    assert again["kept_from_earlier"] == [] and again["n_runs"] == 2


def test_the_benchmark_turns_its_deadline_into_a_stop(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("beta_vae_benchmark", ROOT / "benchmarks" / "beta_vae.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    one_ball_run = subset_jobs()[2:3]
    monkeypatch.setattr(bv, "sweep_jobs", lambda scale, *subset: one_ball_run)
    results = benchmark.main(["--scale", "quick", "--executor", "inline", "--device", "cpu", "--out", str(tmp_path),
                              "--deadline-s", "1"])  # already past: every run stops after its first step
    (run,) = results["runs"]
    assert run["stopped_at_deadline"] and run["stopped_by"] == "deadline" and run["steps"] == 1
    recorded = read_results(bv.RESULTS_NAME, tmp_path / "quick" / "results")["runs"]
    assert [r["key"] for r in recorded if r["stopped_at_deadline"]] == [run["key"]]


# --- the explorer widget --------------------------------------------------------------------------------
def test_traversal_explorer_links_every_control_in_the_browser():
    from ipywidgets.widgets.widget_link import Link

    from objectcentric.widgets import tile_frames, traversal_explorer

    values = [-1.0, 0.0, 1.0]
    frames = {b: (np.full((4, 3, 6, 6), b / 4), [f"z[{i}]" for i in range(4)]) for b in (1.0, 2.0)}
    panels = {"balls": {"fc": dict(frames), "conv": {1.0: frames[1.0], 2.0: None}},
              "shapes": {"conv": {4.0: frames[2.0]}}}
    box = traversal_explorer(panels, values, max_latents=2)
    assert "oc-beta-explorer" in box._dom_classes
    assert all(isinstance(link, Link) for link in box.links)
    # 1 dataset link + per dataset: 1 architecture link + one β link per architecture
    assert len(box.links) == 1 + (1 + 2) + (1 + 1)
    architecture, beta = box.controls["balls"]
    assert list(architecture.options) == ["fc", "conv"] and [v for _, v in beta.options] == [1.0, 2.0]
    balls = box.children[1].children[0]
    panel = balls.children[1].children[0].children[1]  # fc, β = 2
    grid, rows = panel.children
    assert len(rows.children) == 2  # max_latents sliders, each starting at the value 0
    assert all(row.children[1].slider.value == 0.0 for row in rows.children)
    assert "not recorded" in balls.children[1].children[1].children[1].value
    assert tile_frames(np.zeros((4, 3, 6, 6))).shape == (4 * 7 - 1, 3 * 7 - 1)
    with pytest.raises(ValueError, match="same β values"):
        traversal_explorer({"balls": {"fc": {1.0: None}, "conv": {2.0: None}}}, values)


def test_a_shipped_beta_vae_file_names_the_seed_of_its_run():
    recipe = bv.BetaVAERecipe(beta=4.0)
    assert recipe.shipped_name() == "beta_vae_shapes_conv_beta4_seed0.pt"
    assert recipe.shipped_name(3) == "beta_vae_shapes_conv_beta4_seed3.pt"


def shapes_row(beta, seed, mig, metric=0.5):
    return {"key": bv.run_key("shapes", "conv", beta, seed), "dataset": "shapes", "architecture": "conv",
            "beta": beta, "seed": seed, "steps": 100, "mig": mig, "betavae_metric": metric, "device": "cpu"}


def test_the_statistics_by_beta_are_medians_and_ranges_over_seeds():
    runs = [shapes_row(1.0, s, m) for s, m in enumerate((0.05, 0.10, 0.02))]
    runs += [shapes_row(4.0, s, m, 0.9) for s, m in enumerate((0.30, 0.12, 0.40, 0.25))]
    runs.append({**shapes_row(1.0, 9, 0.9), "dataset": "one_ball"})  # balls have no MIG statistics
    stats = bv.shapes_statistics(runs)
    assert stats["mig_median_by_beta"] == {"1": 0.05, "4": 0.275}
    assert stats["mig_spread_by_beta"]["4"] == {"median": 0.275, "min": 0.12, "max": 0.40, "seeds": [0, 1, 2, 3]}
    assert stats["betavae_metric_median_by_beta"] == {"1": 0.5, "4": 0.9}
    assert len(stats["shapes_runs"]) == 7 and set(stats["shapes_runs"][0]) == set(bv.SHAPES_RUN_FIELDS)
    target = stats["target"]
    assert target["ratio_of_medians"] == 5.5 and target["best_mig_at_beta4"] == 0.40 and target["met"] is True
    low = bv.shapes_statistics([r for r in runs if r["mig"] != 0.40])["target"]  # best beta = 4 seed 0.30
    assert low["met"] is False and low["seeds_at_beta4"] == 3


def test_restate_recomputes_the_statistics_and_keeps_the_rows(tmp_path):
    outputs = Outputs(runs=tmp_path / "runs", scale="full", results=tmp_path, checkpoints=tmp_path)
    with pytest.raises(FileNotFoundError, match="no recorded runs"):
        bv.restate(outputs)
    rows = [shapes_row(1.0, 0, 0.02), shapes_row(4.0, 0, 0.04)]
    records.write_results(bv.RESULTS_NAME, {"runs": rows, "mig_by_beta": {"1": 0.5}}, directory=tmp_path,
                          provenance=records.provenance(seed=0, wall_time_s=1.0))
    whole = bv.restate(outputs)
    assert whole["runs"] == rows and whole["mig_by_beta"] == {"1": 0.02, "4": 0.04}
    assert whole["mig_median_by_beta"] == {"1": 0.02, "4": 0.04} and whole["target"]["ratio_of_medians"] == 2.0
