"""The command line trains a resumable run whose checkpoint carries its provenance."""

from objectcentric.checkpoints import read_checkpoint
from objectcentric.cli import main


def test_quick_training_run_records_how_it_was_made(tmp_path):
    run = tmp_path / "vae_z2.pt"
    main(["train", "vae", "--latent-dim", "2", "--quick", "--checkpoint", str(run), "--device", "cpu"])
    payload = read_checkpoint(run)
    assert payload["epoch"] == 2 and len(payload["history"]) == 2
    provenance = payload["train_config"]["provenance"]
    assert provenance["device"].startswith("cpu") and provenance["seed"] == 0
    assert provenance["command"].startswith("python") and provenance["commit"]  # here: the pytest command
