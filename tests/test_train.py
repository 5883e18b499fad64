"""The training loop: exact resume (after an epoch and mid-epoch), stop conditions, NaN guard, Ctrl-C,
run-file locking and the check that a resumed run is the same run."""

from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import TensorDataset

from objectcentric.checkpoints import CheckpointError, load_model_state, read_checkpoint
from objectcentric.data.binarize import stochastic_binarize
from objectcentric.models import VAE
from objectcentric.recipes import Recipe, RecipeError
from objectcentric.train import NonFiniteLossError, RunInUseError, RunMismatchError, Stop, fit, pick_device


@dataclass(frozen=True)
class TinyRecipe(Recipe):
    """A 4x4-pixel VAE: small enough to train in a test."""

    name = "tiny"
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-2
    poison_at: int = -1  # the step whose loss (or gradient) becomes NaN
    poison: str = "loss"
    interrupt_at: int = -1

    def build_model(self):
        torch.manual_seed(0)
        return VAE(latent_dim=3, hidden_dims=(16,), image_shape=(1, 4, 4))

    def step(self, model, batch):
        CALLS.append(1)
        if len(CALLS) == self.interrupt_at:
            raise KeyboardInterrupt
        terms = model.loss(stochastic_binarize(batch[0]))
        if len(CALLS) == self.poison_at:
            if self.poison == "loss":
                terms["loss"] = terms["loss"] * float("nan")
            else:  # a finite loss whose gradient is infinite: d/dw sqrt(w - w0) at w = w0
                w = next(model.parameters()).sum()
                terms["loss"] = terms["loss"] + torch.sqrt(w - w.detach())
        return terms

    def scheduler(self, optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)

    def evaluator(self):
        def evaluate(model):  # draws random numbers, so the RNG state must be restored on resume too
            return {"neg_elbo": float(model.loss(torch.rand(8, 1, 4, 4))["neg_elbo"])}
        return evaluate


CALLS: list = []


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def run(tmp_path, data, name, recipe=TinyRecipe(), **kwargs):
    model = recipe.build_model()
    result = fit(model, data, recipe, seed=7, checkpoint=tmp_path / name if name else None, device="cpu",
                 progress="none", **kwargs)
    return model, result


