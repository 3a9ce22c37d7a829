"""The chain's two runners on the same export, with real PaddleOCR training (1 epoch, CPU):
`run_local` (ocr-retrain run) in one process, and the Airflow DAG through `airflow dags test`
(SQLite, credentials through the Airflow connection). Each runs once, in a bucket of its own;
one test per runner checks its whole chain, and one compares what the two produced.

1 epoch cannot pass the real gate (rec acc > 0.9 needs minutes per model on 2 cores, see
`make demo`), so both runs must reach the gate, be refused and record the run; the
consumer path (export, publish, pull, load in PaddleOCR 3.x) is checked on the local
run's checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ocr_tasks.config import load_config
from ocr_tasks.embedded.synthetic import ExportSpec, make_export, make_text_line_image
from ocr_tasks.codec import plain, rebuild
from ocr_tasks.flow.local_runner import run_local
from ocr_tasks.flow.run import RunContext, RunRequest
from ocr_tasks.release.registry import production_version, publish_model, pull_model
from ocr_tasks.storage.s3 import Storage

from tests.kit import REPO

pytestmark = [pytest.mark.slow, pytest.mark.one_worker]   # local_run and dag_run are built once (tests/conftest.py)

BIN = Path(sys.executable).parent
EXPORT = ExportSpec("digits_001", n_images=40, seed=7)


def _bucket(s3_server, root: Path) -> Storage:
    storage = Storage(s3_server.settings(f"runners-{uuid.uuid4().hex[:12]}"))
    storage.ensure_bucket()
    storage.upload_dir(make_export(root / "labeller", EXPORT), f"incoming/{EXPORT.name}")
    return storage


@pytest.fixture(scope="module")
def local_run(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("local-runner")
    storage = _bucket(s3_server, root)
    config = load_config(overrides=[f"work_dir={root / 'work'}", f"storage.bucket={storage.settings.bucket}"])
    outcome = run_local(RunContext(config, storage, RunRequest("e2e", epochs=1)))
    return storage, config, outcome, root


@pytest.fixture(scope="module")
def dag_run(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("dag-runner")
    storage = _bucket(s3_server, root)
    config_file = root / "pipeline.yaml"
    config_file.write_text(f"storage:\n  bucket: {storage.settings.bucket}\nwork_dir: {root / 'work'}\n"
                           "incoming:\n  quiet_period_s: 0\n")   # uploaded just now, on purpose
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "OCR_RETRAIN_", "AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update({
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "OCR_RETRAIN_CONFIG": str(config_file),
        # credentials through the Airflow connection, not the environment
        "AIRFLOW_CONN_OCR_RETRAIN_S3": json.dumps({
            "conn_type": "aws", "login": storage.settings.access_key_id, "password": storage.settings.secret_access_key,
            "extra": {"endpoint_url": storage.settings.endpoint_url}}),
    })
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, cwd=root, check=True, capture_output=True,
                   timeout=300)

    def dags_test(conf: dict | None = None) -> subprocess.CompletedProcess:
        command = [str(BIN / "airflow"), "dags", "test", "ocr_retraining"] + (["-c", json.dumps(conf)] if conf else [])
        return subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=900)

    started = time.monotonic()
    first = dags_test({"epochs": 1})
    print(f"airflow dags test ocr_retraining (epochs=1): {time.monotonic() - started:.1f} s")
    return storage, first, dags_test


def test_local_runner_whole_chain_then_the_consumer_path(local_run, tmp_path):
    storage, config, outcome, _ = local_run
    assert outcome.status == "gate-failed"
    assert set(outcome.metrics) == {"det", "rec"} and 0 <= outcome.metrics["rec"]["acc"] <= 1
    assert any("rec acc" in reason for reason in outcome.gate.reasons)
    assert production_version(storage, config.model_name) is None          # nothing published
    assert storage.exists("runs/e2e/report/summary.html") and storage.exists("runs/e2e/run.json")
    assert storage.exists("runs/e2e/rec/finetune/config.yml")               # replayable config stored
    assert storage.exists("runs/e2e/rec/finetune/latest.pdparams")          # checkpoints synced as saved
    assert storage.get_json("runs/last_trained.json")["run_id"] == "e2e"

    # a quiet night: nothing new, not forced -> stops after discover
    assert run_local(RunContext(config, storage, RunRequest("quiet"))).status == "nothing-new"
    assert not storage.exists("runs/quiet/run.json")

    # the exported bundle, read in the consumer runtime before the gate: it loads, and the gate judged it
    served = storage.get_json("runs/e2e/infra_validation.json")
    onnx_read = ["onnx-newest"] if Path(config.onnx.converter).is_file() else []   # the default ONNX runtime
    assert [r["name"] for r in served["runtimes"]] == ["pipeline", *onnx_read]
    assert all(r["error"] is None for r in served["runtimes"]), served["runtimes"]
    assert set(outcome.exported_metrics["pipeline"]["metrics"]) == {"det", "rec", "e2e"}
    assert any(c.kind == "runtime" and c.passed for c in outcome.gate.checks)

    # the consumer path: that very bundle published (kept, not production), pulled, loaded
    from ocr_tasks.flow.run import ExportedBundle
    from ocr_tasks.release.bundle import build_manifest
    from ocr_tasks.release.infra_validation import InfraValidation
    from ocr_tasks.training.train import TrainedModel, fetch_trained

    trained = {kind: fetch_trained(storage, config, TrainedModel(kind, "e2e", "", "")) for kind in ("det", "rec")}
    bundle = tmp_path / "bundle"
    storage.download_prefix("runs/e2e/bundle/", bundle)
    publish_model(storage, config.model_name, "e2e-candidate", bundle,
                  build_manifest(config, outcome, trained, ExportedBundle("runs/e2e/bundle/", ["det", "rec"]),
                                 rebuild(InfraValidation, served)), promote=False)
    pulled = pull_model(storage, config.model_name, tmp_path / "pulled", "e2e-candidate")

    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    from paddleocr import TextDetection, TextRecognition

    recognizer = TextRecognition(model_name="PP-OCRv5_mobile_rec", model_dir=str(pulled / "rec"), device="cpu")
    (result,) = recognizer.predict(make_text_line_image("20261", height=40, rng=0))
    assert isinstance(result["rec_text"], str) and 0.0 <= float(result["rec_score"]) <= 1.0
    detector = TextDetection(model_name="PP-OCRv5_mobile_det", model_dir=str(pulled / "det"), device="cpu")
    (found,) = detector.predict(make_text_line_image("20261", height=40, rng=0))
    assert "dt_polys" in found


def test_the_export_writes_onnx_that_rapidocr_reads_as_paddleocr_does(local_run, tmp_path):
    """Issue 28: the run's export converted det and rec to ONNX beside the Paddle files (rapidocr.yaml with them),
    and RapidOCR on ONNX Runtime, in each ONNX runtime `make onnx-envs` builds, reads the test split sample for
    sample as PaddleOCR reads the Paddle files (a 1-epoch model reads badly: the same badly is the point)."""
    from ocr_tasks.release.infra_validation import ONNX, ONNX_RUNTIMES, validate_in_runtimes

    storage, config, outcome, root = local_run
    built = {name: str(python) for name, python in ONNX_RUNTIMES.items() if python.is_file()}
    if not Path(config.onnx.converter).is_file() or not built:
        if os.environ.get("CI"):
            pytest.fail("the ONNX converter or runtimes are not built: .ci/run must build them (make onnx-envs)")
        pytest.skip("the ONNX converter or runtimes are not built: `make onnx-envs` (make test does)")
    bundle = tmp_path / "bundle"
    storage.download_prefix("runs/e2e/bundle/", bundle)
    assert (bundle / "det" / "inference.onnx").is_file() and (bundle / "rec" / "inference.onnx").is_file()
    assert (bundle / "rapidocr.yaml").is_file()
    data_dir = config.work.current_dataset
    served = validate_in_runtimes(bundle, data_dir, {"pipeline": None}, tmp_path / "iv", timeout_s=900,
                                  onnx_runtimes=built)
    paddle, *onnx_reads = served.runtimes
    assert [r.engine for r in onnx_reads] == [ONNX] * len(built) and all(r.loaded for r in onnx_reads), onnx_reads
    answers = {r.name: json.loads(Path(r.reads).read_text(encoding="utf-8")) for r in served.runtimes}
    texts = {name: [sample["text"] for sample in answer["rec"]] for name, answer in answers.items()}
    for read in onnx_reads:
        same = sum(a == b for a, b in zip(texts[read.name], texts[paddle.name]))
        assert same >= 0.95 * len(texts[paddle.name]), (read.label(), same, len(texts[paddle.name]))
        for kind, metric in (("det", "hmean"), ("rec", "acc"), ("e2e", "e2e_hmean")):
            assert abs(read.metrics[kind][metric] - paddle.metrics[kind][metric]) <= 0.02, (read.label(), kind)


def test_dag_runner_whole_chain_then_a_quiet_night(dag_run):
    storage, first, dags_test = dag_run
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-4000:]
    assert "state=success" in log, log[-4000:]
    assert storage.settings.secret_access_key not in log

    (run_json,) = [o.key for o in storage.list("runs/") if o.key.endswith("/run.json")]
    outcome = storage.get_json(run_json)
    assert outcome["run_id"].startswith("manual__") and run_json == f"runs/{outcome['run_id']}/run.json"
    assert outcome["status"] == "gate-failed"                     # 1 epoch cannot pass the real gate
    assert outcome["trigger"]["how"] == "manual" and outcome["trigger"]["params"]["epochs"] == 1   # who asked for what
    assert outcome["trigger"]["overridden"] == {}
    assert set(outcome["metrics"]) == {"det", "rec"}
    assert any("rec acc" in reason for reason in outcome["gate"]["reasons"])
    assert storage.exists(f"runs/{outcome['run_id']}/report/summary.html")
    assert storage.exists(f"runs/{outcome['run_id']}/rec/finetune/done.json")
    assert storage.get_json("runs/last_trained.json")["run_id"] == outcome["run_id"]
    assert not storage.exists("models/ocr/production.json")

    # a quiet night: nothing new, not forced -> the run stops after should_run, successfully
    quiet = dags_test()
    assert quiet.returncode == 0 and "state=success" in quiet.stdout + quiet.stderr
    assert "nothing to do tonight" in quiet.stdout + quiet.stderr


def test_both_runners_produce_the_same_run(local_run, dag_run):
    """Same export, same config: same dataset version, same gate checks and decision, same
    run record shape, same production pointer (none) and the same files under runs/<id>/."""
    local_storage, _, local_outcome, _ = local_run
    dag_storage, _, _ = dag_run
    dag_record = next(dag_storage.get_json(o.key) for o in dag_storage.list("runs/") if o.key.endswith("/run.json"))
    local_record = local_storage.get_json("runs/e2e/run.json")

    assert local_record == plain(local_outcome)
    assert dag_record.keys() == local_record.keys()
    assert dag_record["dataset_version"] == local_record["dataset_version"]
    assert dag_storage.get_json("ledger/ingest.json")["dataset_version"] == local_record["dataset_version"]
    assert dag_record["status"] == local_record["status"]
    # CPU training is not bit-for-bit repeatable: compare which checks were made and how they ended
    shape = lambda record: [(c["model"], c["metric"], c["kind"], c["op"], c["threshold"], c["passed"])  # noqa: E731
                            for c in record["gate"]["checks"]]
    assert shape(dag_record) == shape(local_record)
    assert dag_record["gate"]["thresholds"] == local_record["gate"]["thresholds"]
    assert dag_record["gate"]["passed"] == local_record["gate"]["passed"]
    for storage in (dag_storage, local_storage):
        assert not storage.exists("models/ocr/production.json")

    def files(storage: Storage, run_id: str) -> set[str]:
        prefix = f"runs/{run_id}/"
        return {o.key[len(prefix):] for o in storage.list(prefix)}

    assert files(dag_storage, dag_record["run_id"]) == files(local_storage, "e2e")


def test_portable_export_has_no_interpolation_ops_and_identical_outputs(local_run, tmp_path):
    """The det export's nearest upsampling written as shape ops, in paddle 3.0's format: same numbers, bit for bit."""
    import numpy as np
    import paddle.inference as paddle_infer

    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.export import export_inference

    storage, config, _, _ = local_run
    checkpoints = tmp_path / "checkpoints"
    storage.download_prefix("runs/e2e/bundle/checkpoints/", checkpoints)
    exports = {}
    for portable in (False, True):
        for kind in ("det", "rec"):
            out = tmp_path / f"{kind}-{'portable' if portable else 'plain'}"
            exports[kind, portable] = export_inference(
                kind, checkpoints / kind / "config.yml", checkpoints / kind / "best_accuracy", out,
                config.training.for_model(kind).pdx_model_name, Engine.locate(), tmp_path / f"{out.name}.log",
                portable=portable)
    plain_det = (exports["det", False] / "inference.json").read_text()
    portable_det = (exports["det", True] / "inference.json").read_text()
    assert '"1.nearest_interp"' in plain_det and "interp" not in portable_det
    assert '"version":1' in portable_det.replace(" ", "") and '"0.a_i64"' in plain_det

    def outputs(model_dir, array):
        settings = paddle_infer.Config(str(model_dir / "inference.json"), str(model_dir / "inference.pdiparams"))
        settings.disable_gpu()
        predictor = paddle_infer.create_predictor(settings)
        predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(array)
        predictor.run()
        return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

    rng = np.random.default_rng(0)
    for kind, shapes in (("det", [(1, 3, 160, 320), (2, 3, 96, 224)]), ("rec", [(1, 3, 32, 128), (3, 3, 32, 128)])):
        for shape in shapes:
            array = rng.standard_normal(shape).astype("float32")
            plain, portable = outputs(exports[kind, False], array), outputs(exports[kind, True], array)
            assert plain.shape == portable.shape and np.array_equal(plain, portable), (kind, shape)


def test_prelabel_writes_a_ppocrlabel_folder_once_per_model_version(local_run, tmp_path, monkeypatch, capsys):
    """`ocr-retrain prelabel` with a published model: the folder, the ranking, done once per version."""
    from ocr_tasks.cli import main
    from ocr_tasks.prelabel.ppocrlabel_files import read_cache_file

    storage, config, outcome, root = local_run
    bundle = tmp_path / "bundle"
    storage.download_prefix("runs/e2e/bundle/", bundle)
    for version in ("pl-1", "pl-2"):
        publish_model(storage, config.model_name, version, bundle, {"run_id": f"prelabel-{version}"})
    raw = make_export(tmp_path / "raw", ExportSpec("shelf_3", n_images=5, seed=31))
    images = sorted(p.name for p in raw.iterdir() if p.suffix == ".jpg")
    for name in images:
        storage.upload_file(raw / name, f"unlabeled/shelf_3/{name}")
    storage.put_text("unlabeled/shelf_3/notes.txt", "not an image")
    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", storage.settings.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage.settings.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage.settings.secret_access_key)
    base = ["--set", f"storage.bucket={storage.settings.bucket}", "--set", f"work_dir={root / 'work'}"]
    uri = f"s3://{storage.settings.bucket}/unlabeled/shelf_3/"

    assert main(base + ["prelabel", uri, "--model-version", "pl-1"]) == 0
    printed = capsys.readouterr().out
    assert "shelf_3: 5 image(s) pre-labelled by pl-1" in printed and "left out: notes.txt" in printed
    folder = "prelabeled/shelf_3/pl-1/shelf_3/"
    assert sorted(o.key.rsplit("/", 1)[1] for o in storage.list(folder)) == \
        sorted(images + ["Cache.cach", "Label.txt", "fileState.txt"])
    cache = tmp_path / "Cache.cach"
    storage.download_file(folder + "Cache.cach", cache)
    assert set(read_cache_file(cache)) == {f"shelf_3/{name}" for name in images}
    ranking = storage.get_text("prelabeled/shelf_3/pl-1/ranking.csv").splitlines()
    assert ranking[0].startswith("rank,image,uncertainty") and len(ranking) == 6
    assert storage.get_json("prelabeled/shelf_3/pl-1/done.json")["images"] == 5

    assert main(base + ["prelabel", uri, "--model-version", "pl-1"]) == 0          # not redone
    assert "already pre-labelled by pl-1" in capsys.readouterr().out
    assert main(base + ["prelabel"]) == 0                                           # production pl-2: again
    assert "shelf_3: 5 image(s) pre-labelled by pl-2" in capsys.readouterr().out
    assert main(base + ["prelabel", f"s3://{storage.settings.bucket}/incoming/x/"]) == 2
