"""Checkpoints: corrupt and mismatched files fail clearly; the shipped ones are listed and load."""

import json

import pytest
import torch

from objectcentric import checkpoints
from objectcentric.checkpoints import CheckpointError, load_model_state, load_shipped, model_payload, save_checkpoint
from objectcentric.experiments.vae import VAERecipe
from objectcentric.models import VAE
from objectcentric.paths import project_root
from objectcentric.records import ship_payload
from objectcentric.runner import load_or_train


def test_corrupt_checkpoint_raises_clear_error(tmp_path, tiny_vae):
    path = save_checkpoint(tmp_path / "model.pt", model_payload(tiny_vae))
    path.write_bytes(path.read_bytes()[:200])  # truncated, as by an interrupted copy
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model_state(path, tiny_vae)


def test_file_that_is_not_a_checkpoint_is_rejected(tmp_path, tiny_vae):
    path = tmp_path / "weights.pt"
    torch.save(tiny_vae.state_dict(), path)
    with pytest.raises(CheckpointError, match="not an objectcentric checkpoint"):
        load_model_state(path, tiny_vae)


def test_mismatched_checkpoint_names_both_models_and_leaves_weights(tmp_path, tiny_vae):
    path = save_checkpoint(tmp_path / "model.pt", model_payload(tiny_vae))
    other = VAE(latent_dim=5, hidden_dims=(16,), image_shape=(1, 4, 4))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"latent_dim=3.*latent_dim=5"):
        load_model_state(path, other)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in before.items())


def test_missing_checkpoint(tmp_path, tiny_vae):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_state(tmp_path / "nowhere.pt", tiny_vae)


def test_manifest_sha256_detects_a_replaced_file(tmp_path, tiny_vae):
    payload = {**model_payload(tiny_vae), "history": [{"epoch": 1}]}
    entry = ship_payload(tmp_path, "vae.pt", payload, {"command": "python -m objectcentric train vae"},
                         {"val_neg_elbo": 1.0})
    assert entry["sha256"] == checkpoints.sha256_of(tmp_path / "vae.pt")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["checkpoints"]["vae.pt"]["command"] == "python -m objectcentric train vae"
    assert load_shipped("vae.pt", tiny_vae, tmp_path)["history"] == [{"epoch": 1}]

    torch.manual_seed(1)
    save_checkpoint(tmp_path / "vae.pt", model_payload(VAE(latent_dim=3, hidden_dims=(16,), image_shape=(1, 4, 4))))
    with pytest.raises(CheckpointError, match="sha256.*python -m objectcentric train vae"):
        load_shipped("vae.pt", tiny_vae, tmp_path)


def test_a_damaged_manifest_is_an_error_naming_the_file(tmp_path, tiny_vae):
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="manifest.json is not valid JSON.*git checkout"):
        load_shipped("vae.pt", tiny_vae, tmp_path)


def test_load_or_train_loads_in_read_mode_and_trains_the_quick_scale_in_quick_mode(capsys):
    read = load_or_train(VAERecipe(latent_dim=2, epochs=40), "read", device="cpu")
    assert read.record["loaded"] and len(read.history) == 40
    assert "Loaded vae_mnist_z2.pt, trained for this book" in capsys.readouterr().out
    quick = load_or_train(VAERecipe(latent_dim=2), "quick", device="cpu", progress="none")
    assert not quick.record["loaded"] and len(quick.history) == VAERecipe.QUICK["epochs"]


def test_a_damaged_shipped_file_is_reported_before_anything_says_it_loaded(tmp_path, monkeypatch, capsys):
    import shutil

    root = project_root()
    for name in ("manifest.json", "vae_mnist_z2.pt"):
        shutil.copy(root / "checkpoints" / name, tmp_path / name)
    with open(tmp_path / "vae_mnist_z2.pt", "r+b") as f:
        f.seek(1000)
        f.write(b"damage")
    monkeypatch.setattr(checkpoints, "checkpoint_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        load_or_train(VAERecipe(latent_dim=2, epochs=40), "read", device="cpu")
    assert "Loaded" not in capsys.readouterr().out


SHIPPED = {"vae_mnist_z50.pt": VAERecipe(), "vae_mnist_z2.pt": VAERecipe(latent_dim=2, epochs=40)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoints_are_small_listed_and_load(name):
    directory = project_root() / "checkpoints"
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = manifest["checkpoints"][name]
    assert (directory / name).stat().st_size < 10 * 2**20
    for field in ("file", "sha256", "command", "commit", "device", "wall_time_s", "metrics"):
        assert entry[field] not in (None, "", {}), field
    recipe = SHIPPED[name]
    assert recipe.shipped_name() == name
    payload = load_shipped(name, recipe.build_model(), directory)
    assert len(payload["history"]) == entry["metrics"]["epochs"] == recipe.epochs
