"""The ingest ledger (`ledger/ingest.json`): which exports were merged or quarantined, and the latest dataset.

    {"dataset_version": "<version>" | null,
     "exports": {"<export>": {"fingerprint", "status": "merged" | "quarantined", "at",
                              "dataset_version" (merged) | "quarantine" (quarantined)}}}

Discovery compares fingerprints against it; it is written last in every step, so a
crash before the write leaves an export "new" and the re-run redoes it.
"""

from __future__ import annotations

from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage


def load_ledger(storage: Storage) -> dict:
    return storage.get_json(layout.LEDGER, default={"dataset_version": None, "exports": {}})


def record_exports(storage: Storage, entries: dict, dataset_version: str | None = None) -> None:
    """Set the ledger entries of these exports (and the latest dataset version, when given)."""
    # Read-modify-write of one object; Airflow runs one DAG run at a time (max_active_runs=1).
    ledger = load_ledger(storage)
    ledger.setdefault("exports", {}).update(entries)
    if dataset_version:
        ledger["dataset_version"] = dataset_version
    storage.put_json(layout.LEDGER, ledger)
