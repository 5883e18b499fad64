"""One runner for every recipe, one sweep runner, and ``reproduce``.

- :func:`train` trains one recipe for one seed into a run folder
  (``checkpoint.pt``, resumable, and ``record.json``: status, settings,
  metrics, provenance) and returns the model with its record.
- :func:`sweep` trains many ``(recipe, seed)`` jobs through submitit: local
  processes by default, a SLURM cluster with ``executor="slurm"``, or in this
  process with ``executor="inline"``. Rerunning a sweep trains only the jobs
  not yet done; a job that crashes is recorded and the others go on.
- An :class:`Experiment` is one chapter's recorded experiment: the jobs it
  trains and how their records become ``results/*.json`` and shipped
  checkpoints. :func:`reproduce` reruns any of them at the quick or full scale.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoints import CheckpointError, load_model_state, read_checkpoint
from .provenance import current_command, device_description, git_commit
from .recipes import Recipe, RecipeError, from_settings
from .train import Stop, fit, pick_device

RUN_FILE, RECORD_FILE = "checkpoint.pt", "record.json"
EXECUTORS = ("local", "slurm", "inline")


def configure_device(device: torch.device) -> None:
    """Device-wide settings every run uses: TF32 matrix products on CUDA (far more precise than needed)."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


def default_run_dir(recipe: Recipe, seed: int, root: str | Path | None = None) -> Path:
    """``runs/<recipe name>/<run name>`` under the project (so a notebook and a terminal share it)."""
    if root is None:
        from .paths import project_root

        project = project_root()
        root = project / "runs" if project is not None else Path("runs")
    return Path(root) / recipe.name / recipe.run_name(seed)


@dataclass
class Run:
    """What :func:`train` returns: the trained model and its record (also in ``record.json``)."""

    model: nn.Module
    record: dict
    history: list[dict] = field(default_factory=list)


def train(recipe: Recipe, seed: int = 0, run_dir: str | Path | None = None, *, device=None,
          progress: str = "auto", stop: Stop | None = None, command: str | None = None) -> Run:
    """Train ``recipe`` for ``seed`` into ``run_dir`` (resuming what is there); returns the :class:`Run`.

    The initial weights depend on the seed alone. ``stop`` ends the run early
    (its record says ``"status": "stopped"`` and why); training again resumes.
    Without ``run_dir`` nothing is written (a notebook's quick run).
    """
    device = pick_device(device)
    configure_device(device)
    started_by = {"command": command or current_command(), "commit": git_commit(),
                  "device": device_description(device), "seed": int(seed)}
    data = recipe.train_data()
    torch.manual_seed(seed)
    model = recipe.build_model()
    recipe.initialize(model, data, seed)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint = run_dir / RUN_FILE if run_dir is not None else None
    started_from = recipe.started_from()
    if started_from:
        if checkpoint is not None and checkpoint.exists():  # resumed: what the first leg started from
            started_from = (read_checkpoint(checkpoint).get("provenance") or {}).get("started_from", started_from)
        started_by["started_from"] = started_from
    result = fit(model, data, recipe, seed=seed, checkpoint=checkpoint, device=device, progress=progress,
                 stop=stop, provenance=started_by)
    done = len(result.history) >= recipe.epochs and not result.interrupted and not result.stopped
    status = "done" if done else ("interrupted" if result.interrupted else "stopped")
    record = {
        "status": status,
        "stopped_by": result.stopped,
        "recipe": recipe.name,
        "settings": recipe.settings(),
        "seed": int(seed),
        "epochs_done": len(result.history),
        "steps": result.steps,
        "metrics": recipe.metrics(model, result.history) if result.history else {},
        "wall_time_s": round(result.wall_time_s, 2),
        **{k: v for k, v in started_by.items() if k != "seed"},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
    }
    if run_dir is not None:
        write_record(run_dir, record)
    return Run(model=model, record=record, history=result.history)


def write_record(run_dir: Path, record: dict) -> None:
    from .records import write_json_atomic

    write_json_atomic(Path(run_dir) / RECORD_FILE, record)


