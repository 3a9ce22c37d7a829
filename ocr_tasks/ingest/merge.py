"""Merge validated exports into a new immutable dataset version.

Ingest, one step per module, each with one input and one output artifact,
JSON-serialisable so Airflow can pass them between tasks:

    discover_exports(storage, ledger)        -> Discovery (new ExportRefs)      ingest/exports.py
    check_export(storage, ref, config)       -> ExportCheck (passed, or quarantined with a report)
                                                                                ingest/check.py
    merge_exports(storage, refs, config)     -> DatasetVersion (and the ledger updated, last)

Order of writes makes crashes harmless: the pack of new images, then the version's files with
dataset.json last, then the ledger. A crash before the ledger write leaves the
exports "new"; the re-run produces the same content hash and merges nothing twice.
Concurrent ingests: the ledger write is a compare-and-swap on the latest dataset (ingest/ledger.py).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ocr_tasks.config import PipelineConfig
from ocr_tasks.untrusted import for_log
from ocr_tasks.ingest.dataset import DATASET_FILES, INDEX_FILE, Dataset, stored_files, write_text_atomic
from ocr_tasks.ingest.exports import ExportRef, fetch_export
from ocr_tasks.ingest.ledger import already_merged, commit_merge, load_ledger
from ocr_tasks.ingest.packs import write_pack
from ocr_tasks.ingest.tables import build_tables, read_dictionary
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage, StorageError
from ocr_tasks.vocabulary import timestamp

log = logging.getLogger(__name__)

_MERGE_ATTEMPTS = 5   # each lost race means another ingest finished: five in one merge is a storm


@dataclass
class DatasetVersion:
    version: str
    uri: str
    counts: dict
    merged: list[str] = field(default_factory=list)


def merge_exports(storage: Storage, refs: list[ExportRef], config: PipelineConfig,
                  left_out: Mapping[str, Mapping[str, str]] | None = None) -> DatasetVersion:
    """Merge validated exports into the latest dataset and publish the new version.

    `left_out`: export name -> the images its check left out (Label.txt relpath -> why); they are
    not merged, and the ledger entry lists them.

    Each export's tables are rebuilt from its fetched copy (validation on the same worker
    fetched it already; another worker fetches it again), hashing its images, not decoding them.
    When another ingest records a new dataset while this one builds, this one is built again
    on top of it (exports that ingest merged with the same content are left out).
    """
    left_out = left_out or {}
    for attempt in range(1, _MERGE_ATTEMPTS + 1):
        ledger = load_ledger(storage)
        base = ledger.get("dataset_version")
        todo = [ref for ref in refs if not already_merged(ledger, ref.name, ref.fingerprint)]
        if not todo:
            log.info("%s already merged by another ingest into dataset %s", for_log(", ".join(r.name for r in refs)), base)
            return DatasetVersion(base, storage.uri(layout.dataset_prefix(base)),
                                  storage.get_json(layout.dataset_prefix(base) + "dataset.json").get("counts", {}))
        built = _build_on(storage, ledger, todo, config, left_out)
        entries = {ref.name: {"fingerprint": ref.fingerprint, "status": "merged",
                              "dataset_version": built.version, "at": timestamp(),
                              **({"left_out": dict(left_out[ref.name])} if left_out.get(ref.name) else {})}
                   for ref in todo}
        if commit_merge(storage, base, entries, built.version):
            log.info("dataset %s published (%s): %s", built.version, built.uri, built.counts)
            return built
        log.warning("another ingest recorded a new latest dataset while this one merged on %s: merging %s again "
                    "on top of it (attempt %d of %d)", base, ", ".join(r.name for r in todo), attempt + 1,
                    _MERGE_ATTEMPTS)
    raise StorageError(f"the latest dataset in {storage.uri(layout.LEDGER)} changed {_MERGE_ATTEMPTS} times while "
                       "this ingest merged; nothing of this merge was recorded, the next run merges it")


def _build_on(storage: Storage, ledger: dict, refs: list[ExportRef], config: PipelineConfig,
              left_out: Mapping[str, Mapping[str, str]]) -> DatasetVersion:
    """The dataset `ledger`'s latest plus `refs`, stored as its (content-named, immutable) version."""
    previous = ledger.get("dataset_version")
    stage = config.work.new_dataset_stage()
    dataset = _load_dataset(storage, previous, stage / INDEX_FILE)
    try:
        for ref in refs:
            tables = build_tables(fetch_export(storage, ref, config.work.exports), config.validation, decode=False)
            tables = tables.without(left_out.get(ref.name, {}))
            merged_before = ledger.get("exports", {}).get(ref.name, {}).get("status") == "merged"
            dataset.add_export(tables, stage, config.split, cut_crops=False, remerge=merged_before)
        info = dataset.write(stage, dictionary=read_dictionary(config.validation.dict_file),
                             grow_dictionary=config.validation.grows_dictionary(), ratios=config.split,
                             exports_merged=[r.name for r in refs],
                             max_text_length=config.validation.max_text_length)
        version = info["version"]
        prefix = layout.dataset_prefix(version)
        if not storage.exists(prefix + "dataset.json"):
            packs = _pack_new_files(storage, dataset, stage, _load_packs(storage, previous))
            write_text_atomic(stage / "packs.json", json.dumps(packs, indent=1) + "\n")
            storage.upload_many((stage / name, prefix + name) for name in DATASET_FILES + ("packs.json",))
            storage.upload_file(stage / "dataset.json", prefix + "dataset.json")
        return DatasetVersion(version, storage.uri(prefix), info["counts"], [r.name for r in refs])
    finally:
        dataset.close()
        shutil.rmtree(stage, ignore_errors=True)


def _load_packs(storage: Storage, version: str | None) -> dict[str, list[str]]:
    return storage.get_json(layout.dataset_prefix(version) + "packs.json") if version else {}


def _pack_new_files(storage: Storage, dataset: Dataset, stage: Path, packs: dict[str, list[str]]) -> dict[str, list[str]]:
    """Store the files this merge added as one pack; returns pack id -> files for the new version."""
    known = {rel for members in packs.values() for rel in members}
    needed = set(stored_files(dataset))
    new = sorted(needed - known)
    missing = [rel for rel in new if not (stage / rel).exists()]
    if missing:
        raise RuntimeError(f"dataset staging lost {len(missing)} file(s), e.g. {missing[0]}")
    kept = {pack: [rel for rel in members if rel in needed] for pack, members in packs.items()}
    kept = {pack: members for pack, members in kept.items() if members}
    if new:
        tar = stage / "pack.tar"
        pack_id = write_pack(stage, new, tar)
        storage.upload_file(tar, layout.pack_key(pack_id))
        kept[pack_id] = new
    return kept


def _load_dataset(storage: Storage, version: str | None, index_path: Path) -> Dataset:
    if not version:
        return Dataset(index_path)
    prefix = layout.dataset_prefix(version)
    files = index_path.parent / ".previous"
    storage.download_many((prefix + name, files / name) for name in ("images.jsonl", "crops.jsonl"))
    try:
        return Dataset.from_index(files / "images.jsonl", files / "crops.jsonl", version, index_path)
    finally:
        shutil.rmtree(files, ignore_errors=True)
