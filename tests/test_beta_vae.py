"""Chapter 2 (β-VAE): the three network families, β in the one VAE loss, the sweep and its widget."""

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from objectcentric.checkpoints import CheckpointError, load_model_state, model_payload, read_checkpoint
from objectcentric.experiments import beta_vae as bv
from objectcentric.models import MODEL_CLASSES, VAE, BetaVAE

ROOT = Path(__file__).resolve().parents[1]
CASES = [("fc", 10, (1, 32, 32)), ("conv", 10, (1, 32, 32)), ("allconv", 16, (1, 32, 32)),
         ("conv", 10, (1, 64, 64)), ("allconv", 16, (1, 64, 64))]


def binary_images(n, shape, seed=0):
    return (torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) > 0.7).float()


@pytest.mark.parametrize("architecture, latent_dim, shape", CASES)
def test_each_family_round_trips_shapes(architecture, latent_dim, shape):
    torch.manual_seed(0)
    model = BetaVAE(architecture, latent_dim, shape)
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
    model = BetaVAE(architecture, latent_dim, shape)
    terms = model.loss(binary_images(4, shape), beta=4.0)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    first_encoder = next(p for p in model.encoder.parameters())
    last_decoder = list(model.decoder.parameters())[-1]
    assert first_encoder.grad.abs().sum() > 0 and last_decoder.grad.abs().sum() > 0


def test_beta_weighs_the_kl_term_of_the_one_vae_loss():
    assert BetaVAE.loss is VAE.loss  # no second loss: the β-VAE is the VAE's loss with a weight
    model = BetaVAE("conv", 10, (1, 32, 32))
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
    model = BetaVAE("allconv", 16, (1, 32, 32)).eval()
    z = torch.zeros(1, 16)
    moved = z.clone()
    moved[0, 0] = 3.0  # the top-left cell of the 4 × 4 code
    with torch.no_grad():
        change = (model.decode(moved) - model.decode(z)).abs()[0, 0]
    assert change[:8, :8].sum() > 0  # its own corner changes
    assert change[20:, :].max() == 0 and change[:, 20:].max() == 0  # the far side of the picture does not


