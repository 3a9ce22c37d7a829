"""`ocr-retrain prepare`: validated exports -> PaddleOCR det/rec lists, split by content hash."""

import json
import shutil
from pathlib import Path

from ocr_tasks.cli import main
from tests.kit import export, label_lines


def read_list(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prepare_writes_paddleocr_layout_inside_out(tmp_path, capsys):
    a = export(tmp_path / "in", "batch_001", n_images=30, seed=1)
    b = export(tmp_path / "in", "batch_002", n_images=20, seed=2, with_rec_crops=True, ignore_ratio=0.2, difficult_ratio=0.1)
    out = tmp_path / "ds"
    assert main(["prepare", str(a), str(b), "--out", str(out)]) == 0
    info = json.loads((out / "dataset.json").read_text())
    assert sum(c["images"] for c in info["counts"].values()) == 50
    assert info["exports"]["batch_001"]["images"] == 30 and info["exports"]["batch_002"]["images"] == 20

    det_paths, rec_paths = set(), set()
    for split in ("train", "val", "test"):
        for rel, label in read_list(out / "det" / f"{split}.txt"):
            target = (out / rel).resolve()
            assert target.is_relative_to(out.resolve()) and target.is_file()
            boxes = json.loads(label)
            assert all({"transcription", "points", "difficult"} <= set(box) for box in boxes)
            det_paths.add(rel)
        for rel, text in read_list(out / "rec" / f"{split}.txt"):
            assert (out / rel).resolve().is_relative_to(out.resolve()) and (out / rel).is_file()
            assert text and text != "###"
            rec_paths.add(rel)
    assert len(det_paths) == 50
    assert set((out / "dict.txt").read_text().split()) == set("0123456789")
    # every crop follows the split of its source image
    images = {json.loads(l)["sha256"]: json.loads(l)["split"] for l in (out / "images.jsonl").read_text().splitlines()}
    for line in (out / "crops.jsonl").read_text().splitlines():
        crop = json.loads(line)
        assert crop["split"] == images[crop["image_sha256"]]


def test_split_of_an_image_never_changes_as_data_grows(tmp_path):
    a = export(tmp_path / "in", "batch_001", n_images=40, seed=1)
    b = export(tmp_path / "in", "batch_002", n_images=40, seed=2)
    assert main(["prepare", str(a), "--out", str(tmp_path / "v1")]) == 0
    assert main(["prepare", str(a), str(b), "--out", str(tmp_path / "v2")]) == 0
    before = {rel: split for split in ("train", "val", "test") for rel, _ in read_list(tmp_path / "v1" / "det" / f"{split}.txt")}
    after = {rel: split for split in ("train", "val", "test") for rel, _ in read_list(tmp_path / "v2" / "det" / f"{split}.txt")}
    assert before and all(after[rel] == split for rel, split in before.items())


def test_same_image_in_two_exports_is_kept_once_with_the_later_labels(tmp_path):
    a = export(tmp_path / "in", "batch_001", n_images=5, seed=1)
    b = tmp_path / "in" / "batch_002"
    shutil.copytree(a, b)
    lines = [line.replace('"transcription": "', '"transcription": "1', 1).replace("batch_001/", "batch_002/") for line in label_lines(b)]
    (b / "Label.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ds"
    assert main(["prepare", str(a), str(b), "--out", str(out)]) == 0
    info = json.loads((out / "dataset.json").read_text())
    assert sum(c["images"] for c in info["counts"].values()) == 5
    assert info["exports"] == {"batch_002": {"images": 5, "crops": info["exports"]["batch_002"]["crops"]}}


def test_version_is_a_hash_of_contents(tmp_path):
    a = export(tmp_path / "in", "batch_001", n_images=10)
    main(["prepare", str(a), "--out", str(tmp_path / "x")])
    main(["prepare", str(a), "--out", str(tmp_path / "y")])
    x = json.loads((tmp_path / "x" / "dataset.json").read_text())
    y = json.loads((tmp_path / "y" / "dataset.json").read_text())
    assert x["version"] == y["version"]
    main(["--set", "split.train=0.8", "--set", "split.val=0.1", "--set", "split.test=0.1", "prepare", str(a), "--out", str(tmp_path / "z")])
    assert json.loads((tmp_path / "z" / "dataset.json").read_text())["version"] != x["version"]


def test_failing_export_is_excluded_and_exit_code_is_1(tmp_path, capsys):
    good = export(tmp_path / "in", "good", n_images=6, seed=1)
    bad = export(tmp_path / "in", "bad", n_images=6, seed=2)
    (bad / "img_0001.jpg").unlink()
    out = tmp_path / "ds"
    assert main(["prepare", str(good), str(bad), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "excluded (failed validation): bad" in printed and "Label.txt:2" in printed
    info = json.loads((out / "dataset.json").read_text())
    assert list(info["exports"]) == ["good"]


def test_configured_dictionary_is_used_as_is(tmp_path):
    a = export(tmp_path / "in", "batch_001", n_images=5)
    (tmp_path / "my_dict.txt").write_text("9\n8\n7\n6\n5\n4\n3\n2\n1\n0\nA\n")
    assert main(["prepare", str(a), "--out", str(tmp_path / "ds"), "--dict", str(tmp_path / "my_dict.txt")]) == 0
    assert (tmp_path / "ds" / "dict.txt").read_text() == (tmp_path / "my_dict.txt").read_text()


def test_labels_with_characters_outside_the_configured_dictionary_grow_it(tmp_path):
    """validation.outside_dict: grow (the default): the configured dict, line for line, then the labels' other
    characters in code point order (a fine-tuned stock rec keeps every row it has); leave_out drops their images."""
    prices = export(tmp_path / "in", "prices", n_images=8, charset="0123456789.€")
    (tmp_path / "stock_dict.txt").write_text("".join(f"{c}\n" for c in "9876543210"))
    assert main(["prepare", str(prices), "--out", str(tmp_path / "ds"), "--dict", str(tmp_path / "stock_dict.txt")]) == 0
    dict_lines = (tmp_path / "ds" / "dict.txt").read_text(encoding="utf-8").splitlines()
    assert dict_lines == list("9876543210") + [".", "€"]
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text(encoding="utf-8"))
    assert info["dictionary"] == {"source": "configured", "size": 12, "configured": 10, "grown": ".€"}
    assert info["counts"]["train"]["images"] + info["counts"]["val"]["images"] + info["counts"]["test"]["images"] == 8

    assert main(["--set", "validation.outside_dict=leave_out", "--set", "validation.max_left_out_share=1",
                 "prepare", str(prices), "--out", str(tmp_path / "kept"), "--dict",
                 str(tmp_path / "stock_dict.txt")]) == 0
    kept = json.loads((tmp_path / "kept" / "dataset.json").read_text(encoding="utf-8"))
    assert kept["dictionary"]["grown"] == "" and (tmp_path / "kept" / "dict.txt").read_text() == \
        (tmp_path / "stock_dict.txt").read_text()
    merged = sum(kept["counts"][split]["images"] for split in ("train", "val", "test"))
    assert 0 < merged < 8    # the images whose every text is digits alone


def test_validate_exit_codes(tmp_path, capsys):
    good = export(tmp_path, "good", n_images=4)
    assert main(["validate", str(good)]) == 0
    assert "PASSED" in capsys.readouterr().out
    (good / "img_0000.jpg").write_bytes(b"not an image")
    assert main(["validate", str(good)]) == 1
    assert "Label.txt:1" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "nowhere")]) == 2
    assert "no such export folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(tmp_path / "empty")]) == 2
    assert "no Label.txt" in capsys.readouterr().err


def test_index_survives_unicode_line_separators_in_labels(tmp_path):
    from ocr_tasks.ingest.dataset import Dataset

    image = {"sha256": "a" * 64, "ext": ".jpg", "export": "e", "source": "e/x.jpg", "split": "train",
             "boxes": [{"transcription": "A\u2028B\u0085C", "points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                        "difficult": False}]}
    (tmp_path / "images.jsonl").write_text(json.dumps(image, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "crops.jsonl").write_text("", encoding="utf-8")
    with Dataset.from_index(tmp_path / "images.jsonl", tmp_path / "crops.jsonl", None, tmp_path / "index") as dataset:
        assert len(dataset.images) == 1
        assert dataset.images["a" * 64].boxes[0]["transcription"] == "A\u2028B\u0085C"
        assert dataset.images["a" * 64].json_line() == json.dumps(image, ensure_ascii=False) + "\n"   # byte for byte
    assert not (tmp_path / "index").exists()                  # the index file goes with the dataset
