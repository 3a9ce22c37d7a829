"""The pixels of synthetic PPOCRLabel exports: printed-looking text lines on paper-like backgrounds.

``synthetic.make_export`` lays lines out with ``layout_lines`` and writes what PPOCRLabel
writes; ``make_text_line_image`` draws one line alone, like a recognition crop. Every draw
comes from the numpy Generator passed in, so the same stream gives the same pixels.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np

__all__ = [
    "COMPOSED",
    "DRAWABLE",
    "RenderedLine",
    "background",
    "background_bank",
    "composite",
    "ink_colour",
    "layout_lines",
    "make_text_line_image",
    "random_text",
]

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
# A few symbols outside ASCII, which stock dicts lack, are drawn as two Hershey glyphs struck over each other: the
# euro sign as C crossed by = (the tests of a dict grown by labels need a character the stock PP-OCRv4 rec has no
# row for, drawn in the image as its label says).
COMPOSED: Final = {"€": ("C", "=")}
DRAWABLE: Final = frozenset(string.ascii_letters + string.digits + string.punctuation + " ") | frozenset(COMPOSED)

_EDGE: Final = 2      # px kept free at the image border so int polygons stay inside
_LINE_GAP: Final = 2  # px between stacked lines' bounding boxes so polygons never touch
_NOISE_BANK: Final = 3  # sheets; each is also used mirrored



@dataclass
class RenderedLine:
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
    drawn = text.translate({ord(symbol): glyphs[0] for symbol, glyphs in COMPOSED.items()})
    (tw, th), base = cv2.getTextSize(drawn, font, scale, thickness)
    # getTextSize ignores italic slant and stroke overhang; draw with slack and cut the
    # ink out afterwards so the label box is tight around what was really drawn.
    pad = thickness + 2 + th // 2
    mask = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(mask, drawn, (pad, pad + th), font, scale, 255, thickness, cv2.LINE_AA)
    for at, symbol in enumerate(text):
        if symbol in COMPOSED:
            first, strike = COMPOSED[symbol]
            left = cv2.getTextSize(drawn[:at], font, scale, thickness)[0][0] if at else 0
            wide = cv2.getTextSize(first, font, scale, thickness)[0][0]
            narrow = cv2.getTextSize(strike, font, scale, thickness)[0][0]
            cv2.putText(mask, strike, (pad + left + (wide - narrow) // 2 - wide // 5, pad + th), font, scale * 0.8,
                        255, thickness, cv2.LINE_AA)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:  # only possible for whitespace; the text generator avoids it
        return np.zeros((1, 1), np.uint8)
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _render_line(text: str, style: _Style) -> RenderedLine:
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
        return RenderedLine(patch, quad)
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
    return RenderedLine(alpha, turned)


def composite(img: np.ndarray, alpha: np.ndarray, x: int, y: int, color: tuple[int, int, int]) -> None:
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


def random_text(rng: np.random.Generator, charset: str, length: tuple[int, int]) -> str:
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


def layout_lines(rng: np.random.Generator, texts: list[str], kinds: list[str], size: tuple[int, int],
            max_angle: float) -> tuple[list[RenderedLine], list[tuple[int, int]]]:
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


def background_bank(rng: np.random.Generator, size: tuple[int, int]) -> list[np.ndarray]:
    """Paper-like backgrounds, twice the image size so each image takes a random window.

    Per-pixel noise for every image would cost more than the rest of the rendering;
    windows into a few shared noisy sheets look just as varied to a model.
    """
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


def background(rng: np.random.Generator, bank: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
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


def ink_colour(rng: np.random.Generator, kind: str) -> tuple[int, int, int]:
    # Difficult boxes get faded ink: the reason a labeller would flag them.
    level = rng.uniform(0, 55) if kind != "difficult" else rng.uniform(90, 140)
    b, g, r = (min(max(int(level + t), 0), 255) for t in rng.uniform(-8, 8, 3).tolist())
    return b, g, r


def make_text_line_image(text: str, *, height: int = 40, rng: np.random.Generator | int) -> np.ndarray:
    """One dark-on-white text strip (BGR uint8, exactly ``height`` rows), like a rec crop.

    ``rng`` is a numpy Generator or an int seed; the same seed gives the same pixels.
    """
    if not text.strip() or not set(text) <= DRAWABLE:
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
    composite(img, ink, left, top, ink_colour(gen, "normal"))
    return img
