"""Reading image files safely: size from the header first, decode only when within limits."""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

from ocr_tasks.ingest.ppocrlabel import unicode_form_mismatch

# We enforce our own (configurable) pixel limit before decoding; PIL's built-in one
# would raise a different error for the same problem.
Image.MAX_IMAGE_PIXELS = None

_ORIENTATION = 0x0112           # EXIF tag; 5-8 turn the image by 90 degrees
_TRANSPOSED = frozenset({5, 6, 7, 8})


class DecodeBudget:
    """Bytes of decoded pixels held at once across threads: memory stays bounded whatever the images.

    A decode waits until its estimate fits beside the others; one larger than the whole
    budget waits for the rest to finish and then runs alone.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.held = 0
        self.peak = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = max(0, int(nbytes))
        with self._cond:
            self._cond.wait_for(lambda: self.held == 0 or self.held + nbytes <= self.limit)
            self.held += nbytes
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._cond:
                self.held -= nbytes
                self._cond.notify_all()


DECODE_BUDGET = DecodeBudget(1024 * 2 ** 20)


def set_decode_memory(megabytes: int) -> None:
    """The budget every decode in this process shares (validation.decode_memory_mb)."""
    DECODE_BUDGET.limit = megabytes * 2 ** 20


def decoded_bytes(width: int, height: int, fmt: str | None, *, scale: int = 1) -> int:
    """What decoding takes: cv2's 8-bit BGR output, and for PNG/TIFF a 16-bit intermediate."""
    per_pixel = 3 if fmt == "JPEG" else 9
    return (width // scale + 1) * (height // scale + 1) * per_pixel


@dataclass(frozen=True)
class ImageFacts:
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    problem: str | None = None   # missing, unreadable header, too large, does not decode


def inspect_image(path: Path, *, max_pixels: int, max_side: int) -> ImageFacts:
    data = _read(path)
    if isinstance(data, ImageFacts):
        return data
    sha = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            header = Image.open(io.BytesIO(data))
        except Exception as exc:  # PIL raises many types for garbage input
            return ImageFacts(sha, problem=f"not a readable image ({type(exc).__name__})")
        with header:
            width, height = header.size
            if width * height > max_pixels or max(width, height) > max_side:
                return ImageFacts(sha, width, height,
                                  problem=f"image too large: {width}x{height} (limits {max_pixels} pixels, side {max_side})")
            scale = 8 if isinstance(header, JpegImagePlugin.JpegImageFile) else 1
            with DECODE_BUDGET.hold(decoded_bytes(width, height, header.format, scale=scale)):
                size = _decoded_size(header, data)
    if isinstance(size, str):
        return ImageFacts(sha, width, height, problem=size)
    return ImageFacts(sha, *size)


def hash_image(path: Path) -> ImageFacts:
    """Only the content hash, for an export validated already (merge)."""
    data = _read(path)
    return data if isinstance(data, ImageFacts) else ImageFacts(hashlib.sha256(data).hexdigest())


def decode_image(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@contextlib.contextmanager
def decoded(data: bytes) -> Iterator[np.ndarray | None]:
    """The decoded image, its pixels counted in DECODE_BUDGET while the caller holds it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as header:
                cost = decoded_bytes(*header.size, header.format)
    except Exception:
        cost = 0
    with DECODE_BUDGET.hold(cost):
        yield decode_image(data)


def _read(path: Path) -> bytes | ImageFacts:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
        return ImageFacts(problem="image file missing" + (unicode_form_mismatch(path.name, siblings) or ""))
    except OSError as exc:
        return ImageFacts(problem=f"image unreadable: {exc.strerror}")


TRUNCATED = "file is truncated (an interrupted upload?): upload the image again"


def _decoded_size(header: Image.Image, data: bytes) -> tuple[int, int] | str:
    """(width, height) of the image as cv2 (like PaddleOCR's DecodeImage) decodes it, EXIF
    orientation applied: polygons live in that frame. Else what is wrong with the file.

    A JPEG is decoded by libjpeg at 1/8 scale: every byte of its data is read, at a
    fraction of the work, and a truncated file fails (cv2 would fill the missing part
    with grey). A PNG's chunks are checked first (CRCs, IEND: libpng accepts a file
    cut after its image data). Other formats are decoded by cv2 itself.
    """
    if isinstance(header, JpegImagePlugin.JpegImageFile):
        width, height = header.size
        try:
            header.draft(None, (max(1, width // 8), max(1, height // 8)))
            header.load()
        except Exception as exc:
            return TRUNCATED if "truncated" in str(exc) else f"image does not decode ({_first_line(exc)})"
        return (height, width) if header.getexif().get(_ORIENTATION) in _TRANSPOSED else (width, height)
    if isinstance(header, PngImagePlugin.PngImageFile):
        problem = _png_problem(data)
        if problem:
            return problem
    decoded = decode_image(data)
    if decoded is None:
        return "image does not decode"
    height, width = decoded.shape[:2]
    return width, height


def _png_problem(data: bytes) -> str | None:
    """Every chunk whole, with its CRC right, up to IEND (PIL's verify)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:
        text = str(exc).lower()
        if "truncated" in text or isinstance(exc, (EOFError, struct.error)) or "iend" in text:
            return TRUNCATED
        if "crc" in text or "checksum" in text:
            return "file is corrupt: a PNG chunk fails its CRC check (a damaged copy?): upload the image again"
        return f"image does not decode ({_first_line(exc)})"
    if data.rfind(b"IEND\xaeB`\x82") < data.rfind(b"IDAT"):
        return TRUNCATED     # verify stops at the image data; a file cut after it has no IEND
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
