"""ocr_retraining: nightly PaddleOCR det/rec retraining from PPOCRLabel exports (issue #4).

Only wiring: every task calls one JSON-in/JSON-out step of `ocr_tasks.flow.steps`, imported
inside the task so that parsing this file stays cheap (no boto3, pandas, GX or paddle).

    discover -> should_run (short-circuit) -> check_export (mapped, one per new export)
             -> merge -> has_dataset (short-circuit) -> train_det | train_rec (gpu pool/queue)
             -> evaluate -> gate -> route -> publish (Asset) | record

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
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

log = logging.getLogger("ocr_retraining")

DAG_ID = "ocr_retraining"
SCHEDULE = os.environ.get("OCR_RETRAIN_SCHEDULE", "0 2 * * *")   # nightly; "" or "none" -> manual only
CONNECTION_ID = "ocr_retrain_s3"
GPU_POOL = "gpu"
GPU_QUEUE = "gpu"
TRAIN_RETRIES = 2
# time for a lost worker's GPU to be freed (or a new worker to come up) before the retry resumes
TRAIN_RETRY_DELAY = timedelta(seconds=int(os.environ.get("OCR_RETRAIN_TRAIN_RETRY_DELAY_S", "300")))


def _production_asset() -> Asset:
    """models/<name>/production.json of the configured bucket: what a publish updates."""
    try:
        from ocr_tasks.config import load_config   # yaml only: cheap
        from ocr_tasks.flow.steps import production_asset_uri
        return Asset(production_asset_uri(load_config()), group="model")
    except Exception as exc:  # a broken config must not break parsing: tasks report it
        log.warning("ocr_retraining: cannot read the pipeline config (%s); asset uses the defaults", exc)
        return Asset("s3://ocr-data/models/ocr/production.json", group="model")


PRODUCTION_MODEL = _production_asset()


# --------------------------------------------------------------------------- helpers (run inside tasks)


def _credentials() -> dict[str, Any] | None:
    """Keys and endpoint from the Airflow connection, or None (-> the environment). Never logged."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import Connection

    try:
        conn = Connection.get(CONNECTION_ID)
    except AirflowNotFoundException:
        return None
    extra = conn.extra_dejson or {}
    return {"access_key_id": conn.login or None, "secret_access_key": conn.password or None,
            "session_token": extra.get("aws_session_token"),
            "endpoint_url": extra.get("endpoint_url") or conn.host or None,
            "region": extra.get("region_name") or extra.get("region")}


def _context() -> tuple[Any, Any, Any]:
    """(config, storage, params) for this task: config with the run's gate overrides."""
    from ocr_tasks.flow import steps

    params = get_current_context()["params"]
    config = steps.load(steps.config_overrides(rec_min_acc=params.get("rec_min_acc"),
                                               det_min_hmean=params.get("det_min_hmean")))
    return config, steps.make_storage(config, _credentials()), params


def _run_id() -> str:
    from ocr_tasks.flow.steps import sanitize_run_id

    return sanitize_run_id(get_current_context()["run_id"])


