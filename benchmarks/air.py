"""AIR on Multi-MNIST: count accuracy of trained runs, and speed against seed 002's reference.

    python benchmarks/air.py accuracy runs/air/air_seed3 runs/air/air_seed0 ...  # count accuracy per run
    python benchmarks/air.py speed --reference ../shared/reference                # ours vs the reference
    python benchmarks/air.py beyond --threads 2                                   # 3-5 digits, box IoU
    python benchmarks/air.py reference --reference ../shared/reference --threads 1  # the reference, our canvases

``accuracy`` is the recorded experiment's evaluation
(``objectcentric.experiments.air.evaluate_runs``; ``python -m objectcentric
reproduce air`` trains the runs and calls it too): it counts the digits of
10,000 fresh test canvases (data seed 1, so none of the canvases seen during
training or validation, digits from MNIST's *test* split) and of 10,000 fresh
3-digit canvases, with greedy inference (each z_pres at its more likely
value), and also with sampled z_pres, seed 002's protocol. It takes run
folders (or their checkpoints, or a shipped checkpoint) and writes the
numbers per run into ``results/air.json``; the run named by ``--ship``
(default: the first) gives ``count_accuracy``.

``speed`` times training steps and batched inference of our AIR and of seed
002's reference implementation (imported from the folder given by
``--reference``, never copied here) in the same process, on the same device and
data: training at the reference's batch size 64 (zero_grad, loss, backward,
Adam step, count accuracy read back, as the reference's throughput script
does) and at our recipe's batch size; inference under ``no_grad`` on a batch of
1000 canvases. Blocks of steps are repeated and the median is reported, since
the CPU here is shared. It replaces only the speed keys of ``results/air.json``.

``reference`` trains seed 002's reference AIR (imported from ``--reference``)
under its own settings (its model, optimiser, batch 64, 50 epochs on 10,000
canvases) on canvases of our generator (the training data seed), then counts
the digits of the very test canvases the ``accuracy`` command uses, greedy and
sampled, beside the shipped model on the same canvases in the same run. It
writes only ``reference_same_canvases``.

``beyond`` runs the shipped model for 6 steps instead of its 3 on 2,000 canvases
with exactly 3, 4 and 5 test digits that do not overlap, and measures how well
its windows fit the true boxes (Hungarian matching on IoU) on the standard test
canvases (``objectcentric.experiments.air.beyond_report``; its protocol string
is written with the numbers). It replaces only its own keys.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from objectcentric.timing import time_inference, time_training
from objectcentric import records
from objectcentric.checkpoints import verify_shipped
from objectcentric.data.multi_mnist import multi_mnist_splits
from objectcentric.experiments.air import (DATA_SEED, REFERENCE, TARGETS, TEST_DATA_SEED, AIRRecipe, beyond_report,
                                           count_report, evaluate_runs, fresh_test_canvases, load_air_run, protocol)
from objectcentric.train import pick_device

RECIPE = AIRRecipe()


def accuracy(args) -> None:
    body = evaluate_runs(args.runs, shipped=args.ship or args.runs[0], n_images=args.n_images,
                         data_seed=args.data_seed, device=args.device, seed=args.seed)
    records.write_results("air", {**body, "targets": TARGETS, "reference": REFERENCE},
                          provenance=body["accuracy_provenance"], directory=args.results_dir)


def beyond(args) -> None:
    started = time.perf_counter()
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    model, _ = load_air_run(verify_shipped(RECIPE.shipped_name()), device)
    body = beyond_report(model, n_images=args.n_images, n_standard=args.n_standard, data_seed=args.data_seed)
    records.write_results("air", body, directory=args.results_dir, provenance=records.provenance(
        seed=args.seed, wall_time_s=time.perf_counter() - started, device=device))
    print(json.dumps(body, indent=2))


# --- the reference on our canvases ------------------------------------------------------------------
def _device_and_reference(args):
    """The device to run on (its threads set on a CPU) and the reference AIR's module, imported from
    ``args.reference`` (never copied here)."""
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(args.reference).resolve()))
    return device, importlib.import_module("seed002_air")


def reference_same_canvases(args) -> None:
    started = time.perf_counter()
    device, reference = _device_and_reference(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    train = multi_mnist_splits(seed=DATA_SEED, n_train=args.train_images, n_test=0, n_three=0)["train"]
    model = reference.AIR()
    trained_at = time.perf_counter()
    model, history = reference.train(model, TensorDataset(train.images, train.counts), epochs=args.epochs)
    training_s = time.perf_counter() - trained_at
    sets = fresh_test_canvases(args.n_images, args.data_seed)
    row = {}
    for kind, data in sets.items():
        canvases = TensorDataset(data.images, data.counts)
        torch.manual_seed(args.seed)
        row[f"{kind}count_accuracy"] = round(reference.count_accuracy(model, canvases, greedy=True)[0], 5)
        row[f"{kind}count_accuracy_sampled"] = round(reference.count_accuracy(model, canvases)[0], 5)
    ours, info = load_air_run(verify_shipped(RECIPE.shipped_name()), device)
    mine = count_report(ours, sets, args.seed)
    body = {"reference_same_canvases": {
        **row,
        "ours": {"count_accuracy": mine["count_accuracy"], "count_accuracy_sampled": mine["sampled_count_accuracy"],
                 "three_digit_count_accuracy": mine["three_digit_count_accuracy"],
                 "three_digit_count_accuracy_sampled": mine["three_digit_sampled_count_accuracy"],
                 "checkpoint": f"checkpoints/{RECIPE.shipped_name()}", "seed": info["seed"]},
        "reference_training": {"epochs": args.epochs, "canvases": args.train_images, "batch_size": 64,
                               "seed": args.seed, "wall_time_s": round(training_s, 1),
                               "final_train_count_accuracy": round(history[-1]["count_acc_train"], 5)},
        "protocol": ("The reference AIR (the AIR blog post's implementation, rebuilt as printed and run from its "
                     f"own folder), trained under its own settings on {args.train_images:,} canvases of this book's "
                     f"generator (training data seed {DATA_SEED}, MNIST's training digits) for {args.epochs} "
                     "epochs; then both it and the shipped model counted on the same " + protocol(args.n_images,
                     args.data_seed) + ". Greedy for the reference: z_pres = 1 where its probability exceeds 0.5."),
    }}
    records.write_results("air", body, directory=args.results_dir, provenance=records.provenance(
        seed=args.seed, wall_time_s=time.perf_counter() - started, device=device))
    print(json.dumps({k: v for k, v in body["reference_same_canvases"].items() if k != "protocol"}, indent=2))


# --- speed ---------------------------------------------------------------------------------------
def ours_step(device):
    model = RECIPE.build_model().to(device)
    optimizer = RECIPE.optimizer(model)

    def step(x, counts):
        optimizer.zero_grad(set_to_none=True)
        terms = RECIPE.step(model, (x, counts))
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE.clip_grad_norm)
        optimizer.step()
        return terms["count_accuracy"].item()

    model.train()
    return model, step


def reference_step(module, device):
    model = module.AIR().to(device)
    optimizer = module.make_optimizer(model)

    def step(x, counts):  # as in seed002_throughput.py
        model.zero_grad()
        losses, results = model.compute_loss(x)
        loss = losses["kl_div"] + losses["nll"] + losses["reinforce"] + losses["baseline"]
        loss.backward()
        optimizer.step()
        return (results["counts"] == counts.unsqueeze(1)).sum().item() / len(results["counts"])

    model.train()
    return model, step


def speed(args) -> None:
    started = time.perf_counter()
    device, reference = _device_and_reference(args)
    data = multi_mnist_splits(seed=0, n_train=0, n_test=2000, n_three=0)["test"]
    images, counts = data.images.to(device), data.counts.to(device)

    def batches(size):
        return [(images[i:i + size], counts[i:i + size]) for i in range(0, len(images) - size + 1, size)]

    timing = dict(warmup=args.warmup, steps=args.steps, repeats=args.repeats)
    torch.manual_seed(args.seed)
    ref_model, ref = reference_step(reference, device)
    ref_train = time_training(ref, batches(64), device, **timing)
    ref_model.eval()
    ref_latency = time_inference(ref_model, images[:1000], device, args.repeats)
    print(f"reference: {ref_train:.0f} training images/s (batch 64), {ref_latency:.4f} ms/canvas", flush=True)

    ours_model, ours = ours_step(device)
    ours_train_64 = time_training(ours, batches(64), device, **timing)
    ours_model, ours = ours_step(device)
    ours_train = time_training(ours, batches(RECIPE.batch_size), device, **timing)
    ours_model.eval()
    latency = time_inference(lambda x: ours_model(x, greedy=True, keep_images=False), images[:1000], device,
                             args.repeats)
    print(f"ours: {ours_train:.0f} training images/s (batch {RECIPE.batch_size}), {ours_train_64:.0f} "
          f"(batch 64), {latency:.4f} ms/canvas", flush=True)

    kind = "gpu" if device.type == "cuda" else "cpu"
    row = {
        "train_images_per_s": round(ours_train, 1),
        "train_images_per_s_batch_64": round(ours_train_64, 1),
        "train_batch_size": RECIPE.batch_size,
        "reference_train_images_per_s": round(ref_train, 1),
        "reference_train_batch_size": 64,
        "throughput_ratio_vs_reference": round(ours_train / ref_train, 2),
        "throughput_ratio_vs_reference_same_batch_64": round(ours_train_64 / ref_train, 2),
        "latency_ms_per_image": round(latency, 5),
        "reference_latency_ms_per_image": round(ref_latency, 5),
        "latency_ratio_vs_reference": round(ref_latency / latency, 2),
        "inference_batch": 1000,
        "protocol": (f"{args.repeats} blocks of {args.steps} timed training steps after {args.warmup} warm-up "
                     "steps, median block; inference: no_grad on 1000 canvases, median of "
                     f"{args.repeats}; both implementations in one process, same device and data"),
    }
    written_by = records.provenance(seed=args.seed, wall_time_s=time.perf_counter() - started, device=device)
    row.update({k: written_by[k] for k in records.PROVENANCE_KEYS if k != "schema_version"})
    speeds = dict(records.read_results("air", args.results_dir).get("speed", {}))
    speeds[kind] = row
    update = {"speed": speeds}
    if kind == "cpu" or "cpu" not in speeds:  # the headline numbers are this machine's (a CPU)
        update.update({k: row[k] for k in ("train_images_per_s", "reference_train_images_per_s",
                                           "throughput_ratio_vs_reference", "latency_ms_per_image",
                                           "reference_latency_ms_per_image", "latency_ratio_vs_reference")})
    records.write_results("air", update, provenance=written_by, directory=args.results_dir)
    print(json.dumps(row, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    acc = commands.add_parser("accuracy", help="count accuracy of trained runs")
    acc.add_argument("runs", nargs="+", help="run folders written by `python -m objectcentric train air` "
                     "(or their checkpoints)")
    acc.add_argument("--ship", help="the run whose numbers are the headline (default: the first)")
    acc.add_argument("--n-images", type=int, default=10_000)
    acc.add_argument("--data-seed", type=int, default=TEST_DATA_SEED, help="fresh canvases: not the training data's seed 0")
    acc.set_defaults(handler=accuracy)
    spd = commands.add_parser("speed", help="training throughput and inference latency vs the reference")
    spd.add_argument("--reference", default="../shared/reference", help="folder holding seed002_air.py")
    spd.add_argument("--threads", type=int, default=2)
    spd.add_argument("--warmup", type=int, default=5)
    spd.add_argument("--steps", type=int, default=30)
    spd.add_argument("--repeats", type=int, default=3)
    spd.set_defaults(handler=speed)
    bey = commands.add_parser("beyond", help="the shipped model on 3-5 digits in 6 steps, and its boxes' IoU")
    bey.add_argument("--n-images", type=int, default=2000, help="canvases with 3, 4 and 5 digits, each")
    bey.add_argument("--n-standard", type=int, default=10_000, help="standard test canvases for the IoU, each kind")
    bey.add_argument("--data-seed", type=int, default=TEST_DATA_SEED)
    bey.add_argument("--threads", type=int, default=2)
    bey.set_defaults(handler=beyond)
    ref = commands.add_parser("reference", help="the reference AIR trained and counted on this book's canvases")
    ref.add_argument("--reference", default="../shared/reference", help="folder holding seed002_air.py")
    ref.add_argument("--epochs", type=int, default=50, help="the reference's own number of epochs")
    ref.add_argument("--train-images", type=int, default=10_000, help="the reference's own number of canvases")
    ref.add_argument("--n-images", type=int, default=10_000)
    ref.add_argument("--data-seed", type=int, default=TEST_DATA_SEED)
    ref.add_argument("--threads", type=int, default=1)
    ref.set_defaults(handler=reference_same_canvases)
    for sub in (acc, spd, bey, ref):
        sub.add_argument("--device")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--results-dir", help="folder of the air.json to update (default: the book's results/)")
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
