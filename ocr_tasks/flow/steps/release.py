"""The release steps: export the inference models, read them in every consumer runtime, compare them
with production, gate, route, ask a person, and publish or record the run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_tasks.errors import UsageError
from ocr_tasks.codec import plain
from ocr_tasks.flow.steps.common import dataset_version, fetch_all, fetch_bundle, keep_reads, kept_reads, local_dataset
from ocr_tasks.ingest.dataset_info import read_dataset_info
from ocr_tasks.storage import layout
from ocr_tasks.vocabulary import DRY_RUN, GATE_FAILED, MODEL_KINDS, PUBLISHED, REC, REJECTED, SUPERSEDED, RunStatus

if TYPE_CHECKING:
    from ocr_tasks.flow.run import Evaluation, ExportedBundle, MergedDataset, RunContext, RunOutcome
    from ocr_tasks.release.approval import ApprovalRecord
    from ocr_tasks.release.compare import Comparison
    from ocr_tasks.release.gate import GateDecision
    from ocr_tasks.release.infra_validation import InfraValidation, RuntimeRead

log = logging.getLogger(__name__)


# route's answers: the nodes it may choose (ocr_tasks/flow/retraining.py)
PUBLISH, APPROVE, RECORD = "publish", "approve", "record"


def export(ctx: RunContext, merged: MergedDataset, evaluation: Evaluation) -> ExportedBundle:
    """Export the new models (portable to every PaddleOCR 3.x runtime) into runs/<run_id>/bundle/.

    A kind this run did not train comes from production unchanged, so the bundle is what
    consumers will get: infra_validate reads it, publish publishes it byte for byte.
    """
    from ocr_tasks.flow.run import ExportedBundle
    from ocr_tasks.release.bundle import assemble_bundle
    from ocr_tasks.release.onnx_export import export_onnx
    from ocr_tasks.release.postprocess import choose_postprocess, settings_grid
    from ocr_tasks.release.registry import production_version, pull_model
    from ocr_tasks.training.engine import Engine

    storage, config = ctx.storage, ctx.config
    models = fetch_all(ctx, evaluation.trained)
    carried_over = [kind for kind in MODEL_KINDS if kind not in models]
    current = production_version(storage, config.model_name)
    if carried_over and current is None:   # a first run of one kind: the bundle holds that kind alone
        log.warning("no production model to take %s from: the bundle holds %s alone", ", ".join(carried_over),
                    ", ".join(models))
    production = pull_model(storage, config.model_name, ctx.scratch / "production", current,
                            include_checkpoints=True) if carried_over and current else None
    data_dir = local_dataset(ctx, dataset_version(merged))
    bundle = assemble_bundle(config, ctx.scratch / "bundle", data_dir, models,
                             Engine.locate(config.training.engine_checkout), production)
    # before upload: what infra validation reads and publish ships carries the chosen post-processing
    tuning = config.postprocess
    tuned = choose_postprocess(bundle, data_dir, ctx.scratch / "postprocess",
                               settings_grid(tuning.unclip_ratios, tuning.box_threshes), max_images=tuning.val_images,
                               python=config.infra_validation.runtimes.get("pipeline"),
                               timeout_s=config.infra_validation.timeout_s)
    # after the choice: rapidocr.yaml carries the same post-processing as det/inference.yml
    onnx = export_onnx(bundle, config.onnx.converter, config.onnx.opset, ctx.scratch / "onnx",
                       timeout_s=config.infra_validation.timeout_s)
    prefix = layout.run_bundle_prefix(ctx.run_id)
    storage.delete_prefix(prefix)    # a retried export must not leave an earlier try's files beside its own
    storage.upload_dir(bundle, prefix)
    log.info("exported %s%s to %s", ", ".join(models),
             f" ({', '.join(carried_over)} from production {current})" if carried_over else "", storage.uri(prefix))
    dictionary = read_dataset_info(data_dir).get("dictionary") if REC in models else None
    return ExportedBundle(prefix, sorted(models), {kind: current for kind in carried_over if current}, plain(tuned),
                          dictionary, plain(onnx))


def infra_validate(ctx: RunContext, merged: MergedDataset, exported: ExportedBundle) -> InfraValidation:
    """Read the test split with the exported bundle in every configured consumer runtime (the gate judges it)."""
    from ocr_tasks.release.infra_validation import ONNX, RuntimeRead, validate_in_runtimes

    settings = ctx.config.infra_validation
    if not settings.runtimes:
        log.warning("infra_validation.runtimes is empty: the exported models are not checked in any consumer runtime")
    bundle = fetch_bundle(ctx, exported)
    data_dir = local_dataset(ctx, dataset_version(merged))
    served = validate_in_runtimes(bundle, data_dir, settings.runtimes, ctx.scratch / "runtimes",
                                  timeout_s=settings.timeout_s, onnx_runtimes=settings.onnx_runtimes)
    skipped = (exported.onnx or {}).get("skipped")
    if skipped and ctx.config.onnx.required:   # the gate refuses it as a runtime that cannot load the model
        served.runtimes.append(RuntimeRead("onnx", "", engine=ONNX, error={
            "stage": "export", "type": "NoOnnx", "message": f"the bundle has no ONNX (onnx.required): {skipped}"}))
    for read in served.runtimes:   # sample by sample, for compare (which may run on another worker)
        if read.reads:
            answer = json.loads(Path(read.reads).read_text(encoding="utf-8"))
            read.reads = keep_reads(ctx, layout.run_runtime_reads_key(ctx.run_id, read.name), answer, data_dir)
    ctx.storage.put_json(layout.run_infra_validation_key(ctx.run_id), plain(served))
    return served


def compare(ctx: RunContext, merged: MergedDataset, evaluation: Evaluation, exported: ExportedBundle,
            served: InfraValidation) -> Comparison:
    """The new bundle beside production's on slices of the test split and on every reference set."""
    from ocr_tasks.ingest.reference import reference_sets
    from ocr_tasks.release.compare import compare_with_production
    from ocr_tasks.release.registry import pull_model

    storage, config = ctx.storage, ctx.config
    bundle = fetch_bundle(ctx, exported)
    production = None
    if evaluation.production_version:
        production = pull_model(storage, config.model_name, ctx.scratch / "production",
                                evaluation.production_version)
    references, problems = reference_sets(storage, config)
    work = ctx.scratch / "runtimes"
    data_dir = local_dataset(ctx, dataset_version(merged))
    own = _own_runtime_read(ctx, served, data_dir)
    registered = None
    if production is not None and evaluation.production_test_reads:
        registered = kept_reads(ctx, evaluation.production_test_reads, data_dir)
    result = compare_with_production(bundle, production, evaluation.production_version, data_dir, references, work,
                                     python=None, timeout_s=config.infra_validation.timeout_s,
                                     kinds=sorted(evaluation.trained), new_test_read=own,
                                     production_test_answer=registered)
    result.problems[:0] = problems
    for name, local in list(result.reads.items()):   # the report may be written on another worker
        if name == "test/new" and own is not None:
            result.reads[name] = own[0].reads         # infra validation's upload of the same reads
            continue
        if name == "test/production" and registered is not None:
            result.reads[name] = evaluation.production_test_reads   # register_baseline's upload of them
            continue
        key = layout.run_compare_prefix(ctx.run_id) + Path(local).name
        answer = json.loads(Path(local).read_text(encoding="utf-8"))
        if name.startswith("test/"):                  # paths relative to the dataset, like infra validation's
            keep_reads(ctx, key, answer, data_dir)
        else:
            storage.put_json(key, answer)
        result.reads[name] = key
    storage.put_json(layout.run_compare_prefix(ctx.run_id) + "comparison.json", plain(result))
    return result


