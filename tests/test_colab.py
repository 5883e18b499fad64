"""The Colab cell of every chapter: one text, one repository URL, and logic that works offline."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from objectcentric.colab import MARKER, cell_source, code_of, find_cell, repository_url, sync

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks" / "src").glob("*.py"))
URL = repository_url(ROOT / "_config.yml")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_chapter_has_the_one_colab_cell(source):
    assert find_cell(source.read_text()) == cell_source(URL), f"run python -m objectcentric.colab ({source.name})"
    notebook = json.loads((ROOT / "notebooks" / f"{source.stem}.ipynb").read_text())
    first_code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    assert "".join(first_code["source"]).strip() == code_of(cell_source(URL)).strip()


def test_the_url_is_only_in_the_config():
    """The chapters' prose and code carry no other copy of the repository URL."""
    for source in SOURCES:
        text = source.read_text().replace(cell_source(URL), "")
        assert URL not in text, f"{source.name} repeats the repository URL outside its Colab cell"


def _run_cell(monkeypatch, tmp_path, repository: str, pip_fails: bool = False):
    """Execute the Colab cell as Colab would, with git for real and pip faked (no network here)."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    clone = tmp_path / "clone"
    code = code_of(cell_source(repository)).replace('"/content/objectcentric-book"', repr(str(clone)))
    calls = []
    real_run = subprocess.run

    def run(command, check=False, **kwargs):
        calls.append(command)
        if command[:3] == [sys.executable, "-m", "pip"]:
            if pip_fails:
                raise subprocess.CalledProcessError(1, command)
            return subprocess.CompletedProcess(command, 0)
        return real_run(command, check=check, capture_output=True, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "colab_cell", "exec"), {})
    return clone, calls


def test_colab_cell_clones_installs_and_enters_notebooks(monkeypatch, tmp_path):
    clone, calls = _run_cell(monkeypatch, tmp_path, str(ROOT))
    assert (clone / "notebooks").is_dir() and (clone / "src" / "objectcentric").is_dir()
    assert calls[1] == [sys.executable, "-m", "pip", "install", "--quiet", str(clone)]
    assert Path(os.getcwd()) == clone / "notebooks"


@pytest.mark.parametrize("failure", ["clone", "install"])
def test_colab_cell_says_what_to_do_when_it_fails(monkeypatch, tmp_path, failure):
    repository = str(tmp_path / "no-such-repository") if failure == "clone" else str(ROOT)
    with pytest.raises(SystemExit) as error:
        _run_cell(monkeypatch, tmp_path, repository, pip_fails=failure == "install")
    message = str(error.value)
    assert "Could not fetch or install the book's code" in message and "run this cell again" in message


def test_outside_colab_the_cell_does_nothing(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command outside Colab"))
    exec(compile(code_of(cell_source(URL)), "colab_cell", "exec"), {})
    assert Path(os.getcwd()) == tmp_path


def test_sync_refuses_a_source_without_the_cell(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("# %%\nprint(1)\n")
    with pytest.raises(ValueError, match="no Colab cell"):
        sync(source, URL)
    source.write_text(f"# %%\n{MARKER} old\nold = 1\n\n# %%\nprint(1)\n")
    assert sync(source, URL) and not sync(source, URL)
