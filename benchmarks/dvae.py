"""D-VAE and D-VAE-ST clustering (Chapter 5): every configuration, in parallel, then results/dvae.json.

    python benchmarks/dvae.py run --device cuda --out runs/dvae_out --jobs 6 --budget-s 450
    python benchmarks/dvae.py run --quick --device cpu --out /tmp/dvae_smoke --only SimplifiedMNIST
    python benchmarks/dvae.py collect runs/dvae_out            # -> results/dvae.json, results/dvae_prototypes.npz,
                                                               #    checkpoints/dvae_st_fullmnist.pt + manifest
    python benchmarks/dvae.py run --per-seed --device cpu --jobs 2 --epochs 33 --only relax nvil --out runs/cpu
    python benchmarks/dvae.py collect runs/dvae_out runs/cpu   # folders from several runs, merged
    python benchmarks/dvae.py pack-data data/gz                # MNIST + Fashion-MNIST as .gz (~41 MB), to carry

``run`` starts one process per job (``python -m objectcentric train dvae ...``),
``--jobs`` at a time, in the order of JOBS (most important first). A job
trains one configuration (model, dataset, estimator, K, recipe variant) for
several seeds side by side (the model's replicas) and writes its report, its
prototypes and, for the main configuration, the best seed's checkpoint into
``--out``. Within ``--budget-s`` seconds: every job stops training at the
deadline (its report says how many epochs it did), and no job starts when
fewer than ``--min-start-s`` seconds remain (it is listed as not run).
``collect`` merges the seeds of each configuration into the ``runs`` entries
of results/dvae.json (one per model, dataset, estimator, K, variant and split),
with per-seed details, and ships the best seed of the main configuration.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "dvae.json"
PROTOTYPES = ROOT / "results" / "dvae_prototypes.npz"
MAIN = ("dvae_st", "FullMNIST", "exact", 10, "robust")
FIVE, THREE = "0-4", "0-2"
# (model, dataset, estimator, K, variant, seeds), most important first.
JOBS = [
    (*MAIN, FIVE),
    (*MAIN[:4], "robust", "5-9"),
    ("dvae_st", "FullMNIST", "exact", 10, "thesis", FIVE),
    ("dvae", "FullMNIST", "exact", 10, "robust", FIVE),
    ("dvae", "FullMNIST", "exact", 10, "thesis", FIVE),
    ("dvae_st", "SimplifiedMNIST", "exact", 3, "robust", FIVE),
    ("dvae", "SimplifiedMNIST", "exact", 3, "robust", FIVE),
    ("dvae_st", "FashionMNIST", "exact", 10, "robust", FIVE),
    ("dvae", "FashionMNIST", "exact", 10, "robust", FIVE),
    ("dvae_st", "FullMNIST", "exact", 11, "robust", FIVE),
    ("dvae_st", "FullMNIST", "exact", 12, "robust", FIVE),
    ("dvae_st", "FullMNIST", "relax", 10, "robust", FIVE),
    ("dvae_st", "FullMNIST", "nvil", 10, "robust", THREE),
    ("dvae_st", "FullMNIST", "reinforce", 10, "robust", THREE),
    ("dvae_st", "FullMNIST", "concrete", 10, "robust", THREE),
    ("dvae_st", "FullMNIST", "rebar", 10, "robust", THREE),
    ("dvae_st", "FullMNIST", "relax", 10, "thesis", FIVE),
    ("dvae_st", "FullMNIST", "exact", 10, "split", FIVE),
    ("dvae_st", "FullMNIST", "exact", 10, "kmeans", FIVE),
    ("dvae_st", "Letters", "exact", 26, "robust", FIVE),
]


def _seeds(text: str, offset: int, quick: bool) -> str:
    """A job's seed range shifted by ``offset``; its first two seeds only in quick mode."""
    first, last = (int(v) for v in text.split("-"))
    return f"{first + offset}-{(min(last, first + 1) if quick else last) + offset}"


def select_jobs(only=None, seeds: str | None = None, per_seed: bool = False) -> list[tuple]:
    """The JOBS whose description holds one of the words ``only``, in order; ``seeds`` (``"A-B"``) replaces
    each job's seed range, and ``per_seed`` makes one job of each seed."""
    from objectcentric.cli import parse_seeds

    jobs = [job for job in JOBS if not only or any(word in " ".join(map(str, job)) for word in only)]
    if seeds:
        jobs = [(*job[:5], seeds) for job in jobs]
    if per_seed:
        jobs = [(*job[:5], f"{seed}-{seed}") for job in jobs for seed in parse_seeds(job[5])]
    return jobs


