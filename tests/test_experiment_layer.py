"""The one experiment layer: recipes as data, one runner, one records writer, one ship, sweeps on submitit."""

import dataclasses
import json
import os

import pytest
import torch

from objectcentric import records
from objectcentric.checkpoints import CheckpointError, read_manifest, sha256_of
from objectcentric.experiments.vae import VAERecipe
from objectcentric.paths import project_root
from objectcentric.recipes import RecipeError, from_settings, load_all
from objectcentric.runner import Job, load_run, read_record, sweep, train

ROOT = project_root()
TINY = VAERecipe(latent_dim=2, epochs=1, batch_size=100, n_train=200, n_val=50)


# --- recipes ------------------------------------------------------------------------------------
def test_the_quick_scale_is_the_full_recipe_with_its_quick_overrides():
    full = VAERecipe(latent_dim=2)
    quick = full.at_scale("quick")
    assert quick == dataclasses.replace(full, quick=True, **VAERecipe.QUICK)
    assert quick.latent_dim == 2 and quick.at_scale("quick") == quick and full.at_scale("full") == full
    with pytest.raises(RecipeError, match="scale must be one of"):
        full.at_scale("medium")


def test_a_recipe_survives_its_stored_settings_and_names_its_run():
    recipe = VAERecipe(latent_dim=2, epochs=40)
    assert from_settings("vae", json.loads(json.dumps(recipe.settings()))) == recipe
    assert recipe.run_name(3) == "vae_epochs40_latent_dim2_seed3"
    assert VAERecipe().at_scale("quick").run_name(0) == "vae_quick_seed0"
    with pytest.raises(RecipeError, match="has no setting inference"):
        from_settings("vae", {"inference": "recurrent"})
    with pytest.raises(RecipeError, match="no recipe named 'nope'; the recipes are: .*vae"):
        from_settings("nope", {})


def test_every_chapter_registers_a_recipe_and_every_model_config_is_a_dataclass():
    registry = load_all()
    assert {"vae", "beta_vae", "categorical_vae", "dvae", "air"} <= set(registry)
    for name, cls in registry.items():
        model = cls().at_scale("quick").build_model()
        assert dataclasses.is_dataclass(model.config), f"{name}: {type(model).__name__}.config is not a dataclass"


# --- one runner ---------------------------------------------------------------------------------
def test_a_run_folder_holds_a_resumable_checkpoint_and_its_record(tmp_path):
    run = train(TINY, 0, tmp_path / "run", device="cpu", progress="none")
    record = read_record(tmp_path / "run")
    assert record == json.loads(json.dumps(run.record)) and record["status"] == "done"
    assert {"command", "commit", "device", "seed", "wall_time_s", "date", "torch"} <= set(record)
    recipe, model, payload = load_run(tmp_path / "run")
    assert recipe == TINY and payload["epoch"] == 1 and type(model).__name__ == "VAE"


# --- one records writer -------------------------------------------------------------------------
def test_results_carry_top_level_provenance_and_a_write_keeps_what_it_does_not_write(tmp_path):
    first = records.provenance(seed=0, wall_time_s=1.0, command="python first")
    records.write_results("x", {"a": 1, "b": 2}, provenance=first, directory=tmp_path)
    second = records.provenance(seed=1, wall_time_s=2.0, command="python second")
    whole = records.write_results("x", {"b": 3}, provenance=second, directory=tmp_path)
    assert whole == records.read_results("x", tmp_path)
    assert (whole["a"], whole["b"], whole["command"], whole["seed"]) == (1, 3, "python second", 1)
    assert [(w["command"], w["keys"]) for w in whole["writers"]] == [("python first", ["a"]), ("python second", ["b"])]
    with pytest.raises(ValueError, match="reserved"):
        records.write_results("x", {"commit": "abc"}, provenance=second, directory=tmp_path)
    third = records.write_results("x", {"c": 4}, provenance=second, directory=tmp_path, drop=("a",))
    assert "a" not in third and all("a" not in w["keys"] for w in third["writers"])


def test_a_damaged_results_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="x.json is not valid JSON"):
        records.read_results("x", tmp_path)


@pytest.mark.parametrize("path", sorted((ROOT / "results").glob("*.json")), ids=lambda p: p.name)
def test_every_results_file_has_top_level_provenance(path):
    data = json.loads(path.read_text())
    for key in records.PROVENANCE_KEYS:
        assert data.get(key) not in (None, ""), f"{path.name} lacks top-level {key}"
    assert data["schema_version"] == records.SCHEMA_VERSION
    assert data["writers"], f"{path.name} does not say which command wrote which keys"


