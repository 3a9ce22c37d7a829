"""Without storage: local folders or s3:// exports -> validated -> a dataset written into a folder."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ocr_tasks.config import PipelineConfig
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.check import check_local_export
from ocr_tasks.ingest.dataset import INDEX_FILE, Dataset
from ocr_tasks.ingest.exports import ExportRef, fetch_export
from ocr_tasks.ingest.ppocrlabel import LABEL_FILE
from ocr_tasks.ingest.tables import read_dictionary
from ocr_tasks.ingest.validate import ValidationReport


@dataclass
class PrepareResult:
    reports: list[ValidationReport]
    info: dict | None

    @property
    def warnings(self) -> list[str]:
        """Splits the dataset came out without: training or the gate would have nothing there."""
        if not self.info:
            return []
        use = {"train": "training", "val": "tools/train.py's evaluation during training", "test": "the gate"}
        return [f"the {split} split is empty ({self.info['counts'][split]['images']} images, "
                f"{self.info['counts'][split]['crops']} crops): {use[split]} has nothing to work on; "
                "add images (the split is by content hash, 6:2:2 by default) or change split.*"
                for split in ("train", "val", "test")
                if not self.info["counts"][split]["images"] or not self.info["counts"][split]["crops"]]

    @property
    def excluded(self) -> list[str]:
        return [r.export for r in self.reports if not r.success]


def prepare(sources: list[str], out: Path, config: PipelineConfig, storage_for_uri=None) -> PrepareResult:
    """Validate local folders or s3:// exports and write the passing ones as a dataset into `out`."""
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} is not an empty folder: give a new or empty one "
                         "(a dataset written over another would mix their files)")
    reports, passing = [], []
    with tempfile.TemporaryDirectory(prefix="ocr-retrain-", dir=config.work.scratch) as scratch:
        for source in sources:
            folder = resolve_source(source, Path(scratch), storage_for_uri)
            tables, report = check_local_export(folder, config)
            reports.append(report)
            if report.success:
                passing.append(tables.without(report.left_out_files))
        if not passing:
            return PrepareResult(reports, None)
        with Dataset(Path(scratch) / INDEX_FILE) as dataset:
            for tables in passing:
                dataset.add_export(tables, out, config.split)
            info = dataset.write(out, dictionary=read_dictionary(config.validation.dict_file),
                                 grow_dictionary=config.validation.grows_dictionary(), ratios=config.split,
                                 exports_merged=[t.name for t in passing],
                                 max_text_length=config.validation.max_text_length)
    return PrepareResult(reports, info)


def resolve_source(source: str, scratch: Path, storage_for_uri) -> Path:
    """A local export folder as is, or an s3:// export downloaded into `scratch`."""
    if source.startswith("s3://"):
        storage, prefix = storage_for_uri(source)
        objects = list(storage.list(prefix))
        if not objects:
            raise UsageError(f"{source}: no objects there")
        if not any(o.key == f"{prefix.rstrip('/')}/{LABEL_FILE}" for o in objects):
            raise UsageError(f"{source}: no {LABEL_FILE} there, so not a PPOCRLabel export: give the export's own "
                             "folder, e.g. s3://<bucket>/incoming/<export>/")
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        ref = ExportRef(name, prefix, "local-" + uuid.uuid4().hex, len(objects))
        return fetch_export(storage, ref, scratch)
    folder = Path(source)
    if not folder.is_dir():
        raise UsageError(f"{source}: no such export folder")
    return folder