def _job_command(job, args, deadline: float) -> list[str]:
    model, dataset, estimator, k, variant, seeds = job
    command = [sys.executable, "-m", "objectcentric", "train", "dvae", "--kind", model, "--dataset", dataset,
               "--estimator", estimator, "--k", str(k), "--variant", variant,
               "--seeds", _seeds(seeds, args.seed, args.quick), "--out", str(args.out),
               "--deadline", f"{deadline:.0f}"]
    if args.device:
        command += ["--device", args.device]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    if args.quick:
        command.append("--quick")
    if job[:5] == MAIN:
        command.append("--save-best")
    return command


def run(args) -> None:
    """Start the jobs, ``--jobs`` at a time, and wait for them; write OUT/benchmark.json."""
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + args.budget_s - args.margin_s  # training stops here; evaluation and writing follow
    jobs = select_jobs(args.only, args.seeds, args.per_seed)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    pending, running, finished = list(jobs), {}, []
    while pending or running:
        while pending and len(running) < args.jobs:
            job = pending.pop(0)
            if time.time() > started + args.budget_s - args.min_start_s:
                finished.append({"job": list(job), "status": "not run: out of time"})
                continue
            command = _job_command(job, args, deadline)
            log = open(out / "logs" / f"{'-'.join(map(str, job))}.log", "w")
            running[subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)] = (
                job, command, log, time.time())
            print(f"started {' '.join(map(str, job))}", flush=True)
        time.sleep(1)
        for process in [p for p in running if p.poll() is not None or time.time() > started + args.budget_s]:
            if process.poll() is None:
                process.kill()  # past the whole budget: stop it, its log says how far it got
                process.wait()
            job, command, log, job_started = running.pop(process)
            log.close()
            status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
            finished.append({"job": list(job), "status": status, "seconds": round(time.time() - job_started, 1),
                             "command": " ".join(shlex.quote(c) for c in command)})
            print(f"{status:>10}  {' '.join(map(str, job))}  ({time.time() - job_started:.0f} s)", flush=True)
    summary = {"command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]), "budget_s": args.budget_s,
               "wall_time_s": round(time.time() - started, 1), "jobs": finished}
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"all jobs done in {summary['wall_time_s']:.0f} s; outputs in {out}; next: python benchmarks/dvae.py "
          f"collect {out}")


# --- collect --------------------------------------------------------------------------------------
def _read_folder(out: Path) -> tuple[dict, list[dict]]:
    """A run folder's benchmark.json (or {}) and its job files (see job_stem), each with the job file's name."""
    bench = json.loads((out / "benchmark.json").read_text()) if (out / "benchmark.json").exists() else {}
    records = [{**json.loads(path.read_text()), "path": path} for path in sorted(out.glob("*-seeds*.json"))]
    return bench, records


def _jobs(benches: list[dict]) -> list[dict]:
    """Every folder's job list, each entry with its folder's command.

    A configuration that a later folder ran is not listed as 'not run'; a job
    that did not finish (failed or stopped) and that a later folder ran in
    full, same seeds, is kept with ``superseded_by`` naming that run.
    """
    ran = {}
    for bench in benches:
        for entry in bench.get("jobs", []):
            if entry["status"] == "ok":
                ran.setdefault(tuple(entry["job"][:5]), bench.get("command"))
                ran.setdefault(tuple(entry["job"]), bench.get("command"))
    listed = []
    for bench in benches:
        for entry in bench.get("jobs", []):
            if entry["status"].startswith("not run") and tuple(entry["job"][:5]) in ran:
                continue
            entry = {**entry, "run_by": bench.get("command")}
            if entry["status"] != "ok" and ran.get(tuple(entry["job"])) not in (None, bench.get("command")):
                entry["superseded_by"] = ran[tuple(entry["job"])]
            listed.append(entry)
    return listed


