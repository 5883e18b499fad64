"""Write every notebook from its jupytext source (notebooks/src/*.py): ``make notebooks-sync``.

The notebook gets exactly the source's cells and metadata (``jupytext --update``
would keep an old cell's metadata, a figure caption say, when cells move); the
old cell ids are kept position by position, so the diffs stay small.
"""

import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def sync(source: Path) -> Path:
    notebook_path = ROOT / "notebooks" / f"{source.stem}.ipynb"
    notebook = jupytext.read(source, fmt="py:percent")
    if notebook_path.exists():
        old_ids = [c.get("id") for c in nbformat.read(notebook_path, as_version=4).cells]
        for cell, old in zip(notebook.cells, old_ids):
            if old:
                cell["id"] = old
    jupytext.write(notebook, notebook_path, fmt="ipynb")
    return notebook_path


if __name__ == "__main__":
    sources = [Path(a) for a in sys.argv[1:]] or sorted((ROOT / "notebooks" / "src").glob("*.py"))
    for source in sources:
        sync(source)
