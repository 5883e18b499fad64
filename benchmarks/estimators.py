"""Discrete gradient estimators (Chapter 3): variance, bias and speed at fixed parameters, and the toy curves.

    python benchmarks/estimators.py            # full settings (seed 000's: 10,000 / 5,000 steps, 50 repetitions)
    python benchmarks/estimators.py --quick    # a smoke test, not results
    python benchmarks/estimators.py --part vae # only the discrete VAE on MNIST (merged into the file)

At fixed parameters (FIXED_LOGITS below; p(b=1) = 0.73 for the Bernoulli) each
estimator's learned parts are first tuned for --tune-steps steps on their own
control loss (logits frozen), then 100,000 single-sample estimates are drawn:
their variance (summed over the K components), their bias against the exact
gradient and its z-score, and the time per estimate. CONCRETE's bias is also
measured over temperatures. Then the two toy experiments run with every
estimator, and their loss and log-variance curves (mean and std over
repetitions, subsampled) are stored. Part "vae" trains the discrete VAE
(one categorical latent, K = 10) on MNIST with each estimator, at
VAE_FULL's settings, and stores the per-epoch histories under
"categorical_vae" with their own provenance. Writes results/estimators.json,
keeping the part it did not run.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from objectcentric.estimators import make_estimator
from objectcentric.experiments.toy_estimators import (
    ESTIMATOR_NAMES,
    LR,
    TEMPERATURE,
    concrete_bias_by_temperature,
    fixed_parameter_statistics,
    toy_experiment,
    toy_problem,
    tune_control_variate,
    FULL,
    VAE_FULL,
    VAE_QUICK,
    train_categorical_vae,
)
from objectcentric.provenance import provenance

HEADLINE = "categorical"


# Fixed parameters away from the symmetric starting point, where biases can cancel by symmetry.
FIXED_LOGITS = {"replication": [0.0, 1.0], "categorical": [0.2, -0.1, 0.5]}


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
        if name in ("rebar", "relax"):
            stats["learned_temperature"] = estimator.temperature[0].item()
            stats["learned_eta"] = estimator.eta[0].item()
        if name == "nvil":
            stats["learned_baseline"] = (estimator.running_mean[0] + estimator.bias[0]).item()
        estimators[name] = stats
        print(f"{problem:12s} {name:10s} variance {stats['variance']:.3e}  bias_z {stats['bias_z']:6.2f}  "
              f"{stats['seconds_per_estimate'] * 1e3:.2f} ms/estimate")
    torch.manual_seed(seed)
    return {
        "logits": logits[0].tolist(),
        "estimators": estimators,
        "ordering_by_variance": sorted(estimators, key=lambda n: estimators[n]["variance"]),
        "concrete_bias_by_temperature": concrete_bias_by_temperature(logits, cost, n_samples=n_samples),
    }


def vae_benchmark(quick: bool, seed: int, device: str | None) -> dict:
    started = time.perf_counter()
    runs = {}
    for name in ("exact", *ESTIMATOR_NAMES):
        _, result = train_categorical_vae(name, quick=quick, seed=seed, device=device, progress="none")
        history = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in result.history]
        runs[name] = {"history": history, "final_val_exact_neg_elbo": history[-1]["val_exact_neg_elbo"],
                      "wall_time_s": round(result.wall_time_s, 1)}
        print(f"discrete VAE with {name:9s}: held-out exact -ELBO {history[-1]['val_exact_neg_elbo']:.2f} nats "
              f"after {len(history)} epochs ({result.wall_time_s:.0f} s)")
    return {"settings": VAE_QUICK if quick else VAE_FULL, "quick": quick, "runs": runs,
            "provenance": provenance(seed=seed, wall_time_s=time.perf_counter() - started, device=device)}


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
        print(f"toy {label}: {time.perf_counter() - t0:.0f} s")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs, not results")
    parser.add_argument("--part", choices=("toys", "vae", "all"), default="all")
    parser.add_argument("--tune-steps", type=int, default=2000)
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/estimators.json")
    args = parser.parse_args()
    if args.quick:
        args.tune_steps, args.n_samples = 50, 5_000

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    if args.part in ("toys", "all"):
        kept = {k: result[k] for k in ("categorical_vae",) if k in result}
        result = {**toy_benchmark(args), **kept}
        write(out, result)
    if args.part in ("vae", "all"):
        result["categorical_vae"] = vae_benchmark(args.quick, args.seed, args.device)
        write(out, result)


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
