"""The pipeline declaration and its two runners: a toy pipeline (tests/flow/toy_pipeline.py, every
role a node can have) run by the local runner and by Airflow (`airflow dags test` of a DAG built from
it) ends the same way; the retraining declaration is what the DAG and the README show."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ocr_tasks.config import load_config
from ocr_tasks.flow.local_runner import run_pipeline
from ocr_tasks.flow.pipeline import Node, Pipeline, Role
from ocr_tasks.flow.retraining import RETRAINING
from ocr_tasks.flow.run import RunContext, RunRequest
from ocr_tasks.storage.s3 import Storage
from tests.flow.toy_pipeline import TOY, count, find
from tests.kit import REPO

BIN = Path(sys.executable).parent


def test_a_declaration_that_does_not_run_is_refused():
    with pytest.raises(ValueError, match="takes counted, which no earlier node makes"):
        Pipeline("p", (Node("count", count, inputs=("counted",), output="x"),))
    with pytest.raises(ValueError, match="two nodes named find"):
        Pipeline("p", (Node("find", find), Node("find", find)))
    with pytest.raises(ValueError, match="may lead to"):
        Pipeline("p", (Node("b", find, role=Role.BRANCH, branches=("nowhere",)),))


def test_the_graph_draws_each_nodes_direct_needs_only():
    """merge's dataset goes to 12 steps, but each step's edges are only what it needs directly."""
    edges = {node.name: RETRAINING.upstream(node) for node in RETRAINING.nodes}
    assert edges["publish"] == {"route"} and edges["gate"] == {"compare"}
    assert edges["compare"] == {"infra_validate"}     # it scores the new model from infra validation's reads
    assert edges["evaluate"] == {"register_baseline", "train_det", "train_rec"} and edges["approve"] == {"route"}
    assert sum(len(e) for e in edges.values()) == 20     # the DAG adds discover -> check_export (the map)


@pytest.mark.parametrize("page", ["README.md", "docs/pipeline.md"])
def test_the_readme_picture_is_the_declaration(page):
    picture = RETRAINING.picture()
    text = (REPO / page).read_text(encoding="utf-8")
    assert picture in text, f"{page}'s pipeline picture differs from `ocr-retrain graph`: paste it again"


def test_the_local_runner_runs_every_role(storage, tmp_path):
    config = load_config(overrides=[f"work_dir={tmp_path}"])
    run = run_pipeline(TOY, RunContext(config, storage, RunRequest("local-1")))
    assert run.ran == ["find", "go", "check", "count", "choose", "many"]    # maybe: `when` false; few: not chosen
    assert run.last == storage.get_json("toy/local-1/end.json")
    assert run.last == {"end": "many", "counted": {"passed": ["alpha", "gamma"], "seen": 3}, "unused": None,
                        "scratch": "many"}
    assert RETRAINING.until("merge").picture().splitlines()[-1].endswith("-> merge")


@pytest.mark.slow
def test_both_runners_run_the_same_toy_pipeline_to_the_same_end(s3_server, tmp_path):
    """The Airflow runner builds one task per node from the same declaration; `airflow dags test` runs it
    (SQLite) and ends where the local runner ends, with the same artifacts on the way."""
    bucket = f"toy-{uuid.uuid4().hex[:10]}"
    storage = Storage(s3_server.settings(bucket))
    storage.ensure_bucket()
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(f"storage:\n  bucket: {bucket}\nwork_dir: {tmp_path / 'work'}\n")
    local = run_pipeline(TOY, RunContext(load_config(config_file), storage, RunRequest("local-run")))

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "toy.py").write_text(
        "import pendulum\nfrom datetime import timedelta\nfrom airflow.sdk import dag\n"
        "from ocr_tasks.flow.airflow_runner import build_tasks\nfrom tests.flow.toy_pipeline import TOY\n\n"
        "@dag(dag_id=TOY.name, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz='UTC'))\n"
        "def toy():\n    build_tasks(TOY, approval_timeout=timedelta(hours=1), gpu_retry_delay=timedelta(seconds=1))\n\n"
        "toy()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OCR_RETRAIN_", "AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "OCR_RETRAIN_CONFIG": str(config_file),
                "PYTHONPATH": str(REPO),
                "AIRFLOW_CONN_OCR_RETRAIN_S3": json.dumps({
                    "conn_type": "aws", "login": storage.settings.access_key_id,
                    "password": storage.settings.secret_access_key,
                    "extra": {"endpoint_url": storage.settings.endpoint_url}})})
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True,
                   timeout=300)
    done = subprocess.run([str(BIN / "airflow"), "dags", "test", TOY.name, "-c", "{}"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    runs = [o.key for o in storage.list("toy/") if o.key.endswith("/end.json") and "local-run" not in o.key]
    assert len(runs) == 1, runs
    assert storage.get_json(runs[0]) == {**local.last}                        # the same end, the same artifacts
    states = dict(re.findall(r"task_id=(\w+)[^\n]*?state=(\w+)", output)) or dict(
        re.findall(r"\b(find|go|check|count|maybe|choose|many|few)\b[^\n]*?\b(success|skipped)\b", output))
    if states:   # what each task ended as, where `airflow dags test` prints it
        assert states.get("few") in (None, "skipped") and states.get("maybe") in (None, "skipped")


def test_ocr_retrain_graph_prints_the_declaration():
    shown = subprocess.run([str(BIN / "ocr-retrain"), "graph"], capture_output=True, text=True, timeout=60, check=True)
    assert shown.stdout.strip("\n") == RETRAINING.picture().strip("\n")
