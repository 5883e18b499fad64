"""Which SCAE training setting gets furthest per CPU-hour (Chapter 8): short pilot runs, compared.

    python benchmarks/scae_pilots.py run rmsprop_lr3e-4_b128 --budget-s 2700 --out ~/runs/scae_pilots
    python benchmarks/scae_pilots.py collect --out ~/runs/scae_pilots

The official schedule (300,000 steps of 128 at a constant 3e-5) is about two
days of this 2-core CPU per seed. Each pilot trains the official model (alpha
channel, inverted poses) with another setting, seed 0, for a budget of
training seconds on one thread, through the recipe and its training loop; a
rerun resumes. The settings tried: the learning rate, the batch size, the
optimiser (Adam against the official RMSProp), fewer part and object
capsules (a smaller model: a step costs less), and a warm-up that trains the
part capsule autoencoder alone for the first epoch (``parts_epochs``: its
steps skip the objects, so they cost less too). After every epoch the recipe's evaluator scores the validation
canvases (MNIST's last 5,000 training digits; never trained on): the image
log-likelihood ``val_rec_ll``, the unsupervised accuracy of k-means on the
object presences and on the parts' mass per object, and the linear probes.

``collect`` writes ``settings_per_hour`` into ``results/scae.json`` (the other
keys are kept): for each pilot its settings, status (a NaN stops a run and is
recorded), and its curve against optimizer steps, digits seen and training
seconds, and the official setting's curve (``official``: taken once from the
runs of the official setting that ``accuracy_vs_compute`` held, then kept). A
pilot collected before whose run folder is not on this machine keeps its
earlier row, marked ``scored_at``. At batch 128 and the official model a step
costs the same in every setting, so steps compare like with like there;
across batch sizes and model sizes, training seconds on one thread do.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from objectcentric import records
from objectcentric.experiments.scae import (
    SCAERecipe,
    curve,
    rec_ll_levels,
    validation_canvases,
)
from objectcentric.runner import load_run, read_record, train
from objectcentric.train import Stop

# Name -> changes to the recipe's defaults (optimiser, batch, model size, the parts' warm-up).
PILOTS = {
    "rmsprop_lr3e-4_b128": {"lr": 3e-4},
    "rmsprop_lr3e-4_b32": {"lr": 3e-4, "batch_size": 32},
    "adam_lr3e-4_b128": {"lr": 3e-4, "optimizer_name": "adam"},
    "rmsprop_lr3e-4_b128_p24_o16": {"lr": 3e-4, "n_parts": 24, "n_objects": 16},
    "rmsprop_lr3e-4_b128_parts1": {"lr": 3e-4, "parts_epochs": 1},
    "rmsprop_lr3e-4_b128_p24_o16_parts1": {"lr": 3e-4, "n_parts": 24, "n_objects": 16, "parts_epochs": 1},
}
SEED = 0


def run(name: str, budget_s: float, out: Path) -> None:
    recipe = SCAERecipe(**PILOTS[name])
    result = train(recipe, SEED, out / name, device="cpu", stop=Stop(seconds=budget_s))
    print(f"{name}: {result.record['status']} after {result.record['steps']} steps")


def pilot_row(name: str, run_dir: Path) -> dict:
    """One pilot's settings, status and validation curve (from its run folder)."""
    record = read_record(run_dir) or {}
    row = {"settings": PILOTS[name], "status": record.get("status", "training"),
           "nan": "NonFiniteLossError" in (record.get("error") or "")}
    if record.get("error"):
        row["error"] = record["error"]
    if not (run_dir / "checkpoint.pt").exists():
        return row
    recipe, _, payload = load_run(run_dir)
    history = payload.get("history") or []
    provenance = payload.get("provenance") or {}
    steps_per_epoch = -(-recipe.n_train // recipe.batch_size)
    row.update({"steps": payload.get("steps"), "epochs": payload.get("epoch"), "batch_size": recipe.batch_size,
                "device": provenance.get("device"), "commit": provenance.get("commit"),
                "command": provenance.get("command"),
                "curve": {**curve(history, steps_per_epoch, provenance.get("device") or "cpu"),
                          "digits_seen": [r["epoch"] * recipe.n_train for r in history]}})
    return row


def official_row(old: dict) -> dict | None:
    """The official setting's curve: kept from an earlier collection, else taken from the results' runs of the
    official setting (``accuracy_vs_compute`` of a run whose settings are the recipe's defaults)."""
    kept = (old.get("settings_per_hour") or {}).get("official")
    if isinstance(kept, dict):
        return kept
    writer = next((w for w in old.get("writers", []) if "accuracy_vs_compute" in w["keys"]), {})
    for run in (old.get("runs") or {}).values():
        seed = run.get("seed")
        if run.get("settings") == {} and str(seed) in (old.get("accuracy_vs_compute") or {}):
            return {"settings": {}, "status": run.get("status"), "steps": run.get("steps"), "seed": seed,
                    "batch_size": SCAERecipe().batch_size, "device": run.get("device"),
                    "collected": {k: writer.get(k) for k in ("commit", "date", "command")},
                    "curve": old["accuracy_vs_compute"][str(seed)]}
    return None


def earlier_rows(old: dict, here: set[str]) -> dict:
    """Pilots an earlier collection scored whose run folders are not in ``here``: their rows, each marked
    ``scored_at`` (the commit and date of the collection that scored it) unless it already was."""
    writer = next((w for w in old.get("writers", []) if "settings_per_hour" in w["keys"]), {})
    stamp = {k: writer.get(k) for k in ("commit", "date")}
    earlier = (old.get("settings_per_hour") or {}).get("pilots") or {}
    return {name: {**row, "scored_at": row.get("scored_at", stamp)}
            for name, row in earlier.items() if name in PILOTS and name not in here}


def collect(out: Path, results_dir=None) -> dict:
    started = time.perf_counter()
    old = records.read_results("scae", results_dir)
    rows = {name: pilot_row(name, out / name) for name in PILOTS if (out / name).exists()}
    rows = {**rows, **earlier_rows(old, set(rows))}
    rows = {name: rows[name] for name in PILOTS if name in rows}  # in the order of PILOTS
    official = official_row(old)
    if not rows:
        raise SystemExit(f"no pilot runs in {out}: run `python benchmarks/scae_pilots.py run NAME` first")
    images, _ = validation_canvases(SCAERecipe().n_val)
    body = {"settings_per_hour": {
        "pilots": rows, "seed": SEED, "val_rec_ll_levels": rec_ll_levels(images),
        "official": official,
        "protocol": ("The official model and data; the pilots change the optimiser, its learning rate, the batch "
                     "or the numbers of part and object capsules, or train the parts alone first, as their settings say. One thread per run, "
                     "seed 0, two runs sharing the machine's two cores (the official setting's run shared its "
                     "core with other jobs, so compare it by steps: at batch 128 and the official model a step "
                     "is the same computation in every setting; across batches and model sizes compare by "
                     "training seconds). Validation after every "
                     "epoch on MNIST's last 5,000 training digits: val_rec_ll is the image log-likelihood "
                     "(nats per image; val_rec_ll_levels: the best constant image, and every pixel's mean exact), "
                     "accuracies as in accuracy_vs_compute.")}}
    whole = records.write_results("scae", body, directory=results_dir, provenance=records.provenance(
        seed=SEED, wall_time_s=time.perf_counter() - started, device="cpu"))
    for name, row in rows.items():
        c = row.get("curve") or {}
        last = {k: c[k][-1] for k in ("steps", "val_rec_ll", "val_posterior_accuracy") if c.get(k)}
        print(f"{name}: {row['status']}, {last}")
    return whole


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train one pilot for a budget (rerun to resume)")
    run_parser.add_argument("name", choices=sorted(PILOTS))
    run_parser.add_argument("--budget-s", type=float, default=2700.0, help="training seconds for this call")
    collect_parser = commands.add_parser("collect", help="write settings_per_hour into results/scae.json")
    collect_parser.add_argument("--results-dir", default=None)
    for p in (run_parser, collect_parser):
        p.add_argument("--out", type=Path, default=Path("runs/scae_pilots"), help="the pilots' run folders")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.name, args.budget_s, args.out.expanduser())
    else:
        collect(args.out.expanduser(), args.results_dir)


if __name__ == "__main__":
    main()
