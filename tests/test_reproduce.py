"""`make reproduce` at the quick scale: every chapter's recorded experiment reruns from its recipes
and is collected into results and checkpoints shaped exactly like the shipped ones."""

import json

import pytest

from objectcentric import records
from objectcentric.checkpoints import read_manifest, sha256_of
from objectcentric.paths import project_root
from objectcentric.recipes import load_all
from objectcentric.runner import EXPERIMENTS, reproduce

ROOT = project_root()


@pytest.fixture(scope="module")
def quick_reproduction(tmp_path_factory):
    load_all()
    out = tmp_path_factory.mktemp("reproduce")
    before = {p.name: p.read_bytes() for p in (ROOT / "results").glob("*.json")}
    summary = reproduce(scale="quick", executor="inline", out=out)
    after = {p.name: p.read_bytes() for p in (ROOT / "results").glob("*.json")}
    assert after == before, "a quick reproduction must never touch the book's results"
    return out / "quick", summary


def test_every_chapter_reproduces_without_a_failed_run(quick_reproduction):
    _, summary = quick_reproduction
    assert set(summary) == set(EXPERIMENTS)
    for chapter, line in summary.items():
        assert line["failed"] == 0 and line["done"] == line["runs"] > 0, chapter


def test_the_collected_results_have_the_shipped_files_keys_and_say_they_are_quick(quick_reproduction):
    out, _ = quick_reproduction
    written = sorted(p.name for p in (out / "results").glob("*.json"))
    assert written, "no results were collected"
    for name in written:
        data = json.loads((out / "results" / name).read_text())
        assert data["scale"] == "quick" and data["schema_version"] == records.SCHEMA_VERSION
        shipped = ROOT / "results" / name
        if shipped.exists():
            recorded = json.loads(shipped.read_text())
            missing = sorted(set(k for w in data["writers"] for k in w["keys"])
                             - set(recorded) - {"scale"})
            assert not missing, f"{name}: the reproduction writes keys the shipped file lacks: {missing}"


def test_the_collected_checkpoints_are_listed_with_their_sha256(quick_reproduction):
    out, _ = quick_reproduction
    manifest = read_manifest(out / "checkpoints")["checkpoints"]
    shipped = read_manifest(ROOT / "checkpoints")["checkpoints"]
    assert manifest and set(manifest) <= set(shipped)
    for name, entry in manifest.items():
        assert sha256_of(out / "checkpoints" / name) == entry["sha256"]
