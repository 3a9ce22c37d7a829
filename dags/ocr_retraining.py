"""ocr_retraining: nightly PaddleOCR det/rec retraining from PPOCRLabel exports.

Only wiring: each task runs one step of the chain defined once in `ocr_tasks.flow.steps`
(the local runner, `ocr-retrain run`, runs the same steps in one process). Steps are
imported inside the tasks, so parsing this file stays cheap (no boto3, pandas, GX or
paddle). Artifacts travel between tasks as their JSON (`to_json`/`from_json`).

    discover -> should_run (short-circuit) -> check_export (mapped, one per new export)
             -> merge -> has_dataset (short-circuit) -> train_det | train_rec (gpu pool/queue)
             -> evaluate -> export -> infra_validate (the consumer runtimes read the exported models)
             -> compare (slices of the test split, reference sets: new beside production)
             -> gate -> route -> publish (Asset) | record
                               | approve (a person, in the UI: when approval is required)
                                   -> publish_approved (Asset) | reject

The pipeline run id is the Airflow run id, sanitised, so every task and every retry of a
run shares runs/<run_id>/ in storage: a retried train task resumes from its checkpoints,
evaluate and publish fetch the trained models from there.

Storage credentials: the Airflow connection `ocr_retrain_s3` (AWS type: login/password =
access key/secret, extra {"endpoint_url": ..., "region_name": ...}) when it exists, else
the environment (AWS_ACCESS_KEY_ID, OCR_RETRAIN_S3_ENDPOINT, ...), as `ocr-retrain` does.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, get_current_context, task

log = logging.getLogger("ocr_retraining")

from ocr_tasks.config import load_config_for_parsing
from ocr_tasks.vocabulary import GPU_POOL, GPU_QUEUE, STORAGE_CONNECTION

DAG_ID = "ocr_retraining"
SCHEDULE = os.environ.get("OCR_RETRAIN_SCHEDULE", "0 2 * * *")   # nightly; "" or "none" -> manual only
TRAIN_RETRIES = 2
# time for a lost worker's GPU to be freed (or a new worker to come up) before the retry resumes
TRAIN_RETRY_DELAY = timedelta(seconds=int(os.environ.get("OCR_RETRAIN_TRAIN_RETRY_DELAY_S", "300")))


CONFIG = load_config_for_parsing("ocr_retraining")   # None when broken: the defaults below
# models/<name>/production.json of the configured bucket: what a publish updates
PRODUCTION_MODEL = Asset(CONFIG.production_model_uri if CONFIG else "s3://ocr-data/models/ocr/production.json",
                         group="model")
APPROVAL_TIMEOUT = timedelta(hours=CONFIG.approval.timeout_h if CONFIG else 24)


# --------------------------------------------------------------------------- helpers (run inside tasks)


def _credentials() -> dict[str, Any] | None:
    """Keys and endpoint from the Airflow connection, or None (-> the environment). Never logged."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import Connection

    from ocr_tasks.storage.s3 import credentials_from_connection

    try:
        return credentials_from_connection(Connection.get(STORAGE_CONNECTION))
    except AirflowNotFoundException:
        return None


def _context() -> Any:
    """This task's RunContext: config with the run's gate overrides, storage, the run's Params."""
    from ocr_tasks.flow.run import RunContext

    airflow = get_current_context()
    return RunContext.from_params(airflow["params"], airflow["run_id"], _credentials())


def on_failure(context: dict[str, Any]) -> None:
    """One clear line per failed task: which task, which run, what went wrong (no secrets, no traceback)."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    summary = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception recorded (see the task log)"
    if len(summary) > 500:
        summary = summary[:500] + "..."
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    where = f"{task_id}[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else task_id
    attempt = getattr(ti, "try_number", "?")
    run_id = context.get("run_id", "?")
    log.error("ocr_retraining FAILED: task %s, run %s, try %s: %s", where, run_id, attempt, summary)
    try:  # the optional webhook / email (ocr_tasks/flow/notify.py); a notification problem never masks the failure
        from ocr_tasks.config import load_config
        from ocr_tasks.flow.notify import notify, task_failed

        notify(task_failed(where, str(run_id), attempt, summary, getattr(ti, "log_url", None)),
               load_config().notifications)
    except Exception as exc:  # noqa: BLE001
        log.warning("ocr_retraining: failure notification not sent: %s", exc)


class ApprovalBranch(HITLBranchOperator):
    """The standard provider's HITLBranchOperator, keeping the person's answer (options, comment, who,
    when) as the XCom "answer": its return value is the branch taken, and run.json and the manifest
    record the approval."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        # pushed first: branching ends the task by raising (Airflow 3 skips the other branch that way)
        at = event.get("responded_at")
        context["ti"].xcom_push(key="answer", value={
            "chosen_options": list(event.get("chosen_options") or []),
            "params_input": dict(event.get("params_input") or {}),
            "responded_at": at.isoformat() if hasattr(at, "isoformat") else at,
            "responded_by_user": event.get("responded_by_user")})
        return super().execute_complete(context=context, event=event)


