"""Rec train crops cut the way a detector cuts them: looser (DB's unclip), sometimes short, never the tight
label box alone; deterministic, train split only, and handed to PaddleOCR beside rec/train.txt."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ocr_tasks.config import load_config
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.training.detector_crops import detector_like_quad, write_detector_like_crops
from tests.kit import export


@pytest.fixture
def dataset(tmp_path):
    out = tmp_path / "dataset"
    prepare([str(export(tmp_path / "labeller", n_images=20, seed=3))], out, load_config())
    return out


def _train_boxes(data_dir) -> list[dict]:
    return [box for line in (data_dir / "det" / "train.txt").read_text(encoding="utf-8").splitlines()
            for box in json.loads(line.split("\t", 1)[1]) if box["transcription"] not in ("###", "*")]


def test_copies_of_every_train_box_with_its_text_and_nothing_of_val_or_test(dataset, tmp_path):
    labels = write_detector_like_crops(dataset, tmp_path / "crops", copies=2, margin=(-0.05, 0.6), jitter=0.05,
                                       max_text_length=25)
    lines = labels.read_text(encoding="utf-8").splitlines()
    boxes = _train_boxes(dataset)
    assert len(lines) == 2 * len(boxes)
    assert sorted(line.split("\t")[1] for line in lines) == sorted(2 * [b["transcription"] for b in boxes])
    for line in lines[:10]:
        path = line.split("\t")[0]
        assert path.startswith("/") and cv2.imread(path) is not None     # absolute: beside rec/train.txt's data_dir
    # the same data again (a resumed stage, another worker): the same crops
    again = write_detector_like_crops(dataset, tmp_path / "again", copies=2, margin=(-0.05, 0.6), jitter=0.05,
                                      max_text_length=25)
    first = sorted(p.read_bytes() for p in (tmp_path / "crops" / "crops").iterdir())
    assert first == sorted(p.read_bytes() for p in (tmp_path / "again" / "crops").iterdir())
    assert again.read_text().replace("/again/", "/crops/") == labels.read_text()
    assert write_detector_like_crops(dataset, tmp_path / "none", copies=0, margin=(0, 0), jitter=0,
                                     max_text_length=25) is None


def test_the_quads_are_looser_than_the_label_box_on_average_and_stay_inside_the_image():
    rng = np.random.default_rng(0)
    box = [[100, 50], [300, 50], [300, 80], [100, 80]]          # 200 x 30
    heights = []
    for _ in range(200):
        quad = detector_like_quad(box, rng, margin=(-0.05, 0.6), jitter=0.05, size=(400, 120))
        assert quad[:, 0].min() >= 0 and quad[:, 0].max() <= 399 and quad[:, 1].max() <= 119
        heights.append(float(np.linalg.norm(quad[0] - quad[3])))
    assert min(heights) < 30 < max(heights)                     # sometimes short, mostly looser
    assert 40 < float(np.mean(heights)) < 52                    # 30 + 2 x 0.275 x 30 on average


def test_rec_training_gets_them_beside_the_tight_crops(dataset, tmp_path, monkeypatch):
    from ocr_tasks.training import train as training

    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}"])
    settings = config.training.rec
    assert settings.detector_like_crops.copies == 2          # the cpu profile's choice
    dataset_section = {"label_file_list": [str(dataset / "rec" / "train.txt")]}
    training._add_detector_like_crops(dataset_section, settings.detector_like_crops, dataset, tmp_path / "d")
    assert dataset_section["label_file_list"][0].endswith("rec/train.txt")
    assert dataset_section["label_file_list"][1] == str(tmp_path / "d" / "train.txt")
    assert dataset_section["ratio_list"] == [1.0, 1.0]
