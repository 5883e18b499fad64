"""The three ways a chapter runs: quick, read and train.

- quick (``OBJECTCENTRIC_QUICK=1``): tiny data and a few steps, so every cell runs
  in seconds; what the tests and CI use. Its numbers are never results.
- read (the default): load the shipped checkpoint and replay its recorded
  history; train at full settings only when no checkpoint is there.
- train (``OBJECTCENTRIC_TRAIN=1``): full training with a live loss plot.
"""

import os

QUICK, READ, TRAIN = "quick", "read", "train"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def run_mode() -> str:
    """Return ``"quick"``, ``"read"`` or ``"train"`` from the environment.

    Quick wins over train so that CI never starts a full run by accident.
    """
    if _flag("OBJECTCENTRIC_QUICK"):
        return QUICK
    if _flag("OBJECTCENTRIC_TRAIN"):
        return TRAIN
    return READ