def collect(args) -> dict:
    """Merge run folders' job files into results/dvae.json (+ prototypes) and ship the best main seed.

    Several folders can be merged (runs made at different times or on
    different machines); every configuration keeps the devices, commits and
    commands of its own jobs, and the top level lists all of them.
    """
    from objectcentric.experiments.dvae import merge_reports, run_name
    from objectcentric.provenance import current_command, git_commit

    folders = [Path(folder) for folder in args.out]
    benches, reports, skipped, provenances, prototypes = [], [], [], [], {}
    for folder in folders:
        bench, records = _read_folder(folder)
        benches.append(bench)
        for record in records:
            origin = {**record["provenance"], "commit": _commit(record["provenance"]["commit"], args.commit)}
            provenances.append(origin)
            if "skipped" in record:
                skipped.append({key: record[key] for key in ("model", "dataset", "estimator", "k", "variant", "skipped")})
                continue
            report = record["report"]
            reports.append({**report, "job_file": record["path"].name, "provenance": origin})
            if record["path"].with_suffix(".npz").exists():
                name = run_name(*(report[key] for key in ("model", "dataset", "estimator", "k", "variant")))
                prototypes.setdefault(name, []).append(
                    (report["seeds"][0], np.load(record["path"].with_suffix(".npz"))["prototypes"]))
    if not reports:
        raise SystemExit(f"no job results in {', '.join(map(str, folders))}")
    merged = merge_reports(reports)
    quick = any(d["quick"] for d in merged["details"].values())

    def distinct(key: str) -> str:
        return "; ".join(dict.fromkeys(str(p[key]) for p in provenances))

    commands = [bench["command"] for bench in benches if "command" in bench]
    result = {
        "description": ("Unsupervised clustering accuracy of D-VAE and D-VAE-ST (Chapter 5): clusters mapped to "
                        "classes by Hungarian matching (K = classes) or majority (K > classes), on the training "
                        "images (seed 000's protocol) and the test images. Seeds of one configuration were "
                        "trained side by side in one process (or one process per seed with --per-seed); "
                        "seconds_per_epoch is per job, for all its seeds together, measured while other jobs "
                        "shared the machine; each run lists the devices and commits of its jobs."),
        "quick": quick,
        "command": " && ".join(commands) if commands else current_command(),
        "commit": distinct("commit"),
        "device": distinct("device"),
        "seed": min(p["seed"] for p in provenances),
        "wall_time_s": round(sum(bench.get("wall_time_s", 0) for bench in benches)
                             or sum(p["wall_time_s"] for p in provenances), 1),
        "job_wall_time_s_total": round(sum(p["wall_time_s"] for p in provenances), 1),
        "date": max(p["date"] for p in provenances),
        "collected_by": current_command(),
        "collected_at_commit": git_commit(),
        "anchor": {"source": "seed 000 (strimadec thesis), D-VAE-ST, FullMNIST, RELAX, 10 seeds, training images",
                   "best": 0.9352, "mean": 0.773, "worst": 0.685,
                   "targets": {"dvae_st FullMNIST mean": 0.90, "dvae_st FullMNIST best": 0.95,
                               "dvae FullMNIST": 0.5886, "FashionMNIST": 0.6191, "SimplifiedMNIST": 0.9943}},
        **merged,
        "skipped": skipped,
        "jobs": _jobs(benches),
    }
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(result, indent=1) + "\n")
    np.savez_compressed(Path(args.prototypes), **{name: np.concatenate([a for _, a in sorted(parts, key=lambda p: p[0])])
                                                  for name, parts in prototypes.items()})
    print(f"wrote {results_path} ({len(result['runs'])} runs) and {args.prototypes}")
    for row in result["runs"]:
        print(f"  {row['model']:8s} {row['dataset']:16s} {row['estimator']:9s} k={row['k']:<3d} {row['variant']:7s} "
              f"{row['split']:5s} mean {row['mean']:.4f} best {row['best']:.4f} worst {row['worst']:.4f}")
    if args.ship and not quick:
        ship(folders, args.commit)
    return result


def _commit(recorded: str, given: str | None) -> str:
    """The commit a job used: the recorded one; where it recorded none (a copy without git metadata, as on a
    lent GPU machine), ``--commit`` if given, else this checkout's, said so."""
    from objectcentric.provenance import git_commit

    if recorded != "unknown":
        return recorded
    if given:
        return given
    return f"{git_commit()} (at collection: the run's copy had no git metadata)"


