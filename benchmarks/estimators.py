"""Chapter 3's recorded numbers, results/estimators.json (and checkpoints/categorical_vae_k10.pt), in two parts.

    python benchmarks/estimators.py toys        # variance/bias/timing at fixed parameters, toy curves (CPU, minutes)
    python benchmarks/estimators.py vae --device cuda --max-parallel 6   # the discrete VAE: exact + every estimator
                                                # x the recorded seeds; the best held-out run shipped
    python benchmarks/estimators.py trained     # the gradients' noise at the shipped, trained discrete VAE
    python benchmarks/estimators.py toys --quick   # a smoke test: into runs/estimators/quick/results

Both parts are the chapter's experiment (``python -m objectcentric reproduce
estimators``, which does both at once), run one at a time: each merges its
keys into results/estimators.json through the records writer and keeps the
other's. Part "vae" trains only the runs not yet done in ``--out`` (rerun it
to resume), then collects them. ``--quick`` writes under ``--out``/quick,
never over the book's files.
"""

import argparse
from pathlib import Path

from objectcentric.checkpoints import checkpoint_dir
from objectcentric.experiments.estimators import vae_jobs, write_toys, write_trained_variance, write_vae
from objectcentric.records import results_dir
from objectcentric.runner import EXECUTORS, Outputs, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("toys", "vae", "trained"), default="toys")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs, not results")
    parser.add_argument("--tune-steps", type=int, help="toys: steps tuning the learned parts (default 5000)")
    parser.add_argument("--n-samples", type=int, help="toys: estimates per fixed-parameter check (default 100,000)")
    parser.add_argument("--seed", type=int, default=0, help="toys: the seed")
    parser.add_argument("--device", default=None, help="vae: cpu or cuda (default: the best available)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="vae: where the runs train")
    parser.add_argument("--max-parallel", type=int, default=1, help="vae: runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="vae: torch threads per run")
    parser.add_argument("--out", default="runs/estimators", help="vae: the run folders (quick: also the results)")
    args = parser.parse_args()
    scale = "quick" if args.quick else "full"
    runs = Path(args.out) / scale
    out = Outputs(runs=runs, results=runs / "results" if args.quick else results_dir(),
                  checkpoints=runs / "checkpoints" if args.quick else checkpoint_dir(), scale=scale)
    if args.part == "toys":
        write_toys(out, seed=args.seed, tune_steps=args.tune_steps, n_samples=args.n_samples)
    elif args.part == "trained":
        write_trained_variance(out, device=args.device)
    else:
        records = sweep(vae_jobs(scale), runs, executor=args.executor, max_parallel=args.max_parallel,
                        device=args.device, threads=args.threads)
        write_vae(records, out, device=args.device)
    print(f"wrote {out.results / 'estimators.json'}")


if __name__ == "__main__":
    main()
