"""The β-VAE sweep of Chapter 2: seed 001's 18 ball runs plus β on shapes, with MIG and the β-VAE metric.

    python benchmarks/beta_vae.py --device cuda --jobs 8 --deadline-s 480 --out runs/beta_vae_out   # full sweep
    python benchmarks/beta_vae.py --quick --device cpu --out /tmp/beta_vae_quick    # a smoke test, not results
    python benchmarks/beta_vae.py --ship runs/beta_vae_out    # into results/ and checkpoints/ (+ manifest)

The sweep trains 3 architectures (fc, conv, allconv) × β ∈ {0.1, 0.5, 1} on
one-ball and two-ball pictures, and the conv model at β ∈ {1, 2, 4, 8} (one
seed each) on the dSprites-like shapes; settings are FULL in
src/objectcentric/experiments/beta_vae.py. Runs go ``--jobs`` at a time, each
in its own process. After every finished run it rewrites three files in
``--out``: beta_vae.json (per-run numbers, mig_by_beta,
betavae_metric_by_beta, provenance), beta_vae_frames.pt (traversal frames and
reconstructions of every run) and beta_vae_models.pt (the shapes models the
chapter decodes live). Rerunning with the same ``--out`` trains only the runs
not recorded there yet; training checkpoints (resumable) go to ``--runs-dir``.
"""

import argparse
import sys
from pathlib import Path

from objectcentric.experiments.beta_vae import DATASETS, ship, sweep
from objectcentric.provenance import current_command

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/beta_vae_out", help="folder for the three output files")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time, one process each")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the ball runs; shapes use seed, seed+1, ...")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs, not results")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--runs-dir", help="resumable training checkpoints (default: none kept)")
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: 1 when --jobs > 1)")
    parser.add_argument("--no-resume", action="store_true", help="retrain runs already recorded in --out")
    parser.add_argument("--deadline-s", type=float,
                        help="end the sweep within this many seconds: runs stop training early (and say so)")
    parser.add_argument("--ship", metavar="OUT", help="copy a finished sweep's outputs into results/ and checkpoints/")
    args = parser.parse_args(argv)

    if args.ship:
        for path in ship(args.ship, ROOT / "results", ROOT / "checkpoints"):
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.1f} MB)")
        return None
    threads = args.threads or (1 if args.jobs > 1 else None)
    results = sweep(args.out, quick=args.quick, jobs=args.jobs, device=args.device, seed=args.seed,
                    datasets=tuple(args.datasets), runs_dir=args.runs_dir, threads=threads,
                    command=current_command(), resume=not args.no_resume, deadline_s=args.deadline_s)
    print(f"wrote {args.out}: {results['n_runs']} runs in {results['wall_time_s']:.0f} s on {results['device']}")
    print(f"MIG by beta: {results['mig_by_beta']}; beta-VAE metric by beta: {results['betavae_metric_by_beta']}")
    if results["target"]:
        print(f"target (MIG >= 0.35 at beta=4 and >= 2x beta=1): {'met' if results['target']['met'] else 'NOT met'}")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
