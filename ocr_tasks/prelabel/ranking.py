"""Hardest first: the batch's images ranked by how unsure the production model is of them.

An image's uncertainty (0 sure .. 1 unsure) is the largest of three signs PaddleOCR gives:

    nothing found     no text line detected at all                          -> 1.0
    unsure reading    its least confident line: 1 - lowest rec score        (rec_score)
    borderline box    its weakest box against the detector's box_thresh:    (det_score)
                      1 - (score - box_thresh) / (1 - box_thresh), clipped to 0..1

The labeller corrects from the top of ranking.csv (ranking.html shows thumbnails); the images the
model misreads gather there, which is where the next model gains most (bench/prelabel.py measures it).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_BOX_THRESH = 0.6       # PaddleOCR's DB default, when the model's inference.yml does not say
_THUMB = 240


@dataclass
class RankedImage:
    rank: int
    image: str
    uncertainty: float
    lines: int
    lowest_rec_score: float | None
    mean_rec_score: float | None
    weakest_box_score: float | None
    why: str


def uncertainty_of(rec_scores: list[float] | None, box_scores: list[float], box_thresh: float) -> tuple[float, str]:
    """`rec_scores` None: a det-only model (boxes, no texts), judged by its boxes alone."""
    if not rec_scores and not box_scores:
        return 1.0, "no text found"
    reading = 0.0 if rec_scores is None else 1.0 - min(rec_scores) if rec_scores else 1.0
    border = 0.0
    if box_scores:
        margin = (min(box_scores) - box_thresh) / max(1e-6, 1.0 - box_thresh)
        border = min(1.0, max(0.0, 1.0 - margin))
    return (reading, "unsure reading") if reading >= border else (border, "borderline box")


def rank_images(reads: dict[str, dict[str, Any]], box_thresh: float = DEFAULT_BOX_THRESH) -> list[RankedImage]:
    """`reads`: file name -> {"lines": [{"text", "score", "poly"}], "box_scores": [...]}; hardest first.
    A line's score None: the model has no rec (boxes only)."""
    rows = []
    for name, read in reads.items():
        lines = read.get("lines") or []
        rec = [float(line["score"]) for line in lines if line.get("score") is not None]
        boxes = [float(s) for s in read.get("box_scores") or []]
        det_only = bool(lines) and not rec
        value, why = uncertainty_of(None if det_only else rec, boxes, box_thresh)
        rows.append(RankedImage(0, name, round(value, 4), len(lines), round(min(rec), 4) if rec else None,
                                round(sum(rec) / len(rec), 4) if rec else None,
                                round(min(boxes), 4) if boxes else None, why))
    rows.sort(key=lambda r: (-r.uncertainty, r.image))
    for number, row in enumerate(rows, 1):
        row.rank = number
    return rows


def write_ranking(rows: list[RankedImage], out: Path, images: Path, model_version: str) -> None:
    """ranking.csv and ranking.html (templates/ranking.html.j2; thumbnails in thumbs/) in `out`; `images` is
    the PPOCRLabel folder."""
    from PIL import Image

    from ocr_tasks import pages

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ranking.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0]) if rows else ["rank", "image"]))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    thumbs = out / "thumbs"
    thumbs.mkdir(exist_ok=True)
    shown = []
    for row in rows:
        thumb = thumbs / f"{Path(row.image).name}.jpg"   # the whole name: a.jpg and a.png are two pictures
        with Image.open(images / row.image) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail((_THUMB, _THUMB))
            picture.save(thumb, quality=85)
        shown.append((row, thumb.name))
    pages.write(out / "ranking.html", "ranking.html.j2", batch=images.name, model_version=model_version, rows=shown)
