"""Validate an export's tables with the Great Expectations suites in `expectations/`.

The suites are plain GX 1.x JSON, editable without touching code; limits such as
`max_text_length` come from the pipeline config as suite parameters.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ocr_tasks.config import REPO_ROOT, ValidationConfig
from ocr_tasks.ingest.ppocrlabel import LABEL_FILE, shorten
from ocr_tasks.ingest.tables import ExportTables

EXPECTATIONS_DIR = Path(os.environ.get("OCR_RETRAIN_EXPECTATIONS", REPO_ROOT / "expectations"))
SUITES = {"images": "ppocrlabel_images", "boxes": "ppocrlabel_boxes", "crops": "ppocrlabel_crops"}
EXAMPLES = 5


@dataclass
class Failure:
    table: str
    expectation: str
    column: str | None
    problem: str
    count: int
    examples: list[str]          # "Label.txt:12 box 0: value"
    refuses_export: bool = True  # False: the images it names are left out, the rest merged


@dataclass
class LeftOut:
    """An image left out of the merge for a box-level problem; the rest of its export is merged."""

    where: str                   # Label.txt:14
    file: str                    # its Label.txt relpath
    reasons: list[str]           # "box 12: polygon crosses itself ..."


@dataclass
class ValidationReport:
    export: str
    success: bool
    rows: dict[str, int]
    unconfirmed_skipped: int
    failures: list[Failure] = field(default_factory=list)
    data_docs: str | None = None  # index.html of the GX Data Docs, when built
    notes: list[str] = field(default_factory=list)   # accepted, but changed on the way in (ExportTables.notes)
    left_out: list[LeftOut] = field(default_factory=list)   # when it passed: images not merged, and why

    @property
    def left_out_files(self) -> dict[str, str]:
        """Label.txt relpath -> why it was left out (what merge leaves out, what the ledger records)."""
        return {image.file: "; ".join(image.reasons) for image in self.left_out}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {table}" for table, n in self.rows.items())
        verdict = "FAILED" if not self.success else f"PASSED, {len(self.left_out)} image(s) LEFT OUT" \
            if self.left_out else "PASSED"
        head = f"export {self.export}: {verdict} ({counts}"
        head += f"; {self.unconfirmed_skipped} unconfirmed skipped)" if self.unconfirmed_skipped else ")"
        lines = [head]
        lines.extend(f"  note: {note}" for note in self.notes)
        for failure in self.failures:
            target = f"{failure.table}.{failure.column}" if failure.column else failure.table
            what = "FAIL" if failure.refuses_export else "LEAVES OUT"
            lines.append(f"  {what} {failure.problem}: {failure.count} row(s) [{failure.expectation} on {target}]")
            lines.extend(f"       {example}" for example in failure.examples)
        if self.success and self.left_out:
            lines.append("  left out (fix these images in PPOCRLabel and export again; the rest is merged):")
            lines.extend(f"       {image.where} {shorten(image.file, 120)}: {'; '.join(image.reasons)}"
                         for image in self.left_out[:50])
            if len(self.left_out) > 50:
                lines.append(f"       ... and {len(self.left_out) - 50} more (validation.json lists them all)")
        if self.data_docs:
            lines.append(f"  Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return asdict(self)


def validate_tables(tables: ExportTables, limits: ValidationConfig, data_docs_dir: Path | None = None) -> ValidationReport:
    frames = tables.frames()
    checked = [table for table in frames if table != "crops" or tables.crops]  # rec_gt.txt is optional
    if data_docs_dir is None:  # one GX context per process, set up once
        runner = _cached_runner(tuple((table, _suite_text(table)) for table in SUITES))
    else:  # a failure's Data Docs: a context of its own, with the suites it ran
        runner = _Runner(tuple((table, _suite_text(table)) for table in checked), gx_name(tables.name), data_docs_dir)
    parameters = {"max_text_length": limits.max_text_length,
                  "max_transcription_length": limits.max_transcription_length,
                  "max_boxes_per_image": limits.max_boxes_per_image}
    results = [(table, result) for table in checked
               for result in runner.run(table, frames[table], parameters) if not result.success]
    failures = [_failure(table, result) for table, result in results]
    left_out = _images_left_out(tables, results, limits, failures)
    return ValidationReport(
        export=tables.name,
        success=all(not failure.refuses_export for failure in failures),
        rows={table: len(frame) for table, frame in frames.items()},
        unconfirmed_skipped=tables.unconfirmed,
        failures=failures,
        data_docs=str(data_docs_dir / "index.html") if data_docs_dir is not None else None,
        notes=tables.notes(),
        left_out=left_out,
    )


_LINE_OF = re.compile(r"^Label\.txt:(\d+)(?: (box \d+))?")


def _images_left_out(tables: ExportTables, results: list, limits: ValidationConfig,
                     failures: list[Failure]) -> list[LeftOut]:
    """The images to leave out, when every failure is of an expectation scoped to an image (`meta.scope`)
    and few enough images are hit; otherwise none, and the failures refuse the export (marked on them)."""
    scoped = [(failure, result) for failure, (_, result) in zip(failures, results)
              if (result.expectation_config.meta or {}).get("scope") == "image"]
    if not limits.leave_out_bad_images or len(scoped) < len(failures) or not scoped:
        return []
    relpath_of = {line.line_no: line.relpath for line in tables.labels if not line.problem}
    reasons: dict[int, list[str]] = {}
    for failure, result in scoped:
        for item in (result.result or {}).get("unexpected_index_list") or []:
            match = _LINE_OF.match(str(item.get("where", ""))) if isinstance(item, dict) else None
            if match is None:   # cannot name the image: the export is refused whole
                return []
            reason = f"{match.group(2)}: {failure.problem}" if match.group(2) else failure.problem
            reasons.setdefault(int(match.group(1)), []).append(reason)
    images = len(relpath_of)
    if len(reasons) > limits.max_left_out_share * images:
        failures.append(Failure(
            "images", "max_left_out_share", None,
            f"{len(reasons)} of {images} images have box problems, more than validation.max_left_out_share "
            f"({limits.max_left_out_share:g}): the export is refused whole; a cause that hits this many images is "
            "usually one fix (the dictionary, a labelling habit)", len(reasons), []))
        return []
    for failure, _ in scoped:
        failure.refuses_export = False
    return [LeftOut(f"{LABEL_FILE}:{line_no}", relpath_of[line_no],
                    found[:EXAMPLES] + ([f"... {len(found) - EXAMPLES} more"] if len(found) > EXAMPLES else []))
            for line_no, found in sorted(reasons.items())]


def gx_name(export: str) -> str:
    """The export's name as Great Expectations may show it: GX writes the data source name unescaped into
    its Data Docs index table, where a folder named `x<img src=q onerror=...>` ran script. Letters, digits
    and `._-` only; anything else becomes `_`, with a hash of the real name so two exports never share one
    (the report and validation.json name the export as it is)."""
    safe = _GX_UNSAFE.sub("_", export)[:60]
    if safe == export:
        return f"export_{export}"
    return f"export_{safe}_{hashlib.sha256(export.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


_GX_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _suite_text(table: str) -> str:
    return (EXPECTATIONS_DIR / f"{SUITES[table]}.json").read_text(encoding="utf-8")


class _Runner:
    """A GX context holding the suites' validation definitions (table -> suite JSON text);
    with `data_docs_dir`, each run renders Data Docs there. `run` validates one table's frame."""

    def __init__(self, suites: tuple[tuple[str, str], ...], source_name: str = "export",
                 data_docs_dir: Path | None = None) -> None:
        gx = self.gx = _quiet_gx()
        context = self.context = gx.get_context(mode="ephemeral")
        _disable_progress_bars(context)
        if data_docs_dir is not None:
            context.add_data_docs_site(site_name="report", site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(data_docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
        source = context.data_sources.add_pandas(source_name)
        self.build_docs = data_docs_dir is not None
        self.definitions = {}
        for table, text in suites:
            suite = context.suites.add(gx.ExpectationSuite(**json.loads(text)))
            batch_definition = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("export")
            self.definitions[table] = context.validation_definitions.add(
                gx.ValidationDefinition(name=table, data=batch_definition, suite=suite))

    def run(self, table: str, frame: pd.DataFrame, parameters: dict) -> list:
        definition = self.definitions[table]
        result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["where"],
                         "partial_unexpected_count": EXAMPLES}
        batch = {"dataframe": frame.reset_index(drop=True)}
        if self.build_docs:
            from great_expectations.checkpoint import UpdateDataDocsAction

            checkpoint = self.context.checkpoints.add(self.gx.Checkpoint(
                name=f"{table}_checkpoint", validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="docs", site_names=["report"])], result_format=result_format))
            result = next(iter(checkpoint.run(batch_parameters=batch, expectation_parameters=parameters).run_results.values()))
        else:
            result = definition.run(batch_parameters=batch, expectation_parameters=parameters, result_format=result_format)
            store = self.context.validation_results_store
            for key in store.list_keys():  # a cached context must not keep every export's results
                store.remove_key(key)
        return result.results


@functools.lru_cache(maxsize=1)
def _cached_runner(suites: tuple[tuple[str, str], ...]) -> _Runner:
    """Setting up a context and its suites costs more than validating a table; a process
    validating many exports sets them up once (again only when a suite file changes)."""
    return _Runner(suites)


def _failure(table: str, result) -> Failure:
    config = result.expectation_config
    column = config.kwargs.get("column")
    details = result.result or {}
    examples = []
    for item in (details.get("unexpected_index_list") or [])[:EXAMPLES]:
        if isinstance(item, dict):
            value = item.get(column) if column else None
            examples.append(f"{item.get('where')}: {shorten(repr(value), 200)}" if column else str(item.get("where")))
    count = details.get("unexpected_count")
    if count is None:  # table-level expectations report an observed value instead
        count = 1
        examples = examples or [f"observed {details.get('observed_value')!r}"]
    return Failure(table, config.type, column, (config.meta or {}).get("problem", config.type), int(count), examples)


def _quiet_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # before the import: GX logs a few hundred INFO lines while importing (_docs_decorators)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    # GX sets some of its loggers to INFO explicitly at import; the report is ours.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return gx


def _disable_progress_bars(context) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
