"""Checkpoints: save atomically, load with clear errors, check shipped ones against the manifest.

A training checkpoint holds everything needed to resume bit for bit (model,
optimizer, scheduler, history, RNG state). A shipped checkpoint, under
``checkpoints/``, keeps only the model and its history, and is listed in
``checkpoints/manifest.json`` with its sha256 and the command that made it
(written only by :func:`objectcentric.records.ship`).
"""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from .paths import project_root

FORMAT = "objectcentric-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or was saved for another model."""


def checkpoint_dir() -> Path:
    """The shipped checkpoints: ``<project>/checkpoints``."""
    root = project_root()
    if root is None:
        raise CheckpointError(
            "cannot find the project folder (one holding _config.yml and src/objectcentric) "
            "above the current directory; run from inside a clone of the book's repository"
        )
    return root / "checkpoints"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically: a crash mid-write never destroys the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint file, raising ``CheckpointError`` if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}). "
            "Restore it (`git checkout -- <file>` for a shipped one) or delete it and train again."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an objectcentric checkpoint (no '{FORMAT}' format tag)")
    return payload


def model_config(model: nn.Module) -> dict:
    """A model's constructor settings as plain data (its ``config`` dataclass; tuples become lists)."""
    config = getattr(model, "config", {})
    return plain_data(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config))


def plain_data(value):
    """Tuples become lists, recursively, so settings compare equal after a save and load."""
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def model_payload(model: nn.Module) -> dict:
    """What identifies a model in a checkpoint: its class, constructor config and weights."""
    return {
        "model_class": type(model).__name__,
        "model_config": model_config(model),
        "model_state": model.state_dict(),
    }


def load_model_state(path: str | Path, model: nn.Module, payload: dict | None = None) -> dict:
    """Load the weights of checkpoint ``path`` into ``model`` and return the payload.

    Raises ``CheckpointError`` when the checkpoint was saved for another class
    or configuration, naming both, before touching the model's weights.
    """
    payload = payload if payload is not None else read_checkpoint(path)
    expected = (type(model).__name__, model_config(model))
    found = (payload.get("model_class"), plain_data(payload.get("model_config") or {}))
    if found != expected:
        raise CheckpointError(
            f"checkpoint {path} holds {found[0]}({_describe(found[1])}) but the model is "
            f"{expected[0]}({_describe(expected[1])}); build the model with the checkpoint's "
            "settings, or train a new checkpoint for these"
        )
    try:
        model.load_state_dict(payload["model_state"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path} does not fit {expected[0]}: {error}") from error
    return payload


def _describe(config) -> str:
    return ", ".join(f"{k}={v}" for k, v in (config or {}).items())


# --- the manifest of shipped checkpoints ---------------------------------------------
def read_manifest(directory: str | Path | None = None) -> dict:
    """The manifest of shipped checkpoints; a damaged one is a ``CheckpointError`` naming the file."""
    path = Path(directory or checkpoint_dir()) / "manifest.json"
    if not path.exists():
        return {"checkpoints": {}}
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); restore it with "
                              "`git checkout -- checkpoints/manifest.json`") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("checkpoints"), dict):
        raise CheckpointError(f"{path} has no 'checkpoints' table; restore it with "
                              "`git checkout -- checkpoints/manifest.json`")
    return manifest


def verify_shipped(name: str, directory: str | Path | None = None) -> Path:
    """The path of shipped checkpoint ``name`` after checking it against its manifest entry."""
    directory = Path(directory or checkpoint_dir())
    entry = read_manifest(directory)["checkpoints"].get(name)
    path = directory / name
    if entry is None:
        raise CheckpointError(f"{name} is not listed in {directory / 'manifest.json'}")
    if not path.is_file():
        raise CheckpointError(f"{path} is listed in manifest.json but missing; restore it with "
                              f"`git checkout -- checkpoints/{name}` or retrain with: "
                              f"{entry.get('command', '(command not recorded)')}")
    if sha256_of(path) != entry["sha256"]:
        raise CheckpointError(
            f"{path} does not match its sha256 in manifest.json: the file is damaged or was "
            "replaced. Restore it with `git checkout -- checkpoints/` or retrain with: "
            f"{entry.get('command', '(command not recorded)')}"
        )
    return path


def load_shipped(name: str, model: nn.Module, directory: str | Path | None = None) -> dict:
    """Load shipped checkpoint ``name`` into ``model`` after checking its sha256 against the manifest."""
    path = verify_shipped(name, directory)
    return load_model_state(path, model)


def read_shipped(name: str, directory: str | Path | None = None) -> dict:
    """The payload of shipped checkpoint ``name`` (frames, several models), checked against the manifest."""
    return read_checkpoint(verify_shipped(name, directory))
