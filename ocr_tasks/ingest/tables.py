"""An export as tables for validation: one row per image, one per box, one per crop.

Every row carries `where` (`Label.txt:12`, `Label.txt:12 box 3`, `rec_gt.txt:7`) so a
failed expectation can point a labeller at the exact line.
"""

from __future__ import annotations

import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import pandas as pd

from ocr_tasks.config import ValidationConfig
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.images import ImageFacts, hash_image, inspect_image
from ocr_tasks.ingest.ppocrlabel import (
    FILE_STATE, LABEL_FILE, REC_GT, CropLine, LabelLine,
    parse_file_state, parse_label_file, parse_rec_gt, polygon_area,
)

IMAGE_WORKERS = 8  # image decoding releases the GIL; a few threads keep 2 cores busy


@dataclass
class ExportTables:
    name: str
    folder: Path
    labels: list[LabelLine]          # confirmed Label.txt lines
    crops: list[CropLine]            # rec_gt.txt lines (empty when the export has none)
    facts: dict[str, ImageFacts]     # by Label.txt relpath
    unconfirmed: int                 # Label.txt lines not confirmed in fileState.txt (skipped)
    limits: ValidationConfig
    dictionary: set[str] | None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables GX validates, built on demand: merge keeps only the parsed labels."""
        return {
            "images": _image_table(self.labels, self.facts),
            "boxes": _box_table(self.labels, self.facts, self.dictionary),
            "crops": _crop_table(self.crops, self.labels, self.facts, self.dictionary),
        }


def read_dictionary(path: str | Path | None) -> list[str] | None:
    """A PaddleOCR dict file, one character per line, in file order (model outputs index into it)."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"dictionary file {path}: {exc.strerror}") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.rstrip("\r")]


def build_tables(folder: Path, limits: ValidationConfig, dictionary: list[str] | None = None, *,
                 decode: bool = True) -> ExportTables:
    """The export's parsed labels and image facts; `decode=False` (merge, of an export
    validated already) only hashes the images instead of decoding them."""
    label_path = folder / LABEL_FILE
    if not label_path.is_file():
        raise UsageError(f"{folder}: not a PPOCRLabel export (no {LABEL_FILE})")
    all_labels = parse_label_file(label_path.read_bytes())
    state_path = folder / FILE_STATE
    if state_path.is_file():
        confirmed = parse_file_state(state_path.read_bytes())
        labels = [line for line in all_labels if line.problem or line.file_name in confirmed]
    else:
        labels = all_labels  # an export without fileState.txt: Label.txt alone says what was confirmed
    rec_path = folder / REC_GT
    crops = parse_rec_gt(rec_path.read_bytes()) if rec_path.is_file() else []

    inspect = (partial(inspect_image, max_pixels=limits.max_image_pixels, max_side=limits.max_image_side)
               if decode else hash_image)
    wanted = [line.relpath for line in labels if not line.problem]
    wanted += [crop.relpath for crop in crops if not crop.problem]
    wanted = list(dict.fromkeys(wanted))
    with ThreadPoolExecutor(IMAGE_WORKERS) as pool:
        facts = dict(zip(wanted, pool.map(lambda relpath: inspect(folder / relpath), wanted)))

    return ExportTables(
        name=folder.name, folder=folder, labels=labels, crops=crops, facts=facts,
        unconfirmed=len(all_labels) - len(labels), limits=limits,
        dictionary=None if dictionary is None else set(dictionary),
    )


def _image_table(labels: list[LabelLine], facts: dict[str, ImageFacts]) -> pd.DataFrame:
    rows = []
    for line in labels:
        fact = ImageFacts() if line.problem else facts.get(line.relpath, ImageFacts())
        rows.append({
            "where": f"{LABEL_FILE}:{line.line_no}",
            "image": line.raw_path,
            "file": line.relpath or None,
            "line_problem": line.problem,
            "image_problem": None if line.problem else fact.problem,
            "sha256": fact.sha256,
            "width": fact.width,
            "height": fact.height,
            "boxes": len(line.boxes),
        })
    return _frame(rows, ["where", "image", "file", "line_problem", "image_problem", "sha256", "width", "height", "boxes"])


def _text_checks(text: str, ignore: bool, dictionary: set[str] | None) -> dict:
    if ignore:
        return {"text_ok": True, "text_length": None, "chars_outside_dict": None}
    outside = None if dictionary is None else "".join(sorted(set(text) - dictionary - {" "}))
    # tabs and line breaks would split PaddleOCR's "path<TAB>label" lines and the dict
    printable = not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)
    return {"text_ok": bool(text.strip()) and printable, "text_length": len(text), "chars_outside_dict": outside}


def _box_table(labels, facts, dictionary) -> pd.DataFrame:
    rows = []
    for line in labels:
        if line.problem:
            continue
        fact = facts.get(line.relpath, ImageFacts())
        for index, box in enumerate(line.boxes):
            inside = None
            if fact.width is not None:
                inside = all(0 <= x <= fact.width and 0 <= y <= fact.height for x, y in box.points)
            rows.append({
                "where": f"{LABEL_FILE}:{line.line_no} box {index}",
                "transcription": box.transcription,
                "points": len(box.points),
                "area": polygon_area(box.points),
                "inside_image": inside,
                **_text_checks(box.transcription, box.is_ignore_region, dictionary),
            })
    return _frame(rows, ["where", "transcription", "points", "area", "inside_image",
                         "text_ok", "text_length", "chars_outside_dict"])


def _crop_table(crops, labels, facts, dictionary) -> pd.DataFrame:
    boxes_by_stem = {PurePosixPath(line.relpath).stem: line.boxes for line in labels if not line.problem}
    rows = []
    for crop in crops:
        boxes = boxes_by_stem.get(crop.source_stem or "")
        maps = (None if crop.problem or crop.is_ignore_region else
                boxes is not None and crop.box_index is not None and crop.box_index < len(boxes)
                and not boxes[crop.box_index].difficult)
        fact = facts.get(crop.relpath, ImageFacts())
        rows.append({
            "where": f"{REC_GT}:{crop.line_no}",
            "crop": crop.relpath,
            "line_problem": crop.problem,
            "image_problem": None if crop.problem else fact.problem,
            "maps_to_box": maps,
            **_text_checks(crop.text, crop.is_ignore_region, dictionary),
        })
    return _frame(rows, ["where", "crop", "line_problem", "image_problem", "maps_to_box",
                         "text_ok", "text_length", "chars_outside_dict"])


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    # object dtype keeps None as None (GX treats it as "not applicable") instead of NaN
    return pd.DataFrame(rows, columns=columns, dtype=object)
