"""The command line: flags generated from each recipe, clear refusals, Ctrl-C exits 130."""

import json

import pytest

from objectcentric import cli, runner
from objectcentric.checkpoints import read_checkpoint


def run_cli(argv):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    return stop.value.code


def test_quick_training_run_records_how_it_was_made(tmp_path):
    run = tmp_path / "vae_z2"
    assert run_cli(["train", "vae", "--latent-dim", "2", "--quick", "--run-dir", str(run), "--device", "cpu"]) == 0
    payload = read_checkpoint(run / "checkpoint.pt")
    assert payload["epoch"] == 2 and len(payload["history"]) == 2
    assert payload["train_config"]["settings"]["latent_dim"] == 2 and payload["train_config"]["seed"] == 0
    provenance = payload["provenance"]
    assert provenance["device"].startswith("cpu") and provenance["seed"] == 0
    assert provenance["command"].startswith("python") and provenance["commit"]
    assert json.loads((run / "record.json").read_text())["status"] == "done"


def test_a_flag_of_another_model_is_an_error_naming_the_flags_that_apply(capsys):
    assert run_cli(["train", "vae", "--inference", "recurrent"]) == 2
    message = capsys.readouterr().err
    assert "--inference is not a flag of `train vae`" in message and "--latent-dim" in message


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--epochs", "-3"], ["--batch-size", "0"]])
def test_impossible_values_are_refused_before_training(flags, capsys, tmp_path):
    assert run_cli(["train", "vae", *flags, "--run-dir", str(tmp_path / "r")]) == 2
    assert "must be a whole number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_ctrl_c_exits_130_and_says_what_was_saved(monkeypatch, capsys, tmp_path):
    def interrupted(recipe, seed, run_dir, **kwargs):
        return runner.Run(model=None, record={"status": "interrupted"})

    monkeypatch.setattr(runner, "train", interrupted)
    assert run_cli(["train", "vae", "--quick", "--run-dir", str(tmp_path / "r")]) == 130
    assert "nothing saved yet" in capsys.readouterr().out


def test_seed_ranges_have_one_parser():
    assert cli.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert cli.parse_seeds("0,3,7") == [0, 3, 7]
    assert cli.parse_seeds("1-2,5") == [1, 2, 5]
    with pytest.raises(Exception, match="seeds must look like"):
        cli.parse_seeds("a-b")


def test_ship_refuses_a_run_that_holds_another_model(tmp_path, capsys):
    run = tmp_path / "vae_z2"
    run_cli(["train", "vae", "--latent-dim", "2", "--quick", "--run-dir", str(run), "--device", "cpu"])
    assert run_cli(["ship", "air", str(run)]) == 1
    assert "holds a run of the 'vae' recipe, not 'air'" in capsys.readouterr().err
