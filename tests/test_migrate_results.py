"""The kept migration of schema-1 results files: provenance to the top level, no value lost."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from migrate_results import NOT_RECORDED, main, migrate  # noqa: E402

OLD_WITH_TOP = {"command": "python b.py", "commit": "abc", "device": "cpu", "seed": 0, "wall_time_s": 1.5,
                "date": "2026-11-25", "notes": "kept", "runs": [1, 2]}
OLD_NESTED = {"count_accuracy": 0.99, "notes": "no command writes me",
              "accuracy_provenance": {"command": "python air.py accuracy", "commit": "def", "device": "cpu",
                                      "seed": 0, "wall_time_s": 2.0, "date": "2026-11-25", "torch": "2.14"}}


def test_top_level_provenance_is_kept_and_an_unrecorded_field_says_so():
    new = migrate(dict(OLD_WITH_TOP))
    assert {k: new[k] for k in OLD_WITH_TOP} == OLD_WITH_TOP
    assert new["torch"] == NOT_RECORDED and new["schema_version"] == 2
    assert new["writers"][0]["keys"] == ["notes", "runs"] and new["writers"][0]["command"] == "python b.py"


def test_nested_provenance_is_lifted_and_every_value_stays():
    new = migrate(json.loads(json.dumps(OLD_NESTED)))
    assert all(new[k] == v for k, v in OLD_NESTED.items())
    assert (new["command"], new["commit"], new["torch"]) == ("python air.py accuracy", "def", "2.14")


def test_migrating_twice_changes_nothing(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(OLD_NESTED))
    assert main(["--results", str(tmp_path), "--check"]) == 1
    assert main(["--results", str(tmp_path)]) == 0
    once = (tmp_path / "a.json").read_text()
    assert main(["--results", str(tmp_path), "--check"]) == 0
    main(["--results", str(tmp_path)])
    assert (tmp_path / "a.json").read_text() == once
