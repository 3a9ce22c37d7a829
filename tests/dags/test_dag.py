"""The Airflow DAG `ocr_retraining` (dags/ocr_retraining.py) and the steps it calls (ocr_tasks/flow/steps/).

These tests parse the DAG with a DagBag in a throw-away AIRFLOW_HOME (no metadata
database needed for parsing) and run the steps the way the tasks do, artifacts through
XCom JSON. The whole DAG in Airflow (`airflow dags test`) runs in tests/test_runners.py,
beside the local runner on the same export.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from tests.kit import REPO

DAGS = REPO / "dags"
DAG_FILE = DAGS / "ocr_retraining.py"
BIN = Path(sys.executable).parent

# Airflow reads AIRFLOW_HOME when it is first imported: never let the tests touch a real one.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="ocr-retrain-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from ocr_tasks import codec
from ocr_tasks.flow import steps  # noqa: E402
from ocr_tasks.flow.airflow_runner import context_from_params  # noqa: E402
from ocr_tasks.flow.run import Discovery, RunContext, RunRequest, sanitize_run_id  # noqa: E402
from ocr_tasks.ingest.exports import ExportRef  # noqa: E402
from ocr_tasks.config import load_config  # noqa: E402
from ocr_tasks.errors import UsageError  # noqa: E402

TRAIN_TASKS = ("train_det", "train_rec")
GPU_TASKS = (*TRAIN_TASKS, "register_baseline")   # converting and scoring the stock model is model work too


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag   # Airflow 3.3's home of it (examples: AIRFLOW__CORE__LOAD_EXAMPLES)

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dagbag():
    return _dagbag()


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["ocr_retraining"]


# --------------------------------------------------------------------------- the DAG's shape


def test_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "ocr_retraining" in dagbag.dags


def test_prelabel_dag_runs_on_every_new_production_model(dagbag, dag):
    """ocr_prelabel is scheduled on the Asset both publish tasks update, and maps one task per batch."""
    prelabel = dagbag.dags["ocr_prelabel"]
    published = {a.uri for t in ("publish", "publish_approved") for a in dag.get_task(t).outlets}
    assert published == {load_config().production_model_uri}
    scheduled_on = [a.uri for a in prelabel.timetable.asset_condition.objects]
    assert scheduled_on == [load_config().production_model_uri]
    assert {t.task_id for t in prelabel.tasks} == {"batches", "prelabel"}
    assert prelabel.get_task("batches").downstream_task_ids == {"prelabel"}
    assert prelabel.params.dump() == {"batch": None, "model_version": None}
    assert prelabel.get_task("prelabel").pool == "default_pool"      # prelabel.on_gpu false: the default queue


def test_no_cycles_and_the_expected_chain(dag):
    dag.check_cycle()
    assert {t.task_id for t in dag.tasks} == {"discover", "should_run", "check_export", "merge", "has_dataset",
                                             "register_baseline", "train_det", "train_rec", "evaluate", "export", "infra_validate",
                                             "compare", "gate", "route", "publish",
                                             "record", "approve", "publish_approved", "reject"}
    down = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert {"should_run", "check_export"} <= down["discover"]
    assert "check_export" in down["should_run"]
    assert "merge" in down["check_export"]
    assert dag.get_task("merge").trigger_rule == "none_failed"     # runs when no export was new (map of none)
    assert set(TRAIN_TASKS) <= down["has_dataset"]
    assert all("evaluate" in down[t] for t in TRAIN_TASKS)
    # the stock baseline is registered beside training, on the gpu pool, before evaluate reads production
    assert "register_baseline" in down["has_dataset"] and down["register_baseline"] == {"evaluate"}
    assert dag.get_task("register_baseline").pool == dag.get_task("train_rec").pool
    assert dag.get_task("evaluate").trigger_rule == dag.get_task("merge").trigger_rule   # a skipped one joins
    assert "export" in down["evaluate"] and "infra_validate" in down["export"]
    assert "compare" in down["infra_validate"] and "route" in down["gate"]   # the gate judges the exported models
    assert "gate" in down["compare"]     # and the slices / reference sets (scored from infra validation's reads)
    assert {"publish", "record", "approve"} <= down["route"]
    assert down["approve"] == {"publish_approved", "reject"}     # a person's Approve / Reject
    # each task's edges are its direct needs only (the Graph view shows the chain, not every hand-off)
    assert sum(len(t.downstream_task_ids) for t in dag.tasks) == 21
    assert {t.task_id for t in dag.get_task("publish").upstream_list} == {"route"}
    assert dag.get_task("check_export").is_mapped if hasattr(dag.get_task("check_export"), "is_mapped") else True


def test_schedule_catchup_and_one_run_at_a_time(dag):
    from airflow.sdk import CronTriggerTimetable

    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 2 * * *" and str(dag.timetable.timezone) == "UTC"
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_schedule_overridable_by_environment(monkeypatch):
    monkeypatch.setenv("OCR_RETRAIN_SCHEDULE", "30 3 * * 1-5")
    assert _dagbag().dags["ocr_retraining"].timetable.expression == "30 3 * * 1-5"
    monkeypatch.setenv("OCR_RETRAIN_SCHEDULE", "none")
    manual = _dagbag().dags["ocr_retraining"]
    assert manual.schedule is None and type(manual.timetable).__name__ == "NullTimetable"


def test_train_tasks_on_the_gpu_pool_and_queue_with_retries(dag):
    for task_id in GPU_TASKS:
        t = dag.get_task(task_id)
        assert (t.pool, t.queue) == ("gpu", "gpu")
        assert t.retries == 2 and t.retry_delay >= timedelta(minutes=1)


def test_other_tasks_on_the_default_queue_and_pool(dag):
    for t in dag.tasks:
        if t.task_id not in GPU_TASKS:
            assert t.queue == "default", t.task_id
            assert t.pool == "default_pool", t.task_id
            assert t.on_failure_callback, t.task_id


def test_params_and_defaults(dag):
    assert dag.params.dump() == {"force": False, "models": "both", "epochs": None, "rec_min_acc": None,
                                 "det_min_hmean": None, "dry_run": False, "require_approval": "as configured"}
    assert dag.params.get_param("models").schema["enum"] == ["both", "det", "rec"]
    # a choice that says what each value does, not a switch whose "off" sends null (issue 29)
    assert dag.params.get_param("require_approval").schema["enum"] == ["as configured", "ask", "do not ask"]
    assert "nothing is new" in dag.params.get_param("dry_run").description


def test_the_approval_choice_maps_to_the_override(monkeypatch):
    assert context_from_params({"require_approval": "as configured"}, "r", FAKE_KEYS).config.approval.required is False
    assert context_from_params({"require_approval": "ask"}, "r", FAKE_KEYS).config.approval.required is True
    with pytest.raises(UsageError, match="require_approval must be one of 'as configured', 'ask', 'do not ask'"):
        context_from_params({"require_approval": "yes please"}, "r", FAKE_KEYS)
    monkeypatch.setenv("OCR_RETRAIN_OVERRIDES", "approval.required=true")
    with pytest.raises(UsageError, match="require_approval 'do not ask'"):
        context_from_params({"require_approval": "do not ask"}, "r", FAKE_KEYS)
    assert context_from_params({"require_approval": "as configured"}, "r", FAKE_KEYS).config.approval.required


def test_publish_emits_the_production_asset(dag):
    outlets = dag.get_task("publish").outlets
    assert [a.uri for a in outlets] == [load_config().production_model_uri]
    assert dag.get_task("publish_approved").outlets == outlets
    assert outlets[0].uri == "s3://ocr-data/models/ocr/production.json"


def test_dag_file_keeps_heavy_modules_out_of_parsing():
    """Parsing must stay cheap (<= 0.5 s): no boto3, pandas, GX, paddle, or the storage layer at import."""
    code = ("import sys, runpy; runpy.run_path(sys.argv[1]); "
            "heavy = [m for m in ('boto3', 'pandas', 'great_expectations', 'paddle', 'cv2', 'numpy', "
            "'ocr_tasks.storage.s3', 'ocr_tasks.ingest.merge', 'ocr_tasks.training.train') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code, str(DAG_FILE)], capture_output=True, text=True, timeout=60,
                         env={**os.environ}, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_on_failure_callback_names_task_run_and_error_and_notifies(caplog, webhook):
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401  (Airflow imported as in a worker)
    import importlib.util

    spec = importlib.util.spec_from_file_location("ocr_retraining_cb", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class TI:
        task_id, map_index, try_number = "check_export", 3, 2

    # caplog's handler sits on the root logger; once another test in this process has set up
    # Airflow's logging, "ocr_retraining" may not propagate there, so listen on the logger itself
    logger = logging.getLogger("ocr_retraining")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR, logger="ocr_retraining"):
            module.on_failure({"task_instance": TI(), "run_id": "manual__x", "exception": RuntimeError("disk full")})
    finally:
        logger.removeHandler(caplog.handler)
    assert "task check_export[3], run manual__x, try 2: RuntimeError: disk full" in caplog.text
    # and the configured webhook hears about it (task_failed is on by default)
    (payload,) = webhook
    assert payload["event"] == "task_failed" and payload["run_id"] == "manual__x"
    assert "task check_export[3] of run manual__x FAILED (try 2)" in payload["text"]
    assert "RuntimeError: disk full" in payload["text"]


# --------------------------------------------------------------------------- steps


def test_run_id_sanitised_for_storage():
    assert sanitize_run_id("scheduled__2026-01-01T02:00:00+00:00") == "scheduled__2026-01-01T02_00_00_00_00"
    assert sanitize_run_id("manual run/ü") == "manual_run"
    with pytest.raises(UsageError):
        sanitize_run_id("///")


FAKE_KEYS = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-value", "endpoint_url": "http://127.0.0.1:9"}


def test_params_become_the_run_context():
    config = load_config()
    both = context_from_params({"models": "both"}, "manual__2026", FAKE_KEYS)
    assert both.request.models == ("det", "rec") and both.run_id == "manual__2026"
    assert both.config.gate == config.gate
    narrowed = context_from_params({"models": "rec", "epochs": 3, "rec_min_acc": 0.95, "dry_run": True,
                                       "force": True}, "r", FAKE_KEYS)
    assert narrowed.request == RunRequest("r", ("rec",), force=True, epochs=3, dry_run=True)
    assert (narrowed.config.gate.rec_min_acc, narrowed.config.gate.det_min_hmean) == (0.95, config.gate.det_min_hmean)
    with pytest.raises(UsageError):
        context_from_params({"models": "cls"}, "r", FAKE_KEYS)


def test_the_deployed_config_is_the_floor_for_the_trigger_form(monkeypatch):
    """Params may tighten the gate or ask for approval; relaxing needs the deployment's consent, and is recorded."""
    deployed = load_config().gate
    with pytest.raises(UsageError, match=rf"rec_min_acc=0 is below the deployed gate.rec_min_acc={deployed.rec_min_acc}"):
        context_from_params({"rec_min_acc": 0, "det_min_hmean": 0, "require_approval": False}, "r", FAKE_KEYS)
    with pytest.raises(UsageError, match="det_min_hmean=0.1 is below"):
        context_from_params({"det_min_hmean": 0.1}, "r", FAKE_KEYS)
    stricter = context_from_params({"rec_min_acc": 0.97, "require_approval": True}, "r", FAKE_KEYS,
                                   triggered_by="mia")
    assert stricter.config.gate.rec_min_acc == 0.97 and stricter.config.approval.required is True
    assert stricter.request.trigger.by == "mia" and stricter.request.trigger.how == "manual"
    assert stricter.request.trigger.overridden == {
        "gate.rec_min_acc": {"deployed": deployed.rec_min_acc, "run": 0.97},
        "approval.required": {"deployed": False, "run": True}}

    monkeypatch.setenv("OCR_RETRAIN_OVERRIDES", "approval.required=true")
    with pytest.raises(UsageError, match="require_approval 'do not ask' \\(false\\) would skip the deployed approval.required=true"):
        context_from_params({"require_approval": False}, "r", FAKE_KEYS)
    monkeypatch.setenv("OCR_RETRAIN_OVERRIDES",
                       "approval.required=true trigger.may_relax_gate=true trigger.may_skip_approval=true")
    relaxed = context_from_params({"rec_min_acc": 0.5, "require_approval": False}, "r", FAKE_KEYS)
    assert relaxed.config.gate.rec_min_acc == 0.5 and relaxed.config.approval.required is False
    assert relaxed.request.trigger.overridden["gate.rec_min_acc"] == {"deployed": deployed.rec_min_acc, "run": 0.5}
    assert relaxed.request.trigger.params == {"rec_min_acc": 0.5, "require_approval": False}


