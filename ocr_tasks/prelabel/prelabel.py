"""unlabeled/<batch>/ -> prelabeled/<batch>/<model_version>/: raw images pre-labelled by a published model,
as a folder a labeller opens in PPOCRLabel to correct instead of draw, hardest images first.

    prelabel_batch(storage, config, batch, model_version=None) -> Prelabelled

    prelabeled/<batch>/<version>/<batch>/    the PPOCRLabel folder: the batch's images, Cache.cach (the
                                             model's boxes and texts), empty fileState.txt and Label.txt
    prelabeled/<batch>/<version>/ranking.csv, ranking.html, thumbs/   hardest first, each image with the
                                             model's boxes, reads and why it ranks there (prelabel/ranking.py)
    prelabeled/<batch>/<version>/done.json   written last: a batch done by a version is never redone

The model is pulled (sha256-verified) and read offline by the consumer probe, the same PaddleOCR 3.x
path consumers and the gate's infra validation use, in `prelabel.python` (default: the pipeline's own).
The inner folder carries the batch's name because PPOCRLabel keys its labels by "<folder>/<file>":
labellers confirm there, export, and upload the folder to incoming/<batch>/, which the nightly run takes.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from ocr_tasks.config import PipelineConfig
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.exports import unsafe_export_name
from ocr_tasks.ingest.images import inspect_image
from ocr_tasks.prelabel.ppocrlabel_files import write_ppocrlabel_folder
from ocr_tasks.prelabel.ranking import DEFAULT_BOX_THRESH, rank_images, write_ranking
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.vocabulary import DET, REC, timestamp

log = logging.getLogger(__name__)

# what PPOCRLabel lists when it opens a folder (Qt's image formats, top level only)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass
class Prelabelled:
    batch: str
    model_version: str
    uri: str                       # the PPOCRLabel folder
    ranking_uri: str = ""          # ranking.html, hardest first
    images: int = 0
    already_done: bool = False
    seconds: float = 0.0
    left_out: list[str] = field(default_factory=list)   # objects that are not images PPOCRLabel opens, and why

    def to_json(self) -> dict:
        return asdict(self)


def unlabeled_batches(storage: Storage) -> list[str]:
    """The batch folders under unlabeled/ (a name the pipeline cannot store safely is left out, logged)."""
    batches = []
    for name in sorted(storage.list_dirs(layout.UNLABELED)):
        why = unsafe_export_name(name)
        if why:
            log.warning("unlabeled/%s/ left out: %s", name, why)
            continue
        batches.append(name)
    return batches


def batches_to_prelabel(storage: Storage, model_version: str) -> list[str]:
    """The batches `model_version` has not pre-labelled yet."""
    return [b for b in unlabeled_batches(storage) if not storage.exists(layout.prelabel_done_key(b, model_version))]


def prelabel_batch(storage: Storage, config: PipelineConfig, batch: str, model_version: str | None = None
                   ) -> Prelabelled:
    from ocr_tasks.release.infra_validation import read_samples
    from ocr_tasks.release.registry import check_name, production_version, pull_model

    why = unsafe_export_name(batch)
    if why:
        raise UsageError(f"unlabeled/{batch}/: {why}")
    version = model_version or production_version(storage, config.model_name)
    if version is None:
        raise UsageError(f"model {config.model_name} has no production version yet: nothing to pre-label with")
    check_name(version, "model version")
    out_prefix = layout.prelabel_prefix(batch, version)
    result = Prelabelled(batch, version, storage.uri(out_prefix + f"{batch}/"), storage.uri(out_prefix + "ranking.html"))
    if storage.exists(layout.prelabel_done_key(batch, version)):
        log.info("unlabeled/%s/ was pre-labelled by %s already: %s", batch, version, result.uri)
        result.already_done = True
        return result
    started = time.monotonic()
    model = pull_model(storage, config.model_name, config.work.prelabel / "models", version)
    kinds = [kind for kind in (DET, REC) if (model / kind / "inference.yml").is_file()]
    if DET not in kinds:
        raise UsageError(f"model {config.model_name} {version} has no det: pre-labelling needs the detector "
                         "(with rec, boxes come with texts; without, boxes alone)")
    stage = config.work.prelabel / batch / version
    shutil.rmtree(stage, ignore_errors=True)
    folder = stage / batch
    names = _fetch_images(storage, batch, folder, result.left_out, config)
    if not names:
        raise UsageError(f"unlabeled/{batch}/ holds no image PPOCRLabel opens ({', '.join(sorted(IMAGE_SUFFIXES))}, "
                         "top level of the folder)")
    read, answer = read_samples(model, kinds, [str(folder / n) for n in names], [], "prelabel",
                                config.prelabel.python, stage / "probe", timeout_s=config.prelabel.timeout_s,
                                device="gpu:0" if config.prelabel.on_gpu else "cpu")
    if read.error:
        raise UsageError(f"model {version} could not read unlabeled/{batch}/ ({read.label()}): "
                         f"{read.error.get('type')}: {str(read.error.get('message', '')).splitlines()[:1]}")
    reads = _reads_by_name(answer)
    write_ppocrlabel_folder(folder, {name: [(line["poly"], line["text"]) for line in reads[name]["lines"]]
                                     for name in names})
    write_ranking(rank_images(reads, _box_thresh(model)), stage, folder, version)
    shutil.rmtree(stage / "probe", ignore_errors=True)
    storage.upload_dir(stage, out_prefix)
    result.images, result.seconds = len(names), round(time.monotonic() - started, 1)
    storage.put_json(layout.prelabel_done_key(batch, version),
                     {"model_version": version, "images": len(names), "seconds": result.seconds, "at": timestamp(),
                      "left_out": result.left_out})
    log.info("unlabeled/%s/: %d image(s) pre-labelled by %s in %.1fs -> %s", batch, len(names), version,
             result.seconds, result.uri)
    return result


def _fetch_images(storage: Storage, batch: str, folder: Path, left_out: list[str], config: PipelineConfig
                  ) -> list[str]:
    prefix = f"{layout.UNLABELED}{batch}/"
    names = []
    for info in storage.list(prefix):
        rel = info.key[len(prefix):]
        if "/" in rel:
            left_out.append(f"{rel}: in a subfolder (PPOCRLabel opens the folder's top level only)")
        elif PurePosixPath(rel).suffix.lower() not in IMAGE_SUFFIXES:
            left_out.append(f"{rel}: not an image PPOCRLabel opens")
        else:
            names.append(rel)
    folder.mkdir(parents=True, exist_ok=True)
    storage.download_many((prefix + name, folder / name) for name in names)
    readable = []
    for name in sorted(names):
        # ingest's own check: the same size limits, decode budget and truncation messages as validation
        problem = inspect_image(folder / name, max_pixels=config.validation.max_image_pixels,
                                max_side=config.validation.max_image_side).problem
        if problem:
            left_out.append(f"{name}: {problem}")
            (folder / name).unlink()
        else:
            readable.append(name)
    return readable


def _reads_by_name(answer: dict) -> dict[str, dict]:
    reads: dict[str, dict] = {}
    for item in answer.get("ocr") or []:
        reads[Path(item["image"]).name] = {"lines": item["lines"], "box_scores": [], "box_polys": []}
    for item in answer.get("det") or []:
        entry = reads.setdefault(Path(item["image"]).name, {"lines": [], "box_scores": [], "box_polys": []})
        entry["box_scores"] = list(item.get("scores") or [])
        entry["box_polys"] = list(item.get("polys") or [])     # one per score: the ranking page draws them
        if not answer.get("ocr"):   # a det-only model: its boxes, no texts, for the labeller to type
            entry["lines"] = [{"poly": poly, "text": "", "score": None} for poly in item["polys"]]
    return reads


def _box_thresh(model: Path) -> float:
    try:
        spec = yaml.safe_load((model / DET / "inference.yml").read_text(encoding="utf-8")) or {}
        return float((spec.get("PostProcess") or {}).get("box_thresh", DEFAULT_BOX_THRESH))
    except (OSError, ValueError, TypeError, yaml.YAMLError):
        return DEFAULT_BOX_THRESH
