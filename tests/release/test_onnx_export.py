"""ONNX beside the Paddle files (release/onnx_export.py): RapidOCR's settings from inference.yml, the reasons a bundle
has no ONNX, and the published folder consumers pull with them.

Real conversions and reads: tests/flow/test_runners.py (a 1-epoch run's export, read by RapidOCR sample for sample
as PaddleOCR reads it) and tests/embedded/test_demo.py (the demo's bundle, the README's RapidOCR snippet, a planted
rec ONNX from another checkpoint refused by the gate).
"""

from __future__ import annotations

import os

import pytest
import yaml

from ocr_tasks.config import REPO_ROOT, load_config
from ocr_tasks.errors import UsageError
from ocr_tasks.release.infra_validation import ONNX_RUNTIMES
from ocr_tasks.release.onnx_export import RAPIDOCR_SETTINGS, export_onnx, rapidocr_settings
from ocr_tasks.release.registry import publish_model, pull_model

DET_SPEC = {
    "Global": {"model_name": "PP-OCRv5_mobile_det"},
    "PreProcess": {"transform_ops": [
        {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
        {"DetResizeForTest": {"limit_side_len": 64, "limit_type": "min"}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "order": "hwc"}},
        {"ToCHWImage": None}]},
    "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.9},
}
REC_SPEC = {
    "Global": {"model_name": "PP-OCRv5_mobile_rec"},
    "PreProcess": {"transform_ops": [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]},
    "PostProcess": {"name": "CTCLabelDecode", "character_dict": ["0", "1", "€"]},
}


def _bundle(root, with_onnx=False):
    for kind, spec in (("det", DET_SPEC), ("rec", REC_SPEC)):
        (root / kind).mkdir(parents=True)
        (root / kind / "inference.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        (root / kind / "inference.json").write_text("{}")
        (root / kind / "inference.pdiparams").write_bytes(b"weights")
        if with_onnx:
            (root / kind / "inference.onnx").write_bytes(b"onnx")
    (root / "rec" / "dict.txt").write_text("0\n1\n€\n", encoding="utf-8")
    return root


def test_rapidocr_settings_read_as_paddleocr_reads_the_paddle_files(tmp_path):
    settings = rapidocr_settings(_bundle(tmp_path / "bundle"))
    assert settings == {
        "Global.use_cls": False, "Global.text_score": 0.0,
        "Det.model_path": "det/inference.onnx", "Det.thresh": 0.3, "Det.box_thresh": 0.6, "Det.unclip_ratio": 1.9,
        "Det.limit_side_len": 64, "Det.limit_type": "min",
        "Det.mean": [0.485, 0.456, 0.406], "Det.std": [0.229, 0.224, 0.225],
        "Det.use_dilation": False, "Det.score_mode": "fast",
        "Rec.model_path": "rec/inference.onnx", "Rec.rec_img_shape": [3, 48, 320], "Rec.rec_keys_path": "rec/dict.txt",
    }


def test_without_a_converter_the_bundle_says_why_and_nothing_is_written(tmp_path):
    bundle = _bundle(tmp_path / "bundle")
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    off = export_onnx(bundle, None, 14, tmp_path / "work")
    assert not off.made and off.skipped == "onnx.converter is null: ONNX is not exported"
    gone = export_onnx(bundle, str(tmp_path / "no-venv" / "bin" / "python"), 14, tmp_path / "work")
    assert not gone.made and "no converter python at" in gone.skipped and "make onnx-envs" in gone.skipped
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before


def test_a_failing_conversion_leaves_no_onnx_behind(tmp_path):
    """paddle2onnx (or its interpreter) failing is a reason in the manifest, not a half-written bundle."""
    converter = load_config().onnx.converter
    if not os.path.isfile(converter):
        pytest.skip(f"no converter at {converter}: `make onnx-envs` (make test does)")
    bundle = _bundle(tmp_path / "bundle")        # inference.json "{}" is no program paddle2onnx can read
    result = export_onnx(bundle, converter, 14, tmp_path / "work", timeout_s=300)
    assert not result.made and result.skipped.startswith("paddle2onnx could not convert det: "), result.skipped
    assert result.converter["paddle2onnx"] == "2.1.0"
    assert not list(bundle.rglob("*.onnx")) and not (bundle / RAPIDOCR_SETTINGS).exists()


def test_the_settings_travel_with_the_models_consumers_pull(storage, tmp_path):
    bundle = _bundle(tmp_path / "bundle", with_onnx=True)
    (bundle / RAPIDOCR_SETTINGS).write_text(yaml.safe_dump(rapidocr_settings(bundle)), encoding="utf-8")
    publish_model(storage, "ocr", "v1", bundle, {"note": "test"})
    pulled = pull_model(storage, "ocr", tmp_path / "pulled")
    assert yaml.safe_load((pulled / RAPIDOCR_SETTINGS).read_text())["Rec.model_path"] == "rec/inference.onnx"
    assert (pulled / "rec" / "inference.onnx").read_bytes() == b"onnx"


def test_onnx_config_resolves_checkout_paths_and_refuses_an_old_opset():
    from ocr_tasks.config import PipelineConfig

    for defaults in (PipelineConfig(), load_config()):   # the code's defaults and configs/pipeline.yaml's agree
        assert defaults.onnx.converter == str(REPO_ROOT / ".venv-onnx-convert" / "bin" / "python")
        assert defaults.infra_validation.onnx_runtimes == {"onnx-newest": str(REPO_ROOT / ".venv-onnx-newest/bin/python")}
    config = load_config(overrides=["infra_validation.onnx_runtimes={onnx-newest: .venv-onnx-newest/bin/python}"])
    assert config.onnx.converter == str(REPO_ROOT / ".venv-onnx-convert" / "bin" / "python")
    assert config.infra_validation.onnx_runtimes == {"onnx-newest": str(REPO_ROOT / ".venv-onnx-newest/bin/python")}
    assert load_config(overrides=["onnx.converter=null"]).onnx.converter is None
    with pytest.raises(UsageError, match="onnx.opset: must be >= 7"):
        load_config(overrides=["onnx.opset=6"])


def test_the_onnx_envs_are_built():
    """`make test` builds them (make onnx-envs): the runners and demo tests convert and read with them."""
    missing = [name for name, python in ONNX_RUNTIMES.items() if not python.is_file()]
    if not os.path.isfile(load_config().onnx.converter):
        missing.append("onnx-convert")
    if missing and not os.environ.get("CI"):
        pytest.skip(f"ONNX environments {missing} not built: run `make onnx-envs` (make test does)")
    assert not missing, f"ONNX environments {missing} not built: .ci/run must build them (make test)"


def test_read_with_onnx_says_when_a_model_has_no_onnx(tmp_path, capsys):
    from ocr_tasks.cli import main

    bundle = _bundle(tmp_path / "bundle")                     # published before ONNX, or its conversion failed
    from ocr_tasks.embedded.synthetic import make_text_line_image
    from ocr_tasks.ingest.crops import encode_jpeg

    image = tmp_path / "photo.jpg"
    image.write_bytes(encode_jpeg(make_text_line_image("20261", height=40, rng=0)))
    assert main(["read", "--model", str(bundle), "--engine", "onnx", str(image)]) == 2
    err = capsys.readouterr().err
    assert f"{bundle}: no rapidocr.yaml: this model was published without ONNX" in err and "Traceback" not in err
