"""inspect_image: the size cv2 decodes (EXIF orientation applied), and what does not decode."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from ocr_tasks.ingest.images import TRUNCATED, hash_image, inspect_image

LIMITS = {"max_pixels": 10**8, "max_side": 10**5}


def jpeg(orientation: int | None = None, progressive: bool = False) -> bytes:
    pixels = (np.random.default_rng(0).random((161, 322, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", exif=exif.tobytes(), progressive=progressive)
    return out.getvalue()


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_size_is_the_one_cv2_decodes(tmp_path, orientation):
    data = jpeg(orientation)
    (tmp_path / "a.jpg").write_bytes(data)
    facts = inspect_image(tmp_path / "a.jpg", **LIMITS)
    height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert (facts.width, facts.height, facts.problem) == (width, height, None)
    assert facts.sha256 == hash_image(tmp_path / "a.jpg").sha256


@pytest.mark.parametrize("progressive", [False, True])
def test_a_truncated_jpeg_does_not_decode(tmp_path, progressive):
    data = jpeg(progressive=progressive)[:-300]
    if not progressive:  # cv2 decodes it, greying the missing part: training data silently damaged
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    (tmp_path / "a.jpg").write_bytes(data)
    assert inspect_image(tmp_path / "a.jpg", **LIMITS).problem == TRUNCATED
    (tmp_path / "b.jpg").write_bytes(jpeg(progressive=progressive)[:-2])      # only the end marker missing
    assert inspect_image(tmp_path / "b.jpg", **LIMITS).problem == TRUNCATED


@pytest.mark.parametrize("cut", [100, 12, 3])   # in the image data; the whole IEND chunk; inside IEND
def test_a_truncated_png_says_so(tmp_path, cut):
    ok, png = cv2.imencode(".png", (np.random.default_rng(0).random((50, 60, 3)) * 255).astype(np.uint8))
    data = png.tobytes()[:-cut]
    (tmp_path / "a.png").write_bytes(data)
    facts = inspect_image(tmp_path / "a.png", **LIMITS)
    assert (facts.width, facts.height, facts.problem) == (60, 50, TRUNCATED)


def test_a_png_with_a_damaged_chunk_is_corrupt(tmp_path):
    ok, png = cv2.imencode(".png", (np.random.default_rng(0).random((50, 60, 3)) * 255).astype(np.uint8))
    data = bytearray(png.tobytes())
    data[data.index(b"IDAT") + 20] ^= 0xFF
    (tmp_path / "a.png").write_bytes(bytes(data))
    assert inspect_image(tmp_path / "a.png", **LIMITS).problem.startswith("file is corrupt: a PNG chunk fails its CRC")


def test_missing_file(tmp_path):
    assert inspect_image(tmp_path / "none.jpg", **LIMITS).problem == "image file missing"
    assert hash_image(tmp_path / "none.jpg").problem == "image file missing"
