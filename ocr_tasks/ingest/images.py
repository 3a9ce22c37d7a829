"""Reading image files safely: size from the header first, decode only when within limits."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# We enforce our own (configurable) pixel limit before decoding; PIL's built-in one
# would raise a different error for the same problem.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageFacts:
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    problem: str | None = None   # missing, unreadable header, too large, does not decode


def inspect_image(path: Path, *, max_pixels: int, max_side: int) -> ImageFacts:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageFacts(problem="image file missing")
    except OSError as exc:
        return ImageFacts(problem=f"image unreadable: {exc.strerror}")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Exception as exc:  # PIL raises many types for garbage input
        return ImageFacts(sha, problem=f"not a readable image ({type(exc).__name__})")
    if width * height > max_pixels or max(width, height) > max_side:
        return ImageFacts(sha, width, height,
                          problem=f"image too large: {width}x{height} (limits {max_pixels} pixels, side {max_side})")
    decoded = decode_image(data)
    if decoded is None:
        return ImageFacts(sha, width, height, problem="image does not decode")
    # cv2 (like PaddleOCR's DecodeImage) applies EXIF orientation: polygons live in that frame
    height, width = decoded.shape[:2]
    return ImageFacts(sha, width, height)


def decode_image(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

