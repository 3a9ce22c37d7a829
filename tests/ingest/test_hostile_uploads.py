"""One bad upload never blocks the night: whatever an export holds, it is quarantined or refused with a
reason, and the other exports are ingested. Against the real local S3 server."""

from __future__ import annotations

import json

import pytest

from ocr_tasks.config import load_config
from ocr_tasks.ingest.ledger import load_ledger
from tests.kit import break_label_file, export, ingest, label_lines, upload, write_label_lines


@pytest.fixture
def config(tmp_path):
    return load_config(overrides=[f"work_dir={tmp_path / 'work'}"])


def _with_first_point(folder, raw_number: str) -> None:
    """Label.txt's first point's x written as `raw_number`, a JSON number of any size."""
    lines = label_lines(folder)
    path, payload = lines[0].split("\t", 1)
    boxes = json.loads(payload)
    text = json.dumps(boxes)
    first = json.dumps(boxes[0]["points"][0][0])
    lines[0] = f"{path}\t" + text.replace(f"[[{first},", f"[[{raw_number},", 1)
    write_label_lines(folder, lines)


def test_numbers_no_parser_can_hold_quarantine_their_export_and_the_others_go_on(storage, config, tmp_path):
    huge = export(tmp_path / "a", "huge_number", n_images=4, seed=1)
    _with_first_point(huge, "1" + "0" * 400)          # OverflowError in math.isfinite, before
    digits = export(tmp_path / "b", "five_thousand_digits", n_images=4, seed=2)
    _with_first_point(digits, "7" * 5000)             # Python's int-conversion limit, before
    for folder in (huge, digits, export(tmp_path / "c", "good", n_images=6, seed=3)):
        upload(storage, folder)

    result = ingest(storage, config)
    checks = {c.export.name: c for c in result.checks}
    assert checks["good"].passed and result.dataset.merged == ["good"]
    assert not checks["huge_number"].passed and not checks["five_thousand_digits"].passed
    assert "Label.txt:1" in checks["huge_number"].summary
    assert "points must be a list of [x, y] numbers below" in checks["huge_number"].summary
    assert "label JSON cannot be read" in checks["five_thousand_digits"].summary
    assert len(checks["five_thousand_digits"].summary) < 3000                     # bounded, not 5,000 digits
    ledger = load_ledger(storage)["exports"]
    assert ledger["huge_number"]["status"] == ledger["five_thousand_digits"]["status"] == "quarantined"


def test_hostile_folder_names_are_refused_by_rule_and_the_others_go_on(storage, config, tmp_path):
    upload(storage, export(tmp_path / "a", "good", n_images=6, seed=3))
    long_name = "x" * 230                         # storable here, but exports/<name>/<fp>/<name>/... is not everywhere
    upload(storage, export(tmp_path / "b", "long", n_images=2, seed=4), name=long_name)
    result = ingest(storage, config)
    assert [c.export.name for c in result.checks] == ["good"] and result.dataset.merged == ["good"]
    (refused,) = result.discovery.refused.values()
    assert refused.startswith("the folder name is 230 bytes, more than 200")
    assert ingest(storage, config).discovery.refused                       # still said, every night


def test_a_50_mb_label_line_is_not_echoed_whole(storage, config, tmp_path):
    folder = export(tmp_path / "a", "giant_line", n_images=3, seed=5)
    lines = label_lines(folder)
    lines[0] = "../" + "a" * 5_000_000 + ".jpg\t[]"
    write_label_lines(folder, lines)
    upload(storage, folder)
    result = ingest(storage, config)
    (check,) = result.checks
    assert not check.passed and "contains '..'" in check.summary
    assert len(check.summary) < 5000
    prefix = check.report_uri.split(f"{storage.settings.bucket}/", 1)[1]
    assert len(storage.get_bytes(prefix + "report.txt")) < 5000
    assert len(storage.get_bytes(prefix + "validation.json")) < 20000
    pages = [o for o in storage.list(prefix + "data_docs/") if o.key.endswith(".html")]   # not GX's static assets
    assert pages and max(o.size for o in pages) < 1_000_000


def test_whatever_an_export_makes_raise_quarantines_it_and_the_others_go_on(storage, config, tmp_path, monkeypatch):
    """The last line of defence: an error nobody foresaw (stood for by a patched table builder) is this export's."""
    from ocr_tasks.ingest import check

    real = check.build_tables

    def fragile(folder, *args, **kwargs):
        if folder.name == "cursed":
            raise ZeroDivisionError("an unforeseen shape")
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(check, "build_tables", fragile)
    upload(storage, export(tmp_path / "a", "cursed", n_images=3, seed=6))
    upload(storage, export(tmp_path / "b", "good", n_images=6, seed=3))
    result = ingest(storage, config)
    checks = {c.export.name: c for c in result.checks}
    assert checks["good"].passed and result.dataset.merged == ["good"]
    assert "the export could not be read: ZeroDivisionError: an unforeseen shape" in checks["cursed"].summary
    assert load_ledger(storage)["exports"]["cursed"]["status"] == "quarantined"