def _epochs(params: Any) -> int | None:
    value = params.get("epochs")
    return int(value) if value is not None else None


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
    },
)
def ocr_retraining() -> None:

    @task
    def discover() -> list[dict]:
        """The new exports (ExportRef JSON, mapped over by check_export); the rest of the discovery as XComs."""
        from ocr_tasks.flow import steps

        _, storage, _ = _context()
        found = steps.discover(storage)
        log.info("new exports: %s; waiting: %s; latest dataset %s (untrained: %s)",
                 [r["name"] for r in found["new"]] or "none", found["waiting"] or "none",
                 found["latest_dataset"], found["untrained_dataset"])
        get_current_context()["ti"].xcom_push(key="datasets", value={"latest": found["latest_dataset"],
                                                                      "untrained": found["untrained_dataset"]})
        return found["new"]

    @task.short_circuit
    def should_run(new: list[dict], datasets: dict) -> bool:
        from ocr_tasks.flow import steps

        params = get_current_context()["params"]
        go = steps.should_run({"new": new, "untrained_dataset": datasets["untrained"]}, force=bool(params["force"]))
        if not go:
            log.info("no new exports, the latest dataset is trained on, not forced: nothing to do tonight")
        return go

    @task
    def check_export(ref: dict) -> dict:
        from ocr_tasks.flow import steps

        config, storage, _ = _context()
        result = steps.check(storage, config, ref)
        if not result["passed"]:
            log.warning("export %s QUARANTINED (the run goes on without it): report %s",
                        ref["name"], result["report_uri"])
        return result

    @task(trigger_rule="none_failed")
    def merge(checks: Any = None) -> dict:
        from ocr_tasks.flow import steps

        config, storage, params = _context()
        # by index, not iteration: iterating a mapped XCom probes one past the end and logs an error
        results = [checks[i] for i in range(len(checks))] if checks is not None else []
        result = steps.merge(storage, config, results, force=bool(params["force"]))
        log.info("dataset to train on: %s; quarantined: %s", result["dataset_version"], result["quarantined"] or "none")
        return result

    @task.short_circuit
    def has_dataset(merged: dict) -> bool:
        if merged["dataset_version"] is None:
            log.info("nothing new passed validation and the latest dataset is trained on: stopping")
            return False
        return True

    def _train(task_name: str, merged: dict) -> dict:
        from airflow.exceptions import AirflowSkipException
        from ocr_tasks.flow import steps

        config, storage, params = _context()
        if task_name not in steps.select_models(config, params["models"]):
            raise AirflowSkipException(f"{task_name} not selected (models={params['models']})")
        return steps.train(storage, config, task_name, merged["dataset_version"], _run_id(), epochs=_epochs(params))

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

        config, storage, params = _context()
        trained = {t: m for t, m in (("det", det), ("rec", rec)) if m}
        result = steps.evaluate(storage, config, _run_id(), merged["dataset_version"], trained, epochs=_epochs(params))
        log.info("test metrics: %s; production: %s", result["metrics"], result["baseline"] or "none")
        return {**result, "trained": trained}

    @task
    def gate(evaluation: dict) -> dict:
        from ocr_tasks.flow import steps

        config, _, _ = _context()
        decision = steps.gate(config, evaluation, sorted(evaluation["trained"]))
        log.info("gate %s: %s", "PASSED" if decision["passed"] else "FAILED", decision["reasons"] or "all checks passed")
        return decision

    @task.branch
    def route(decision: dict) -> str:
        params = get_current_context()["params"]
        return "publish" if decision["passed"] and not params["dry_run"] else "record"

    @task(outlets=[PRODUCTION_MODEL])
    def publish(merged: dict, evaluation: dict, decision: dict) -> dict:
        from ocr_tasks.flow import steps

        config, storage, params = _context()
        trained = evaluation["trained"]
        outcome = steps.publish(storage, config, _run_id(), merged["dataset_version"], trained, evaluation, decision,
                                epochs=_epochs(params))
        log.info("published %s %s: %s", config.model_name, outcome["model_version"], outcome["report_uri"])
        return outcome

    @task
    def record(merged: dict, evaluation: dict, decision: dict) -> dict:
        from ocr_tasks.flow import steps

        config, storage, params = _context()
        trained = evaluation["trained"]
        outcome = steps.record(storage, config, _run_id(), merged["dataset_version"], trained, evaluation, decision,
                               dry_run=bool(params["dry_run"]))
        log.info("run %s: %s, nothing published; report %s", outcome["run_id"], outcome["status"], outcome["report_uri"])
        return outcome

    found = discover()
    go = should_run(found, found["datasets"])
    checks = check_export.expand(ref=found)
    go >> checks
    merged = merge(checks)
    go >> merged
    ready = has_dataset(merged)
    det, rec = train_det(merged), train_rec(merged)
    ready >> [det, rec]
    evaluation = evaluate(merged, det, rec)
    decision = gate(evaluation)
    route(decision) >> [publish(merged, evaluation, decision), record(merged, evaluation, decision)]


ocr_retraining_dag = ocr_retraining()
