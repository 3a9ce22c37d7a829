"""A PaddleOCR checkout as the engine (training.engine_checkout), for real: train -> eval -> export.

The checkout is a folder the test builds the way a repository clone is shaped: the installed
engine's `tools/` and `ppocr/` copied in, a `configs/` tree and a `requirements.txt`. The
pipeline is pointed at it with an `engine:` template (a config named by its repository path).
Slow: real PaddleOCR training, 1 epoch of the rec CPU profile, then tools/eval.py on the test
split and tools/export_model.py, all from the copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ocr_tasks.config import load_config
from ocr_tasks.embedded.synthetic import ExportSpec, make_export
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.training.engine import Engine, EngineError
from ocr_tasks.training.evaluate import evaluate
from ocr_tasks.training.export import PORTABLE_EXPORT, export_inference
from ocr_tasks.training.train import train_model

from tests.kit import REPO

pytestmark = pytest.mark.slow(minutes=1)

TEMPLATE = "engine:configs/rec/cpu/rec_cpu_small.yml"


def _checkout(root):
    package = Engine.locate().root
    for part in ("tools", "ppocr"):
        shutil.copytree(package / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((REPO / "configs/profiles/rec_cpu_small.yml").read_text())
    config["Global"]["character_dict_path"] = "./ppocr/utils/en_dict.txt"   # repository-relative, as PaddleOCR's are
    target = root / "configs" / "rec" / "cpu" / "rec_cpu_small.yml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def test_checkout_engine_trains_evaluates_and_exports_from_an_engine_template(storage, tmp_path):
    checkout = _checkout(tmp_path / "PaddleOCR")
    (checkout / "requirements.txt").write_text("shapely\npyclipper\nlmdb\nopencv-python\nPyYAML\n")
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"training.engine_checkout={checkout}",
                                    f"training.rec.template={TEMPLATE}"])
    # what a worker without the checkout's requirements says, before anything runs
    with pytest.raises(EngineError, match=r"needs what .* lacks: lmdb \(not installed\)\. Install with: .* 'lmdb'"):
        Engine.locate(config.training.engine_checkout)

    (checkout / "requirements.txt").write_text("shapely\npyclipper\nopencv-python\nPyYAML\n")
    engine = Engine.locate(config.training.engine_checkout)
    data_dir = tmp_path / "data"
    export = make_export(tmp_path / "labeller", ExportSpec("digits", n_images=30, seed=5))
    prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp_path / 'scratch'}"]))

    trained = train_model(storage, config, "rec", data_dir, "checkout", epochs=1, engine=engine)
    rendered = yaml.safe_load(Path(trained.config).read_text())
    stage_dir = tmp_path / "work" / "runs" / "checkout" / "rec" / "finetune"
    log = (stage_dir / "train.log").read_text()
    assert log.startswith(f"# {engine.python} {checkout / 'tools' / 'train.py'} -c ")   # the copy ran, not the package
    assert "epoch: [1/1], global_step:" in log
    assert rendered["Architecture"]["Neck"]["encoder_type"] == "fc"                    # the stage's overrides applied
    assert rendered["Global"]["character_dict_path"] == str(data_dir.absolute() / "dict.txt")   # owned: the dataset's

    config_path, checkpoint = Path(trained.config), Path(trained.checkpoint)
    assert config_path == stage_dir / "config.yml"
    metrics = evaluate("rec", config_path, checkpoint, data_dir, stage_dir / "eval_test.log", engine)
    assert set(metrics) == {"acc", "norm_edit_dis"} and 0.0 <= metrics["acc"] <= 1.0
    assert (stage_dir / "eval_test.log").read_text().startswith(f"# {engine.python} {checkout / 'tools' / 'eval.py'}")

    out = export_inference("rec", config_path, checkpoint, tmp_path / "export" / "rec",
                           "PP-OCRv5_mobile_rec", engine, tmp_path / "export" / "export_rec.log")
    assert {p.name for p in out.iterdir()} >= {"inference.json", "inference.pdiparams", "inference.yml"}
    assert yaml.safe_load((out / "inference.yml").read_text())["Global"]["model_name"] == "PP-OCRv5_mobile_rec"
    assert (tmp_path / "export" / "export_rec.log").read_text().startswith(   # the checkout's, made portable
        f"# {engine.python} {PORTABLE_EXPORT} {checkout / 'tools' / 'export_model.py'}")
