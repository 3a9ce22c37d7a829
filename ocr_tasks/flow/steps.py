"""The retraining run as JSON-in / JSON-out steps, one per Airflow task (dags/ocr_retraining.py).

Tasks may run on different workers, so a step never receives another worker's local
path: everything a step needs comes from its JSON arguments and from storage. A model
trained by another task is fetched back from `runs/<run_id>/<task>/` (train_model on a
finished stage downloads its best weights and config instead of training again).

No Airflow import here: the DAG file resolves the storage credentials (connection or
environment) and passes them in; `make_storage` never logs them.

The steps reuse the pipeline's own functions (`ocr_tasks.flow.local_runner.run_pipeline` runs the
same chain in one process):

    discover -> check (one per new export) -> merge -> train det | train rec
             -> evaluate -> gate -> publish | record
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocr_tasks.storage import layout
from ocr_tasks.config import PipelineConfig, load_config
from ocr_tasks.errors import UsageError

if TYPE_CHECKING:  # boto3 stays out of DAG parsing: the storage layer is imported where it is used
    from ocr_tasks.storage.s3 import Storage

log = logging.getLogger(__name__)

MODEL_CHOICES = ("both", "det", "rec")
_RUN_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")

JSON = dict[str, Any]


# --------------------------------------------------------------------------- settings


def sanitize_run_id(run_id: str) -> str:
    """An Airflow run id (`scheduled__2026-01-01T02:00:00+00:00`) as a storage-safe pipeline run id."""
    cleaned = _RUN_ID_BAD.sub("_", run_id).strip("._-")
    if not cleaned:
        raise UsageError(f"run id {run_id!r} has no usable characters")
    return cleaned[:128]


def config_overrides(*, rec_min_acc: float | None = None, det_min_hmean: float | None = None) -> list[str]:
    """`key.path=value` overrides for load_config from the run's params (None: keep the config's)."""
    overrides = []
    if rec_min_acc is not None:
        overrides.append(f"gate.rec_min_acc={float(rec_min_acc)}")
    if det_min_hmean is not None:
        overrides.append(f"gate.det_min_hmean={float(det_min_hmean)}")
    return overrides


def load(overrides: Sequence[str] = ()) -> PipelineConfig:
    """configs/pipeline.yaml (or $OCR_RETRAIN_CONFIG) with the run's overrides."""
    return load_config(overrides=list(overrides))


def select_models(config: PipelineConfig, models: str) -> list[str]:
    """The form's `models` choice: "both" trains what the config lists, "det"/"rec" narrows it."""
    if models not in MODEL_CHOICES:
        raise UsageError(f"models must be one of {', '.join(MODEL_CHOICES)}, got {models!r}")
    return list(config.training.models) if models == "both" else [models]


def make_storage(config: PipelineConfig, credentials: JSON | None = None) -> Storage:
    """Storage from the config; keys/endpoint from `credentials` (an Airflow connection) or the environment.

    `credentials`: {"access_key_id", "secret_access_key", "session_token"?, "endpoint_url"?, "region"?}.
    StorageSettings keeps the secrets out of its repr, so logging the Storage is safe.
    """
    from ocr_tasks.storage.s3 import storage_from_config

    return storage_from_config(config, credentials=credentials)


def production_asset_uri(config: PipelineConfig) -> str:
    """s3://<bucket>/<prefix>/models/<name>/production.json: what a publish updates."""
    prefix = config.storage.prefix.strip("/")
    key = layout.production_key(config.model_name)
    return f"s3://{config.storage.bucket}/{prefix + '/' if prefix else ''}{key}"


# --------------------------------------------------------------------------- ingest


def discover(storage: Storage) -> JSON:
    """New exports (as ExportRef JSON) and whether the latest dataset still needs training."""
    from ocr_tasks.ingest.exports import discover_exports
    from ocr_tasks.ingest.merge import load_ledger

    ledger = load_ledger(storage)
    found = discover_exports(storage, ledger)
    for name, why in found.waiting.items():
        log.info("export %s is not complete, left for the next run: %s", name, why)
    latest = ledger.get("dataset_version")
    untrained = latest if latest is not None and latest != _trained_on(storage) else None
    return {"new": [ref.to_json() for ref in found.new], "waiting": dict(found.waiting),
            "already_ingested": list(found.already_ingested), "latest_dataset": latest,
            "untrained_dataset": untrained}


