"""The Airflow plugin that puts each run's report one click away (issue 29): where it finds a run's report in the
bucket. Served for real by Airflow's api-server, in Chromium, in tests/embedded/test_ui.py."""

from __future__ import annotations

import pytest

pytest.importorskip("airflow")
import airflow.api_fastapi.app  # noqa: E402,F401  (as in the api-server, the one process that builds the app)

from ocr_tasks.flow.airflow_plugin import MOUNT, OcrRetrainPlugin, report_prefix  # noqa: E402
from ocr_tasks.flow.headline import report_path  # noqa: E402
from ocr_tasks.storage import layout  # noqa: E402


def test_a_runs_report_is_the_published_one_else_the_runs_own(storage):
    run = "manual__2026-12-04T10:00:00+00:00"
    # waiting for approval (or still running): the report written under the run
    assert report_prefix(storage, run) == layout.run_report_prefix("manual__2026-12-04T10_00_00_00_00")
    # published: the report that went out with the model, as run.json names it
    storage.put_json(layout.run_record_key("manual__2026-12-04T10_00_00_00_00"), {
        "report_uri": storage.uri(layout.model_report_prefix("ocr", "v7") + "summary.html")})
    assert report_prefix(storage, run) == layout.model_report_prefix("ocr", "v7")
    # a record pointing outside this bucket is not followed
    storage.put_json(layout.run_record_key("manual__2026-12-04T10_00_00_00_00"), {
        "report_uri": "s3://elsewhere/secret/summary.html"})
    assert report_prefix(storage, run) == layout.run_report_prefix("manual__2026-12-04T10_00_00_00_00")


def test_the_note_the_request_and_the_report_tab_name_one_address():
    (view,) = OcrRetrainPlugin.external_views
    assert view["destination"] == "dag_run"
    # the UI fills {DAG_ID}/{RUN_ID} url-encoded, as report_path encodes them
    run = "manual__2026-12-04T10:00:00+00:00"
    filled = view["href"].replace("{DAG_ID}", "ocr_retraining").replace("{RUN_ID}", "manual__2026-12-04T10%3A00%3A00%2B00%3A00")
    assert filled == report_path("ocr_retraining", run)
    assert filled.startswith(MOUNT + "/") and OcrRetrainPlugin.fastapi_apps[0]["url_prefix"] == MOUNT


def test_a_task_process_does_not_pay_for_the_api_app():
    """Task processes load every plugin: importing this one must not build the app (Airflow's API stack)."""
    import subprocess
    import sys

    code = ("import sys, airflow.sdk; from ocr_tasks.flow.airflow_plugin import OcrRetrainPlugin; "
            "print(len(OcrRetrainPlugin.fastapi_apps), 'airflow.api_fastapi.core_api.security' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["0", "False"], out
