"""`ocr-retrain ui` (make ui), tried as a person does (issue 29): airflow standalone over the demo's state, and a
person's clicks in Chromium, driven by Playwright (tests/browser/airflow_ui.py): the Trigger form filled with
Params, the run's outcome read on its page (the note) and its report opened from the run's Report tab, each approval
answered in Required Actions (Reject, then Approve), with the request's report link clicked.

Slow (a few minutes): the real `airflow standalone` (api-server, scheduler, dag-processor, triggerer; LocalExecutor,
SQLite) and two short runs (det only, 1 epoch, a lowered gate, approval asked). Screenshots of the trigger form, the
approval form, the answered form, the outcomes and the report tab go to work/test-artifacts/airflow-ui/ (printed).
Needs Debian's chromium and `make browser-env` (.ci/run and make set both up); skipped, saying which, without them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
from tests.kit import REPO, free_port

BIN = Path(sys.executable).parent
BROWSER_PYTHON = REPO / ".venv-browser" / "bin" / "python"
CHROMIUM = Path("/usr/bin/chromium")
DRIVER = REPO / "tests" / "browser" / "airflow_ui.py"
SCREENSHOTS = REPO / "work" / "test-artifacts" / "airflow-ui"

pytestmark = [pytest.mark.slow(minutes=5), pytest.mark.skipif(
    not CHROMIUM.exists() or not BROWSER_PYTHON.exists(),
    reason="clicks in a real browser: needs Chromium at /usr/bin/chromium (apt-get install chromium) and "
           "`make browser-env` (Playwright's driver)")]


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


def _click(*args: str) -> dict:
    """One person's action in Chromium (tests/browser/airflow_ui.py); what the page showed."""
    done = subprocess.run([str(BROWSER_PYTHON), str(DRIVER), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args[0]} in the browser failed (screenshot in {SCREENSHOTS}):\n" \
                                 f"{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _asked(api: AirflowApi, run_id: str) -> bool:
    """True once the approve task waits for a person (state awaiting_input)."""
    states = {t["task_id"]: t["state"] for t in api.task_instances("ocr_retraining", run_id)}
    assert states.get("record") != "success", f"the run did not ask for approval: {states}"
    assert api.run_state("ocr_retraining", run_id) != "failed", states
    if states.get("approve") != "awaiting_input":
        return False
    # A person answers in seconds at the fastest. An answer within a second of the pause raced the
    # scheduler's handling of the paused task process (Airflow 3.3.2, LocalExecutor: "finished with
    # state success, but the task instance's state attribute is queued", and the task failed): wait as one would.
    time.sleep(10)
    return True


def test_ui_a_person_triggers_from_the_form_sees_the_outcome_approves_and_opens_the_report(tmp_path):
    port = free_port()
    work = tmp_path / "demo"
    log = tmp_path / "ui.log"
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
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
                             "--set", "infra_validation.onnx_runtimes={}", "--set", "onnx.converter=null",
                             "--set", "postprocess.val_images=0", "ui",
                             "--work-dir", str(work), "--port", str(port), "--images", "200"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")})
    api = AirflowApi(port)   # the REST API: to wait for the runs, as a person waits watching the grid
    try:
        # the address is printed once the api-server serves the DAG, not before (it answers at once)
        _wait("the UI's address", lambda: "Airflow UI: http://127.0.0.1:" in log.read_text(), 300, proc, log)
        assert api.ready("ocr_retraining") and api.get("dags/ocr_retraining")["is_paused"] is False
        assert "task slots" in log.read_text()

        answers = {}
        for option, comment, outcome in (("Reject", "slice export=prices_200 looks off", "Rejected"),
                                         ("Approve", "checked the report", "Published")):
            # det alone, 1 epoch, gate floor 0, approval asked: clicked into the Trigger form
            form = {"force": True, "models": "det", "epochs": 1, "det_min_hmean": 0, "dry_run": False,
                    "require_approval": "ask"}
            triggered = _click("trigger", str(port), str(SCREENSHOTS), json.dumps(form))
            run_id = triggered["run_id"]
            assert triggered["conf"]["require_approval"] == "ask" and triggered["conf"]["models"] == "det"
            assert "Trains even when nothing is new" in triggered["help"]["dry_run"]   # each Param says what it does
            _wait("the approval to be asked", lambda: _asked(api, run_id), 1500, proc, log)
            note = api.run("ocr_retraining", run_id)["note"]
            assert note.startswith("**Waiting for approval**: passed the gate"), note

            answered = _click("answer", str(port), str(SCREENSHOTS), run_id, option, comment)
            # Approve and Reject look alike and both wait for the reason, which the form says is required and why
            looks = answered["looks"]
            assert not looks["Approve"]["enabled_without_reason"] and not looks["Reject"]["enabled_without_reason"]
            assert looks["Approve"]["enabled_with_reason"] and looks["Reject"]["enabled_with_reason"]
            assert looks["Approve"]["background_with_reason"] == looks["Reject"]["background_with_reason"], looks
            assert "passed the gate" in answered["body"] and "Your reason (required)" in answered["body"]
            assert "both buttons stay disabled until it is filled" in answered["body"]
            assert "export=prices_200" in answered["body"]                                # the slice table
            # the request's report link, clicked: the run's report, served by the api-server from storage
            assert answered["report_links"] == 1
            assert answered["report"]["title"].startswith("ocr retraining") and "Gate: PASSED" in answered["report"]["text"]
            assert "/ocr-retrain/reports/ocr_retraining/" in answered["report"]["url"]

            state = _wait("the answered run to finish",
                          lambda: (s := api.run_state("ocr_retraining", run_id)) in ("success", "failed") and s,
                          900, proc, log)
            tis = {t["task_id"]: t["state"] for t in api.task_instances("ocr_retraining", run_id)}
            assert state == "success", tis
            chosen, other = ("publish_approved", "reject") if option == "Approve" else ("reject", "publish_approved")
            assert tis[chosen] == "success" and tis[other] == "skipped" and tis["publish"] == "skipped", tis
            assert tis["train_det"] == "success" and tis["train_rec"] == "skipped", tis      # the form's models=det

            # the outcome at a glance on the run's page (its note), the report one click away (the Report tab)
            seen = _click("outcome", str(port), str(SCREENSHOTS), run_id, outcome)
            if option == "Reject":
                assert "Rejected: passed the gate, rejected by Anonymous (no login: anyone who opens this UI" in seen["shown"]
            else:
                assert re.search(r"Published ocr \S+, now production, approved by Anonymous", seen["shown"])
                assert "approved by Anonymous (no login: anyone who opens this UI" in seen["shown"]
            assert seen["tab"]["title"] == f"ocr retraining {sanitize_run_id(run_id)}"
            assert "/ocr-retrain/reports/ocr_retraining/" in seen["tab"]["src"]
            assert seen["tab"]["pictures"] and seen["tab"]["pictures_shown"] == seen["tab"]["pictures"], seen["tab"]
            assert re.search(rf"status\s+{outcome.lower()}", seen["tab"]["text"]), seen["tab"]["text"][:800]
            answers[option] = run_id
        print(f"screenshots: {SCREENSHOTS}")
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
