"""Synthetic PPOCRLabel exports for tests, benchmarks and the demo.

The pipeline's real input is a folder exported by PPOCRLabel; tests and the CPU demo
need the same thing without a person labelling photos. Everything written here mimics
what PPOCRLabel itself writes (see its ``savePPlabel``, ``saveFilestate``,
``saveCacheLabel``, ``saveRecResult`` and ``libs/utils.get_rotate_crop_image``), so
the code under test cannot tell a synthetic export from a real one.

The defaults (black-on-white 4-6 digit strings, 320x160 images with 1-3 lines) are
the data on which CTC recognition and DB detection were seen to learn from scratch on
a 2-core CPU in minutes (shared/ENGINE.md); harder data would make the demo's quality
gate unreachable in CPU time.

Output is a pure function of the spec: every random draw comes from generators seeded
by ``spec.seed``, and image ``i`` is drawn from its own stream, so adding images or
unconfirmed extras does not change the images already there.
"""

from __future__ import annotations

import json
import math
import os
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Final

import cv2
import numpy as np

__all__ = [
    "ExportSpec",
    "make_export",
    "make_text_line_image",
    "get_rotate_crop_image",
    "IGNORE_TRANSCRIPTION",
]

# PaddleOCR's det label loader treats "###" (and "*") as "do not care" regions.
IGNORE_TRANSCRIPTION: Final = "###"

# Hershey fonts are what cv2 can draw without font files, which keeps the generator
# dependency-free and fast. SCRIPT fonts are left out: their glyphs are not digits a
# small model can learn quickly, and the demo has to pass its gate on CPU.
_FONTS: Final = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)
_ITALIC_P: Final = 0.15

# Only printable ASCII can be drawn by Hershey fonts (others come out as "?"), and a
# label that does not match its pixels would teach the model the wrong thing.
_DRAWABLE: Final = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")

_EDGE: Final = 2      # px kept free at the image border so int polygons stay inside
_LINE_GAP: Final = 2  # px between stacked lines' bounding boxes so polygons never touch
_NOISE_BANK: Final = 3  # sheets; each is also used mirrored
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
    image_format: str = "jpg"        # "jpg" or "png"
    with_rec_crops: bool = False     # write rec_gt.txt + crop_img/ like "Export Recognition Result"
    unconfirmed: int = 0             # extra images in the folder + Cache.cach, not in Label.txt/fileState.txt
    difficult_ratio: float = 0.0     # fraction of boxes marked difficult (no crop for them)
    ignore_ratio: float = 0.0        # fraction of boxes with transcription "###"
    windows_paths: bool = True       # fileState.txt keys like C:\Users\...\<name>\img.jpg
    crlf: bool = False               # write text files with \r\n
    bom: bool = False                # UTF-8 BOM at the start of Label.txt/fileState.txt/rec_gt.txt
    rotate_degrees: float = 0.0      # max abs rotation of text lines; polygons follow the text

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
        if not self.charset or not set(self.charset) <= _DRAWABLE:
            raise ValueError("charset must be non-empty printable ASCII (Hershey fonts draw nothing else)")
        if not self.charset.strip():
            raise ValueError("charset needs at least one non-space character")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be 'jpg' or 'png', got {self.image_format!r}")
        for field_name in ("difficult_ratio", "ignore_ratio"):
            if not 0.0 <= getattr(self, field_name) <= 1.0:
                raise ValueError(f"{field_name} must be in [0, 1]")
        if self.difficult_ratio + self.ignore_ratio > 1.0:
            raise ValueError("difficult_ratio + ignore_ratio must be <= 1 (the two sets are disjoint)")
        if not 0.0 <= self.rotate_degrees < 90.0:
            raise ValueError("rotate_degrees must be in [0, 90)")


# --------------------------------------------------------------------------- rendering


@dataclass
class _Line:
    """A rendered text line: coverage mask plus its quad in mask coordinates."""

    alpha: np.ndarray  # uint8 coverage, 0 = background
    quad: np.ndarray   # (4, 2) float64, clockwise from the text's top-left


