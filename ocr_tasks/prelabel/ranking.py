"""Hardest first: the batch's images ranked by how unsure the production model is of them.

An image's uncertainty (0 sure .. 1 unsure) is the largest of three signs PaddleOCR gives:

    nothing found     no text line detected at all                          -> 1.0
    unsure reading    its least confident line: 1 - lowest rec score        (rec_score)
    borderline box    its weakest box against the detector's box_thresh:    (det_score)
                      1 - (score - box_thresh) / (1 - box_thresh), clipped to 0..1

The labeller corrects from the top of ranking.csv or ranking.html. The page shows each image with the
model's polygons drawn on it (thumbs/<file name>.jpg, `draw_marks`: reads green, doubtful reads red,
borderline det boxes orange, the one that sets the score thicker), its reads listed beside it (text and
rec score, the doubtful ones marked) and a reason written from its own numbers (`reason`): its score,
what sets it (the least sure read and its text, or the weakest box against box_thresh), and how many
reads are doubtful (rec score under DOUBTFUL_READ) and boxes borderline (det score closer to box_thresh
than to 1). Drawing only: no model runs here.
The images the model misreads gather at the top, which is where the next model gains most
(bench/prelabel.py measures it).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ocr_tasks.untrusted import for_log

DEFAULT_BOX_THRESH = 0.6       # PaddleOCR's DB default, when the model's inference.yml does not say
DOUBTFUL_READ = 0.8            # a read under this rec score is marked doubtful
_PICTURE = 480                 # the longest side of a row's picture
_QUOTED = 24                   # characters of a read quoted in a reason
_COLOURS = {"read": (0, 150, 60), "doubtful": (220, 0, 0), "borderline": (255, 140, 0), "box": (0, 110, 230)}


def borderline_below(box_thresh: float) -> float:
    """A det box under this score is borderline: closer to box_thresh than to 1 (its own uncertainty >= 0.5)."""
    return (1.0 + box_thresh) / 2


@dataclass
class Mark:
    """One read (a pipeline line: polygon, text, rec score) or one det box (polygon, det score) of an image."""
    poly: list[list[float]]
    score: float | None        # rec score of a read, det score of a box; None: a det-only model's line
    text: str = ""             # a read's text, from the model: data, never markup
    doubtful: bool = False     # a read under DOUBTFUL_READ, a box under borderline_below(box_thresh)
    sets_score: bool = False   # the read or box whose score is the image's uncertainty


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
    doubtful_reads: int = 0
    borderline_boxes: int = 0
    reads: list[Mark] = field(default_factory=list, repr=False)   # drawn and listed, not in ranking.csv
    boxes: list[Mark] = field(default_factory=list, repr=False)

    def boxes_shown(self) -> list[tuple[int, Mark]]:
        """(number, box) of det's boxes the page draws and lists: the borderline ones and the one that sets the
        score, or every box when the image has no reads (a det-only model, or rec kept none)."""
        return [(number, box) for number, box in enumerate(self.boxes, 1)
                if box.doubtful or box.sets_score or not self.reads]


CSV_FIELDS = [f.name for f in fields(RankedImage) if f.name not in ("reads", "boxes")]


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


def _quoted(text: str) -> str:
    """A read inside a reason: one line (controls and bidi shown, as in logs), cut short; still data."""
    shown = for_log(text)
    return f"“{shown[:_QUOTED]}…”" if len(shown) > _QUOTED else f"“{shown}”"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}{'es' if word.endswith('x') else 's'}"


def _every(count: int, word: str) -> str:
    if count == 1:
        return f"its one {word}"
    return f"both {_plural(2, word)[2:]}" if count == 2 else f"all {_plural(count, word)}"


def reason(value: float, sign: str, reads: list[Mark], boxes: list[Mark], box_thresh: float,
           det_only: bool = False) -> str:
    """Why an image ranks where it does, from its own numbers: its score, the read or box that sets it, and
    how many reads are doubtful and boxes borderline. `sign`: uncertainty_of's; `det_only`: no rec."""
    if sign == "no text found":
        return f"no text found: the model saw no text line at all (score {value:.3f})"
    by_box = sign == "borderline box" or det_only
    scored = [(number, read) for number, read in enumerate(reads, 1) if read.score is not None]
    if not scored and not by_box:
        return (f"nothing read: det found {_plural(len(boxes), 'box')} but no line came back read "
                f"(score {value:.3f})")
    doubtful, borderline = sum(read.doubtful for read in reads), sum(box.doubtful for box in boxes)
    number, least = min(scored, key=lambda item: item[1].score) if scored else (0, None)
    weakest = min(boxes, key=lambda box: box.score) if boxes else None
    head = f"{'score' if doubtful or borderline else 'nothing doubtful, score'} {value:.3f}"
    if not by_box:
        parts = [f"{head} from its least sure read, line {number} {_quoted(least.text)} at {least.score:.3f}"]
    elif weakest is not None:
        parts = [f"{head} from its weakest box, det score {weakest.score:.3f} against box_thresh {box_thresh:.2f}"]
    else:
        parts = [head]
    if det_only:
        parts.append(f"boxes only (the model has no rec): {_plural(len(boxes), 'text')} to type")
    elif scored:
        if doubtful:
            read_part = f"{doubtful} of {_plural(len(scored), 'read')} doubtful (rec score under {DOUBTFUL_READ:.2f})"
        else:
            read_part = f"{_every(len(scored), 'read')} at rec score {DOUBTFUL_READ:.2f} or above"
        if by_box:
            read_part += f", the least sure {least.score:.3f} (line {number})"
        parts.append(read_part)
    if weakest is not None:
        cut = borderline_below(box_thresh)
        if borderline:
            box_part = f"{borderline} of {_plural(len(boxes), 'box')} borderline (det score under {cut:.2f})"
        else:
            box_part = f"{_every(len(boxes), 'box')} at det score {cut:.2f} or above"
        if not by_box:
            box_part += f", the weakest {weakest.score:.3f}"
        parts.append(box_part)
    return "; ".join(parts)


