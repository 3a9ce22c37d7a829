"""docker/: the compose file and Dockerfiles agree with the DAG, the lock and each other.

No Docker engine runs here, so these read the files: services present, queues and pool
named as the DAG names them, the GPU worker reserved a GPU and runs one task at a time,
secrets only as ${VARIABLES} from the env file, every COPY source exists, and the
images install the lock the tests ran against.
"""

from __future__ import annotations

import importlib.util
import re
import shlex

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
    assert f"connections add {dag.STORAGE_CONNECTION} --conn-type aws" in init
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
        # a *_FILE key is where a secret lies (the simple auth manager's passwords file), not the secret
        if sep and any(s in key.upper() for s in secret_keys) and not key.upper().endswith("_FILE") and value.strip():
            assert "${" in value or "$$" in value, f"literal secret in docker-compose.yml: {line.strip()}"
    example = (DOCKER / "env.example").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)[}:]", text))
    declared = {line.split("=")[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert needed <= declared | {"OCR_RETRAIN_TAG"}, needed - declared
    for line in example.splitlines():
        if any(s in line for s in ("PASSWORD=", "SECRET=", "FERNET_KEY=", "SECRET_KEY=")):
            assert line.split("=", 1)[1] == "", f"env.example must not ship a secret value: {line}"
    assert "docker/.env" in (REPO / ".gitignore").read_text()


def test_the_pipeline_may_write_each_runs_note_with_its_own_user():
    """The run's outcome (its note) is written through the REST API as the pipeline's user, whose password the env
    file sets and airflow-init puts where the api-server reads it and into the connection the tasks use."""
    env = COMPOSE["x-airflow-env"]
    assert "ocr-retrain:user" in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    init = COMPOSE["services"]["airflow-init"]
    command = " ".join(init["command"])
    assert passwords in command and "airflow connections add ocr_retrain_airflow_api" in command
    assert "--conn-login ocr-retrain" in command and "$$AIRFLOW_PIPELINE_PASSWORD" in command
    shared = f"airflow-auth:{passwords.rsplit('/', 1)[0]}"
    assert shared in init["volumes"] and shared in COMPOSE["services"]["airflow-apiserver"]["volumes"]


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


# --------------------------------------------------------------------------- the GPU image's training engine
# The GPU worker trains with a PaddleOCR repository checkout (PP-OCRv6 exists only in PaddleOCR
# >= 3.7's repository). These parse docker/Dockerfile.gpu-worker the way the shell would read it.

PADDLEOCR_REF = "v3.7.0"


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for line in (DOCKER / dockerfile).read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        instruction, _, arguments = pending.strip().partition(" ")
        steps.append((instruction.upper(), arguments.strip()))
        pending = ""
    return steps


def _args(dockerfile: str) -> dict[str, str]:
    return dict(arguments.partition("=")[::2] for instruction, arguments in _instructions(dockerfile)
                if instruction == "ARG")


def _env(dockerfile: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in _instructions(dockerfile):
        if instruction == "ENV":
            env.update(item.partition("=")[::2] for item in shlex.split(arguments))
    return env


def _commands(run: str) -> list[list[str]]:
    """The simple commands of one RUN's shell line (split at && ; || and braces)."""
    commands, current = [], []
    for token in shlex.split(run):
        word = token.rstrip(";")
        if word in ("&&", "||", "{", "}", "then", "fi", "if") or not word:
            if current:
                commands.append(current)
            current = []
            continue
        current.append(word)
        if token.endswith(";"):
            commands.append(current)
            current = []
    if current:
        commands.append(current)
    return commands


def _runs(dockerfile: str) -> list[tuple[int, list[list[str]]]]:
    return [(i, _commands(arguments)) for i, (instruction, arguments) in enumerate(_instructions(dockerfile))
            if instruction == "RUN"]


def _option(command: list[str], *names: str) -> list[str]:
    """Every value given to one of the option names (``--opt value`` or ``--opt=value``)."""
    values = []
    for i, word in enumerate(command):
        for name in names:
            if word == name and i + 1 < len(command):
                values.append(command[i + 1])
            elif word.startswith(name + "="):
                values.append(word.split("=", 1)[1])
    return values


def _clone(dockerfile: str) -> tuple[int, list[str]]:
    """(instruction index, argv) of the one ``git clone`` of the PaddleOCR checkout."""
    clones = [(i, command) for i, commands in _runs(dockerfile) for command in commands
              if command[:1] == ["git"] and "clone" in command]
    assert len(clones) == 1, f"{dockerfile}: expected one git clone, found {clones}"
    return clones[0]


def _clone_target(command: list[str]) -> str:
    """The directory argument of ``git [-c k=v] clone [options] <repository> <directory>``."""
    words = command[command.index("clone") + 1:]
    positional, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--depth", "--branch", "-b", "--origin", "-o", "--config", "-c"):
            skip = True
        elif not word.startswith("-"):
            positional.append(word)
    assert len(positional) == 2, f"git clone needs <repository> <directory> spelled out, got {positional}"
    return positional[1]


def _overrides(value: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in shlex.split(value))


def test_gpu_image_checks_out_paddleocr_at_the_pinned_release_tag():
    args = _args("Dockerfile.gpu-worker")
    assert args.get("PADDLEOCR_REF") == PADDLEOCR_REF
    assert args.get("PADDLEOCR_REPO") == "https://github.com/PaddlePaddle/PaddleOCR.git"
    _, clone = _clone("Dockerfile.gpu-worker")
    # the tag comes from the build arg, shallow: the history is not needed to train
    assert _option(clone, "--branch", "-b") == ["${PADDLEOCR_REF}"], clone
    assert _option(clone, "--depth") == ["1"], clone
    assert clone[clone.index("clone") + 1:][-2] == "${PADDLEOCR_REPO}", clone
    assert _clone_target(clone).startswith("/opt/")


def test_gpu_image_installs_the_checkouts_requirements_under_the_lock_without_other_opencv():
    _, clone = _clone("Dockerfile.gpu-worker")
    target = _clone_target(clone)
    installs = [(i, command) for i, commands in _runs("Dockerfile.gpu-worker") for command in commands
                if command[:3] == ["uv", "pip", "install"] and f"{target}/requirements.txt" in _option(command, "-r")]
    assert len(installs) == 1, f"expected one uv pip install -r {target}/requirements.txt, found {installs}"
    (index, install), = installs
    assert index >= _clone("Dockerfile.gpu-worker")[0]
    # the lock as constraints: nothing locked moves (paddlepaddle-gpu, numpy < 2.4, opencv-contrib-python)
    assert "requirements.lock" in _option(install, "--constraints", "--constraint", "-c"), install
    assert not {"-U", "--upgrade", "--upgrade-package", "-P", "--reinstall", "--force-reinstall"} & set(install)
    # and the OpenCV distributions that would overwrite opencv-contrib-python's cv2 are never installed
    assert "requirements.exclude" in _option(install, "--excludes", "--exclude"), install
    excluded = {line.strip() for line in (REPO / "requirements.exclude").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"opencv-python", "opencv-python-headless"} <= excluded
    lock = (REPO / "requirements.lock").read_text()
    assert not re.search(r"^opencv-python(-headless)?==", lock, flags=re.MULTILINE)
    assert re.search(r"^opencv-contrib-python==", lock, flags=re.MULTILINE)


def test_gpu_image_points_the_pipelines_engine_at_its_checkout(monkeypatch):
    from ocr_tasks.config import OVERRIDES_ENV, load_config

    _, clone = _clone("Dockerfile.gpu-worker")
    target = _clone_target(clone)
    image_overrides = _env("Dockerfile.gpu-worker")[OVERRIDES_ENV]
    assert _overrides(image_overrides)["training.engine_checkout"] == target
    # compose's environment replaces the image's: worker-gpu must say it too, and keep the common items
    common = _overrides(COMPOSE["x-airflow-env"][OVERRIDES_ENV])
    gpu = _overrides(SERVICES["worker-gpu"]["environment"][OVERRIDES_ENV])
    assert gpu["training.engine_checkout"] == target
    assert common.items() <= gpu.items(), (common, gpu)
    # and the pipeline's config reads it from there
    monkeypatch.delenv("OCR_RETRAIN_CONFIG", raising=False)
    for value in (image_overrides, SERVICES["worker-gpu"]["environment"][OVERRIDES_ENV]):
        monkeypatch.setenv(OVERRIDES_ENV, value.replace("${OCR_BUCKET:-ocr-data}", "ocr-data"))
        assert load_config().training.engine_checkout == target


def test_gpu_image_checks_the_checkout_and_cv2_after_installing_its_requirements():
    _, clone = _clone("Dockerfile.gpu-worker")
    target = _clone_target(clone)
    install_at = next(i for i, commands in _runs("Dockerfile.gpu-worker") for command in commands
                      if f"{target}/requirements.txt" in _option(command, "-r"))
    later = [command for i, commands in _runs("Dockerfile.gpu-worker") if i > install_at for command in commands]
    assert ["test", "-f", f"{target}/tools/train.py"] in later
    # the engine's own entry point gets through its imports (ppocr.*, lmdb, albumentations, cv2)
    assert ["python", f"{target}/tools/train.py", "--help"] in [c[:3] for c in later]
    imports = " ".join(c[2] for c in later if c[:2] == ["python", "-c"])
    assert re.search(r"\bimport cv2\b", imports) and "is_compiled_with_cuda" in imports
    assert "opencv-python-headless" in imports  # no second distribution writing cv2


def test_docker_readme_names_the_gpu_images_build_args():
    text = (DOCKER / "README.md").read_text()
    args = _args("Dockerfile.gpu-worker")
    assert {"PADDLE_GPU_IMAGE", "PADDLE_VERSION", "PADDLEOCR_REF", "PADDLEOCR_COMMIT"} <= set(args)
    for name, default in args.items():   # the build-arg table: one row per ARG, with its default
        row = re.search(rf"^\| `{name}` \| ([^|]+) \|", text, flags=re.MULTILINE)
        assert row, f"docker/README.md: no build-arg row for {name}"
        assert row[1].strip() == (f"`{default}`" if default else "empty"), (name, row[1], default)


def test_default_worker_has_the_same_engine_as_the_gpu_worker():
    # evaluate and publish run there (tools/eval.py, export_model.py): a PP-OCRv6 model trained on the
    # gpu worker is built only by the same PaddleOCR checkout
    _, gpu_clone = _clone("Dockerfile.gpu-worker")
    _, cpu_clone = _clone("Dockerfile")
    assert _clone_target(cpu_clone) == _clone_target(gpu_clone)
    assert _args("Dockerfile").get("PADDLEOCR_REF") == _args("Dockerfile.gpu-worker")["PADDLEOCR_REF"]
    default = _overrides(SERVICES["worker-default"]["environment"]["OCR_RETRAIN_OVERRIDES"])
    assert default.get("training.engine_checkout") == _clone_target(gpu_clone)


def test_default_worker_infra_validates_in_the_newest_and_oldest_consumer_runtimes():
    """infra_validate runs on the default queue: its image holds both runtimes, built from their locks."""
    text = (DOCKER / "Dockerfile").read_text()
    worker = text[text.index("FROM base AS worker-cpu"):]
    assert "COPY runtimes/ runtimes/" in worker and 'runtimes/consumer-$env.lock' in worker
    assert re.search(r"for env in newest oldest; do", worker)
    default = _overrides(SERVICES["worker-default"]["environment"]["OCR_RETRAIN_OVERRIDES"])
    for name in ("newest", "oldest"):
        assert default.get(f"infra_validation.runtimes.{name}") == f"/opt/consumer-{name}/bin/python"
        assert (REPO / "runtimes" / f"consumer-{name}.lock").is_file()


def test_default_worker_exports_onnx_and_reads_it_in_the_onnx_runtimes():
    """export and infra_validate run on the default queue: its image holds the converter and both ONNX runtimes,
    built from their locks, and the image and compose name them alike."""
    text = (DOCKER / "Dockerfile").read_text()
    worker = text[text.index("FROM base AS worker-cpu"):]
    assert re.search(r"for env in convert newest oldest; do", worker) and 'runtimes/onnx-$env.lock' in worker
    image_env = re.search(r'ENV OCR_RETRAIN_OVERRIDES="([^"]*)"', worker).group(1)
    for overrides in (_overrides(image_env), _overrides(SERVICES["worker-default"]["environment"]["OCR_RETRAIN_OVERRIDES"])):
        assert overrides.get("onnx.converter") == "/opt/onnx-convert/bin/python"
        for name in ("newest", "oldest"):
            assert overrides.get(f"infra_validation.onnx_runtimes.onnx-{name}") == f"/opt/onnx-{name}/bin/python"
    for env in ("convert", "newest", "oldest"):
        assert (REPO / "runtimes" / f"onnx-{env}.lock").is_file()
