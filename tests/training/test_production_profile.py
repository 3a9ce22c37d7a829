"""The production profile's templates (PP-OCRv5 mobile det and rec) train through the real engine.

On CPU and from scratch, one epoch over a handful of images at a small batch: what is checked is that
`training.profile=production` gives PaddleOCR configs its engine trains and checkpoints, not accuracy.
"""

import time
from pathlib import Path

import pytest

from ocr_tasks.config import load_config
from ocr_tasks.embedded.synthetic import ExportSpec, make_export
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.training import train as train_module

pytestmark = pytest.mark.slow(minutes=1)   # measured: det 18 s, rec 11 s on 2 cores

# small batches for a CPU (the profile's are for a GPU); everything else is the production template's
SMALL = {"Train.loader.batch_size_per_card": 2, "Train.loader.num_workers": 1, "Eval.loader.num_workers": 1}
STAGES = {
    "det": [{"name": "finetune", "epochs": 1, "overrides": SMALL}],
    # rec's MultiScaleSampler sizes its batches from first_bs (tied to batch_size_per_card in the template)
    "rec": [{"name": "finetune", "epochs": 1, "overrides": {**SMALL, "Train.sampler.first_bs": 2}}],
}


def test_production_templates_train_one_epoch_and_checkpoint(storage, tmp_path):
    import json

    data_dir = tmp_path / "data"
    export = make_export(tmp_path / "labeller", ExportSpec("digits", n_images=10, seed=5))
    prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp_path / 'scratch'}"]))
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", "training.profile=production",
                                    *(f"training.{task}.stages={json.dumps(stages)}" for task, stages in STAGES.items())])
    seconds = {}
    for task in ("det", "rec"):
        assert config.training.for_model(task).template == f"configs/production/{task}_pp-ocrv5_mobile.yml"
        started = time.monotonic()
        trained = train_module.train_model(storage, config, task, data_dir, "production")
        seconds[task] = round(time.monotonic() - started, 1)
        stage_dir = tmp_path / "work" / "runs" / "production" / task / "finetune"
        assert Path(trained.checkpoint).with_suffix(".pdparams").is_file()
        assert (stage_dir / "latest.pdparams").is_file()
        log = (stage_dir / "train.log").read_text()
        assert "epoch: [1/1], global_step:" in log
    print(f"production templates, one epoch on CPU: {seconds}")
