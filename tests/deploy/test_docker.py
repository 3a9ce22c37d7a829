"""docker/: the compose file and Dockerfiles agree with the DAG, the lock and each other.

No Docker engine runs here, so these read the files: services present, queues and pool
named as the DAG names them, the GPU worker reserved a GPU and runs one task at a time,
secrets only as ${VARIABLES} from the env file, every COPY source exists, and the
images install the lock the tests ran against.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from tests.kit import REPO

DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _dag_module():
    spec = importlib.util.spec_from_file_location("ocr_retraining_for_docker", REPO / "dags" / "ocr_retraining.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command(service: str) -> str:
    command = SERVICES[service].get("command") or []
    return " ".join(command) if isinstance(command, list) else str(command)


def test_every_service_of_the_deployment_is_there():
    assert {"postgres", "redis", "minio", "minio-init", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "worker-default", "worker-gpu"} <= set(SERVICES)


def test_airflow_services_share_celery_postgres_redis_settings():
    for name in ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                 "airflow-triggerer", "worker-default", "worker-gpu"):
        env = SERVICES[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env[
            "AIRFLOW__CELERY__BROKER_URL"], name
        # every process must sign and accept the same task tokens
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET}", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/"), name


def test_workers_listen_on_the_queues_the_dag_uses():
    dag = _dag_module()
    train_queues = {dag.GPU_QUEUE}
    assert re.search(rf"--queues {dag.GPU_QUEUE}\b", _command("worker-gpu"))
    assert "--queues default" in _command("worker-default")
    assert train_queues == {"gpu"}
    # the init creates the pool the training tasks wait on, and the storage connection the DAG reads
    init = _command("airflow-init")
    assert f"pools set {dag.GPU_POOL} " in init
    assert f"connections add {dag.CONNECTION_ID} --conn-type aws" in init
    assert "db migrate" in init


def test_gpu_worker_reserves_a_gpu_and_runs_one_task_at_a_time():
    gpu = SERVICES["worker-gpu"]
    assert "--concurrency 1" in _command("worker-gpu")
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and len(device["device_ids"]) == 1
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu-worker"
    assert SERVICES["worker-default"]["build"]["target"] == "worker-cpu"


def test_secrets_come_only_from_the_env_file():
    text = (DOCKER / "docker-compose.yml").read_text()
    secret_keys = ("PASSWORD", "SECRET", "FERNET_KEY", "ACCESS_KEY", "SECRET_KEY")
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and any(s in key.upper() for s in secret_keys) and value.strip():
            assert "${" in value or "$$" in value, f"literal secret in docker-compose.yml: {line.strip()}"
    example = (DOCKER / "env.example").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)[}:]", text))
    declared = {line.split("=")[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert needed <= declared | {"OCR_RETRAIN_TAG"}, needed - declared
    for line in example.splitlines():
        if any(s in line for s in ("PASSWORD=", "SECRET=", "FERNET_KEY=", "SECRET_KEY=")):
            assert line.split("=", 1)[1] == "", f"env.example must not ship a secret value: {line}"
    assert "docker/.env" in (REPO / ".gitignore").read_text()


def test_minio_bucket_is_made_at_start():
    assert "mc mb --ignore-existing" in _command("minio-init")
    assert SERVICES["airflow-init"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu-worker"])
def test_dockerfiles_copy_what_exists_and_install_the_lock(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
    assert "requirements.lock" in text and "uv pip sync" in text
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/ocr-retrain/dags" in text


def test_gpu_worker_image_is_paddles_gpu_image_with_the_locked_paddle_version():
    text = (DOCKER / "Dockerfile.gpu-worker").read_text()
    lock = (REPO / "requirements.lock").read_text()
    locked = re.search(r"^paddlepaddle==(\S+)$", lock, flags=re.MULTILINE)[1]
    assert re.search(rf"ARG PADDLE_GPU_IMAGE=paddlepaddle/paddle:{re.escape(locked)}-gpu", text)
    assert f"ARG PADDLE_VERSION={locked}" in text
    assert "paddlepaddle-gpu==${PADDLE_VERSION}" in text and "is_compiled_with_cuda" in text


def test_cpu_images_come_from_one_dockerfile_with_two_targets():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM base AS airflow$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM base AS worker-cpu$", text, flags=re.MULTILINE)
    lock = (REPO / "requirements.lock").read_text()
    assert re.search(r"^apache-airflow-providers-celery==", lock, flags=re.MULTILINE)
    assert re.search(r"^psycopg2-binary==", lock, flags=re.MULTILINE)
