"""Ingest from a real local S3 server: discover -> validate (quarantine) -> merge -> dataset version."""

import json

import pytest

from ocr_tasks.ingest import merge as ingest_module
from ocr_tasks.cli import main
from ocr_tasks.config import load_config
from ocr_tasks.ingest.ledger import load_ledger
from ocr_tasks.ingest.pull import pull_dataset
from tests.kit import break_label_file, edit_boxes, export, ingest, label_lines, upload


@pytest.fixture
def config(tmp_path):
    return load_config(overrides=[f"work_dir={tmp_path / 'work'}"])


def lists(root):
    return {f"{task}/{split}": (root / task / f"{split}.txt").read_text() for task in ("det", "rec")
            for split in ("train", "val", "test")}


def test_new_exports_become_a_dataset_version_once(storage, config, tmp_path):
    upload(storage, export(tmp_path / "a", "batch_001", n_images=20, seed=1, unconfirmed=4))
    upload(storage, export(tmp_path / "b", "batch_002", n_images=15, seed=2, with_rec_crops=True, ignore_ratio=0.2))
    result = ingest(storage, config)
    assert [c.passed for c in result.checks] == [True, True]
    version = result.dataset.version
    ledger = load_ledger(storage)
    assert ledger["dataset_version"] == version
    assert {name: e["status"] for name, e in ledger["exports"].items()} == {"batch_001": "merged", "batch_002": "merged"}
    info = storage.get_json(f"datasets/{version}/dataset.json")
    assert sum(c["images"] for c in info["counts"].values()) == 35

    # a consumer materialises exactly what prepare would have written
    pulled = pull_dataset(storage, version, tmp_path / "pulled")
    for rel_list in lists(pulled).values():
        for line in rel_list.splitlines():
            assert (pulled / line.split("\t")[0]).is_file()
    # unconfirmed images and the auto-label cache never left storage
    fetched = list((config.work_path / "exports").rglob("*"))
    assert not any(p.name == "Cache.cach" for p in fetched)
    assert sum(p.suffix == ".jpg" and p.parent.name == "batch_001" for p in fetched) == 20

    # a quiet night: nothing new, no new version
    again = ingest(storage, config)
    assert again.checks == [] and again.dataset is None
    assert sorted(again.discovery.already_ingested) == ["batch_001", "batch_002"]


def test_dataset_is_cumulative_and_splits_are_stable(storage, config, tmp_path):
    upload(storage, export(tmp_path / "a", "batch_001", n_images=20, seed=1))
    first = ingest(storage, config).dataset
    upload(storage, export(tmp_path / "b", "batch_002", n_images=20, seed=2))
    second = ingest(storage, config).dataset
    assert second.merged == ["batch_002"]
    info = storage.get_json(f"datasets/{second.version}/dataset.json")
    assert info["parent"] == first.version and set(info["exports"]) == {"batch_001", "batch_002"}
    old_lists = lists(pull_dataset(storage, first.version, tmp_path / "ds"))
    # the next version pulled into the same folder fetches only the new pack
    packs = storage.get_json(f"datasets/{second.version}/packs.json")
    assert len(packs) == 2
    fetched = []
    real_download = storage.download_file
    storage.download_file = lambda key, local: (fetched.append(key), real_download(key, local))
    new_lists = lists(pull_dataset(storage, second.version, tmp_path / "ds"))
    assert [key for key in fetched if key.startswith("datasets/packs/")] == [f"datasets/packs/{list(packs)[1]}.tar"]
    for key, text in old_lists.items():
        assert set(text.splitlines()) <= set(new_lists[key].splitlines()), key
    for text in new_lists.values():
        assert all((tmp_path / "ds" / line.split("\t")[0]).is_file() for line in text.splitlines())


def test_export_still_uploading_waits_for_the_next_run(storage, config, tmp_path):
    folder = export(tmp_path / "a", "batch_001", n_images=6)
    upload(storage, folder, skip={"img_0004.jpg"})
    result = ingest(storage, config)
    assert result.checks == [] and "not uploaded yet" in result.discovery.waiting["batch_001"]
    assert load_ledger(storage)["exports"] == {}
    storage.upload_file(folder / "img_0004.jpg", "incoming/batch_001/img_0004.jpg")
    assert ingest(storage, config).dataset is not None


