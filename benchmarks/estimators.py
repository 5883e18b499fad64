"""Discrete gradient estimators (Chapter 3): variance, bias and speed at fixed parameters, the toy
curves, and the discrete VAE on MNIST with every estimator and several seeds.

    python benchmarks/estimators.py                 # toys, full settings -> results/estimators.json
    python benchmarks/estimators.py toys --quick    # a smoke test, not results
    python benchmarks/estimators.py vae --seeds 0 1 2 --jobs 6 --device cuda --out runs/estimators_vae
    python benchmarks/estimators.py fold --runs runs/estimators_vae   # -> results/estimators.json + a checkpoint

Part "toys" (minutes on one CPU core). At fixed parameters (FIXED_LOGITS
below; p(b=1) = 0.73 for the Bernoulli) each estimator's learned parts are
first tuned for --tune-steps steps on their own control loss (logits frozen),
then 100,000 single-sample estimates are drawn: their variance (summed over
the K components), their bias against the exact gradient and its z-score,
and the time per estimate. CONCRETE's bias is also measured over
temperatures. Then the two toy experiments run with every estimator, and
their loss and log-variance curves (mean and std over repetitions,
subsampled) are stored. Writes OUT/estimators.json (default OUT: results),
keeping its "categorical_vae" part.

Part "vae" (the GPU run). Trains the discrete VAE (one categorical latent,
K = 10) on MNIST at VAE_FULL's settings with the exact gradient and every
estimator, once per seed, --jobs runs at a time in separate processes.
Each run writes OUT/<estimator>_seed<seed>.json (its per-epoch history and
provenance) and keeps a resumable training checkpoint under --work
(default: OUT/../<name of OUT>_work), so rerunning the same command
continues where it stopped and skips finished runs. At the end the model of
the run with the best held-out bound is exported, without optimizer state,
to OUT/categorical_vae_k10.pt, for the notebook's picture of prototypes, and
every estimator's gradient variance is measured at that model, frozen
(vae_gradient_statistics), into OUT/gradient_variance.json.

Part "fold" reads those files (--runs DIR) into OUT/estimators.json under
"categorical_vae" (per estimator: every seed's history and the mean and
spread of the final held-out bound; the gradient variances), and ships DIR/categorical_vae_k10.pt
into checkpoints/ with its manifest entry.
"""

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from objectcentric.estimators import make_estimator
from objectcentric.experiments.toy_estimators import (
    ESTIMATOR_NAMES,
    FULL,
    LR,
    TEMPERATURE,
    VAE_CHECKPOINT,
    VAE_FULL,
    VAE_QUICK,
    concrete_bias_by_temperature,
    fixed_parameter_statistics,
    toy_experiment,
    toy_problem,
    train_categorical_vae,
    tune_control_variate,
    vae_gradient_statistics,
)
from objectcentric.provenance import current_command, git_commit, provenance

HEADLINE = "categorical"
VAE_NAMES = ("exact", *ESTIMATOR_NAMES)

# Fixed parameters away from the symmetric starting point, where biases can cancel by symmetry.
FIXED_LOGITS = {"replication": [0.0, 1.0], "categorical": [0.2, -0.1, 0.5]}


