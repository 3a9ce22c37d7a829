"""tools/export_model.py of a trained checkpoint: the PaddleOCR 3.x inference layout consumers load,
portable to every paddle 3.x runtime (3.0 to 3.3) with their default settings.

Two changes make it portable, each with the reason in its own module and numerics
unchanged (tests/training/test_portable_export.py):
- `portable_export.py` runs export_model.py with power-of-two nearest upsampling written
  as shape ops: paddle 3.3's oneDNN path crashes on interpolation ops (every DB neck has them);
- `pir_compat.write_as_paddle_3_0` writes inference.json as paddle 3.0 does: paddle 3.0
  refuses the int64 pooling attributes paddle 3.1+ writes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from ocr_tasks.training.engine import Engine, run_tool
from ocr_tasks.training.pir_compat import write_as_paddle_3_0

PORTABLE_EXPORT = Path(__file__).with_name("portable_export.py")

log = logging.getLogger(__name__)


def export_inference(task: str, config_path: Path, checkpoint: Path, out_dir: Path, pdx_model_name: str,
                     engine: Engine, log_file: Path, *, portable: bool = True) -> Path:
    """tools/export_model.py with the flags paddle 3.x and PaddleOCR 3.x need (paddle 3.x exports only with
    the PIR flag; PaddleOCR 3.x loads only models whose inference.yml names pdx_model_name).

    `portable=False` writes what export_model.py writes alone (the tests compare the two).
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    overrides = {"Global.pretrained_model": str(checkpoint), "Global.checkpoints": None,
                 "Global.save_inference_dir": str(out_dir), "Global.export_with_pir": True,
                 "Global.pdx_model_name": pdx_model_name}
    run_tool(engine, "export_model", config_path, overrides, log_file=log_file, cwd=log_file.parent, log=log,
             entry=PORTABLE_EXPORT if portable else None)
    student = out_dir / "Student"
    if student.is_dir():  # distillation configs export every sub-model; consumers get the Student
        for item in student.iterdir():
            shutil.move(str(item), out_dir / item.name)
        shutil.rmtree(out_dir / "Student")
        shutil.rmtree(out_dir / "Teacher", ignore_errors=True)
    _drop_label_encoders(out_dir / "inference.yml")
    if portable:
        narrowed = write_as_paddle_3_0(out_dir / "inference.json")
        log.info("%s: written in paddle 3.0's program format (%d pooling attribute values narrowed)",
                 out_dir / "inference.json", narrowed)
    return out_dir


def _drop_label_encoders(inference_yml: Path) -> None:
    """Remove training-only label encoders from the inference preprocessing.

    export_model copies the Eval transforms, label encoder included; PaddleOCR 3.x
    (PaddleX) refuses a rec model whose preprocessing names CTCLabelEncode (it knows
    only MultiLabelEncode), and no consumer has labels to encode anyway.
    """
    data = yaml.safe_load(inference_yml.read_text(encoding="utf-8"))
    ops = (data.get("PreProcess") or {}).get("transform_ops") or []
    kept = [op for op in ops if not any(str(name).endswith("LabelEncode") for name in (op or {}))]
    if len(kept) != len(ops):
        data["PreProcess"]["transform_ops"] = kept
        inference_yml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