def rank_images(reads: dict[str, dict[str, Any]], box_thresh: float = DEFAULT_BOX_THRESH) -> list[RankedImage]:
    """`reads`: file name -> {"lines": [{"text", "score", "poly"}], "box_scores": [...], "box_polys": [...]}
    (box_polys: det's polygons, one per box score; without them boxes are judged, not drawn); hardest first.
    A line's score None: the model has no rec (boxes only: its lines are det's boxes, listed as boxes)."""
    cut = borderline_below(box_thresh)
    rows = []
    for name, read in reads.items():
        lines = read.get("lines") or []
        rec = [float(line["score"]) for line in lines if line.get("score") is not None]
        scores = [float(s) for s in read.get("box_scores") or []]
        det_only = bool(lines) and not rec
        polys = list(read.get("box_polys") or ([line.get("poly") or [] for line in lines] if det_only else []))
        value, sign = uncertainty_of(None if det_only else rec, scores, box_thresh)
        shown = [] if det_only else [
            Mark(line.get("poly") or [], float(line["score"]), str(line.get("text") or ""),
                 doubtful=float(line["score"]) < DOUBTFUL_READ) for line in lines if line.get("score") is not None]
        boxes = [Mark(polys[i] if i < len(polys) else [], score, doubtful=score < cut)
                 for i, score in enumerate(scores)]
        if (sign == "borderline box" or det_only) and boxes:
            min(boxes, key=lambda mark: mark.score).sets_score = True
        elif sign == "unsure reading" and shown:
            min(shown, key=lambda mark: mark.score).sets_score = True
        rows.append(RankedImage(0, name, round(value, 4), len(lines), round(min(rec), 4) if rec else None,
                                round(sum(rec) / len(rec), 4) if rec else None,
                                round(min(scores), 4) if scores else None,
                                reason(value, sign, shown, boxes, box_thresh, det_only),
                                sum(mark.doubtful for mark in shown), sum(mark.doubtful for mark in boxes),
                                shown, boxes))
    rows.sort(key=lambda r: (-r.uncertainty, r.image))
    for number, row in enumerate(rows, 1):
        row.rank = number
    return rows


def write_ranking(rows: list[RankedImage], out: Path, images: Path, model_version: str) -> None:
    """ranking.csv and ranking.html (templates/ranking.html.j2; each image with its boxes drawn in thumbs/)
    in `out`; `images` is the PPOCRLabel folder."""
    from ocr_tasks import pages

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ranking.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    thumbs = out / "thumbs"
    thumbs.mkdir(exist_ok=True)
    shown = []
    for row in rows:
        thumb = thumbs / f"{Path(row.image).name}.jpg"   # the whole name: a.jpg and a.png are two pictures
        draw_marks(images / row.image, row, thumb)
        shown.append((row, thumb.name))
    pages.write(out / "ranking.html", "ranking.html.j2", batch=images.name, model_version=model_version, rows=shown)


def draw_marks(image: Path, row: RankedImage, target: Path) -> None:
    """The image at most _PICTURE a side with the model's polygons on it: the reads, numbered as the page lists
    them (green, doubtful red), over det's boxes that matter, numbered b1.. below them (borderline orange, the
    weakest blue when it sets the score; every box when there are no reads). The one that sets the score is
    drawn thicker. Polygons are in the frame PaddleOCR read (cv2: a JPEG's EXIF orientation applied), so the
    picture is turned the same way."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    with Image.open(image) as opened:
        turned = ImageOps.exif_transpose(opened) if opened.format == "JPEG" else opened
        picture = turned.convert("RGB")
    width = picture.width
    picture.thumbnail((_PICTURE, _PICTURE))
    scale = picture.width / max(1, width)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=12)

    def outline(mark: Mark, colour: tuple[int, int, int], label: str, above: bool) -> None:
        if len(mark.poly) < 2:
            return
        points = [(float(x) * scale, float(y) * scale) for x, y in mark.poly]
        draw.polygon(points, outline=colour, width=4 if mark.sets_score else 2)
        left, top, bottom = min(x for x, _ in points), min(y for _, y in points), max(y for _, y in points)
        _, _, right, height = draw.textbbox((0, 0), label, font=font)
        y = top - height - 3 if above else bottom + 3
        x, y = min(max(1.0, left), picture.width - right - 1), min(max(1.0, y), picture.height - height - 1)
        draw.rectangle((x - 1, y - 1, x + right + 1, y + height + 1), fill=colour)
        draw.text((x, y), label, fill=(255, 255, 255), font=font)

    for number, box in row.boxes_shown():
        outline(box, _COLOURS["borderline" if box.doubtful else "box"], f"b{number}", above=not row.reads)
    for number, read in enumerate(row.reads, 1):
        outline(read, _COLOURS["doubtful" if read.doubtful else "read"], str(number), above=True)
    picture.save(target, quality=85)