# --------------------------------------------------------------------------- the DAG


@dag(
    dag_id=DAG_ID,
    # a trigger at the cron time (not a data interval): the night's run starts at 02:00, not a day later
    schedule=CronTriggerTimetable(SCHEDULE, timezone="UTC") if SCHEDULE.strip().lower() not in ("", "none") else None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ocr", "training"],
    doc_md=__doc__,
    default_args={"owner": "ocr-retrain", "retries": 0, "on_failure_callback": on_failure},
    params={
        "force": Param(False, type="boolean", description="Train even when no export is new."),
        "models": Param("both", type="string", enum=["both", "det", "rec"],
                        description="both = as configured (training.models); det or rec narrows it."),
        "epochs": Param(None, type=["null", "integer"], minimum=1,
                        description="Epochs per stage; empty = as configured."),
        "rec_min_acc": Param(None, type=["null", "number"], minimum=0, maximum=1,
                             description="Gate override: rec acc on the test split must be greater."),
        "det_min_hmean": Param(None, type=["null", "number"], minimum=0, maximum=1,
                               description="Gate override: det hmean on the test split must be at least this."),
        "dry_run": Param(False, type="boolean", description="Train, evaluate and gate, but publish nothing."),
        "require_approval": Param(None, type=["null", "boolean"],
                                  description="Ask a person (Required Actions) before publishing a model that passed "
                                              "the gate; empty = as configured (approval.required)."),
    },
)
def ocr_retraining() -> None:

    @task
    def discover() -> list[dict]:
        """The new exports (mapped over by check_export); the whole Discovery as the "discovery" XCom."""
        from ocr_tasks.flow import steps

        found = steps.discover(_context())
        log.info("new exports: %s; waiting: %s; latest dataset %s (untrained: %s)",
                 [r.name for r in found.new] or "none", found.waiting or "none",
                 found.latest_dataset, found.untrained_dataset)
        get_current_context()["ti"].xcom_push(key="discovery", value=found.to_json())
        return [ref.to_json() for ref in found.new]

    @task.short_circuit
    def should_run(discovery: dict) -> bool:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import Discovery

        return steps.should_run(_context(), Discovery.from_json(discovery))

    @task
    def check_export(ref: dict) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.ingest.exports import ExportRef

        return steps.check_export(_context(), ExportRef.from_json(ref)).to_json()

    @task(trigger_rule="none_failed")
    def merge(checks: Any = None) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.ingest.check import ExportCheck

        # by index, not iteration: iterating a mapped XCom probes one past the end and logs an error
        results = [ExportCheck.from_json(checks[i]) for i in range(len(checks)) if checks[i]] if checks else []
        return steps.merge(_context(), results).to_json()

    @task.short_circuit
    def has_dataset(merged: dict) -> bool:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import MergedDataset

        return steps.has_dataset(_context(), MergedDataset.from_json(merged))

    def _train(kind: str, merged: dict) -> dict:
        from airflow.exceptions import AirflowSkipException
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import MergedDataset

        ctx = _context()
        if kind not in ctx.request.models:
            raise AirflowSkipException(f"{kind} not selected (models={ctx.request.models})")
        return steps.train(ctx, kind, MergedDataset.from_json(merged)).to_json()

    gpu = {"pool": GPU_POOL, "queue": GPU_QUEUE, "retries": TRAIN_RETRIES, "retry_delay": TRAIN_RETRY_DELAY}

    @task(**gpu)
    def train_det(merged: dict) -> dict:
        return _train("det", merged)

    @task(**gpu)
    def train_rec(merged: dict) -> dict:
        return _train("rec", merged)

    @task(trigger_rule="none_failed_min_one_success")
    def evaluate(merged: dict, det: dict | None = None, rec: dict | None = None) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import MergedDataset
        from ocr_tasks.training.train import TrainedModel

        trained = {kind: TrainedModel.from_json(m) for kind, m in (("det", det), ("rec", rec)) if m}
        return steps.evaluate(_context(), MergedDataset.from_json(merged), trained).to_json()

    @task
    def export(merged: dict, evaluation: dict) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import Evaluation, MergedDataset

        return steps.export(_context(), MergedDataset.from_json(merged), Evaluation.from_json(evaluation)).to_json()

    @task
    def infra_validate(merged: dict, exported: dict) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import ExportedBundle, MergedDataset

        return steps.infra_validate(_context(), MergedDataset.from_json(merged),
                                    ExportedBundle.from_json(exported)).to_json()

    @task
    def compare(merged: dict, evaluation: dict, exported: dict) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import Evaluation, ExportedBundle, MergedDataset

        return steps.compare(_context(), MergedDataset.from_json(merged), Evaluation.from_json(evaluation),
                             ExportedBundle.from_json(exported)).to_json()

    @task
    def gate(evaluation: dict, served: dict, compared: dict) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import Evaluation
        from ocr_tasks.release.compare import Comparison
        from ocr_tasks.release.infra_validation import InfraValidation

        return steps.gate(_context(), Evaluation.from_json(evaluation), InfraValidation.from_json(served),
                          Comparison.from_json(compared)).to_json()

    @task.branch
    def route(merged: dict, evaluation: dict, served: dict, decision: dict, compared: dict) -> str:
        """publish, approve (a person first: the request's subject and body go out as XComs) or record."""
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import Evaluation, MergedDataset
        from ocr_tasks.release.compare import Comparison
        from ocr_tasks.release.gate import GateDecision
        from ocr_tasks.release.infra_validation import InfraValidation

        ctx = _context()
        way = steps.route(ctx, GateDecision.from_json(decision))
        if way == steps.APPROVE:
            subject, body = steps.approval_request(ctx, MergedDataset.from_json(merged), Evaluation.from_json(evaluation),
                                                   InfraValidation.from_json(served), GateDecision.from_json(decision),
                                                   Comparison.from_json(compared))
            ti = get_current_context()["ti"]
            ti.xcom_push(key="approval_subject", value=subject)
            ti.xcom_push(key="approval_body", value=body)
            return "approve"
        return "publish" if way == steps.PUBLISH else "record"

    from ocr_tasks.release.approval import APPROVE, REJECT

    approve = ApprovalBranch(
        task_id="approve",
        subject="{{ ti.xcom_pull(task_ids='route', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='route', key='approval_body') }}",
        options=[APPROVE, REJECT],
        options_mapping={APPROVE: "publish_approved", REJECT: "reject"},
        defaults=[REJECT],                     # no answer in time: rejected, nothing published
        response_timeout=APPROVAL_TIMEOUT,
        params={"comment": Param("", type="string", description="Why (kept in run.json and the manifest).")},
    )

    def _approval() -> dict | None:
        from ocr_tasks.release.approval import approval_record

        answer = get_current_context()["ti"].xcom_pull(task_ids="approve", key="answer")
        return approval_record(answer) if answer else None

    def _end(step: str, merged: dict, evaluation: dict, exported: dict, served: dict, decision: dict,
             compared: dict) -> dict:
        from ocr_tasks.flow import steps
        from ocr_tasks.flow.run import Evaluation, ExportedBundle, MergedDataset
        from ocr_tasks.release.compare import Comparison
        from ocr_tasks.release.gate import GateDecision
        from ocr_tasks.release.infra_validation import InfraValidation

        run = {"publish_approved": steps.publish, "reject": steps.record}.get(step) or getattr(steps, step)
        outcome = run(_context(), MergedDataset.from_json(merged), Evaluation.from_json(evaluation),
                      ExportedBundle.from_json(exported), InfraValidation.from_json(served),
                      GateDecision.from_json(decision), Comparison.from_json(compared), _approval())
        log.info("run %s: %s; report %s", outcome.run_id, outcome.status, outcome.report_uri)
        return outcome.to_json()

    @task(outlets=[PRODUCTION_MODEL])
    def publish(merged: dict, evaluation: dict, exported: dict, served: dict, decision: dict, compared: dict) -> dict:
        return _end("publish", merged, evaluation, exported, served, decision, compared)

    @task(outlets=[PRODUCTION_MODEL])
    def publish_approved(merged: dict, evaluation: dict, exported: dict, served: dict, decision: dict,
                         compared: dict) -> dict:
        """publish, after a person approved it (the approval is recorded in run.json and the manifest)."""
        return _end("publish_approved", merged, evaluation, exported, served, decision, compared)

    @task
    def record(merged: dict, evaluation: dict, exported: dict, served: dict, decision: dict, compared: dict) -> dict:
        return _end("record", merged, evaluation, exported, served, decision, compared)

    @task
    def reject(merged: dict, evaluation: dict, exported: dict, served: dict, decision: dict, compared: dict) -> dict:
        """The person asked said Reject, or did not answer in time: recorded as rejected, nothing published."""
        return _end("reject", merged, evaluation, exported, served, decision, compared)

    found = discover()
    go = should_run(found["discovery"])
    checks = check_export.expand(ref=found)
    go >> checks
    merged = merge(checks)
    go >> merged
    ready = has_dataset(merged)
    det, rec = train_det(merged), train_rec(merged)
    ready >> [det, rec]
    evaluation = evaluate(merged, det, rec)
    exported = export(merged, evaluation)
    served = infra_validate(merged, exported)
    compared = compare(merged, evaluation, exported)
    decision = gate(evaluation, served, compared)
    artifacts = (merged, evaluation, exported, served, decision, compared)
    route(merged, evaluation, served, decision, compared) >> [publish(*artifacts), approve, record(*artifacts)]
    approve >> [publish_approved(*artifacts), reject(*artifacts)]


ocr_retraining_dag = ocr_retraining()
