"""The local runner: the chain of ocr_tasks/flow/steps.py in one process, in the DAG's order.

`ocr-retrain run` uses it to run (or debug) a whole night by hand; `ocr-retrain ingest`
runs its first half. The same step functions run as Airflow tasks in dags/ocr_retraining.py,
so both runners share every rule: when to train, the dataset lock, the gate, the
idempotent publish, run.json and the notifications.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocr_tasks.config import PipelineConfig
from ocr_tasks.flow import steps
from ocr_tasks.flow.run import Discovery, ExportRef, MergedDataset, RunContext, RunOutcome, RunRequest
from ocr_tasks.vocabulary import NOTHING_NEW

if TYPE_CHECKING:
    from ocr_tasks.ingest.check import ExportCheck
    from ocr_tasks.storage.s3 import StorageSettings

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """discover -> check_export (each) -> merge, as `ocr-retrain ingest` prints it."""

    discovery: Discovery
    checks: list            # ExportCheck, one per new export
    merged: MergedDataset | None

    @property
    def dataset(self):
        """The DatasetVersion this ingest published, or None (nothing passed, nothing new)."""
        from ocr_tasks.ingest.merge import DatasetVersion

        return DatasetVersion(**self.merged.merged) if self.merged and self.merged.merged else None


def ingest(ctx: RunContext) -> IngestReport:
    """The ingest half of the chain: new exports validated, quarantined or merged."""
    discovery = steps.discover(ctx)
    checks = check_exports(ctx, discovery.new)
    merged = steps.merge(ctx, checks) if checks else None
    return IngestReport(discovery, checks, merged)


def check_exports(ctx: RunContext, refs: list[ExportRef]) -> list[ExportCheck]:
    """check_export for each new export, several at once in child processes.

    The DAG maps one check_export task per export and its executor runs them side by side;
    this is the same for the local runner. Processes, not threads: downloading (botocore
    spends ~1.7 ms of CPU per GET, under the GIL) and validating are CPU-bound in Python.
    Forked children start with the parent's imports (GX included) and logging; each
    builds its own S3 client. Results come back in the order of `refs`.
    """
    workers = min(len(refs), ctx.config.validation.processes or os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [steps.check_export(ctx, ref) for ref in refs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_check_in_child, ctx.config, ctx.storage.settings, ctx.request, ref) for ref in refs]
        return [future.result() for future in futures]


def _check_in_child(config: PipelineConfig, settings: StorageSettings, request: RunRequest,
                    ref: ExportRef) -> ExportCheck:
    from ocr_tasks.storage.s3 import Storage

    return steps.check_export(RunContext(config, Storage(settings), request), ref)


def run_local(ctx: RunContext) -> RunOutcome:
    """Every step in one process; a quiet night (nothing new, not forced) ends after merge."""
    discovery = steps.discover(ctx)
    if not steps.should_run(ctx, discovery):
        return RunOutcome(ctx.run_id, NOTHING_NEW)
    checks = check_exports(ctx, discovery.new)
    merged = steps.merge(ctx, checks)
    if not steps.has_dataset(ctx, merged):
        return RunOutcome(ctx.run_id, NOTHING_NEW)
    trained = {kind: steps.train(ctx, kind, merged) for kind in ctx.request.models}
    evaluation = steps.evaluate(ctx, merged, trained)
    exported = steps.export(ctx, merged, evaluation)
    served = steps.infra_validate(ctx, merged, exported)
    compared = steps.compare(ctx, merged, evaluation, exported)
    decision = steps.gate(ctx, evaluation, served, compared)
    way = steps.route(ctx, decision)
    approval = None
    if way == steps.APPROVE:   # nobody to ask in one process: --approved-by is the answer
        from ocr_tasks.release.approval import cli_approval

        approval = cli_approval(ctx.request.approved_by)
        way = steps.PUBLISH if approval["decision"] == "approved" else steps.RECORD
    end = steps.publish if way == steps.PUBLISH else steps.record
    return end(ctx, merged, evaluation, exported, served, decision, compared, approval)
