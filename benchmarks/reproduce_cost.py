"""What a full reproduction of the book costs, chapter by chapter: measured throughput times planned steps.

    python benchmarks/reproduce_cost.py                 # every chapter, on the best device here
    python benchmarks/reproduce_cost.py air --steps 30  # one chapter, more timed steps

For every full-scale job of a chapter's experiment (the runs ``reproduce
--scale full`` trains), this times ``--steps`` optimizer steps of its recipe
through the book's one training loop (after ``--warmup`` steps), and
multiplies the seconds per step by the run's planned steps. Training only:
the time to make the data is reported per recipe, and the collection step
(evaluation, metrics) is not counted. Writes ``results/reproduce.json`` through the records writer,
with the GPU minutes that the recorded GPU runs of some chapters imply
(:func:`recorded_gpu_minutes`; no GPU was timed by this script).
"""

from __future__ import annotations

import argparse
import time

import torch

from objectcentric import records
from objectcentric.data.mnist import DatasetUnavailableError
from objectcentric.recipes import load_all
from objectcentric.runner import EXPERIMENTS, configure_device, steps_of
from objectcentric.train import Stop, fit, pick_device


def time_recipe(recipe, device, warmup: int, steps: int) -> dict:
    """Seconds per optimizer step of ``recipe`` on ``device`` (median-free: one timed block after warm-up)."""
    started = time.perf_counter()
    data = recipe.train_data()
    data_s = time.perf_counter() - started
    torch.manual_seed(0)
    model = recipe.build_model()
    recipe.initialize(model, data, 0)
    fit(model, data, recipe, device=device, progress="none", stop=Stop(steps=warmup))
    if device.type == "cuda":
        torch.cuda.synchronize()
    before = time.perf_counter()
    fit(model, data, recipe, device=device, progress="none", stop=Stop(steps=steps))
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - before) / steps
    planned = steps_of(recipe, len(data))
    return {"seconds_per_step": round(per_step, 5), "planned_steps": planned, "data_seconds": round(data_s, 1),
            "train_hours": round(per_step * planned / 3600, 3)}


def recorded_gpu_minutes() -> dict:
    """GPU training minutes per chapter, from the GPU runs the results files record (not timed here).

    D-VAE: seconds per epoch x epochs of every seed that ran on CUDA (one job per configuration, seeds
    side by side); β-VAE: the training wall time of every CUDA run (8 processes shared one GPU, so this
    overstates one run alone); AIR: the full recipe's images over the recorded H100 training throughput,
    per recorded run. Chapters with no GPU run recorded are left out.
    """
    out = {}
    dvae = records.read_results("dvae")
    gpu = [r for r in dvae.get("runs", []) if any("cuda" in d for d in r.get("devices", []))]
    if gpu:
        out["dvae"] = {"minutes": round(sum(r["seconds_per_epoch"] * max(r["epochs"]) for r in gpu) / 60, 1),
                       "configurations": len(gpu), "how": "recorded s/epoch x epochs, seeds trained side by side"}
    beta = [r for r in records.read_results("beta_vae").get("runs", []) if "cuda" in r.get("device", "")]
    if beta:
        out["beta_vae"] = {"minutes": round(sum(r["train_wall_time_s"] for r in beta) / 60, 1), "runs": len(beta),
                           "how": "sum of recorded training wall times, 7-8 runs sharing one GPU"}
    air = records.read_results("air")
    speed = (air.get("speed") or {}).get("gpu", {}).get("train_images_per_s")
    if speed:
        from objectcentric.experiments.air import AIRRecipe

        recipe = AIRRecipe()
        runs = len(EXPERIMENTS["air"].jobs("full"))
        out["air"] = {"minutes": round(runs * recipe.epochs * recipe.n_train / speed / 60, 1), "runs": runs,
                      "how": f"epochs x images / the recorded H100 throughput ({speed:.0f} images/s), per run"}
    return out


def main(argv=None) -> dict:
    load_all()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help=f"default: all of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    configure_device(device)
    started = time.perf_counter()
    chapters = {}
    for chapter in args.chapters or list(EXPERIMENTS):
        jobs = EXPERIMENTS[chapter].jobs("full")
        timed = {}  # recipes that differ only in their seed cost the same
        per_job = []
        for job in jobs:
            if job.recipe not in timed:
                try:
                    timed[job.recipe] = time_recipe(job.recipe, device, args.warmup, args.steps)
                except DatasetUnavailableError as error:  # e.g. EMNIST Letters offline: not trainable here
                    timed[job.recipe] = {"skipped": str(error).splitlines()[0]}
                print(f"{chapter} {job.recipe.run_name(job.seed)}: {timed[job.recipe]}", flush=True)
            per_job.append({"run": job.key, **timed[job.recipe]})
        hours = sum(j.get("train_hours", 0.0) for j in per_job)
        chapters[chapter] = {"runs": len(per_job), "train_hours": round(hours, 2), "jobs": per_job}
    key = "gpu" if device.type == "cuda" else "cpu"
    gpu_recorded = recorded_gpu_minutes()
    body = {key: {"device": records.provenance(seed=0, wall_time_s=0, device=device)["device"],
                  "timed_steps_per_recipe": args.steps, "chapters": chapters,
                  "total_train_hours": round(sum(c["train_hours"] for c in chapters.values()), 2)}}
    if args.chapters:  # one chapter at a time: merge into what is recorded for this device
        old = records.read_results("reproduce").get(key, {})
        merged = {**old.get("chapters", {}), **chapters}
        body[key] = {**body[key], "chapters": merged,
                     "total_train_hours": round(sum(c["train_hours"] for c in merged.values()), 2)}
    body["gpu_recorded_minutes"] = gpu_recorded
    records.write_results("reproduce", body, provenance=records.provenance(
        seed=0, wall_time_s=time.perf_counter() - started, device=device))
    print(f"total: {body[key]['total_train_hours']} h of training on {body[key]['device']}")
    return body


if __name__ == "__main__":
    main()
