"""Synthetic PPOCRLabel exports for tests, benchmarks and the demo.

The pipeline's real input is a folder exported by PPOCRLabel; tests and the CPU demo
need the same thing without a person labelling photos. Everything written here mimics
what PPOCRLabel itself writes (see its ``savePPlabel``, ``saveFilestate``,
``saveCacheLabel`` and ``saveRecResult``; rec crops are cut by ``ingest/crops.py``, the
pipeline's own implementation of its ``libs/utils.get_rotate_crop_image``), so the code
under test cannot tell a synthetic export from a real one. The pixels are drawn by
``synthetic_render.py``.

The defaults (black-on-white 4-6 digit strings, 320x160 images with 1-3 lines) are
the data on which CTC recognition and DB detection were seen to learn from scratch on
a 2-core CPU in minutes (docs/training.md, "CPU profiles that pass the real gate"); harder
data would make the demo's quality gate unreachable in CPU time.

Output is a pure function of the spec: every random draw comes from generators seeded
by ``spec.seed``, and image ``i`` is drawn from its own stream, so adding images or
unconfirmed extras does not change the images already there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Final

import cv2
import numpy as np

from ocr_tasks.embedded.synthetic_render import (
    COMPOSED, DRAWABLE, background, background_bank, composite, ink_colour, layout_lines, make_text_line_image,
    random_text,
)
from ocr_tasks.ingest.crops import crop_text_region

__all__ = [
    "ExportSpec",
    "break_label_file",
    "break_one_polygon",
    "make_export",
    "make_text_line_image",
    "IGNORE_TRANSCRIPTION",
]

# PaddleOCR's det label loader treats "###" (and "*") as "do not care" regions.
IGNORE_TRANSCRIPTION: Final = "###"

_USERS: Final = ("labeler", "annotator01", "ocr_team", "m.chen", "j.doe")

# Separate random streams (second entry of the seed sequence), so that e.g. the
# difficult/ignore draw never shifts the pixels of any image.
_STREAM_IMAGE: Final = 0
_STREAM_FLAGS: Final = 1
_STREAM_BANK: Final = 2
_STREAM_PATHS: Final = 3


@dataclass(frozen=True)
class ExportSpec:
    """What one synthetic PPOCRLabel export folder should look like."""

    name: str                        # export folder name, e.g. "batch_001"
    n_images: int = 20
    seed: int = 0
    image_size: tuple[int, int] = (320, 160)   # (width, height)
    lines_per_image: tuple[int, int] = (1, 3)  # inclusive range
    charset: str = "0123456789"
    text_length: tuple[int, int] = (4, 6)
    # each line is one of these, drawn evenly, `{}` standing for its random characters: ("{}", "€{}") makes half the
    # lines prices (a symbol the stock rec has no row for, the demo's case); one format draws nothing extra, so the
    # exports of every earlier spec stay byte for byte the same
    text_formats: tuple[str, ...] = ("{}",)
    image_format: str = "jpg"        # "jpg" or "png"
    with_rec_crops: bool = False     # write rec_gt.txt + crop_img/ like "Export Recognition Result"
    unconfirmed: int = 0             # extra images in the folder + Cache.cach, not in Label.txt/fileState.txt
    difficult_ratio: float = 0.0     # fraction of boxes marked difficult (no crop for them)
    ignore_ratio: float = 0.0        # fraction of boxes with transcription "###"
    windows_paths: bool = True       # fileState.txt keys like C:\Users\...\<name>\img.jpg
    crlf: bool = False               # write text files with \r\n
    bom: bool = False                # UTF-8 BOM at the start of Label.txt/fileState.txt/rec_gt.txt
    rotate_degrees: float = 0.0      # max abs rotation of text lines; polygons follow the text
    # which PPOCRLabel wrote it (see ocr_tasks/ingest/ppocrlabel.py): 2 (2.1.x) or 3 (3.1.x: fileState.txt
    # paths relative to the parent folder, a crop for every box, ### and difficult ones included)
    ppocrlabel_version: int = 2
    key_cls: str | None = None       # KIE mode: every box gets this key_cls (PPOCRLabel writes "None" when unset)

    def __post_init__(self) -> None:
        # Fail at construction: a bad spec found half-way through writing would leave a
        # partial export behind that later tests might mistake for a real one.
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\t\r\n"):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if self.n_images < 0 or self.unconfirmed < 0:
            raise ValueError("n_images and unconfirmed must be >= 0")
        if self.seed < 0:
            raise ValueError("seed must be >= 0 (numpy seed sequences take non-negative ints)")
        w, h = self.image_size
        if w < 32 or h < 16:
            raise ValueError(f"image_size {self.image_size} too small (min 32x16)")
        lo, hi = self.lines_per_image
        if not 0 <= lo <= hi:
            raise ValueError(f"lines_per_image must be 0 <= lo <= hi, got {self.lines_per_image}")
        tlo, thi = self.text_length
        if not 1 <= tlo <= thi:
            raise ValueError(f"text_length must be 1 <= lo <= hi, got {self.text_length}")
        if not self.charset or not set(self.charset) <= DRAWABLE:
            raise ValueError(f"charset must be non-empty printable ASCII or {''.join(COMPOSED)} (Hershey fonts draw "
                             "nothing else)")
        if not self.charset.strip():
            raise ValueError("charset needs at least one non-space character")
        for text_format in self.text_formats:
            if text_format.count("{}") != 1 or not set(text_format.replace("{}", "")) <= DRAWABLE:
                raise ValueError(f"text_formats: {text_format!r} needs one {{}} and drawable characters around it")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be 'jpg' or 'png', got {self.image_format!r}")
        for field_name in ("difficult_ratio", "ignore_ratio"):
            if not 0.0 <= getattr(self, field_name) <= 1.0:
                raise ValueError(f"{field_name} must be in [0, 1]")
        if self.difficult_ratio + self.ignore_ratio > 1.0:
            raise ValueError("difficult_ratio + ignore_ratio must be <= 1 (the two sets are disjoint)")
        if not 0.0 <= self.rotate_degrees < 90.0:
            raise ValueError("rotate_degrees must be in [0, 90)")
        if self.ppocrlabel_version not in (2, 3):
            raise ValueError("ppocrlabel_version must be 2 or 3")



def _labeller_dir(spec: ExportSpec) -> str:
    """The folder on the labeller's machine: fileState.txt stores absolute paths in it."""
    rng = np.random.default_rng([spec.seed, _STREAM_PATHS])
    user = _USERS[int(rng.integers(len(_USERS)))]
    if spec.windows_paths:
        return str(PureWindowsPath("C:\\", "Users", user, "Documents", "ppocr", spec.name)) + "\\"
    return str(PurePosixPath("/home", user, "ppocr", spec.name)) + "/"


