"""The training steps: train one model kind (on the gpu pool), evaluate the new models and production's
on the test split."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_tasks.errors import UsageError
from ocr_tasks.flow.steps.common import dataset_version, fetch_all, keep_reads, local_dataset
from ocr_tasks.storage import layout
from ocr_tasks.vocabulary import DET, REC, ModelKind

if TYPE_CHECKING:
    from ocr_tasks.flow.run import Evaluation, MergedDataset, RunContext
    from ocr_tasks.training.trained_model import TrainedModel

log = logging.getLogger(__name__)



def train(ctx: RunContext, merged: MergedDataset, *, kind: ModelKind) -> TrainedModel:
    """Train one model kind; a retry resumes from the checkpoints under runs/<run_id>/<kind>/ in storage."""
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.train import train_model

    data_dir = local_dataset(ctx, dataset_version(merged))
    return train_model(ctx.storage, ctx.config, kind, data_dir, ctx.run_id, epochs=ctx.request.epochs,
                       engine=Engine.locate(ctx.config.training.engine_checkout))


def wants(kind: ModelKind) -> Callable[[RunContext], bool]:
    """The `when` of a kind's train node: that kind was asked for this run (the form can narrow it)."""
    def wanted(ctx: RunContext) -> bool:
        return kind in ctx.request.models
    wanted.__name__ = f"wants_{kind}"
    return wanted


def register_baseline(ctx: RunContext, merged: MergedDataset) -> dict | None:
    """The stock model (baseline.*) published as production, scored on this dataset's test split: the first
    fine-tune is then compared with and gated against the model the team runs today (release/baseline.py)."""
    from ocr_tasks.release.baseline import register_stock_baseline, reads_of_the_test_split
    from ocr_tasks.release.registry import ProductionMoved

    data_dir = local_dataset(ctx, dataset_version(merged))
    work = ctx.scratch / "baseline"
    try:
        manifest = register_stock_baseline(ctx.storage, ctx.config, data_dir, work)
    except ProductionMoved:   # another run registered it (or published) meanwhile: that production is the baseline
        log.info("production appeared while the stock baseline was being registered: it stays as it is")
        return None
    registered = {"version": manifest["version"], "metrics": manifest["metrics"], "stock": manifest["stock"]}
    # read in the pipeline's own interpreter, as compare reads production: compare takes these reads of this
    # split instead of making them again (35 CPU-seconds in the demo); paths relative to the dataset folder, like
    # infra validation's, since compare may run on another worker
    if ctx.config.infra_validation.runtimes.get("pipeline") is None:
        answer = json.loads(reads_of_the_test_split(work).read_text(encoding="utf-8"))
        registered["test_reads"] = keep_reads(ctx, layout.run_baseline_reads_key(ctx.run_id), answer, data_dir)
    return registered


def first_run_with_a_baseline(ctx: RunContext) -> bool:
    """The `when` of register_baseline: a baseline is configured and nothing is in production yet (a dry run
    publishes nothing, the baseline included)."""
    from ocr_tasks.release.registry import production_version

    configured = all(ctx.config.baseline_source(kind) for kind in (DET, REC))
    return configured and not ctx.request.dry_run and production_version(ctx.storage, ctx.config.model_name) is None


def evaluate(ctx: RunContext, merged: MergedDataset, det: TrainedModel | None = None,
             rec: TrainedModel | None = None, stock_baseline: dict | None = None) -> Evaluation:
    """Test-split metrics of the new models and, on the same split, of production's (the stock baseline this run
    registered was scored on this split already: its metrics are taken, not measured twice)."""
    from ocr_tasks.flow.run import Evaluation
    from ocr_tasks.release.registry import production_version, pull_model
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.evaluate import evaluate as evaluate_checkpoint

    trained = {kind: model for kind, model in ((DET, det), (REC, rec)) if model is not None}
    if not trained:
        raise UsageError(f"run {ctx.run_id}: no model was trained, nothing to evaluate")
    data_dir = local_dataset(ctx, dataset_version(merged))
    engine = Engine.locate(ctx.config.training.engine_checkout)
    models = fetch_all(ctx, trained)
    metrics = {kind: evaluate_checkpoint(kind, Path(m.config), Path(m.checkpoint), data_dir,
                                         ctx.scratch / kind / "eval_test.log", engine) for kind, m in models.items()}
    ctx.storage.put_json(layout.run_metrics_key(ctx.run_id), metrics)
    log.info("test metrics: %s", metrics)
    current = production_version(ctx.storage, ctx.config.model_name)
    evaluation = Evaluation(metrics, dict(trained), current)
    if current is None:
        return evaluation
    production = pull_model(ctx.storage, ctx.config.model_name, ctx.scratch / "production", current,
                            include_checkpoints=True)
    manifest = production / "manifest.json"     # pull_model verified it; absent only in a hand-made folder
    evaluation.production_is_stock = manifest.is_file() and bool(json.loads(manifest.read_text(encoding="utf-8"))
                                                                  .get("stock"))
    registered = stock_baseline if stock_baseline and stock_baseline["version"] == current else None
    if registered:
        evaluation.production_test_reads = registered.get("test_reads")
    for kind in models:
        if registered and kind in registered["metrics"]:
            evaluation.baseline[kind] = registered["metrics"][kind]
            continue
        checkpoint = production / "checkpoints" / kind / "best_accuracy"
        prod_config = production / "checkpoints" / kind / "config.yml"
        if not checkpoint.with_suffix(".pdparams").exists() or not prod_config.exists():
            log.warning("production %s has no %s checkpoint: no regression check for it", current, kind)
            continue
        dict_path = production / REC / "dict.txt" if kind == REC else None
        evaluation.baseline[kind] = evaluate_checkpoint(kind, prod_config, checkpoint, data_dir,
                                                        ctx.scratch / kind / "eval_production.log", engine,
                                                        dict_path=dict_path)
    log.info("production %s on the same split: %s", current, evaluation.baseline or "no checkpoints")
    return evaluation
