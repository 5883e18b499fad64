"""D-VAE and D-VAE-ST (Chapter 5): the model (shapes, every estimator, one transformation per estimate, replicas,
surgery), the recipe, the recorded experiment on the runner (quick sweep, collect, the ELBO's pick), the shipped model."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from objectcentric import runner, spatial
from objectcentric.checkpoints import load_shipped, read_checkpoint, read_manifest
from objectcentric.cli import main
from objectcentric.data.single_object import DATASETS
from objectcentric.estimators import ESTIMATORS
from objectcentric.experiments import dvae as recipe
from objectcentric.experiments.dvae import DVAERecipe
from objectcentric.models.dvae import DVAE, DVAEST, DVAEConfig, DVAESTConfig
from objectcentric.recipes import RecipeError, from_settings, recipe_class
from objectcentric.records import read_results
from objectcentric.runner import EXPERIMENTS, Outputs, load_run, read_record, sweep

SHAPE = (1, 8, 8)


def tiny(cls=DVAEST, estimator="exact", replicas=2, k=3, seeds=(1, 2), **kwargs):
    """A small model on 8 x 8 images: two replicas, three classes."""
    if cls is DVAEST:
        kwargs.setdefault("transform_hidden", (16,))
    return cls(num_classes=k, estimator=estimator, replicas=replicas, image_shape=SHAPE, encoder_hidden=(16,),
               decoder_hidden=12, seeds=seeds, **kwargs)


@pytest.fixture
def images():
    return torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls", [DVAE, DVAEST], ids=lambda c: c.__name__)
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_gives_a_finite_loss_and_trains_every_network(cls, estimator, images):
    torch.manual_seed(0)
    model = tiny(cls, estimator)
    assert model.estimator.name == estimator and model.estimator.n_groups == 2
    terms = model.loss(images)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    terms["loss"].backward()
    networks = [model.encoder, model.decoder] + ([model.transformer] if cls is DVAEST else [])
    for network in networks:
        grads = [p.grad for p in network.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_shapes_of_the_parts(images):
    model = tiny(k=4)
    assert model.encode(images).shape == (2, 5, 4)
    assert model.prototypes().shape == (2, 4, *SHAPE)
    assert model.assign(images).shape == (2, 5)
    assert model.neg_elbo(images).shape == (2, 5)
    explained = model.explain(images)
    assert explained["class"].shape == (2, 5) and explained["theta"].shape == (2, 5, 2, 3)
    assert explained["prototype"].shape == explained["reconstruction"].shape == (2, 5, *SHAPE)
    per_replica = torch.rand(2, 5, *SHAPE)
    assert model.encode(per_replica).shape == (2, 5, 4)
    with pytest.raises(ValueError, match="one batch per replica"):
        model.encode(torch.rand(3, 5, *SHAPE))


def test_the_transform_network_starts_at_the_prior(images):
    model = tiny()
    mean, log_variance = model.transform_posterior(model.batch(images))
    assert torch.allclose(mean, torch.tensor([1.0, 0, 0, 0, 1, 0]).expand_as(mean))
    assert torch.allclose(log_variance, torch.full_like(log_variance, torch.tensor(0.01).log().item()))
    _, kl = model.sample_transform(model.batch(images))
    assert torch.allclose(kl, torch.zeros_like(kl), atol=1e-5)


@pytest.mark.parametrize("estimator", ["exact", "rebar", "relax", "concrete", "reinforce"])
def test_one_transformation_per_image_is_shared_by_every_evaluation_of_one_estimate(estimator, images):
    model = tiny(estimator=estimator)
    drawn, used = [], []
    sample, warp = model.sample_transform, model.warp
    model.sample_transform = lambda x: drawn.append(sample(x)) or drawn[-1]
    model.warp = lambda picture, taps: used.append(taps) or warp(picture, taps)
    model.loss(images)["loss"].backward()
    assert len(drawn) == 1
    expected_calls = {"exact": 3, "rebar": 3, "relax": 3, "concrete": 1, "reinforce": 1}[estimator]
    assert len(used) == expected_calls and all(taps is drawn[0][0] for taps in used)


def test_the_exact_estimate_is_the_expectation_under_that_one_transformation(images):
    torch.manual_seed(3)
    model = tiny()
    x = model.batch(images)
    logits = model.encoder(x)
    torch.manual_seed(7)
    terms = model.loss(images)
    torch.manual_seed(7)  # the same draw of theta
    taps, kl_transform = model.sample_transform(x)
    cost = model.reconstruction_cost(x, taps)
    eye = torch.eye(3)
    costs = torch.stack([cost(eye[k].expand(10, 3)) for k in range(3)], -1).view(2, 5, 3)
    expected = (logits.softmax(-1) * costs).sum(-1)
    assert torch.allclose(terms["reconstruction"], expected.mean(), rtol=1e-5)
    assert torch.allclose(cost(eye[1].expand(10, 3)), cost(eye[1].expand(10, 3)))  # no fresh draw inside f


def test_replicas_are_independent_and_seeded_alone(images):
    torch.manual_seed(0)
    pair, alone = tiny(seeds=(1, 2)), tiny(replicas=1, seeds=(2,))
    for a, b in zip(pair.parameters(), alone.parameters()):
        assert torch.equal(a[1:2], b)
    batches = torch.rand(2, 5, *SHAPE)
    grads = []
    for second in (batches[1], torch.rand(5, *SHAPE)):
        pair.zero_grad()
        torch.manual_seed(5)
        pair.loss(torch.stack([batches[0], second]))["loss"].backward()
        grads.append(pair.encoder[0].weight.grad[0].clone())
    assert torch.allclose(grads[0], grads[1])  # replica 0 does not see replica 1's images
    single = pair.replica(1)
    assert single.config.replicas == 1 and single.config.num_classes == 3
    assert torch.allclose(single.encode(images)[0], pair.encode(images)[1])


def test_decoding_one_hot_codes_reads_the_prototypes(images):
    model = tiny(DVAE)
    codes = F.one_hot(torch.tensor([[0, 2, 1], [1, 1, 0]]), 3).float()
    assert torch.allclose(model.decode(codes), model.decoder(codes), atol=1e-6)
    relaxed = torch.softmax(torch.randn(2, 3, 3), -1)
    assert torch.allclose(model.decode(relaxed), model.decoder(relaxed))


def test_init_prototypes_and_split_cluster(images):
    model = tiny(k=3)
    targets = torch.rand(2, 3, *SHAPE)
    model.init_prototypes(targets)
    assert torch.allclose(model.prototype_means().view_as(targets), targets, atol=1e-4)
    before = model.encode(images)
    model.split_cluster(1, source=0, target=2, noise=0.0)
    after = model.encode(images)
    assert torch.allclose(after[0], before[0])  # the other replica is untouched
    assert torch.allclose(after[1, :, 2], after[1, :, 0])
    assert torch.allclose(after[1, :, 0], before[1, :, 0] - torch.log(torch.tensor(2.0)))
    assert torch.allclose(model.prototype_means()[1, 2], model.prototype_means()[1, 0])


def test_marginal_kl_is_zero_when_balanced_and_log_k_when_collapsed():
    model = tiny(k=4)
    balanced = torch.log(torch.eye(4).clamp_min(1e-9)).unsqueeze(0) * 1.0  # each image certain, all classes used
    collapsed = torch.zeros(1, 4, 4)
    collapsed[..., 0] = 30.0
    assert model.marginal_kl(balanced).abs().max() < 1e-5
    assert torch.allclose(model.marginal_kl(collapsed), torch.log(torch.tensor(4.0)), atol=1e-4)


def test_rebalance_splits_a_lopsided_replica_and_copies_the_optimizer_state(images):
    model = tiny(k=3)
    optimizer = torch.optim.Adam(model.parameters())
    model.loss(images)["loss"].backward()
    optimizer.step()
    with torch.no_grad():
        model.encoder[-1].bias[0, 0] = torch.tensor([0.0, 50.0, 0.0])  # replica 0: everything in class 1
        model.encoder[-1].bias[1, 0] = torch.tensor([0.0, 0.0, 0.0])
    shares = recipe.cluster_shares(model, model.batch(images)[0])
    assert shares[0, 1] == 1
    moves = recipe.rebalance(model, optimizer, model.batch(images)[0], torch.Generator().manual_seed(0))
    assert moves[0][:2] == (0, 1)  # replica 0: class 1 split into an empty class
    target = moves[0][2]
    state = optimizer.state[model.decoder[0].weight]["exp_avg"]
    assert torch.equal(state[0, target], state[0, 1])


def test_kmeans_plus_plus_picks_distinct_spread_rows():
    points = torch.cat([torch.zeros(50, 2), torch.full((50, 2), 10.0), torch.tensor([[10.0, -10.0]])])
    picks = recipe.kmeans_plus_plus(points, 3, torch.Generator().manual_seed(0))
    assert len(set(picks.tolist())) == 3
    picked = {tuple(points[i].tolist()) for i in picks}
    assert picked == {(0.0, 0.0), (10.0, 10.0), (10.0, -10.0)}


def test_sample_bilinear_is_grid_sample_and_twice_differentiable():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    theta = spatial.affine_matrix(torch.tensor([1.1, 0.7, 1.6]), torch.tensor([0.3, -0.2, 0.1]), 0.2,
                                  torch.tensor([0.1, -0.5, 0.9]), 0.3).double()
    grid = spatial.sampling_grid(theta, (6, 5)).requires_grad_(True)
    ours, theirs = spatial.sample_bilinear(x, grid), F.grid_sample(x, grid, align_corners=False)
    assert torch.allclose(ours, theirs, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours.square().sum(), (x, grid)),
                    torch.autograd.grad(theirs.square().sum(), (x, grid))):
        assert torch.allclose(a, b, atol=1e-10)
    (gx,) = torch.autograd.grad(spatial.sample_bilinear(x, grid).square().sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(gx.square().sum(), grid)
    assert torch.isfinite(second).all() and second.abs().sum() > 0


# --- the model's settings and the shipped checkpoint --------------------------------------------------
def test_the_settings_are_a_dataclass_with_the_recorded_field_names():
    payload = read_checkpoint(Path(__file__).parents[1] / "checkpoints" / "dvae_st_fullmnist.pt")
    assert [f.name for f in dataclasses.fields(DVAESTConfig)] == list(payload["model_config"])
    assert set(f.name for f in dataclasses.fields(DVAEConfig)) == set(payload["model_config"]) - {
        "transform_prior_variance", "transform_hidden"}
    assert DVAE(num_classes=4).config == DVAEConfig(num_classes=4)
    assert DVAEST(DVAESTConfig(transform_hidden=(8,))).transformer[0].weight.shape[-1] == 8
    with pytest.raises(TypeError, match="DVAESTConfig"):
        DVAEST(DVAEConfig())
    with pytest.raises(TypeError, match="not both"):
        DVAE(DVAEConfig(), num_classes=3)


def test_the_shipped_checkpoint_loads_through_the_recipe_and_from_its_config():
    recipe_ = DVAERecipe()
    assert recipe_.shipped_name() == "dvae_st_fullmnist.pt"
    run = runner.load_or_train(recipe_, "read", device="cpu")
    assert run.record["loaded"] and isinstance(run.model, DVAEST) and run.model.replicas == 1
    payload = read_checkpoint(Path(__file__).parents[1] / "checkpoints" / "dvae_st_fullmnist.pt")
    model = DVAEST(**payload["model_config"])
    load_shipped("dvae_st_fullmnist.pt", model)
    for a, b in zip(model.parameters(), run.model.parameters()):
        assert torch.equal(a, b)


# --- the recipe ------------------------------------------------------------------------------------------
def test_the_recipe_is_registered_with_its_choices_from_the_code():
    assert recipe_class("dvae") is DVAERecipe and DVAERecipe.chapter == "5"
    assert DVAERecipe.CHOICES == {"kind": tuple(recipe.MODELS), "dataset": DATASETS,
                                  "estimator": tuple(ESTIMATORS), "variant": tuple(recipe.VARIANTS)}
    full = DVAERecipe()
    assert (full.kind, full.dataset, full.estimator, full.k, full.variant) == recipe.MAIN
    assert (full.epochs, full.batch_size, full.lr, full.weight_decay, full.n_train, full.n_monitor) == (
        60, 1000, 5e-4, 1e-6, None, 10_000)
    for field, bad in (("variant", "best"), ("kind", "vae"), ("dataset", "CIFAR"), ("estimator", "magic"),
                       ("k", 1), ("n_monitor", 0)):
        with pytest.raises(RecipeError, match=field):
            DVAERecipe(**{field: bad})


def test_quick_derivation_k_from_the_dataset_and_what_is_shipped():
    quick = DVAERecipe().at_scale("quick")
    assert quick.quick and {k: getattr(quick, k) for k in DVAERecipe.QUICK} == DVAERecipe.QUICK
    assert quick.weight_decay == 1e-6 and quick.shipped_name() == "dvae_st_fullmnist.pt"
    simple = DVAERecipe(kind="dvae", dataset="SimplifiedMNIST")
    assert simple.k == 3 and simple.shipped_name() is None and simple.run_name(2) == (
        "dvae_datasetSimplifiedMNIST_k3_kinddvae_seed2")
    assert from_settings("dvae", simple.settings()) == simple
    assert DVAERecipe(variant="thesis").build_model().marginal_weight == 0.0
    assert DVAERecipe().build_model().marginal_weight == recipe.MARGINAL_WEIGHT
    assert all(DVAERecipe(**{f: v}).shipped_name() is None for f, v in (("k", 11), ("estimator", "relax"),
                                                                           ("variant", "split"), ("kind", "dvae")))


def test_kmeans_start_is_the_initialize_hook():
    quick = DVAERecipe(variant="kmeans").at_scale("quick")
    data = quick.train_data()
    model = quick.build_model()
    quick.initialize(model, data, seed=0)
    prototypes = model.prototype_means()[0]
    distance = torch.cdist(prototypes, data.tensors[0]).min(1).values
    assert distance.max() < 1e-2  # every prototype is one of the training images
    untouched = DVAERecipe().at_scale("quick").build_model()
    before = untouched.prototype_means().clone()
    DVAERecipe().at_scale("quick").initialize(untouched, data, seed=0)
    assert torch.equal(before, untouched.prototype_means())


def test_split_rebalance_is_the_end_of_epoch_hook():
    quick = dataclasses.replace(DVAERecipe(variant="split").at_scale("quick"), epochs=10)  # splits up to epoch 6
    assert quick.setup["split_every"] == 2 and quick.setup["split_until"] == 0.6
    model = quick.build_model()
    optimizer = quick.optimizer(model)
    with torch.no_grad():  # everything in class 1: the lopsided start the surgery undoes
        model.encoder[-1].bias[0, 0].copy_(torch.tensor([0.0, 50.0] + [0.0] * 8))
    quick.end_of_epoch(model, optimizer, epoch=1, seed=0)  # not an epoch to split at
    assert not getattr(model, "splits", [])
    quick.end_of_epoch(model, optimizer, epoch=2, seed=0)
    assert model.splits == [{"epoch": 2, "seed": 0, "source": 1, "target": model.splits[0]["target"]}]
    assert quick.evaluator()(model)["splits"] == 1.0
    quick.end_of_epoch(model, optimizer, epoch=8, seed=0)  # past split_until: no more surgery
    assert len(model.splits) == 1
    robust = DVAERecipe().at_scale("quick")
    plain = robust.build_model()
    robust.end_of_epoch(plain, robust.optimizer(plain), epoch=2, seed=0)
    assert not getattr(plain, "splits", [])


def test_the_elbo_picks_the_run_with_the_lowest_training_neg_elbo_not_the_best_accuracy():
    reports = [{"train": {"neg_elbo": [70.0], "accuracy": [0.95]}},
               {"train": {"neg_elbo": [62.5], "accuracy": [0.90]}},
               {"train": {"neg_elbo": [64.0], "accuracy": [0.97]}}]
    assert recipe.pick_by_elbo(reports) == 1


def test_one_cli_run_is_one_seed_and_stops_at_its_step_budget(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "dvae", "--quick", "--dataset", "SimplifiedMNIST", "--kind", "dvae", "--seed", "3",
              "--max-steps", "2", "--run-dir", str(tmp_path), "--device", "cpu"])
    assert exit_.value.code == 0
    record = read_record(tmp_path)
    assert record["status"] == "stopped" and record["steps"] == 2 and record["seed"] == 3
    assert record["settings"]["k"] == 3 and record["settings"]["quick"]
    recipe_, model, _ = load_run(tmp_path)
    assert recipe_.dataset == "SimplifiedMNIST" and isinstance(model, DVAE) and model.replicas == 1


# --- the recorded experiment on the runner -----------------------------------------------------------------
def test_the_full_jobs_are_the_recorded_configurations_and_seeds():
    jobs = recipe.experiment_jobs("full")
    assert EXPERIMENTS["dvae"] is recipe.EXPERIMENT and len({job.key for job in jobs}) == len(jobs)
    planned = {}
    for job in jobs:
        planned.setdefault(job.recipe.configuration(), []).append(job.seed)
        assert not job.recipe.quick and job.recipe.batch_size == 1000
    recorded = read_results("dvae")
    for row in recorded["runs"]:
        configuration = (row["model"], row["dataset"], row["estimator"], row["k"], row["variant"])
        assert planned[configuration] == row["seeds"], configuration
        epochs = next(j.recipe.epochs for j in jobs if j.recipe.configuration() == configuration)
        assert epochs == max(row["epochs"]), configuration
    skipped = {(s["model"], s["dataset"], s["k"]) for s in recorded["skipped"]}
    assert skipped <= {(c[0], c[1], c[3]) for c in planned}
    assert jobs[0].recipe.configuration() == recipe.MAIN
    assert all(job.recipe.quick for job in recipe.experiment_jobs("quick"))


@pytest.fixture(scope="module")
def quick_experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvae")
    outputs = Outputs(runs=root / "runs", results=root / "results", checkpoints=root / "checkpoints", scale="quick")
    jobs = recipe.experiment_jobs("quick")
    records = sweep(jobs, outputs.runs, executor="inline", device="cpu")
    letters = DVAERecipe(dataset="Letters").at_scale("quick")
    records["letters"] = {"status": "failed", "recipe": "dvae", "settings": letters.settings(), "seed": 0,
                          "error": "DatasetUnavailableError: EMNIST Letters is not available (test)"}
    returned = recipe.collect(records, outputs, device="cpu")
    return outputs, jobs, records, returned


def test_the_quick_sweep_trains_one_seed_per_run(quick_experiment):
    outputs, jobs, records, _ = quick_experiment
    for job in jobs:
        assert records[job.key]["status"] == "done" and records[job.key]["seed"] == job.seed
        recipe_, model, _ = load_run(outputs.runs / job.key)
        assert recipe_ == job.recipe and model.replicas == 1


def test_collect_writes_the_keys_the_notebook_reads(quick_experiment):
    outputs, jobs, _, returned = quick_experiment
    results = read_results("dvae", outputs.results)
    assert results == json.loads(json.dumps(returned)) and results["quick"] is True and results["scale"] == "quick"
    for key in ("command", "commit", "device", "seed", "wall_time_s", "date", "torch", "schema_version",
                "description", "anchor", "runs", "details", "skipped", "jobs"):
        assert key in results, key
    assert results["skipped"][0]["dataset"] == "Letters" and results["skipped"][0]["skipped"].startswith("EMNIST")
    main_name = recipe.run_name(*recipe.MAIN)
    rows = [r for r in results["runs"] if recipe.run_name(r["model"], r["dataset"], r["estimator"], r["k"],
                                                          r["variant"]) == main_name]
    assert [r["split"] for r in rows] == ["train", "test"] and rows[0]["seeds"] == [0, 1]
    for row in results["runs"]:
        for key in ("model", "dataset", "estimator", "k", "split", "accuracy_by_seed", "best", "worst", "mean",
                    "seconds_per_epoch", "variant", "seeds", "epochs", "devices", "commits", "commands"):
            assert key in row, key
        assert all(0 <= a <= 1 for a in row["accuracy_by_seed"]) and row["epochs"] == [3] * len(row["seeds"])
    info = results["details"][main_name]
    for split in ("train", "test"):
        for key in ("accuracy", "mapping", "cluster_sizes", "neg_elbo"):
            assert len(info[split][key]) == 2, (split, key)
    assert np.shape(info["train"]["confusion"]) == (2, 10, 10) and sum(info["train"]["cluster_sizes"][0]) == 1000
    assert info["class_names"] == [str(d) for d in range(10)]
    assert "val_accuracy" in info["histories"][0]["history"][0]
    with np.load(outputs.results / recipe.PROTOTYPES_FILE) as stored:
        assert stored[main_name].shape == (2, 10, 28, 28) and stored[main_name].dtype == np.uint8
    assert not list(outputs.results.glob("*.tmp*"))


def test_the_shipped_seed_is_the_lowest_training_neg_elbo_and_says_so(quick_experiment):
    outputs, _, _, results = quick_experiment
    info = results["details"][recipe.run_name(*recipe.MAIN)]
    chosen = info["seeds"][int(np.argmin(info["train"]["neg_elbo"]))]
    entry = read_manifest(outputs.checkpoints)["checkpoints"]["dvae_st_fullmnist.pt"]
    assert entry["seed"] == chosen and entry["selected_by"] == "train_neg_elbo" and "-ELBO" in entry["note"]
    assert "no labels" in entry["note"] and entry["recipe"] == "dvae" and entry["run"].endswith(f"seed{chosen}")
    assert entry["metrics"]["train_neg_elbo"] == round(min(info["train"]["neg_elbo"]), 5)
    recorded = set(read_results("dvae"))  # the book's file: a reproduction writes no key it lacks
    assert set(k for w in results["writers"] for k in w["keys"]) - {"scale"} <= recorded
    model = DVAERecipe().build_model()
    load_shipped("dvae_st_fullmnist.pt", model, outputs.checkpoints)
    assert isinstance(model, DVAEST)




def test_of_retrained_runs_the_lowest_training_neg_elbo_ships_and_every_candidate_is_recorded(quick_experiment,
                                                                                             tmp_path):
    outputs, jobs, _, results = quick_experiment
    main = [outputs.runs / job.key for job in jobs if job.recipe.configuration() == recipe.MAIN]
    info = results["details"][recipe.run_name(*recipe.MAIN)]
    shutil.copy(outputs.results / "dvae.json", tmp_path / "dvae.json")
    entry = recipe.ship_lowest_elbo(main, results=tmp_path, checkpoints=tmp_path / "checkpoints")
    stored = read_results("dvae", tmp_path)
    summary = stored["shipped_main"]
    assert summary["seeds"] == info["seeds"] and summary["train_neg_elbo"] == [round(v, 5) for v in
                                                                              info["train"]["neg_elbo"]]
    assert summary["test_accuracy"] == info["test"]["accuracy"]  # scored as the recorded runs are
    index = int(np.argmin(summary["train_neg_elbo"]))
    assert summary["chosen_seed"] == entry["seed"] == info["seeds"][index]
    assert entry["metrics"]["test_accuracy"] == summary["test_accuracy"][index] and entry["candidates"] == [0, 1]
    assert "trained again" in entry["note"] and "no labels" in entry["note"]
    assert stored["details"] == results["details"]  # the recorded runs are kept
    unfinished = tmp_path / "unfinished"
    shutil.copytree(main[0], unfinished)
    (unfinished / "record.json").write_text(json.dumps({**read_record(main[0]), "status": "stopped"}))
    with pytest.raises(RecipeError, match="has not finished"):
        recipe.ship_lowest_elbo([unfinished], results=tmp_path, checkpoints=tmp_path / "checkpoints")

def test_a_collect_keeps_configurations_an_earlier_collect_scored_whose_runs_are_not_here(quick_experiment,
                                                                                          tmp_path):
    outputs, jobs, records, earlier = quick_experiment
    here = Outputs(runs=outputs.runs, results=tmp_path / "results", checkpoints=tmp_path / "checkpoints",
                   scale="quick")
    shutil.copytree(outputs.results, here.results)
    main_name = recipe.run_name(*recipe.MAIN)
    absent = [job.key for job in jobs if job.recipe.configuration() != recipe.MAIN]
    assert absent, "the quick subset has a configuration besides the main one"
    gone = recipe.run_name(*next(j.recipe.configuration() for j in jobs if j.key == absent[0]))
    # This machine has only the main configuration's runs: the other one's records are missing.
    results = recipe.collect({k: (None if k in absent else r) for k, r in records.items()}, here, device="cpu")
    assert results["details"][gone] == {**earlier["details"][gone], "scored_at": results["details"][gone]["scored_at"]}
    assert results["details"][gone]["scored_at"]["commit"] == earlier["commit"]
    kept = [r for r in results["runs"] if recipe.run_name(r["model"], r["dataset"], r["estimator"], r["k"],
                                                          r["variant"]) == gone]
    assert [r["split"] for r in kept] == ["train", "test"] and all("scored_at" in r for r in kept)
    assert "scored_at" not in results["details"][main_name]  # scored afresh from its folders here
    assert [j["status"] for j in results["jobs"] if j["run"] in absent] == ["done"] * len(absent)
    assert results["skipped"] and results["skipped"][0]["dataset"] == "Letters"
    with np.load(outputs.results / recipe.PROTOTYPES_FILE) as before, \
            np.load(here.results / recipe.PROTOTYPES_FILE) as after:
        assert set(after) == set(before) and np.array_equal(after[gone], before[gone])
    # A file written at another scale is not kept from.
    assert recipe._keep_earlier(dataclasses.replace(here, scale="full"), {main_name}, set()) == {}


def test_the_benchmark_selects_jobs_and_writes_only_through_records():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "dvae.py"
    spec = importlib.util.spec_from_file_location("dvae_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    relax = bench.select_jobs(["relax"])
    assert {job.recipe.estimator for job in relax} == {"relax"} and len(relax) == 9
    eleven = bench.select_jobs(["exact 11"], seeds="2-4", epochs=5)
    assert [(job.recipe.k, job.seed, job.recipe.epochs) for job in eleven] == [(11, 2, 5), (11, 3, 5), (11, 4, 5)]
    assert len(bench.select_jobs(quick=True)) == len(recipe.experiment_jobs("quick"))
    source = path.read_text()
    for forbidden in ("torch.load", "write_text", "savez", "record_in_manifest", "subprocess"):
        assert forbidden not in source, forbidden


def test_prototype_explorer_links_prototypes_and_sliders_in_the_browser():
    from objectcentric.widgets import assignment_slider, prototype_explorer

    prototypes = torch.rand(2, 1, 28, 28)
    frames = {f"p{k}": recipe.transform_traversal(prototypes[k]) for k in range(2)}
    assert frames["p0"].shape == (len(recipe.TRANSFORM_PARAMETERS), len(recipe.TRAVERSAL_VALUES), 28, 28)
    middle = len(recipe.TRAVERSAL_VALUES) // 2  # the identity
    assert np.allclose(frames["p0"][:, middle], prototypes[0, 0].numpy(), atol=1e-5)
    calls = []

    def render(name, changes):
        calls.append((name, changes))
        return prototypes[int(name[1]), 0]

    box = prototype_explorer(frames, recipe.TRANSFORM_PARAMETERS, recipe.TRAVERSAL_VALUES, render=render)
    assert "oc-prototype-explorer" in box._dom_classes and len(box.sliders) == 2
    assert all(len(sliders) == len(recipe.TRANSFORM_PARAMETERS) for sliders in box.sliders)
    assert box.links[0].source == (box.chooser, "index")
    box.sliders[0][1].index = 0  # a slider of the shown prototype: the live image follows (kernel only)
    assert calls[-1] == ("p0", [0.0, recipe.TRAVERSAL_VALUES[0], 0.0, 0.0, 0.0])
    strips = np.random.default_rng(0).random((3, 3, 28, 28))
    slider = assignment_slider(strips, captions="image · prototype · reconstruction")
    assert "oc-assignment" in slider._dom_classes and len(slider.slider.stack.children) == 3


def test_prototype_grid_and_confusion_plot_draw():
    import matplotlib

    matplotlib.use("Agg")
    from objectcentric.viz import confusion_plot, prototype_grid

    fig = prototype_grid(torch.rand(4, 1, 28, 28), recipe.prototype_titles([1, 0, -1, 1], [5, 3, 0, 2], ["a", "b"]))
    assert len([ax for ax in fig.axes if ax.images]) == 4
    ax = confusion_plot(np.array([[3, 1], [0, 4]]), ["a", "b"])
    assert len(ax.texts) == 3  # one count per nonzero cell


def test_float64_images_are_converted_and_an_empty_batch_is_refused(images):
    model = tiny(DVAE)
    assert torch.equal(model.neg_elbo(images.double()), model.neg_elbo(images))
    assert model.batch(images.half()).dtype == torch.float32
    with pytest.raises(ValueError, match="got an empty batch"):
        model.loss(images[:0])
    with pytest.raises(ValueError, match="got an empty batch"):
        model.encode(torch.rand(2, 0, *SHAPE))  # per replica


def test_neg_elbo_enumerates_the_classes_exactly(images):
    model = tiny(DVAE, k=4)
    x = model.batch(images)
    logits, cost = model.encoder(x), model.reconstruction_cost(x)
    eye = torch.eye(4)
    costs = torch.stack([cost(eye[k].expand(2 * 5, 4)).view(2, 5) for k in range(4)], -1)
    expected = (logits.softmax(-1) * costs).sum(-1) + model.kl_categorical(logits)
    assert torch.allclose(model.neg_elbo(images), expected)


def test_the_estimator_words_count_failed_seeds_and_name_the_best_sampling_mean():
    from objectcentric.chapters import dvae as chapter

    def config(estimator, accuracy, elbo):
        row = {"model": "dvae_st", "dataset": "FullMNIST", "estimator": estimator, "k": 10, "variant": "robust",
               "split": "train", "accuracy_by_seed": accuracy, "mean": float(np.mean(accuracy)),
               "best": max(accuracy), "worst": min(accuracy)}
        detail = {"train": {"accuracy": accuracy, "neg_elbo": elbo}}
        return row, {recipe.run_name("dvae_st", "FullMNIST", estimator, 10, "robust"): detail}

    rows, details = [], {}
    for estimator, accuracy, elbo in (("exact", [0.93, 0.80, 0.94], [62.0, 70.0, 63.0]),
                                      ("concrete", [0.90, 0.91], [67.0, 68.0]),
                                      ("reinforce", [0.89, 0.70, 0.90], [65.0, 75.0, 65.5])):
        row, detail = config(estimator, accuracy, elbo)
        rows.append(row)
        details.update(detail)
    runs = chapter.Runs({"runs": rows, "details": details}, True, "read")
    failed, kept, best = chapter.estimator_words(runs).split("\n")
    assert "appear with the exact gradient (1 of 3 seeds) and REINFORCE (1 of 3 seeds); with CONCRETE (2 seeds) " \
           "no seed failed." in failed
    assert "the exact gradient 62.5, REINFORCE 65.2, CONCRETE 67.5 nats" in kept  # failed seeds left out
    assert "the exact gradient 93.0-94.0 %" in kept
    assert "CONCRETE's: 90.5 % over 2 seeds (best seed 91.0 %, worst 90.0 %)" in best  # the exact gradient is no sampler
    lone = chapter.Runs({"runs": rows[:1], "details": details}, True, "read")
    assert "nothing to compare" in chapter.estimator_words(lone)
