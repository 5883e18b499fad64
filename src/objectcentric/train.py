"""One training loop for every model of the book (Chapter 1 introduces it).

``fit`` trains a model on an in-memory dataset, one epoch at a time, and after
each epoch writes a checkpoint with everything needed to resume exactly where
it stopped: weights, optimizer and scheduler state, history and random state.
It shows a live loss plot in a notebook and a progress bar in a terminal,
stops on a non-finite loss without touching the last good checkpoint, and on
Ctrl-C returns the model and its history instead of losing them.
"""

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .checkpoints import CheckpointError, load_model_state, model_payload, read_checkpoint, save_checkpoint

StepFn = Callable[[nn.Module, tuple], dict[str, torch.Tensor]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What ``fit`` returns: the per-epoch history and how the run ended."""

    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    wall_time_s: float = 0.0


# --- device and randomness --------------------------------------------------------------
def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """CUDA if present, else Apple's MPS, else the CPU (or ``preferred`` when given)."""
    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every random state a training step may touch, in a form ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- batches ----------------------------------------------------------------------------
def epoch_batches(data: Dataset, batch_size: int, seed: int, epoch: int):
    """The batches of one epoch, in an order fixed by (seed, epoch) alone.

    Tying the order to the epoch number, not to a running generator, is what
    lets a resumed run see exactly the batches an uninterrupted one would.
    """
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    if isinstance(data, TensorDataset):  # fast path: slice the tensors, no worker overhead
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield tuple(t[index] for t in data.tensors)
    else:
        yield from DataLoader(torch.utils.data.Subset(data, order.tolist()), batch_size=batch_size)


# --- progress display ---------------------------------------------------------------------
def in_notebook() -> bool:
    """True inside a Jupyter kernel (where livelossplot can draw)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def _plotted(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("epoch", "seconds", "lr")}


class LivePlot:
    """A livelossplot figure fed one epoch record at a time (``val_*`` keys pair with train keys)."""

    def __init__(self):
        from livelossplot import PlotLosses
        from livelossplot.outputs import MatplotlibPlot

        self.plot = PlotLosses(outputs=[MatplotlibPlot()])

    def update(self, record: dict, draw: bool = True) -> None:
        self.plot.update(_plotted(record), current_step=record["epoch"])
        if draw:
            self.plot.send()


def replay_history(history: list[dict]) -> None:
    """Draw a recorded history as the same loss plot that training showed live."""
    if not history:
        raise ValueError("the history is empty: nothing to plot")
    plot = LivePlot()
    for i, record in enumerate(history):
        plot.update(record, draw=i == len(history) - 1)


class _Progress:
    """tqdm bar in a terminal; livelossplot figure (plus a text line) in a notebook."""

    def __init__(self, style: str, total_steps: int, start_step: int):
        if style == "auto":
            style = "notebook" if in_notebook() else "terminal"
        self.style = style
        self.bar = self.plot = None
        if style == "terminal":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        elif style == "notebook":
            self.plot = LivePlot()

    def step(self, epoch: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}", refresh=False)

    def epoch(self, record: dict) -> None:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in _plotted(record).items())
        line = f"epoch {record['epoch']}: {summary} ({record['seconds']:.1f} s)"
        if self.plot is not None:
            self.plot.update(record)
            print(line)
        elif self.bar is not None:
            self.bar.write(line)  # above the bar, so a terminal run keeps a log of its epochs
            sys.stdout.flush()  # a log file sees each epoch as it ends

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the loop -------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    data: Dataset,
    step: StepFn,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Callable[[torch.optim.Optimizer], object] | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: str = "auto",
    train_config: dict | None = None,
    after_step: Callable[[int, int], None] | None = None,
    clip_grad_norm: float | None = None,
) -> TrainResult:
    """Train ``model`` for ``epochs`` epochs on ``data`` and return its history.

    ``step(model, batch)`` returns a dict of scalar tensors whose ``"loss"`` is
    minimised; every entry is averaged per epoch into the history. ``evaluate``
    (optional) adds held-out numbers, stored as ``val_<name>``. With
    ``checkpoint`` set, the state is written there after every epoch, and an
    existing file is resumed from when ``resume`` is true. ``scheduler`` builds
    an LR scheduler from the optimizer, stepped once per epoch. ``after_step``
    is called with (epoch, step) after each optimizer step (a hook for tests
    and debugging). ``progress`` is "auto", "notebook", "terminal" or "none".
    ``clip_grad_norm`` rescales each step's gradient to at most that norm, per
    parameter group of the optimizer (for score-function gradients, whose rare
    huge values can throw a model off).
    """
    device = pick_device(device)
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    lr_scheduler = scheduler(optimizer) if scheduler else None
    seed_everything(seed)
    result, start_epoch = TrainResult(), 1
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint and resume and checkpoint.exists():
        start_epoch, result = _resume(checkpoint, model, optimizer, lr_scheduler)
        if start_epoch > epochs:
            print(f"{checkpoint} already holds {start_epoch - 1} epochs: nothing to train.")
            return result

    steps_per_epoch = math.ceil(len(data) / batch_size)
    display = _Progress(progress, epochs * steps_per_epoch, (start_epoch - 1) * steps_per_epoch)
    started = time.perf_counter() - result.wall_time_s
    try:
        for epoch in range(start_epoch, epochs + 1):
            epoch_start = time.perf_counter()
            record = _train_epoch(model, data, step, optimizer, epoch, batch_size, seed, device,
                                  display, after_step, checkpoint, clip_grad_norm)
            if lr_scheduler is not None:
                record["lr"] = optimizer.param_groups[0]["lr"]
                lr_scheduler.step()
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    record.update({f"val_{k}": float(v) for k, v in evaluate(model).items()})
                model.train()
            record["seconds"] = time.perf_counter() - epoch_start
            result.history.append(record)
            result.wall_time_s = time.perf_counter() - started
            display.epoch(record)
            if checkpoint:
                save_checkpoint(checkpoint, {
                    **model_payload(model),
                    "optimizer_state": optimizer.state_dict(),
                    "scheduler_state": lr_scheduler.state_dict() if lr_scheduler else None,
                    "epoch": epoch,
                    "history": result.history,
                    "rng_state": rng_state(),
                    "train_config": {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                                     **(train_config or {})},
                    "wall_time_s": result.wall_time_s,
                })
    except KeyboardInterrupt:
        result.interrupted = True
        kept = f"; {checkpoint} holds the last complete epoch, rerun to resume" if checkpoint else ""
        print(f"Interrupted: the model keeps its current weights and the history its "
              f"{len(result.history)} complete epochs{kept}.")
    finally:
        display.close()
    return result


def _non_finite(what: str, epoch: int, index: int, checkpoint) -> NonFiniteLossError:
    """The error that stops training when a number became NaN, saying what was kept."""
    kept = f"the last good checkpoint {checkpoint} is unchanged" if checkpoint else "no checkpoint was written"
    return NonFiniteLossError(
        f"{what} at epoch {epoch}, step {index}; training stopped and {kept}. "
        "Lower the learning rate (or clip gradients) or check the data for NaN values."
    )


def _train_epoch(model, data, step, optimizer, epoch, batch_size, seed, device, display, after_step, checkpoint,
                 clip_grad_norm=None):
    """One pass over the data; returns the epoch's mean of every number ``step`` reports."""
    model.train()
    sums: dict[str, float] = {}
    n_batches = 0
    for index, batch in enumerate(epoch_batches(data, batch_size, seed, epoch), start=1):
        batch = tuple(t.to(device, non_blocking=True) for t in batch)
        try:
            terms = step(model, batch)
        except RuntimeError as error:  # e.g. sampling from a distribution whose parameters became NaN
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise _non_finite("the model's parameters became NaN or infinite", epoch, index,
                                  checkpoint) from error
            raise
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise _non_finite(f"the loss became {loss.item()}", epoch, index, checkpoint)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:  # per parameter group: a baseline's large gradient must not shrink the model's
            for group in optimizer.param_groups:
                norm = torch.nn.utils.clip_grad_norm_(group["params"], clip_grad_norm)
                if not torch.isfinite(norm):
                    raise _non_finite("the gradient became NaN or infinite", epoch, index, checkpoint)
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        n_batches += 1
        display.step(epoch, float(loss.detach()))
        if after_step is not None:
            after_step(epoch, index)
    return {"epoch": epoch, **{name: total / n_batches for name, total in sums.items()}}


def _resume(checkpoint: Path, model, optimizer, lr_scheduler) -> tuple[int, TrainResult]:
    payload = load_model_state(checkpoint, model, read_checkpoint(checkpoint))
    if "optimizer_state" not in payload:
        raise CheckpointError(f"{checkpoint} is a shipped checkpoint without optimizer state; it cannot be resumed")
    optimizer.load_state_dict(payload["optimizer_state"])
    if lr_scheduler is not None and payload.get("scheduler_state"):
        lr_scheduler.load_state_dict(payload["scheduler_state"])
    set_rng_state(payload["rng_state"])
    print(f"Resuming from {checkpoint} after epoch {payload['epoch']}.")
    return payload["epoch"] + 1, TrainResult(history=list(payload["history"]), wall_time_s=payload["wall_time_s"])
