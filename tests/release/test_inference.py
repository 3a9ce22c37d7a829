"""ocr_tasks/release/inference.py: what it refuses before loading PaddleOCR (the real read is in test_demo.py)."""

from __future__ import annotations


import pytest

from ocr_tasks.embedded.demo import DEMO_DET_MIN_HMEAN, _first_test_image, write_demo_config
from ocr_tasks.config import load_config
from ocr_tasks.errors import UsageError
from ocr_tasks.release.inference import model_name_of, read_image


def test_model_name_comes_from_the_exported_inference_yml(tmp_path):
    (tmp_path / "inference.yml").write_text("Global:\n  model_name: PP-OCRv5_mobile_rec\nPreProcess: {}\n")
    assert model_name_of(tmp_path) == "PP-OCRv5_mobile_rec"
    (tmp_path / "inference.yml").write_text("Global: {}\n")
    with pytest.raises(UsageError, match=r"inference.yml: no Global.model_name"):
        model_name_of(tmp_path)


def test_read_refuses_a_folder_that_is_not_a_pulled_model(tmp_path):
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "inference.yml").write_text("Global:\n  model_name: PP-OCRv5_mobile_det\n")
    with pytest.raises(UsageError, match="no rec/inference.yml"):
        read_image(tmp_path, tmp_path / "x.jpg")
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "inference.yml").write_text("Global:\n  model_name: PP-OCRv5_mobile_rec\n")
    with pytest.raises(UsageError, match="image not found"):
        read_image(tmp_path, tmp_path / "x.jpg")


def test_demo_config_is_the_shipped_one_with_its_bucket_scratch_det_bar_stock_baseline_and_rec_alone(tmp_path):
    config = load_config(write_demo_config(tmp_path, "demo-bucket"))
    shipped = load_config()
    assert config.storage.bucket == "demo-bucket" and config.work_path == (tmp_path / "work").resolve()
    # the demo's night: stock PP-OCRv4 as the baseline, the rec retrained (stock det finds every line of its data)
    assert config.training == shipped.training.model_copy(update={"models": ["rec"]}) != shipped.training
    assert config.baseline.det == "pretrained/PP-OCRv4_mobile_det/" and config.baseline_source("rec")[0] == \
        "pretrained/PP-OCRv4_mobile_rec/" and shipped.baseline_source("rec") is None
    assert config.gate == shipped.gate.model_copy(update={"det_min_hmean": DEMO_DET_MIN_HMEAN}) != shipped.gate


def test_demo_sample_is_the_first_labelled_test_image_with_a_price_where_there_is_one(tmp_path):
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "test.txt").write_text(
        'images/a.jpg\t[{"transcription": "###", "points": [[0,0],[1,0],[1,1],[0,1]]}]\n'
        'images/b.jpg\t[{"transcription": "42", "points": [[0,9],[1,9],[1,10],[0,10]]},'
        ' {"transcription": "7", "points": [[0,1],[1,1],[1,2],[0,2]]}]\n')
    image, texts = _first_test_image(tmp_path)
    assert image == tmp_path / "images/b.jpg" and texts == ["7", "42"]      # top to bottom
    assert _first_test_image(tmp_path, showing="€")[0] == tmp_path / "images/b.jpg"   # none has it: the first
    with (tmp_path / "det" / "test.txt").open("a", encoding="utf-8") as listing:
        listing.write('images/c.jpg\t[{"transcription": "€12", "points": [[0,1],[1,1],[1,2],[0,2]]}]\n')
    assert _first_test_image(tmp_path, showing="€") == (tmp_path / "images/c.jpg", ["€12"])   # the demo's: a price
