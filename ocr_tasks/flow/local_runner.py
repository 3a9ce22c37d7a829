"""The local runner: the chain of ocr_tasks/flow/steps.py in one process, in the DAG's order.

`ocr-retrain run` uses it to run (or debug) a whole night by hand; `ocr-retrain ingest`
runs its first half. The same step functions run as Airflow tasks in dags/ocr_retraining.py,
so both runners share every rule: when to train, the dataset lock, the gate, the
idempotent publish, run.json and the notifications.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ocr_tasks.flow import steps
from ocr_tasks.flow.run import Discovery, MergedDataset, RunContext, RunOutcome
from ocr_tasks.vocabulary import NOTHING_NEW

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
    checks = [steps.check_export(ctx, ref) for ref in discovery.new]
    merged = steps.merge(ctx, checks) if checks else None
    return IngestReport(discovery, checks, merged)


def run_local(ctx: RunContext) -> RunOutcome:
    """Every step in one process; a quiet night (nothing new, not forced) ends after merge."""
    discovery = steps.discover(ctx)
    if not steps.should_run(ctx, discovery):
        return RunOutcome(ctx.run_id, NOTHING_NEW)
    checks = [steps.check_export(ctx, ref) for ref in discovery.new]
    merged = steps.merge(ctx, checks)
    if not steps.has_dataset(ctx, merged):
        return RunOutcome(ctx.run_id, NOTHING_NEW)
    trained = {kind: steps.train(ctx, kind, merged) for kind in ctx.request.models}
    evaluation = steps.evaluate(ctx, merged, trained)
    decision = steps.gate(ctx, evaluation)
    end = steps.publish if steps.route(ctx, decision) == steps.PUBLISH else steps.record
    return end(ctx, merged, evaluation, decision)
