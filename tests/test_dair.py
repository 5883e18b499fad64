"""DAIR (Chapter 7): the model, its class gradient, the object scores, the recipe and the experiment."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from objectcentric import records, runner
from objectcentric.checkpoints import checkpoint_dir, read_checkpoint, read_manifest
from objectcentric.estimators import ESTIMATORS, exact_expectation
from objectcentric.experiments.air import AIRRecipe, load_air_run
from objectcentric.experiments.dair import (
    SELECTED_BY,
    SHIPPED,
    DAIRRecipe,
    pick_run,
    shipped_air,
    shipped_dvae_st,
)
from objectcentric.models.air import AIR, AIRConfig
from objectcentric.models.dair import DAIR, DAIRConfig, DAIRTrace, canvas_grid
from objectcentric.object_metrics import (
    FoundObjects,
    count_accuracy,
    fit_mapping,
    match_objects,
    object_accuracy,
    scene_accuracy,
    score_objects,
)
from objectcentric.recipes import RecipeError, from_settings
from objectcentric.runner import EXPERIMENTS
from objectcentric.spatial import apply_taps, bilinear_taps, crop, crop_window

SMALL = {"where_hidden": 32, "class_hidden": (32,), "transform_hidden": (32,), "prototype_hidden": 32,
         "num_classes": 4}


def canvases(b=6, seed=0):
    return torch.rand(b, 1, 50, 50, generator=torch.Generator().manual_seed(seed)) * 0.3


def small(**settings):
    torch.manual_seed(0)
    return DAIR(DAIRConfig(**{**SMALL, **settings}))


# --- the model ----------------------------------------------------------------------------------
@pytest.mark.parametrize("inference", ["difference", "recurrent"])
def test_trace_shapes_and_masking(inference):
    model = small(inference=inference)
    trace = model(canvases(), keep_images=True)
    b, n, k = 6, model.config.max_steps, 4
    assert isinstance(trace, DAIRTrace)
    assert trace.class_logits.shape == (b, n, k) and trace.classes.shape == (b, n) and trace.theta.shape == (b, n, 6)
    assert trace.what.shape == (b, n, k + 6) and trace.glimpses.shape == (b, n, 1, 28, 28)
    assert trace.patches.shape == (b, n, 1, 28, 28) and trace.painted.shape == (b, n, 1, 50, 50)
    assert torch.equal(trace.what[..., :k], F.one_hot(trace.classes, k).float())
    assert torch.equal(trace.what[..., k:], trace.theta)
    absent = trace.pres == 0
    assert torch.all(trace.kl_class[absent] == 0) and torch.all(trace.kl_theta[absent] == 0)
    assert torch.allclose(trace.kl_what, trace.kl_class + trace.kl_theta)
    painted = (trace.painted[:, :, 0] * trace.pres[..., None, None]).sum(1, keepdim=True)
    assert torch.allclose(trace.canvas, painted, atol=1e-6)


def test_greedy_inference_takes_the_most_likely_class_and_the_mean_deformation():
    model = small()
    trace = model(canvases(), greedy=True)
    assert torch.equal(trace.classes, trace.class_logits.argmax(-1))
    # The transformation network starts at the prior: the identity, whatever the glimpse.
    identity = torch.tensor([1.0, 0, 0, 0, 1, 0])
    assert torch.allclose(trace.theta, identity.expand_as(trace.theta))


def test_an_aligned_glimpse_undoes_the_deformation_before_the_class_is_read():
    plain, aligned = small(align=False), small(align=True)
    aligned.load_state_dict(plain.state_dict())
    x = canvases()
    # At the start theta's mean is the identity: the aligned glimpse is the glimpse itself.
    assert torch.allclose(plain(x, greedy=True).class_logits, aligned(x, greedy=True).class_logits, atol=1e-5)
    glimpse = torch.zeros(1, 1, 28, 28)
    glimpse[0, 0, 4:10, 6:12] = 1.0
    shifted = torch.tensor([[1.0, 0, 0.2, 0, 1, -0.1]])  # the object sits right of and above the centre
    seen = []
    aligned.what.dvae.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    aligned.what.class_logits(glimpse, shifted)
    expected = crop(glimpse, torch.tensor([[[1.0, 0, -0.2], [0, 1, 0.1]]]), (28, 28))
    assert torch.allclose(seen[0].view(1, 1, 28, 28), expected, atol=1e-6)


def test_painting_with_the_identity_is_airs_painting_of_the_prototype():
    model = small()
    scale, shift = torch.tensor([0.45, 0.3]), torch.tensor([[0.1, -0.2], [-0.3, 0.4]])
    code = torch.cat([F.one_hot(torch.tensor([1, 3]), 4).float(), torch.tensor([[1.0, 0, 0, 0, 1, 0]] * 2)], 1)
    painted, _ = model.what.paint(code, scale, shift, 50)
    prototypes = model.what.prototype_images(code[:, :4])
    assert torch.allclose(painted, crop_window(prototypes, 1 / scale, -shift / scale[:, None], 50), atol=1e-5)
    # The class costs read the same grid through taps (gathers): the same numbers.
    theta = torch.tensor([[0.9, 0.1, 0.05, -0.1, 1.1, 0.0], [1.0, 0, 0, 0, 1, 0]])
    code[:, 4:] = theta
    painted, _ = model.what.paint(code, scale, shift, 50)
    taps = bilinear_taps(canvas_grid(theta, scale, shift, 50), (28, 28))
    assert torch.allclose(painted, apply_taps(prototypes, taps, (50, 50)), atol=1e-5)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_trains_a_step(estimator):
    model = small(estimator=estimator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    terms = model.loss(canvases(), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert {"loss", "nll", "kl", "neg_elbo", "kl_class", "kl_theta", "marginal_kl", "class_control_loss",
            "count_accuracy"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("what.dvae.encoder") for k in changed)


def test_gradients_reach_every_part():
    model = small(estimator="nvil")
    model.loss(canvases(), None)["loss"].backward()
    parts = {"where head": model.where_head, "class encoder": model.what.dvae.encoder,
             "prototypes": model.what.dvae.decoder, "transformation (last layer)": model.what.dvae.transformer[-1],
             "z_pres baseline": model.baseline.net, "class baseline": model.what.estimator.net}
    for name, part in parts.items():
        grads = [p.grad for p in part.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reached the {name}"


def test_the_neg_elbo_is_the_unweighted_loss_value():
    model = small()
    torch.manual_seed(1)
    terms = model.loss(canvases())
    assert terms["neg_elbo"] == pytest.approx(float(terms["nll"] + terms["kl"]), rel=1e-5)
    assert model.neg_elbo(canvases()).shape == (6,)


def _brute_force_costs(model, x, trace):
    """-log p(x | canvas with object (b, i)'s class replaced by k), from a full repaint: (M, K)."""
    rows = trace.pres.nonzero().tolist()
    costs = []
    for b, i in rows:
        row = []
        for k in range(model.config.num_classes):
            canvas = torch.zeros_like(x[b:b + 1])
            for j in range(model.config.max_steps):
                if trace.pres[b, j] == 0:
                    continue
                code = trace.what[b:b + 1, j].clone()
                if j == i:
                    code[:, :model.config.num_classes] = F.one_hot(torch.tensor([k]), model.config.num_classes)
                where = trace.where[b:b + 1, j]
                canvas = canvas + model.what.paint(code, where[:, 0].exp(), where[:, 1:], 50)[0]
            row.append(-model.log_likelihood(x[b:b + 1], canvas)[0])
        costs.append(torch.stack(row))
    return torch.stack(costs)


def test_the_exact_local_expectation_is_the_brute_force_expectation():
    model = small(max_steps=2)
    x = canvases(3, seed=4)
    torch.manual_seed(2)
    trace = model._infer(model.check_canvas(x), greedy=False, keep_painted=True)
    problem = model.class_problem(x, trace)
    assert problem is not None and len(problem.canvas) == int(trace.pres.sum())  # present objects only
    logits = problem.logits.detach().requires_grad_(True)
    exact = exact_expectation(logits, problem.cost)
    brute = _brute_force_costs(model, x, trace)
    expected = (logits.softmax(-1) * brute).sum(-1)
    assert torch.allclose(exact, expected, rtol=1e-4)
    (g_exact,) = torch.autograd.grad(exact.sum(), logits)
    (g_brute,) = torch.autograd.grad(expected.sum(), logits)
    assert torch.allclose(g_exact, g_brute, rtol=1e-3, atol=1e-3)
    # The cost of the class drawn in the trace is the canvas's own -log p(x | objects).
    drawn = F.one_hot(trace.classes[problem.canvas, problem.step], 4).float()
    nll = -model.log_likelihood(x, trace.canvas)
    assert torch.allclose(problem.cost(drawn), nll[problem.canvas], rtol=1e-5)


def test_a_canvas_without_objects_has_no_class_cost():
    model = small()
    with torch.no_grad():
        model.where_head.bias[0] = -20.0  # P(present) ~ 0 at every step
    x = canvases(4)
    trace = model._infer(x, greedy=False, keep_painted=True)
    assert model.class_problem(x, trace) is None
    terms = model.loss(x)
    assert terms["kl_class"] == 0 and terms["kl_theta"] == 0 and terms["marginal_kl"] == 0
    terms["loss"].backward()  # still a loss with a graph (z_pres and its baseline)


def test_bad_input_gets_clear_errors():
    model = small()
    with pytest.raises(ValueError, match=r"\(batch, 1, 50, 50\)"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.loss(torch.rand(2, 1, 50, 50) * 255)
    with pytest.raises(ValueError, match="NaN"):
        model.loss(torch.full((2, 1, 50, 50), float("nan")))
    with pytest.raises(ValueError, match="estimator must be one of"):
        DAIRConfig(estimator="gumbel")
    with pytest.raises(ValueError, match="num_classes"):
        DAIRConfig(num_classes=1)
    with pytest.raises(TypeError, match="DAIRConfig"):
        DAIR(AIRConfig())


# --- AIR is unchanged ------------------------------------------------------------------------------
def test_air_keeps_its_state_dict_and_its_shipped_checkpoint_loads():
    payload = read_checkpoint(checkpoint_dir() / AIRRecipe().shipped_name())
    assert set(AIR(AIRConfig(**payload["model_config"])).state_dict()) == set(payload["model_state"])
    run = runner.load_or_train(AIRRecipe(), "read")
    model, _ = load_air_run(checkpoint_dir() / AIRRecipe().shipped_name())
    assert run.record["loaded"] and all(torch.equal(v, model.state_dict()[k]) for k, v in run.model.state_dict().items())
    trace = model(canvases(2), greedy=True)
    assert type(trace).__name__ == "AIRTrace" and trace.what.shape == (2, 3, 20)


# --- starting from the shipped AIR and D-VAE-ST ----------------------------------------------------
def test_from_pretrained_copies_the_where_network_and_the_d_vae_st():
    air, dvae_st = shipped_air(), shipped_dvae_st()
    model = DAIR.from_pretrained(air, dvae_st, estimator="nvil", align=False).eval()
    assert model.config.window == 28 and model.config.pixel_std == air.config.pixel_std
    assert model.config.estimator == "nvil" and DAIR.from_pretrained(air, dvae_st).config.align
    for part in ("where_body", "where_head", "baseline"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(model, part).state_dict().values(),
                                                      getattr(air, part).state_dict().values()))
    for part in ("encoder", "decoder", "transformer"):
        mine, theirs = getattr(model.what.dvae, part).state_dict(), getattr(dvae_st, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    x = canvases(3)
    with torch.no_grad():
        ours, airs = model(x, greedy=True), air(x, greedy=True)
        # The first step reads the canvas alone: AIR's window, and the D-VAE-ST's classes of what it holds.
        assert torch.allclose(ours.where[:, 0], airs.where[:, 0]) and torch.equal(ours.pres[:, 0], airs.pres[:, 0])
        crops = crop_window(x, airs.where[:, 0, 0].exp(), airs.where[:, 0, 1:], 28)
        assert torch.equal(ours.classes[:, 0], dvae_st.assign(crops)[0])
    with pytest.raises(ValueError, match="inference"):
        DAIR(DAIRConfig(inference="recurrent")).load_pretrained(air, dvae_st)


def test_prototypes_can_start_at_given_images():
    model = small()
    images = torch.rand(4, 1, 28, 28)
    model.init_prototypes(images)
    assert torch.allclose(model.what.dvae.prototype_means()[0], images.flatten(1), atol=1e-4)


# --- the object scores --------------------------------------------------------------------------------
def objects(found_centres, found_classes, true_centres, true_classes):
    """One FoundObjects from per-canvas lists (padded)."""
    n = len(found_centres)
    s = max(1, max(len(c) for c in found_centres))
    t = max(1, max(len(c) for c in true_centres))

    def pad(lists, width, value, dims):
        out = np.full((n, width, *dims), value, dtype=float)
        present = np.zeros((n, width), dtype=bool)
        for i, items in enumerate(lists):
            if len(items):
                out[i, :len(items)] = items
                present[i, :len(items)] = True
        return out, present

    fc, fp = pad(found_centres, s, 0.0, (2,))
    tc, tp = pad(true_centres, t, 0.0, (2,))
    fk, _ = pad(found_classes, s, 0, ())
    tk, _ = pad(true_classes, t, 0, ())
    return FoundObjects(fc, fp, fk.astype(int), tc, tp, tk.astype(int))


def test_objects_are_matched_by_their_centres():
    case = objects(found_centres=[[(30, 30), (10, 10)], [(5, 5)], []],
                   found_classes=[[1, 2], [3], []],
                   true_centres=[[(11, 9), (29, 31)], [(40, 40)], [(20, 20)]],
                   true_classes=[[7, 8], [4], [5]])
    matching = match_objects(case)
    pairs = sorted(zip(matching.canvas.tolist(), matching.found.tolist(), matching.true.tolist()))
    assert pairs == [(0, 0, 1), (0, 1, 0), (1, 0, 0)]  # nearest centres; canvas 2 found nothing
    assert matching.slots.tolist() == [2, 1, 1]
    far = match_objects(case, max_distance=10.0)
    assert sorted(zip(far.canvas.tolist(), far.found.tolist())) == [(0, 0), (0, 1)]  # (5, 5) is 49 px away


def test_classes_are_mapped_to_digits_and_missed_or_extra_objects_are_errors():
    # Class c always names digit (c + 3) % 10, except one mistake; one canvas has an extra object and one
    # misses a digit.
    found = [[(10, 10)], [(10, 10), (30, 30)], [(10, 10), (30, 30)], [(10, 10)], [(10, 10), (40, 10)], []]
    classes = [[0], [1, 2], [3, 4], [5], [6, 9], []]
    true = [[(10, 10)], [(10, 10), (30, 30)], [(10, 10), (30, 30)], [(10, 10), (30, 30)], [(10, 10)], []]
    digits = [[3], [4, 5], [6, 8], [8], [9], []]
    case = objects(found, classes, true, digits)
    matching = match_objects(case, max_distance=5.0)
    mapping = np.array([(c + 3) % 10 for c in range(10)])
    # Right: canvas 0 (1), canvas 1 (2), canvas 2 (1 of 2: class 4 -> 7, not 8), canvas 3 (1), canvas 4 (1).
    # Slots that had to be right: 1 + 2 + 2 + 2 + 2 + 0 = 9.
    assert object_accuracy(case, matching, mapping) == pytest.approx(6 / 9)
    # Scenes right: canvas 0, 1 and the empty canvas 5 (3 has a missed digit, 4 an extra object, 2 a mistake).
    assert scene_accuracy(case, matching, mapping) == pytest.approx(3 / 6)
    assert count_accuracy(case) == pytest.approx(4 / 6)
    # Fitted from the pairs, the one-to-one mapping recovers the classes' digits where they were seen.
    fitted = fit_mapping(case, matching, num_classes=10)
    assert [fitted[c] for c in (0, 1, 2, 3, 6)] == [3, 4, 5, 6, 9] and 8 in (fitted[4], fitted[5])


def test_more_classes_than_digits_are_mapped_by_majority_and_refit_is_reported():
    true = [[(10, 10)]] * 6
    digits = [[1], [1], [1], [2], [2], [2]]
    case = objects([[(10, 10)]] * 6, [[0], [0], [11], [5], [5], [5]], true, digits)
    scores = score_objects(case, case, num_classes=12)
    assert scores["mapping"][0] == 1 and scores["mapping"][11] == 1 and scores["mapping"][5] == 2
    assert scores["object_accuracy"] == 1.0 and scores["scene_accuracy"] == 1.0
    assert scores["object_accuracy_refit"] == 1.0 and scores["matched_fraction"] == 1.0
    # A mapping fitted on other canvases (digits swapped) makes every name wrong.
    swapped = objects([[(10, 10)]] * 6, [[0], [0], [11], [5], [5], [5]], true, [[2], [2], [2], [1], [1], [1]])
    assert score_objects(swapped, case, num_classes=12)["object_accuracy"] == 0.0


def test_found_objects_are_checked():
    with pytest.raises(ValueError, match="found_classes must be shaped"):
        FoundObjects(np.zeros((2, 3, 2)), np.ones((2, 3)), np.zeros((2, 2)), np.zeros((2, 1, 2)), np.ones((2, 1)),
                     np.zeros((2, 1)))
    with pytest.raises(ValueError, match="NaN"):
        FoundObjects(np.full((1, 1, 2), np.nan), np.ones((1, 1)), np.zeros((1, 1)), np.zeros((1, 1, 2)),
                     np.ones((1, 1)), np.zeros((1, 1)))


# --- the recipe and the experiment -------------------------------------------------------------------
def test_the_recipe_settings_are_checked_and_survive_their_storage():
    quick = DAIRRecipe(estimator="nvil").at_scale("quick")
    assert quick == dataclasses.replace(DAIRRecipe(estimator="nvil"), quick=True, **DAIRRecipe.QUICK)
    assert from_settings("dair", quick.settings()) == quick
    assert DAIRRecipe().shipped_name() == SHIPPED and DAIRRecipe(estimator="nvil").shipped_name() is None
    with pytest.raises(RecipeError, match="pretrained"):
        DAIRRecipe(num_classes=12)
    assert DAIRRecipe(num_classes=12, init="scratch").build_model().config.num_classes == 12
    with pytest.raises(RecipeError, match="estimator must be one of"):
        DAIRRecipe(estimator="gumbel")
    groups = DAIRRecipe().optimizer(small(estimator="nvil")).param_groups
    assert groups[1]["lr"] == DAIRRecipe().baseline_lr and len(groups[1]["params"]) > 4  # both baselines


def test_a_quick_run_trains_and_watches_the_validation_elbo(tmp_path):
    recipe = DAIRRecipe().at_scale("quick")
    run = runner.train(recipe, 0, tmp_path / "run", device="cpu", progress="none")
    assert run.record["status"] == "done"
    assert {"val_count_accuracy", "val_three_digit_count_accuracy", SELECTED_BY} <= set(run.record["metrics"])
    _, model, payload = runner.load_run(tmp_path / "run")
    assert isinstance(model, DAIR)
    # What it started from is recorded when it starts: the shipped AIR and D-VAE-ST, as the manifest lists them.
    shipped = read_manifest()["checkpoints"]
    names = ("air_multi_mnist_difference.pt", "dvae_st_fullmnist.pt")
    assert run.record["started_from"] == {n: {"seed": shipped[n].get("seed"), "sha256": shipped[n]["sha256"]}
                                          for n in names}
    assert payload["provenance"]["started_from"] == run.record["started_from"]


def test_a_resumed_run_keeps_what_its_first_leg_started_from(tmp_path, monkeypatch):
    recipe = DAIRRecipe().at_scale("quick")
    first = runner.train(recipe, 0, tmp_path / "run", device="cpu", progress="none").record["started_from"]
    monkeypatch.setattr(DAIRRecipe, "started_from", lambda self: {"air_multi_mnist_difference.pt": {"sha256": "new"}})
    again = runner.train(recipe, 0, tmp_path / "run", device="cpu", progress="none")
    assert again.record["started_from"] == first
    monkeypatch.undo()
    assert "started_from" not in runner.train(DAIRRecipe(init="scratch").at_scale("quick"), 0,
                                              device="cpu", progress="none").record


def test_a_run_from_scratch_starts_its_prototypes_at_training_digits():
    recipe = DAIRRecipe(init="scratch").at_scale("quick")
    model = recipe.build_model()
    recipe.initialize(model, recipe.train_data(), seed=0)
    prototypes = model.prototypes()
    assert prototypes.shape == (10, 1, 28, 28) and prototypes.std() > 0.1  # digits, not the decoder's noise


def test_the_shipped_seed_has_the_lowest_validation_elbo():
    assert pick_run({"a": {"metrics": {SELECTED_BY: 90.0}}, "b": {"metrics": {SELECTED_BY: 85.0}}}) == "b"


def test_the_experiment_at_the_quick_scale_writes_every_key(tmp_path):
    jobs = EXPERIMENTS["dair"].jobs("quick")
    assert len(jobs) == 1 and jobs[0].recipe.quick and len(EXPERIMENTS["dair"].jobs("full")) >= 3
    summary = runner.reproduce(["dair"], scale="quick", executor="inline", out=tmp_path, device="cpu")
    assert summary["dair"]["done"] == 1
    written = records.read_results("dair", tmp_path / "quick" / "results")
    keys = {"count_accuracy_by_seed", "three_digit_count_accuracy_by_seed", "object_accuracy_by_seed",
            "scene_accuracy_by_seed", "baselines", "train_images_per_s", "air_train_images_per_s",
            "latency_ms_per_canvas", "air_latency_ms_per_canvas", "shipped_seed", "thesis", "protocol",
            "command", "commit", "device"}
    assert keys <= set(written) and written["scale"] == "quick"
    accuracies = {"count_accuracy", "three_digit_count_accuracy", "object_accuracy", "scene_accuracy",
                  "three_digit_object_accuracy", "three_digit_scene_accuracy"}
    assert set(written["baselines"]) == {"air_kmeans", "air_dvae_st", "dvae_st_true_windows"}
    assert set(written["baseline_models"]) == {"air_multi_mnist_difference.pt", "dvae_st_fullmnist.pt"}
    for name, row in written["baselines"].items():
        assert accuracies <= set(row), name
        assert all(0 <= row[k] <= 1 for k in accuracies)
    assert written["baselines"]["dvae_st_true_windows"]["count_accuracy"] == 1.0
    assert written["thesis"]["count_accuracy_best"] == 0.828


def test_the_page_says_when_the_recorded_runs_started_from_models_no_longer_shipped(monkeypatch):
    from objectcentric.chapters import dair as chapter

    shipped = {"air_multi_mnist_difference.pt": {"seed": 1, "sha256": "b" * 64},
               "dvae_st_fullmnist.pt": {"seed": 0, "sha256": "d" * 64},
               DAIRRecipe().shipped_name(): {"started_from": {
                   "air_multi_mnist_difference.pt": {"seed": 3, "sha256": "a" * 64},
                   "dvae_st_fullmnist.pt": {"seed": 0, "sha256": "d" * 64}}}}
    monkeypatch.setattr("objectcentric.checkpoints.read_manifest", lambda *a, **k: {"checkpoints": shipped})
    words = chapter.started_from_words({"recorded": True})
    assert "start from an earlier model: the AIR (Chapter 6) of seed 3" in words and "replaced by seed 1" in words
    assert "D-VAE-ST" not in words and chapter.started_from_words({"recorded": False}) == ""
    shipped["air_multi_mnist_difference.pt"]["sha256"] = "a" * 64
    assert chapter.started_from_words({"recorded": True}) == ""


def test_results_written_before_baseline_models_existed_are_restated_from_the_manifest(tmp_path):
    from objectcentric.experiments.dair import restate_baseline_models

    before = {"count_accuracy": 0.99, "baselines": {"air_kmeans": {}}}
    records.write_results("dair", before, directory=tmp_path, provenance=records.provenance(
        seed=0, wall_time_s=1.0, device="cpu", command="an earlier reproduction", scale="full"))
    whole = restate_baseline_models(tmp_path)
    started = read_manifest()["checkpoints"][DAIRRecipe().shipped_name()]["started_from"]
    assert whole["baseline_models"] == started and whole["count_accuracy"] == 0.99
    by_command = {w["command"]: w["keys"] for w in whole["writers"]}
    assert by_command["an earlier reproduction"] == ["baselines", "count_accuracy"]
    assert list(by_command.values())[-1] == ["baseline_models"]
    assert records.read_results("dair")["baseline_models"] == started  # the shipped file holds it too
