"""Command line: ``python -m objectcentric <command>``.

    prepare-data                       put MNIST where torchvision reads it (offline first)
    train vae --latent-dim 50          train a chapter's model at full settings, resumable
    train air --seed 0                 (AIR on Multi-MNIST; --inference recurrent for the original)
    train dvae --dataset FullMNIST --seeds 0-4 --out DIR   (D-VAE-ST clustering; results and prototypes in DIR)
    ship vae RUN --latent-dim 50       copy a trained run into checkpoints/ and the manifest
"""

import argparse
from pathlib import Path

from . import checkpoints
from .data import prepare_mnist
from .provenance import current_command, device_description, git_commit
from .train import pick_device


def _train_with_provenance(args, run: Path, train) -> None:
    """Call ``train(device, provenance)`` and report the saved run.

    The provenance (command, commit, device, seed) travels inside every
    epoch's checkpoint, so that `ship` can list the run later.
    """
    device = pick_device(args.device)
    started_by = {"command": current_command(), "commit": git_commit(), "device": device_description(device),
                  "seed": args.seed}
    _, result = train(device, started_by)
    print(f"Saved {run} ({len(result.history)} epochs, {result.wall_time_s:.0f} s on {started_by['device']}).")


def _train_vae(args) -> None:
    from .experiments.vae import train_vae

    run = Path(args.checkpoint or f"runs/vae_z{args.latent_dim}.pt")
    _train_with_provenance(args, run, lambda device, started_by: train_vae(
        args.latent_dim, quick=args.quick, epochs=args.epochs, checkpoint=run,
        seed=args.seed, device=device, progress="terminal", provenance=started_by))


def _train_air(args) -> None:
    from .experiments.air import train_air
    from .models.air import AIRConfig

    run = Path(args.checkpoint or f"runs/air_{args.inference}_seed{args.seed}.pt")
    _train_with_provenance(args, run, lambda device, started_by: train_air(
        AIRConfig(inference=args.inference), quick=args.quick, epochs=args.epochs, checkpoint=run,
        seed=args.seed, device=device, progress="terminal", provenance=started_by))


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-"))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",")]


def _train_dvae(args) -> None:
    from .experiments.dvae import run_job

    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    run_job(args.kind, args.dataset, args.estimator, args.k, seeds, args.variant, args.out or "runs/dvae",
            quick=args.quick, epochs=args.epochs, device=args.device, deadline=args.deadline,
            save_best=args.save_best, progress="none" if args.deadline else "terminal")


TRAINERS = {"vae": _train_vae, "air": _train_air, "dvae": _train_dvae}


def _shipped_name(args, payload: dict) -> str:
    """The file name under checkpoints/ that the chapter's notebook loads."""
    if args.model == "air":
        from .experiments.air import checkpoint_name
        return checkpoint_name(payload["model_config"]["inference"])
    from .experiments.vae import checkpoint_name
    return checkpoint_name(args.latent_dim)


def _ship(args) -> None:
    payload = checkpoints.read_checkpoint(args.run)
    destination = checkpoints.checkpoint_dir() / _shipped_name(args, payload)
    checkpoints.export_checkpoint(args.run, destination)
    final = payload["history"][-1]
    metrics = {k: round(v, 4) for k, v in final.items() if k.startswith("val_")}
    metrics["epochs"] = final["epoch"]
    info = payload.get("provenance") or {**payload["train_config"]["provenance"],
                                         "wall_time_s": round(payload["wall_time_s"], 1)}
    if args.note:
        info = {**info, "note": args.note}
    entry = checkpoints.record_in_manifest(destination, info, metrics)
    print(f"Shipped {destination} ({entry['bytes'] / 1e6:.1f} MB), listed in manifest.json; by: {current_command()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="objectcentric", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("prepare-data", help="make MNIST available offline")
    data.add_argument("--root", help="data folder (default: $OBJECTCENTRIC_DATA or <project>/data)")
    data.set_defaults(handler=lambda a: print(f"MNIST is ready in {prepare_mnist(a.root) / 'MNIST' / 'raw'}"))

    train = commands.add_parser("train", help="train a model at full settings")
    train.add_argument("model", choices=sorted(TRAINERS))
    train.add_argument("--latent-dim", type=int, default=50)
    train.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    train.add_argument("--checkpoint", help="training checkpoint, resumed if it exists (default runs/vae_z<d>.pt)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    train.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
    train.add_argument("--inference", choices=["difference", "recurrent"], default="difference",
                       help="air: the inference network (default difference)")
    dvae = train.add_argument_group("dvae (Chapter 5: clustering with prototypes)")
    dvae.add_argument("--kind", choices=["dvae", "dvae_st"], default="dvae_st", help="D-VAE or D-VAE-ST")
    dvae.add_argument("--dataset", default="FullMNIST",
                      choices=["SimplifiedMNIST", "FullMNIST", "FashionMNIST", "Letters"])
    dvae.add_argument("--estimator", default="exact", choices=["exact", "reinforce", "nvil", "concrete", "rebar", "relax"])
    dvae.add_argument("--k", type=int, help="number of clusters (default: the number of classes)")
    dvae.add_argument("--seeds", help="seeds trained side by side, e.g. 0-4 or 0,3 (default: --seed)")
    dvae.add_argument("--variant", default="robust", choices=["thesis", "robust", "split", "kmeans"],
                      help="training recipe (see objectcentric.experiments.dvae)")
    dvae.add_argument("--out", help="folder for the results JSON, prototypes and best checkpoint (default runs/dvae)")
    dvae.add_argument("--deadline", type=float, help="stop training at this time.time() and report what was learned")
    dvae.add_argument("--save-best", action="store_true", help="also write the best seed as a checkpoint")
    train.set_defaults(handler=lambda a: TRAINERS[a.model](a))

    ship = commands.add_parser("ship", help="export a run to checkpoints/ and list it in the manifest")
    ship.add_argument("model", choices=["vae", "air"])
    ship.add_argument("run", help="training checkpoint written by `train`")
    ship.add_argument("--latent-dim", type=int, default=50)
    ship.add_argument("--note", help="a remark stored with the manifest entry (how the run ended, say)")
    ship.set_defaults(handler=_ship)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