def test_a_symlink_in_a_local_export_is_refused_not_followed(tmp_path):
    from ocr_tasks.ingest.check import check_local_export
    from ocr_tasks.ingest.prepare import prepare

    folder = export(tmp_path / "a", "linked", n_images=4, seed=7)
    secret = tmp_path / "outside.jpg"
    (folder / "img_0001.jpg").rename(secret)
    (folder / "img_0001.jpg").symlink_to(secret)
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}"])
    _, report = check_local_export(folder, config)
    assert not report.success
    (failure,) = [f for f in report.failures if f.column == "image_problem"]
    assert failure.examples == ["Label.txt:2: 'is a symbolic link (img_0001.jpg): copy the file itself into the export'"]
    result = prepare([str(folder)], tmp_path / "out", config)
    assert result.info is None and not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.jpg"))


def test_validate_on_a_prefix_that_is_not_an_export_says_so(storage, s3_server, tmp_path, monkeypatch, capsys):
    from ocr_tasks.cli import main

    upload(storage, export(tmp_path / "a", "good", n_images=2, seed=3))
    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    code = main(["--set", f"work_dir={tmp_path / 'work'}", "validate", f"s3://{storage.settings.bucket}/incoming"])
    err = capsys.readouterr().err
    assert code == 2 and "no Label.txt there, so not a PPOCRLabel export" in err and "Traceback" not in err


def test_the_later_upload_wins_whatever_the_names(storage, config, tmp_path):
    """A correction uploaded after the export it corrects wins, even under a name that sorts first."""
    import time

    from ocr_tasks.ingest.pull import pull_dataset
    from tests.kit import edit_boxes

    first = export(tmp_path / "a", "zz_batch", n_images=4, seed=8)
    upload(storage, first)
    time.sleep(1.2)                                   # the store's clock resolution is a second
    fix = export(tmp_path / "b", "aa_fix", n_images=4, seed=8)     # the same images, relabelled
    edit_boxes(fix, 0, lambda boxes: [{**boxes[0], "transcription": "corrected"}] + boxes[1:])
    upload(storage, fix)
    result = ingest(storage, config)
    assert [c.export.name for c in result.checks] == ["zz_batch", "aa_fix"]       # upload order, not name order
    data = pull_dataset(storage, result.dataset.version, tmp_path / "data")
    texts = [box["transcription"] for split in ("train", "val", "test")
             for line in (data / "det" / f"{split}.txt").read_text().splitlines()
             for box in json.loads(line.split("\t", 1)[1])]
    assert "corrected" in texts


HOSTILE_EXPORT = 'x<img src=q onerror="document.body.dataset.pwned=1">'


def test_a_hostile_export_name_never_reaches_the_data_docs_as_markup(tmp_path):
    """GX writes its data source name unescaped into the Data Docs index (before: the raw `<img ...>` stood in
    index.html and Chromium ran it): the name GX gets is made safe."""
    from ocr_tasks.config import load_config
    from ocr_tasks.ingest.check import check_local_export
    from ocr_tasks.ingest.validate import gx_name

    folder = export(tmp_path / "labeller", HOSTILE_EXPORT, n_images=3, seed=5)
    break_label_file(folder)                                        # a GX failure: Data Docs are written
    _, report = check_local_export(folder, load_config(), tmp_path / "docs")
    assert not report.success and report.export == HOSTILE_EXPORT
    pages = {p: p.read_text(encoding="utf-8") for p in (tmp_path / "docs").rglob("*.html")}
    assert pages and not [p for p, text in pages.items() if "<img src=q" in text or "onerror=" in text]
    assert gx_name(HOSTILE_EXPORT) in pages[tmp_path / "docs" / "index.html"]
    assert gx_name(HOSTILE_EXPORT) != gx_name(HOSTILE_EXPORT.replace("q", "r"))   # never two exports on one name
    assert gx_name("digits_800") == "export_digits_800"                             # plain names unchanged


