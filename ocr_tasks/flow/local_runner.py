"""The local runner: a pipeline declaration (ocr_tasks/flow/pipeline.py) run in one process, node by
node in declaration order. `ocr-retrain run` runs the retraining pipeline with it, `ocr-retrain
ingest` the pipeline up to merge; the Airflow runner (ocr_tasks/flow/airflow_runner.py) runs the same
declaration as a DAG, so both share every rule: when to train, the gate, the idempotent publish.

How each role runs here: a short-circuit that says no ends the run; a branch runs the node it names
and skips the others' descendants; an approval asks nobody (`by_hand`: `--approved-by`); a node
that maps over a list runs once per item, several at once in forked child processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocr_tasks.flow.pipeline import Node, Pipeline, Role
from ocr_tasks.flow.run import RunContext, RunOutcome, RunRequest
from ocr_tasks.vocabulary import NOTHING_NEW

if TYPE_CHECKING:
    from ocr_tasks.config import PipelineConfig
    from ocr_tasks.storage.s3 import StorageSettings

log = logging.getLogger(__name__)


@dataclass
class LocalRun:
    """What a local run left: every artifact by name, the nodes that ran, where it stopped (if it did)."""

    artifacts: dict[str, Any] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    stopped_at: str | None = None       # the short-circuit that ended the run
    last: Any = None                    # the artifact of the last node that made one (publish, record, ...)


def run_pipeline(pipeline: Pipeline, ctx: RunContext) -> LocalRun:
    run = LocalRun()
    skipped: set[str] = set()
    for node in pipeline.nodes:
        # as in Airflow: a node after a skipped one is skipped too, unless it joins optional upstreams
        after_skipped = not node.joins_optional and bool(pipeline.upstream(node) & skipped)
        if node.name in skipped or after_skipped or (node.when is not None and not node.when(ctx)):
            skipped.add(node.name)
            continue
        step_ctx = ctx.for_step(node.name)
        inputs = [run.artifacts.get(artifact) if pipeline.producer(artifact).name not in skipped else None
                  for artifact in node.inputs]
        log.info("%s: %s", pipeline.name, node.name)
        result = _run_node(node, step_ctx, inputs)
        run.ran.append(node.name)
        if node.role is Role.SHORT_CIRCUIT:
            if not result:
                run.stopped_at = node.name
                return run
            continue
        if node.role in (Role.BRANCH, Role.APPROVAL):
            chosen, result = _choice(node, step_ctx, result)
            others = [name for name in node.next_choices if name != chosen]
            skipped |= pipeline.descendants(others) - pipeline.descendants([chosen])
        if node.output:
            run.artifacts[node.output] = run.last = result
    return run


def _run_node(node: Node, ctx: RunContext, inputs: list[Any]) -> Any:
    if node.role is Role.APPROVAL:
        return node.approval.by_hand(ctx)       # (option, record): nobody to ask in one process
    if node.map_over:
        artifact, attribute = node.map_over
        position = node.inputs.index(artifact)
        items = list(getattr(inputs[position], attribute))
        return map_items(node, ctx, [[*inputs[:position], item, *inputs[position + 1:]] for item in items])
    return node.run(ctx, *inputs)


def _choice(node: Node, ctx: RunContext, result: Any) -> tuple[str, Any]:
    """The node a branch or an approval leads to, and the artifact it leaves (an approval's record)."""
    if node.role is Role.BRANCH:
        if result not in node.branches:
            raise ValueError(f"{node.name} chose {result!r}, not one of {node.branches}")
        return result, result
    option, record = result
    return node.approval.options[option], record


def map_items(node: Node, ctx: RunContext, calls: list[list[Any]]) -> list[Any]:
    """`node.run` once per item, several at once in child processes (the DAG maps one task per item
    and its executor runs them side by side: the same here). Processes, not threads: downloading
    (botocore spends ~1.7 ms of CPU per GET, under the GIL) and validating are CPU-bound in Python.
    Forked children start with the parent's imports and logging; each builds its own S3 client.
    Results come back in the order of the items."""
    workers = min(len(calls), ctx.config.validation.processes or os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [node.run(ctx, *args) for args in calls]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_run_in_child, node.run, ctx.config, ctx.storage.settings, ctx.request, ctx.step, args)
                   for args in calls]
        return [future.result() for future in futures]


def _run_in_child(run: Any, config: PipelineConfig, settings: StorageSettings, request: RunRequest, step: str,
                  args: list[Any]) -> Any:
    from ocr_tasks.storage.s3 import Storage

    return run(RunContext(config, Storage(settings), request, step), *args)


# --------------------------------------------------------------------------- the retraining pipeline


def run_local(ctx: RunContext) -> RunOutcome:
    """`ocr-retrain run`: the whole retraining pipeline; a quiet night (nothing new, not forced) ends early."""
    from ocr_tasks.flow.retraining import RETRAINING

    run = run_pipeline(RETRAINING, ctx)
    return RunOutcome(ctx.run_id, NOTHING_NEW) if run.stopped_at else run.last


@dataclass
class IngestReport:
    """discover -> check_export (each) -> merge, as `ocr-retrain ingest` prints it."""

    discovery: Any                      # Discovery
    checks: list                        # ExportCheck, one per new export
    merged: Any                         # MergedDataset, or None when nothing was new

    @property
    def dataset(self):
        """The DatasetVersion this ingest published, or None (nothing passed, nothing new)."""
        from ocr_tasks.ingest.merge import DatasetVersion

        return DatasetVersion(**self.merged.merged) if self.merged and self.merged.merged else None


def ingest(ctx: RunContext) -> IngestReport:
    """`ocr-retrain ingest`: the retraining pipeline up to merge (new exports validated, quarantined or merged)."""
    from ocr_tasks.flow.retraining import RETRAINING

    run = run_pipeline(RETRAINING.until("merge"), ctx)
    return IngestReport(run.artifacts["discovery"], run.artifacts.get("checks") or [], run.artifacts.get("merged"))
