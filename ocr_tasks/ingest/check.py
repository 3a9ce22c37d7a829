"""Validate an export; in storage, a failing one is quarantined with its report.

    check_export(storage, ref, config)   -> ExportCheck (passed, or quarantined with a report)

A quarantined export's report.txt, validation.json, Data Docs and label files go to
quarantine/<export>/<fp>/; so do those of an export that passed without some of its images (a box
that cannot be used leaves its image out: ValidationConfig.leave_out_bad_images); the ledger entry that marks it is written by the merge step
(`quarantined_entries`), once per run rather than once per check: checks run side by side
(the DAG's mapped tasks, the local runner's processes). Every ledger write takes the ledger's
lease (ingest/ledger.py), so a CLI ingest beside a run cannot lose an entry either.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ocr_tasks.config import PipelineConfig
from ocr_tasks.flow.notify import export_quarantined, images_left_out, notify
from ocr_tasks.ingest.exports import LABEL_FILES, ExportRef, fetch_export
from ocr_tasks.ingest.tables import ExportTables, build_tables, read_dictionary
from ocr_tasks.ingest.ppocrlabel import shorten
from ocr_tasks.ingest.validate import Failure, ValidationReport, validate_tables
from ocr_tasks.storage import layout
from ocr_tasks.errors import StorageError, UsageError
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.untrusted import for_log
from ocr_tasks.vocabulary import timestamp

log = logging.getLogger(__name__)


@dataclass
class ExportCheck:
    export: ExportRef
    passed: bool
    summary: str
    report_uri: str | None = None    # quarantine folder: the report of a failure, or of the images left out
    left_out: dict[str, str] = field(default_factory=dict)   # passed without these images: relpath -> why


def quarantined_entries(checks: list[ExportCheck]) -> dict[str, dict]:
    """The ledger entries of the checks that failed (merge writes them)."""
    return {c.export.name: {"fingerprint": c.export.fingerprint, "status": "quarantined", "quarantine": c.report_uri,
                            "at": timestamp()} for c in checks if not c.passed}


def check_local_export(folder: Path, config: PipelineConfig, docs_dir: Path | None = None) -> tuple[ExportTables, ValidationReport]:
    """Validate a local export; GX Data Docs are rendered into `docs_dir` only when it fails."""
    dictionary = read_dictionary(config.validation.dict_file)   # read even when growing: a bad dict file is refused
    tables = build_tables(folder, config.validation, dictionary if config.validation.dictionary_refuses() else None)
    report = validate_tables(tables, config.validation)
    if (not report.success or report.left_out) and docs_dir is not None:
        report = validate_tables(tables, config.validation, docs_dir)
    return tables, report


def unreadable(export: str, exc: Exception) -> ValidationReport:
    """The report of an export whose validation raised: it is quarantined with the error, like any failure."""
    problem = f"the export could not be read: {type(exc).__name__}: {shorten(str(exc), 300)}"
    return ValidationReport(export, False, {}, 0, [Failure("export", "read", None, problem, 1, [])])


def check_export(storage: Storage, ref: ExportRef, config: PipelineConfig) -> ExportCheck:
    """Validate one export from storage; a failing one is quarantined with its report."""
    folder = fetch_export(storage, ref, config.work.exports)
    docs_dir = folder.parent / "data_docs"
    shutil.rmtree(docs_dir, ignore_errors=True)
    try:
        _, report = check_local_export(folder, config, docs_dir)
    except (StorageError, UsageError):
        raise   # the store or the config, not this export: the task fails and is retried
    except Exception as exc:  # noqa: BLE001 - whatever this export makes raise, the others go on
        log.exception("export %s could not be validated", ref.name)
        report = unreadable(ref.name, exc)
    if report.success and not report.left_out:
        log.info("%s", "\n".join(for_log(line) for line in report.summary().splitlines()))
        return ExportCheck(ref, True, report.summary())
    return _quarantine(storage, ref, report, config, folder, docs_dir)


def abandon_export(storage: Storage, ref: ExportRef, why: str, config: PipelineConfig) -> ExportCheck:
    """Quarantine an export that stayed incomplete too long ("file never arrived"), with its report."""
    report = ValidationReport(ref.name, False, {}, 0, [Failure("export", "upload", None, why, 1, [])])
    return _quarantine(storage, ref, report, config)


def _quarantine(storage: Storage, ref: ExportRef, report: ValidationReport, config: PipelineConfig,
                folder: Path | None = None, docs_dir: Path | None = None) -> ExportCheck:
    target = layout.quarantine_prefix(ref.name, ref.fingerprint)
    has_docs = docs_dir is not None and docs_dir.is_dir()   # an export that could not be read has none
    report.data_docs = storage.uri(target + "data_docs/index.html") if has_docs else None
    summary = report.summary()
    if has_docs:
        storage.upload_dir(docs_dir, target + "data_docs")
    if folder is not None:
        storage.upload_many((folder / name, target + name) for name in LABEL_FILES if (folder / name).exists())
    storage.put_json(target + "validation.json", report.to_json())
    storage.put_text(target + "report.txt", summary + "\n")
    log.warning("%s", "\n".join(for_log(line) for line in summary.splitlines()))
    if report.success:   # merged without the images it names: the labellers hear which, like a quarantine
        notify(images_left_out(ref.name, len(report.left_out), summary, storage.uri(target)), config.notifications)
        return ExportCheck(ref, True, summary, storage.uri(target), report.left_out_files)
    notify(export_quarantined(ref.name, summary, storage.uri(target)), config.notifications)
    return ExportCheck(ref, False, summary, storage.uri(target))
