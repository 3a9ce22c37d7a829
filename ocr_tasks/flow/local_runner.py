"""The whole retraining run, step by step, with the functions the DAG calls one task at a time:

    ingest -> pull dataset -> train det | train rec -> evaluate (new and production, test split)
           -> gate -> export -> publish -> report

A run that finds nothing new and is not forced stops after ingest: a quiet night costs
seconds. A failed gate is a normal outcome: the report says why and production stays.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ocr_tasks.storage import layout
from ocr_tasks.config import PipelineConfig
from ocr_tasks.training.engine import Engine
from ocr_tasks.errors import UsageError
from ocr_tasks.release.gate import decide
from ocr_tasks.ingest.merge import IngestResult, ingest, load_ledger, pull_dataset
from ocr_tasks.flow.notify import notify_outcome
from ocr_tasks.release.registry import next_model_version, production_version, publish_model, pull_model
from ocr_tasks.release.report import plot_curves, write_summary
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.training.train import TrainedModel, evaluate, export_inference, run_prefix, train_model
from ocr_tasks.training.render import config_hash

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_id: str
    status: str                      # "nothing-new" | "gate-failed" | "dry-run" | "published"
    dataset_version: str | None = None
    model_version: str | None = None
    metrics: dict = field(default_factory=dict)
    baseline: dict | None = None
    gate: dict | None = None
    report: str | None = None        # local summary.html
    report_uri: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def prepare_dataset(storage: Storage, config: PipelineConfig, *, force: bool) -> tuple[IngestResult, str | None]:
    """Ingest new exports; returns the dataset version to train on, or None when there is nothing to do.

    "Nothing to do" compares the latest dataset version with the one the last finished
    run trained on, not whether this ingest merged something: a run that crashed after
    ingest retrains next night, and a re-upload that changes no label trains nothing.
    """
    result = ingest(storage, config)
    latest = load_ledger(storage).get("dataset_version")
    if latest is None:
        if force:
            raise UsageError("forced run, but no dataset version exists yet: upload an export to incoming/ first")
        return result, None
    trained_on = storage.get_json(layout.LAST_TRAINED, default={}).get("dataset_version")
    return result, latest if force or latest != trained_on else None


def evaluate_models(storage: Storage, config: PipelineConfig, run_id: str, data_dir: Path,
                    trained: dict[str, TrainedModel], engine: Engine) -> tuple[dict, dict | None]:
    """Test-split metrics of the new models and, on the same split, of production's."""
    run_dir = config.work_path / "runs" / run_id
    metrics = {task: evaluate(task, Path(m.config), Path(m.checkpoint), data_dir, run_dir / task / "eval_test.log",
                              engine) for task, m in trained.items()}
    storage.put_json(f"{layout.RUNS}{run_id}/metrics.json", metrics)
    current = production_version(storage, config.model_name)
    if current is None:
        return metrics, None
    production = pull_model(storage, config.model_name, run_dir / "production", current, include_checkpoints=True)
    baseline = {}
    for task in trained:
        checkpoint = production / "checkpoints" / task / "best_accuracy"
        prod_config = production / "checkpoints" / task / "config.yml"
        if not checkpoint.with_suffix(".pdparams").exists() or not prod_config.exists():
            log.warning("production %s has no %s checkpoint: no regression check for it", current, task)
            continue
        dict_path = production / "rec" / "dict.txt" if task == "rec" else None
        baseline[task] = evaluate(task, prod_config, checkpoint, data_dir, run_dir / task / "eval_production.log",
                                  engine, dict_path=dict_path)
    return metrics, {"version": current, **baseline}


def assemble_bundle(config: PipelineConfig, run_id: str, data_dir: Path, trained: dict[str, TrainedModel],
                    engine: Engine, storage: Storage) -> Path:
    """det/ rec/ inference models, rec dict, best checkpoints with their configs; untrained models carry over."""
    bundle = config.work_path / "runs" / run_id / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    for task, model in trained.items():
        settings = config.training.for_model(task)
        export_inference(task, Path(model.config), Path(model.checkpoint), bundle / task, settings.pdx_model_name,
                         engine, config.work_path / "runs" / run_id / task / "export.log")
        target = bundle / "checkpoints" / task
        target.mkdir(parents=True)
        for suffix in (".pdparams", ".states"):
            source = Path(model.checkpoint).with_suffix(suffix)
            if source.exists():
                shutil.copy(source, target / f"best_accuracy{suffix}")
        shutil.copy(model.config, target / "config.yml")
        if task == "rec":
            shutil.copy(data_dir / "dict.txt", bundle / "rec" / "dict.txt")
    current = production_version(storage, config.model_name)
    missing = [t for t in ("det", "rec") if t not in trained]
    if missing and current:
        production = pull_model(storage, config.model_name, config.work_path / "runs" / run_id / "production",
                                current, include_checkpoints=True)
        for task in missing:
            shutil.copytree(production / task, bundle / task)
            if (production / "checkpoints" / task).is_dir():
                shutil.copytree(production / "checkpoints" / task, bundle / "checkpoints" / task)
    return bundle


