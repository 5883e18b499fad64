"""One training loop for every model of the book (Chapter 1 introduces it).

``fit`` trains a model on an in-memory dataset as a recipe says, one epoch at
a time, and after each epoch writes a checkpoint with everything needed to
resume exactly where it stopped: weights, optimizer and scheduler state,
history and random state. It shows a live loss plot in a notebook and a
progress bar in a terminal; it stops on a non-finite loss or gradient before
it reaches the weights, without touching the last good checkpoint; a stop
condition (deadline, time or step budget) ends a run early and saves it
mid-epoch, so that it resumes there; on Ctrl-C it returns the model and its
history instead of losing them. A run file is locked while a process trains
into it, and resuming checks that the file holds the same recipe and seed.
"""

import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .checkpoints import (
    CheckpointError,
    load_model_state,
    model_payload,
    plain_data,
    read_checkpoint,
    save_checkpoint,
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What ``fit`` returns: the per-epoch history and how the run ended."""

    history: list[dict] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C
    stopped: str | None = None  # the stop condition that ended the run early, if one did
    wall_time_s: float = 0.0
    steps: int = 0


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


def _plotted(record: dict, keys=None) -> dict:
    """The curves of one epoch record: every number but the bookkeeping, or only ``keys`` (and their ``val_``)."""
    if keys is not None:
        keys = {*keys, *(f"val_{k}" for k in keys)}
    return {k: v for k, v in record.items()
            if k not in ("epoch", "seconds", "lr") and (keys is None or k in keys)}


class LivePlot:
    """A livelossplot figure fed one epoch record at a time (``val_*`` keys pair with train keys)."""

    def __init__(self, keys=None):
        self.keys = keys
        from livelossplot import PlotLosses
        from livelossplot.main_logger import COMMON_NAME_SHORTCUTS
        from livelossplot.outputs import MatplotlibPlot

        from .book import label_curve_axes

        raw = {shown: key for key, shown in COMMON_NAME_SHORTCUTS.items()}  # "Log Loss (...)" -> "loss"

        def after_subplot(ax, group_name: str, x_label: str) -> None:
            label_curve_axes(ax, raw.get(group_name, group_name), x_label)

        self.plot = PlotLosses(outputs=[MatplotlibPlot(cell_size=(3.9, 2.7), max_cols=2,
                                                       after_subplot=after_subplot)])

    def update(self, record: dict, draw: bool = True) -> None:
        self.plot.update(_plotted(record, self.keys), current_step=record["epoch"])
        if draw:
            self.plot.send()


def replay_history(history: list[dict], keys=None) -> None:
    """Draw a recorded history as the same loss plot that training showed live (only ``keys``, if given)."""
    if not history:
        raise ValueError("the history is empty: nothing to plot")
    plot = LivePlot(keys)
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


# --- when to stop early -------------------------------------------------------------------------
@dataclass(frozen=True)
class Stop:
    """A stop condition that ``fit`` checks after every step.

    ``deadline``: a ``time.time()`` value; ``seconds``: training seconds for
    this call; ``steps``: total optimizer steps of the run. A run that
    reaches one saves where it is (mid-epoch included) and says so in its
    result; training the same run again resumes from there.
    """

    deadline: float | None = None
    seconds: float | None = None
    steps: int | None = None

    def reason(self, started: float, steps_done: int) -> str | None:
        if self.steps is not None and steps_done >= self.steps:
            return f"step budget of {self.steps} steps"
        if self.seconds is not None and time.perf_counter() - started >= self.seconds:
            return f"time budget of {self.seconds:g} s"
        if self.deadline is not None and time.time() >= self.deadline:
            return "deadline"
        return None


class RunMismatchError(CheckpointError):
    """A run file holds a run trained with other settings than the ones asked for now."""


class RunInUseError(CheckpointError):
    """Another process is training into the same run file."""


# --- the loop -------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    data: Dataset,
    recipe,
    *,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: str = "auto",
    stop: Stop | None = None,
    provenance: dict | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` as ``recipe`` says and return its history.

    The recipe (:class:`objectcentric.recipes.Recipe`) gives the epochs, the
    batch size, one step's loss, the optimizer, the schedule, gradient
    clipping and the held-out numbers (``val_<name>``). With ``checkpoint``
    set, the state is written there after every epoch (and where ``stop``
    ends the run), and an existing file is resumed from, after checking
    that it holds this recipe and seed. ``progress`` is "auto", "notebook",
    "terminal" or "none".
    """
    if len(data) == 0:
        raise ValueError("the training data set is empty: nothing to train on")
    device = pick_device(device)
    model.to(device)
    optimizer = recipe.optimizer(model)
    lr_scheduler = recipe.scheduler(optimizer)
    evaluate = recipe.evaluator()
    identity = {"recipe": recipe.name, "settings": recipe.settings(), "seed": int(seed)}
    seed_everything(seed)
    result, start = TrainResult(), {"epoch": 1}
    checkpoint = Path(checkpoint) if checkpoint else None
    lock = _claim(checkpoint, provenance) if checkpoint else None
    try:
        if checkpoint and checkpoint.exists():
            start, result = _resume(checkpoint, model, optimizer, lr_scheduler, identity,
                                    defaults=_field_defaults(recipe))
            if start["epoch"] > recipe.epochs:
                print(f"{checkpoint} already holds {start['epoch'] - 1} epochs: nothing to train.")
                return result
        loop = _Loop(model, data, recipe, optimizer, seed, device, checkpoint, stop, result)
        steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
        loop.display = _Progress(progress, recipe.epochs * steps_per_epoch,
                                 (start["epoch"] - 1) * steps_per_epoch + start.get("index", 0))
        try:
            for epoch in range(start["epoch"], recipe.epochs + 1):
                partial = start if epoch == start["epoch"] and "index" in start else None
                recipe.start_of_epoch(model, epoch)
                record = loop.epoch(epoch, partial)
                if record is None:  # stopped mid-epoch: saved where it is
                    break
                recipe.end_of_epoch(model, optimizer, epoch, seed)
                if lr_scheduler is not None:
                    record["lr"] = optimizer.param_groups[0]["lr"]
                    lr_scheduler.step()
                if evaluate is not None:
                    model.eval()
                    with torch.no_grad():
                        record.update({f"val_{k}": float(v) for k, v in evaluate(model).items()})
                    model.train()
                result.history.append(record)
                result.wall_time_s = loop.elapsed()
                loop.display.epoch(record)
                loop.save(epoch, lr_scheduler, identity, provenance)
                if result.stopped is None and stop is not None and epoch < recipe.epochs:
                    result.stopped = stop.reason(loop.started, loop.steps_done)
                if result.stopped:
                    break
            if loop.partial_state is not None:
                loop.save(loop.partial_state["epoch"] - 1, lr_scheduler, identity, provenance)
        except KeyboardInterrupt:
            result.interrupted = True
            kept = (f"; {checkpoint} holds {_saved_epochs(checkpoint)}, rerun to resume"
                    if checkpoint else "")
            print(f"Interrupted: the model keeps its current weights and the history its "
                  f"{len(result.history)} complete epochs{kept}.")
        finally:
            loop.display.close()
        if result.stopped:
            print(f"Stopped at the {result.stopped} after {loop.steps_done} steps"
                  + (f"; {checkpoint} holds the run so far, rerun to resume." if checkpoint else "."))
        result.steps = loop.steps_done
        return result
    finally:
        if lock is not None:
            checkpoint.with_name(checkpoint.name + ".owner").unlink(missing_ok=True)
            lock.release()


def _saved_epochs(checkpoint: Path) -> str:
    try:
        return f"{read_checkpoint(checkpoint)['epoch']} complete epochs"
    except CheckpointError:
        return "no complete epoch yet"


def _claim(checkpoint: Path, provenance: dict | None):
    """Check the run file can be written, then lock it for this process (an error names the holder)."""
    import json
    import os
    import socket

    from filelock import FileLock, Timeout

    if checkpoint.exists() and checkpoint.is_dir():
        raise CheckpointError(f"the checkpoint path {checkpoint} is a folder; give a file name")
    try:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        probe = checkpoint.with_name(checkpoint.name + ".write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CheckpointError(
            f"cannot write the checkpoint {checkpoint} ({error.strerror or error}); nothing was trained. "
            "Choose a writable location (--run-dir or checkpoint=...)."
        ) from error
    owner = checkpoint.with_name(checkpoint.name + ".owner")
    lock = FileLock(str(checkpoint) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads(owner.read_text())
            who = (f"process {holder.get('pid')} on {holder.get('host')} "
                   f"({holder.get('command', 'command unknown')}, since {holder.get('since')})")
        except (OSError, ValueError):
            who = "another process"
        raise RunInUseError(
            f"{checkpoint} is being trained by {who}. Wait for it to finish, or train into another "
            "run folder; two trainings into one file would overwrite each other."
        ) from None
    owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": (provenance or {}).get("command"),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    return lock


def _non_finite(what: str, epoch: int, index: int, checkpoint) -> NonFiniteLossError:
    """The error that stops training when a number became NaN, saying what was kept."""
    if checkpoint and Path(checkpoint).exists():
        kept = f"the last good checkpoint {checkpoint} ({_saved_epochs(Path(checkpoint))}) is unchanged"
    elif checkpoint:
        kept = f"no checkpoint yet: {checkpoint} was not written"
    else:
        kept = "no checkpoint was asked for"
    return NonFiniteLossError(
        f"{what} at epoch {epoch}, step {index}; training stopped and {kept}. "
        "Lower the learning rate (or clip gradients) or check the data for NaN values."
    )


_RANGE_ERRORS = ("constraint", "p_in", "nan", "inf", "invalid values", "between 0 and 1")


def _out_of_range(error: Exception) -> bool:
    """torch's errors for a NaN or out-of-range value inside a distribution or a loss (not a shape error)."""
    text = str(error).lower()
    return any(word in text for word in _RANGE_ERRORS) and "shape" not in text and "size" not in text


class _Loop:
    """The state of one ``fit`` call: steps done, timing, and the run's partial epoch when stopped."""

    def __init__(self, model, data, recipe, optimizer, seed, device, checkpoint, stop, result):
        self.model, self.data, self.recipe, self.optimizer = model, data, recipe, optimizer
        self.seed, self.device, self.checkpoint, self.stop, self.result = seed, device, checkpoint, stop, result
        self.started = time.perf_counter()
        self.wall_before = result.wall_time_s
        self.steps_done = result.steps
        self.batches_per_epoch = math.ceil(len(data) / recipe.batch_size)
        self.partial_state = None
        self.display = None

    def elapsed(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def epoch(self, epoch: int, partial: dict | None) -> dict | None:
        """One pass over the data; the epoch's mean of every term, or None when stopped mid-epoch."""
        model, recipe = self.model, self.recipe
        model.train()
        sums: dict[str, float] = dict(partial["sums"]) if partial else {}
        skip = partial["index"] if partial else 0
        epoch_start = time.perf_counter() - (partial["seconds"] if partial else 0.0)
        index = skip
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        for index, batch in enumerate(epoch_batches(self.data, recipe.batch_size, self.seed, epoch), start=1):
            if index <= skip:
                continue
            batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            try:
                terms = recipe.step(model, batch)
            except (RuntimeError, ValueError) as error:  # e.g. a distribution built from NaN parameters
                if not all(torch.isfinite(p).all() for p in parameters):
                    raise _non_finite("the model's parameters became NaN or infinite", epoch, index,
                                      self.checkpoint) from error
                if _out_of_range(error):  # finite weights so large that a probability left [0, 1]
                    raise _non_finite(f"a number in the model became NaN or left its range ({error})",
                                      epoch, index, self.checkpoint) from error
                raise
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise _non_finite(f"the loss became {loss.item()}", epoch, index, self.checkpoint)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._check_and_clip(epoch, index)
            self.optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            self.steps_done += 1
            self.display.step(epoch, float(loss.detach()))
            if self.stop is not None and index < self.batches_per_epoch:
                reason = self.stop.reason(self.started, self.steps_done)
                if reason:
                    self.result.stopped = reason
                    self.partial_state = {"epoch": epoch, "index": index, "sums": sums,
                                          "seconds": time.perf_counter() - epoch_start}
                    self.result.wall_time_s = self.elapsed()
                    return None
        record = {"epoch": epoch, **{name: total / index for name, total in sums.items()}}
        record["seconds"] = time.perf_counter() - epoch_start
        return record

    def _check_and_clip(self, epoch: int, index: int) -> None:
        """Stop on a NaN or infinite gradient before it reaches the weights; clip per parameter group."""
        limit = self.recipe.clip_grad_norm
        for group in self.optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            norm = torch.nn.utils.clip_grad_norm_(params, limit if limit is not None else math.inf)
            if not torch.isfinite(norm):
                raise _non_finite("the gradient became NaN or infinite", epoch, index, self.checkpoint)

    def save(self, epoch: int, lr_scheduler, identity: dict, provenance: dict | None) -> None:
        if not self.checkpoint:
            return
        save_checkpoint(self.checkpoint, {
            **model_payload(self.model),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": lr_scheduler.state_dict() if lr_scheduler else None,
            "epoch": epoch,
            "partial_epoch": self.partial_state,
            "steps": self.steps_done,
            "history": self.result.history,
            "rng_state": rng_state(),
            "train_config": identity,
            "provenance": provenance or {},
            "wall_time_s": self.elapsed(),
        })


def _field_defaults(recipe) -> dict:
    """The recipe class's default for each of its fields that has one, as plain data."""
    if not dataclasses.is_dataclass(recipe):
        return {}
    return {f.name: plain_data(f.default) for f in dataclasses.fields(recipe)
            if f.default is not dataclasses.MISSING}


def _resume(checkpoint: Path, model, optimizer, lr_scheduler, identity: dict,
            defaults: dict | None = None) -> tuple[dict, TrainResult]:
    payload = read_checkpoint(checkpoint)
    if "optimizer_state" not in payload:
        raise CheckpointError(f"{checkpoint} is a shipped checkpoint without optimizer state; it cannot be resumed")
    recorded = payload.get("train_config") or {}
    if "recipe" not in recorded:
        raise RunMismatchError(
            f"{checkpoint} was written by an older version of the book's trainer and records no recipe; "
            "it cannot be resumed safely. Train into a new run file (or delete this one)."
        )
    differences = _differences(recorded, identity, defaults)
    if differences:
        listed = "; ".join(differences)
        raise RunMismatchError(
            f"{checkpoint} holds a run with other settings than the ones asked for now ({listed}). "
            "Nothing was trained. To keep both, train into a new run folder (--run-dir); to continue the "
            "recorded run, repeat its settings."
        )
    load_model_state(checkpoint, model, payload)
    optimizer.load_state_dict(payload["optimizer_state"])
    if lr_scheduler is not None and payload.get("scheduler_state"):
        lr_scheduler.load_state_dict(payload["scheduler_state"])
    set_rng_state(payload["rng_state"])
    partial = payload.get("partial_epoch")
    result = TrainResult(history=list(payload["history"]), wall_time_s=payload["wall_time_s"],
                         steps=payload.get("steps", 0))
    if partial:
        print(f"Resuming from {checkpoint} at epoch {partial['epoch']}, step {partial['index']}.")
        return dict(partial), result
    print(f"Resuming from {checkpoint} after epoch {payload['epoch']}.")
    return {"epoch": payload["epoch"] + 1}, result


def _differences(recorded: dict, asked: dict, defaults: dict | None = None) -> list[str]:
    """What differs between the recorded run and the one asked for, as readable phrases.

    A setting the recorded run does not list (the recipe gained it later) is no
    difference while it is asked at its default (``defaults``), which is what
    the recorded run trained with."""
    out = []
    if recorded.get("recipe") != asked["recipe"]:
        out.append(f"recipe {recorded.get('recipe')!r} recorded, {asked['recipe']!r} asked")
    if recorded.get("seed") != asked["seed"]:
        out.append(f"seed {recorded.get('seed')} recorded, {asked['seed']} asked")
    old, new = recorded.get("settings", {}), asked["settings"]
    for key in sorted(set(old) | set(new)):
        if key not in old and key in (defaults or {}) and new.get(key) == defaults[key]:
            continue
        if old.get(key) != new.get(key):
            out.append(f"{key}={old.get(key)!r} recorded, {key}={new.get(key)!r} asked")
    return out
