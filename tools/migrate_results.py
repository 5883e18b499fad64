"""Migrate results/*.json written before the one records writer (schema 1) to schema 2.

    python tools/migrate_results.py            # every results/*.json, in place
    python tools/migrate_results.py --check    # exit 1 if a file still needs migrating

Nothing recorded is lost: every value is kept as it is. What changes is the
frame around the values: the file's provenance goes to the top level
(``command``, ``commit``, ``device``, ``seed``, ``wall_time_s``, ``date``,
``torch``, ``schema_version``), taken from the provenance the file already
held (``accuracy_provenance`` for the AIR file, which had none at the top);
a field that was never recorded is written as "not recorded", not guessed;
and ``writers`` says that all keys came from that recorded command, by way
of this migration. Files already at schema 2 are left alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from objectcentric.records import PROVENANCE_KEYS, SCHEMA_VERSION, write_json_atomic  # noqa: E402

FIELDS = [k for k in PROVENANCE_KEYS if k != "schema_version"]
NESTED_PROVENANCE = ("accuracy_provenance", "provenance")  # where a schema-1 file kept it when not at the top
NOT_RECORDED = "not recorded"


def migrate(data: dict) -> dict:
    """The schema-2 form of one schema-1 results file (every value kept)."""
    if data.get("schema_version") == SCHEMA_VERSION:
        return data
    source = data if all(k in data for k in ("command", "commit")) else next(
        (data[k] for k in NESTED_PROVENANCE if isinstance(data.get(k), dict)), {})
    top = {k: source.get(k) if source.get(k) not in (None, "") else NOT_RECORDED for k in FIELDS}
    body = {k: v for k, v in data.items() if k not in FIELDS}
    writer = {"keys": sorted(body), **top, "migrated_from_schema": 1, "migrated_by": "tools/migrate_results.py"}
    return {**top, "schema_version": SCHEMA_VERSION, **body, "writers": [writer]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--check", action="store_true", help="only report files that need migrating")
    args = parser.parse_args(argv)
    stale = []
    for path in sorted(Path(args.results).glob("*.json")):
        data = json.loads(path.read_text())
        new = migrate(data)
        if new is data:
            continue
        stale.append(path.name)
        if not args.check:
            write_json_atomic(path, new)
            print(f"migrated {path.name}")
    if args.check and stale:
        print("needs migrating: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
