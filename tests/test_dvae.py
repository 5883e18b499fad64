"""D-VAE and D-VAE-ST (Chapter 5): shapes, every estimator, one transformation per estimate, replicas, surgery."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from objectcentric import spatial
from objectcentric.checkpoints import load_model_state, read_checkpoint
from objectcentric.cli import main
from objectcentric.estimators import ESTIMATORS
from objectcentric.experiments import dvae as recipe
from objectcentric.models.dvae import DVAE, DVAEST

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
    assert single.config["replicas"] == 1
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


def test_cli_quick_run_writes_results_prototypes_and_a_loadable_best_seed(tmp_path):
    main(["train", "dvae", "--quick", "--dataset", "SimplifiedMNIST", "--seeds", "0-1", "--out", str(tmp_path),
          "--device", "cpu", "--save-best"])
    stem = "dvae_st-SimplifiedMNIST-exact-k3-robust-seeds0-1"
    record = json.loads((tmp_path / f"{stem}.json").read_text())
    for key in ("command", "commit", "device", "seed", "wall_time_s", "date"):
        assert key in record["provenance"]
    report = record["report"]
    assert report["quick"] and report["seeds"] == [0, 1] and report["epochs_done"] == 3
    for split in ("train", "test"):
        assert len(report[split]["accuracy"]) == 2 and all(0 <= a <= 1 for a in report[split]["accuracy"])
    rows = recipe.merge_reports([report])["runs"]
    assert [r["split"] for r in rows] == ["train", "test"] and rows[0]["accuracy_by_seed"] == [
        round(a, 5) for a in report["train"]["accuracy"]]
    assert set(rows[0]) >= {"model", "dataset", "estimator", "k", "split", "accuracy_by_seed", "best", "worst",
                            "mean", "seconds_per_epoch"}
    payload = read_checkpoint(tmp_path / f"{stem}-best.pt")
    model = DVAEST(**payload["model_config"])
    load_model_state(tmp_path / f"{stem}-best.pt", model, payload)
    assert model.replicas == 1 and payload["train_config"]["seed"] in (0, 1)


def test_a_missing_dataset_is_recorded_as_skipped(tmp_path, monkeypatch):
    from objectcentric.data.mnist import DatasetUnavailableError

    def unavailable(*args, **kwargs):
        raise DatasetUnavailableError("EMNIST Letters is not available (test)")

    monkeypatch.setattr(recipe, "train_dvae", unavailable)
    written = recipe.run_job("dvae_st", "Letters", "exact", None, [0], "robust", tmp_path, device="cpu")
    record = json.loads(written["json"].read_text())
    assert record["skipped"].startswith("EMNIST Letters is not available") and record["k"] == 26


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


def test_a_non_finite_loss_still_reports_what_was_learned(monkeypatch):
    from objectcentric.train import NonFiniteLossError

    def failing_fit(model, data, step, *, evaluate, **kwargs):
        evaluate(model)
        raise NonFiniteLossError("the loss became nan at epoch 2, step 1")

    monkeypatch.setattr(recipe, "fit", failing_fit)
    _, result, report = recipe.train_dvae("dvae", "SimplifiedMNIST", seeds=(0,), quick=True, progress="none",
                                          device="cpu")
    assert report["failure"].startswith("the loss became nan") and report["stopped_early"]
    assert report["epochs_done"] == 1 and "val_accuracy_mean" in report["history"][0]
    assert len(report["test"]["accuracy"]) == 1


def _benchmark_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("dvae_benchmark", Path(__file__).parents[1] / "benchmarks" / "dvae.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_job_selection_by_words_seed_range_and_per_seed():
    bench = _benchmark_module()
    relax = bench.select_jobs(["relax"])
    assert {job[2] for job in relax} == {"relax"} and len(relax) == 2
    assert bench.select_jobs(["exact 11"], seeds="2-4") == [("dvae_st", "FullMNIST", "exact", 11, "robust", "2-4")]
    split = bench.select_jobs(["exact 11"], seeds="2-4", per_seed=True)
    assert [job[5] for job in split] == ["2-2", "3-3", "4-4"]
    assert {job[:5] for job in split} == {("dvae_st", "FullMNIST", "exact", 11, "robust")}
    assert bench.select_jobs() == bench.JOBS


def test_benchmark_job_list_across_folders_marks_what_a_later_run_did():
    bench = _benchmark_module()
    relax, rebar = ["dvae_st", "FullMNIST", "relax", 10, "thesis", "0-0"], ["dvae_st", "FullMNIST", "rebar", 10, "robust"]
    benches = [{"command": "first", "jobs": [{"job": relax, "status": "failed (exit -15)"},
                                             {"job": [*rebar, "0-2"], "status": "not run: out of time"},
                                             {"job": ["dvae", "FullMNIST", "exact", 10, "robust", "0-4"],
                                              "status": "not run: out of time"}]},
               {"command": "second", "jobs": [{"job": relax, "status": "ok"}, {"job": [*rebar, "0-0"], "status": "ok"}]}]
    listed = bench._jobs(benches)
    assert [(e["job"][2], e["status"], e["run_by"]) for e in listed] == [
        ("relax", "failed (exit -15)", "first"), ("exact", "not run: out of time", "first"),
        ("relax", "ok", "second"), ("rebar", "ok", "second")]
    assert listed[0]["superseded_by"] == "second" and "superseded_by" not in listed[1]


def test_benchmark_commit_given_at_collection_fills_in_only_what_a_job_did_not_record():
    bench = _benchmark_module()
    assert bench._commit("abc123", "given") == "abc123"
    assert bench._commit("unknown", "given") == "given"
    assert "no git metadata" in bench._commit("unknown", None)


def test_benchmark_collect_merges_seeds_and_ships_the_best_main_seed(tmp_path, monkeypatch):
    from objectcentric import checkpoints

    bench = _benchmark_module()
    folders = [tmp_path / "out_a", tmp_path / "out_b"]  # two runs, one seed each, merged by one collect
    for seed, out in enumerate(folders):
        recipe.run_job("dvae_st", "FullMNIST", "exact", 10, [seed], "robust", out, quick=True, device="cpu",
                       save_best=True, progress="none")
    results, prototypes = tmp_path / "dvae.json", tmp_path / "prototypes.npz"
    monkeypatch.setattr(checkpoints, "checkpoint_dir", lambda: tmp_path / "ckpt")
    bench.main(["collect", *map(str, folders), "--results", str(results), "--prototypes", str(prototypes)])
    recorded = json.loads(results.read_text())
    assert [r["split"] for r in recorded["runs"]] == ["train", "test"] and recorded["runs"][0]["seeds"] == [0, 1]
    assert len(recorded["runs"][0]["accuracy_by_seed"]) == 2 and recorded["quick"]
    for key in ("command", "commit", "device", "seed", "wall_time_s", "date"):
        assert key in recorded
    assert recorded["runs"][0]["devices"][0].startswith("cpu") and len(recorded["runs"][0]["commits"]) == 1
    with np.load(prototypes) as stored:
        assert stored["dvae_st-FullMNIST-exact-k10-robust"].shape == (2, 10, 28, 28)
    assert not (tmp_path / "ckpt").exists()  # quick runs are never shipped
    bench.ship(folders)  # what `collect` does for a full run
    entry = checkpoints.read_manifest(tmp_path / "ckpt")["checkpoints"]["dvae_st_fullmnist.pt"]
    assert entry["seed"] in (0, 1) and 0 <= entry["metrics"]["train_accuracy"] <= 1
    model = DVAEST(**read_checkpoint(tmp_path / "ckpt" / "dvae_st_fullmnist.pt")["model_config"])
    checkpoints.load_shipped("dvae_st_fullmnist.pt", model, tmp_path / "ckpt")


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
