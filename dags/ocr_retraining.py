"""ocr_retraining: nightly PaddleOCR det/rec retraining from PPOCRLabel exports.

Only wiring: the tasks are the nodes of the retraining pipeline declared once in
`ocr_tasks/flow/retraining.py` (`ocr-retrain run` runs the same declaration in one process), built
by `ocr_tasks/flow/airflow_runner.py`. `ocr-retrain graph` prints the chain. Steps are imported
inside the tasks, so parsing this file stays cheap (no boto3, pandas, GX or paddle).

The pipeline run id is the Airflow run id, sanitised, so every task and every retry of a
run shares runs/<run_id>/ in storage: a retried train task resumes from its checkpoints,
evaluate and publish fetch the trained models from there.

Storage credentials: the Airflow connection `ocr_retrain_s3` (AWS type: login/password =
access key/secret, extra {"endpoint_url": ..., "region_name": ...}) when it exists, else
the environment (AWS_ACCESS_KEY_ID, OCR_RETRAIN_S3_ENDPOINT, ...), as `ocr-retrain` does.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, Param, dag

from ocr_tasks.config import load_config_for_parsing
from ocr_tasks.flow.airflow_runner import GPU_POOL, GPU_QUEUE, STORAGE_CONNECTION, build_tasks, on_failure  # noqa: F401
from ocr_tasks.flow.retraining import RETRAINING
from ocr_tasks.flow.run import APPROVAL_CHOICES

DAG_ID = RETRAINING.name
SCHEDULE = os.environ.get("OCR_RETRAIN_SCHEDULE", "0 2 * * *")   # nightly; "" or "none" -> manual only
# time for a lost worker's GPU to be freed (or a new worker to come up) before the retry resumes
TRAIN_RETRY_DELAY = timedelta(seconds=int(os.environ.get("OCR_RETRAIN_TRAIN_RETRY_DELAY_S", "300")))

CONFIG = load_config_for_parsing(DAG_ID)   # None when broken: the defaults below
# models/<name>/production.json of the configured bucket: what a publish updates
PRODUCTION_MODEL = Asset(CONFIG.production_model_uri if CONFIG else "s3://ocr-data/models/ocr/production.json",
                         group="model")
APPROVAL_TIMEOUT = timedelta(hours=CONFIG.approval.timeout_h if CONFIG else 24)


@dag(
    dag_id=DAG_ID,
    # a trigger at the cron time (not a data interval): the night's run starts at 02:00, not a day later
    schedule=CronTriggerTimetable(SCHEDULE, timezone="UTC") if SCHEDULE.strip().lower() not in ("", "none") else None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ocr", "training"],
    doc_md=f"{__doc__}\n```\n{RETRAINING.picture()}\n```\n",
    default_args={"owner": "ocr-retrain", "retries": 0, "on_failure_callback": on_failure},
    params={
        "force": Param(False, type="boolean",
                       description="Train even when no export is new: on the latest dataset version."),
        "models": Param("both", type="string", enum=["both", "det", "rec"],
                        description="both = as configured (training.models); det or rec narrows it."),
        "epochs": Param(None, type=["null", "integer"], minimum=1,
                        description="Epochs per stage; empty = as configured."),
        "rec_min_acc": Param(None, type=["null", "number"], minimum=0, maximum=1,
                             description="Gate override: rec acc on the test split must be greater."),
        "det_min_hmean": Param(None, type=["null", "number"], minimum=0, maximum=1,
                               description="Gate override: det hmean on the test split must be at least this."),
        "dry_run": Param(False, type="boolean",
                         description="Train, evaluate and gate, then stop: nothing is published, and the next night "
                                     "still trains on this data. Trains even when nothing is new (no need for force)."),
        "require_approval": Param("as configured", type="string", enum=list(APPROVAL_CHOICES),
                                  description="ask: a person approves or rejects in Required Actions before a model "
                                              "that passed the gate is published. do not ask: publish when it "
                                              "passes (only where the deployment allows it: "
                                              "trigger.may_skip_approval). as configured: approval.required."),
    },
)
def ocr_retraining() -> None:
    build_tasks(RETRAINING, approval_timeout=APPROVAL_TIMEOUT, gpu_retry_delay=TRAIN_RETRY_DELAY,
                publishes_to=PRODUCTION_MODEL)


ocr_retraining_dag = ocr_retraining()