def without_time(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_interrupted_then_resumed_run_matches_uninterrupted_run(tmp_path, tiny_images):
    data = TensorDataset(tiny_images)
    reference, reference_result = run(tmp_path, data, "straight.pt")
    CALLS.clear()
    _, interrupted = run(tmp_path, data, "resumed.pt", TinyRecipe(interrupt_at=5))  # epoch 2, step 2
    assert interrupted.interrupted and len(interrupted.history) == 1
    assert read_checkpoint(tmp_path / "resumed.pt")["epoch"] == 1
    resumed, resumed_result = run(tmp_path, data, "resumed.pt", TinyRecipe(interrupt_at=5))
    assert not resumed_result.interrupted
    assert same_weights(reference, resumed)
    assert without_time(resumed_result.history) == without_time(reference_result.history)


def test_a_stop_condition_saves_mid_epoch_and_the_run_resumes_there_exactly(tmp_path, tiny_images):
    data = TensorDataset(tiny_images)
    reference, reference_result = run(tmp_path, data, "straight.pt")
    _, stopped = run(tmp_path, data, "stopped.pt", stop=Stop(steps=4))  # epoch 2, after its first step
    assert stopped.stopped.startswith("step budget") and stopped.steps == 4
    saved = read_checkpoint(tmp_path / "stopped.pt")
    assert saved["epoch"] == 1 and saved["partial_epoch"]["index"] == 1
    resumed, resumed_result = run(tmp_path, data, "stopped.pt")
    assert resumed_result.stopped is None and resumed_result.steps == 9
    assert same_weights(reference, resumed)
    assert without_time(resumed_result.history) == without_time(reference_result.history)


def test_a_deadline_in_the_past_stops_after_one_step(tmp_path, tiny_images):
    _, result = run(tmp_path, TensorDataset(tiny_images), "d.pt", stop=Stop(deadline=0.0))
    assert result.stopped == "deadline" and result.steps == 1


def test_resuming_with_other_settings_or_seed_is_an_error_listing_the_differences(tmp_path, tiny_images):
    data = TensorDataset(tiny_images)
    run(tmp_path, data, "r.pt", TinyRecipe(epochs=1))
    before = read_checkpoint(tmp_path / "r.pt")
    with pytest.raises(RunMismatchError, match=r"epochs=1 recorded, epochs=2 asked.*new run folder"):
        run(tmp_path, data, "r.pt", TinyRecipe(epochs=2))
    model = TinyRecipe(epochs=1).build_model()
    with pytest.raises(RunMismatchError, match=r"seed 7 recorded, 5 asked"):
        fit(model, data, TinyRecipe(epochs=1), seed=5, checkpoint=tmp_path / "r.pt", progress="none")
    after = read_checkpoint(tmp_path / "r.pt")
    assert same_weights_payload(before, after)  # nothing was trained or written


@dataclass(frozen=True)
class GrownRecipe(TinyRecipe):
    """TinyRecipe after it gained a setting (its default is what the older runs trained with)."""

    warm_start: int = 0


def test_a_run_recorded_before_the_recipe_gained_a_setting_resumes_at_its_default(tmp_path, tiny_images):
    data = TensorDataset(tiny_images)
    run(tmp_path, data, "old.pt", TinyRecipe(epochs=1))
    _, result = run(tmp_path, data, "old.pt", GrownRecipe(epochs=1))
    assert len(result.history) == 1  # accepted as the same run: its epoch came from the file
    with pytest.raises(RunMismatchError, match=r"warm_start=None recorded, warm_start=3 asked"):
        run(tmp_path, data, "old.pt", GrownRecipe(epochs=1, warm_start=3))


def same_weights_payload(a, b):
    return all(torch.equal(v, b["model_state"][k]) for k, v in a["model_state"].items())


def test_a_second_process_training_into_the_same_file_gets_an_error_naming_the_holder(tmp_path, tiny_images):
    from filelock import FileLock

    checkpoint = tmp_path / "busy.pt"
    (tmp_path / "busy.pt.owner").write_text('{"pid": 4242, "host": "box", "command": "python -m x", "since": "now"}')
    with FileLock(str(checkpoint) + ".lock"):
        with pytest.raises(RunInUseError, match=r"process 4242 on box .*python -m x"):
            run(tmp_path, TensorDataset(tiny_images), "busy.pt")
    assert not checkpoint.exists()


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_non_finite_numbers_stop_with_the_step_and_keep_the_last_checkpoint(tmp_path, tiny_images, poison):
    model = TinyRecipe().build_model()
    what = "loss became nan" if poison == "loss" else "gradient became NaN or infinite"
    with pytest.raises(NonFiniteLossError, match=what + r" at epoch 2, step 2.*last good checkpoint .*1 complete"):
        fit(model, TensorDataset(tiny_images), TinyRecipe(poison_at=5, poison=poison), checkpoint=tmp_path / "run.pt",
            device="cpu", progress="none")
    payload = load_model_state(tmp_path / "run.pt", TinyRecipe().build_model())
    assert payload["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in payload["model_state"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nan_before_the_first_checkpoint_says_there_is_none_yet(tmp_path, tiny_images):
    with pytest.raises(NonFiniteLossError, match="gradient became NaN.*no checkpoint yet"):
        run(tmp_path, TensorDataset(tiny_images), "early.pt", TinyRecipe(poison_at=1, poison="gradient"))


def test_nan_weights_give_the_projects_error_not_a_raw_distribution_error(tmp_path, tiny_images):
    recipe = TinyRecipe()
    model = recipe.build_model()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="parameters became NaN|loss became nan"):
        fit(model, TensorDataset(tiny_images), recipe, device="cpu", progress="none")


def test_finite_weights_that_push_a_probability_out_of_range_give_the_projects_error(tiny_images):
    @dataclass(frozen=True)
    class Exploding(TinyRecipe):
        def step(self, model, batch):
            p = torch.sigmoid(next(model.parameters()).sum()) * 2.0  # outside [0, 1], as at a huge lr
            return {"loss": torch.nn.functional.binary_cross_entropy(p, torch.tensor(1.0))}

    with pytest.raises(NonFiniteLossError, match=r"left its range .*at epoch 1, step \d+;.*no checkpoint was asked"):
        fit(Exploding().build_model(), TensorDataset(tiny_images), Exploding(), device="cpu", progress="none")


@pytest.mark.parametrize("where", ["file_as_parent", "read_only"])
def test_an_unwritable_checkpoint_location_is_found_before_any_step(tmp_path, tiny_images, where):
    import os

    if where == "file_as_parent":
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "run.pt"
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write into a read-only folder")
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        target = tmp_path / "ro" / "run.pt"
    model = TinyRecipe().build_model()
    with pytest.raises(CheckpointError, match="cannot write the checkpoint .*nothing was trained"):
        fit(model, TensorDataset(tiny_images), TinyRecipe(), checkpoint=target, progress="none")
    assert CALLS == []


def test_ctrl_c_keeps_model_and_history_without_checkpoint(tiny_images):
    recipe = TinyRecipe(epochs=5, interrupt_at=7)  # epoch 3, step 1
    model = recipe.build_model()
    before = [p.clone() for p in model.parameters()]
    result = fit(model, TensorDataset(tiny_images), recipe, device="cpu", progress="none")
    assert result.interrupted
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_history_records_train_and_validation_terms(tmp_path, tiny_images):
    _, result = run(tmp_path, TensorDataset(tiny_images), "h.pt")
    first = result.history[0]
    assert {"epoch", "loss", "reconstruction", "kl", "val_neg_elbo", "lr", "seconds"} <= set(first)
    assert result.history[-1]["loss"] < first["loss"]  # it learns


def test_completed_run_is_not_trained_again(tmp_path, tiny_images):
    data = TensorDataset(tiny_images)
    run(tmp_path, data, "done.pt")
    CALLS.clear()
    _, result = run(tmp_path, data, "done.pt")
    assert CALLS == [] and len(result.history) == 3


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": -3}, {"batch_size": 0}, {"lr": 0.0}])
def test_impossible_settings_are_refused(bad):
    with pytest.raises(RecipeError, match=next(iter(bad))):
        TinyRecipe(**bad)


def test_device_defaults_to_cpu_without_accelerator():
    expected = "cuda" if torch.cuda.is_available() else None
    assert pick_device().type in {expected, "mps", "cpu"}
    assert pick_device("cpu").type == "cpu"
