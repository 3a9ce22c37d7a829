"""The distributed deployment for real: Airflow 3 with CeleryExecutor over Redis, Postgres metadata.

What docker/docker-compose.yml runs, as processes on this machine: api-server, scheduler,
dag-processor, one Celery worker on queue `default` and one on queue `gpu` (CPU here),
each worker with its own work_dir (nothing shared but storage, as on separate hosts).
The real DAG trains the CPU profiles on a small synthetic export from the real local S3
server. Asserted from Airflow's own records (task_instance rows in Postgres, task logs):

- the training tasks ran on the `gpu` worker and everything else on the default one;
- the `gpu` worker killed mid-training (the whole process tree, as a lost machine) ->
  the task is retried on a new worker and resumes from its checkpoint (the log says
  from which epoch), and the run completes;
- two runs triggered at once -> the second waits for the first (max_active_runs=1) and
  no model version is published twice;
- the S3 endpoint down for a few seconds during ingest -> the storage retries carry the
  run through.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) and Redis on
127.0.0.1:6379; `.ci/run` starts them when they are down. Skipped, saying so, when they
are absent. Uses a fresh database (dropped afterwards) and Redis database 13.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ocr_tasks.storage import layout
from ocr_tasks.embedded.synthetic import ExportSpec, make_export
from tests.kit import REPO, free_port

pytestmark = pytest.mark.slow(minutes=4)   # 198 s in a fresh-clone CI run beside the rest, 2026-12-04

BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_DB = 13
DAG_ID = "ocr_retraining"
TRAIN_TASKS = {"train_det", "train_rec"}


def _postgres_ok() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(dbname="postgres", connect_timeout=3, **PG).close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL on 127.0.0.1:5432 not reachable ({exc}); `.ci/run` starts it"


def _redis_ok() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if b"PONG" not in sock.recv(64):
                return "Redis on 127.0.0.1:6379 did not answer PING"
        return None
    except OSError as exc:
        return f"Redis on 127.0.0.1:6379 not reachable ({exc}); `.ci/run` starts it"


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    database: str
    bucket: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def airflow(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([str(BIN / "airflow"), *args], env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, name: str, *args: str, **extra_env: str) -> None:
        log = open(self.root / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([str(BIN / "airflow"), *args], env={**self.env, **extra_env},
                                            cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_worker(self, name: str, queue: str) -> None:
        work = self.root / f"work-{name}"
        self.start(name, "celery", "worker", "--queues", queue, "--concurrency", "1",
                   "--celery-hostname", f"{name}@%h", OCR_RETRAIN_WORKER_NAME=name,
                   OCR_RETRAIN_OVERRIDES=f"work_dir={work}",
                   # each worker serves its task logs to the UI; two on one host need two ports
                   AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))

    def kill_tree(self, name: str) -> int:
        """SIGKILL a process and every descendant (Celery's pool, the task supervisor, the engine)."""
        import psutil

        proc = self.procs.pop(name)
        try:
            parent = psutil.Process(proc.pid)
            tree = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=30)
        return len(tree)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def query(self, sql: str, *args: object) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(dbname=self.database, **PG) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def task_instances(self, run_id: str) -> dict[str, dict]:
        rows = self.query("select task_id, map_index, state, queue, hostname, try_number, pool "
                          "from task_instance where dag_id = %s and run_id = %s", DAG_ID, run_id)
        return {(t if m < 0 else f"{t}[{m}]"): {"state": s, "queue": q, "hostname": h, "try": n, "pool": p}
                for t, m, s, q, h, n, p in rows}

    def run_state(self, run_id: str) -> tuple[str, object, object]:
        (row,) = self.query("select state, start_date, end_date from dag_run where dag_id = %s and run_id = %s",
                            DAG_ID, run_id)
        return row

    def wait(self, what: str, check, timeout: float, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited ({proc.returncode}): {self.tail(name)}"
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; scheduler log:\n"
                             + self.tail("scheduler"))

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def task_log(self, run_id: str, task_id: str, attempt: int) -> str:
        logs = list((self.root / "airflow" / "logs").glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id={task_id}/"
                                                            f"attempt={attempt}.log"))
        return logs[0].read_text(errors="replace") if logs else ""


