"""Reading PPOCRLabel exports: Label.txt, fileState.txt, rec_gt.txt, as PPOCRLabel writes them.

Parsing never raises for bad data: every line comes back with its line number and,
when it is broken, a `problem` saying why, so validation can report `file:line`.
Real exports are tolerated as they are: UTF-8 BOM, CRLF, and Windows `\\` paths.

What the two PPOCRLabel generations write (read from their source: 2.1.3 and the
`ppocrlabel` 3.1.6 package):

    Label.txt      both: `<folder>/<file>\t[{"transcription", "points", "difficult"(, "key_cls")}]`;
                   images without boxes are left out; KIE mode adds key_cls ("None" when unset);
                   four-point mode can save polygons of more than four points
    fileState.txt  2.x: the labeller's absolute paths (Windows `\\` common); 3.x: `<folder>/<file>`;
                   `<path>\t1` for a confirmed image (matched here by file name either way)
    rec_gt.txt     `crop_img/<stem>_crop_<i>.jpg\t<text>`, i = the box's index in Label.txt;
                   2.x skips difficult boxes, 3.x crops every box (`###` and difficult ones too);
                   PPOCRLabel's cropper fails on polygons of more than four points, and the rest of
                   that image's crops are missing
    re-opening     PPOCRLabel `eval`s each Label.txt line after replacing false/true/null with
                   False/True/None everywhere in it, transcriptions included ("nullable" ->
                   "Noneable"), and saves that; rec_gt.txt keeps the text as exported
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

LABEL_FILE = "Label.txt"
FILE_STATE = "fileState.txt"
REC_GT = "rec_gt.txt"
IGNORE_TRANSCRIPTIONS = frozenset({"###", "*"})  # PaddleOCR's DetLabelEncode ignores these

_DRIVE = re.compile(r"^[A-Za-z]:")
# Coordinates beyond this are not pixels (the largest image side allowed is far smaller); checked
# before any float conversion, so a 400-digit integer is a problem of its line, not an OverflowError.
MAX_COORDINATE = 2 ** 31
SHOWN = 120   # characters of a path or text quoted in a message: a 50 MB label line is not echoed whole


def shorten(text: str, limit: int = SHOWN, *, with_length: bool = True) -> str:
    """`text` for a message: at most `limit` characters, then "…" (and the whole length, unless the caller says it)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)" if with_length else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Box:
    transcription: str
    points: list[list[float]]    # as labelled (ints from PPOCRLabel), written back unchanged
    difficult: bool = False
    key_cls: str | None = None   # PPOCRLabel's KIE mode: the box's key class ("None" when unset), kept as written

    @property
    def is_ignore_region(self) -> bool:
        return self.difficult or self.transcription in IGNORE_TRANSCRIPTIONS

    def to_json(self) -> dict:
        data = {"transcription": self.transcription, "points": self.points, "difficult": self.difficult}
        if self.key_cls is not None:
            data["key_cls"] = self.key_cls
        return data


def reopen_rewrite(text: str) -> str:
    """What PPOCRLabel makes of a transcription when it re-opens a folder (see the module notes)."""
    return text.replace("false", "False").replace("true", "True").replace("null", "None")


@dataclass(frozen=True)
class LabelLine:
    line_no: int
    raw_path: str            # as written, e.g. "batch_001/img_0001.jpg"
    relpath: str             # inside the export folder, posix, e.g. "img_0001.jpg"
    boxes: list[Box] = field(default_factory=list)
    problem: str | None = None
    box_count: int | None = None   # set when the line holds more boxes than were parsed (parse_label_file's max_boxes)

    @property
    def boxes_labelled(self) -> int:
        return len(self.boxes) if self.box_count is None else self.box_count

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.relpath).name


@dataclass(frozen=True)
class CropLine:
    line_no: int
    relpath: str             # "crop_img/<stem>_crop_<i>.jpg"
    text: str
    source_stem: str | None  # "<stem>" of the image the crop was cut from
    box_index: int | None
    problem: str | None = None

    @property
    def is_ignore_region(self) -> bool:
        # PPOCRLabel exports crops of "###" boxes too (it only skips difficult ones); not training data
        return self.text in IGNORE_TRANSCRIPTIONS