def should_run(discovery: JSON, *, force: bool) -> bool:
    """Go on when forced, when there are new exports, or when the latest dataset was never trained on."""
    return bool(force or discovery.get("new") or discovery.get("untrained_dataset"))


def check(storage: Storage, config: PipelineConfig, ref: JSON) -> JSON:
    """Validate one export; a failing one is quarantined with its report (not an error)."""
    from ocr_tasks.ingest.exports import ExportRef
    from ocr_tasks.ingest.merge import check_export

    return check_export(storage, ExportRef.from_json(ref), config).to_json()


def merge(storage: Storage, config: PipelineConfig, checks: Sequence[JSON], *, force: bool) -> JSON:
    """Merge the exports that passed; returns the dataset version to train on (None: nothing to train).

    Same rule as pipeline.prepare_dataset: train when the latest version differs from the
    one the last finished run trained on, or when forced.
    """
    from ocr_tasks.ingest.merge import ExportCheck, load_ledger, merge_exports

    parsed = [ExportCheck.from_json(c) for c in checks if c]
    passed = [c.export for c in parsed if c.passed]
    quarantined = {c.export.name: c.report_uri for c in parsed if not c.passed}
    merged = merge_exports(storage, passed, config).to_json() if passed else None
    latest = load_ledger(storage).get("dataset_version")
    if latest is None:
        if force:
            raise UsageError("forced run, but no dataset version exists yet: upload an export to incoming/ first")
        version = None
    else:
        version = latest if force or latest != _trained_on(storage) else None
    return {"dataset_version": version, "merged": merged, "quarantined": quarantined}


def _trained_on(storage: Storage) -> str | None:
    return storage.get_json(layout.LAST_TRAINED, default={}).get("dataset_version")