def write_report(config: PipelineConfig, run_id: str, trained: dict[str, TrainedModel], outcome: RunOutcome,
                 out: Path) -> Path:
    curves = [plot_curves(task, m.history, out / f"{task}_curves.png") for task, m in trained.items()]
    facts = {"run": run_id, "dataset": outcome.dataset_version, "model version": outcome.model_version or "—",
             "status": outcome.status, "production before": (outcome.baseline or {}).get("version", "none")}
    baseline = {k: v for k, v in (outcome.baseline or {}).items() if k != "version"}
    return write_summary(out / "summary.html", title=f"{config.model_name} retraining {run_id}", facts=facts,
                         metrics=outcome.metrics, baseline=baseline, gate=outcome.gate or {},
                         curves=[c.name for c in curves if c])


def run_pipeline(storage: Storage, config: PipelineConfig, *, run_id: str | None = None, force: bool = False,
                 models: list[str] | None = None, epochs: int | None = None, dry_run: bool = False) -> RunOutcome:
    """`ocr-retrain run`: every step in one process, as the DAG runs them one task each."""
    run_id = run_id or new_run_id()
    models = models or list(config.training.models)
    _, version = prepare_dataset(storage, config, force=force)
    if version is None:
        log.info("no new exports and not forced: nothing to train")
        return RunOutcome(run_id, "nothing-new")
    # one folder across runs: images are content-addressed, so a pull fetches only new packs
    data_dir = pull_dataset(storage, version, config.work_path / "datasets" / "current")
    engine = Engine.locate(config.training.engine_checkout)
    trained = {task: train_model(storage, config, task, data_dir, run_id, epochs=epochs, engine=engine)
               for task in models}
    metrics, baseline = evaluate_models(storage, config, run_id, data_dir, trained, engine)
    gate = decide(metrics, {k: v for k, v in (baseline or {}).items() if k != "version"} or None,
                  config.gate, models=models)
    outcome = RunOutcome(run_id, "gate-failed", version, metrics=metrics, baseline=baseline, gate=gate.to_json())
    report_dir = config.work_path / "runs" / run_id / "report"
    if gate.passed and not dry_run:
        outcome.model_version = next_model_version(storage, config.model_name)
        outcome.status = "published"
        bundle = assemble_bundle(config, run_id, data_dir, trained, engine, storage)
        write_report(config, run_id, trained, outcome, bundle / "report")
        manifest = build_manifest(config, outcome, trained, engine)
        publish_model(storage, config.model_name, outcome.model_version, bundle, manifest)
        report_dir = bundle / "report"
        outcome.report_uri = storage.uri(layout.model_report_prefix(config.model_name, outcome.model_version)
                                         + "summary.html")
    else:
        outcome.status = "dry-run" if gate.passed else "gate-failed"
        write_report(config, run_id, trained, outcome, report_dir)
        storage.upload_dir(report_dir, layout.run_report_prefix(run_id))
        outcome.report_uri = storage.uri(layout.run_report_prefix(run_id) + "summary.html")
    outcome.report = str(report_dir / "summary.html")
    return finish_run(storage, config, outcome, version, dry_run=dry_run)


def finish_run(storage: Storage, config: PipelineConfig, outcome: RunOutcome, dataset_version: str, *,
               dry_run: bool) -> RunOutcome:
    """The end of every run, in one process or as DAG tasks: run.json, what was trained on
    (not for dry runs: they must not stop the next night from training), the notification."""
    storage.put_json(layout.run_record_key(outcome.run_id), outcome.to_json())
    if not dry_run:
        storage.put_json(layout.LAST_TRAINED, {"dataset_version": dataset_version, "run_id": outcome.run_id,
                                               "status": outcome.status})
    notify_outcome(outcome.to_json(), config.model_name, config.notifications)
    return outcome


def build_manifest(config: PipelineConfig, outcome: RunOutcome, trained: dict[str, TrainedModel], engine: Engine) -> dict:
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": outcome.run_id,
        "dataset_version": outcome.dataset_version,
        "metrics": outcome.metrics,
        "baseline": outcome.baseline,
        "gate": {**(outcome.gate or {}), "thresholds": asdict(config.gate)},
        "models": {task: {"pdx_model_name": config.training.for_model(task).pdx_model_name,
                          "config_sha256": config_hash(Path(m.config)), "stages": m.stages,
                          "run": run_prefix(outcome.run_id, task)} for task, m in trained.items()},
        "versions": {"ocr-retrain": _version("ocr-retrain"), "paddle": _version("paddlepaddle-gpu") or _version("paddlepaddle"),
                     "engine": engine.version()},
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
