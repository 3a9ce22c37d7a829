"""`ocr-retrain ui` (make ui): airflow standalone over the demo's state, a run triggered by hand.

Slow (a few minutes): starts the real `airflow standalone` (api-server, scheduler,
dag-processor, triggerer; LocalExecutor, SQLite) the way a user does, then triggers a
run through the REST API, which is what the UI's Trigger button calls, with the Params
form's values: rec only, 1 epoch, dry run. Asserted from the API's task instances and
from what the run left in storage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ocr_tasks.embedded.local_airflow import AirflowApi
from ocr_tasks.storage import layout
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.storage.s3 import Storage
from tests.kit import free_port

pytestmark = pytest.mark.slow(minutes=1.5)

BIN = Path(sys.executable).parent


def _wait(what: str, check, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ocr-retrain ui exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass  # the api-server is not up yet
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text(errors='replace')[-3000:]}")


def test_ui_starts_airflow_with_the_dag_ready_and_runs_a_triggered_run(tmp_path):
    port = free_port()
    work = tmp_path / "demo"
    log = tmp_path / "ui.log"
    proc = subprocess.Popen([str(BIN / "ocr-retrain"), "ui", "--work-dir", str(work), "--port", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")})
    api = AirflowApi(port)   # the REST API the UI calls (the demo drives its runs with it too)
    try:
        dag = _wait("the api-server and the DAG", lambda: api.get("dags/ocr_retraining"), 300, proc, log)
        assert dag["is_paused"] is False                    # ready to trigger
        assert "Airflow UI: http://127.0.0.1:" in log.read_text()

        conf = {"models": "rec", "epochs": 1, "dry_run": True}
        run_id = api.trigger("ocr_retraining", conf)
        state = _wait("the triggered run to finish",
                      lambda: (s := api.run_state("ocr_retraining", run_id)) in ("success", "failed") and s,
                      900, proc, log)
        tis = {t["task_id"]: t["state"] for t in api.task_instances("ocr_retraining", run_id)}
        assert state == "success", tis
        assert tis["train_rec"] == "success" and tis["train_det"] == "skipped"      # the form's models=rec
        assert tis["record"] == "success" and tis["publish"] == "skipped"           # dry run: nothing published
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    # Ctrl-C / SIGTERM stops everything standalone started (its components run in their own sessions)
    home = str(work / "airflow")
    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.environ().get("AIRFLOW_HOME") == home or str(work / "s3") in " ".join(p.info["cmdline"] or []):
                left.append(" ".join(p.info["cmdline"] or [])[:120])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    assert not left, left

    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings("ocr-data"))
        (key,) = [o.key for o in storage.list(layout.RUNS) if o.key.endswith("/run.json")]
        outcome = storage.get_json(key)
        assert set(outcome["metrics"]) == {"rec"}
        assert outcome["status"] in ("dry-run", "gate-failed")     # 1 epoch: the gate decides, nothing is published
        assert not storage.exists(layout.production_key("ocr"))