def test_failing_export_is_quarantined_with_a_report_and_good_ones_go_on(storage, config, tmp_path):
    bad = export(tmp_path / "a", "bad_batch", n_images=6, seed=3)
    break_label_file(bad)
    upload(storage, bad)
    upload(storage, export(tmp_path / "b", "good_batch", n_images=6, seed=4))
    result = ingest(storage, config)
    checks = {c.export.name: c for c in result.checks}
    assert checks["good_batch"].passed and not checks["bad_batch"].passed
    assert result.dataset.merged == ["good_batch"]
    prefix = checks["bad_batch"].report_uri.split(f"{storage.settings.bucket}/", 1)[1]
    report = storage.get_text(prefix + "report.txt")
    assert "label line does not parse" in report and "Label.txt:3" in report
    assert storage.exists(prefix + "data_docs/index.html") and storage.exists(prefix + "Label.txt")
    assert storage.get_json(prefix + "validation.json")["success"] is False
    assert load_ledger(storage)["exports"]["bad_batch"]["status"] == "quarantined"
    # not re-checked every night; a fixed re-upload is new again
    assert ingest(storage, config).checks == []
    fixed = export(tmp_path / "c", "bad_batch", n_images=6, seed=3)
    storage.upload_file(fixed / "Label.txt", "incoming/bad_batch/Label.txt")
    again = ingest(storage, config)
    assert [c.passed for c in again.checks] == [True]


def test_an_image_with_an_unusable_box_is_left_out_and_the_rest_merged(storage, config, tmp_path):
    """The real ID-card export's shape: 72 images, one 8-point polygon clicked out of order. The other 71
    are merged; the one left out is named with its reason in the export's report, the ledger and the
    labellers' notification, and comes in once fixed and uploaded again."""
    folder = export(tmp_path / "a", "id_cards", n_images=12, seed=3)
    crossing = [[10, 10], [60, 10], [60, 30], [35, 30], [35, 5], [20, 40], [10, 40], [10, 25]]
    lines = label_lines(folder)
    bad_file = lines[4].split("\t")[0].split("/", 1)[1]
    edit_boxes(folder, 4, lambda boxes: boxes + [{"transcription": "SỐ", "points": crossing, "difficult": False}])
    upload(storage, folder)
    result = ingest(storage, config)
    (check,) = result.checks
    assert check.passed and list(check.left_out) == [bad_file]
    assert "box " in check.left_out[bad_file] and "polygon crosses itself" in check.left_out[bad_file]
    prefix = check.report_uri.split(f"{storage.settings.bucket}/", 1)[1]
    assert prefix.startswith("quarantine/id_cards/")
    report = storage.get_text(prefix + "report.txt")
    assert "PASSED, 1 image(s) LEFT OUT" in report and f"Label.txt:5 {bad_file}" in report
    assert storage.exists(prefix + "data_docs/index.html")
    entry = load_ledger(storage)["exports"]["id_cards"]
    assert entry["status"] == "merged" and entry["left_out"] == check.left_out
    info = storage.get_json(f"datasets/{result.dataset.version}/dataset.json")
    assert sum(c["images"] for c in info["counts"].values()) == 11
    pulled = pull_dataset(storage, result.dataset.version, tmp_path / "pulled")
    assert bad_file not in "".join(lists(pulled).values())

    fixed = export(tmp_path / "b", "id_cards", n_images=12, seed=3)   # redrawn in PPOCRLabel, uploaded again
    storage.upload_file(fixed / "Label.txt", "incoming/id_cards/Label.txt")
    again = ingest(storage, config)
    assert [(c.passed, c.left_out) for c in again.checks] == [(True, {})]
    info = storage.get_json(f"datasets/{again.dataset.version}/dataset.json")
    assert sum(c["images"] for c in info["counts"].values()) == 12
    assert "left_out" not in load_ledger(storage)["exports"]["id_cards"]


