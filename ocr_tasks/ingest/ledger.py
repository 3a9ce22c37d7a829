"""The ingest ledger (`ledger/ingest.json`): which exports were merged or quarantined, and the latest dataset.

    {"dataset_version": "<version>" | null,
     "exports": {"<export>": {"fingerprint", "status": "merged" | "quarantined", "at",
                              "dataset_version" (merged) | "quarantine" (quarantined)}}}

Discovery compares fingerprints against it; it is written last in every step, so a
crash before the write leaves an export "new" and the re-run redoes it.

Several ingests may run at once (a CLI `ingest` beside the nightly run, two manual runs):
every write is a read-change-write under the ledger's lease (storage/lease.py), and a merge
commits only on top of the dataset it was built from (`commit_merge`): one that lost the race
merges again on top of the winner's dataset, so no export is recorded as merged while missing
from the latest dataset.
"""

from __future__ import annotations

from ocr_tasks.storage import layout
from ocr_tasks.storage.lease import lease
from ocr_tasks.storage.s3 import Storage


def load_ledger(storage: Storage) -> dict:
    return storage.get_json(layout.LEDGER, default={"dataset_version": None, "exports": {}})


def already_merged(ledger: dict, name: str, fingerprint: str) -> bool:
    entry = ledger.get("exports", {}).get(name) or {}
    return entry.get("status") == "merged" and entry.get("fingerprint") == fingerprint


def record_exports(storage: Storage, entries: dict) -> None:
    """Set the ledger entries of these exports (quarantined ones), beside whatever others wrote."""
    with lease(storage, layout.LEDGER_LEASE) as held:
        ledger = load_ledger(storage)
        ledger.setdefault("exports", {}).update(entries)
        held.check()
        storage.put_json(layout.LEDGER, ledger)


def commit_merge(storage: Storage, base: str | None, entries: dict, dataset_version: str) -> bool:
    """Record a merge built on dataset `base` as the latest dataset, with its exports' entries.

    False, writing nothing, when the latest dataset is no longer `base`: another ingest
    committed first, and this merge must be rebuilt on top of its dataset.
    """
    with lease(storage, layout.LEDGER_LEASE) as held:
        ledger = load_ledger(storage)
        if ledger.get("dataset_version") != base:
            return False
        ledger.setdefault("exports", {}).update(entries)
        ledger["dataset_version"] = dataset_version
        held.check()
        storage.put_json(layout.LEDGER, ledger)
        return True
