"""Notebooks: committed clean, in step with their text sources, and runnable on Colab."""

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_notebook import build  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_source_and_has_no_outputs(path):
    notebook = json.loads(path.read_text())
    source = ROOT / "notebooks" / "src" / (path.stem + ".txt")
    expected = build(str(source))
    assert [(c["cell_type"], "".join(c["source"])) for c in notebook["cells"]] == [
        (c.cell_type, c.source) for c in expected.cells
    ], f"{path.name} differs from {source.name}: run python tools/make_notebook.py {source} {path}"
    assert not any(c.get("outputs") for c in notebook["cells"])
    assert notebook["cells"][0]["cell_type"] == "markdown"
    assert "".join(notebook["cells"][0]["source"]).startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_installs_from_the_configured_repository(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "google.colab" in code[0] and url in code[0], "the first code cell must install from " + url
