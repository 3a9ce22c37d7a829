"""Each expectation catches the problem it names, pointing at file:line."""

import shutil

import cv2
import numpy as np
import pytest

from ocr_tasks.config import ValidationConfig
from ocr_tasks.ingest.check import check_local_export
from ocr_tasks.config import load_config
from ocr_tasks.errors import UsageError
from tests.kit import edit_boxes, export, label_lines, write_label_lines


def check(folder, **overrides):
    config = load_config(overrides=[f"validation.{k}={v}" for k, v in overrides.items()])
    return check_local_export(folder, config)[1]


def problems(report):
    return {f.problem: f for f in report.failures}


def test_a_clean_export_passes(tmp_path):
    folder = export(tmp_path, unconfirmed=3, crlf=True, bom=True, with_rec_crops=True,
                    difficult_ratio=0.2, ignore_ratio=0.2)
    report = check(folder)
    assert report.success, report.summary()
    assert report.rows["images"] == 12 and report.unconfirmed_skipped == 0


def test_unconfirmed_label_lines_are_skipped_not_failed(tmp_path):
    folder = export(tmp_path)
    state = (folder / "fileState.txt").read_text().splitlines()
    (folder / "fileState.txt").write_text("\n".join(state[2:]) + "\n")
    report = check(folder)
    assert report.success and report.rows["images"] == 10 and report.unconfirmed_skipped == 2


@pytest.mark.parametrize("breakage, problem, where", [
    (lambda f: write_label_lines(f, label_lines(f)[:3] + ["batch_001/img_0003.jpg\t[{oops"] + label_lines(f)[4:]),
     "label line does not parse or names an unsafe path", "Label.txt:4"),
    (lambda f: write_label_lines(f, ["batch_001/../secret.jpg\t[]"] + label_lines(f)[1:]),
     "label line does not parse or names an unsafe path", "Label.txt:1"),
    (lambda f: (f / "img_0002.jpg").unlink(), "image missing, too large or does not decode", "Label.txt:3"),
    (lambda f: (f / "img_0002.jpg").write_bytes(b"\xff\xd8\xff garbage"), "image missing, too large or does not decode", "Label.txt:3"),
    (lambda f: (f / "img_0002.jpg").write_bytes((f / "img_0002.jpg").read_bytes()[:-200]),  # truncated upload
     "image missing, too large or does not decode", "Label.txt:3"),
    (lambda f: shutil.copy(f / "img_0000.jpg", f / "img_0005.jpg"), "duplicate image content inside the export", "Label.txt:6"),
    (lambda f: edit_boxes(f, 1, lambda b: [{**b[0], "points": b[0]["points"][:3]}] + b[1:]),
     "polygon has fewer than 4 points", "Label.txt:2 box 0"),
    (lambda f: edit_boxes(f, 1, lambda b: [{**b[0], "points": [[5, 5]] * 4}] + b[1:]), "polygon has zero area", "Label.txt:2 box 0"),
    (lambda f: edit_boxes(f, 1, lambda b: [{**b[0], "points": [[0, 0], [900, 0], [900, 20], [0, 20]]}] + b[1:]),
     "polygon lies (partly) outside the image", "Label.txt:2 box 0"),
    (lambda f: edit_boxes(f, 1, lambda b: [{**b[0], "transcription": " "}] + b[1:]),
     "empty transcription or one with tabs/line breaks on a box that is not an ignore region (###, difficult)", "Label.txt:2 box 0"),
    (lambda f: edit_boxes(f, 1, lambda b: [{**b[0], "transcription": "12\t34"}] + b[1:]),
     "empty transcription or one with tabs/line breaks on a box that is not an ignore region (###, difficult)", "Label.txt:2 box 0"),
    (lambda f: edit_boxes(f, 1, lambda b: [{**b[0], "points": [[10, 10], [80, 30], [80, 10], [10, 40]]}] + b[1:]),
     "polygon crosses itself (its crop would be blank or garbled): re-draw the box in PPOCRLabel", "Label.txt:2 box 0"),
])
def test_each_problem_is_reported_with_its_line(tmp_path, breakage, problem, where):
    """A box's problem leaves its image out (the rest passes); a line's or a file's refuses the export."""
    folder = export(tmp_path)
    breakage(folder)
    report = check(folder)
    failure = problems(report)[problem]
    assert any(example.startswith(where) for example in failure.examples), failure.examples
    box_level = " box " in where
    assert report.success is box_level and failure.refuses_export is not box_level
    image = where.split(" box ")[0]
    assert [left.where for left in report.left_out] == ([image] if box_level else [])
    if box_level:
        assert problem in report.left_out[0].reasons[0] and "LEFT OUT" in report.summary()
        assert check(folder, leave_out_bad_images=False).success is False   # the deployment's choice


def test_empty_text_is_fine_on_ignore_regions(tmp_path):
    folder = export(tmp_path)
    edit_boxes(folder, 0, lambda b: [{**b[0], "transcription": "###"}, *b[1:]])
    edit_boxes(folder, 1, lambda b: [{**b[0], "transcription": "", "difficult": True}, *b[1:]])
    assert check(folder).success


