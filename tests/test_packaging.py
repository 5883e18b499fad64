"""The conda environment and pyproject.toml ask for the same packages."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return {r.replace(" ", "") for r in project["dependencies"] + extras["book"] + extras["test"]}


def conda_pip_requirements() -> set[str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    return {r.replace(" ", "") for r in pip_section if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert conda_pip_requirements() == pyproject_requirements()


def test_environment_uses_conda_forge_python():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge"]
    assert any(str(d).startswith("python") for d in environment["dependencies"])


def test_jupyter_book_stays_on_version_1():
    # Version 2 ignores _config.yml and builds nothing from it.
    assert "jupyter-book>=1.0.4,<2" in pyproject_requirements()