def _labels_in_nfc_file_in_nfd(folder):
    """img_0000.jpg becomes 'café_0000.jpg': composed (NFC) in Label.txt and fileState.txt, decomposed (NFD,
    as macOS writes names) on disk."""
    import unicodedata

    nfc = unicodedata.normalize("NFC", "café_0000.jpg")
    for text_file in ("Label.txt", "fileState.txt"):
        path = folder / text_file
        path.write_text(path.read_text(encoding="utf-8").replace("img_0000.jpg", nfc), encoding="utf-8")
    (folder / "img_0000.jpg").rename(folder / unicodedata.normalize("NFD", nfc))


def test_a_name_in_another_unicode_form_says_so_locally_and_in_storage(storage, config, tmp_path):
    from ocr_tasks.ingest.check import check_local_export
    from ocr_tasks.ingest.exports import discover_exports

    folder = export(tmp_path / "labeller", "cafe_batch", n_images=3, seed=5)
    _labels_in_nfc_file_in_nfd(folder)
    _, report = check_local_export(folder, config, tmp_path / "docs")
    assert not report.success
    assert "labels spell it in NFC and the uploaded file's name is in NFD" in "\n".join(report.summary().splitlines())
    upload(storage, folder)
    waiting = discover_exports(storage, {}, config.incoming).waiting["cafe_batch"]
    assert "not uploaded yet" in waiting and "labels spell it in NFC" in waiting and "in NFD" in waiting


def test_a_pack_whose_bytes_were_swapped_is_refused_by_pull_dataset(storage, config, tmp_path):
    """A pack is named by its sha256, an image by its own: bytes changed in storage after the merge are
    refused, naming the object, instead of training on them."""
    from ocr_tasks.errors import StorageError
    from ocr_tasks.ingest.packs import write_pack
    from ocr_tasks.ingest.pull import pull_dataset
    from ocr_tasks.storage import layout

    upload(storage, export(tmp_path / "a", "batch_001", n_images=5, seed=4))
    version = ingest(storage, config).dataset.version
    packs = storage.get_json(layout.dataset_prefix(version) + "packs.json")
    (pack_id, members), = packs.items()
    good = pull_dataset(storage, version, tmp_path / "good")

    # 1. the pack object overwritten: its bytes no longer give its name
    forged_root = tmp_path / "forged"
    for rel in members:
        (forged_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (forged_root / rel).write_bytes((good / members[0]).read_bytes())   # every image the same picture
    forged_id = write_pack(forged_root, members, tmp_path / "forged.tar")
    storage.upload_file(tmp_path / "forged.tar", layout.pack_key(pack_id))
    with pytest.raises(StorageError, match=f"{pack_id}.* does not hold what the merge stored"):
        pull_dataset(storage, version, tmp_path / "x")
    assert not list((tmp_path / "x").glob("images/*"))           # nothing of it extracted

    # 2. packs.json edited to name a forged pack that is consistent with itself: the images' own names refuse it
    storage.upload_file(tmp_path / "forged.tar", layout.pack_key(forged_id))
    storage.put_json(layout.dataset_prefix(version) + "packs.json", {forged_id: members})
    with pytest.raises(StorageError, match="holds other bytes"):
        pull_dataset(storage, version, tmp_path / "y")


def test_keys_with_empty_or_dot_dot_segments_are_refused_and_reported(aws_like_server, config, tmp_path):
    """`incoming//x/` was passed by in silence and `incoming/x/../y/` showed as "waiting" for ever; both are
    refused by rule, named, every night, and the good export beside them is merged. (moto: rclone's
    filesystem cannot even hold such keys; S3 and MinIO can.)"""
    import uuid

    from ocr_tasks.storage.s3 import Storage

    storage = Storage(aws_like_server.settings(f"test-{uuid.uuid4().hex[:16]}"))
    storage.ensure_bucket()
    raw = storage._client   # the storage layer refuses to write such keys: a labeller's own tool does not
    bucket = storage.settings.bucket
    raw.put_object(Bucket=bucket, Key="incoming//x/Label.txt", Body=b"x/a.jpg\t[]\n")
    raw.put_object(Bucket=bucket, Key="incoming/sneaky/../y/Label.txt", Body=b"y/a.jpg\t[]\n")
    upload(storage, export(tmp_path / "good", "good_batch", n_images=4, seed=2))
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", "incoming.quiet_period_s=0"])
    result = ingest(storage, config)
    refused = result.discovery.refused
    assert set(refused) == {"", "sneaky"} and not result.discovery.waiting
    assert refused[""].startswith("a key with an empty folder name (incoming//...")
    assert "incoming/sneaky/../y/Label.txt" in refused["sneaky"] and "'..' path segment" in refused["sneaky"]
    assert [c.export.name for c in result.checks] == ["good_batch"] and result.dataset is not None
    assert set(ingest(storage, config).discovery.refused) == {"", "sneaky"}    # said again every night
