"""Staged fine-tuning for real: a second stage with a frozen backbone starts from the first's best."""

import numpy as np
import pytest

from ocr_tasks.training import train as train_module
from ocr_tasks.config import load_config
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.embedded.synthetic import ExportSpec, make_export

pytestmark = pytest.mark.slow


def weights(path):
    import paddle

    return {k: np.array(v) for k, v in paddle.load(str(path)).items()}


def test_frozen_backbone_stage_keeps_backbone_weights_and_trains_the_head(storage, tmp_path):
    data_dir = tmp_path / "data"
    export = make_export(tmp_path / "labeller", ExportSpec("digits", n_images=30, seed=5))
    prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp_path / 'scratch'}"]))
    config = load_config(overrides=[
        f"work_dir={tmp_path / 'work'}",
        "training.rec.stages=[{name: warmup, epochs: 1}, {name: head_only, epochs: 1, freeze_backbone: true, augment: false}]",
    ])
    trained = train_module.train_model(storage, config, "rec", data_dir, "staged")
    assert [s["stage"] for s in trained.stages] == ["warmup", "head_only"]
    stage_dir = tmp_path / "work" / "runs" / "staged" / "rec"
    log = (stage_dir / "head_only" / "train.log").read_text()
    assert "froze" in log and "load pretrain successful from" in log   # started from warmup's weights
    start = stage_dir / "warmup" / "best_accuracy.pdparams"   # a stage starts from the previous best ...
    start = start if start.exists() else stage_dir / "warmup" / "latest.pdparams"   # ... or its last weights
    before = weights(start)
    after = weights(stage_dir / "head_only" / "latest.pdparams")
    backbone = [k for k in before if k.startswith("backbone.") and "_mean" not in k and "_variance" not in k]
    head = [k for k in before if k.startswith("head.")]
    assert backbone and head
    assert all(np.array_equal(before[k], after[k]) for k in backbone)
    assert any(not np.array_equal(before[k], after[k]) for k in head)
