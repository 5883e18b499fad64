"""Where the project lives and where its data goes.

Notebooks run with the working directory ``notebooks/`` and tests from the
repository root; both must find the same ``data/`` folder, so the data
directory is resolved from the project root rather than from the cwd.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "OBJECTCENTRIC_DATA"


def project_root() -> Path | None:
    """The nearest directory at or above the cwd that holds the book's
    ``_config.yml`` and ``src/objectcentric``; None outside a checkout
    (an installed package, e.g. on Colab)."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "_config.yml").is_file() and (candidate / "src" / "objectcentric").is_dir():
            return candidate
    return None


def data_dir() -> Path:
    """``$OBJECTCENTRIC_DATA`` if set, else ``<project root>/data``, else
    ``~/.cache/objectcentric/data``. Not created here: callers create what
    they write."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    root = project_root()
    if root is not None:
        return root / "data"
    return Path.home() / ".cache" / "objectcentric" / "data"
