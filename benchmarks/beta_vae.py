"""The β-VAE sweep of Chapter 2 within a time limit: ``reproduce beta_vae`` with a deadline.

    python benchmarks/beta_vae.py --device cuda --max-parallel 8 --deadline-s 480   # into results/, checkpoints/
    python benchmarks/beta_vae.py --scale quick --device cpu    # a smoke test into runs/reproduce/quick/
    python benchmarks/beta_vae.py --device cpu --datasets one_ball two_balls --betas 2 4 8   # a part of it
    python benchmarks/beta_vae.py --restate   # recompute the statistics by β of the recorded runs only

The runs are ``objectcentric.experiments.beta_vae.sweep_jobs`` (22 at full
scale), trained by the one sweep runner into ``--out/<scale>/beta_vae/``, the
folder ``python -m objectcentric reproduce beta_vae`` uses; then the
experiment's collect evaluates them and writes results/beta_vae.json and the
shipped files (at the quick scale into ``--out/quick/``). With
``--deadline-s``, every run stops training in time for collect to finish
before it; stopped runs are evaluated as they are and say so, and rerunning
the same command resumes them. ``--datasets`` and ``--betas`` train a part of
the sweep; collect keeps the recorded evaluation of the runs it leaves out
(``kept_from_earlier`` in the results). Without these options, this is
``reproduce beta_vae``.
"""

import argparse
import time
from pathlib import Path

from objectcentric.checkpoints import checkpoint_dir
from objectcentric.experiments import beta_vae as bv
from objectcentric.records import results_dir
from objectcentric.runner import EXECUTORS, Outputs, sweep
from objectcentric.train import Stop


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("quick", "full"), default="full")
    parser.add_argument("--out", default="runs/reproduce", help="run folders go to OUT/SCALE/beta_vae")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--max-parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--threads", type=int, help="torch threads per run")
    parser.add_argument("--datasets", nargs="+", choices=bv.DATASETS, default=bv.DATASETS,
                        help="train only the runs on these pictures")
    parser.add_argument("--betas", nargs="+", type=float, help="train only the runs at these β")
    parser.add_argument("--restate", action="store_true",
                        help="train and evaluate nothing: recompute the statistics by β from the recorded runs")
    parser.add_argument("--deadline-s", type=float, help="end within this many seconds: runs stop early, and say so")
    args = parser.parse_args(argv)

    into_book = args.scale == "full"
    out = Path(args.out) / args.scale
    outputs = Outputs(runs=out / "beta_vae", scale=args.scale,
                      results=results_dir() if into_book else out / "results",
                      checkpoints=checkpoint_dir() if into_book else out / "checkpoints")
    if args.restate:
        return bv.restate(outputs)
    deadline = time.time() + args.deadline_s - bv.EVALUATION_RESERVE_S if args.deadline_s else None
    records = sweep(bv.sweep_jobs(args.scale, args.datasets, args.betas), out / "beta_vae", executor=args.executor,
                    max_parallel=args.max_parallel, device=args.device, threads=args.threads,
                    stop=Stop(deadline=deadline) if deadline else None)
    return bv.collect(records, outputs)


if __name__ == "__main__":
    main()