@pytest.mark.parametrize("processes", [1, 3])
def test_exports_checked_in_child_processes_come_back_as_one_process_checks_them(storage, tmp_path, processes):
    """`validation.processes`: the local runner checks exports side by side (as the DAG's mapped
    tasks run); results, quarantine and ledger are the same as one after another, in upload order."""
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"validation.processes={processes}"])
    for index, name in enumerate(["b_first", "a_broken", "c_last"]):
        folder = export(tmp_path / name, name, n_images=5, seed=10 + index)
        if name == "a_broken":
            break_label_file(folder)
        upload(storage, folder)
    result = ingest(storage, config)
    checks = sorted(result.checks, key=lambda c: c.export.name)
    assert [(c.export.name, c.passed) for c in checks] == [("a_broken", False), ("b_first", True), ("c_last", True)]
    assert [c.export.name for c in result.checks] == [r.name for r in sorted(
        (c.export for c in result.checks), key=lambda ref: (ref.uploaded_at, ref.name))]   # in upload order
    assert "Label.txt:3" in storage.get_text(
        checks[0].report_uri.split(f"{storage.settings.bucket}/", 1)[1] + "report.txt")
    assert result.dataset.merged == ["b_first", "c_last"]
    assert {n: e["status"] for n, e in load_ledger(storage)["exports"].items()} == \
        {"a_broken": "quarantined", "b_first": "merged", "c_last": "merged"}


def test_crash_before_the_ledger_write_merges_nothing_twice(storage, config, tmp_path, monkeypatch):
    upload(storage, export(tmp_path / "a", "batch_001", n_images=8))
    real_record = ingest_module.commit_merge

    def crash(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(ingest_module, "commit_merge", crash)
    with pytest.raises(RuntimeError):
        ingest(storage, config)
    assert load_ledger(storage)["exports"] == {}
    monkeypatch.setattr(ingest_module, "commit_merge", real_record)
    result = ingest(storage, config)
    versions = [d for d in storage.list_dirs("datasets") if d != "packs"]
    assert versions == [result.dataset.version]          # the re-run produced the same version
    assert load_ledger(storage)["exports"]["batch_001"]["status"] == "merged"


def test_cli_against_storage(storage, s3_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    bucket = storage.settings.bucket
    base = ["--set", f"storage.bucket={bucket}", "--set", f"work_dir={tmp_path / 'work'}"]
    folder = export(tmp_path / "a", "batch_001", n_images=5)
    upload(storage, folder)
    assert main(base + ["validate", f"s3://{bucket}/incoming/batch_001"]) == 0
    assert main(base + ["discover"]) == 0
    assert "new      batch_001" in capsys.readouterr().out
    assert main(base + ["ingest"]) == 0
    assert "dataset " in capsys.readouterr().out
    assert main(base + ["ingest"]) == 0
    assert "nothing new to ingest" in capsys.readouterr().out
    assert main(base + ["pull-dataset", "--dest", str(tmp_path / "ds")]) == 0
    pulled = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert list(pulled["exports"]) == ["batch_001"] and pulled["exports"]["batch_001"]["images"] == 5
    assert main(base + ["validate", f"s3://{bucket}/incoming/nothing_here"]) == 2
    assert "no objects there" in capsys.readouterr().err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    assert main(base + ["discover"]) == 2
    err = capsys.readouterr().err
    assert "wrong-secret" not in err and "Traceback" not in err


def test_growing_an_old_export_never_undoes_a_later_correction(storage, config, tmp_path):
    first = export(tmp_path / "a", "batch_001", n_images=4, seed=1)
    upload(storage, first)
    ingest(storage, config)
    # batch_002 carries image 0 of batch_001 again, with a corrected transcription
    fix = tmp_path / "b" / "batch_002"
    fix.mkdir(parents=True)
    (fix / "img_0000.jpg").write_bytes((first / "img_0000.jpg").read_bytes())
    line = label_lines(first)[0].replace("batch_001/", "batch_002/")
    path, boxes = line.split("\t")
    boxes = json.loads(boxes)
    boxes[0]["transcription"] = "999999"
    (fix / "Label.txt").write_text(f"{path}\t{json.dumps(boxes)}\n")
    (fix / "fileState.txt").write_text("C:\\x\\img_0000.jpg\t1\n")
    upload(storage, fix)
    ingest(storage, config)
    # batch_001 grows by one image and is merged again
    grown = export(tmp_path / "c", "batch_001", n_images=5, seed=1)
    upload(storage, grown)
    version = ingest(storage, config).dataset.version
    images = [json.loads(l) for l in storage.get_text(f"datasets/{version}/images.jsonl").splitlines()]
    assert len(images) == 5
    corrected = [i for i in images if i["export"] == "batch_002"]
    assert len(corrected) == 1 and corrected[0]["boxes"][0]["transcription"] == "999999"