def _drop_redis_keys(pattern: str) -> None:
    keys = subprocess.run(["redis-cli", "-n", str(REDIS_DB), "--scan", "--pattern", pattern],
                          capture_output=True, text=True, check=False).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "-n", str(REDIS_DB), "del", *keys], capture_output=True, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    for check in (_postgres_ok, _redis_ok):
        # a loaded CI machine can take seconds to answer a first connection (once skipped this test): retry a while
        deadline = time.monotonic() + 30
        while (problem := check()) and time.monotonic() < deadline:
            time.sleep(2)
        if problem:
            pytest.skip(problem)
    import psycopg2

    root = tmp_path_factory.mktemp("celery")
    database = f"ocr_retrain_it_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f'create database "{database}"')
    bucket = f"dist-{uuid.uuid4().hex[:8]}"
    settings = s3_server.settings(bucket)
    port = free_port()
    config = root / "pipeline.yaml"
    # the test uploads its exports before it triggers: no quiet period to wait out. Choosing the det
    # post-processing on val is export's business (tests/release/test_postprocess.py, the demo): not paid for here;
    # nor is ONNX (converted and read in RapidOCR by the demo and tests/flow/test_runners.py)
    config.write_text(f"storage:\n  bucket: {bucket}\nwork_dir: {root / 'work'}\n"
                      "incoming:\n  quiet_period_s: 0\ngate:\n  rec_min_acc: 0.9\npostprocess:\n  val_images: 0\n"
                      "onnx:\n  converter: null\ninfra_validation:\n  onnx_runtimes: {}\n")
    pg_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "OCR_RETRAIN_"))}
    env.update({
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        # two test runs on one machine share the Redis server: each run's queues under its own prefix
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"{database}:",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,      # shared by every process, as in compose
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ocr_tasks.worker_identity.worker_hostname",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW_CONN_OCR_RETRAIN_S3": json.dumps({"conn_type": "aws", "login": settings.access_key_id,
                                                   "password": settings.secret_access_key,
                                                   "extra": {"endpoint_url": settings.endpoint_url}}),
        "OCR_RETRAIN_CONFIG": str(config),
        "OCR_RETRAIN_SCHEDULE": "none",
        "OCR_RETRAIN_TRAIN_RETRY_DELAY_S": "5",
        "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
    })
    c = Cluster(root, env, database, bucket)
    try:
        c.airflow("db", "migrate", timeout=600)
        c.airflow("pools", "set", "gpu", "1", "training: one slot per GPU")
        c.start("api-server", "api-server", "--port", str(port))
        c.start("scheduler", "scheduler")
        c.start("dag-processor", "dag-processor")
        c.start_worker("default-worker", "default")
        c.start_worker("gpu-worker", "gpu")
        c.wait("the DAG to be parsed", lambda: c.query("select 1 from dag where dag_id = %s", DAG_ID), 180)
        c.airflow("dags", "unpause", DAG_ID)
        yield c
    finally:
        c.stop_all()
        _drop_redis_keys(f"{database}:*")
        admin.cursor().execute(f'drop database if exists "{database}" with (force)')
        admin.close()


