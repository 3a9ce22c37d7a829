"""The retraining steps, one module per stage (ingest.py, training.py, release.py; common.py shared).
How they chain is declared once, in ocr_tasks/flow/retraining.py; two runners execute that declaration: the Airflow DAG (one task per step) and `run_local` (every step in
one process, for `ocr-retrain run`).

Each step takes the run's `RunContext` and the artifacts of the steps before it
(ocr_tasks/flow/run.py) and returns its own. Tasks may run on different workers, so a
step reads what it needs from storage, never from another worker's disk: a trained model
is fetched back from runs/<run_id>/<kind>/ (`fetch_trained`, which never trains). Tasks of one
run may also run at once on one worker (infra_validate beside compare): each keeps its local files
in its own scratch folder, `ctx.scratch` (work_dir/runs/<run_id>/<step>/), never in another's.

Imports of the heavy stages (boto3, pandas, GX, paddle) happen inside the steps, so the
DAG file can import this module cheaply.
"""

from ocr_tasks.flow.steps.common import dataset_version, fetch_bundle, local_dataset
from ocr_tasks.flow.steps.ingest import check_export, dataset_to_train, discover, has_dataset, merge, should_run
from ocr_tasks.flow.steps.release import (APPROVE, PUBLISH, RECORD, approval_by_hand, approval_request, compare,
                                          export, gate, infra_validate, publish, record, route)
from ocr_tasks.flow.steps.training import evaluate, first_run_with_a_baseline, register_baseline, train, wants

__all__ = ["APPROVE", "PUBLISH", "RECORD", "approval_by_hand", "approval_request", "check_export", "compare",
           "dataset_to_train", "dataset_version", "discover", "evaluate", "export", "fetch_bundle",
           "first_run_with_a_baseline", "gate", "has_dataset", "infra_validate", "local_dataset", "merge", "publish",
           "record", "register_baseline", "route", "should_run", "train", "wants"]
