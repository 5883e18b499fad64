"""Notebooks: committed clean, in step with their jupytext sources, and runnable on Colab."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def cells(notebook) -> list[tuple]:
    return [(c["cell_type"], "".join(c["source"]), tuple(c.get("metadata", {}).get("tags", [])),
             json.dumps(c.get("metadata", {}).get("mystnb"), sort_keys=True)) for c in notebook["cells"]]


def test_there_are_notebooks_and_each_has_a_source():
    assert NOTEBOOKS, "no notebooks found"
    sources = sorted((ROOT / "notebooks" / "src").glob("*.py"))
    assert [p.stem for p in sources] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_source_and_has_no_outputs(path):
    notebook = json.loads(path.read_text())
    source = ROOT / "notebooks" / "src" / (path.stem + ".py")
    expected = jupytext.read(source, fmt="py:percent")
    assert cells(notebook) == cells(expected), f"{path.name} differs from {source.name}: run `make notebooks-sync`"
    assert not any(c.get("outputs") for c in notebook["cells"])
    assert notebook["cells"][0]["cell_type"] == "markdown"
    assert "".join(notebook["cells"][0]["source"]).startswith("# ")


def _code_cells(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_notebook_sources_are_formatted():
    """ruff format (line length 88, pyproject.toml) leaves every chapter's source as it is."""
    ruff = Path(sys.executable).with_name("ruff")
    sources = sorted(str(p) for p in (ROOT / "notebooks" / "src").glob("*.py"))
    result = subprocess.run([str(ruff if ruff.exists() else "ruff"), "format", "--check", "--diff", *sources],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, "run `ruff format notebooks/src`:\n" + result.stdout[-3000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_page(path):
    long = [line for code in _code_cells(path) for line in code.splitlines() if len(line) > 88]
    assert not long, f"{path.name}: {len(long)} code line(s) over 88 columns, e.g. {long[0]!r}"


PLUMBING = re.compile(r"^(?:import |from \S+ import |TRAIN = |MODE, device = book\.setup\(|display\(how_measured|"
                      r"how_measured\(|book\.how_measured\(|display\(book\.how_measured|[)\]]|\s+\S)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_chapter_has_at_most_three_plumbing_cells(path):
    """Plumbing: the Colab cell, the set-up cell, and cells that only import, set up or print provenance."""
    code = _code_cells(path)
    plumbing = [c for c in code if "google.colab" in c or all(
        PLUMBING.match(line) for line in c.splitlines() if line.strip() and not line.lstrip().startswith("#"))]
    assert len(plumbing) <= 3, (f"{path.name} has {len(plumbing)} plumbing cells; show provenance in the cell "
                                "of the result it documents, and move helpers into src/objectcentric/chapters/")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_has_the_same_shape(path):
    """The header box (book.setup), the story, What fails, a summary and three to five exercises."""
    notebook = json.loads(path.read_text())
    code = "\n".join(_code_cells(path))
    markdown = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert re.search(r"^MODE, device = book\.setup\(\"\w+\"", code, re.M), "no book.setup(...) set-up cell"
    headings = re.findall(r"^## (.+)$", markdown, re.M)
    for wanted in ("What fails", "Summary", "Exercises"):
        assert any(h.startswith(wanted) for h in headings), f"{path.name} has no '## {wanted}' section"
    assert headings[-1] == "Exercises" or headings[-1].startswith("Exercises"), "the exercises come last"
    exercises = markdown.split("## Exercises", 1)[1]
    n = len(re.findall(r"^\d+\. ", exercises, re.M))
    assert 3 <= n <= 5, f"{path.name} has {n} numbered exercises"


def test_the_code_has_no_undefined_or_unused_names():
    """pyflakes' checks (ruff's F rules): a name used but never defined fails only on the path that uses
    it, as a chapter's train-here path did once; unused imports and variables hide such mistakes."""
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff if ruff.exists() else "ruff"), "check", "--isolated", "--select", "F",
                             "--output-format", "concise", "src", "tests", "benchmarks", "tools", "notebooks/src"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