def test_bad_configurations_say_what_is_expected():
    with pytest.raises(ValueError, match="architecture must be one of"):
        BetaVAE("mlp", 10, (1, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        BetaVAE("allconv", 10, (1, 32, 32))
    with pytest.raises(ValueError, match="4 times a power of 2"):
        BetaVAE("conv", 10, (1, 28, 28))
    with pytest.raises(ValueError, match="must end in 10 values"):
        BetaVAE("conv", 10, (1, 32, 32)).decode(torch.zeros(2, 3))


def test_checkpoint_knows_the_family():
    assert MODEL_CLASSES["BetaVAE"] is BetaVAE
    conv, other = BetaVAE("conv", 10, (1, 32, 32)), BetaVAE("conv", 10, (1, 32, 32))
    payload = model_payload(conv)
    load_model_state("in memory", other, payload)
    assert all(torch.equal(a, b) for a, b in zip(conv.state_dict().values(), other.state_dict().values()))
    with pytest.raises(CheckpointError, match="architecture=conv"):
        load_model_state("in memory", BetaVAE("allconv", 16, (1, 32, 32)), payload)


# --- the sweep ---------------------------------------------------------------------------------------
def benchmark():
    spec = importlib.util.spec_from_file_location("beta_vae_benchmark", ROOT / "benchmarks" / "beta_vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    results = benchmark().main(["--quick", "--device", "cpu", "--out", str(out), "--datasets", "one_ball", "shapes"])
    return out, results


def test_sweep_quick_writes_every_run_with_its_provenance(quick_sweep):
    out, returned = quick_sweep
    results = json.loads((out / bv.RESULTS_NAME).read_text())
    assert results == json.loads(json.dumps(returned))
    assert results["quick"] is True
    for key in ("command", "commit", "device", "seed", "wall_time_s", "date"):
        assert key in results, key
    expected = {c["key"] for c in bv.sweep_configs(True, datasets=("one_ball", "shapes"))}
    assert {r["key"] for r in results["runs"]} == expected and len(expected) == 9 + len(bv.SHAPES_BETAS)
    for run in results["runs"]:
        for key in ("dataset", "architecture", "beta", "seed", "reconstruction_nats", "posterior_std",
                    "wall_time_s", "steps", "history"):
            assert key in run, (run["key"], key)
        assert len(run["posterior_std"]) == bv.LATENT_DIMS[run["architecture"]]
        assert all(s > 0 for s in run["posterior_std"]) and np.isfinite(run["reconstruction_nats"])
        assert sorted(run["order_by_std"]) == list(range(len(run["posterior_std"])))
    assert set(results["mig_by_beta"]) == set(results["betavae_metric_by_beta"]) == {f"{b:g}" for b in bv.SHAPES_BETAS}
    assert all(-1 <= v <= 1 for v in results["mig_by_beta"].values())
    assert all(0 <= v <= 1 for v in results["betavae_metric_by_beta"].values())
    assert results["target"]["met"] in (True, False)


def test_sweep_quick_writes_frames_and_the_live_models(quick_sweep):
    out, results = quick_sweep
    frames = read_checkpoint(out / bv.FRAMES_NAME)["runs"]
    for run in results["runs"]:
        frame = frames[run["key"]]
        size = 64 if run["dataset"] == "shapes" else bv.BALL_SIZE
        assert frame["frames"].shape == (run["latent_dim"], len(bv.TRAVERSAL_VALUES), size, size)
        assert frame["frames"].dtype == torch.uint8 and frame["order"] == run["order_by_std"]
        assert frame["reconstructions"].shape == frame["originals"].shape == (bv.N_RECONSTRUCTIONS, size, size)
    models = read_checkpoint(out / bv.MODELS_NAME)["models"]
    assert set(models) == {bv.run_key("shapes", "conv", b, 0) for b in bv.SHIPPED_SHAPES_BETAS}
    model = bv.build_model("shapes", "conv")
    load_model_state("models", model, models[bv.run_key("shapes", "conv", 4.0, 0)])


def test_sweep_rerun_keeps_recorded_runs(quick_sweep, capsys):
    out, results = quick_sweep
    again = bv.sweep(out, quick=True, device="cpu", datasets=("one_ball", "shapes"))
    assert f"{len(results['runs'])} runs already recorded" in capsys.readouterr().out
    assert [r["wall_time_s"] for r in again["runs"]] == [r["wall_time_s"] for r in results["runs"]]


def test_ship_refuses_quick_results_and_round_trips_full_ones(quick_sweep, tmp_path):
    out, _ = quick_sweep
    with pytest.raises(ValueError, match="quick"):
        bv.ship(out, tmp_path / "results", tmp_path / "checkpoints")
    # Plumbing only: relabel a copy as a full sweep to check what ship writes and load_recorded reads.
    full = tmp_path / "full"
    full.mkdir()
    results = json.loads((out / bv.RESULTS_NAME).read_text())
    (full / bv.RESULTS_NAME).write_text(json.dumps({**results, "quick": False}))
    for name in (bv.FRAMES_NAME, bv.MODELS_NAME):
        (full / name).write_bytes((out / name).read_bytes())
    written = bv.ship(full, tmp_path / "results", tmp_path / "checkpoints")
    assert {p.name for p in written} >= {bv.RESULTS_NAME, bv.FRAMES_NAME,
                                         bv.checkpoint_name(bv.run_key("shapes", "conv", 4.0, 0))}
    manifest = json.loads((tmp_path / "checkpoints" / "manifest.json").read_text())["checkpoints"]
    entry = manifest[bv.checkpoint_name(bv.run_key("shapes", "conv", 4.0, 0))]
    assert entry["command"] == results["command"] and "mig" in entry["metrics"]
    loaded, frames = bv.load_recorded(tmp_path / "results", tmp_path / "checkpoints")
    assert loaded["n_runs"] == results["n_runs"] and set(frames) == {r["key"] for r in results["runs"]}
    (tmp_path / "checkpoints" / bv.FRAMES_NAME).write_bytes(b"damaged")
    with pytest.raises(ValueError, match="manifest"):
        bv.load_recorded(tmp_path / "results", tmp_path / "checkpoints")
    assert bv.load_recorded(tmp_path / "nowhere", tmp_path / "checkpoints") is None


def test_deadline_stops_training_early_and_counts_the_steps(monkeypatch):
    monkeypatch.setitem(bv.QUICK, "balls", {**bv.QUICK["balls"], "n_train": 64 * 50, "epochs": 2})
    config = bv.sweep_configs(True, datasets=("one_ball",))[3]  # one_ball, conv
    torch.manual_seed(0)
    model, result, steps = bv.train_run(config, quick=True, device="cpu", stop_at=time.time() - 1)
    assert result.interrupted and result.history == [] and steps == 20  # checked every 20 steps
    assert bv.run_one(config, quick=True, device="cpu", deadline=time.time() + bv.MIN_RUN_S / 2) is None


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


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    real_run_one = bv.run_one

    def run_one(config, *args, **kwargs):
        if config["architecture"] == "conv":
            raise RuntimeError("out of memory, say")
        return real_run_one(config, *args, **kwargs)

    monkeypatch.setattr(bv, "run_one", run_one)
    results = bv.sweep(tmp_path, quick=True, device="cpu", datasets=("one_ball",), log=lambda message: None)
    assert sorted(results["failed"]) == [bv.run_key("one_ball", "conv", b, 0) for b in bv.BALL_BETAS]
    assert "out of memory" in results["failed"][bv.run_key("one_ball", "conv", 1.0, 0)]
    assert results["n_runs"] == 6 and json.loads((tmp_path / bv.RESULTS_NAME).read_text())["n_runs"] == 6
