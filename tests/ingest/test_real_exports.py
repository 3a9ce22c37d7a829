"""The shapes real PPOCRLabel exports have, accepted as they are and never corrupted on the way in.

Each fixture reproduces one shape seen in real exports (ID-card photos with a long header line on
every card, PPOCRLabel 3.x's export, KIE mode, polygons PPOCRLabel's own cropper fails on, a folder
re-opened in PPOCRLabel); ocr_tasks/ingest/ppocrlabel.py describes what each PPOCRLabel writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ocr_tasks.config import load_config
from ocr_tasks.ingest.check import check_local_export
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.ingest.ppocrlabel import reopen_rewrite
from tests.kit import edit_boxes, export, label_lines

HEADER = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"   # 34 characters, on every ID card


def _config(tmp_path: Path, *overrides: str):
    return load_config(overrides=[f"work_dir={tmp_path / 'work'}", *overrides])


def _rec_lines(out: Path) -> list[str]:
    return [line for split in ("train", "val", "test")
            for line in (out / "rec" / f"{split}.txt").read_text(encoding="utf-8").splitlines()]


def _det_texts(out: Path) -> list[str]:
    return [box["transcription"] for split in ("train", "val", "test")
            for line in (out / "det" / f"{split}.txt").read_text(encoding="utf-8").splitlines()
            for box in json.loads(line.split("\t", 1)[1])]


def test_a_long_line_on_every_image_stays_in_det_and_is_left_out_of_rec(tmp_path):
    folder = export(tmp_path, with_rec_crops=True)
    for i in range(len(label_lines(folder))):
        edit_boxes(folder, i, lambda boxes: [{**boxes[0], "transcription": HEADER}] + boxes[1:])
    config = _config(tmp_path)
    _, report = check_local_export(folder, config)
    assert report.success, report.summary()
    (note,) = [n for n in report.notes if "longer than max_text_length" in n]
    assert note.startswith("12 box(es) longer than max_text_length (25) stay in det and are left out of rec")
    assert "Label.txt:1 box 0 'CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM' (34 characters)" in note
    assert note in report.summary()

    out = tmp_path / "dataset"
    info = prepare([str(folder)], out, config).info
    assert HEADER in _det_texts(out)                                       # det keeps the boxes
    assert not any(HEADER in line for line in _rec_lines(out))             # rec does not
    assert all(len(line.split("\t", 1)[1]) <= 25 for line in _rec_lines(out))
    left_out = info["exports"]["batch_001"]["left_out_of_rec"]
    assert left_out["longer_than_max_text_length"] == 12 and info["max_text_length"] == 25
    assert left_out["examples"][0].endswith("box 0: 'CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM'")
    assert json.loads((out / "dataset.json").read_text())["exports"]["batch_001"]["left_out_of_rec"] == left_out
    # a larger limit keeps them: the same rule, from the config
    wider = prepare([str(folder)], tmp_path / "wider", _config(tmp_path, "validation.max_text_length=40")).info
    assert "left_out_of_rec" not in wider["exports"]["batch_001"]
    assert sum(HEADER in line for line in _rec_lines(tmp_path / "wider")) == 12


def test_ppocrlabel_3_exports_are_accepted_and_crops_of_ignore_regions_skipped(tmp_path):
    folder = export(tmp_path, ppocrlabel_version=3, with_rec_crops=True, difficult_ratio=0.25, ignore_ratio=0.25,
                    key_cls="None")
    assert (folder / "fileState.txt").read_text().startswith("batch_001/img_")          # relative, as 3.x writes
    crops = (folder / "rec_gt.txt").read_text().splitlines()
    assert any(line.endswith("\t###") for line in crops)                                 # 3.x crops every box
    config = _config(tmp_path)
    _, report = check_local_export(folder, config)
    assert report.success, report.summary()
    assert report.rows["images"] == 12 and report.unconfirmed_skipped == 0
    assert any(n.startswith("crop(s) of ignore regions", n.index(" ") + 1) for n in report.notes), report.notes

    out = tmp_path / "dataset"
    prepare([str(folder)], out, config)
    rec = _rec_lines(out)
    assert rec and not any(line.endswith("\t###") for line in rec)
    labels = {line.split("\t", 1)[0].split("/", 1)[1]: json.loads(line.split("\t", 1)[1])
              for line in label_lines(folder)}
    difficult = sum(box["difficult"] for boxes in labels.values() for box in boxes)
    assert difficult and len(rec) == sum(not box["difficult"] and box["transcription"] != "###"
                                         for boxes in labels.values() for box in boxes)
    images = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert {box.get("key_cls") for image in images for box in image["boxes"]} == {"None"}   # kept in the index


def test_a_rec_gt_left_partial_by_ppocrlabels_cropper_is_completed_from_the_polygons(tmp_path):
    folder = export(tmp_path, with_rec_crops=True, lines_per_image=(2, 3))
    # four-point mode saved a 6-point polygon; PPOCRLabel's cropper failed there and wrote no more crops for that image
    first = json.loads(label_lines(folder)[0].split("\t", 1)[1])
    (x0, y0), (x1, _), (_, y2), _ = first[0]["points"]
    edit_boxes(folder, 0, lambda boxes: [{**boxes[0], "points": [[x0, y0], [(x0 + x1) // 2, y0], [x1, y0], [x1, y2],
                                                                [(x0 + x1) // 2, y2], [x0, y2]]}] + boxes[1:])
    rec_gt = (folder / "rec_gt.txt").read_text().splitlines()
    stem = label_lines(folder)[0].split("\t", 1)[0].split("/", 1)[1].rsplit(".", 1)[0]
    kept = [line for line in rec_gt if not line.startswith(f"crop_img/{stem}_crop_")]
    (folder / "rec_gt.txt").write_text("\n".join(kept) + "\n")
    config = _config(tmp_path)
    _, report = check_local_export(folder, config)
    assert report.success, report.summary()
    (note,) = [n for n in report.notes if "without a crop" in n]
    assert note.startswith(f"{len(first)} box(es) without a crop in rec_gt.txt") and "Label.txt:1 box 0 (6 points)" in note

    out = tmp_path / "dataset"
    prepare([str(folder)], out, config)
    assert sorted(line.split("\t")[1] for line in _rec_lines(out)) == sorted(
        box["transcription"] for line in label_lines(folder) for box in json.loads(line.split("\t", 1)[1]))
    crops = [json.loads(line) for line in (out / "crops.jsonl").read_text().splitlines()]
    assert sum(c["cut"] for c in crops) == len(first) and all((out / "crops" / c["name"]).is_file() for c in crops)


def test_a_folder_reopened_in_ppocrlabel_keeps_the_labellers_text_by_one_rule(tmp_path):
    folder = export(tmp_path, with_rec_crops=True, charset="abelnrstu", text_length=(6, 8))
    # the labeller typed "nullable" and "a true story" (exported to rec_gt.txt); re-opening rewrote Label.txt
    edit_boxes(folder, 0, lambda boxes: [{**boxes[0], "transcription": reopen_rewrite("nullable")}] + boxes[1:])
    edit_boxes(folder, 1, lambda boxes: [{**boxes[0], "transcription": "corrected"}] + boxes[1:])
    stems = [line.split("\t", 1)[0].split("/", 1)[1].rsplit(".", 1)[0] for line in label_lines(folder)[:2]]
    rec_gt = (folder / "rec_gt.txt").read_text().splitlines()
    rec_gt = [f"crop_img/{stems[0]}_crop_0.jpg\tnullable" if line.startswith(f"crop_img/{stems[0]}_crop_0.") else line
              for line in rec_gt]
    (folder / "rec_gt.txt").write_text("\n".join(rec_gt) + "\n")
    assert reopen_rewrite("nullable") == "Noneable"

    config = _config(tmp_path)
    _, report = check_local_export(folder, config)
    assert report.success, report.summary()
    (note,) = [n for n in report.notes if "differ from Label.txt" in n]
    assert note.startswith("2 crop text(s) in rec_gt.txt differ from Label.txt: 1 are PPOCRLabel's re-open rewrite")
    assert "'nullable' vs Label.txt:1 box 0 'Noneable' -> 'nullable'" in note and "-> 'corrected'" in note

    out = tmp_path / "dataset"
    prepare([str(folder)], out, config)
    rec_texts = [line.split("\t")[1] for line in _rec_lines(out)]
    det_texts = _det_texts(out)
    assert "nullable" in rec_texts and "nullable" in det_texts                 # rec_gt.txt wins for a rewrite
    assert "Noneable" not in rec_texts + det_texts
    assert "corrected" in rec_texts and "corrected" in det_texts               # Label.txt wins otherwise


def test_messages_name_the_file_the_line_and_what_to_do(tmp_path):
    folder = export(tmp_path)
    config = _config(tmp_path)
    (folder / "fileState.txt").write_text("")                       # PPOCRLabel saved before anything was checked
    _, report = check_local_export(folder, config)
    assert not report.success
    assert any(n.startswith("fileState.txt confirms none of the 12 image(s) in Label.txt: confirm them") for n in report.notes)

    folder = export(tmp_path / "b")
    edit_boxes(folder, 0, lambda boxes: [{**boxes[0], "transcription": "12\u200b34"}] + boxes[1:])
    _, report = check_local_export(folder, config)
    (failure,) = report.failures
    assert failure.problem.startswith("transcription holds invisible characters")
    assert failure.examples == ["Label.txt:1 box 0: 'U+200B'"]

    from ocr_tasks.errors import UsageError
    from ocr_tasks.ingest.tables import read_dictionary
    import pytest

    for name, content, message in [
        ("dup.txt", "0\n1\n1\n".encode(), r"dup.txt:3: '1' again \(first on line 2\)"),
        ("space.txt", "0\n \n1\n".encode(), r"space.txt:2: a space line"),
        ("utf16.txt", "0\n1\n".encode("utf-16"), r"utf16.txt: not UTF-8 \(it looks like UTF-16\)"),
        ("zw.txt", "0\n\u202e\n".encode(), r"zw.txt:2: an invisible character \(U\+202E\)"),
        ("two.txt", "0\nab\n".encode(), r"two.txt:2: 'ab' is 2 characters"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UsageError, match=message):
            read_dictionary(tmp_path / name)
    (tmp_path / "ok.txt").write_bytes("\ufeff0\r\n1\r\n\u200c\n".encode())   # BOM, CRLF, ZWNJ (Persian) kept
    assert read_dictionary(tmp_path / "ok.txt") == ["0", "1", "\u200c"]


def test_prepare_refuses_a_used_out_folder_and_warns_of_an_empty_split(tmp_path):
    import pytest

    from ocr_tasks.errors import UsageError

    folder = export(tmp_path, n_images=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier dataset")
    with pytest.raises(UsageError, match="is not an empty folder"):
        prepare([str(folder)], out, _config(tmp_path))
    result = prepare([str(folder)], tmp_path / "fresh", _config(tmp_path))
    assert any("split is empty" in w for w in result.warnings), result.info["counts"]