def test_the_run_record_and_manifest_carry_the_trigger(tmp_path):
    from ocr_tasks.codec import plain
    from ocr_tasks.flow.run import Evaluation, MergedDataset
    from ocr_tasks.flow.steps.release import _outcome
    from ocr_tasks.release.gate import GateDecision
    from ocr_tasks.release.infra_validation import InfraValidation

    ctx = context_from_params({"rec_min_acc": 0.95}, "manual__1", FAKE_KEYS, triggered_by="li")
    outcome = _outcome(ctx, "gate-failed", MergedDataset("v1"), Evaluation({}, {}), InfraValidation(),
                       GateDecision(False), None)
    record = plain(outcome)["trigger"]
    assert record == {"how": "manual", "by": "li", "params": {"rec_min_acc": 0.95},
                      "overridden": {"gate.rec_min_acc": {"deployed": 0.9, "run": 0.95}}}


def test_storage_from_connection_credentials_keeps_secrets_out_of_repr(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    ctx = context_from_params({}, "r", FAKE_KEYS)
    assert ctx.storage.settings.endpoint_url == "http://127.0.0.1:9"
    assert ctx.storage.settings.secret_access_key == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(ctx) and "s3cr3t-value" not in repr(ctx.storage.settings)


def test_should_run_rule():
    quiet, forced = (context_from_params({"force": force}, "r", FAKE_KEYS) for force in (False, True))
    new = Discovery(new=[ExportRef("a", "incoming/a/", "f" * 64, 3)])
    assert not steps.should_run(quiet, Discovery())
    assert steps.should_run(forced, Discovery())
    assert steps.should_run(quiet, new)
    assert steps.should_run(quiet, Discovery(untrained_dataset="v1"))  # crashed after ingest: retrain


def test_artifacts_survive_xcom_json():
    """What one task returns, the next rebuilds: the codec's dump -> JSON text -> load is the identity."""
    from ocr_tasks.flow.run import Evaluation, ExportedBundle, MergedDataset
    from ocr_tasks.release.gate import Bound, CheckKind, GateCheck, GateDecision
    from ocr_tasks.training.train import TrainedModel

    artifacts = [
        Discovery([ExportRef("a", "incoming/a/", "f" * 64, 3)], {"b": "uploading"}, ["c"], {"..": "an alias"},
                  latest_dataset="v1", untrained_dataset="v1"),
        ExportedBundle("runs/r/bundle/", ["rec"], {"det": "20260101T000000Z"}),
        MergedDataset("v2", {"version": "v2", "uri": "s3://b/datasets/v2/", "counts": {}, "merged": ["a"]},
                      {"bad": "s3://b/quarantine/bad/"}),
        Evaluation({"rec": {"acc": 0.5}}, {"rec": TrainedModel("rec", "r", "/w/best", "/w/c.yml", [{"kind": "train"}])},
                   "20260101T000000Z", {"rec": {"acc": 0.4}}),
        GateDecision(False, ["rec acc 0.5 is not > 0.9"], [GateCheck("rec", "acc", 0.5, 0.9, Bound.ABOVE, False,
                                                                   CheckKind.THRESHOLD)], {"rec_min_acc": 0.9}),
    ]
    for artifact in artifacts:
        assert codec.load(json.loads(json.dumps(codec.dump(artifact)))) == artifact
    with pytest.raises(ValueError, match="refusing to rebuild"):   # only this package's dataclasses
        codec.load({"artifact": "subprocess:Popen", "value": {"args": ["id"]}})


# --------------------------------------------------------------------------- steps through XCom JSON
# (the whole DAG in Airflow: tests/test_runners.py)


def test_steps_ingest_quarantine_does_not_stop_the_good_export(storage, tmp_path):
    """discover -> check (one per export, through XCom JSON) -> merge, as the mapped tasks run them."""
    from tests.kit import break_label_file, break_one_polygon, export

    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"storage.bucket={storage.settings.bucket}"])
    ctx = RunContext(config, storage, RunRequest("r1"))
    bad = export(tmp_path / "a", "bad_batch", n_images=6, seed=3)
    break_label_file(bad)
    storage.upload_dir(bad, "incoming/bad_batch")
    good = export(tmp_path / "b", "good_batch", n_images=6, seed=4)
    break_one_polygon(good)     # one image's slip: that image is left out, the export merged
    storage.upload_dir(good, "incoming/good_batch")

    def through_xcom(artifact):
        return codec.load(json.loads(json.dumps(codec.dump(artifact))))

    found = through_xcom(steps.discover(ctx))   # what XCom carries
    assert [r.name for r in found.new] == ["bad_batch", "good_batch"]
    assert steps.should_run(ctx, found)
    checks = [through_xcom(steps.check_export(ctx, ref)) for ref in found.new]
    assert [c.passed for c in checks] == [False, True]
    assert checks[0].report_uri.startswith(f"s3://{storage.settings.bucket}/quarantine/bad_batch/")
    assert list(checks[1].left_out) == ["img_0002.jpg"]
    merged = through_xcom(steps.merge(ctx, checks))
    assert merged.merged["merged"] == ["good_batch"] and merged.dataset_version == merged.merged["version"]
    assert merged.left_out == {"good_batch": {"images": 1, "report": checks[1].report_uri}}
    assert list(merged.quarantined) == ["bad_batch"]
    assert steps.discover(ctx).untrained_dataset == merged.dataset_version   # not trained yet


