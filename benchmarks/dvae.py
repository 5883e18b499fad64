"""D-VAE and D-VAE-ST clustering (Chapter 5): the recorded runs through the book's runner, then results/dvae.json.

    python benchmarks/dvae.py run --device cuda --out runs/dvae --max-parallel 6 --budget-s 450
    python benchmarks/dvae.py run --quick --device cpu --out /tmp/dvae_smoke --executor inline
    python benchmarks/dvae.py run --device cpu --out runs/dvae --only relax nvil --seeds 0-2 --threads 1
    python benchmarks/dvae.py collect runs/dvae      # -> results/dvae.json, results/dvae_prototypes.npz,
                                                     #    checkpoints/dvae_st_fullmnist.pt + manifest
    python benchmarks/dvae.py ship-lowest-elbo runs/dvae_st_seed*   # retrained seeds: the lowest -ELBO ships
    python benchmarks/dvae.py pack-data data/gz      # MNIST + Fashion-MNIST as .gz (~41 MB), to carry

The same experiment runs with ``python -m objectcentric reproduce dvae --scale full``
(all of it, then collected). ``run`` is a sweep (:func:`objectcentric.runner.sweep`)
of the experiment's jobs, one run per (configuration, seed), with a filter
(``--only``), other seeds (``--seeds``) and a time budget: every run stops at
the deadline (``Stop``) and resumes where it stopped when ``run`` is called
again. ``collect`` scores every run in the folder and writes through
:mod:`objectcentric.records`; the main configuration's seed with the lowest
training -ELBO is shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import time
from pathlib import Path


def select_jobs(only=None, seeds: str | None = None, quick: bool = False, epochs: int | None = None) -> list:
    """The experiment's jobs whose configuration (``kind dataset estimator k variant``) holds one of the words
    ``only``; ``seeds`` (``"0-4"``, ``"0,3"``) replaces each configuration's seeds; ``epochs`` its epochs."""
    from objectcentric.cli import parse_seeds
    from objectcentric.experiments.dvae import experiment_jobs
    from objectcentric.runner import Job

    jobs = experiment_jobs("quick" if quick else "full")
    jobs = [job for job in jobs if not only or any(word in " ".join(map(str, job.recipe.configuration()))
                                                  for word in only)]
    if epochs:
        jobs = [Job(dataclasses.replace(job.recipe, epochs=epochs), job.seed) for job in jobs]
    if seeds:
        recipes = list({job.recipe: None for job in jobs})
        jobs = [Job(recipe, seed) for recipe in recipes for seed in parse_seeds(seeds)]
    return jobs


def run(args) -> None:
    from objectcentric.runner import sweep
    from objectcentric.train import Stop

    jobs = select_jobs(args.only, args.seeds, args.quick, args.epochs)
    stop = Stop(deadline=time.time() + args.budget_s) if args.budget_s else None
    records = sweep(jobs, args.out, executor=args.executor, max_parallel=args.max_parallel, device=args.device,
                    stop=stop, threads=args.threads)
    for key, record in records.items():
        print(f"{(record or {}).get('status', 'missing'):>8}  {key}")
    print(f"next: python benchmarks/dvae.py collect {args.out}")


def collect(args) -> dict:
    """Score every D-VAE run in ``out`` and write the results (quick runs into ``out``, never the book's)."""
    from objectcentric.checkpoints import checkpoint_dir
    from objectcentric.experiments.dvae import EXPERIMENT, DVAERecipe
    from objectcentric.records import results_dir
    from objectcentric.runner import Outputs, read_record

    out = Path(args.out)
    records = {path.name: record for path in sorted(out.iterdir()) if path.is_dir()
               for record in [read_record(path)] if record and record.get("recipe") == DVAERecipe.name}
    if not records:
        raise SystemExit(f"no D-VAE runs in {out}")
    quick = any(record["settings"].get("quick") for record in records.values())
    outputs = Outputs(runs=out, results=Path(args.results) if args.results else (out / "results" if quick else results_dir()),
                      checkpoints=Path(args.checkpoints) if args.checkpoints else
                      (out / "checkpoints" if quick else checkpoint_dir()), scale="quick" if quick else "full")
    result = EXPERIMENT.collect(records, outputs)
    for row in result.get("runs", []):
        print(f"  {row['model']:8s} {row['dataset']:16s} {row['estimator']:9s} k={row['k']:<3d} {row['variant']:7s} "
              f"{row['split']:5s} mean {row['mean']:.4f} best {row['best']:.4f} worst {row['worst']:.4f}")
    return result


def ship_lowest_elbo(args) -> None:
    """Ship the run with the lowest training -ELBO among retrained runs of the main configuration."""
    from objectcentric.experiments.dvae import ship_lowest_elbo

    entry = ship_lowest_elbo(args.runs, results=args.results, checkpoints=args.checkpoints)
    print(entry["note"])


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
    from objectcentric.runner import EXECUTORS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="train the recorded configurations (a sweep; resumable)")
    go.add_argument("--out", default="runs/dvae")
    go.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    go.add_argument("--executor", choices=EXECUTORS, default="local")
    go.add_argument("--max-parallel", type=int, default=1, help="runs at the same time")
    go.add_argument("--threads", type=int, help="torch threads per run")
    go.add_argument("--epochs", type=int, help="override every configuration's epochs")
    go.add_argument("--budget-s", type=float, help="stop every run this many seconds from now (rerun to resume)")
    go.add_argument("--only", nargs="+", help="only configurations whose description contains one of these words")
    go.add_argument("--seeds", help="seeds for every configuration instead of its own, e.g. 0-4 or 0,3")
    go.add_argument("--quick", action="store_true", help="the quick scale: a smoke test, not results")
    go.set_defaults(handler=run)
    gather = commands.add_parser("collect", help="score a run folder into results/dvae.json and ship")
    gather.add_argument("out", help="the run folder of `run`")
    gather.add_argument("--results", help="results folder (default results/, or OUT/results for quick runs)")
    gather.add_argument("--checkpoints", help="checkpoints folder (default checkpoints/, or OUT/checkpoints)")
    gather.set_defaults(handler=collect)
    picked = commands.add_parser("ship-lowest-elbo", help="of retrained runs of the main configuration, ship the "
                                 "one with the lowest training -ELBO (results/dvae.json: shipped_main)")
    picked.add_argument("runs", nargs="+", help="run folders (`python -m objectcentric train dvae --seed N ...`)")
    picked.add_argument("--results", help="results folder holding dvae.json (default results/)")
    picked.add_argument("--checkpoints", help="checkpoints folder (default checkpoints/)")
    picked.set_defaults(handler=ship_lowest_elbo)
    pack = commands.add_parser("pack-data", help="MNIST and Fashion-MNIST as .gz files in one folder")
    pack.add_argument("dir")
    pack.set_defaults(handler=pack_data)
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
