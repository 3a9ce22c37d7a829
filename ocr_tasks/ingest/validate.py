"""Validate an export's tables with the Great Expectations suites in `expectations/`.

The suites are plain GX 1.x JSON, editable without touching code; limits such as
`max_text_length` come from the pipeline config as suite parameters.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ocr_tasks.config import REPO_ROOT, ValidationConfig
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


@dataclass
class ValidationReport:
    export: str
    success: bool
    rows: dict[str, int]
    unconfirmed_skipped: int
    failures: list[Failure] = field(default_factory=list)
    data_docs: str | None = None  # index.html of the GX Data Docs, when built

    def summary(self) -> str:
        counts = ", ".join(f"{n} {table}" for table, n in self.rows.items())
        head = f"export {self.export}: {'PASSED' if self.success else 'FAILED'} ({counts}"
        head += f"; {self.unconfirmed_skipped} unconfirmed skipped)" if self.unconfirmed_skipped else ")"
        lines = [head]
        for failure in self.failures:
            target = f"{failure.table}.{failure.column}" if failure.column else failure.table
            lines.append(f"  FAIL {failure.problem}: {failure.count} row(s) [{failure.expectation} on {target}]")
            lines.extend(f"       {example}" for example in failure.examples)
        if self.data_docs:
            lines.append(f"  Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return asdict(self)


def validate_tables(tables: ExportTables, limits: ValidationConfig, data_docs_dir: Path | None = None) -> ValidationReport:
    gx = _quiet_gx()
    context = gx.get_context(mode="ephemeral")
    _disable_progress_bars(context)
    if data_docs_dir is not None:
        context.add_data_docs_site(site_name="report", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(data_docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    source = context.data_sources.add_pandas(f"export_{tables.name}")
    frames = tables.frames()
    parameters = {"max_text_length": limits.max_text_length}
    failures: list[Failure] = []
    for table, frame in frames.items():
        if table == "crops" and not tables.crops:
            continue  # rec_gt.txt is optional; crops are then cut from the polygons
        failures += _run_suite(gx, context, source, table, frame, parameters, data_docs_dir is not None)
    return ValidationReport(
        export=tables.name,
        success=not failures,
        rows={table: len(frame) for table, frame in frames.items()},
        unconfirmed_skipped=tables.unconfirmed,
        failures=failures,
        data_docs=str(data_docs_dir / "index.html") if data_docs_dir is not None else None,
    )


def load_suite(gx, name: str):
    path = EXPECTATIONS_DIR / f"{name}.json"
    return gx.ExpectationSuite(**json.loads(path.read_text(encoding="utf-8")))


def _run_suite(gx, context, source, table: str, frame: pd.DataFrame, parameters: dict, build_docs: bool) -> list[Failure]:
    suite = context.suites.add(load_suite(gx, SUITES[table]))
    batch_definition = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("export")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch_definition, suite=suite))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["where"],
                     "partial_unexpected_count": EXAMPLES}
    batch = {"dataframe": frame.reset_index(drop=True)}
    if build_docs:
        from great_expectations.checkpoint import UpdateDataDocsAction

        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{table}_checkpoint", validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="docs", site_names=["report"])], result_format=result_format))
        result = next(iter(checkpoint.run(batch_parameters=batch, expectation_parameters=parameters).run_results.values()))
    else:
        result = definition.run(batch_parameters=batch, expectation_parameters=parameters, result_format=result_format)
    return [_failure(table, r) for r in result.results if not r.success]


def _failure(table: str, result) -> Failure:
    config = result.expectation_config
    column = config.kwargs.get("column")
    details = result.result or {}
    examples = []
    for item in (details.get("unexpected_index_list") or [])[:EXAMPLES]:
        if isinstance(item, dict):
            value = item.get(column) if column else None
            examples.append(f"{item.get('where')}: {value!r}" if column else str(item.get("where")))
    count = details.get("unexpected_count")
    if count is None:  # table-level expectations report an observed value instead
        count = 1
        examples = examples or [f"observed {details.get('observed_value')!r}"]
    return Failure(table, config.type, column, (config.meta or {}).get("problem", config.type), int(count), examples)


def _quiet_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    # GX sets some of its loggers to INFO explicitly at import; the report is ours.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return gx


def _disable_progress_bars(context) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
