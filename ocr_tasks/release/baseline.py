"""The stock model a team runs today, registered as production before the first fine-tune: the baseline to beat.

    register_stock_baseline(storage, config, data_dir, work) -> manifest of the published version

Each kind's `training.<kind>.pretrained` inference folder is converted (training/stock_weights.py), exported
the way every trained model is (portable PaddleOCR 3.x layout, training/export.py), scored by tools/eval.py on
the dataset's test split, and published as a version like any other (checkpoints included). From then on the
pipeline needs nothing special: the first night's evaluate reads production's checkpoints as the baseline,
compare reads production's bundle on the slices, the reference sets and end to end, and the gate's no-regression
checks hold the fine-tune to the stock model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ocr_tasks.config import PipelineConfig
from ocr_tasks.errors import UsageError
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.vocabulary import MODEL_KINDS, REC, timestamp

log = logging.getLogger(__name__)

STOCK_RUN = "stock-baseline"


def register_stock_baseline(storage: Storage, config: PipelineConfig, data_dir: Path, work: Path, *,
                            version: str | None = None, replace_production: bool = False) -> dict:
    from ocr_tasks.release.bundle import assemble_bundle
    from ocr_tasks.release.registry import next_model_version, production_version, publish_model
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.evaluate import evaluate
    from ocr_tasks.training.render import render_config, write_config
    from ocr_tasks.training.stock_weights import is_inference_folder
    from ocr_tasks.training.train import bucket_key, pretrained_weights, template_path
    from ocr_tasks.training.trained_model import TrainedModel

    current = production_version(storage, config.model_name)
    if current and not replace_production:
        raise UsageError(f"production of {config.model_name} is {current} already: the stock baseline is registered "
                         "before the first fine-tune (pass --replace-production to make stock production anyway)")
    missing = [kind for kind in MODEL_KINDS if not is_inference_folder(config.training.for_model(kind).pretrained or "")]
    if missing:
        raise UsageError(f"training.{missing[0]}.pretrained must name the stock inference model folder (a key ending "
                         f"in /) to register it as the baseline; it is {config.training.for_model(missing[0]).pretrained!r}")
    engine = Engine.locate(config.training.engine_checkout)
    models, metrics = {}, {}
    for kind in MODEL_KINDS:
        settings = config.training.for_model(kind)
        template = template_path(settings.template, engine)
        weights = pretrained_weights(storage, settings.pretrained, kind, template, data_dir, engine, work / "pretrained")
        rendered = write_config(render_config(template, task=kind, data_dir=data_dir, save_dir=work / kind,
                                              dict_path=data_dir / "dict.txt" if kind == REC else None),
                                work / kind / "config.yml")
        models[kind] = TrainedModel(kind, STOCK_RUN, checkpoint=str(weights), config=str(rendered))
        metrics[kind] = evaluate(kind, rendered, weights, data_dir, work / kind / "eval.log", engine)
        log.info("stock %s (%s) on the test split: %s", kind, settings.pretrained, metrics[kind])
    bundle = assemble_bundle(config, work / "bundle", data_dir, models, engine, production=None)
    version = version or next_model_version(storage, config.model_name)   # ordered with the fine-tunes after it
    manifest = {
        "created_at": timestamp(), "run_id": None, "dataset_version": None, "metrics": metrics, "baseline": None,
        # where it came from: what a reader needs to know this version was never trained here
        "stock": {kind: storage.uri(bucket_key(storage, config.training.for_model(kind).pretrained))
                  for kind in MODEL_KINDS},
        "models": {kind: {"pdx_model_name": config.training.for_model(kind).pdx_model_name,
                          "pretrained": config.training.for_model(kind).pretrained} for kind in MODEL_KINDS},
    }
    written = publish_model(storage, config.model_name, version, bundle, manifest,
                            if_production_is=current)
    log.info("stock baseline published as %s %s and made production", config.model_name, version)
    return written