def ship(folders, commit: str | None = None) -> None:
    """Copy the best seed of the main configuration found in ``folders`` into checkpoints/ and the manifest."""
    import torch

    from objectcentric import checkpoints
    from objectcentric.experiments.dvae import checkpoint_name

    from objectcentric.experiments.dvae import run_name

    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    candidates = sorted(path for folder in folders for path in folder.glob(f"{run_name(*MAIN)}-seeds*-best.pt"))
    if not candidates:
        print(f"no checkpoint of {run_name(*MAIN)} in {', '.join(map(str, folders))}: nothing shipped")
        return
    payloads = [(path, torch.load(path, map_location="cpu", weights_only=True)) for path in candidates]
    path, payload = max(payloads, key=lambda p: p[1]["metrics"]["train_accuracy"])
    destination = checkpoints.checkpoint_dir() / checkpoint_name()
    checkpoints.export_checkpoint(path, destination)
    config = payload["train_config"]
    info = {**config["provenance"], "seed": config["seed"], "wall_time_s": round(payload["wall_time_s"], 1)}
    info["commit"] = _commit(info.get("commit", "unknown"), commit)
    metrics = {**{k: round(v, 5) for k, v in payload["metrics"].items()}, "epochs": payload["epoch"]}
    entry = checkpoints.record_in_manifest(destination, info, metrics)
    print(f"shipped {destination} ({entry['bytes'] / 1e6:.1f} MB, seed {config['seed']}, "
          f"train accuracy {metrics['train_accuracy']:.4f})")


def pack_data(args) -> None:
    """Write MNIST's and Fashion-MNIST's raw files gzipped into DIR/<dataset>/raw (to carry to another machine)."""
    from objectcentric.data.fashion_mnist import prepare_fashion_mnist
    from objectcentric.data.mnist import RAW_FILES, prepare_mnist

    for folder, prepare in (("MNIST", prepare_mnist), ("FashionMNIST", prepare_fashion_mnist)):
        source = prepare() / folder / "raw"
        target = Path(args.dir) / folder / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for name in RAW_FILES:
            with open(source / name, "rb") as raw, gzip.open(target / f"{name}.gz", "wb", compresslevel=9) as packed:
                packed.write(raw.read())
    size = sum(p.stat().st_size for p in Path(args.dir).rglob("*.gz"))
    print(f"packed {size / 1e6:.1f} MB into {args.dir}; use it with OBJECTCENTRIC_DATA={args.dir}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="train every configuration, --jobs processes at a time")
    go.add_argument("--out", default="runs/dvae_out")
    go.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    go.add_argument("--seed", type=int, default=0, help="added to every job's seeds")
    go.add_argument("--jobs", type=int, default=1, help="processes at the same time")
    go.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    go.add_argument("--epochs", type=int, help="override the recipe's epochs (default: FULL's)")
    go.add_argument("--budget-s", type=float, default=450, help="wall-clock budget for the whole run")
    go.add_argument("--margin-s", type=float, default=45, help="training stops this long before the budget ends")
    go.add_argument("--min-start-s", type=float, default=150, help="no job starts with less time left than this")
    go.add_argument("--only", nargs="+", help="run only jobs whose description contains one of these words")
    go.add_argument("--seeds", help="seed range A-B for every job instead of its own (e.g. to add seeds 2-4)")
    go.add_argument("--per-seed", action="store_true",
                    help="one process per seed instead of the seeds side by side (faster per seed on a CPU)")
    go.add_argument("--quick", action="store_true", help="tiny settings, two seeds: a smoke test, not results")
    go.set_defaults(handler=run)
    gather = commands.add_parser("collect", help="merge run folders into results/dvae.json")
    gather.add_argument("out", nargs="+", help="one or more run folders")
    gather.add_argument("--results", default=str(RESULTS))
    gather.add_argument("--prototypes", default=str(PROTOTYPES))
    gather.add_argument("--no-ship", dest="ship", action="store_false", help="do not touch checkpoints/")
    gather.add_argument("--commit", help="the commit of jobs that recorded none (run from a copy without .git)")
    gather.set_defaults(handler=collect)
    pack = commands.add_parser("pack-data", help="MNIST and Fashion-MNIST as .gz files in one folder")
    pack.add_argument("dir")
    pack.set_defaults(handler=pack_data)
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
