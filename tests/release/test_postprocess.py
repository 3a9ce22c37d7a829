"""The det post-processing grid read on val at export (release/postprocess.py, config `postprocess`)."""

from __future__ import annotations

import yaml

from ocr_tasks.config import load_config
from ocr_tasks.release.postprocess import DEFAULT, choose_postprocess, settings_grid


def test_the_grid_is_the_configured_product_with_paddleocrs_defaults_first():
    tuning = load_config().postprocess
    grid = settings_grid(tuning.unclip_ratios, tuning.box_threshes)
    assert grid[0] == DEFAULT                         # kept on a tie
    assert sorted(s["unclip_ratio"] for s in grid) == sorted(tuning.unclip_ratios)
    assert len(settings_grid([1.5, 2.0], [0.5, 0.6])) == 4
    assert settings_grid([2.0], [0.5]) == [{"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 2.0}]


def test_val_images_0_keeps_the_templates_values_and_reads_nothing(tmp_path):
    for kind in ("det", "rec"):
        (tmp_path / "bundle" / kind).mkdir(parents=True)
        (tmp_path / "bundle" / kind / "inference.yml").write_text(
            yaml.safe_dump({"PostProcess": {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5}}))
    # no dataset at all: with tuning off nothing is read (a read would fail on the missing val split)
    choice = choose_postprocess(tmp_path / "bundle", tmp_path / "no-data", tmp_path / "work",
                                settings_grid([2.0], [0.6]), max_images=0)
    assert choice.skipped and "postprocess.val_images is 0" in choice.skipped and choice.tried == []
    assert choice.chosen == {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5}
    assert not (tmp_path / "work").exists()