def decode_lines(data: bytes) -> list[tuple[int, str | None]]:
    """Split a text file into (line_no, text) pairs; text is None for a line that is not UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out: list[tuple[int, str | None]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            out.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((number, None))
    return out


def normalize_path(raw: str) -> str:
    return raw.strip().replace("\\", "/")


def unsafe_path_reason(path: str) -> str | None:
    """Why a path from a label file may not be used, or None when it stays inside the export."""
    shown = repr(shorten(path))
    if path.startswith("/") or _DRIVE.match(path):
        return f"absolute path {shown}"
    if not path:
        return "empty path"
    if ".." in path.split("/"):
        return f"path {shown} contains '..'"
    if any(part in ("", ".") for part in path.split("/")):
        return f"path {shown} has an empty or '.' segment"
    if any(ord(c) < 32 for c in path):
        return f"path {shown} contains control characters"
    if any(len(part.encode("utf-8")) > 255 for part in path.split("/")):
        return f"path {shown} has a name longer than 255 bytes (no filesystem stores it)"
    return None


def export_relpath(raw_path: str) -> str:
    """Path of a Label.txt image inside the export folder.

    PPOCRLabel always writes `<export folder name>/<file>`. The folder is often renamed
    before upload, so the first segment is dropped whatever it says.
    """
    parts = normalize_path(raw_path).split("/")
    return "/".join(parts[1:]) if len(parts) > 1 else parts[0]


def parse_label_file(data: bytes, max_boxes: int | None = None) -> list[LabelLine]:
    """Label.txt's lines; a line with more than `max_boxes` boxes keeps only the first `max_boxes + 1`
    (its `box_count` says how many it has): validation refuses it, and a million boxes are never built."""
    lines = []
    for line_no, text in decode_lines(data):
        if text is None:
            lines.append(LabelLine(line_no, "", "", problem="line is not valid UTF-8"))
            continue
        lines.append(_parse_label_line(line_no, text, max_boxes))
    return lines


def _parse_label_line(line_no: int, text: str, max_boxes: int | None = None) -> LabelLine:
    raw_path, tab, payload = text.partition("\t")
    path = normalize_path(raw_path)
    if not tab:
        return LabelLine(line_no, path, "", problem="expected '<image path><TAB><json>', found no tab")
    unsafe = unsafe_path_reason(path)
    if unsafe:
        return LabelLine(line_no, path, "", problem=unsafe)
    relpath = export_relpath(path)
    if max_boxes is not None:
        # counted before decoding: a line of a million boxes costs seconds and a gigabyte to decode.
        # '"points"' as a key; inside a transcription JSON escapes it as '\\"points\\"'
        keys = payload.count('"points"')
        if keys > max_boxes:
            return LabelLine(line_no, path, relpath, box_count=keys)
    try:
        items = json.loads(payload)
    except json.JSONDecodeError as exc:
        return LabelLine(line_no, path, relpath, problem=f"label is not valid JSON: {exc.msg} at column {exc.colno}")
    except (ValueError, RecursionError) as exc:   # a number of thousands of digits; nesting thousands deep
        return LabelLine(line_no, path, relpath, problem=f"label JSON cannot be read: {shorten(str(exc), 80)}")
    if not isinstance(items, list):
        return LabelLine(line_no, path, relpath, problem="label JSON must be a list of boxes")
    over = max_boxes is not None and len(items) > max_boxes
    boxes = []
    for index, item in enumerate(items[: max_boxes + 1] if over else items):
        box, problem = _parse_box(item)
        if problem:
            return LabelLine(line_no, path, relpath, problem=f"box {index}: {problem}")
        boxes.append(box)
    return LabelLine(line_no, path, relpath, boxes, box_count=len(items) if over else None)


def _parse_box(item: object) -> tuple[Box | None, str | None]:
    if not isinstance(item, dict):
        return None, "must be an object with transcription and points"
    text = item.get("transcription")
    if not isinstance(text, str):
        return None, "transcription missing or not a string"
    points = item.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in points
    ):
        return None, f"points must be a list of [x, y] numbers below {MAX_COORDINATE} in size"
    difficult = item.get("difficult", False)
    if not isinstance(difficult, bool):
        return None, "difficult must be true or false"
    key_cls = item.get("key_cls")
    if key_cls is not None and not isinstance(key_cls, str):
        key_cls = str(key_cls)
    return Box(text, points, difficult, key_cls), None


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return -MAX_COORDINATE < value < MAX_COORDINATE
    return math.isfinite(value) and -MAX_COORDINATE < value < MAX_COORDINATE


def parse_file_state(data: bytes) -> set[str]:
    """File names of confirmed images (fileState holds the labeller's own absolute paths)."""
    confirmed = set()
    for _, text in decode_lines(data):
        if text is None:
            continue
        path, _, state = text.rpartition("\t")
        if state.strip() == "1" and path:
            confirmed.add(normalize_path(path).rsplit("/", 1)[-1])
    return confirmed


_CROP_NAME = re.compile(r"^(?P<stem>.+)_crop_(?P<index>\d{1,9})$")   # a box index, not a 5,000-digit number


def parse_rec_gt(data: bytes) -> list[CropLine]:
    lines = []
    for line_no, text in decode_lines(data):
        if text is None:
            lines.append(CropLine(line_no, "", "", None, None, problem="line is not valid UTF-8"))
            continue
        raw_path, tab, label = text.partition("\t")
        path = normalize_path(raw_path)
        if not tab:
            lines.append(CropLine(line_no, path, "", None, None, problem="expected '<crop path><TAB><text>', found no tab"))
            continue
        unsafe = unsafe_path_reason(path)
        match = _CROP_NAME.match(PurePosixPath(path).stem)
        stem, index = (match["stem"], int(match["index"])) if match else (None, None)
        problem = unsafe or (None if match else f"crop name {shorten(path)!r} is not '<image stem>_crop_<n>.<ext>'")
        lines.append(CropLine(line_no, path, label, stem, index, problem))
    return lines


def polygon_area(points: list[list[float]]) -> float:
    """Shoelace area; 0 for fewer than 3 points."""
    if len(points) < 3:
        return 0.0
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1]):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


def unicode_form_mismatch(name: str, present: Iterable[str]) -> str | None:
    """Why `name` is not found when a file of the same name in another Unicode form is there (macOS writes
    file names decomposed, NFD; most labelling tools and Windows write them composed, NFC)."""
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, name)
        if other != name and other in present:
            return (f": the labels spell it in {'NFD' if form == 'NFC' else 'NFC'} and the uploaded file's name is "
                    f"in {form} (the same letters, other bytes): rename the file, or re-save the labels, so both use "
                    "one form")
    return None