def _own_runtime_read(ctx: RunContext, served: InfraValidation, data_dir: Path
                      ) -> tuple[RuntimeRead, dict] | None:
    """What infra validation read on the test split in the pipeline's own interpreter (a runtime configured as
    null), with this worker's sample paths: compare scores the new bundle from it instead of reading it again."""
    own = [read for read in served.runtimes
           if read.loaded and read.reads and ctx.config.infra_validation.runtimes.get(read.name, "") is None]
    if not own:
        return None
    return own[0], kept_reads(ctx, own[0].reads, data_dir)


# --------------------------------------------------------------------------- gate / publish / record


def gate(ctx: RunContext, evaluation: Evaluation, served: InfraValidation,
         compared: Comparison | None = None) -> GateDecision:
    """May the new models replace production? (thresholds, regression against production on the whole test
    split, on its slices and on the reference sets, and what the consumer runtimes read with the exported models)"""
    from ocr_tasks.release.gate import decide

    decision = decide(evaluation.metrics, evaluation.baseline or None, ctx.config.gate,
                      models=sorted(evaluation.trained), served=served, compared=compared,
                      stock=evaluation.production_is_stock)
    log.info("gate %s: %s", "PASSED" if decision.passed else "FAILED", decision.reasons or "all checks passed")
    return decision


