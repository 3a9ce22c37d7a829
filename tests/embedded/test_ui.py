"""`ocr-retrain ui` (make ui): airflow standalone over the demo's state, a run triggered by hand.

Slow (a few minutes): starts the real `airflow standalone` (api-server, scheduler,
dag-processor, triggerer; LocalExecutor, SQLite) the way a user does, then triggers two
runs through the REST API, which is what the UI's Trigger button calls, with the Params
form's values (det only, 1 epoch, a lowered gate, approval required), and answers each
approval as a person does in Required Actions: Reject, then Approve. Asserted from the
API's task instances and from what the runs left in storage. (The form's dry_run and
models=rec are Params -> RunRequest mapping and routing, tests/dags/test_dag.py and
tests/release/test_approval.py; a third whole run here cost ~2 minutes of CI.)
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
from ocr_tasks.flow.run import sanitize_run_id
from ocr_tasks.storage import layout
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.storage.s3 import Storage
from tests.kit import free_port

pytestmark = pytest.mark.slow(minutes=5)

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


def _asked(api: AirflowApi, run_id: str) -> dict | None:
    """The approve task's request once it waits for a person (state awaiting_input), else None."""
    states = {t["task_id"]: t["state"] for t in api.task_instances("ocr_retraining", run_id)}
    assert states.get("record") != "success", f"the run did not ask for approval: {states}"
    assert api.run_state("ocr_retraining", run_id) != "failed", states
    if states.get("approve") != "awaiting_input":
        return None
    # A person answers in seconds at the fastest. An answer within a second of the pause raced the
    # scheduler's handling of the paused task process (Airflow 3.3.2, LocalExecutor: "finished with
    # state success, but the task instance's state attribute is queued", and the task failed): wait as one would.
    time.sleep(10)
    return api.hitl_detail("ocr_retraining", run_id, "approve")


def test_ui_starts_airflow_with_the_dag_ready_and_runs_a_triggered_run(tmp_path):
    port = free_port()
    work = tmp_path / "demo"
    log = tmp_path / "ui.log"
    # this deployment lets the trigger form lower the gate (trigger.may_relax_gate): the approval runs below pass
    # a 1-epoch det with det_min_hmean 0; by default the form may only tighten it (tests/dags/test_dag.py)
    # the consumer runtimes (Paddle and ONNX) are the demo test's: here the pipeline's own reads each run's models (one read);
    # so is choosing the det post-processing on val (postprocess.val_images 0: the det template's values stay)
    # a first export of 200 images (`ui --images`): what is tested is the UI's path, not the model, so each of the
    # two runs trains on 120 images instead of the demo's 480
    # and no stock baseline: its registration is the demo test's (a 1-epoch det would not beat stock, nor is it meant to)
    proc = subprocess.Popen([str(BIN / "ocr-retrain"), "--set", "trigger.may_relax_gate=true",
                             "--set", "baseline.det=null", "--set", "baseline.rec=null",
                             "--set", "infra_validation.runtimes={pipeline: null}",
                             "--set", "infra_validation.onnx_runtimes={}",
                             "--set", "postprocess.val_images=0", "ui",
                             "--work-dir", str(work), "--port", str(port), "--images", "200"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")})
    api = AirflowApi(port)   # the REST API the UI calls (the demo drives its runs with it too)
    try:
        dag = _wait("the api-server and the DAG", lambda: api.get("dags/ocr_retraining"), 300, proc, log)
        assert dag["is_paused"] is False                    # ready to trigger
        assert "Airflow UI: http://127.0.0.1:" in log.read_text()

        # a person approves or rejects in Required Actions: through the REST API the UI calls.
        # det alone, 1 epoch, gate floor 0: it passes, so the approval is asked
        ask = {"models": "det", "epochs": 1, "det_min_hmean": 0, "force": True, "require_approval": True}
        answers = {}
        for option, comment in (("Reject", "slice export=prices_200 looks off"), ("Approve", "checked the report")):
            run_id = api.trigger("ocr_retraining", ask)
            detail = _wait("the approval to be asked", lambda: _asked(api, run_id), 1500, proc, log)
            assert detail["subject"].startswith("Publish ocr from run ") and detail["options"] == ["Approve", "Reject"]
            assert "passed the gate" in detail["body"] and "/report/summary.html" in detail["body"]
            assert "| det | export=prices_200 |" in detail["body"]                      # the slice table
            api.respond("ocr_retraining", run_id, "approve", [option], {"comment": comment})
            state = _wait("the answered run to finish",
                          lambda: (s := api.run_state("ocr_retraining", run_id)) in ("success", "failed") and s,
                          900, proc, log)
            tis = {t["task_id"]: t["state"] for t in api.task_instances("ocr_retraining", run_id)}
            assert state == "success", tis
            chosen, other = ("publish_approved", "reject") if option == "Approve" else ("reject", "publish_approved")
            assert tis[chosen] == "success" and tis[other] == "skipped" and tis["publish"] == "skipped", tis
            assert tis["train_det"] == "success" and tis["train_rec"] == "skipped", tis      # the form's models=det
            answers[option] = run_id
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    # Ctrl-C / SIGTERM stops everything standalone started (its components run in their own sessions)
    home = str(work / "airflow")

    def left() -> list[str]:
        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.environ().get("AIRFLOW_HOME") == home or str(work / "s3") in " ".join(p.info["cmdline"] or []):
                    found.append(" ".join(p.info["cmdline"] or [])[:120])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    # a task's tool (a consumer probe of the prelabel run the publish started) ends with its task, which the
    # supervisor may have had to kill: give the signal a few seconds on a busy machine
    deadline = time.monotonic() + 20
    while left() and time.monotonic() < deadline:
        time.sleep(1)
    assert not left(), left()

    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings("ocr-data"))
        rejected = storage.get_json(layout.run_record_key(sanitize_run_id(answers["Reject"])))
        assert rejected["status"] == "rejected" and rejected["model_version"] is None
        assert rejected["approval"]["decision"] == "rejected" and rejected["approval"]["by"]
        assert rejected["approval"]["comment"] == "slice export=prices_200 looks off" and rejected["approval"]["at"]
        approved = storage.get_json(layout.run_record_key(sanitize_run_id(answers["Approve"])))
        assert approved["status"] == "published" and approved["approval"]["decision"] == "approved"
        # production is the approved run's model, and its manifest says who approved it, when and why
        assert storage.get_json(layout.production_key("ocr"))["version"] == approved["model_version"]
        manifest = storage.get_json(layout.model_manifest_key("ocr", approved["model_version"]))
        # the relaxed gate is on the record: the Params, the deployed and the run's threshold
        assert approved["trigger"]["params"]["det_min_hmean"] == 0 and manifest["trigger"] == approved["trigger"]
        assert approved["trigger"]["overridden"]["gate.det_min_hmean"]["run"] == 0
        assert manifest["approval"] == approved["approval"] and manifest["approval"]["comment"] == "checked the report"
        assert "export=prices_200" in manifest["comparison"]["slices"]["det"]
