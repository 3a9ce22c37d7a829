"""The det post-processing consumers get, chosen on the val split for reading end to end.

DB's `thresh`, `box_thresh` and `unclip_ratio` decide how large the boxes the recogniser receives are,
and so what it reads (PaddleOCR #12030: tune per scenario). The export step reads the val split
(never the test split the gate judges) with the exported det+rec in the pipeline's own runtime,
once per setting of the configured grid (`postprocess`, configs/pipeline.yaml), and writes the setting with the best end-to-end hmean into
`det/inference.yml` (PostProcess), where TextDetection reads it; the PaddleOCR(...) pipeline gets it as
`text_det_*` arguments (release/inference.pipeline_settings, the consumer snippet in docs/consumers.md).

    choose_postprocess(bundle, data_dir, work, grid) -> PostprocessChoice (and bundle/det/inference.yml updated)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from ocr_tasks.release.read_metrics import end_to_end_of
from ocr_tasks.vocabulary import DET, REC

log = logging.getLogger(__name__)

# PaddleOCR's defaults: the first setting tried, and kept on a tie
DEFAULT = {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5}
VAL_SPLIT = "val"


def settings_grid(unclip_ratios: Sequence[float], box_threshes: Sequence[float],
                  thresh: float = DEFAULT["thresh"]) -> list[dict[str, float]]:
    """Every unclip_ratio x box_thresh (config `postprocess`), PaddleOCR's defaults first when among them."""
    grid = [{"thresh": thresh, "box_thresh": box, "unclip_ratio": unclip}
            for box in box_threshes for unclip in unclip_ratios]
    return sorted(grid, key=lambda setting: setting != DEFAULT)


@dataclass
class PostprocessChoice:
    chosen: dict[str, float]                       # thresh, box_thresh, unclip_ratio
    val_images: int = 0
    tried: list[dict] = field(default_factory=list)   # each setting with its val e2e precision/recall/hmean
    skipped: str | None = None                     # why nothing was tuned (the template's values stay)


def choose_postprocess(bundle: Path, data_dir: Path, work: Path, grid: list[dict[str, float]], *,
                       max_images: int = 100, python: str | None = None, timeout_s: float = 1800,
                       ) -> PostprocessChoice:
    """Read val with every setting of `grid` (settings_grid); write the best into bundle/det/inference.yml."""
    from ocr_tasks.release.infra_validation import labelled_images, read_samples

    spec = bundle / DET / "inference.yml"
    if not spec.is_file() or not (bundle / REC / "inference.yml").is_file():
        return PostprocessChoice(_current(spec), skipped="the bundle lacks det or rec: nothing reads end to end")
    if max_images == 0:
        return PostprocessChoice(_current(spec), skipped="postprocess.val_images is 0: the template's values stay")
    boxes = labelled_images(data_dir / DET / f"{VAL_SPLIT}.txt", data_dir)
    images = sorted(boxes)[:max_images]
    if not images:
        return PostprocessChoice(_current(spec), skipped="the val split has no images")
    read, answer = read_samples(bundle, [DET, REC], images, [], "postprocess", python, work, timeout_s=timeout_s,
                                pipeline=False, extra_job={"settings": [_args(s) for s in grid]})
    if read.error or len(answer.get("tuning", [])) != len(grid):
        why = (read.error or {}).get("message", "no answer")
        log.warning("det post-processing not tuned (the template's values stay): %s", why)
        return PostprocessChoice(_current(spec), len(images), skipped=f"the val reading failed: {why[:300]}")
    tried = []
    for setting, reads in zip(grid, answer["tuning"]):
        scores = end_to_end_of(boxes, reads)
        tried.append({**setting, **{k: round(v, 4) for k, v in scores.items()}})
    best = max(range(len(grid)), key=lambda i: (tried[i]["e2e_hmean"], -i))   # first (defaults) on a tie
    chosen = grid[best]
    _write(spec, chosen)
    log.info("det post-processing chosen on %d val images: %s (val e2e hmean %.4f; %s %.4f)", len(images), chosen,
             tried[best]["e2e_hmean"], "PaddleOCR's defaults" if grid[0] == DEFAULT else grid[0], tried[0]["e2e_hmean"])
    return PostprocessChoice(dict(chosen), len(images), tried)


def _args(setting: dict[str, float]) -> dict[str, float]:
    return {f"text_det_{key}": value for key, value in setting.items()}


def _current(spec: Path) -> dict[str, float]:
    try:
        post = (yaml.safe_load(spec.read_text(encoding="utf-8")) or {}).get("PostProcess") or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {key: post[key] for key in DEFAULT if key in post}


def _write(spec: Path, setting: dict[str, float]) -> None:
    config = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    config.setdefault("PostProcess", {}).update(setting)
    tmp = spec.with_suffix(".yml.part")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(spec)
