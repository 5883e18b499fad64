"""Records: the one writer of ``results/*.json`` and the one way to ship a checkpoint.

Every results file carries its provenance at the top level (``command``,
``commit``, ``device``, ``seed``, ``wall_time_s``, ``date``, ``torch``,
``schema_version``): that of its newest write. A write replaces the keys it
writes and keeps the others, and ``writers`` lists, for every write still
visible in the file, which keys it wrote and its provenance, so rerunning
one benchmark never silently drops what another command recorded.

:func:`ship` copies a trained run into ``checkpoints/`` under the name its
recipe gives, after checking the run really holds that recipe's model, and
writes the checkpoint and its manifest entry together.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from .checkpoints import (CheckpointError, checkpoint_dir, read_checkpoint, read_manifest, save_checkpoint,
                          sha256_of)
from .paths import project_root
from .provenance import provenance as provenance_fields

SCHEMA_VERSION = 2
PROVENANCE_KEYS = ("command", "commit", "device", "seed", "wall_time_s", "date", "torch", "schema_version")
RESERVED = (*PROVENANCE_KEYS, "scale", "writers")


def results_dir() -> Path:
    root = project_root()
    if root is None:
        raise CheckpointError("cannot find the project folder (one holding _config.yml and src/objectcentric) "
                              "above the current directory; run from inside a clone of the book's repository")
    return root / "results"


def write_json_atomic(path: str | Path, data) -> Path:
    """Write ``data`` as JSON through a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(_finite(data), indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def _finite(value):
    """JSON has no NaN: non-finite floats are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_results(name: str, directory: str | Path | None = None) -> dict:
    """``results/<name>.json`` as a dict ({} when it does not exist yet); a damaged file is a clear error."""
    path = Path(directory or results_dir()) / f"{name}.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); restore it with "
                              f"`git checkout -- {path.name}` or rerun the command that wrote it") from error


def write_results(name: str, data: dict, *, provenance: dict, directory: str | Path | None = None,
                  drop: tuple[str, ...] = ()) -> dict:
    """Merge ``data`` into ``results/<name>.json`` with this write's provenance at the top level.

    ``provenance`` holds the fields of :func:`objectcentric.provenance.provenance`.
    Keys of ``data`` replace their old values; keys it does not mention are
    kept, with the record of the write that set them; keys in ``drop`` are
    removed (what a writer knows to be stale). Returns the whole file.
    """
    clash = sorted(set(data) & set(RESERVED))
    if clash:
        raise ValueError(f"results keys {clash} are reserved for provenance")
    missing = [k for k in PROVENANCE_KEYS if k != "schema_version" and k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}")
    directory = Path(directory or results_dir())
    old = read_results(name, directory)
    gone = set(data) | set(drop)
    writers = [w for w in old.get("writers", []) if set(w["keys"]) - gone]
    for w in writers:
        w["keys"] = [k for k in w["keys"] if k not in gone]
    mine = {k: provenance[k] for k in (*PROVENANCE_KEYS, "scale") if k in provenance}
    writers.append({"keys": sorted(data), **mine})
    kept = {k: v for k, v in old.items() if k not in RESERVED and k not in gone}
    whole = {**mine, "schema_version": SCHEMA_VERSION, **kept, **data, "writers": writers}
    write_json_atomic(directory / f"{name}.json", whole)
    return whole


def provenance(*, seed: int, wall_time_s: float, device=None, command: str | None = None,
               scale: str | None = None) -> dict:
    """This process's provenance (command, commit, device, seed, time, date, torch version; and the scale
    of the runs, "quick" marking numbers that are not results)."""
    return {**provenance_fields(seed=seed, wall_time_s=wall_time_s, device=device, command=command),
            "schema_version": SCHEMA_VERSION, **({"scale": scale} if scale else {})}


# --- shipping -------------------------------------------------------------------------------------
def ship(run: str | Path, *, expect: str | None = None, checkpoints: str | Path | None = None,
         note: str | None = None, metrics: dict | None = None, extra: dict | None = None,
         half: bool = False) -> dict:
    """Export a trained run into ``checkpoints/`` and list it in ``manifest.json``; returns the entry.

    ``run`` is a run folder or its training checkpoint. The destination name
    comes from the run's own recipe, so a run cannot land in another model's
    file; ``expect`` (a recipe name, e.g. "vae") is checked against it.
    The manifest is read before anything is written, and the checkpoint and
    the manifest are replaced together: if the second write fails, the first
    is undone. ``half`` stores the floating-point weights as float16 (half the
    file; they load into the float32 model, rounded to about 3 digits).
    """
    from .recipes import from_settings

    run = Path(run)
    path = run / "checkpoint.pt" if run.is_dir() else run
    payload = read_checkpoint(path)
    identity = payload.get("train_config") or {}
    if "recipe" not in identity:
        raise CheckpointError(f"{path} records no recipe (written by an older trainer, or not a training run); "
                              "only runs trained by this version can be shipped")
    if expect is not None and identity["recipe"] != expect:
        raise CheckpointError(f"{path} holds a run of the {identity['recipe']!r} recipe, not {expect!r}; "
                              f"ship it as `ship {identity['recipe']} {run}`")
    recipe = from_settings(identity["recipe"], identity["settings"])
    directory = Path(checkpoints or checkpoint_dir())
    if recipe.quick and directory.resolve() == checkpoint_dir().resolve():
        raise CheckpointError(f"{path} is a quick-scale run: its numbers are not results, and it is not "
                              "shipped into the book's checkpoints/")
    name = recipe.shipped_name(identity["seed"])
    if name is None:
        raise CheckpointError(f"the {recipe.name!r} recipe ships no checkpoint")
    model = recipe.build_model()
    if payload.get("model_class") != type(model).__name__:
        raise CheckpointError(f"{path} holds a {payload.get('model_class')} but {recipe.name!r} builds a "
                              f"{type(model).__name__}; the run file is not what its recipe says")
    manifest = read_manifest(directory)  # a damaged manifest stops us before any file is touched
    history = payload.get("history") or []
    final = {k: round(v, 4) for k, v in (history[-1] if history else {}).items() if k.startswith("val_")}
    entry_metrics = {**final, "epochs": payload.get("epoch"), **(metrics or {})}
    info = {**(payload.get("provenance") or {}), "wall_time_s": round(payload.get("wall_time_s", 0.0), 1),
            "seed": identity["seed"], "recipe": recipe.name, "settings": recipe.changed(),
            **({"note": note} if note else {}), **(extra or {})}
    keep = ("model_class", "model_config", "model_state", "history", "epoch", "train_config", "wall_time_s")
    shipped = {k: payload[k] for k in keep if k in payload}
    if half:
        shipped["model_state"] = {k: v.half() if v.is_floating_point() else v
                                  for k, v in shipped["model_state"].items()}
        info["stored_as"] = "float16"
    return _write_shipped(directory, name, shipped, manifest, info, entry_metrics)


def ship_payload(directory: str | Path | None, name: str, payload: dict, info: dict, metrics: dict) -> dict:
    """Ship a payload that is not one training run (precomputed frames, a model picked from a sweep)."""
    directory = Path(directory or checkpoint_dir())
    return _write_shipped(directory, name, payload, read_manifest(directory), info, metrics)


def annotate_shipped(name: str, directory: str | Path | None = None, **fields) -> dict:
    """Set ``fields`` (e.g. ``note``) of the manifest entry of the shipped ``name``, the file untouched (its
    sha256 still holds); returns the entry. For a choice revisited without retraining, e.g. more seeds to
    choose from."""
    directory = Path(directory or checkpoint_dir())
    manifest = read_manifest(directory)
    if name not in manifest.get("checkpoints", {}):
        raise CheckpointError(f"{name} is not listed in {directory / 'manifest.json'}: ship it first")
    entry = {**manifest["checkpoints"][name], **fields}
    manifest["checkpoints"][name] = entry
    staged = directory / ".manifest.json.staged"
    staged.write_text(_manifest_text(manifest))
    os.replace(staged, directory / "manifest.json")
    return entry


def _manifest_text(manifest: dict) -> str:
    return json.dumps(_finite(manifest), indent=2, sort_keys=True) + "\n"


def _write_shipped(directory: Path, name: str, payload: dict, manifest: dict, info: dict, metrics: dict) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    destination = directory / name
    staged = save_checkpoint(directory / f".{name}.staged", payload)
    entry = {"file": name, "sha256": sha256_of(staged), "bytes": staged.stat().st_size, **info,
             "metrics": metrics}
    manifest = {**manifest, "checkpoints": {**manifest.get("checkpoints", {}), name: entry}}
    manifest_tmp = directory / ".manifest.json.staged"
    manifest_tmp.write_text(_manifest_text(manifest))
    backup = None
    if destination.exists():
        backup = directory / f".{name}.previous"
        shutil.copy2(destination, backup)
    os.replace(staged, destination)
    try:
        os.replace(manifest_tmp, directory / "manifest.json")
    except OSError:
        if backup is not None:
            os.replace(backup, destination)
        else:
            destination.unlink()
        raise
    if backup is not None:
        backup.unlink()
    print(f"Shipped {destination} ({entry['bytes'] / 1e6:.1f} MB), listed in manifest.json.")
    return entry