@pytest.mark.parametrize("name", sorted(read_manifest(ROOT / "checkpoints")["checkpoints"]))
def test_every_manifest_entry_matches_its_file(name):
    entry = read_manifest(ROOT / "checkpoints")["checkpoints"][name]
    path = ROOT / "checkpoints" / name
    assert path.is_file(), f"{name} is listed but missing"
    assert sha256_of(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
    assert path.stat().st_size < 10 * 2**20
    for field in ("command", "commit", "device", "metrics"):
        assert entry.get(field) not in (None, ""), f"{name}: {field}"


# --- one ship -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "vae_z2"
    train(TINY, 0, run_dir, device="cpu", progress="none")
    return run_dir


def test_ship_names_the_file_from_the_runs_own_recipe(tiny_run, tmp_path):
    entry = records.ship(tiny_run, checkpoints=tmp_path)
    assert entry["file"] == "vae_mnist_z2.pt" and (tmp_path / "vae_mnist_z2.pt").is_file()
    assert read_manifest(tmp_path)["checkpoints"]["vae_mnist_z2.pt"]["sha256"] == sha256_of(tmp_path / "vae_mnist_z2.pt")
    assert entry["recipe"] == "vae" and entry["seed"] == 0 and entry["settings"]["latent_dim"] == 2


def test_a_shipped_entry_is_annotated_without_touching_its_file(tiny_run, tmp_path):
    entry = records.ship(tiny_run, checkpoints=tmp_path, note="the only seed")
    before = (tmp_path / "vae_mnist_z2.pt").read_bytes()
    again = records.annotate_shipped("vae_mnist_z2.pt", tmp_path, note="the best of three seeds")
    assert again == {**entry, "note": "the best of three seeds"}
    assert read_manifest(tmp_path)["checkpoints"]["vae_mnist_z2.pt"] == again
    assert (tmp_path / "vae_mnist_z2.pt").read_bytes() == before and sha256_of(tmp_path / "vae_mnist_z2.pt") == entry["sha256"]
    with pytest.raises(CheckpointError, match="air.pt is not listed in .*ship it first"):
        records.annotate_shipped("air.pt", tmp_path, note="x")


def test_ship_refuses_a_run_of_another_model_and_touches_nothing(tiny_run, tmp_path):
    (tmp_path / "manifest.json").write_text('{"checkpoints": {}}')
    with pytest.raises(CheckpointError, match="holds a run of the 'vae' recipe, not 'air'"):
        records.ship(tiny_run, expect="air", checkpoints=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_ship_checks_the_manifest_before_writing_any_file(tiny_run, tmp_path):
    (tmp_path / "vae_mnist_z2.pt").write_bytes(b"the shipped file")
    (tmp_path / "manifest.json").write_text("{ damaged")
    with pytest.raises(CheckpointError, match="manifest.json is not valid JSON"):
        records.ship(tiny_run, checkpoints=tmp_path)
    assert (tmp_path / "vae_mnist_z2.pt").read_bytes() == b"the shipped file"


def test_ship_undoes_the_checkpoint_when_the_manifest_cannot_be_written(tiny_run, tmp_path, monkeypatch):
    (tmp_path / "vae_mnist_z2.pt").write_bytes(b"the shipped file")
    (tmp_path / "manifest.json").write_text('{"checkpoints": {}}')
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(records.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        records.ship(tiny_run, checkpoints=tmp_path)
    assert (tmp_path / "vae_mnist_z2.pt").read_bytes() == b"the shipped file"
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"checkpoints": {}}


def test_a_quick_run_is_never_shipped_into_the_books_checkpoints(tmp_path):
    train(TINY.at_scale("quick"), 0, tmp_path / "q", device="cpu", progress="none")
    with pytest.raises(CheckpointError, match="quick-scale run"):
        records.ship(tmp_path / "q")


# --- sweeps on submitit -------------------------------------------------------------------------
def test_a_local_sweep_records_a_crash_goes_on_and_reruns_only_what_is_missing(tmp_path):
    good = [Job(TINY, 0), Job(TINY, 1)]
    broken = Job(TINY, 2)
    (tmp_path / broken.key / "checkpoint.pt").mkdir(parents=True)  # a folder where its checkpoint should go
    first = sweep([*good, broken], tmp_path, executor="local", max_parallel=2, threads=1)
    assert [first[j.key]["status"] for j in good] == ["done", "done"]
    assert first[broken.key]["status"] == "failed" and "is a folder" in first[broken.key]["error"]
    assert read_record(tmp_path / broken.key)["status"] == "failed"
    mtimes = {j.key: (tmp_path / j.key / "checkpoint.pt").stat().st_mtime_ns for j in good}
    again = sweep([*good, broken], tmp_path, executor="inline")
    assert again[broken.key]["status"] == "failed"  # retried
    assert {j.key: (tmp_path / j.key / "checkpoint.pt").stat().st_mtime_ns for j in good} == mtimes  # not retrained
    weights = [torch.load(tmp_path / j.key / "checkpoint.pt", weights_only=True)["model_state"] for j in good]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # seeds differ
