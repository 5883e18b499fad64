"""Notebooks: committed clean, in step with their jupytext sources, and runnable on Colab."""

import json
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def cells(notebook) -> list[tuple]:
    return [(c["cell_type"], "".join(c["source"]), tuple(c.get("metadata", {}).get("tags", [])))
            for c in notebook["cells"]]


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_installs_from_the_configured_repository(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "google.colab" in code[0] and url in code[0], "the first code cell must install from " + url
    assert "\n    !git clone" in code[0] and "\n    %pip install" in code[0], "the Colab magics must be live code"