# --- part "toys" ----------------------------------------------------------------------------------
def fixed_parameter_benchmark(problem: str, tune_steps: int, n_samples: int, seed: int) -> dict:
    cost, _ = toy_problem(problem)
    logits = torch.tensor([FIXED_LOGITS[problem]])
    estimators = {}
    for name in ESTIMATOR_NAMES:
        torch.manual_seed(seed)
        estimator = make_estimator(name, logits.shape[-1], temperature=TEMPERATURE)
        tune_control_variate(estimator, logits, cost, steps=tune_steps)
        torch.manual_seed(seed + 1)
        stats = fixed_parameter_statistics(estimator, logits, cost, n_samples=n_samples)
        baseline = estimator.baseline if name in ("rebar", "relax") else estimator
        if name in ("rebar", "relax"):
            stats["learned_temperature"] = estimator.temperature[0].item()
            stats["learned_eta"] = estimator.eta[0].item()
        if name in ("nvil", "rebar", "relax"):
            stats["learned_baseline"] = (baseline.running_mean[0] + baseline.bias[0]).item()
        estimators[name] = stats
        print(f"{problem:12s} {name:10s} variance {stats['variance']:.3e}  bias_z {stats['bias_z']:6.2f}  "
              f"{stats['seconds_per_estimate'] * 1e3:.2f} ms/estimate", flush=True)
    torch.manual_seed(seed)
    return {
        "logits": logits[0].tolist(),
        "expected_cost": float(logits.softmax(-1)[0] @ cost(torch.eye(logits.shape[-1]))),
        "estimators": estimators,
        "ordering_by_variance": sorted(estimators, key=lambda n: estimators[n]["variance"]),
        "concrete_bias_by_temperature": concrete_bias_by_temperature(logits, cost, n_samples=n_samples),
    }


def toy_benchmark(args) -> dict:
    started = time.perf_counter()
    fixed = {problem: fixed_parameter_benchmark(problem, args.tune_steps, args.n_samples, args.seed)
             for problem in ("replication", "categorical")}
    toys = {}
    for label, problem, target in (("replication_t0.499", "replication", 0.499),
                                   ("replication_t0.501", "replication", 0.501),
                                   ("categorical", "categorical", None)):
        t0 = time.perf_counter()
        toys[label] = {"problem": problem, "target": target if target is not None else [0.34, 0.33, 0.33],
                       "settings": {**(FULL[problem] if not args.quick else {}), "lr": LR, "temperature": TEMPERATURE},
                       "curves": toy_experiment(problem, quick=args.quick, seed=args.seed, device=args.device,
                                                target=target)}
        print(f"toy {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    headline = fixed[HEADLINE]["estimators"]
    return {
        "description": ("Gradient estimators for categorical variables at fixed parameters (the logits in "
                        "fixed_parameter; learned parts tuned first) and on seed 000's toy problems. "
                        "variance: summed over the K components of one single-sample estimate; bias_z: "
                        "largest |mean - exact| / standard error over the components."),
        "quick": args.quick,
        "headline_problem": HEADLINE,
        "variance": {n: s["variance"] for n, s in headline.items()},
        "bias_z": {n: s["bias_z"] for n, s in headline.items()},
        "seconds_per_estimate": {n: s["seconds_per_estimate"] for n, s in headline.items()},
        "tune_steps": args.tune_steps,
        "fixed_parameter": fixed,
        "toy_experiments": toys,
        **provenance(seed=args.seed, wall_time_s=time.perf_counter() - started, device=args.device),
    }


# --- part "vae" -------------------------------------------------------------------------------------
def vae_run(name: str, seed: int, quick: bool, epochs, out: str, work: str, device: str, started_by: dict) -> dict:
    """Train one (estimator, seed) run, resumably; write OUT/<name>_seed<seed>.json. Runs in a worker process.

    ``started_by`` holds the command and commit of the parent process (a worker's own command line
    is multiprocessing's).
    """
    torch.set_num_threads(1)  # many runs share the machine's cores
    result_path = Path(out) / f"{name}_seed{seed}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    checkpoint = Path(work) / f"{name}_seed{seed}.pt"
    _, result = train_categorical_vae(name, quick=quick, epochs=epochs, checkpoint=checkpoint, seed=seed,
                                      device=device, progress="none")
    history = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in result.history]
    record = {"estimator": name, "seed": seed, "quick": quick,
              "settings": {**(VAE_QUICK if quick else VAE_FULL), **({"epochs": epochs} if epochs else {})},
              "history": history, "final_val_exact_neg_elbo": history[-1]["val_exact_neg_elbo"],
              "training_checkpoint": str(checkpoint),
              # fit's wall time adds up the sessions of a resumed run
              **provenance(seed=seed, wall_time_s=result.wall_time_s, device=device,
                           command=started_by["command"]), "commit": started_by["commit"]}
    write(result_path, record)
    return record


