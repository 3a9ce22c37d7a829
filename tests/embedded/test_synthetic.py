"""Synthetic PPOCRLabel exports must be byte-for-byte what PPOCRLabel writes, and stable.

Other tests, the benchmarks and the demo build their data with ocr_tasks.embedded.synthetic;
if it drifted from PPOCRLabel's format they would all pass against a fiction.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_tasks.embedded.synthetic import ExportSpec, make_export, make_text_line_image
from ocr_tasks.ingest.crops import crop_text_region

BOM = b"\xef\xbb\xbf"


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8-sig").splitlines()


def _labels(folder: Path) -> dict[str, list[dict]]:
    out = {}
    for line in _lines(folder / "Label.txt"):
        key, payload = line.split("\t")
        out[key] = json.loads(payload)
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _signed_area(points: list[list[int]]) -> float:
    # Shoelace in image coordinates (y down): positive means clockwise on screen.
    pts = np.asarray(points, np.float64)
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportSpec]:
    """One export exercising every option at once, shared to keep the module fast."""
    spec = ExportSpec("batch_rich", n_images=24, seed=7, with_rec_crops=True, unconfirmed=5,
                      difficult_ratio=0.2, ignore_ratio=0.15, rotate_degrees=25.0, image_format="png")
    return make_export(tmp_path_factory.mktemp("rich"), spec), spec


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    spec = ExportSpec("batch_001", n_images=8, seed=3, with_rec_crops=True, unconfirmed=2,
                      difficult_ratio=0.3, ignore_ratio=0.2, rotate_degrees=10)
    a = _tree(make_export(tmp_path / "a", spec))
    b = _tree(make_export(tmp_path / "b", spec))
    assert a == b
    c = _tree(make_export(tmp_path / "c", ExportSpec("batch_001", n_images=8, seed=4)))
    assert c["Label.txt"] != a["Label.txt"]


def test_more_images_keep_the_first_ones(tmp_path: Path) -> None:
    small = _tree(make_export(tmp_path / "s", ExportSpec("b", n_images=3, seed=1)))
    large = _tree(make_export(tmp_path / "l", ExportSpec("b", n_images=6, seed=1)))
    for name, data in small.items():
        if name.endswith(".jpg"):
            assert large[name] == data


def test_label_txt_round_trips_and_prefix_is_export_name(tmp_path: Path) -> None:
    spec = ExportSpec("batch_007", n_images=10, seed=1)
    folder = make_export(tmp_path, spec)
    assert folder == tmp_path / "batch_007"
    lines = _lines(folder / "Label.txt")
    assert len(lines) == spec.n_images
    for line in lines:
        key, payload = line.split("\t")
        folder_name, file_name = key.split("/")
        assert folder_name == spec.name
        assert (folder / file_name).is_file()
        boxes = json.loads(payload)
        assert json.dumps(boxes, ensure_ascii=False) == payload
        lo, hi = spec.lines_per_image
        assert lo <= len(boxes) <= hi
        for box in boxes:
            assert list(box) == ["transcription", "points", "difficult"]
            assert box["difficult"] is False
            text = box["transcription"]
            assert text.isdigit() and spec.text_length[0] <= len(text) <= spec.text_length[1]


def test_text_formats_make_prices_and_one_format_draws_what_it_always_drew(tmp_path: Path) -> None:
    """The demo's shelf labels: half the lines carry a euro sign (drawn as C struck by =). A spec with one format
    draws nothing extra from the random stream: every earlier export stays byte for byte the same."""
    prices = _labels(make_export(tmp_path / "p", ExportSpec("p", n_images=30, seed=3, text_formats=("{}", "€{}"))))
    texts = [box["transcription"] for boxes in prices.values() for box in boxes]
    with_sign = [t for t in texts if t.startswith("€")]
    assert 0.3 < len(with_sign) / len(texts) < 0.7, texts
    assert all(t[1:].isdigit() for t in with_sign) and all(t.isdigit() for t in texts if t not in with_sign)
    plain = _tree(make_export(tmp_path / "a", ExportSpec("b", n_images=4, seed=1)))
    same = _tree(make_export(tmp_path / "b", ExportSpec("b", n_images=4, seed=1, text_formats=("{}",))))
    assert plain == same


@pytest.mark.parametrize("rotate", [0.0, 30.0])
def test_polygons_inside_clockwise_disjoint(tmp_path: Path, rotate: float) -> None:
    spec = ExportSpec("b", n_images=15, seed=2, rotate_degrees=rotate, lines_per_image=(2, 4))
    folder = make_export(tmp_path, spec)
    w, h = spec.image_size
    for key, boxes in _labels(folder).items():
        img = cv2.imread(str(folder / key.split("/")[1]))
        assert img.shape == (h, w, 3)
        coverage = np.zeros((h, w), np.uint8)
        for box in boxes:
            pts = box["points"]
            assert len(pts) == 4
            assert all(isinstance(v, int) for p in pts for v in p)
            assert all(0 <= x < w and 0 <= y < h for x, y in pts)
            assert _signed_area(pts) > 20
            mask = np.zeros_like(coverage)
            cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)
            coverage += mask
        assert coverage.max() <= 1, f"overlapping lines in {key}"


def test_polygons_are_tight_around_the_ink(tmp_path: Path) -> None:
    spec = ExportSpec("b", n_images=12, seed=5, image_format="png")
    folder = make_export(tmp_path, spec)
    for key, boxes in _labels(folder).items():
        gray = cv2.cvtColor(cv2.imread(str(folder / key.split("/")[1])), cv2.COLOR_BGR2GRAY)
        ink = gray < 150
        inside = np.zeros(gray.shape, np.uint8)
        for box in boxes:
            pts = np.array(box["points"], np.int32)
            cv2.fillPoly(inside, [pts], 1)
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            ys, xs = np.nonzero(ink[y0:y1 + 1, x0:x1 + 1])
            # Ink reaches within a few px (the margin) of every side of its box.
            assert xs.min() <= 5 and ys.min() <= 5
            assert (x1 - x0) - xs.max() <= 5 and (y1 - y0) - ys.max() <= 5
        assert not (ink & (inside == 0)).any(), f"ink outside every polygon in {key}"


def test_filestate_matches_label_images(tmp_path: Path) -> None:
    spec = ExportSpec("batch_x", n_images=9, seed=4)
    folder = make_export(tmp_path, spec)
    states = _lines(folder / "fileState.txt")
    assert all(s.endswith("\t1") for s in states)
    paths = [s.rsplit("\t", 1)[0] for s in states]
    assert all(p.startswith("C:\\Users\\") and f"\\{spec.name}\\" in p for p in paths)
    state_files = [p.split("\\")[-1] for p in paths]
    label_files = [k.split("/")[1] for k in _labels(folder)]
    assert state_files == label_files


def test_posix_labeller_paths(tmp_path: Path) -> None:
    folder = make_export(tmp_path, ExportSpec("b", n_images=3, windows_paths=False))
    for line in _lines(folder / "fileState.txt"):
        path = line.split("\t")[0]
        assert path.startswith("/") and "\\" not in path and path.endswith(".jpg")
        assert path.split("/")[-2] == "b"


def test_rec_crops_exactly_for_non_difficult_boxes(rich: tuple[Path, ExportSpec]) -> None:
    folder, _ = rich
    labels = _labels(folder)
    expected = []
    for key, boxes in labels.items():
        stem = Path(key).stem
        expected += [(f"crop_img/{stem}_crop_{i}.jpg", b["transcription"])
                     for i, b in enumerate(boxes) if not b["difficult"]]
    rec = [tuple(line.split("\t")) for line in _lines(folder / "rec_gt.txt")]
    assert rec == expected
    assert sorted(p.name for p in (folder / "crop_img").iterdir()) == sorted(Path(r).name for r, _ in rec)
    # Crops are PPOCRLabel's perspective crops of the labelled box.
    key, boxes = next(iter(labels.items()))
    img = cv2.imread(str(folder / key.split("/")[1]))
    for i, box in enumerate(boxes):
        if box["difficult"]:
            continue
        want = crop_text_region(img, np.array(box["points"], np.float32))
        got = cv2.imread(str(folder / "crop_img" / f"{Path(key).stem}_crop_{i}.jpg"))
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 6  # JPEG loss only


def test_difficult_and_ignore_fractions(rich: tuple[Path, ExportSpec]) -> None:
    folder, spec = rich
    boxes = [b for bs in _labels(folder).values() for b in bs]
    n_difficult = sum(b["difficult"] for b in boxes)
    n_ignore = sum(b["transcription"] == "###" for b in boxes)
    assert n_difficult == round(spec.difficult_ratio * len(boxes)) > 0
    assert n_ignore == round(spec.ignore_ratio * len(boxes)) > 0
    assert not any(b["difficult"] and b["transcription"] == "###" for b in boxes)


def test_unconfirmed_images_only_in_cache(rich: tuple[Path, ExportSpec]) -> None:
    folder, spec = rich
    images = sorted(p.name for p in folder.glob("*.png"))
    assert len(images) == spec.n_images + spec.unconfirmed
    cache = {line.split("\t")[0]: json.loads(line.split("\t")[1]) for line in _lines(folder / "Cache.cach")}
    assert sorted(cache) == [f"{spec.name}/{name}" for name in images]
    labelled = {k.split("/")[1] for k in _labels(folder)}
    confirmed = {line.split("\t")[0].split("\\")[-1] for line in _lines(folder / "fileState.txt")}
    unconfirmed = set(images) - labelled
    assert len(unconfirmed) == spec.unconfirmed
    assert labelled == confirmed
    # Auto-labels are not the confirmed labels: no ignore or difficult marks.
    assert all(b["transcription"] != "###" and b["difficult"] is False for bs in cache.values() for b in bs)


def test_crlf_and_bom_bytes(tmp_path: Path) -> None:
    plain = make_export(tmp_path / "p", ExportSpec("b", n_images=4, with_rec_crops=True))
    for name in ("Label.txt", "fileState.txt", "rec_gt.txt", "Cache.cach"):
        data = (plain / name).read_bytes()
        assert not data.startswith(BOM) and b"\r" not in data and data.endswith(b"\n")
    odd = make_export(tmp_path / "o", ExportSpec("b", n_images=4, with_rec_crops=True, crlf=True, bom=True))
    for name in ("Label.txt", "fileState.txt", "rec_gt.txt", "Cache.cach"):
        data = (odd / name).read_bytes()
        assert data.startswith(BOM) == (name != "Cache.cach")
        assert data.count(b"\n") == data.count(b"\r\n") > 0
        assert _lines(odd / name) == _lines(plain / name)


def test_images_without_lines_are_confirmed_but_not_in_label_txt(tmp_path: Path) -> None:
    # PPOCRLabel's savePPlabel skips confirmed images whose box list is empty.
    folder = make_export(tmp_path, ExportSpec("b", n_images=12, seed=1, lines_per_image=(0, 1)))
    labels = _labels(folder)
    states = _lines(folder / "fileState.txt")
    assert len(states) == 12
    assert 0 < len(labels) < 12
    assert all(boxes for boxes in labels.values())


def test_text_line_image() -> None:
    a = make_text_line_image("123456", height=32, rng=9)
    b = make_text_line_image("123456", height=32, rng=np.random.default_rng(9))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[0] == 32 and a.shape[2] == 3
    assert np.array_equal(a, b)
    gray = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    assert np.median(gray) > 200 and gray.min() < 80  # dark text on white paper
    assert a.shape[1] > a.shape[0]
    assert not np.array_equal(a, make_text_line_image("123456", height=32, rng=10))


def test_bad_specs_and_non_empty_target_are_refused(tmp_path: Path) -> None:
    for bad in (dict(name="a/b"), dict(name="x", image_format="bmp"), dict(name="x", charset="数字"),
                dict(name="x", difficult_ratio=0.7, ignore_ratio=0.5), dict(name="x", text_length=(0, 3)),
                dict(name="x", text_formats=("€",)), dict(name="x", text_formats=("{}{}",)),
                dict(name="x", text_formats=("{} 円",))):
        with pytest.raises(ValueError):
            ExportSpec(**bad)
    make_export(tmp_path, ExportSpec("b", n_images=1))
    with pytest.raises(FileExistsError):
        make_export(tmp_path, ExportSpec("b", n_images=1))
