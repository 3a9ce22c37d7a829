"""Reference sets: fixed labelled PPOCRLabel exports under `reference/<name>/` that every run reads with
the new and the production model, the guard against forgetting what production could read.

They are validated like any export and never merged into training. Each becomes a small dataset
on the worker with every sample in its test split, cached by the set's fingerprint
(work_dir/references/<name>/<fp>/), so an unchanged set is fetched and cut once.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from ocr_tasks.config import PipelineConfig, SplitConfig
from ocr_tasks.ingest.exports import ExportRef, fetch_export, fingerprint, unsafe_export_name
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage

log = logging.getLogger(__name__)

ALL_TEST = SplitConfig(train=0.0, val=0.0, test=1.0)


def reference_sets(storage: Storage, config: PipelineConfig) -> tuple[dict[str, Path], list[str]]:
    """{set name: local dataset folder}, and why sets were left out (they fail validation)."""
    from ocr_tasks.ingest.prepare import prepare

    sets: dict[str, Path] = {}
    problems: list[str] = []
    root = config.work.references
    for name in sorted(storage.list_dirs(layout.REFERENCE)):
        refused = unsafe_export_name(name)
        if refused:
            problems.append(f"reference set {name!r} is refused: {refused}")
            continue
        prefix = f"{layout.REFERENCE}{name}/"
        objects = list(storage.list(prefix))
        fp = fingerprint(objects)
        target = root / name / fp[:12]
        if (target / "dataset.json").is_file():
            sets[name] = target
            continue
        folder = fetch_export(storage, ExportRef(name, prefix, fp, len(objects)), root / ".fetched")
        staging = root / name / f".{uuid.uuid4().hex[:8]}.part"
        try:
            result = prepare([str(folder)], staging, config.model_copy(update={"split": ALL_TEST}))
            if not result.info:
                report = result.reports[0]
                first = report.failures[0].problem if report.failures else "no usable samples"
                problems.append(f"reference set {name} ({storage.uri(prefix)}) fails validation: {first}; "
                                "fix and re-upload it (`ocr-retrain validate` shows every problem)")
                continue
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
            sets[name] = target
            log.info("reference set %s: %s", name, result.info["counts"]["test"])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(root / ".fetched" / name, ignore_errors=True)
    return sets, problems
