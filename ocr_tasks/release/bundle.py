"""What a publish uploads: the bundle folder (inference models, dict, checkpoints, report) and its manifest.

    bundle/det/, bundle/rec/          PaddleOCR inference models (tools/export_model.py, portable to every
                                      paddle 3.x: training/export.py), rec/dict.txt
    bundle/checkpoints/<kind>/        best_accuracy.* and config.yml: the next run's baseline
    bundle/report/                    summary.html and the curves

A model kind this run did not train carries over from production unchanged, so a
published version is always complete.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

from ocr_tasks.codec import plain
from ocr_tasks.config import PipelineConfig
from ocr_tasks.release.report import plot_curves, write_summary
from ocr_tasks.storage import layout
from ocr_tasks.training.engine import Engine
from ocr_tasks.training.export import export_inference
from ocr_tasks.training.render import config_hash
from ocr_tasks.training.trained_model import TrainedModel
from ocr_tasks.vocabulary import MODEL_KINDS, REC, timestamp

CHECKPOINT_FILES = (".pdparams", ".states")


def assemble_bundle(config: PipelineConfig, bundle: Path, data_dir: Path, trained: dict[str, TrainedModel],
                    engine: Engine, production: Path | None, rec_dict: Path | None = None) -> Path:
    """Export each trained model into the folder `bundle` (emptied first); untrained kinds come from `production`.
    The rec reads with the dataset's dict unless `rec_dict` says otherwise (the stock baseline's grown dict)."""
    shutil.rmtree(bundle, ignore_errors=True)
    for kind, model in trained.items():
        export_inference(kind, Path(model.config), Path(model.checkpoint), bundle / kind,
                         config.training.for_model(kind).pdx_model_name, engine,
                         bundle.parent / f"export_{kind}.log")
        target = bundle / "checkpoints" / kind
        target.mkdir(parents=True)
        for suffix in CHECKPOINT_FILES:
            source = Path(model.checkpoint).with_suffix(suffix)
            if source.exists():
                shutil.copy(source, target / f"best_accuracy{suffix}")
        shutil.copy(model.config, target / "config.yml")
        if kind == REC:
            shutil.copy(rec_dict or data_dir / "dict.txt", bundle / REC / "dict.txt")
    for kind in (k for k in MODEL_KINDS if k not in trained and production is not None):
        shutil.copytree(production / kind, bundle / kind)
        if (production / "checkpoints" / kind).is_dir():
            shutil.copytree(production / "checkpoints" / kind, bundle / "checkpoints" / kind)
    return bundle


def _dictionary_fact(dictionary: dict) -> str:
    """'6,623 configured + 1 added by the labels: €' (the characters are the labels', shown escaped as data)."""
    if dictionary.get("source") != "configured":
        return f"{dictionary['size']:,} characters, from the labels"
    grown = dictionary.get("grown") or ""
    added = f" + {len(grown)} added by the labels: {' '.join(grown)}" if grown else ", nothing added"
    return f"{dictionary.get('configured', dictionary['size']):,} configured{added}"


def write_report(config: PipelineConfig, outcome: Any, trained: dict[str, TrainedModel], out: Path, *,
                 errors: dict | None = None, dictionary: dict | None = None, onnx: dict | None = None) -> Path:
    """summary.html and one curves PNG per trained model; `outcome` is the run's RunOutcome, `errors`
    the error analysis (release/error_analysis.py, its pictures already under `out`), `dictionary` the rec dict's
    record (dataset.json), `onnx` the export's ONNX record (release/onnx_export.py)."""
    curves = [plot_curves(kind, m.history, out / f"{kind}_curves.png") for kind, m in trained.items()]
    facts = {"run": outcome.run_id, "dataset": outcome.dataset_version, "model version": outcome.model_version or "—",
             "status": outcome.status, "production before": _production_before(outcome.baseline)}
    if dictionary:
        facts["rec dict"] = _dictionary_fact(dictionary)
    if onnx:
        facts["ONNX"] = f"none: {onnx['skipped']}" if onnx.get("skipped") else \
            f"{', '.join(onnx.get('files', {}).values())} (opset {onnx.get('opset')}) and {onnx.get('settings')}"
    baseline = {k: v for k, v in (outcome.baseline or {}).items() if k not in ("version", "stock")}
    return write_summary(out / "summary.html", title=f"{config.model_name} retraining {outcome.run_id}", facts=facts,
                         metrics=outcome.metrics, baseline=baseline, gate=plain(outcome.gate) if outcome.gate else {},
                         curves=[c.name for c in curves if c], exported=outcome.exported_metrics,
                         comparison=outcome.comparison, errors=errors,
                         data={"quarantined": outcome.quarantined, "left_out": outcome.left_out})


def _production_before(baseline: dict | None) -> str:
    if not baseline:
        return "none"
    return f"{baseline.get('version')} (the stock baseline: stock vs fine-tuned)" if baseline.get("stock") \
        else str(baseline.get("version"))


def build_manifest(config: PipelineConfig, outcome: Any, trained: dict[str, TrainedModel], exported: Any,
                   served: Any) -> dict:
    """The caller's part of manifest.json (the registry adds files, name, version, published_at).

    `exported` is the run's ExportedBundle, `served` its InfraValidation: the manifest says
    which consumer runtimes read this model (with their versions and CPU latency per image).
    """
    engine = Engine.locate(config.training.engine_checkout)
    return {
        "created_at": timestamp(),
        "run_id": outcome.run_id,
        "dataset_version": outcome.dataset_version,
        "metrics": outcome.metrics,
        "baseline": outcome.baseline,
        "exported_metrics": outcome.exported_metrics,
        "verified_runtimes": served.verified_on(),
        "carried_over": exported.carried_over,
        # rec's dict: configured (the stock model's) or from the labels, and the characters the labels added to it
        "dictionary": exported.dictionary,
        # the det post-processing chosen on val (also in det/inference.yml): pass it to PaddleOCR(...) as text_det_*
        "postprocess": exported.postprocess,
        # ONNX beside the Paddle files (their sha256 with every file's): RapidOCR reads them with rapidocr.yaml
        "onnx": exported.onnx or {"skipped": "not exported by this version of ocr-retrain"},
        "gate": plain(outcome.gate),
        "comparison": outcome.comparison,
        "approval": plain(outcome.approval),
        "trigger": plain(outcome.trigger),      # who started the run, its Params, what they changed
        "models": {kind: {"pdx_model_name": config.training.for_model(kind).pdx_model_name,
                          "config_sha256": config_hash(Path(m.config)), "stages": m.stages,
                          "run": layout.run_model_prefix(outcome.run_id, kind)} for kind, m in trained.items()},
        "versions": {"ocr-retrain": _version("ocr-retrain"),
                     "paddle": _version("paddlepaddle-gpu") or _version("paddlepaddle"),
                     "engine": engine.version(),
                     "export": "portable (paddle 3.0 program format, no interpolation ops for nearest x2^k)"},
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
