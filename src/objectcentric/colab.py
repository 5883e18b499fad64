"""The first code cell of every chapter: on Colab, fetch the book's code and install it.

The cell cannot import this package (on Colab it is not installed yet), so its
text is written here once, with the repository URL read from ``_config.yml``
(the one place it is kept; the book's launch buttons read it too), and copied
into every notebook source by :func:`sync` (``make notebooks-sync``).
``tests/test_colab.py`` checks that every chapter carries exactly this cell and
runs it with a fake ``google.colab`` module against a local clone.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "# Colab: fetch the book's code and install it."
CELL = '''\
# %% tags=["hide-input"]
{marker} Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "{url}"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            clone = ["git", "clone", "--depth", "1", REPOSITORY, CLONE]
            subprocess.run(clone, check=True)
        install = [sys.executable, "-m", "pip", "install", "--quiet", CLONE]
        subprocess.run(install, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {{REPOSITORY}}: "
            f"{{error}}.\\nCheck that this runtime can reach GitHub and run this cell "
            f"again; or upload a copy of the repository to {{CLONE}} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))
'''


def repository_url(config: str | Path) -> str:
    """``repository.url`` of the book's ``_config.yml``."""
    import yaml

    data = yaml.safe_load(Path(config).read_text())
    try:
        return data["repository"]["url"]
    except (KeyError, TypeError):
        raise ValueError(f"{config} has no repository.url: the Colab cell needs it") from None


def cell_source(url: str) -> str:
    """The Colab cell, as a jupytext percent-format cell, for the repository at ``url``."""
    return CELL.format(marker=MARKER, url=url)


def code_of(cell: str) -> str:
    """The Python code of a percent-format cell (its ``# %%`` line dropped)."""
    return cell.split("\n", 1)[1]


CELL_PATTERN = re.compile(r"# %%[^\n]*\n(?:#[^\n]*\n)*?" + re.escape(MARKER) + r".*?\n(?=\s*# %%)", re.S)


def find_cell(text: str) -> str | None:
    """The Colab cell of a notebook source (percent format), or None."""
    match = CELL_PATTERN.search(text)
    return match.group(0) if match else None


def sync(source: str | Path, url: str) -> bool:
    """Write the current Colab cell into a notebook source; True if it changed.

    The source must already have a Colab cell (one holding :data:`MARKER`).
    """
    path = Path(source)
    text = path.read_text()
    match = CELL_PATTERN.search(text)
    if match is None:
        raise ValueError(f"{path} has no Colab cell (a code cell with the line {MARKER!r}); add one first")
    new = text[:match.start()] + cell_source(url) + text[match.end():]
    if new == text:
        return False
    path.write_text(new)
    return True


if __name__ == "__main__":  # python -m objectcentric.colab: rewrite every chapter's cell
    root = Path(__file__).resolve().parents[2]
    url = repository_url(root / "_config.yml")
    for notebook in sorted((root / "notebooks" / "src").glob("*.py")):
        if sync(notebook, url):
            print(f"updated {notebook.name}")
