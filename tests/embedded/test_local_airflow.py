"""The embedded default's Airflow driver (ocr_tasks/embedded/local_airflow.py) and its progress view.

The progress test replays a real `airflow dags test` log of this DAG (tests/data/,
trimmed to the lines that matter, including a task that failed with an exception).
The real runs are in test_demo.py (slow).
"""

from __future__ import annotations

import json

from ocr_tasks.embedded.local_airflow import DAGS_FOLDER, LocalAirflow, ProgressPrinter, _FINISHED

from tests.kit import DATA

LOG = DATA / "airflow_dags_test_log.txt"


def _replay() -> list[str]:
    out: list[str] = []
    printer = ProgressPrinter(out.append)
    for line in LOG.read_text(encoding="utf-8").splitlines():
        printer(line)
    return out


def test_progress_shows_each_task_the_dags_messages_and_epochs():
    text = "\n".join(_replay())
    for task in ("discover", "should_run", "check_export[0]", "check_export[1]", "merge", "train_rec", "train_det"):
        assert f"> {task}" in text and f"done {task} (" in text, task
    assert "export digits_broken QUARANTINED" in text
    assert "train_det epoch 1/1, step 5, loss 7.229" in text
    assert "train_rec best acc on val so far" in text
    assert "Pushing xcom" not in text and "Task started" not in text      # Airflow's own chatter stays in the file


def test_a_failed_task_shows_its_exception_line_not_the_traceback():
    out = _replay()
    failed = next(i for i, line in enumerate(out) if "! evaluate failed:" in line)
    assert "ImportError: cannot import name" in out[failed + 1]
    assert not any(line.strip().startswith("File ") for line in out)


def test_the_run_summary_line_gives_run_id_and_state():
    finished = [m for line in LOG.read_text().splitlines() if (m := _FINISHED.search(line))]
    (m,) = finished
    assert m["run_id"].startswith("manual__2026-") and m["state"] == "failed"


def test_private_instance_ignores_the_users_airflow_and_aws_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "users-own-secret")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_SOMETHING", "x")
    connection = {"conn_type": "aws", "login": "k", "password": "p", "extra": {"endpoint_url": "http://127.0.0.1:1"}}
    env = LocalAirflow(tmp_path / "airflow", connection, {"OCR_RETRAIN_CONFIG": "/c.yaml"}).env()
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AIRFLOW_CONN_SOMETHING" not in env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER)
    assert json.loads(env["AIRFLOW_CONN_OCR_RETRAIN_S3"]) == connection
    assert env["OCR_RETRAIN_CONFIG"] == "/c.yaml"
