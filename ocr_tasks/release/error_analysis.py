"""The report's error analysis: the test samples the new model reads worst, as pictures, beside production.

    analyse_errors(reads, data_dir, out) -> dict    (shown by report.write_summary: templates/report.html.j2)

rec   the misread crops, most wrong first (normalised edit distance, then the model's confidence,
      since a confident mistake is the one consumers will not catch): the crop, its label, and what
      the new and the production model read, with their scores
det   the images with the lowest hmean, drawn: labelled boxes green, matched detections blue,
      missed labels red, false detections orange, ignore regions grey
e2e   the images the PaddleOCR pipeline reads worst end to end, drawn: labelled boxes green, the
      detected box of each line read right blue, of each line misread red with what was read beside
      the label, missed labels red, false reads orange; and end to end per export
confusions   the label -> read character substitutions, deletions and insertions most often made

Pictures go to <out>/errors/ and are linked relatively, so the report folder reads offline.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from ocr_tasks.release.read_metrics import end_to_end_scores, match_detections, match_lines, read_lines, rec_scores
from ocr_tasks.release.slices import SampleIndex, text_slices

WORST = 12
_MAX_SIDE = 640
_COLOURS = {"label": (0, 160, 0), "matched": (0, 90, 255), "missed": (220, 0, 0), "false": (255, 140, 0),
            "ignored": (150, 150, 150)}


def analyse_errors(reads: dict[str, dict[str, Any]], data_dir: Path, out: Path, worst: int = WORST) -> dict[str, Any]:
    """`reads`: {"test/new": probe answer, "test/production": probe answer (optional)}."""
    index = SampleIndex.of(data_dir)
    new, production = reads.get("test/new") or {}, reads.get("test/production") or {}
    errors = Path(out) / "errors"
    shutil.rmtree(errors, ignore_errors=True)
    errors.mkdir(parents=True)
    rec = _worst_crops(index, new, production, errors, worst)
    det = _worst_images(index, new, production, errors, worst)
    e2e = _worst_reads(index, new, production, errors, worst)
    return {**rec, **det, **e2e}


def _worst_reads(index: SampleIndex, new: dict, production: dict, errors: Path, worst: int) -> dict[str, Any]:
    before = {r["image"]: r for r in production.get("ocr") or []}
    rows, per_export = [], {}
    by_text: dict[str, list[int]] = {}    # label slice -> [labelled lines, read right]
    for read in new.get("ocr") or []:
        if read["image"] not in index.boxes:
            continue
        boxes, export = index.boxes[read["image"]], index.images.get(read["image"])
        lines = read_lines(read)
        per_export.setdefault(export, []).append((boxes, lines))
        match = match_lines(boxes, lines)
        right = {id(box) for box, _ in match.right}
        for box in (b for b in boxes if not b.ignored):
            for name in text_slices(box.text):
                counts = by_text.setdefault(name, [0, 0])
                counts[0] += 1
                counts[1] += id(box) in right
        if not match.misread and not match.missed and not match.false:
            continue
        old = before.get(read["image"])
        rows.append({"image": read["image"], "export": export, "hmean": match.hmean, "match": match,
                     "misread": [{"label": box.text, "read": line.text} for box, line in match.misread],
                     "missed": len(match.missed), "false": len(match.false),
                     "production_hmean": match_lines(boxes, read_lines(old)).hmean if old else None})
    rows.sort(key=lambda row: (row["hmean"], -len(row["misread"]) - row["missed"]))
    shown = []
    for number, row in enumerate(rows[:worst]):
        target = errors / f"e2e_{number:02d}.png"
        _draw_reads(Path(row.pop("image")), row.pop("match"), target)
        shown.append({**row, "picture": f"errors/{target.name}"})
    slices = {export: {"images": len(images), **end_to_end_scores(images)} for export, images in sorted(
        per_export.items(), key=lambda item: str(item[0]))}
    texts = {name: {"lines": total, "read_right": right, "e2e_recall": right / total}
             for name, (total, right) in sorted(by_text.items())}
    return {"e2e_wrong": len(rows), "e2e_total": len(new.get("ocr") or []), "e2e": shown, "e2e_by_export": slices,
            "e2e_by_text": texts}


def _draw_reads(image: Path, match, target: Path) -> None:
    picture, draw, scale, outline = _canvas(image)
    for box, line in match.right:
        outline(box.points, _COLOURS["label"])
        outline(line.points, _COLOURS["matched"], 1)
    for box, line in match.misread:
        outline(box.points, _COLOURS["label"])
        outline(line.points, _COLOURS["missed"], 2)
        x, y = (min(float(p[0]) for p in line.points) * scale, max(float(p[1]) for p in line.points) * scale + 1)
        draw.text((x, y), f"{line.text} ≠ {box.text}", fill=_COLOURS["missed"])
    for box in match.missed:
        outline(box.points, _COLOURS["missed"], 3)
    for line in match.false:
        outline(line.points, _COLOURS["false"], 3)
    picture.save(target)


def _worst_crops(index: SampleIndex, new: dict, production: dict, errors: Path, worst: int) -> dict[str, Any]:
    from ocr_tasks.release.read_metrics import edit_operations

    before = {r["crop"]: r for r in production.get("rec") or []}
    wrong, confusions = [], Counter()
    for read in new.get("rec") or []:
        if read["crop"] not in index.crops:
            continue
        export, label = index.crops[read["crop"]]
        score = rec_scores([(read["text"], label)])
        if score["acc"] == 1.0:
            continue
        confusions.update(edit_operations(read["text"], label))
        old = before.get(read["crop"])
        wrong.append({"crop": read["crop"], "export": export, "label": label, "new": read["text"],
                      "new_score": read.get("score"), "distance": 1 - score["norm_edit_dis"],
                      "production": old["text"] if old else None,
                      "production_score": old.get("score") if old else None})
    wrong.sort(key=lambda row: (-row["distance"], -(row["new_score"] or 0)))
    for number, row in enumerate(wrong[:worst]):
        source = Path(row.pop("crop"))
        target = errors / f"rec_{number:02d}{source.suffix}"
        shutil.copyfile(source, target)
        row["picture"] = f"errors/{target.name}"
    return {"rec_wrong": len(wrong), "rec_total": len(new.get("rec") or []), "rec": wrong[:worst],
            "confusions": [{"label": a or "∅", "read": b or "∅", "count": n} for (a, b), n in confusions.most_common(10)]}


def _worst_images(index: SampleIndex, new: dict, production: dict, errors: Path, worst: int) -> dict[str, Any]:
    before = {r["image"]: r for r in production.get("det") or []}
    rows = []
    for read in new.get("det") or []:
        if read["image"] not in index.boxes:
            continue
        boxes = index.boxes[read["image"]]
        match = match_detections(boxes, read["polys"])
        if not match.missed and not match.false:
            continue
        old = before.get(read["image"])
        rows.append({"image": read["image"], "export": index.images.get(read["image"]), "hmean": match.hmean,
                     "missed": len(match.missed), "false": len(match.false), "match": match,
                     "production_hmean": match_detections(boxes, old["polys"]).hmean if old else None})
    rows.sort(key=lambda row: (row["hmean"], -(row["missed"] + row["false"])))
    shown = []
    for number, row in enumerate(rows[:worst]):
        target = errors / f"det_{number:02d}.png"
        _draw(Path(row.pop("image")), row.pop("match"), target)
        shown.append({**row, "picture": f"errors/{target.name}"})
    return {"det_wrong": len(rows), "det_total": len(new.get("det") or []), "det": shown}


def _canvas(image: Path):
    """The image scaled to at most _MAX_SIDE, a drawing context, the scale, and `outline(points, colour, width)`
    taking points in the image's own pixels."""
    from PIL import Image, ImageDraw

    with Image.open(image) as opened:
        picture = opened.convert("RGB")
    scale = min(1.0, _MAX_SIDE / max(picture.size))
    if scale < 1.0:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
    draw = ImageDraw.Draw(picture)

    def outline(points, colour, width=2):
        draw.polygon([(float(x) * scale, float(y) * scale) for x, y in points], outline=colour, width=width)

    return picture, draw, scale, outline


def _draw(image: Path, match, target: Path) -> None:
    picture, _, _, outline = _canvas(image)
    for points in match.ignored:
        outline(points, _COLOURS["ignored"])
    for label, detection in match.matched:
        outline(label, _COLOURS["label"])
        outline(detection, _COLOURS["matched"], 1)
    for points in match.missed:
        outline(points, _COLOURS["missed"], 3)
    for points in match.false:
        outline(points, _COLOURS["false"], 3)
    picture.save(target)
