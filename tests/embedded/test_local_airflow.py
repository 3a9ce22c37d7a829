"""The embedded default's Airflow driver (ocr_tasks/embedded/local_airflow.py) and its progress view.

The progress tests replay real task logs of this DAG (tests/data/airflow_task_logs/, written by
Airflow 3's task supervisor during `ocr-retrain demo`, trimmed to the lines that matter) through
a sequence of task-instance states as the REST API returned them. The real runs are in
test_demo.py and test_ui.py (slow).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

from ocr_tasks.embedded.local_airflow import DAGS_FOLDER, LocalAirflow, RunFollower

from tests.kit import DATA

LOGS = DATA / "airflow_task_logs"      # published/: the demo's first run; failed/: storage unreachable
RUN_ID = "manual__2026-12-01T07:30:00+00:00"


START = datetime(2026, 12, 1, 7, 30, 1, tzinfo=timezone.utc)


def _ti(task_id: str, state: str | None, map_index: int = -1, seconds: float | None = None):
    """A task instance as GET .../taskInstances returns it (the fields the follower reads)."""
    started = state not in (None, "scheduled", "queued")
    end = START + timedelta(seconds=seconds) if seconds is not None else None
    return {"task_id": task_id, "map_index": map_index, "state": state, "try_number": 1,
            "start_date": START.isoformat().replace("+00:00", "Z") if started else None,
            "end_date": end.isoformat().replace("+00:00", "Z") if end else None}


def _follow(tmp_path, scenario: str, polls: list[list[dict]]) -> list[str]:
    logs = tmp_path / "logs"
    shutil.copytree(LOGS / scenario, logs / "dag_id=ocr_retraining" / f"run_id={RUN_ID}")
    out: list[str] = []
    follower = RunFollower(logs, "ocr_retraining", RUN_ID, out.append)
    for poll in polls:
        follower.update(poll)
    return out


PUBLISHED = [
    [_ti("discover", "running"), _ti("should_run", None)],
    # short tasks start and end between two polls: their messages are still shown
    [_ti("discover", "success", seconds=3.2), _ti("should_run", "success", seconds=0.2),
     _ti("check_export", "success", 0, 5.0), _ti("check_export", "success", 1, 4.0), _ti("merge", "running")],
    [_ti("merge", "success", seconds=2.0), _ti("has_dataset", "success", seconds=0.2),
     _ti("train_det", "running"), _ti("train_rec", "running")],
    [_ti("train_det", "running"), _ti("train_rec", "success", seconds=54.6)],
    [_ti("train_det", "success", seconds=59.2), _ti("train_rec", "success", seconds=54.6),
     _ti("evaluate", "success", seconds=11.4), _ti("gate", "success", seconds=0.3), _ti("route", "success", seconds=0.3),
     _ti("record", "skipped"), _ti("publish", "success", seconds=9.7)],
]


def test_progress_shows_each_task_once_with_its_time_the_dags_messages_and_epochs(tmp_path):
    out = _follow(tmp_path, "published", PUBLISHED)
    text = "\n".join(out)
    for task in ("discover", "should_run", "check_export[0]", "check_export[1]", "merge", "train_det", "train_rec",
                 "evaluate", "gate", "route", "publish"):
        assert sum(line.endswith(f"> {task}") for line in out) == 1, task
        assert f"done {task} (" in text, task
    assert "done discover (3 s)" in text and "done train_rec (55 s)" in text    # from start/end, not `duration`
    assert "export digits_broken QUARANTINED" in text                   # the DAG's own message, from check_export[1]
    assert "train_det epoch 1/4, step" in text and "train_rec epoch 1/12, step" in text
    assert "train_det best hmean on val so far: 0.983" in text and "train_rec best acc on val so far" in text
    assert "skipped: record" in text and "> record" not in text         # a skipped task never started
    assert "published ocr " in text
    assert "DAG bundles loaded" not in text and "ppocr INFO:     loader" not in text   # chatter stays in the files


def test_a_failed_task_shows_its_exception_once_and_what_did_not_run(tmp_path):
    downstream = ["should_run", "merge", "has_dataset", "train_det", "train_rec", "evaluate"]
    out = _follow(tmp_path, "failed", [
        [_ti("discover", "running")],
        [_ti("discover", "failed", seconds=82.0), *(_ti(t, "upstream_failed", seconds=0.0) for t in downstream)],
    ])
    failed = out.index(next(line for line in out if line.endswith("failed discover (82 s)")))
    assert sum(line.strip().startswith("StorageError: S3 GetObject") for line in out[:failed]) == 1
    assert not any(line.strip().startswith(("File ", "Traceback", "ConnectionRefusedError")) for line in out)
    assert out[failed + 1].endswith("not run (upstream failed): " + ", ".join(sorted(downstream)))


def test_a_log_line_being_written_waits_for_the_next_poll(tmp_path):
    logs = tmp_path / "logs"
    task_log = logs / "dag_id=ocr_retraining" / f"run_id={RUN_ID}" / "task_id=merge" / "attempt=1.log"
    task_log.parent.mkdir(parents=True)
    record = {"event": "merged into dataset v1", "level": "info", "logger": "ocr_retraining"}
    line = json.dumps(record)
    task_log.write_text(line[:20])
    out: list[str] = []
    follower = RunFollower(logs, "ocr_retraining", RUN_ID, out.append)
    follower.update([_ti("merge", "running")])
    assert not any("merged into" in x for x in out)
    task_log.write_text(line + "\n")
    follower.update([_ti("merge", "running")])
    assert sum("merged into dataset v1" in x for x in out) == 1


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
