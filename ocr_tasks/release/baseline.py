"""The stock model a team runs today, registered as production before the first fine-tune: the baseline to beat.

    register_stock_baseline(storage, config, data_dir, work) -> manifest of the published version

Each kind's inference folder (config.baseline_source: `baseline.<kind>`, else `training.<kind>.pretrained`) is
converted (training/stock_weights.py), exported the way every trained model is (portable PaddleOCR 3.x layout,
training/export.py, the template's own post-processing: stock as a team runs it), scored on the dataset's test
split as its users read it (the pipeline's PaddleOCR runtime: det alone, rec alone, end to end), and published as
a version like any other (checkpoints included). The first run that finds no production model does this itself
(flow/steps/training.py), or `ocr-retrain register-baseline` by hand. From then on the pipeline needs nothing
special: that night's evaluate takes these scores as the baseline (a later night scores production's checkpoints
with tools/eval.py, as always), compare reads production's bundle on the slices, the reference sets and end to end,
and the gate holds the fine-tune to the stock model (gate.must_beat_stock).

The stock rec reads with its own dict, grown by the characters the labels add (a grown head whose new rows never
win: convert_stock.py), so that its checkpoint, scored by tools/eval.py on a later night, counts a label with such a
character as misread, as consumers see it, instead of dropping the character from the label.
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
    from ocr_tasks.training.render import render_config, write_config
    from ocr_tasks.training.stock_weights import converted_pretrained, stock_dict_for
    from ocr_tasks.training.train import bucket_key, template_path
    from ocr_tasks.training.trained_model import TrainedModel

    current = production_version(storage, config.model_name)
    if current and not replace_production:
        raise UsageError(f"production of {config.model_name} is {current} already: the stock baseline is registered "
                         "before the first fine-tune (pass --replace-production to make stock production anyway)")
    sources = {kind: config.baseline_source(kind) for kind in MODEL_KINDS}
    missing = [kind for kind, source in sources.items() if source is None]
    if missing:
        raise UsageError(f"baseline.{missing[0]} must name the stock inference model folder (a key ending in /) to "
                         f"register it as the baseline (or training.{missing[0]}.pretrained, when you fine-tune from it)")
    engine = Engine.locate(config.training.engine_checkout)
    models = {}
    for kind, (folder, template_name) in sources.items():
        template = template_path(template_name, engine)
        dict_path = stock_dict_for(storage, bucket_key(storage, folder), data_dir, work / "dict.txt") \
            if kind == REC else None
        weights = converted_pretrained(storage, bucket_key(storage, folder), kind, template, data_dir, dict_path,
                                       engine, work / "pretrained", setting=f"baseline.{kind}")
        rendered = write_config(render_config(template, task=kind, data_dir=data_dir, save_dir=work / kind,
                                              dict_path=dict_path),
                                work / kind / "config.yml")
        models[kind] = TrainedModel(kind, STOCK_RUN, checkpoint=str(weights), config=str(rendered))
    bundle = assemble_bundle(config, work / "bundle", data_dir, models, engine, production=None,
                             rec_dict=work / "dict.txt")
    read = _read_as_its_users_do(bundle, data_dir, config, reads_of_the_test_split(work).parent)
    metrics = {kind: read[kind] for kind in MODEL_KINDS}
    version = version or next_model_version(storage, config.model_name)   # ordered with the fine-tunes after it
    manifest = {
        "created_at": timestamp(), "run_id": None, "dataset_version": None, "metrics": metrics, "baseline": None,
        # how they were measured: end to end too, and by whom
        "read": {"runtime": read["runtime"], "e2e": read.get("e2e"), "split": "test"},
        # where it came from: what a reader needs to know this version was never trained here
        "stock": {kind: storage.uri(bucket_key(storage, folder)) for kind, (folder, _) in sources.items()},
        "models": {kind: {"pdx_model_name": config.training.for_model(kind).pdx_model_name, "pretrained": folder}
                   for kind, (folder, _) in sources.items()},
    }
    written = publish_model(storage, config.model_name, version, bundle, manifest,
                            if_production_is=current)
    log.info("stock baseline published as %s %s and made production", config.model_name, version)
    return written


def reads_of_the_test_split(work: Path) -> Path:
    """Where register_stock_baseline(..., work) leaves its reads of the test split, sample by sample (the consumer
    probe's answer, in the pipeline's runtime): compare can take them as production's on that split."""
    return work / "read" / "pipeline.json"


def _read_as_its_users_do(bundle: Path, data_dir: Path, config: PipelineConfig, work: Path) -> dict:
    """The exported stock det and rec reading the test split in the pipeline's PaddleOCR runtime (det alone, rec
    alone, end to end: infra validation's reader), not tools/eval.py on the converted checkpoints: it is what the
    team's consumers read today, and it takes seconds where eval.py's dygraph rec takes minutes on a CPU (0.45 s a
    crop: PPLCNetV3's training branches unfused). A fine-tune's tools/eval.py metrics stand within
    gate.max_export_drift of its own reads in every runtime, so the two compare like with like."""
    from ocr_tasks.release.infra_validation import validate_in_runtimes

    runtime = {"pipeline": config.infra_validation.runtimes.get("pipeline")}
    (read,) = validate_in_runtimes(bundle, data_dir, runtime, work, timeout_s=config.infra_validation.timeout_s).runtimes
    if not read.loaded:
        error = read.error or {}
        raise UsageError(f"the stock model does not load or run in runtime {read.label()} ({error.get('stage')}): "
                         f"{error.get('type')}: {str(error.get('message', '')).strip().splitlines()[:1]}")
    log.info("stock on the test split, read in %s: %s", read.label(), read.metrics)
    return read.metrics | {"runtime": read.label()}