def route(ctx: RunContext, decision: GateDecision) -> str:
    if not decision.passed or ctx.request.dry_run:
        return RECORD
    return APPROVE if ctx.config.approval.required else PUBLISH


def approval_by_hand(ctx: RunContext) -> tuple[str, ApprovalRecord]:
    """The approval without a person to ask (`ocr-retrain run`): --approved-by NAME is the answer."""
    from ocr_tasks.release.approval import APPROVE, REJECT, cli_approval

    record = cli_approval(ctx.request.approved_by)
    return (APPROVE if record.approved else REJECT), record


def approval_request(ctx: RunContext, merged: MergedDataset, evaluation: Evaluation, served: InfraValidation,
                     decision: GateDecision, compared: Comparison | None = None, *,
                     report_link: str | None = None) -> tuple[str, str]:
    """(subject, body) of the approval a person gives in the Airflow UI: the gate's checks, the slice table,
    the reference sets, and the report (written now, under runs/<run_id>/report/, so it can be read first;
    `report_link`: where the browser opens it)."""
    from ocr_tasks.release.approval import approval_markdown
    from ocr_tasks.release.bundle import write_report

    outcome = _outcome(ctx, RunStatus.AWAITING_APPROVAL, merged, evaluation, served, decision, compared)
    report_dir = ctx.scratch / "report"
    write_report(ctx.config, outcome, evaluation.trained, report_dir,
                 errors=_error_analysis(ctx, merged, compared, report_dir))
    ctx.storage.upload_dir(report_dir, layout.run_report_prefix(ctx.run_id))
    report_uri = ctx.storage.uri(layout.run_report_prefix(ctx.run_id) + "summary.html")
    log.info("approval asked for run %s; report %s", ctx.run_id, report_uri)
    return approval_markdown(ctx.config.model_name, outcome, ctx.config.approval.timeout_h, report_uri,
                             report_link=report_link)


def publish(ctx: RunContext, merged: MergedDataset, evaluation: Evaluation, exported: ExportedBundle,
            served: InfraValidation, decision: GateDecision, compared: Comparison | None = None,
            approval: ApprovalRecord | None = None) -> RunOutcome:
    """Publish the exported bundle as the next version and make it production.

    Idempotent per run: a retried publish finds the version an earlier try stored and
    finishes moving production to it, never publishing the run twice.
    """
    from ocr_tasks.release.bundle import build_manifest, write_report
    from ocr_tasks.release.registry import (ProductionMoved, production_version, publish_model, published_by_run,
                                            reserve_model_version, rollback)

    if not decision.passed:
        raise UsageError(f"run {ctx.run_id} failed the gate; refusing to publish: {decision.reasons}")
    storage, config = ctx.storage, ctx.config
    outcome = _outcome(ctx, PUBLISHED, merged, evaluation, served, decision, compared)
    outcome.approval = approval
    if ctx.config.approval.required and not (approval and approval.approved):
        raise UsageError(f"run {ctx.run_id}: approval.required is set and nobody approved this publish "
                         f"(approval record: {approval})")
    gated_against = evaluation.production_version   # promote only over the production the gate saw
    try:
        already = published_by_run(storage, config.model_name, ctx.run_id)
        if already is not None:  # an earlier try of this step got as far as the manifest
            log.warning("run %s already published %s %s (an earlier try): not publishing it again", ctx.run_id,
                        config.model_name, already)
            outcome.model_version = already
            if production_version(storage, config.model_name) != already:
                # the earlier try died before moving production
                rollback(storage, config.model_name, already, if_production_is=gated_against)
        else:
            bundle = fetch_bundle(ctx, exported)
            outcome.model_version = reserve_model_version(storage, config.model_name, ctx.run_id)
            outcome.report = str(write_report(config, outcome, evaluation.trained, bundle / "report",
                                              errors=_error_analysis(ctx, merged, compared, bundle / "report"),
                                              dictionary=exported.dictionary, onnx=exported.onnx))
            publish_model(storage, config.model_name, outcome.model_version, bundle,
                          build_manifest(config, outcome, evaluation.trained, exported, served),
                          if_production_is=gated_against)
    except ProductionMoved as moved:
        outcome.status, outcome.note = SUPERSEDED, str(moved)
        log.warning("%s", moved)
    outcome.report_uri = storage.uri(layout.model_report_prefix(config.model_name, outcome.model_version)
                                     + "summary.html")
    log.info("published %s %s: %s", config.model_name, outcome.model_version, outcome.report_uri)
    return _finish(ctx, outcome)


