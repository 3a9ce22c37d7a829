"""An export as tables for validation: one row per image, one per box, one per crop.

Every row carries `where` (`Label.txt:12`, `Label.txt:12 box 3`, `rec_gt.txt:7`) so a
failed expectation can point a labeller at the exact line.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import pandas as pd
from shapely.geometry import LinearRing

from ocr_tasks.config import ValidationConfig
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.images import ImageFacts, hash_image, inspect_image, set_decode_memory
from ocr_tasks.ingest.ppocrlabel import (
    FILE_STATE, LABEL_FILE, REC_GT, Box, CropLine, LabelLine,
    parse_file_state, parse_label_file, parse_rec_gt, polygon_area, reopen_rewrite, shorten,
)

IMAGE_WORKERS = 8  # image decoding releases the GIL; a few threads keep 2 cores busy
EXAMPLES = 3


@dataclass(frozen=True)
class TextConflict:
    """A crop whose rec_gt.txt text differs from its box's transcription in Label.txt.

    The rule: when Label.txt's text is PPOCRLabel's re-open rewrite of rec_gt.txt's
    (false/true/null -> False/True/None, see ppocrlabel.py), PPOCRLabel corrupted it and
    rec_gt.txt's text wins, for the crop and the box. Otherwise Label.txt wins: it is
    saved on every edit, rec_gt.txt only by "Export Recognition Result", so it is the
    labeller's later word.
    """

    crop_where: str      # rec_gt.txt:7
    box_where: str       # Label.txt:3 box 1
    label_text: str
    crop_text: str

    @property
    def reopened(self) -> bool:
        return reopen_rewrite(self.crop_text) == self.label_text

    @property
    def text(self) -> str:
        return self.crop_text if self.reopened else self.label_text


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

    def crop_of(self, line: LabelLine, index: int) -> CropLine | None:
        """The rec_gt.txt crop of box `index` of `line`, if the export has one."""
        return self._crops_by_box.get((PurePosixPath(line.relpath).stem, index))

    def conflict_of(self, line: LabelLine, index: int) -> TextConflict | None:
        """The disagreement between box `index` of `line` and its crop's text, if any."""
        box, crop = line.boxes[index], self.crop_of(line, index)
        if crop is None or box.is_ignore_region or crop.text == box.transcription:
            return None
        return TextConflict(f"{REC_GT}:{crop.line_no}", f"{LABEL_FILE}:{line.line_no} box {index}",
                            box.transcription, crop.text)

    def conflicts(self) -> list[TextConflict]:
        found = (self.conflict_of(line, index) for line in self.labels if not line.problem and line.box_count is None
                 for index in range(len(line.boxes)))
        return [conflict for conflict in found if conflict is not None]

    def boxes_of(self, line: LabelLine) -> list[Box]:
        """The line's boxes with re-open rewrites undone (TextConflict's rule)."""
        boxes = list(line.boxes)
        for index, box in enumerate(boxes):
            conflict = self.conflict_of(line, index)
            if conflict is not None and conflict.reopened:
                boxes[index] = Box(conflict.text, box.points, box.difficult, box.key_cls)
        return boxes

    def without(self, files: Iterable[str]) -> "ExportTables":
        """These tables less the images `files` (Label.txt relpaths): the images validation left out."""
        files = set(files)
        if not files:
            return self
        return dataclasses.replace(self, labels=[line for line in self.labels if line.relpath not in files])

    def notes(self) -> list[str]:
        """What was accepted but changed on the way in: said in the report, never a failure."""
        limit = self.limits.max_text_length
        too_long, missing, skipped = [], [], 0
        for line in self.labels:
            if line.problem or line.box_count is not None:   # unparsed, or over max_boxes_per_image: left out
                continue
            for index, box in enumerate(self.boxes_of(line)):
                where = f"{LABEL_FILE}:{line.line_no} box {index}"
                crop = self.crop_of(line, index)
                if box.is_ignore_region:
                    skipped += crop is not None
                elif len(box.transcription) > limit:
                    too_long.append(f"{where} {shorten(box.transcription, 40, with_length=False)!r} ({len(box.transcription)} characters)")
                elif self.crops and crop is None:
                    missing.append(f"{where} ({len(box.points)} points)")
        notes = []
        if self.unconfirmed and not self.labels:
            notes.append(f"{FILE_STATE} confirms none of the {self.unconfirmed} image(s) in {LABEL_FILE}: confirm them "
                         f"in PPOCRLabel (check each image, or 'Check All') and save, or remove {FILE_STATE} to take "
                         f"every {LABEL_FILE} line as confirmed")
        elif self.unconfirmed:
            notes.append(f"{self.unconfirmed} {LABEL_FILE} line(s) skipped: {FILE_STATE} does not mark their image "
                         "confirmed (PPOCRLabel's check box); confirm them and export again to include them")
        if too_long:
            notes.append(f"{len(too_long)} box(es) longer than max_text_length ({limit}) stay in det and are left out "
                         f"of rec (raise validation.max_text_length to keep them): " + "; ".join(too_long[:EXAMPLES]))
        if skipped:
            notes.append(f"{skipped} crop(s) of ignore regions (###, difficult) skipped: not training data "
                         "(PPOCRLabel 3.x crops every box)")
        if missing:
            notes.append(f"{len(missing)} box(es) without a crop in {REC_GT} (PPOCRLabel's cropper fails on polygons of "
                         "more than 4 points, and skips the rest of that image): cut from their polygons: "
                         + "; ".join(missing[:EXAMPLES]))
        conflicts = self.conflicts()
        if conflicts:
            reopened = [c for c in conflicts if c.reopened]
            examples = "; ".join(f"{c.crop_where} {c.crop_text!r} vs {c.box_where} {c.label_text!r} -> {c.text!r}"
                                 for c in conflicts[:EXAMPLES])
            notes.append(f"{len(conflicts)} crop text(s) in {REC_GT} differ from {LABEL_FILE}: {len(reopened)} are "
                         "PPOCRLabel's re-open rewrite (false/true/null -> False/True/None), where the text in "
                         f"{REC_GT} wins; in the other {len(conflicts) - len(reopened)}, {LABEL_FILE} (saved later) "
                         f"wins: {examples}")
        return notes

    @functools.cached_property
    def _crops_by_box(self) -> dict[tuple[str, int], CropLine]:
        return {(c.source_stem, c.box_index): c for c in self.crops
                if not c.problem and c.source_stem is not None and c.box_index is not None}

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables GX validates, built on demand: merge keeps only the parsed labels."""
        return {
            "images": _image_table(self.labels, self.facts),
            "boxes": _box_table(self.labels, self.facts, self.dictionary, self.limits),
            "crops": _crop_table(self.crops, self.labels, self.facts, self.dictionary),
        }


# Invisible format characters (Unicode Cf) a labeller cannot see: pasted zero-width spaces, bidi
# controls. ZWNJ/ZWJ (U+200C/D) are kept: Persian and Indic scripts spell with them.
_MEANINGFUL_FORMAT = frozenset({"\u200c", "\u200d"})


def invisible_characters(text: str) -> str:
    """The invisible format characters of `text`, as 'U+200B U+202E' (empty when none)."""
    found = sorted({c for c in text if unicodedata.category(c) == "Cf" and c not in _MEANINGFUL_FORMAT})
    return " ".join(f"U+{ord(c):04X}" for c in found)


def read_dictionary(path: str | Path | None) -> list[str] | None:
    """A PaddleOCR dict file, one character per line, in file order (model outputs index into it).

    Refused, naming the file and line: not UTF-8 (a UTF-16 file from Notepad), a line of
    more than one character, a space line (PaddleOCR adds the space itself with
    `use_space_char: true`), a character twice (two classes for one character), an
    invisible format character.
    """
    if not path:
        return None
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UsageError(f"dictionary file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        hint = " (it looks like UTF-16)" if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise UsageError(f"dictionary file {path}: not UTF-8{hint}, byte {exc.start}: save it as UTF-8") from None
    chars: list[str] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        char = line.rstrip("\r")
        if not char:
            continue
        where = f"dictionary file {path}:{number}"
        # ASCII whitespace only: U+3000 (the ideographic space) is a character of its own in PaddleOCR's dicts
        # (ppocr_keys_v1.txt line 5710), read and written like any other
        if char.strip(" \t\f\v") == "":
            raise UsageError(f"{where}: a space line; PaddleOCR adds the space itself (use_space_char: true): "
                             "remove the line")
        if len(char) != 1:
            raise UsageError(f"{where}: {char!r} is {len(char)} characters; a PaddleOCR dict has one per line")
        if invisible_characters(char):
            raise UsageError(f"{where}: an invisible character ({invisible_characters(char)}): remove the line")
        if char in first_seen:
            raise UsageError(f"{where}: {char!r} again (first on line {first_seen[char]}): "
                             "PaddleOCR would give it two classes; remove one")
        first_seen[char] = number
        chars.append(char)
    return chars


def build_tables(folder: Path, limits: ValidationConfig, dictionary: list[str] | None = None, *,
                 decode: bool = True) -> ExportTables:
    """The export's parsed labels and image facts; `decode=False` (merge, of an export
    validated already) only hashes the images instead of decoding them."""
    label_path = folder / LABEL_FILE
    if not label_path.is_file():
        raise UsageError(f"{folder}: not a PPOCRLabel export (no {LABEL_FILE})")
    all_labels = parse_label_file(label_path.read_bytes(), limits.max_boxes_per_image)
    state_path = folder / FILE_STATE
    if state_path.is_file():
        confirmed = parse_file_state(state_path.read_bytes())
        labels = [line for line in all_labels if line.problem or line.file_name in confirmed]
    else:
        labels = all_labels  # an export without fileState.txt: Label.txt alone says what was confirmed
    rec_path = folder / REC_GT
    crops = parse_rec_gt(rec_path.read_bytes()) if rec_path.is_file() else []

    set_decode_memory(limits.decode_memory_mb)
    inspect = (partial(inspect_image, max_pixels=limits.max_image_pixels, max_side=limits.max_image_side)
               if decode else hash_image)
    wanted = [line.relpath for line in labels if not line.problem]
    wanted += [crop.relpath for crop in crops if not crop.problem]
    wanted = list(dict.fromkeys(wanted))
    root = folder.resolve()

    def examine(relpath: str) -> ImageFacts:
        escape = _outside(folder, root, relpath)
        return ImageFacts(problem=escape) if escape else inspect(folder / relpath)

    with ThreadPoolExecutor(IMAGE_WORKERS) as pool:
        facts = dict(zip(wanted, pool.map(examine, wanted)))

    return ExportTables(
        name=folder.name, folder=folder, labels=labels, crops=crops, facts=facts,
        unconfirmed=len(all_labels) - len(labels), limits=limits,
        dictionary=None if dictionary is None else set(dictionary),
    )


def _outside(folder: Path, root: Path, relpath: str) -> str | None:
    """Why a file the labels name is not the export's own: a symbolic link on the way (PPOCRLabel writes
    none; one could pull any file of the machine into the dataset), or a path resolving elsewhere."""
    path = folder
    for part in PurePosixPath(relpath).parts:
        path = path / part
        if path.is_symlink():
            return f"is a symbolic link ({path.relative_to(folder).as_posix()}): copy the file itself into the export"
    try:
        (folder / relpath).resolve().relative_to(root)
    except ValueError:
        return "resolves outside the export folder"
    return None


def _image_table(labels: list[LabelLine], facts: dict[str, ImageFacts]) -> pd.DataFrame:
    rows = []
    for line in labels:
        fact = ImageFacts() if line.problem else facts.get(line.relpath, ImageFacts())
        rows.append({
            "where": f"{LABEL_FILE}:{line.line_no}",
            "image": shorten(line.raw_path),
            "file": line.relpath or None,
            "line_problem": line.problem,
            "image_problem": None if line.problem else fact.problem,
            "sha256": fact.sha256,
            "width": fact.width,
            "height": fact.height,
            "boxes": line.boxes_labelled,
        })
    return _frame(rows, ["where", "image", "file", "line_problem", "image_problem", "sha256", "width", "height", "boxes"])


def _text_checks(text: str, ignore: bool, dictionary: set[str] | None) -> dict:
    if ignore:
        return {"text_ok": True, "text_length": None, "chars_outside_dict": None, "invisible_chars": None}
    outside = None if dictionary is None else "".join(sorted(set(text) - dictionary - {" "}))
    # tabs and line breaks would split PaddleOCR's "path<TAB>label" lines and the dict
    printable = not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)
    return {"text_ok": bool(text.strip()) and printable, "text_length": len(text), "chars_outside_dict": outside,
            "invisible_chars": invisible_characters(text)}


def _box_table(labels, facts, dictionary, limits: ValidationConfig) -> pd.DataFrame:
    rows = []
    for line in labels:
        if line.problem or line.box_count is not None:   # over max_boxes_per_image: the image table says so, unchecked
            continue
        fact = facts.get(line.relpath, ImageFacts())
        for index, box in enumerate(line.boxes):
            inside = None
            if fact.width is not None:
                inside = all(0 <= x <= fact.width and 0 <= y <= fact.height for x, y in box.points)
            rows.append({
                "where": f"{LABEL_FILE}:{line.line_no} box {index}",
                "transcription": shorten(box.transcription),
                "transcription_length": len(box.transcription),   # ignore regions too: all of it lands in det
                "points": len(box.points),
                "area": polygon_area(box.points),
                "simple": _is_simple(box.points),
                "inside_image": inside,
                # over the cap, the length alone refuses it: 50 MB is not scanned character by character
                **_text_checks(box.transcription, box.is_ignore_region
                               or len(box.transcription) > limits.max_transcription_length, dictionary),
            })
    return _frame(rows, ["where", "transcription", "transcription_length", "points", "area", "simple", "inside_image",
                         "text_ok", "text_length", "chars_outside_dict", "invisible_chars"])


def _is_simple(points: list) -> bool | None:
    """False for a polygon whose edges cross (a bow-tie: non-zero area, blank crop); None below 3 points."""
    if len(points) < 3 or polygon_area(points) == 0:
        return None   # the point-count and area expectations say what is wrong
    return LinearRing([(float(x), float(y)) for x, y in points]).is_simple


def _crop_table(crops, labels, facts, dictionary) -> pd.DataFrame:
    boxes_by_stem = {PurePosixPath(line.relpath).stem: line.boxes for line in labels if not line.problem}
    rows = []
    for crop in crops:
        boxes = boxes_by_stem.get(crop.source_stem or "")
        box = boxes[crop.box_index] if boxes is not None and crop.box_index is not None \
            and crop.box_index < len(boxes) else None
        # a crop of an ignore region (PPOCRLabel 3.x crops every box) is skipped, not checked
        ignored = crop.is_ignore_region or (box is not None and box.is_ignore_region)
        maps = None if crop.problem or ignored else box is not None
        fact = facts.get(crop.relpath, ImageFacts())
        rows.append({
            "where": f"{REC_GT}:{crop.line_no}",
            "crop": shorten(crop.relpath),
            "line_problem": crop.problem,
            "image_problem": None if crop.problem else fact.problem,
            "maps_to_box": maps,
            **_text_checks(crop.text, ignored, dictionary),
        })
    return _frame(rows, ["where", "crop", "line_problem", "image_problem", "maps_to_box",
                         "text_ok", "text_length", "chars_outside_dict", "invisible_chars"])


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    # object dtype keeps None as None (GX treats it as "not applicable") instead of NaN
    return pd.DataFrame(rows, columns=columns, dtype=object)
