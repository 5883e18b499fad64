"""The training loop: exact resume, NaN guard, Ctrl-C."""

import pytest
import torch
from torch.utils.data import TensorDataset

from objectcentric.checkpoints import load_model_state, read_checkpoint
from objectcentric.data.binarize import stochastic_binarize
from objectcentric.models import VAE
from objectcentric.train import NonFiniteLossError, fit, pick_device


def vae_step(model, batch):
    return model.loss(stochastic_binarize(batch[0]))


def random_evaluate(model):
    # draws random numbers, so the RNG state must be restored on resume too
    return {"neg_elbo": float(model.loss(torch.rand(8, 1, 4, 4))["neg_elbo"])}


def make_model():
    torch.manual_seed(0)
    return VAE(latent_dim=3, hidden_dims=(16,), image_shape=(1, 4, 4))


def run(tmp_path, data, name, **kwargs):
    model = make_model()
    def cosine(optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    result = fit(model, data, vae_step, epochs=3, batch_size=16, lr=1e-2, scheduler=cosine,
                 evaluate=random_evaluate, checkpoint=tmp_path / name, seed=7, device="cpu",
                 progress="none", **kwargs)
    return model, result


def without_time(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_interrupted_then_resumed_run_matches_uninterrupted_run(tmp_path, tiny_images):
    data = TensorDataset(tiny_images)
    reference, reference_result = run(tmp_path, data, "straight.pt")

    def interrupt(epoch, step):
        if (epoch, step) == (2, 2):
            raise KeyboardInterrupt

    _, interrupted = run(tmp_path, data, "resumed.pt", after_step=interrupt)
    assert interrupted.interrupted and len(interrupted.history) == 1
    assert read_checkpoint(tmp_path / "resumed.pt")["epoch"] == 1

    resumed, resumed_result = run(tmp_path, data, "resumed.pt")  # a fresh process would do the same
    assert not resumed_result.interrupted
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert without_time(resumed_result.history) == without_time(reference_result.history)


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path, tiny_images):
    def poisoned_step(model, batch):
        terms = vae_step(model, batch)
        if poisoned_step.calls == 4:  # epoch 2, step 2 (3 batches per epoch)
            terms["loss"] = terms["loss"] * float("nan")
        poisoned_step.calls += 1
        return terms
    poisoned_step.calls = 0

    model = make_model()
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2.*last good checkpoint"):
        fit(model, TensorDataset(tiny_images), poisoned_step, epochs=3, batch_size=16,
            checkpoint=checkpoint, device="cpu", progress="none")
    payload = load_model_state(checkpoint, make_model())
    assert payload["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in payload["model_state"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ctrl_c_keeps_model_and_history_without_checkpoint(tiny_images):
    def interrupt(epoch, step):
        if epoch == 3:
            raise KeyboardInterrupt

    model = make_model()
    before = [p.clone() for p in model.parameters()]
    result = fit(model, TensorDataset(tiny_images), vae_step, epochs=5, batch_size=16,
                 device="cpu", progress="none", after_step=interrupt)
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
    calls = []
    _, result = run(tmp_path, data, "done.pt", after_step=lambda e, s: calls.append(s))
    assert calls == [] and len(result.history) == 3


def test_device_defaults_to_cpu_without_accelerator():
    expected = "cuda" if torch.cuda.is_available() else None
    assert pick_device().type in {expected, "mps", "cpu"}
    assert pick_device("cpu").type == "cpu"
