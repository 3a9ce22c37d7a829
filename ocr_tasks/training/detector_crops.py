"""Rec training crops that look like what the detector hands over.

At inference a recogniser never sees the labeller's tight box: it gets a crop of the detector's box,
which DB's unclip makes looser (PaddleOCR's default `unclip_ratio` 1.5 adds most of a line's height
around it) and which is sometimes cut short by a character. A rec trained on tight crops alone reads
its test crops perfectly and misreads a quarter of the lines end to end (measured on the demo: rec acc
1.000, det hmean 0.974, end to end 0.774). PaddleOCR's maintainers give the same answer in the field
(#2246, #11930): train on crops with random margins.

Chosen, and why: `copies` extra crops per train box, each cut from the label polygon grown (or shrunk)
on every side by a margin drawn from `margin` (a fraction of the box's height) with each corner jittered
by `jitter`. Drawn once per dataset and seed rather than per epoch: PaddleOCR's data loader has no such
op, and a fixed set keeps a resumed run's data identical. Crops of the trained detector's own boxes
would need det before rec (they train side by side). Val and test stay crops of the label boxes, so rec
metrics stay comparable across runs; what consumers read end to end is measured by infra validation.

    write_detector_like_crops(data_dir, out_dir, settings, max_text_length) -> label list (absolute paths)
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ocr_tasks.ingest.crops import crop_text_region, encode_jpeg, order_quad
from ocr_tasks.ingest.images import decoded
from ocr_tasks.ingest.ppocrlabel import Box

log = logging.getLogger(__name__)


def write_detector_like_crops(data_dir: Path, out_dir: Path, *, copies: int, margin: tuple[float, float],
                              jitter: float, max_text_length: int | None, seed: int = 0) -> Path | None:
    """Cut `copies` detector-like crops of every text box of `data_dir`'s det train split into `out_dir`;
    returns their PaddleOCR label list (absolute paths, so it sits beside rec/train.txt in one data_dir),
    or None when there is nothing to cut. Done once per folder: a resumed stage reuses them."""
    out_dir = Path(out_dir)
    labels = out_dir / "train.txt"
    if labels.exists():
        return labels
    if copies < 1:
        return None
    train = Path(data_dir) / "det" / "train.txt"
    lines: list[str] = []
    images = 0
    for row in train.read_text(encoding="utf-8").split("\n"):
        if not row.strip():
            continue
        relpath, boxes_json = row.split("\t", 1)
        boxes = [Box(**item) for item in json.loads(boxes_json)]
        wanted = [(i, box) for i, box in enumerate(boxes) if not box.is_ignore_region
                  and (max_text_length is None or len(box.transcription) <= max_text_length)]
        if not wanted:
            continue
        with decoded((Path(data_dir) / relpath).read_bytes()) as image:
            if image is None:
                continue
            images += 1
            for index, box in wanted:
                for copy in range(copies):
                    rng = np.random.default_rng(_seed(relpath, index, copy, seed))
                    quad = detector_like_quad(box.points, rng, margin=margin, jitter=jitter,
                                              size=(image.shape[1], image.shape[0]))
                    name = f"{Path(relpath).stem}_{index}_{copy}.jpg"
                    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
                    (out_dir / "crops" / name).write_bytes(encode_jpeg(crop_text_region(image, quad)))
                    lines.append(f"{(out_dir / 'crops' / name).absolute()}\t{box.transcription}\n")
    if not lines:
        return None
    tmp = labels.with_suffix(".part")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(labels)
    log.info("rec: %d detector-like crops (%d per box, margin %s of the height, jitter %s) from %d train images",
             len(lines), copies, margin, jitter, images)
    return labels


def detector_like_quad(points, rng: np.random.Generator, *, margin: tuple[float, float], jitter: float,
                       size: tuple[int, int]) -> np.ndarray:
    """The box as a detector might return it: its minimum-area rectangle grown by a margin drawn from
    `margin` (times its height; negative cuts into the text), each corner moved by up to `jitter` x height,
    kept inside the image of `size` (width, height)."""
    import cv2

    (cx, cy), (w, h), angle = cv2.minAreaRect(np.asarray(points, dtype=np.float32))
    height = max(min(w, h), 1.0)
    grow = rng.uniform(*margin) * height
    rect = ((cx, cy), (max(w + 2 * grow, 2.0), max(h + 2 * grow, 2.0)), angle)
    quad = order_quad(cv2.boxPoints(rect))
    quad = quad + rng.uniform(-jitter, jitter, size=quad.shape) * height
    quad[:, 0] = np.clip(quad[:, 0], 0, size[0] - 1)
    quad[:, 1] = np.clip(quad[:, 1], 0, size[1] - 1)
    return quad.astype(np.float32)


def _seed(relpath: str, index: int, copy: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{relpath}\0{index}\0{copy}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
