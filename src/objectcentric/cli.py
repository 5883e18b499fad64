"""Command line: ``python -m objectcentric <command>``.

    prepare-data                        put MNIST where torchvision reads it (offline first)
    train MODEL [--SETTING VALUE ...]   train one recipe for one seed into a run folder, resumable
    ship MODEL RUN                      copy a trained run into checkpoints/ and the manifest
    sweep MODEL --seeds 0-4             several seeds of one recipe, through submitit
    reproduce [CHAPTER ...]             rerun the book's recorded experiments and collect them

Each model's ``train`` flags are its recipe's settings (``train vae --help``
lists them), so a flag that does not apply to a model is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .checkpoints import CheckpointError
from .recipes import SCALES, RecipeError, field_types, load_all, recipe_class
from .train import NonFiniteLossError, Stop

EXIT_INTERRUPTED = 130


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ``"5"`` -> [5]."""
    try:
        seeds = []
        for part in str(text).split(","):
            first, _, last = part.strip().partition("-")
            seeds += list(range(int(first), int(last) + 1)) if last else [int(first)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-4 or 0,3,7; got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return seeds


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_recipe_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per recipe setting, typed and with its default (and choices) from the recipe."""
    group = parser.add_argument_group(f"{cls.name} settings (the recipe {cls.__name__})")
    defaults, kinds = cls(), field_types(cls)
    for field in dataclasses.fields(cls):
        if field.name == "quick":
            continue
        kind = kinds[field.name]
        default = getattr(defaults, field.name)
        help_text = cls.HELP.get(field.name, field.name.replace("_", " "))
        if kind is bool:
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, default=None,
                               help=f"{help_text} (default {default})")
        elif kind is tuple:
            group.add_argument(_flag(field.name), type=float if default and isinstance(default[0], float) else int,
                               nargs="+", help=f"{help_text} (default {' '.join(map(str, default))})")
        else:
            group.add_argument(_flag(field.name), type=kind if kind in (int, float, str) else str,
                               choices=cls.CHOICES.get(field.name), help=f"{help_text} (default {default})")


def _recipe_from(args, cls):
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                if f.name != "quick" and getattr(args, f.name, None) is not None}
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    return cls(**settings).at_scale("quick" if args.quick else "full")


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--run-dir", help="run folder, resumed if it exists (default runs/<model>/<run name>)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--quick", action="store_true", help="the recipe's quick scale: a smoke test, not a result")
    parser.add_argument("--budget-s", type=float, help="stop after this many seconds of training; rerun to resume")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps; rerun to resume")


def _train(args) -> int:
    from .runner import default_run_dir, train

    cls = recipe_class(args.model)
    recipe = _recipe_from(args, cls)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(recipe, args.seed)
    stop = Stop(seconds=args.budget_s, steps=args.max_steps) if args.budget_s or args.max_steps else None
    run = train(recipe, args.seed, run_dir, device=args.device, progress="terminal", stop=stop)
    record = run.record
    if record["status"] == "interrupted":
        print(f"Interrupted. {run_dir / 'checkpoint.pt'}: {_saved(run_dir)}; rerun the same command to resume.")
        return EXIT_INTERRUPTED
    what = "Stopped early" if record["status"] == "stopped" else "Done"
    print(f"{what}: {run_dir} holds {record['epochs_done']} of {recipe.epochs} epochs "
          f"({record['wall_time_s']:.0f} s on {record['device']})"
          + ("; rerun the same command to resume." if record["status"] == "stopped" else "."))
    return 0


def _saved(run_dir: Path) -> str:
    from .checkpoints import read_checkpoint

    try:
        return f"{read_checkpoint(run_dir / 'checkpoint.pt')['epoch']} complete epochs saved"
    except CheckpointError:
        return "nothing saved yet"


def _ship(args) -> int:
    from .records import ship

    ship(args.run, expect=args.model, note=args.note)
    return 0


def _sweep(args) -> int:
    from .runner import Job, sweep

    cls = recipe_class(args.model)
    recipe = _recipe_from(args, cls)
    out = Path(args.out or f"runs/sweeps/{recipe.run_name(0).removesuffix('_seed0')}")
    records = sweep([Job(recipe, s) for s in args.seeds], out, executor=args.executor,
                    max_parallel=args.max_parallel, device=args.device, threads=args.threads)
    for key, record in records.items():
        print(f"{key}: {(record or {}).get('status', 'missing')}")
    return 1 if any((r or {}).get("status") == "failed" for r in records.values()) else 0


def _reproduce(args) -> int:
    from .runner import reproduce

    summary = reproduce(args.chapters or None, scale=args.scale, executor=args.executor, out=args.out,
                        max_parallel=args.max_parallel, device=args.device, threads=args.threads,
                        collect_only=args.collect_only)
    return 1 if any(s["failed"] for s in summary.values()) else 0


def _prepare_data(args) -> int:
    from .data import prepare_mnist

    print(f"MNIST is ready in {prepare_mnist(args.root) / 'MNIST' / 'raw'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .runner import EXECUTORS, EXPERIMENTS

    registry = load_all()
    parser = argparse.ArgumentParser(prog="objectcentric", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("prepare-data", help="make MNIST available offline")
    data.add_argument("--root", help="data folder (default: $OBJECTCENTRIC_DATA or <project>/data)")
    data.set_defaults(handler=_prepare_data)

    train = commands.add_parser("train", help="train one recipe for one seed (resumable)")
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    sweeps = commands.add_parser("sweep", help="several seeds of one recipe, through submitit")
    sweep_models = sweeps.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, cls in sorted(registry.items()):
        one = models.add_parser(name, help=cls.__doc__.splitlines()[0])
        _add_recipe_flags(one, cls)
        _add_run_flags(one)
        one.set_defaults(handler=_train)
        many = sweep_models.add_parser(name, help=cls.__doc__.splitlines()[0])
        _add_recipe_flags(many, cls)
        many.add_argument("--seeds", type=parse_seeds, required=True, help="e.g. 0-4 or 0,3,7")
        many.add_argument("--out", help="sweep folder (default runs/sweeps/<run name>)")
        many.add_argument("--quick", action="store_true", help="the quick scale: a smoke test")
        _add_executor_flags(many, EXECUTORS)
        many.set_defaults(handler=_sweep)

    ship = commands.add_parser("ship", help="export a run to checkpoints/ and list it in the manifest")
    ship.add_argument("model", choices=sorted(registry), help="the recipe the run must hold")
    ship.add_argument("run", help="run folder (or its checkpoint.pt) written by `train`")
    ship.add_argument("--note", help="a remark stored with the manifest entry")
    ship.set_defaults(handler=_ship)

    again = commands.add_parser("reproduce", help="rerun the book's recorded experiments and collect them")
    again.add_argument("chapters", nargs="*", choices=[[], *sorted(EXPERIMENTS)], metavar="CHAPTER",
                       help=f"one or more of {', '.join(EXPERIMENTS)} (default: all)")
    again.add_argument("--scale", choices=SCALES, default="quick",
                       help="quick: a smoke test into --out; full: the recorded runs, into results/ and checkpoints/")
    again.add_argument("--out", default="runs/reproduce", help="run folder (default runs/reproduce)")
    again.add_argument("--collect-only", action="store_true",
                       help="train nothing: collect the run folders as they are (runs still training included)")
    _add_executor_flags(again, EXECUTORS)
    again.set_defaults(handler=_reproduce)
    return parser


def _command_words(args) -> str:
    return " ".join(w for w in (args.command, getattr(args, "model", None)) if w)


def _flags_of(parser: argparse.ArgumentParser, args) -> list[str]:
    """The long flags the chosen (sub)command accepts."""
    for word in (args.command, getattr(args, "model", None)):
        if word is None:
            break
        choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        parser = choices[word]
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help")


def _add_executor_flags(parser, executors) -> None:
    parser.add_argument("--executor", choices=executors, default="local",
                        help="local processes (default), a SLURM cluster, or inline in this process")
    parser.add_argument("--max-parallel", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--threads", type=int, help="torch threads per run")


def main(argv=None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [e for e in extra if e.startswith("-")] or extra
        parser.exit(2, f"error: {', '.join(unknown)} {'is not a flag' if len(unknown) == 1 else 'are not flags'} of "
                       f"`{_command_words(args)}`; its flags are: {', '.join(_flags_of(parser, args))}\n")
    try:
        code = args.handler(args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except (RecipeError, CheckpointError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2 if isinstance(error, RecipeError) else 1
    sys.exit(code)


if __name__ == "__main__":
    main()
