"""Where a number came from: command, commit, device, seed, time and date.

Every results file and every shipped checkpoint records these fields, so that a
figure in the book can be traced to the run that made it.
"""

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch


def git_commit(cwd: str | Path | None = None) -> str:
    """The current commit, with ``-dirty`` when the work tree has changes.

    ``OBJECTCENTRIC_COMMIT`` overrides it, for runs on a copy of the tree
    without its git history (a rented GPU machine).
    """
    if os.environ.get("OBJECTCENTRIC_COMMIT"):
        return os.environ["OBJECTCENTRIC_COMMIT"]
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_description(device: torch.device | str | None = None) -> str:
    """A readable name for the hardware, e.g. ``cuda: NVIDIA H100`` or ``cpu: x86_64, 2 threads``."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {platform.machine()}, {torch.get_num_threads()} threads"


def current_command() -> str:
    """The command line that started this process, as typed (``python -m ...`` stays so)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return " ".join(shlex.quote(a) for a in ["python", *argv[1:]])


def provenance(*, seed: int, wall_time_s: float, device=None, command: str | None = None) -> dict:
    """The provenance fields every ``results/*.json`` and manifest entry carries."""
    return {
        "command": command or current_command(),
        "commit": git_commit(),
        "device": device_description(device),
        "seed": int(seed),
        "wall_time_s": round(float(wall_time_s), 2),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