def record(ctx: RunContext, merged: MergedDataset, evaluation: Evaluation, exported: ExportedBundle,
           served: InfraValidation, decision: GateDecision, compared: Comparison | None = None,
           approval: ApprovalRecord | None = None) -> RunOutcome:
    """A run that does not publish (failed gate, dry run, or rejected by the person asked): its report under
    runs/<run_id>/report/; the exported bundle stays under runs/<run_id>/bundle/ for inspection."""
    from ocr_tasks.release.bundle import write_report

    status = REJECTED if approval and not approval.approved else \
        DRY_RUN if decision.passed else GATE_FAILED
    outcome = _outcome(ctx, status, merged, evaluation, served, decision, compared)
    outcome.approval = approval
    # the report needs the curves (history) and the comparison's reads, no weights
    report_dir = ctx.scratch / "report"
    outcome.report = str(write_report(ctx.config, outcome, evaluation.trained, report_dir,
                                      errors=_error_analysis(ctx, merged, compared, report_dir),
                                      dictionary=exported.dictionary, onnx=exported.onnx))
    ctx.storage.upload_dir(report_dir, layout.run_report_prefix(ctx.run_id))
    outcome.report_uri = ctx.storage.uri(layout.run_report_prefix(ctx.run_id) + "summary.html")
    if outcome.status == GATE_FAILED:
        log.warning("run %s failed the gate: %s (report %s; exported bundle %s)", ctx.run_id,
                    "; ".join(decision.reasons), outcome.report_uri, ctx.storage.uri(exported.prefix))
    elif outcome.status == REJECTED:
        log.warning("run %s passed the gate and was REJECTED by %s at %s: %s; nothing published (report %s)",
                    ctx.run_id, approval.by or "nobody (no answer in time)", approval.at,
                    approval.comment or "no reason given", outcome.report_uri)
    else:
        log.info("run %s: dry run, nothing published; report %s", ctx.run_id, outcome.report_uri)
    return _finish(ctx, outcome)


def _outcome(ctx: RunContext, status: str, merged: MergedDataset, evaluation: Evaluation,
             served: InfraValidation, decision: GateDecision, compared: Comparison | None) -> RunOutcome:
    from ocr_tasks.flow.run import RunOutcome

    return RunOutcome(ctx.run_id, status, merged.dataset_version, metrics=evaluation.metrics,
                      baseline=evaluation.baseline_record(), exported_metrics=served.by_runtime(),
                      gate=decision, comparison=compared.record() if compared else None,
                      trigger=ctx.request.trigger, quarantined=merged.quarantined, left_out=merged.left_out)


def _error_analysis(ctx: RunContext, merged: MergedDataset, compared: Comparison | None, report_dir: Path) -> dict:
    """The worst test samples as pictures, new beside production (release/error_analysis.py)."""
    from ocr_tasks.release.error_analysis import analyse_errors

    if compared is None or not compared.reads:
        return {}
    data_dir = local_dataset(ctx, dataset_version(merged))   # this worker's: paths are kept relative to it
    reads = {name: kept_reads(ctx, key, data_dir) for name, key in compared.reads.items() if name.startswith("test/")}
    return analyse_errors(reads, data_dir.absolute(), report_dir)


def _finish(ctx: RunContext, outcome: RunOutcome) -> RunOutcome:
    """The end of every run that trained: run.json, what was trained on (not for dry runs:
    they must not stop the next night from training), the notification."""
    from ocr_tasks.flow.notify import notify_outcome

    ctx.storage.put_json(layout.run_record_key(outcome.run_id), plain(outcome))
    if outcome.status != DRY_RUN:
        ctx.storage.put_json(layout.LAST_TRAINED, {"dataset_version": outcome.dataset_version,
                                                   "run_id": outcome.run_id, "status": outcome.status})
    notify_outcome(plain(outcome), ctx.config.model_name, ctx.config.notifications)
    return outcome