# --------------------------------------------------------------------------- train / evaluate


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One pull at a time into a shared folder (det and rec tasks on one worker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def local_dataset(storage: Storage, config: PipelineConfig, version: str) -> Path:
    """The dataset version as a PaddleOCR data_dir on this worker (one folder across runs, as run_pipeline)."""
    from ocr_tasks.ingest.merge import pull_dataset

    dest = config.work_path / "datasets" / "current"
    with _locked(config.work_path / "datasets" / ".current.lock"):
        return pull_dataset(storage, version, dest)


def train(storage: Storage, config: PipelineConfig, task: str, dataset_version: str, run_id: str,
          *, epochs: int | None = None) -> JSON:
    """Train one model; a retry resumes from the checkpoints under runs/<run_id>/<task>/ in storage."""
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.train import train_model

    data_dir = local_dataset(storage, config, dataset_version)
    model = train_model(storage, config, task, data_dir, run_id, epochs=epochs,
                        engine=Engine.locate(config.training.engine_checkout))
    return model.to_json()


def fetch_trained(storage: Storage, config: PipelineConfig, trained: JSON, data_dir: Path, *,
                  epochs: int | None = None) -> Any:
    """A TrainedModel of another task, with local paths on this worker, fetched from storage.

    Refuses (rather than trains) when a stage of that run is not finished.
    """
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.train import TrainedModel, run_prefix, train_model

    task, run_id = trained["task"], trained["run_id"]
    for stage in config.training.for_model(task).stages:
        done = run_prefix(run_id, task) + f"{stage.name}/done.json"
        if not storage.exists(done):
            raise RuntimeError(f"{task} of run {run_id} is not finished: no {storage.uri(done)}")
    local = train_model(storage, config, task, data_dir, run_id, epochs=epochs,
                        engine=Engine.locate(config.training.engine_checkout))
    return TrainedModel(task, run_id, local.checkpoint, local.config,
                        history=list(trained.get("history") or []), stages=list(trained.get("stages") or local.stages))


def _fetch_all(storage: Storage, config: PipelineConfig, trained: dict[str, JSON], data_dir: Path,
               epochs: int | None) -> dict[str, Any]:
    return {task: fetch_trained(storage, config, model, data_dir, epochs=epochs)
            for task, model in sorted(trained.items()) if model}


def evaluate(storage: Storage, config: PipelineConfig, run_id: str, dataset_version: str,
             trained: dict[str, JSON], *, epochs: int | None = None) -> JSON:
    """Test-split metrics of the new models and of production's on the same split."""
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.flow.local_runner import evaluate_models

    data_dir = local_dataset(storage, config, dataset_version)
    models = _fetch_all(storage, config, trained, data_dir, epochs)
    metrics, baseline = evaluate_models(storage, config, run_id, data_dir, models,
                                        Engine.locate(config.training.engine_checkout))
    return {"metrics": metrics, "baseline": baseline}


def gate(config: PipelineConfig, evaluation: JSON, models: Sequence[str]) -> JSON:
    """The gate's decision (passed, reasons, checks) with the thresholds it used."""
    from dataclasses import asdict

    from ocr_tasks.release.gate import decide

    baseline = {k: v for k, v in (evaluation.get("baseline") or {}).items() if k != "version"} or None
    decision = decide(evaluation["metrics"], baseline, config.gate, models=list(models)).to_json()
    return {**decision, "thresholds": asdict(config.gate)}


# --------------------------------------------------------------------------- publish / record


def _outcome(run_id: str, status: str, dataset_version: str, evaluation: JSON, decision: JSON) -> Any:
    from ocr_tasks.flow.local_runner import RunOutcome

    gate_json = {k: v for k, v in decision.items() if k != "thresholds"}
    return RunOutcome(run_id, status, dataset_version, metrics=evaluation["metrics"],
                      baseline=evaluation.get("baseline"), gate=gate_json)


def publish(storage: Storage, config: PipelineConfig, run_id: str, dataset_version: str, trained: dict[str, JSON],
            evaluation: JSON, decision: JSON, *, epochs: int | None = None) -> JSON:
    """Export the inference models, publish them as the next version and make it production."""
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.flow.local_runner import assemble_bundle, build_manifest, finish_run, write_report
    from ocr_tasks.release.registry import next_model_version, production_version, publish_model, published_by_run, rollback

    if not decision.get("passed"):
        raise UsageError(f"run {run_id} failed the gate; refusing to publish: {decision.get('reasons')}")
    outcome = _outcome(run_id, "published", dataset_version, evaluation, decision)
    already = published_by_run(storage, config.model_name, run_id)
    if already is not None:  # an earlier try of this task got as far as the manifest
        log.warning("run %s already published %s %s (an earlier try): not publishing it again", run_id,
                    config.model_name, already)
        if production_version(storage, config.model_name) != already:
            rollback(storage, config.model_name, already)   # the earlier try died before moving production
        outcome.model_version = already
        outcome.report_uri = storage.uri(layout.model_report_prefix(config.model_name, already) + "summary.html")
        return finish_run(storage, config, outcome, dataset_version, dry_run=False).to_json()
    engine = Engine.locate(config.training.engine_checkout)
    data_dir = local_dataset(storage, config, dataset_version)
    models = _fetch_all(storage, config, trained, data_dir, epochs)
    outcome.model_version = next_model_version(storage, config.model_name)
    bundle = assemble_bundle(config, run_id, data_dir, models, engine, storage)
    write_report(config, run_id, models, outcome, bundle / "report")
    publish_model(storage, config.model_name, outcome.model_version, bundle,
                  build_manifest(config, outcome, models, engine))
    outcome.report = str(bundle / "report" / "summary.html")
    outcome.report_uri = storage.uri(layout.model_report_prefix(config.model_name, outcome.model_version)
                                     + "summary.html")
    return finish_run(storage, config, outcome, dataset_version, dry_run=False).to_json()


def record(storage: Storage, config: PipelineConfig, run_id: str, dataset_version: str, trained: dict[str, JSON],
           evaluation: JSON, decision: JSON, *, dry_run: bool) -> JSON:
    """A run that does not publish (failed gate or dry run): its report under runs/<run_id>/report/."""
    from ocr_tasks.flow.local_runner import finish_run, write_report
    from ocr_tasks.training.train import TrainedModel

    status = "dry-run" if decision.get("passed") else "gate-failed"
    outcome = _outcome(run_id, status, dataset_version, evaluation, decision)
    # the report needs only the curves (history), no weights: nothing to download
    models = {task: TrainedModel(task, run_id, "", "", history=list(m.get("history") or []),
                                 stages=list(m.get("stages") or [])) for task, m in trained.items() if m}
    report_dir = config.work_path / "runs" / run_id / "report"
    write_report(config, run_id, models, outcome, report_dir)
    storage.upload_dir(report_dir, layout.run_report_prefix(run_id))
    outcome.report = str(report_dir / "summary.html")
    outcome.report_uri = storage.uri(layout.run_report_prefix(run_id) + "summary.html")
    if status == "gate-failed":
        log.warning("run %s failed the gate: %s (report %s)", run_id, "; ".join(decision.get("reasons") or []),
                    outcome.report_uri)
    return finish_run(storage, config, outcome, dataset_version, dry_run=dry_run).to_json()
