"""Uploads take time and arrive in any order: an export is taken only when complete (config `incoming`),
and one whose files never arrive is quarantined and notified rather than waiting forever. Real S3 server."""

from __future__ import annotations

import json
import time

from ocr_tasks.config import load_config
from ocr_tasks.flow import steps
from ocr_tasks.flow.run import RunContext, RunRequest
from ocr_tasks.ingest.ledger import load_ledger
from tests.kit import export, ingest, upload


def _config(tmp_path, storage, *overrides):
    return load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"storage.bucket={storage.settings.bucket}",
                                  *overrides])


def _discover(storage, config):
    return steps.discover(RunContext(config, storage, RunRequest("discover")))


def test_an_export_whose_file_state_arrives_last_waits_for_it(storage, tmp_path):
    folder = export(tmp_path / "a", "batch_001", n_images=6)
    state = (folder / "fileState.txt").read_text(encoding="utf-8").splitlines()
    (folder / "fileState.txt").write_text("\n".join(state[:-1]) + "\n", encoding="utf-8")   # one left unconfirmed
    upload(storage, folder, skip=("fileState.txt",))
    config = _config(tmp_path, storage)

    found = _discover(storage, config)
    assert not found.new and "no fileState.txt yet" in found.waiting["batch_001"]

    storage.upload_file(folder / "fileState.txt", "incoming/batch_001/fileState.txt")
    result = ingest(storage, config)
    assert result.dataset.merged == ["batch_001"]
    assert sum(split["images"] for split in result.dataset.counts.values()) == 5   # the unconfirmed one stayed out


def test_an_export_is_taken_once_nothing_changed_for_the_quiet_period(storage, tmp_path):
    upload(storage, export(tmp_path / "a", "batch_001", n_images=3))
    config = _config(tmp_path, storage, "incoming.quiet_period_s=3")
    found = _discover(storage, config)
    assert not found.new and "still being uploaded" in found.waiting["batch_001"]
    assert "incoming.quiet_period_s" in found.waiting["batch_001"]
    time.sleep(4.2)      # the store's Last-Modified has one-second resolution
    assert [ref.name for ref in _discover(storage, config).new] == ["batch_001"]


def test_a_file_that_never_arrives_quarantines_the_export_and_says_so(storage, tmp_path, webhook):
    folder = export(tmp_path / "a", "batch_001", n_images=4)
    missing = sorted(p.name for p in folder.iterdir() if p.suffix == ".jpg")[0]
    upload(storage, folder, skip=(missing,))
    upload(storage, export(tmp_path / "b", "batch_002", n_images=3))
    config = _config(tmp_path, storage, "incoming.give_up_after_h=0.0005")     # 1.8 s

    found = _discover(storage, config)
    assert "not uploaded yet" in found.waiting["batch_001"] and not found.abandoned
    time.sleep(2.5)
    found = _discover(storage, config)
    assert [ref.name for ref in found.abandoned] == ["batch_001"]
    assert [ref.name for ref in found.new] == ["batch_002"]                   # the other export goes on
    entry = load_ledger(storage)["exports"]["batch_001"]
    assert entry["status"] == "quarantined"
    report = storage.get_text(entry["quarantine"].split(f"{storage.settings.bucket}/", 1)[1] + "report.txt")
    assert "file never arrived" in report and missing in report
    assert any("batch_001 QUARANTINED" in json.dumps(payload) and "file never arrived" in json.dumps(payload)
               for payload in webhook)
    assert "batch_001" in _discover(storage, config).already_ingested        # not reported every night

    storage.upload_file(folder / missing, f"incoming/batch_001/{missing}")   # the labeller uploads it after all
    assert "batch_001" in [ref.name for ref in _discover(storage, config).new]
