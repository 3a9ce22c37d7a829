"""ocr_prelabel: each new production model pre-labels the next batches of raw images for PPOCRLabel.

Only wiring, as ocr_retraining: the step is `ocr_tasks.prelabel.prelabel.prelabel_batch`, which
`ocr-retrain prelabel` runs too.

    batches (the unlabeled/<batch>/ folders the model version has not pre-labelled) -> prelabel (mapped)

Scheduled on the production model Asset that ocr_retraining's publish updates, so every new
production version pre-labels again; triggerable by hand with Params (one batch, another version).
Each batch ends as prelabeled/<batch>/<version>/: the PPOCRLabel folder <batch>/ (images and
Cache.cach), ranking.csv / ranking.html (hardest first) and done.json. A batch a version already
did is skipped. `prelabel.on_gpu` runs it on the gpu queue and pool, as training.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from ocr_tasks.config import load_config_for_parsing
from ocr_tasks.flow.airflow_runner import GPU_POOL, GPU_QUEUE, storage_credentials

log = logging.getLogger("ocr_prelabel")


CONFIG = load_config_for_parsing("ocr_prelabel")   # None when broken: the defaults below
PRODUCTION_MODEL = Asset(CONFIG.production_model_uri if CONFIG else "s3://ocr-data/models/ocr/production.json",
                         group="model")
ON_GPU = {"pool": GPU_POOL, "queue": GPU_QUEUE} if CONFIG and CONFIG.prelabel.on_gpu else {}


def _storage_and_config() -> tuple[Any, Any]:
    from ocr_tasks.config import load_config
    from ocr_tasks.storage.s3 import storage_from_config

    config = load_config()   # credentials: the Airflow connection, else the environment, as ocr-retrain does
    return storage_from_config(config, credentials=storage_credentials()), config


@dag(
    dag_id="ocr_prelabel",
    schedule=[PRODUCTION_MODEL],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ocr", "labelling"],
    doc_md=__doc__,
    default_args={"owner": "ocr-retrain", "retries": 1},
    params={
        "batch": Param(None, type=["null", "string"], description="One unlabeled/<batch>/; empty = every batch."),
        "model_version": Param(None, type=["null", "string"], description="A published version; empty = production."),
    },
)
def ocr_prelabel() -> None:

    @task
    def batches() -> list[dict]:
        """The batches this model version has not pre-labelled (or the one the form names)."""
        from ocr_tasks.prelabel.prelabel import batches_to_prelabel
        from ocr_tasks.release.registry import production_version

        storage, config = _storage_and_config()
        params = get_current_context()["params"]
        version = params.get("model_version") or production_version(storage, config.model_name)
        if version is None:
            log.info("no production model yet: nothing to pre-label with")
            return []
        todo = [params["batch"]] if params.get("batch") else batches_to_prelabel(storage, version)
        log.info("model %s pre-labels: %s", version, todo or "nothing new")
        return [{"batch": batch, "model_version": version} for batch in todo]

    @task(**ON_GPU)
    def prelabel(job: dict) -> dict:
        from ocr_tasks.prelabel.prelabel import prelabel_batch

        storage, config = _storage_and_config()
        result = prelabel_batch(storage, config, job["batch"], job["model_version"])
        log.info("open in PPOCRLabel: %s; hardest first: %s", result.uri, result.ranking_uri)
        return result.to_json()

    prelabel.expand(job=batches())


ocr_prelabel_dag = ocr_prelabel()