def vae_benchmark(args) -> None:
    out = Path(args.out)
    work = Path(args.work) if args.work else out.parent / f"{out.name}_work"
    out.mkdir(parents=True, exist_ok=True)
    # Longest first (the exact gradient decodes all K classes; REBAR and RELAX differentiate twice).
    order = {"exact": 0, "relax": 1, "rebar": 2, "nvil": 3, "concrete": 4, "reinforce": 5}
    runs = sorted(((n, s) for s in args.seeds for n in VAE_NAMES), key=lambda r: (order[r[0]], r[1]))
    started = time.perf_counter()
    records = []
    started_by = {"command": current_command(), "commit": git_commit()}
    # "spawn": each worker starts a fresh interpreter, which CUDA needs.
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(vae_run, n, s, args.quick, args.epochs, str(out), str(work), args.device,
                               started_by): (n, s) for n, s in runs}
        for future in as_completed(futures):
            record = future.result()
            records.append(record)
            print(f"{record['estimator']:9s} seed {record['seed']}: held-out exact -ELBO "
                  f"{record['final_val_exact_neg_elbo']:.2f} nats after {len(record['history'])} epochs "
                  f"({record['wall_time_s']:.0f} s; {time.perf_counter() - started:.0f} s since start)", flush=True)
    best = min(records, key=lambda r: r["final_val_exact_neg_elbo"])
    from objectcentric.checkpoints import export_checkpoint

    shipped = export_checkpoint(best["training_checkpoint"], out / VAE_CHECKPOINT)
    write(out / "categorical_vae_k10.json", {"estimator": best["estimator"], "seed": best["seed"],
                                             "final_val_exact_neg_elbo": best["final_val_exact_neg_elbo"],
                                             **{k: best[k] for k in ("command", "commit", "device", "wall_time_s")}})
    print(f"{len(records)} runs in {time.perf_counter() - started:.0f} s; best: {best['estimator']} seed "
          f"{best['seed']}, exported to {shipped}", flush=True)

    # Every estimator's variance at that trained model, frozen: the toy's fixed-parameter check on a real cost.
    from objectcentric.checkpoints import load_model_state, read_checkpoint
    from objectcentric.models.categorical_vae import CategoricalVAE

    t0 = time.perf_counter()
    payload = read_checkpoint(shipped)
    model = CategoricalVAE(**payload["model_config"])
    load_model_state(shipped, model, payload)
    statistics = vae_gradient_statistics(model.to(args.device), quick=args.quick)
    write(out / "gradient_variance.json", {
        **statistics, "model": {"estimator": best["estimator"], "seed": best["seed"]},
        **provenance(seed=0, wall_time_s=time.perf_counter() - t0, device=args.device,
                     command=started_by["command"]), "commit": started_by["commit"]})
    for name, stats in statistics["estimators"].items():
        print(f"at the trained model: {name:9s} variance {stats['variance']:.4g}  "
              f"relative error of the mean {stats['relative_error']:.3g}", flush=True)