def read_record(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / RECORD_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def load_run(run: str | Path, device="cpu") -> tuple[Recipe, nn.Module, dict]:
    """The recipe, the trained model and the checkpoint payload of a run folder (or its checkpoint)."""
    run = Path(run)
    path = run / RUN_FILE if run.is_dir() else run
    payload = read_checkpoint(path, map_location=device)
    identity = payload.get("train_config") or {}
    if "recipe" not in identity:
        raise CheckpointError(f"{path} records no recipe: it was not written by the book's runner")
    recipe = from_settings(identity["recipe"], identity["settings"])
    model = recipe.build_model()
    load_model_state(path, model, payload)
    return recipe, model.to(device).eval(), payload


def load_or_train(recipe: Recipe, mode: str, seed: int = 0, *, run_dir: str | Path | None = None,
                  device=None, progress: str = "auto") -> Run:
    """A chapter's model in one call: the shipped checkpoint in read mode, else a training run.

    ``mode`` is the notebook's (:func:`objectcentric.modes.run_mode`): "read"
    loads ``recipe.shipped_name()`` (checked against the manifest) when it is
    there; "quick" trains the recipe's quick scale without writing anything;
    "train" (or read mode without a shipped file) trains the full recipe into
    ``run_dir`` (default ``runs/<name>/<run name>``), resumable. The run's
    ``record["loaded"]`` says which happened; ``history`` is the loss history
    (recorded or new) that ``replay_history`` draws.
    """
    from .checkpoints import checkpoint_dir, load_shipped

    name = recipe.shipped_name(seed)
    if mode == "read" and name is not None:
        try:
            path = checkpoint_dir() / name
        except CheckpointError:
            path = None
        if path is not None and path.is_file():
            model = recipe.build_model()
            payload = load_shipped(name, model, path.parent)
            print(f"Loaded {name}, trained for this book and shipped in its checkpoints/ folder; "
                  "TRAIN = True in the set-up cell trains it from scratch instead.")
            model = model.to(pick_device(device)).eval()
            return Run(model=model, record={"loaded": True, "file": name}, history=list(payload.get("history", [])))
        print(f"No shipped checkpoint {name}: training at full settings.")
    if mode == "quick":
        run = train(recipe.at_scale("quick"), seed, None, device=device, progress=progress)
    else:
        run = train(recipe, seed, run_dir or default_run_dir(recipe, seed), device=device, progress=progress)
    run.model.eval()
    run.record["loaded"] = False
    return run


# --- sweeps -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One run of a sweep: a recipe and a seed."""

    recipe: Recipe
    seed: int = 0

    @property
    def key(self) -> str:
        return self.recipe.run_name(self.seed)


def _run_job(job: Job, run_dir: str, device, stop: Stop | None, threads: int | None, command: str) -> dict:
    """What a sweep's worker process runs: one job, its failure recorded rather than raised."""
    if threads:
        torch.set_num_threads(threads)
    try:
        return train(job.recipe, job.seed, run_dir, device=device, progress="none", stop=stop,
                     command=command).record
    except Exception as error:  # recorded, so that the other jobs go on and a rerun retries this one
        record = {"status": "failed", "recipe": job.recipe.name, "settings": job.recipe.settings(),
                  "seed": job.seed, "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc(limit=8)}
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_record(Path(run_dir), record)
        return record


def sweep(jobs: list[Job], out: str | Path, *, executor: str = "local", max_parallel: int = 1, device=None,
          stop: Stop | None = None, threads: int | None = None, timeout_min: int = 24 * 60,
          slurm: dict | None = None) -> dict[str, dict]:
    """Train every job not yet done into ``out/<job key>/``; returns each job's record by key.

    ``executor``: "local" (submitit's local processes, at most
    ``max_parallel`` at a time), "slurm" (submitit's SLURM executor;
    ``slurm`` holds its parameters, e.g. ``{"partition": "gpu",
    "gpus_per_node": 1}``) or "inline" (this process, one after another).
    """
    if executor not in EXECUTORS:
        raise RecipeError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise RecipeError("two jobs of the sweep have the same recipe and seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = {job.key: read_record(out / job.key) for job in jobs}
    todo = [job for job in jobs if (records[job.key] or {}).get("status") != "done"]
    if not todo:
        return records
    print(f"Sweep {out}: {len(jobs) - len(todo)} of {len(jobs)} runs done, training {len(todo)}.")
    command = current_command()
    arguments = [(job, str(out / job.key), device, stop, threads, command) for job in todo]
    if executor == "inline":
        for args in arguments:
            records[args[0].key] = _run_job(*args)
        return records
    import submitit

    pool = submitit.AutoExecutor(folder=out / "_submitit", cluster="local" if executor == "local" else "slurm")
    pool.update_parameters(timeout_min=timeout_min, name="objectcentric",
                           **({f"slurm_{k}": v for k, v in (slurm or {}).items()} if executor == "slurm" else {}))
    if executor == "local" and pick_device(device).type == "cuda":  # submitit hides GPUs unless asked for
        pool.update_parameters(gpus_per_node=torch.cuda.device_count())
    if executor == "slurm":
        pool.update_parameters(slurm_array_parallelism=max_parallel)
        submitted = pool.map_array(_run_job, *zip(*arguments))
        finished = [(job.key, job_handle) for job, job_handle in zip(todo, submitted)]
    else:  # local: keep at most max_parallel processes running
        finished, running, waiting = [], [], list(arguments)
        while waiting or running:
            while waiting and len(running) < max(1, max_parallel):
                args = waiting.pop(0)
                running.append((args[0].key, pool.submit(_run_job, *args)))
            time.sleep(0.5)
            finished += [r for r in running if r[1].done()]
            running = [r for r in running if not r[1].done()]
    for key, handle in finished:
        try:
            records[key] = handle.result()
        except Exception as error:  # the worker process itself died (killed, out of memory)
            records[key] = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            write_record(out / key, records[key])
    failed = [k for k, r in records.items() if (r or {}).get("status") == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed, recorded in their record.json: {', '.join(failed)}")
    return records


# --- experiments and reproduce -------------------------------------------------------------------
@dataclass(frozen=True)
class Experiment:
    """One chapter's recorded experiment: which runs it trains and how they become results.

    ``jobs(scale)`` lists the runs; ``collect(records, out)`` turns their
    records and run folders into ``results/*.json`` and shipped checkpoints
    (``out`` says where: :class:`Outputs`).
    """

    chapter: str
    title: str
    jobs: Callable[[str], list[Job]]
    collect: Callable[[dict[str, dict], "Outputs"], None]


@dataclass(frozen=True)
class Outputs:
    """Where a collection writes: the run folder it reads, and the results and checkpoints folders."""

    runs: Path
    results: Path
    checkpoints: Path
    scale: str


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    EXPERIMENTS[experiment.chapter] = experiment
    return experiment


def reproduce(chapters: list[str] | None = None, *, scale: str = "quick", executor: str = "local",
              out: str | Path = "runs/reproduce", max_parallel: int = 1, device=None,
              threads: int | None = None, into_project: bool | None = None,
              stop: Stop | None = None, collect_only: bool = False) -> dict[str, dict]:
    """Rerun chapters' recorded experiments from their recipes and collect their results.

    At the full scale the results and checkpoints go where the book reads
    them (``results/``, ``checkpoints/``); at the quick scale (and whenever
    ``into_project`` is False) into ``out/results`` and ``out/checkpoints``,
    so that a smoke test never overwrites a recorded number. ``stop`` ends
    runs early (they resume on the next call). ``collect_only`` trains
    nothing: it collects the run folders as they are, runs still training
    included (their record is missing until they end; an experiment decides
    whether it can report them). Returns, per chapter, its wall time and the
    status of its runs.
    """
    from .checkpoints import checkpoint_dir
    from .recipes import load_all
    from .records import results_dir

    load_all()
    chapters = chapters or list(EXPERIMENTS)
    unknown = [c for c in chapters if c not in EXPERIMENTS]
    if unknown:
        raise RecipeError(f"no experiment for {', '.join(unknown)}; the chapters are {', '.join(EXPERIMENTS)}")
    out = Path(out) / scale
    into_project = scale == "full" if into_project is None else into_project
    summary = {}
    for chapter in chapters:
        experiment = EXPERIMENTS[chapter]
        started = time.perf_counter()
        jobs = experiment.jobs(scale)
        if collect_only:
            records = {job.key: read_record(out / chapter / job.key) for job in jobs}
        else:
            records = sweep(jobs, out / chapter, executor=executor, max_parallel=max_parallel, device=device,
                            threads=threads, stop=stop)
        outputs = Outputs(runs=out / chapter,
                          results=results_dir() if into_project else out / "results",
                          checkpoints=checkpoint_dir() if into_project else out / "checkpoints", scale=scale)
        experiment.collect(records, outputs)
        statuses = [(r or {}).get("status", "missing") for r in records.values()]
        summary[chapter] = {"runs": len(jobs), "done": statuses.count("done"),
                            "failed": statuses.count("failed"), "wall_time_s": round(time.perf_counter() - started, 1)}
        print(f"{chapter}: {summary[chapter]}")
    return summary


def done_records(records: dict[str, dict]) -> dict[str, dict]:
    """The records of the runs that finished."""
    return {k: r for k, r in records.items() if (r or {}).get("status") == "done"}


def steps_of(recipe: Recipe, n_train: int) -> int:
    """The optimizer steps of a whole run of ``recipe`` on ``n_train`` examples."""
    return recipe.epochs * math.ceil(n_train / recipe.batch_size)


__all__ = ["Experiment", "Job", "Outputs", "Run", "done_records", "load_run", "read_record", "register_experiment",
           "reproduce", "steps_of", "sweep", "train"]