def test_celery_gpu_queue_worker_loss_concurrent_runs_and_storage_outage(cluster, s3_server, tmp_path):
    from ocr_tasks.storage.s3 import Storage

    storage = Storage(s3_server.settings(cluster.bucket))
    storage.ensure_bucket()
    storage.upload_dir(make_export(tmp_path, ExportSpec("digits_dist", n_images=120, seed=21)), "incoming/digits_dist")

    # two runs at once: the first trains (4 epochs per stage: the worker dies after the first checkpoint, a few
    # seconds into a stage of 4, and the retry has epochs left to resume), the second must wait for it
    started = time.monotonic()
    cluster.airflow("dags", "trigger", DAG_ID, "--run-id", "first", "--conf", json.dumps({"epochs": 4}))
    cluster.airflow("dags", "trigger", DAG_ID, "--run-id", "second", "--conf", "{}")

    # storage down for a few seconds while the export is being checked
    cluster.wait("check_export to start", lambda: cluster.task_instances("first").get("check_export[0]", {}).get(
        "state") in ("running", "success"), 300, 0.5)
    outage_from = datetime.now(timezone.utc)
    s3_server.stop()
    assert cluster.run_state("second")[0] == "queued"          # one active run at a time
    time.sleep(5)
    s3_server.start()
    outage_to = datetime.now(timezone.utc)
    outage_at = time.monotonic() - started

    # the gpu worker dies once the first training task has saved a checkpoint
    def first_checkpoint() -> str | None:
        for task in ("det", "rec"):
            key = f"{layout.RUNS}first/{task}/finetune/latest.pdparams"
            if storage.exists(key):
                return task
        return None

    killed_task = "train_" + cluster.wait("a training checkpoint in storage", first_checkpoint, 900, 1.0)
    running = cluster.task_instances("first")[killed_task]
    assert running["state"] == "running" and running["hostname"] == "gpu-worker"
    killed = cluster.kill_tree("gpu-worker")
    kill_at = time.monotonic() - started
    cluster.wait(f"{killed_task} to be marked for retry",
                 lambda: cluster.task_instances("first")[killed_task]["state"] in ("up_for_retry", "queued",
                                                                                   "scheduled"), 240)
    cluster.start_worker("gpu-worker", "gpu")                  # a replacement machine comes up

    cluster.wait("the first run to finish", lambda: cluster.run_state("first")[0] in ("success", "failed"), 1500, 5)
    first_done = time.monotonic() - started
    cluster.wait("the second run to finish", lambda: cluster.run_state("second")[0] in ("success", "failed"), 600, 3)
    print(f"storage outage at {outage_at:.0f} s; killed {killed} processes of gpu-worker during {killed_task} at "
          f"{kill_at:.0f} s; first run done at {first_done:.0f} s; second at {time.monotonic() - started:.0f} s")

    first_state, _, first_end = cluster.run_state("first")
    assert first_state == "success", cluster.tail("scheduler")
    tis = cluster.task_instances("first")
    for task_id, ti in tis.items():
        if task_id in TRAIN_TASKS:
            assert (ti["queue"], ti["pool"], ti["hostname"], ti["state"]) == ("gpu", "gpu", "gpu-worker", "success")
        elif ti["state"] == "success":
            assert (ti["queue"], ti["hostname"]) == ("default", "default-worker"), task_id
    assert tis[killed_task]["try"] == 2
    resumed = cluster.task_log("first", killed_task, 2)
    assert "resumes from" in resumed and "latest" in resumed, resumed[-3000:]
    assert "train from scratch" not in resumed                  # picked up where the dead worker stopped

    # the outage really hit the run: an ingest task was running while the endpoint was down
    hit = cluster.query("select task_id from task_instance where dag_id = %s and run_id = 'first' "
                        "and start_date < %s and end_date > %s", DAG_ID, outage_to, outage_from)
    assert {t for (t,) in hit} & {"check_export", "merge", "has_dataset"}, hit
    print(f"tasks running during the storage outage: {sorted(t for (t,) in hit)}")

    second_state, second_start, _ = cluster.run_state("second")
    assert second_state == "success" and second_start >= first_end   # waited for the first
    second = cluster.task_instances("second")
    assert second["should_run"]["state"] == "success" and second["train_det"]["state"] == "skipped"

    outcome = storage.get_json(f"{layout.RUNS}first/run.json")
    versions = [o.key for o in storage.list("models/") if o.key.endswith("/manifest.json")]
    # at most one version per run, and only for a run whose gate passed
    assert len(versions) == (1 if outcome["status"] == "published" else 0)
    assert storage.get_json(layout.LAST_TRAINED)["run_id"] == "first"