def _write_bytes(path: Path, data: np.ndarray) -> None:
    # Raw os calls: creating thousands of small files is the slowest part of an export,
    # and Path.write_bytes adds a buffered file object and a bytes copy per image.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _write_text(path: Path, lines: list[str], *, crlf: bool, bom: bool) -> None:
    # PPOCRLabel opens files in text mode, so on Windows every "\n" becomes "\r\n";
    # BOMs come from people fixing labels in Notepad. Readers must cope with both.
    eol = "\r\n" if crlf else "\n"
    body = "".join(line + eol for line in lines)
    path.write_bytes((("\ufeff" if bom else "") + body).encode("utf-8"))


def _label_json(boxes: list[dict[str, object]]) -> str:
    return json.dumps(boxes, ensure_ascii=False)


def make_export(parent: Path, spec: ExportSpec) -> Path:
    """Write a PPOCRLabel export folder ``parent/spec.name`` and return its path.

    Layout and file formats are those PPOCRLabel writes: images, ``Label.txt`` and
    ``fileState.txt`` for confirmed images, ``Cache.cach`` with auto-labels of every
    image, and, with ``with_rec_crops``, ``rec_gt.txt`` plus ``crop_img/``.
    """
    folder = Path(parent) / spec.name
    if folder.exists() and any(folder.iterdir()):
        # Mixing two specs' files would produce an export no spec describes.
        raise FileExistsError(f"{folder} exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)

    total = spec.n_images + spec.unconfirmed
    digits = max(4, len(str(max(total - 1, 0))))
    ext = spec.image_format
    w, h = spec.image_size
    lo_lines, hi_lines = spec.lines_per_image

    # Pass 1: how many lines each image has, so the flag draw below can hit an exact
    # fraction of the confirmed boxes instead of a noisy per-box coin flip.
    image_rngs = [np.random.default_rng([spec.seed, _STREAM_IMAGE, i]) for i in range(total)]
    n_lines = [int(r.integers(lo_lines, hi_lines + 1)) for r in image_rngs]
    flags_rng = np.random.default_rng([spec.seed, _STREAM_FLAGS])
    unconfirmed = set(flags_rng.choice(total, size=spec.unconfirmed, replace=False).tolist()) \
        if spec.unconfirmed else set()
    box_ids = [(i, j) for i in range(total) if i not in unconfirmed for j in range(n_lines[i])]
    n_ignore = round(spec.ignore_ratio * len(box_ids))
    n_difficult = round(spec.difficult_ratio * len(box_ids))
    chosen = flags_rng.permutation(len(box_ids))
    ignore_set = {box_ids[k] for k in chosen[:n_ignore].tolist()}
    difficult_set = {box_ids[k] for k in chosen[n_ignore:n_ignore + n_difficult].tolist()}

    bank = background_bank(np.random.default_rng([spec.seed, _STREAM_BANK]), spec.image_size)
    labeller_dir = _labeller_dir(spec)
    label_lines: list[str] = []
    state_lines: list[str] = []
    cache_lines: list[str] = []
    rec_lines: list[str] = []
    crop_dir = folder / "crop_img"
    if spec.with_rec_crops:
        crop_dir.mkdir(exist_ok=True)

    for i in range(total):
        rng = image_rngs[i]
        file_name = f"img_{i:0{digits}d}.{ext}"
        key = f"{spec.name}/{file_name}"  # PPOCRLabel's getImglabelidx: "<folder>/<file>"
        texts = [random_text(rng, spec.charset, spec.text_length) for _ in range(n_lines[i])]
        if len(spec.text_formats) > 1:
            texts = [spec.text_formats[int(k)].replace("{}", text)
                     for k, text in zip(rng.integers(0, len(spec.text_formats), len(texts)), texts)]
        kinds = ["ignore" if (i, j) in ignore_set else "difficult" if (i, j) in difficult_set
                 else "normal" for j in range(n_lines[i])]
        img = background(rng, bank, spec.image_size)
        lines, places = layout_lines(rng, texts, kinds, spec.image_size, spec.rotate_degrees)
        boxes: list[dict[str, object]] = []
        auto: list[dict[str, object]] = []
        for text, kind, ln, (x, y) in zip(texts, kinds, lines, places):
            composite(img, ln.alpha, x, y, ink_colour(rng, kind))
            # Plain ints, not numpy: json needs them and this runs per box.
            points = [[min(max(round(px + x), 0), w - 1), min(max(round(py + y), 0), h - 1)]
                      for px, py in ln.quad.tolist()]
            boxes.append({"transcription": IGNORE_TRANSCRIPTION if kind == "ignore" else text,
                          "points": points, "difficult": kind == "difficult"})
            if spec.key_cls is not None:
                boxes[-1]["key_cls"] = spec.key_cls
            # Auto-labels are the detector's guess before a person fixed them: boxes a
            # pixel off, no ignore/difficult marks. Cache.cach must never be mistaken
            # for training data, and differing from Label.txt lets tests check that.
            jit = rng.integers(-1, 2, 8).tolist()
            auto_points = [[min(max(px + jit[2 * k], 0), w - 1), min(max(py + jit[2 * k + 1], 0), h - 1)]
                           for k, (px, py) in enumerate(points)]
            auto.append({"transcription": text, "points": auto_points, "difficult": False})

        if ext == "jpg":
            quality = int(rng.integers(85, 96))
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        else:
            ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError(f"cv2 could not encode {file_name}")
        _write_bytes(folder / file_name, buf)
        cache_lines.append(f"{key}\t{_label_json(auto)}")

        if i in unconfirmed:
            continue
        state_lines.append(f"{key if spec.ppocrlabel_version == 3 else labeller_dir + file_name}\t1")
        # savePPlabel skips confirmed images whose label list is empty.
        if boxes:
            label_lines.append(f"{key}\t{_label_json(boxes)}")
        if spec.with_rec_crops:
            # saveRecResult crops from the image file as read back, JPEG loss included.
            src = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ext == "jpg" else img
            stem = Path(file_name).stem
            for j, box in enumerate(boxes):
                if box["difficult"] and spec.ppocrlabel_version == 2:   # 3.x crops every box
                    continue
                crop = crop_text_region(src, box["points"])
                crop_name = f"{stem}_crop_{j}.jpg"
                cv2.imwrite(str(crop_dir / crop_name), crop)
                rec_lines.append(f"crop_img/{crop_name}\t{box['transcription']}")

    _write_text(folder / "Label.txt", label_lines, crlf=spec.crlf, bom=spec.bom)
    _write_text(folder / "fileState.txt", state_lines, crlf=spec.crlf, bom=spec.bom)
    _write_text(folder / "Cache.cach", cache_lines, crlf=spec.crlf, bom=False)
    if spec.with_rec_crops:
        _write_text(folder / "rec_gt.txt", rec_lines, crlf=spec.crlf, bom=spec.bom)
    return folder


def break_one_polygon(folder: Path, line_index: int = 2) -> None:
    """A labeller's slip that costs one image: one polygon dragged outside its image.

    The first box of Label.txt line ``line_index + 1`` gains a point at (-50, -50), so validation
    reports ``Label.txt:<line_index + 1> box 0`` and leaves that image out (the rest is merged).
    """
    label = folder / "Label.txt"
    lines = label.read_text(encoding="utf-8-sig").splitlines()
    lines[line_index] = lines[line_index].replace('"points": [[', '"points": [[-50, -50], [', 1)
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")


def break_label_file(folder: Path, line_index: int = 2) -> None:
    """A damage that costs the whole export: Label.txt line ``line_index + 1`` cut short (a hand edit, a
    truncated copy), so its image cannot even be named with certainty and the export is quarantined."""
    label = folder / "Label.txt"
    lines = label.read_text(encoding="utf-8-sig").splitlines()
    lines[line_index] = lines[line_index][: len(lines[line_index]) // 2]
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