def test_steps_forced_without_any_dataset_is_a_usage_error(storage, tmp_path):
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"storage.bucket={storage.settings.bucket}"])
    assert steps.merge(RunContext(config, storage, RunRequest("r")), []).dataset_version is None
    with pytest.raises(UsageError, match="no dataset version"):
        steps.merge(RunContext(config, storage, RunRequest("r", force=True)), [])


def test_an_unanswered_approval_is_a_reject_by_nobody(dag, monkeypatch):
    """The approval declares no `defaults` (Airflow would draw Reject as the primary button), so the scheduler
    resumes a timed-out request with a timeout error: the task answers it as Reject, timed out, by nobody."""
    import uuid

    from ocr_tasks.release.approval import approval_record
    from ocr_tasks.vocabulary import Decision

    task = dag.get_task("approve")
    assert task.defaults is None and task.options == ["Approve", "Reject"]
    pushed, branches = {}, []

    class TaskInstance:
        id = uuid.uuid4()

        def xcom_push(self, key, value):
            pushed[key] = value

    monkeypatch.setattr(type(task), "do_branch", lambda self, context, branches_to_execute: branches.append(
        branches_to_execute))
    task.execute_complete({"ti": TaskInstance()}, {"error": "no response in time", "error_type": "timeout"})
    assert branches == [["reject"]]
    record = approval_record(pushed["answer"])
    assert record.decision is Decision.REJECTED and record.timed_out and record.by is None