# --- part "fold" ------------------------------------------------------------------------------------
def fold(args) -> None:
    """Fold the per-run files of part "vae" into OUT/estimators.json and ship the exported model."""
    runs_dir = Path(args.runs)
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*_seed*.json"))]
    if not records:
        raise SystemExit(f"no <estimator>_seed<seed>.json files in {runs_dir}: run part 'vae' first")
    quick = any(r["quick"] for r in records)
    by_name = {}
    for name in VAE_NAMES:
        mine = sorted((r for r in records if r["estimator"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        finals = np.array([r["final_val_exact_neg_elbo"] for r in mine])
        by_name[name] = {
            "seeds": [{k: r[k] for k in ("seed", "history", "final_val_exact_neg_elbo", "wall_time_s")}
                      for r in mine],
            "final_val_exact_neg_elbo_mean": round(float(finals.mean()), 3),
            "final_val_exact_neg_elbo_std": round(float(finals.std(ddof=1)), 3) if len(finals) > 1 else None,
        }
    first = records[0]
    block = {
        "settings": first["settings"], "quick": quick, "seeds": sorted({r["seed"] for r in records}),
        "runs": by_name,
        "provenance": {k: first[k] for k in ("command", "commit", "device", "date", "torch")}
        | {"wall_time_s": round(sum(r["wall_time_s"] for r in records), 1),
           "devices": sorted({r["device"] for r in records}), "folded_by": current_command()},
    }
    variance_file = runs_dir / "gradient_variance.json"
    if variance_file.exists():
        block["gradient_variance"] = json.loads(variance_file.read_text())
    results = Path(args.out) / "estimators.json"
    result = json.loads(results.read_text()) if results.exists() else {}
    result["categorical_vae"] = block
    write(results, result)
    model_file = runs_dir / VAE_CHECKPOINT
    if model_file.exists() and not quick:
        from objectcentric import checkpoints

        info = json.loads((runs_dir / "categorical_vae_k10.json").read_text())
        destination = checkpoints.checkpoint_dir() / VAE_CHECKPOINT
        checkpoints.read_checkpoint(model_file)  # a readable objectcentric checkpoint, or a clear error
        shutil.copyfile(model_file, destination)
        metrics = {"val_exact_neg_elbo": info["final_val_exact_neg_elbo"], "estimator": info["estimator"],
                   "epochs": len(by_name[info["estimator"]]["seeds"][0]["history"])}
        entry = checkpoints.record_in_manifest(
            destination, {k: info[k] for k in ("command", "commit", "device", "wall_time_s")}
            | {"seed": info["seed"]}, metrics)
        print(f"shipped {destination} ({entry['bytes'] / 1e6:.1f} MB), listed in manifest.json")
    for name, block_ in by_name.items():
        std = block_["final_val_exact_neg_elbo_std"]
        print(f"{name:9s} {len(block_['seeds'])} seeds: held-out exact -ELBO "
              f"{block_['final_val_exact_neg_elbo_mean']:.2f}" + (f" ± {std:.2f}" if std is not None else ""))


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("toys", "vae", "fold"), default="toys")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs, not results")
    parser.add_argument("--tune-steps", type=int, default=5000, help="toys: steps tuning the learned parts")
    parser.add_argument("--n-samples", type=int, default=100_000, help="toys: estimates per fixed-parameter check")
    parser.add_argument("--seed", type=int, default=0, help="toys: the seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="vae: one run per seed and estimator")
    parser.add_argument("--jobs", type=int, default=1, help="vae: runs at a time, one process each")
    parser.add_argument("--epochs", type=int, help="vae: override VAE_FULL's number of epochs")
    parser.add_argument("--device", default=None, help="cpu or cuda (toys: cpu; vae: the best available)")
    parser.add_argument("--out", help="folder written to (toys, fold: results; vae: runs/estimators_vae)")
    parser.add_argument("--work", help="vae: folder of the resumable training checkpoints")
    parser.add_argument("--runs", default="runs/estimators_vae", help="fold: the folder part 'vae' wrote")
    args = parser.parse_args()
    if args.part == "toys":
        args.device = args.device or "cpu"
        args.out = args.out or "results"
        if args.quick:
            args.tune_steps, args.n_samples = 50, 5_000
        out = Path(args.out) / "estimators.json"
        previous = json.loads(out.read_text()) if out.exists() else {}
        kept = {k: previous[k] for k in ("categorical_vae",) if k in previous}
        write(out, {**toy_benchmark(args), **kept})
    elif args.part == "vae":
        from objectcentric.train import pick_device

        args.device = str(pick_device(args.device))
        args.out = args.out or "runs/estimators_vae"
        vae_benchmark(args)
    else:
        args.out = args.out or "results"
        fold(args)


if __name__ == "__main__":
    main()
