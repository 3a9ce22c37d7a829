"""The Airflow plugin that puts each run's report one click away (issue 29): where it finds a run's report in the
bucket. Served for real by Airflow's api-server, in Chromium, in tests/embedded/test_ui.py."""

from __future__ import annotations

import pytest

pytest.importorskip("airflow")

from ocr_tasks.flow.airflow_plugin import MOUNT, REPORT_HEADERS, OcrRetrainPlugin, _app, report_prefix  # noqa: E402
from ocr_tasks.flow.headline import report_path  # noqa: E402
from ocr_tasks.storage import layout  # noqa: E402


def test_a_runs_report_is_the_published_one_else_the_runs_own(storage):
    run, key = "manual__2026-12-04T10:00:00+00:00", "manual__2026-12-04T10_00_00_00_00"
    own = layout.run_report_prefix(key)
    # waiting for approval (or still running): the report written under the run
    assert report_prefix(storage, run, "ocr") == own
    # published: the report that went out with the model, as run.json names it
    storage.put_json(layout.run_record_key(key), {
        "model_version": "v7", "report_uri": storage.uri(layout.model_report_prefix("ocr", "v7") + "summary.html")})
    assert report_prefix(storage, run, "ocr") == layout.model_report_prefix("ocr", "v7")
    # a run.json naming any other place is not followed: another bucket, the bucket's root, an upload, a bad version
    for version, uri in (("v7", "s3://elsewhere/secret/summary.html"), ("v7", storage.uri("summary.html")),
                         ("v7", storage.uri("incoming/batch/summary.html")),
                         ("../../incoming", storage.uri("models/ocr/") + "../../incoming/report/summary.html")):
        storage.put_json(layout.run_record_key(key), {"model_version": version, "report_uri": uri})
        assert report_prefix(storage, run, "ocr") == own, uri


def test_the_app_serves_pages_that_run_nothing_and_load_only_their_own_pictures():
    app = _app()      # built in the api-server alone (the next test); here on its own
    assert {route.path for route in app.routes} >= {"/reports/{dag_id}/{run_id}/", "/reports/{dag_id}/{run_id}/{path:path}"}
    policy = REPORT_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src 'self'" in policy and "script" not in policy


def test_the_note_the_request_and_the_report_tab_name_one_address():
    (view,) = OcrRetrainPlugin.external_views
    assert view["destination"] == "dag_run"
    # the UI fills {DAG_ID}/{RUN_ID} url-encoded, as report_path encodes them
    run = "manual__2026-12-04T10:00:00+00:00"
    filled = view["href"].replace("{DAG_ID}", "ocr_retraining").replace("{RUN_ID}", "manual__2026-12-04T10%3A00%3A00%2B00%3A00")
    assert filled == report_path("ocr_retraining", run)
    assert filled.startswith(MOUNT + "/")


def test_a_task_process_does_not_pay_for_the_api_app():
    """Task processes load every plugin: importing this one must not build the app (Airflow's API stack)."""
    import subprocess
    import sys

    code = ("import sys, airflow.sdk; from ocr_tasks.flow.airflow_plugin import OcrRetrainPlugin; "
            "print(len(OcrRetrainPlugin.fastapi_apps), 'airflow.api_fastapi.core_api.security' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["0", "False"], out
