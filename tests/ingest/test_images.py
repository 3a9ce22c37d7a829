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


def test_a_108_mp_phone_photo_passes_the_default_limits(tmp_path):
    from ocr_tasks.config import ValidationConfig

    limits = ValidationConfig()
    ok, jpg = cv2.imencode(".jpg", np.full((9000, 12000, 3), 200, np.uint8))
    (tmp_path / "phone.jpg").write_bytes(jpg.tobytes())
    facts = inspect_image(tmp_path / "phone.jpg", max_pixels=limits.max_image_pixels, max_side=limits.max_image_side)
    assert (facts.width, facts.height, facts.problem) == (12000, 9000, None)


def test_decode_budget_bounds_what_threads_hold_at_once_and_lets_a_large_one_run_alone():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from ocr_tasks.ingest.images import DecodeBudget

    budget = DecodeBudget(100)
    seen, lock = [], threading.Lock()

    def work(nbytes):
        with budget.hold(nbytes):
            with lock:
                seen.append(budget.held)
            time.sleep(0.01)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, [40] * 16 + [250] + [30] * 8))
    assert budget.held == 0 and 250 in seen            # the large one ran, alone
    assert all(held <= 100 or held == 250 for held in seen) and budget.peak in (250,)
