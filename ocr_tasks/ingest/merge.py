"""Ingest: new exports -> validated -> merged into a new immutable dataset version.

Each step has one input and one output artifact, JSON-serialisable so Airflow can
pass them between tasks:

    discover_exports(storage, ledger)        -> Discovery (new ExportRefs)
    check_export(storage, ref, config)       -> ExportCheck (passed, or quarantined with a report)
    merge_exports(storage, refs, config)     -> DatasetVersion (and the ledger updated, last)

Order of writes makes crashes harmless: the pack of new images, then the version's files with
dataset.json last, then the ledger. A crash before the ledger write leaves the
exports "new"; the re-run produces the same content hash and merges nothing twice.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ocr_tasks.storage import layout
from ocr_tasks.config import PipelineConfig
from ocr_tasks.ingest.dataset import DATASET_FILES, Dataset, recut_crops, stored_files, write_text_atomic
from ocr_tasks.ingest.packs import extract_pack, write_pack
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.exports import LABEL_FILES, Discovery, ExportRef, discover_exports, fetch_export
from ocr_tasks.flow.notify import export_quarantined, notify
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.ingest.tables import ExportTables, build_tables, read_dictionary
from ocr_tasks.ingest.validate import ValidationReport, validate_tables

log = logging.getLogger(__name__)

# every file a dataset version names; anything else in its index is not followed
_DATASET_FILE = re.compile(r"(images|crops)/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class ExportCheck:
    export: ExportRef
    passed: bool
    summary: str
    report_uri: str | None = None    # quarantine folder when it failed

    def to_json(self) -> dict:
        return {**asdict(self), "export": self.export.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "ExportCheck":
        return cls(**{**data, "export": ExportRef.from_json(data["export"])})


@dataclass
class DatasetVersion:
    version: str
    uri: str
    counts: dict
    merged: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_ledger(storage: Storage) -> dict:
    return storage.get_json(layout.LEDGER, default={"dataset_version": None, "exports": {}})


def check_local_export(folder: Path, config: PipelineConfig, docs_dir: Path | None = None) -> tuple[ExportTables, ValidationReport]:
    """Validate a local export; GX Data Docs are rendered into `docs_dir` only when it fails."""
    tables = build_tables(folder, config.validation, read_dictionary(config.validation.dict_file))
    report = validate_tables(tables, config.validation)
    if not report.success and docs_dir is not None:
        report = validate_tables(tables, config.validation, docs_dir)
    return tables, report


def check_export(storage: Storage, ref: ExportRef, config: PipelineConfig) -> ExportCheck:
    """Validate one export from storage; a failing one is quarantined with its report."""
    return _check_export(storage, ref, config)[0]


def _check_export(storage: Storage, ref: ExportRef, config: PipelineConfig) -> tuple[ExportCheck, ExportTables]:
    folder = fetch_export(storage, ref, config.work_path)
    docs_dir = folder.parent / "data_docs"
    shutil.rmtree(docs_dir, ignore_errors=True)
    tables, report = check_local_export(folder, config, docs_dir)
    if report.success:
        log.info("%s", report.summary())
        return ExportCheck(ref, True, report.summary()), tables
    target = layout.quarantine_prefix(ref.name, ref.fingerprint)
    report.data_docs = storage.uri(target + "data_docs/index.html")
    summary = report.summary()
    storage.upload_dir(docs_dir, target + "data_docs")
    storage.upload_many((folder / name, target + name) for name in LABEL_FILES if (folder / name).exists())
    storage.put_json(target + "validation.json", report.to_json())
    storage.put_text(target + "report.txt", summary + "\n")
    _record(storage, {ref.name: {"fingerprint": ref.fingerprint, "status": "quarantined",
                                 "quarantine": storage.uri(target), "at": _now()}})
    log.warning("%s", summary)
    notify(export_quarantined(ref.name, summary, storage.uri(target)), config.notifications)
    return ExportCheck(ref, False, summary, storage.uri(target)), tables


def merge_exports(storage: Storage, refs: list[ExportRef], config: PipelineConfig,
                  checked: dict[str, ExportTables] | None = None) -> DatasetVersion:
    """Merge validated exports into the latest dataset and publish the new version.

    `checked` holds tables already built by validation in this process (saves re-reading
    every image); a separate merge task (Airflow) rebuilds them from the fetched export.
    """
    ledger = load_ledger(storage)
    previous = ledger.get("dataset_version")
    dataset = _load_dataset(storage, previous)
    stage = config.work_path / "datasets" / f"stage-{uuid.uuid4().hex[:8]}"
    try:
        for ref in refs:
            tables = (checked or {}).get(ref.name) or build_tables(
                fetch_export(storage, ref, config.work_path), config.validation,
                read_dictionary(config.validation.dict_file))
            merged_before = ledger.get("exports", {}).get(ref.name, {}).get("status") == "merged"
            dataset.add_export(tables, stage, config.split, cut_crops=False, remerge=merged_before)
        info = dataset.write(stage, dictionary=read_dictionary(config.validation.dict_file), ratios=config.split,
                             exports_merged=[r.name for r in refs])
        version = info["version"]
        prefix = layout.dataset_prefix(version)
        if not storage.exists(prefix + "dataset.json"):
            packs = _pack_new_files(storage, dataset, stage, _load_packs(storage, previous))
            write_text_atomic(stage / "packs.json", json.dumps(packs, indent=1) + "\n")
            storage.upload_many((stage / name, prefix + name) for name in DATASET_FILES + ("packs.json",))
            storage.upload_file(stage / "dataset.json", prefix + "dataset.json")
        merged_at = _now()
        _record(storage, {ref.name: {"fingerprint": ref.fingerprint, "status": "merged",
                                     "dataset_version": version, "at": merged_at} for ref in refs},
                dataset_version=version)
        log.info("dataset %s published (%s): %s", version, storage.uri(prefix), info["counts"])
        return DatasetVersion(version, storage.uri(prefix), info["counts"], [r.name for r in refs])
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@dataclass
class IngestResult:
    discovery: Discovery
    checks: list[ExportCheck]
    dataset: DatasetVersion | None


def ingest(storage: Storage, config: PipelineConfig) -> IngestResult:
    """discover -> check each -> merge the ones that passed (others wait in quarantine)."""
    discovery = discover_exports(storage, load_ledger(storage))
    for name, why in discovery.waiting.items():
        log.info("export %s is not complete, left for the next run: %s", name, why)
    results = [_check_export(storage, ref, config) for ref in discovery.new]
    checks = [check for check, _ in results]
    passed = {check.export.name: tables for check, tables in results if check.passed}
    refs = [check.export for check in checks if check.passed]
    dataset = merge_exports(storage, refs, config, passed) if refs else None
    return IngestResult(discovery, checks, dataset)


def _record(storage: Storage, entries: dict, dataset_version: str | None = None) -> None:
    # Read-modify-write of one object; Airflow runs one DAG run at a time (max_active_runs=1).
    ledger = load_ledger(storage)
    ledger.setdefault("exports", {}).update(entries)
    if dataset_version:
        ledger["dataset_version"] = dataset_version
    storage.put_json(layout.LEDGER, ledger)


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


def _load_dataset(storage: Storage, version: str | None) -> Dataset:
    if not version:
        return Dataset()
    prefix = layout.dataset_prefix(version)
    return Dataset.from_index(storage.get_text(prefix + "images.jsonl"), storage.get_text(prefix + "crops.jsonl"), version)


def pull_dataset(storage: Storage, version: str, dest: Path) -> Path:
    """Materialise a dataset version locally as a PaddleOCR data_dir.

    Only packs holding files not already in `dest` are fetched, so pulling the next
    version into the same folder downloads just what is new. Crops cut from polygons
    are re-cut here.
    """
    prefix = layout.dataset_prefix(version)
    if not storage.exists(prefix + "dataset.json"):
        raise UsageError(f"dataset version {version} not found (no {storage.uri(prefix + 'dataset.json')})")
    dest.mkdir(parents=True, exist_ok=True)
    storage.download_many((prefix + name, dest / name) for name in DATASET_FILES + ("packs.json", "dataset.json"))
    dataset = Dataset.from_index((dest / "images.jsonl").read_text(encoding="utf-8"),
                                 (dest / "crops.jsonl").read_text(encoding="utf-8"), version)
    packs = json.loads((dest / "packs.json").read_text(encoding="utf-8"))
    for rel in [*stored_files(dataset), *(rel for members in packs.values() for rel in members)]:
        if not _DATASET_FILE.fullmatch(rel):
            raise UsageError(f"dataset {version}: refusing file path {rel!r} (not images/<name> or crops/<name>)")
    with tempfile.TemporaryDirectory(prefix=".packs-", dir=dest) as scratch:
        for pack_id, members in packs.items():
            wanted = {rel for rel in members if not (dest / rel).exists()}
            if wanted:
                tar = Path(scratch) / f"{pack_id}.tar"
                storage.download_file(layout.pack_key(pack_id), tar)
                extract_pack(tar, wanted, dest)
                tar.unlink()
    absent = [rel for rel in stored_files(dataset) if not (dest / rel).exists()]
    if absent:
        raise UsageError(f"dataset {version}: {len(absent)} file(s) missing from its packs, e.g. {absent[0]}")
    recut_crops(dataset, dest)
    return dest


@dataclass
class PrepareResult:
    reports: list[ValidationReport]
    info: dict | None

    @property
    def excluded(self) -> list[str]:
        return [r.export for r in self.reports if not r.success]


def prepare(sources: list[str], out: Path, config: PipelineConfig, storage_for_uri=None) -> PrepareResult:
    """Validate local folders or s3:// exports and write the passing ones as a dataset into `out`."""
    out = out.resolve()
    reports, passing = [], []
    with tempfile.TemporaryDirectory(prefix="ocr-retrain-", dir=scratch_dir(config)) as scratch:
        for source in sources:
            folder = resolve_source(source, Path(scratch), storage_for_uri)
            tables, report = check_local_export(folder, config)
            reports.append(report)
            if report.success:
                passing.append(tables)
        if not passing:
            return PrepareResult(reports, None)
        dataset = Dataset()
        for tables in passing:
            dataset.add_export(tables, out, config.split)
        info = dataset.write(out, dictionary=read_dictionary(config.validation.dict_file), ratios=config.split,
                             exports_merged=[t.name for t in passing])
    return PrepareResult(reports, info)


def scratch_dir(config: PipelineConfig) -> Path:
    """Temporary files go under the configured work_dir, never the system temp."""
    path = config.work_path / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_source(source: str, scratch: Path, storage_for_uri) -> Path:
    """A local export folder as is, or an s3:// export downloaded into `scratch`."""
    if source.startswith("s3://"):
        storage, prefix = storage_for_uri(source)
        objects = list(storage.list(prefix))
        if not objects:
            raise UsageError(f"{source}: no objects there")
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        ref = ExportRef(name, prefix, "local-" + uuid.uuid4().hex, len(objects))
        return fetch_export(storage, ref, scratch)
    folder = Path(source)
    if not folder.is_dir():
        raise UsageError(f"{source}: no such export folder")
    return folder
