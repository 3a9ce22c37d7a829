"""The Airflow plugin: each retraining run's report one click away in the UI.

Airflow loads it through the package's `airflow.plugins` entry point (pyproject.toml), in every deployment that
installs ocr-retrain: `make ui`, the demo, the compose images. It adds

- a FastAPI app on the api-server, at `/ocr-retrain/reports/<dag_id>/<run_id>/summary.html`, that serves a
  run's report (summary.html and its pictures) from storage: the published model's report once a run ended,
  runs/<run_id>/report/ while it waits for approval or after it was refused. The browser sends its Airflow login
  (the UI's cookie) and the route asks Airflow's auth manager whether that user may read the DAG's runs, so the
  report is exactly as private as the run; the storage credentials stay on the server (the `ocr_retrain_s3`
  connection, or the environment), never in a URL or a page;
- a "Report" tab on every run's page (an external view of the DAG run), showing that page;

and the run's note (ocr_tasks/flow/headline.py) and the approval request link to the same address.

Why these and not a presigned S3 URL: a presigned URL carries a signature made with the storage secret, expires,
and is readable by whoever holds it; and MinIO/rclone endpoints are often unreachable from the operator's browser.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import sys
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from ocr_tasks.flow.airflow_runner import ui_path
from ocr_tasks.flow.headline import REPORT_ROUTE

log = logging.getLogger(__name__)

MOUNT = REPORT_ROUTE.rsplit("/", 1)[0]        # /ocr-retrain: the app's root on the api-server
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")   # a report file's path segments (no .., no hidden files)
# what a report page may do on Airflow's origin: show its own pictures and styles, run nothing, fetch nothing else
REPORT_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                  "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                                             "frame-ancestors 'self'"}


def _storage(config: Any) -> Any:
    """Storage with the api-server's credentials: the Airflow connection, as the tasks use it, else the environment."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from ocr_tasks.flow.airflow_runner import STORAGE_CONNECTION, credentials_of
    from ocr_tasks.storage.s3 import storage_from_config

    try:   # the api-server reads connections from its own secrets backends (the task SDK's Connection is for tasks)
        credentials = credentials_of(Connection.get_connection_from_secrets(STORAGE_CONNECTION))
    except AirflowNotFoundException:
        credentials = None
    return storage_from_config(config, credentials=credentials)


def report_prefix(storage: Any, run_id: str, model_name: str) -> str:
    """Where a run's report lies in the bucket: the published model's report/ when its run.json names one (a
    publish), else runs/<run_id>/report/ (asked for approval, refused, or not ended yet). Only those two shapes:
    a run.json naming any other place is not followed."""
    from ocr_tasks.flow.run import sanitize_run_id
    from ocr_tasks.release.registry import PublishError, check_name
    from ocr_tasks.storage import layout

    run = sanitize_run_id(run_id)
    record = storage.get_json(layout.run_record_key(run), default=None) or {}
    version = record.get("model_version")
    if isinstance(version, str) and record.get("report_uri"):
        try:
            check_name(version, "model version")
        except PublishError:   # not a version this pipeline publishes: the run's own report
            return layout.run_report_prefix(run)
        published = layout.model_report_prefix(model_name, version)
        if record["report_uri"] == storage.uri(published + "summary.html"):
            return published
    return layout.run_report_prefix(run)


def _app() -> Any:
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, RedirectResponse, Response

    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    app = FastAPI(title="ocr-retrain reports", docs_url=None, redoc_url=None, openapi_url=None)
    may_read_runs = [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]

    @app.get("/reports/{dag_id}/{run_id}/", dependencies=may_read_runs)
    def report_index(dag_id: str, run_id: str) -> Any:
        return RedirectResponse("summary.html")

    @app.get("/reports/{dag_id}/{run_id}/{path:path}", dependencies=may_read_runs)
    def report_file(dag_id: str, run_id: str, path: str) -> Any:
        from html import escape

        from ocr_tasks.flow.retraining import RETRAINING

        from ocr_tasks.config import load_config
        from ocr_tasks.errors import UsageError

        parts = path.split("/")
        if dag_id != RETRAINING.name or not all(_SAFE_PART.fullmatch(part) for part in parts):
            raise HTTPException(404, "no such report file")
        config = load_config()
        storage = _storage(config)
        try:
            key = report_prefix(storage, run_id, config.model_name) + "/".join(parts)
        except (UsageError, ValueError):   # a run id with nothing usable in it
            raise HTTPException(404, "no such report file") from None
        found = storage.get_object(key)
        if found is None:
            if path != "summary.html":
                raise HTTPException(404, "no such report file")
            return HTMLResponse(
                f"<!doctype html><meta charset=utf-8><title>No report yet</title><p>No report for run "
                f"<code>{escape(run_id)}</code> yet. A run writes it when it asks for approval or when it ends "
                "(published, refused by the gate, dry run, rejected); a run that found nothing new has none.</p>",
                status_code=404, headers=REPORT_HEADERS)
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(found.data, media_type=media, headers=REPORT_HEADERS)

    return app


def _in_the_api_server() -> bool:
    """Every Airflow process loads the plugins (each task process too, for macros and listeners); only the
    api-server serves the app, and building it imports Airflow's API stack (~0.8 s of CPU per task process)."""
    return "airflow.api_fastapi.app" in sys.modules


class OcrRetrainPlugin(AirflowPlugin):
    name = "ocr_retrain"
    fastapi_apps = [{"app": _app(), "url_prefix": MOUNT, "name": "ocr-retrain reports"}] if _in_the_api_server() else []
    # under the deployment's base URL path, which Airflow's UI does not add to an external view's href
    external_views = [{"name": "Report", "href": ui_path(f"{REPORT_ROUTE}/{{DAG_ID}}/{{RUN_ID}}/summary.html"),
                       "destination": "dag_run", "url_route": "ocr_retrain_report"}]