def test_characters_outside_a_configured_dictionary_grow_it_or_leave_their_image_out(tmp_path):
    folder = export(tmp_path)
    (tmp_path / "dict.txt").write_text("".join(f"{c}\n" for c in "0123456789"))  # no x
    edit_boxes(folder, 0, lambda b: [{**b[0], "transcription": "12x9"}, *b[1:]])
    # the default (outside_dict: grow): the dataset's dict takes x after the configured ones (tests/ingest/test_split)
    assert check(folder, dict_file=tmp_path / "dict.txt").success
    report = check(folder, dict_file=tmp_path / "dict.txt", outside_dict="leave_out")
    failure = problems(report)["characters outside the dictionary"]
    assert any(e.startswith("Label.txt:1 box 0") and "'x'" in e for e in failure.examples)
    assert report.left_out_files == {"img_0000.jpg": "box 0: characters outside the dictionary"}
    # a dictionary file that cannot be one is refused either way
    (tmp_path / "bad.txt").write_text("0\n12\n")
    for mode in ("grow", "leave_out"):
        with pytest.raises(UsageError, match=r"bad\.txt:2: '12' is 2 characters"):
            check(folder, dict_file=tmp_path / "bad.txt", outside_dict=mode)


def test_a_dictionary_that_misses_on_many_images_refuses_the_export_whole(tmp_path):
    """Past validation.max_left_out_share the cause is one fix (here: the dictionary), not a few slips."""
    folder = export(tmp_path)
    (tmp_path / "dict.txt").write_text("".join(f"{c}\n" for c in "0123"))
    report = check(folder, dict_file=tmp_path / "dict.txt", outside_dict="leave_out")
    assert not report.success and report.left_out == []
    (share,) = [f for f in report.failures if f.expectation == "max_left_out_share"]
    assert "of 12 images have box problems" in share.problem
    assert all(f.refuses_export for f in report.failures)


def test_a_box_problem_beside_a_file_problem_refuses_the_export(tmp_path):
    folder = export(tmp_path)
    edit_boxes(folder, 1, lambda b: [{**b[0], "points": [[5, 5]] * 4}] + b[1:])
    (folder / "img_0004.jpg").unlink()
    report = check(folder)
    assert not report.success and report.left_out == []


def test_a_huge_transcription_or_box_count_leaves_its_image_out(tmp_path):
    """Caps (validation.max_transcription_length, max_boxes_per_image): a passing export once put a 50 MB
    transcription into det/train.txt; 1 M boxes on one image took 57 s and 1.6 GB to validate."""
    folder = export(tmp_path)
    edit_boxes(folder, 0, lambda b: [{**b[0], "transcription": "7" * 5000, "difficult": True}, *b[1:]])
    box = {"transcription": "1", "points": [[1, 1], [9, 1], [9, 9], [1, 9]], "difficult": False}
    edit_boxes(folder, 5, lambda b: b + [box] * 3000)
    report = check(folder)
    assert report.success, report.summary()
    left = {image.where: image.reasons for image in report.left_out}
    assert set(left) == {"Label.txt:1", "Label.txt:6"}
    assert "longer than validation.max_transcription_length" in left["Label.txt:1"][0]
    assert "more boxes on one image than validation.max_boxes_per_image" in left["Label.txt:6"][0]
    assert report.rows["boxes"] < 3000          # the over-cap image's boxes were never tabled
    assert check(folder, max_transcription_length=6000, max_boxes_per_image=4000).left_out == []


def test_decompression_bomb_is_rejected_before_decoding(tmp_path):
    folder = export(tmp_path)
    # a tiny PNG whose header claims 30000 x 30000 pixels
    big = np.zeros((30000, 30000), np.uint8)
    ok, png = cv2.imencode(".png", big, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok and len(png) < 2_000_000
    lines = label_lines(folder)
    (folder / "bomb.png").write_bytes(png.tobytes())
    (folder / "fileState.txt").write_text((folder / "fileState.txt").read_text() + "C:\\x\\bomb.png\t1\n")
    write_label_lines(folder, lines + ["batch_001/bomb.png\t[]"])
    failure = problems(check(folder))["image missing, too large or does not decode"]
    assert any("too large: 30000x30000" in e for e in failure.examples)


def test_rec_gt_crops_must_map_to_a_box_of_a_confirmed_image(tmp_path):
    folder = export(tmp_path, with_rec_crops=True)
    with open(folder / "rec_gt.txt", "a", encoding="utf-8") as f:
        f.write("crop_img/img_0000_crop_9.jpg\t123\n")
    shutil.copy(next((folder / "crop_img").iterdir()), folder / "crop_img" / "img_0000_crop_9.jpg")
    failure = problems(check(folder))["crop does not map to a box of a confirmed image"]
    assert failure.count == 1


def test_data_docs_html_is_written(tmp_path):
    folder = export(tmp_path)
    (folder / "img_0001.jpg").unlink()
    config = load_config()
    _, report = check_local_export(folder, config, tmp_path / "docs")
    assert not report.success
    assert (tmp_path / "docs" / "index.html").exists()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))


def test_limits_come_from_config():
    assert ValidationConfig().max_text_length == 25