@dataclass(frozen=True)
class _Style:
    font: int
    scale: float
    unit_h: int    # text height in px at scale 1 (fonts differ a lot)
    weight: float  # stroke width as a fraction of text height, so shrinking a line thins it too
    angle: float
    margin: int
    blur: int  # Gaussian kernel (odd) or 0

    @property
    def thickness(self) -> int:
        return max(1, round(self.scale * self.unit_h * self.weight))


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _ink_mask(text: str, font: int, scale: float, thickness: int) -> np.ndarray:
    """Draw ``text`` white on black and cut it to the exact inked pixels."""
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    # getTextSize ignores italic slant and stroke overhang; draw with slack and cut the
    # ink out afterwards so the label box is tight around what was really drawn.
    pad = thickness + 2 + th // 2
    mask = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(mask, text, (pad, pad + th), font, scale, 255, thickness, cv2.LINE_AA)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:  # only possible for whitespace; the text generator avoids it
        return np.zeros((1, 1), np.uint8)
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _render_line(text: str, style: _Style) -> _Line:
    ink = _ink_mask(text, style.font, style.scale, style.thickness)
    m = style.margin
    patch = cv2.copyMakeBorder(ink, m, m, m, m, cv2.BORDER_CONSTANT, value=0)
    if style.blur:
        # Blurring inside the margin-padded patch keeps the smudge inside the quad.
        patch = cv2.GaussianBlur(patch, (style.blur, style.blur), 0)
    ph, pw = patch.shape
    # Corners as pixel indices, so rounded polygons only name pixels inside the image.
    quad = np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], np.float64)
    if style.angle == 0.0:
        return _Line(patch, quad)
    rot = cv2.getRotationMatrix2D(((pw - 1) / 2.0, (ph - 1) / 2.0), style.angle, 1.0)
    turned = quad @ rot[:, :2].T + rot[:, 2]
    # Shift so the rotated quad sits 1 px inside a canvas just big enough to hold it.
    shift = 1.0 - turned.min(axis=0)
    rot[:, 2] += shift
    turned += shift
    out_w = int(math.ceil(turned[:, 0].max())) + 2
    out_h = int(math.ceil(turned[:, 1].max())) + 2
    alpha = cv2.warpAffine(patch, rot, (out_w, out_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _Line(alpha, turned)


def _composite(img: np.ndarray, alpha: np.ndarray, x: int, y: int, color: tuple[int, int, int]) -> None:
    """Alpha-blend a solid colour through ``alpha`` into ``img`` at (x, y), in place."""
    h, w = alpha.shape
    region = img[y:y + h, x:x + w]
    # region - (region - color) * alpha / 255 with saturating uint8 cv2 ops: several
    # times faster than numpy's widening arithmetic and, because the ink is darker
    # than the paper, rounds to the same bytes.
    ink = (float(color[0]), float(color[1]), float(color[2]), 0.0)
    diff = cv2.subtract(region, ink)
    cover = cv2.multiply(diff, cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR), scale=1 / 255)
    cv2.subtract(region, cover, dst=region)


def _random_text(rng: np.random.Generator, charset: str, length: tuple[int, int]) -> str:
    n = int(rng.integers(length[0], length[1] + 1))
    chars = list(charset)
    picks = [chars[i] for i in rng.integers(0, len(chars), n)]
    # Labellers' transcriptions never start or end with blanks, and an all-blank line
    # would have no ink to box.
    solid = [c for c in chars if c != " "]
    if picks[0] == " ":
        picks[0] = solid[int(rng.integers(len(solid)))]
    if picks[-1] == " ":
        picks[-1] = solid[int(rng.integers(len(solid)))]
    return "".join(picks)


def _random_style(rng: np.random.Generator, text: str, target_h: float, max_angle: float,
                  kind: str, max_margin: int = 4) -> _Style:
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    if rng.random() < _ITALIC_P:
        font |= cv2.FONT_ITALIC
    unit_h = cv2.getTextSize(text, font, 1.0, 1)[0][1]
    scale = max(0.15, target_h / max(unit_h, 1))
    # Stroke width grows with size like real print; PLAIN is a hairline font and
    # needs more weight to look like print rather than a sketch.
    plain = font & 0xF == cv2.FONT_HERSHEY_PLAIN
    weight = float(rng.uniform(0.06, 0.12) if plain else rng.uniform(0.035, 0.1))
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle > 0 else 0.0
    margin = int(rng.integers(min(2, max_margin), max_margin + 1))
    blur = 0
    if kind == "ignore":
        # An ignore region is text nobody could read; make it so, or the label lies.
        blur = max(7, int(target_h * 0.8) | 1)
    elif kind == "difficult":
        blur = 3
    return _Style(font, scale, unit_h, weight, angle, margin, blur)


def _scaled(style: _Style, factor: float) -> _Style:
    return _Style(style.font, max(0.15, style.scale * factor), style.unit_h, style.weight,
                  style.angle, style.margin, style.blur)


def _layout(rng: np.random.Generator, texts: list[str], kinds: list[str], size: tuple[int, int],
            max_angle: float) -> tuple[list[_Line], list[tuple[int, int]]]:
    """Render lines and stack them top to bottom at random, non-overlapping spots."""
    w, h = size
    n = len(texts)
    if n == 0:
        return [], []
    avail_w = w - 2 * _EDGE
    avail_h = h - 2 * _EDGE - (n - 1) * _LINE_GAP
    # Text heights relative to the image so other image sizes keep the same look.
    lo_h = max(6.0, 0.09 * h)
    hi_h = max(lo_h, min(0.3 * h, avail_h / n * 0.9))
    # A few px of margin like a labeller's box, less on thumbnails where it would
    # not leave room for the text itself.
    max_margin = 4 if h >= 96 else 2
    styles = [_random_style(rng, t, float(rng.uniform(lo_h, hi_h)), max_angle, k, max_margin)
              for t, k in zip(texts, kinds)]
    lines = [_render_line(t, s) for t, s in zip(texts, styles)]
    # Long strings or strong rotation may not fit: shrink and redraw rather than crop
    # text out of the image (the polygon must cover all ink and stay inside).
    for _ in range(16):
        total_h = sum(ln.alpha.shape[0] for ln in lines)
        f_h = min(1.0, avail_h / total_h)
        factors = [min(f_h, avail_w / ln.alpha.shape[1]) for ln in lines]
        if all(f >= 1.0 for f in factors):
            break
        styles = [_scaled(s, f * 0.95) if f < 1.0 else s for s, f in zip(styles, factors)]
        lines = [_render_line(t, s) for t, s in zip(texts, styles)]
    else:
        raise ValueError(f"cannot fit {n} lines like {texts[0]!r} into a {w}x{h} image")
    free = avail_h - sum(ln.alpha.shape[0] for ln in lines)
    # Sorted offsets into the free height spread the lines at random yet keep their
    # order, so line k always ends above line k+1 starts.
    offsets = np.sort(rng.integers(0, free + 1, n))
    places: list[tuple[int, int]] = []
    stacked = _EDGE
    for ln, off in zip(lines, offsets.tolist()):
        lh, lw = ln.alpha.shape
        x = int(rng.integers(_EDGE, w - _EDGE - lw + 1))
        places.append((x, stacked + off))
        stacked += lh + _LINE_GAP
    return lines, places


def _background_bank(seed: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Paper-like backgrounds, twice the image size so each image takes a random window.

    Per-pixel noise for every image would cost more than the rest of the rendering;
    windows into a few shared noisy sheets look just as varied to a model.
    """
    rng = np.random.default_rng([seed, _STREAM_BANK])
    w, h = size
    sw, sh = 2 * w, 2 * h
    bank: list[np.ndarray] = []
    for _ in range(_NOISE_BANK):
        # float32 throughout: this runs once per export, and tests make many exports.
        sheet = rng.standard_normal((sh, sw, 3), dtype=np.float32)
        sheet *= rng.uniform(2.0, 5.0)
        sheet += (rng.uniform(228, 250) + rng.uniform(-6, 6, 3)).astype(np.float32)  # paper tint
        # Uneven lighting: a gentle linear gradient across the sheet.
        sheet += (np.linspace(0, rng.uniform(-10, 10), sw, dtype=np.float32)[None, :, None]
                  + np.linspace(0, rng.uniform(-10, 10), sh, dtype=np.float32)[:, None, None])
        np.clip(sheet, 0, 255, out=sheet)
        sheet8 = sheet.astype(np.uint8)
        # Mirrored copies made once here: flipping each image would cost a strided copy.
        bank += [sheet8, np.ascontiguousarray(sheet8[:, ::-1])]
    return bank


def _background(rng: np.random.Generator, bank: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    w, h = size
    sheet = bank[int(rng.integers(len(bank)))]
    x, y = int(rng.integers(0, w + 1)), int(rng.integers(0, h + 1))
    window = sheet[y:y + h, x:x + w]
    shift = int(rng.integers(-18, 6))  # exposure differences between photos/scans
    # cv2.add/subtract return a fresh contiguous image, so the bank is never drawn on.
    if shift > 0:
        return cv2.add(window, (shift, shift, shift, 0))
    if shift < 0:
        return cv2.subtract(window, (-shift, -shift, -shift, 0))
    return np.ascontiguousarray(window)


def _ink_colour(rng: np.random.Generator, kind: str) -> tuple[int, int, int]:
    # Difficult boxes get faded ink: the reason a labeller would flag them.
    level = rng.uniform(0, 55) if kind != "difficult" else rng.uniform(90, 140)
    b, g, r = (min(max(int(level + t), 0), 255) for t in rng.uniform(-8, 8, 3).tolist())
    return b, g, r


def make_text_line_image(text: str, *, height: int = 40, rng: np.random.Generator | int) -> np.ndarray:
    """One dark-on-white text strip (BGR uint8, exactly ``height`` rows), like a rec crop.

    ``rng`` is a numpy Generator or an int seed; the same seed gives the same pixels.
    """
    if not text.strip() or not set(text) <= _DRAWABLE:
        raise ValueError(f"text must be non-blank printable ASCII, got {text!r}")
    if height < 8:
        raise ValueError("height must be >= 8")
    gen = _as_rng(rng)
    style = _random_style(gen, text, gen.uniform(0.55, 0.75) * height, 0.0, "normal")
    ink = _ink_mask(text, style.font, style.scale, style.thickness)
    ih, iw = ink.shape
    room = height - 4
    if ih > room:  # the font's true ink height can exceed the estimate
        iw = max(1, round(iw * room / ih))
        ih = room
        ink = cv2.resize(ink, (iw, ih), interpolation=cv2.INTER_AREA)
    left, right = (int(v) for v in gen.integers(2, 9, 2))
    top = int(gen.integers(2, height - ih - 1)) if height - ih - 2 > 2 else (height - ih) // 2
    width = iw + left + right
    paper = gen.uniform(232, 252) + gen.uniform(-5, 5, 3)
    noise = gen.normal(0, gen.uniform(1.5, 4.0), (height, width, 3))
    img = np.clip(paper + noise, 0, 255).astype(np.uint8)
    _composite(img, ink, left, top, _ink_colour(gen, "normal"))
    return img


def get_rotate_crop_image(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """PPOCRLabel's ``libs/utils.get_rotate_crop_image``: perspective crop of a 4-point box.

    Same steps (orientation fix, INTER_CUBIC, BORDER_REPLICATE, 90° turn of crops at
    least 1.5x taller than wide) so rec crops match what "Export Recognition Result" writes.
    """
    points = np.array(points, np.float32)
    # Green's formula: PPOCRLabel swaps points 1 and 3 of counter-clockwise boxes.
    d = 0.0
    for index in range(-1, 3):
        d += -0.5 * (points[index + 1][1] + points[index][1]) * (points[index + 1][0] - points[index][0])
    if d < 0:
        tmp = np.array(points)
        points[1], points[3] = tmp[3], tmp[1]
    crop_w = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    crop_h = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    pts_std = np.float32([[0, 0], [crop_w, 0], [crop_w, crop_h], [0, crop_h]])
    m = cv2.getPerspectiveTransform(points, pts_std)
    dst = cv2.warpPerspective(img, m, (crop_w, crop_h), borderMode=cv2.BORDER_REPLICATE,
                              flags=cv2.INTER_CUBIC)
    if dst.shape[0] * 1.0 / dst.shape[1] >= 1.5:
        dst = np.rot90(dst)
    return dst


# --------------------------------------------------------------------------- export


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

    bank = _background_bank(spec.seed, spec.image_size)
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
        texts = [_random_text(rng, spec.charset, spec.text_length) for _ in range(n_lines[i])]
        kinds = ["ignore" if (i, j) in ignore_set else "difficult" if (i, j) in difficult_set
                 else "normal" for j in range(n_lines[i])]
        img = _background(rng, bank, spec.image_size)
        lines, places = _layout(rng, texts, kinds, spec.image_size, spec.rotate_degrees)
        boxes: list[dict[str, object]] = []
        auto: list[dict[str, object]] = []
        for text, kind, ln, (x, y) in zip(texts, kinds, lines, places):
            _composite(img, ln.alpha, x, y, _ink_colour(rng, kind))
            # Plain ints, not numpy: json needs them and this runs per box.
            points = [[min(max(round(px + x), 0), w - 1), min(max(round(py + y), 0), h - 1)]
                      for px, py in ln.quad.tolist()]
            boxes.append({"transcription": IGNORE_TRANSCRIPTION if kind == "ignore" else text,
                          "points": points, "difficult": kind == "difficult"})
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
        state_lines.append(f"{labeller_dir}{file_name}\t1")
        # savePPlabel skips confirmed images whose label list is empty.
        if boxes:
            label_lines.append(f"{key}\t{_label_json(boxes)}")
        if spec.with_rec_crops:
            # saveRecResult crops from the image file as read back, JPEG loss included.
            src = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ext == "jpg" else img
            stem = Path(file_name).stem
            for j, box in enumerate(boxes):
                if box["difficult"]:
                    continue
                crop = get_rotate_crop_image(src, np.array(box["points"], np.float32))
                crop_name = f"{stem}_crop_{j}.jpg"
                cv2.imwrite(str(crop_dir / crop_name), crop)
                rec_lines.append(f"crop_img/{crop_name}\t{box['transcription']}")

    _write_text(folder / "Label.txt", label_lines, crlf=spec.crlf, bom=spec.bom)
    _write_text(folder / "fileState.txt", state_lines, crlf=spec.crlf, bom=spec.bom)
    _write_text(folder / "Cache.cach", cache_lines, crlf=spec.crlf, bom=False)
    if spec.with_rec_crops:
        _write_text(folder / "rec_gt.txt", rec_lines, crlf=spec.crlf, bom=spec.bom)
    return folder
