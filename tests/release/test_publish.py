"""Model publishing against a real S3 server: versions, manifest, production pointer, pull, rollback.

The bundles are random bytes in the PaddleOCR inference layout: these tests are about
storage logic, not models.
"""

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from ocr_tasks.codec import rebuild
from ocr_tasks.storage import layout
from ocr_tasks.errors import UsageError
from ocr_tasks.release.registry import (
    ModelIntegrityError,
    PublishError,
    list_versions,
    next_model_version,
    production_version,
    publish_model,
    pull_model,
    rollback,
)
from ocr_tasks.storage.s3 import StorageError

NAME = "invoices"
PASSED_GATE = {"passed": True, "reasons": [], "checks": []}


def make_bundle(root, models=("det", "rec")):
    files = []
    for model in models:
        files += [f"{model}/inference.json", f"{model}/inference.pdiparams", f"{model}/inference.yml",
                  f"checkpoints/{model}/best_accuracy.pdparams", f"checkpoints/{model}/best_accuracy.pdopt",
                  f"checkpoints/{model}/best_accuracy.states"]
    if "rec" in models:
        files.append("rec/ppocr_keys_v1.txt")
    files += ["report/summary.html", "report/curves/rec_acc.png"]
    for i, rel in enumerate(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 + 37 * i))
    return root


def manifest_for(acc=0.95, gate=PASSED_GATE):
    return {"dataset_version": "ds123", "metrics": {"rec": {"acc": acc}, "det": {"hmean": 0.8}}, "gate": gate}


def local_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "bundle")


def test_publish_lists_every_file_and_moves_production_last(storage, bundle, tmp_path):
    assert production_version(storage, NAME) is None
    manifest = publish_model(storage, NAME, "v1", bundle, manifest_for())

    pointer = storage.get_json(layout.production_key(NAME))
    assert pointer["version"] == "v1" and pointer["previous"] is None and pointer["updated_at"].endswith("Z")
    stored = storage.get_json(layout.model_manifest_key(NAME, "v1"))
    assert stored == manifest
    assert stored["name"] == NAME and stored["version"] == "v1" and stored["dataset_version"] == "ds123"

    expected = {rel: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                for rel, data in local_files(bundle).items()}
    assert stored["files"] == expected
    keys = {info.key for info in storage.list(layout.model_version_prefix(NAME, "v1"))}
    assert keys == {f"models/{NAME}/v1/{rel}" for rel in expected} | {layout.model_manifest_key(NAME, "v1"),
                                                                      layout.model_reservation_key(NAME, "v1")}

    # no credentials anywhere a consumer reads
    settings = storage.settings
    for key in (layout.model_manifest_key(NAME, "v1"), layout.production_key(NAME)):
        text = storage.get_text(key)
        for secret in (settings.access_key_id, settings.secret_access_key):
            assert secret and secret not in text

    publish_model(storage, NAME, "v2", make_bundle(tmp_path / "b2", models=("rec",)), manifest_for())
    assert storage.get_json(layout.production_key(NAME))["previous"] == "v1"
    assert [(v["version"], v["models"], v["production"], v["gate_passed"]) for v in list_versions(storage, NAME)] == [
        ("v1", ["det", "rec"], False, True), ("v2", ["rec"], True, True)]


def test_pull_model_verifies_and_returns_the_inference_layout(storage, bundle, tmp_path):
    publish_model(storage, NAME, "v1", bundle, manifest_for())
    dest = tmp_path / "models"
    target = pull_model(storage, NAME, dest)
    assert target == dest / "v1"
    pulled = local_files(target)
    source = local_files(bundle)
    assert set(pulled) == {rel for rel in source if rel.split("/")[0] in ("det", "rec")} | {"manifest.json"}
    assert all(pulled[rel] == source[rel] for rel in pulled if rel != "manifest.json")
    assert json.loads(pulled["manifest.json"])["version"] == "v1"
    assert [p.name for p in dest.iterdir()] == ["v1"]  # no staging left behind

    with_checkpoints = pull_model(storage, NAME, tmp_path / "ckpt", "v1", include_checkpoints=True)
    assert (with_checkpoints / "checkpoints/rec/best_accuracy.pdparams").read_bytes() == \
        source["checkpoints/rec/best_accuracy.pdparams"]
    assert not (with_checkpoints / "report").exists()

    # pulling again into an intact copy is a no-op; a damaged local copy is replaced
    assert pull_model(storage, NAME, dest) == target
    (target / "det/inference.pdiparams").write_bytes(b"broken")
    pull_model(storage, NAME, dest)
    assert (target / "det/inference.pdiparams").read_bytes() == source["det/inference.pdiparams"]
    assert [p.name for p in dest.iterdir()] == ["v1"]


@pytest.mark.parametrize("same_size", [False, True])
def test_tampered_object_fails_the_pull_naming_the_file(storage, bundle, tmp_path, same_size):
    publish_model(storage, NAME, "v1", bundle, manifest_for())
    key = layout.model_version_prefix(NAME, "v1") + "rec/inference.pdiparams"
    size = len((bundle / "rec/inference.pdiparams").read_bytes())
    storage.put_bytes(key, os.urandom(size) if same_size else b"tampered")

    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "keep.txt").write_text("not ours")
    with pytest.raises(ModelIntegrityError, match=r"rec/inference\.pdiparams does not match its manifest") as err:
        pull_model(storage, NAME, dest)
    assert ("sha256" if same_size else "size") in str(err.value)
    assert storage.settings.secret_access_key not in str(err.value)
    # nothing installed, nothing half-written, nothing else touched
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]


def test_failed_upload_leaves_production_on_the_previous_version(storage, tmp_path, monkeypatch):
    publish_model(storage, NAME, "v1", make_bundle(tmp_path / "b1"), manifest_for())
    before = storage.get_json(layout.production_key(NAME))

    real_upload = storage.upload_file

    def flaky_upload(local, key):
        if key.endswith("v2/rec/inference.pdiparams"):
            raise StorageError(f"S3 PutObject {storage.uri(key)} failed (simulated)")
        real_upload(local, key)

    monkeypatch.setattr(storage, "upload_file", flaky_upload)
    b2 = make_bundle(tmp_path / "b2")
    with pytest.raises(StorageError, match="simulated"):
        publish_model(storage, NAME, "v2", b2, manifest_for())

    assert storage.get_json(layout.production_key(NAME)) == before
    assert not storage.exists(layout.model_manifest_key(NAME, "v2"))
    assert [v["version"] for v in list_versions(storage, NAME)] == ["v1"]
    with pytest.raises(PublishError, match="no published version v2"):
        pull_model(storage, NAME, tmp_path / "pull", "v2")
    with pytest.raises(PublishError, match="no published version v2"):
        rollback(storage, NAME, "v2")

    # a retry of the same version replaces the unfinished upload completely
    monkeypatch.setattr(storage, "upload_file", real_upload)
    storage.put_bytes(layout.model_version_prefix(NAME, "v2") + "rec/stale.bin", b"left by the crash")
    manifest = publish_model(storage, NAME, "v2", b2, manifest_for())
    keys = {info.key for info in storage.list(layout.model_version_prefix(NAME, "v2"))}
    assert keys == {f"models/{NAME}/v2/{rel}" for rel in manifest["files"]} | {layout.model_manifest_key(NAME, "v2"),
                                                                             layout.model_reservation_key(NAME, "v2")}
    assert production_version(storage, NAME) == "v2"


def test_versions_are_immutable(storage, bundle, tmp_path):
    publish_model(storage, NAME, "v1", bundle, manifest_for())
    first = storage.get_bytes(layout.model_manifest_key(NAME, "v1"))
    with pytest.raises(PublishError, match="already published.*immutable"):
        publish_model(storage, NAME, "v1", make_bundle(tmp_path / "other"), manifest_for())
    assert storage.get_bytes(layout.model_manifest_key(NAME, "v1")) == first


def test_rollback_moves_the_pointer_and_refuses_unknown_versions(storage, tmp_path):
    for version in ("v1", "v2"):
        publish_model(storage, NAME, version, make_bundle(tmp_path / version), manifest_for())
    pointer = rollback(storage, NAME, "v1")
    assert pointer["version"] == "v1" and pointer["previous"] == "v2"
    assert storage.get_json(layout.production_key(NAME)) == pointer
    assert [v["production"] for v in list_versions(storage, NAME)] == [True, False]
    assert rollback(storage, NAME, "v1") == pointer  # already there: unchanged

    with pytest.raises(PublishError, match=r"no published version v9 \(published: v1, v2\)") as err:
        rollback(storage, NAME, "v9")
    assert isinstance(err.value, UsageError)  # the CLI reports it without a traceback
    with pytest.raises(PublishError, match="invalid model version"):
        rollback(storage, NAME, "../v1")
    assert production_version(storage, NAME) == "v1"
    assert rollback(storage, NAME, "v2")["previous"] == "v1"


def test_rollback_never_points_production_at_a_version_that_cannot_be_pulled(storage, tmp_path):
    for version in ("v1", "v2"):
        publish_model(storage, NAME, version, make_bundle(tmp_path / version), manifest_for())
    prefix = layout.model_version_prefix(NAME, "v1")
    storage.delete(prefix + "det/inference.pdiparams")
    storage.put_bytes(prefix + "rec/inference.json", b"cut short")
    with pytest.raises(PublishError, match=r"v1 is not whole .*: det/inference.pdiparams is missing \(expected \d+ "
                                           r"bytes\); .*rec/inference.json is 9 bytes .*production not moved"):
        rollback(storage, NAME, "v1")
    assert production_version(storage, NAME) == "v2"          # consumers keep pulling a whole model
    with pytest.raises(PublishError, match="not whole"):
        rollback(storage, NAME, "v1", force=True)              # force overrides a failed gate, never missing files


def test_a_model_that_failed_the_gate_is_kept_but_never_production(storage, tmp_path):
    publish_model(storage, NAME, "v1", make_bundle(tmp_path / "v1"), manifest_for())
    failed = {"passed": False, "reasons": ["rec acc 0.874 is not > 0.9"], "checks": []}
    with pytest.raises(PublishError, match="failed the gate"):
        publish_model(storage, NAME, "v2", make_bundle(tmp_path / "v2"), manifest_for(0.874, failed))
    publish_model(storage, NAME, "v2", make_bundle(tmp_path / "v2"), manifest_for(0.874, failed), promote=False)
    assert production_version(storage, NAME) == "v1"
    assert [(v["version"], v["gate_passed"], v["metrics"]["rec"]["acc"]) for v in list_versions(storage, NAME)] == [
        ("v1", True, 0.95), ("v2", False, 0.874)]
    with pytest.raises(PublishError, match="rec acc 0.874 is not > 0.9"):
        rollback(storage, NAME, "v2")
    assert rollback(storage, NAME, "v2", force=True)["version"] == "v2"


def test_bad_bundles_and_manifests_are_refused_before_any_upload(storage, tmp_path):
    incomplete = make_bundle(tmp_path / "a")
    (incomplete / "det/inference.yml").unlink()
    with pytest.raises(PublishError, match="det/ lacks the inference file.*inference.yml"):
        publish_model(storage, NAME, "v1", incomplete, manifest_for())

    stray = make_bundle(tmp_path / "b")
    (stray / "notes.txt").write_text("?")
    with pytest.raises(PublishError, match="unexpected entries notes.txt"):
        publish_model(storage, NAME, "v1", stray, manifest_for())

    leaky = dict(manifest_for(), storage={"secret": storage.settings.secret_access_key})
    with pytest.raises(PublishError, match="credentials") as err:
        publish_model(storage, NAME, "v1", make_bundle(tmp_path / "c"), leaky)
    assert storage.settings.secret_access_key not in str(err.value)

    with pytest.raises(PublishError, match="neither det/ nor rec/"):
        (tmp_path / "empty" / "report").mkdir(parents=True)
        publish_model(storage, NAME, "v1", tmp_path / "empty", manifest_for())
    assert list(storage.list("models/")) == []


def test_pull_without_production_is_a_clear_error(storage, tmp_path):
    with pytest.raises(PublishError, match=f"model {NAME} has no production version yet"):
        pull_model(storage, NAME, tmp_path / "models")
    assert list_versions(storage, NAME) == []


def test_next_model_version_is_a_unique_utc_timestamp(storage, tmp_path):
    now = datetime(2026, 11, 21, 2, 30, 0, tzinfo=timezone.utc)
    assert next_model_version(storage, NAME, now) == "20261121T023000Z"
    assert next_model_version(storage, NAME, now.astimezone(timezone(timedelta(hours=9)))) == "20261121T023000Z"

    publish_model(storage, NAME, "20261121T023000Z", make_bundle(tmp_path / "a"), manifest_for())
    assert next_model_version(storage, NAME, now) == "20261121T023000Z-2"
    # an unfinished publish holds its name too
    storage.put_bytes(layout.model_version_prefix(NAME, "20261121T023000Z-2") + "det/inference.json", b"{}")
    assert next_model_version(storage, NAME, now) == "20261121T023000Z-3"
    assert next_model_version(storage, "other-model", now) == "20261121T023000Z"


def test_cli_models_pull_model_and_rollback(storage, s3_server, tmp_path, monkeypatch, capsys):
    from ocr_tasks.cli import main

    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    base = ["--set", f"storage.bucket={storage.settings.bucket}", "--set", "model_name=shop-ocr"]
    publish_model(storage, "shop-ocr", "v1", make_bundle(tmp_path / "b1"), manifest_for(acc=0.93))
    publish_model(storage, "shop-ocr", "v2", make_bundle(tmp_path / "b2"), manifest_for(acc=0.95))
    assert main(base + ["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith("  v1") and listing[1].startswith("* v2")
    assert main(base + ["pull-model", "--dest", str(tmp_path / "pulled")]) == 0
    assert (tmp_path / "pulled" / "v2" / "rec" / "inference.pdiparams").is_file()
    assert not (tmp_path / "pulled" / "v2" / "report").exists()
    capsys.readouterr()
    # --report: the report too, verified like the models, its path printed (issue 29: the report one command away)
    assert main(base + ["pull-model", "--dest", str(tmp_path / "pulled"), "--report"]) == 0
    report = tmp_path / "pulled" / "v2" / "report" / "summary.html"
    assert report.read_bytes() == (tmp_path / "b2" / "report" / "summary.html").read_bytes()
    assert f"report: {report}" in capsys.readouterr().out
    assert main(base + ["rollback", "v1"]) == 0
    assert "production is now v1" in capsys.readouterr().out
    assert main(base + ["rollback", "v9"]) == 2
    assert "v9" in capsys.readouterr().err


def test_a_retried_publish_task_never_publishes_the_run_twice(storage, bundle, tmp_path):
    """The worker died after the manifest but before the task was marked done: the retry must reuse it."""
    from ocr_tasks.config import load_config
    from ocr_tasks.flow import steps
    from ocr_tasks.flow.run import Evaluation, ExportedBundle, MergedDataset, RunContext, RunRequest
    from ocr_tasks.release.gate import GateDecision
    from ocr_tasks.release.infra_validation import InfraValidation

    config = load_config(overrides=[f"model_name={NAME}", f"work_dir={tmp_path / 'work'}",
                                    f"storage.bucket={storage.settings.bucket}"])
    publish_model(storage, NAME, "20260101T000000Z", bundle, {**manifest_for(), "run_id": "older"})
    # the earlier try of run r7 stored its version but died before moving production
    publish_model(storage, NAME, "20260102T000000Z", bundle, {**manifest_for(), "run_id": "r7"}, promote=False)
    assert production_version(storage, NAME) == "20260101T000000Z"

    ctx = RunContext(config, storage, RunRequest("r7"))
    evaluation = Evaluation({"rec": {"acc": 0.95}}, trained={}, production_version="20260101T000000Z")
    outcome = steps.publish(ctx, MergedDataset("ds123"), evaluation, ExportedBundle("runs/r7/bundle/", ["rec"]),
                            InfraValidation(), rebuild(GateDecision, PASSED_GATE))
    assert outcome.model_version == "20260102T000000Z" and outcome.status == "published"
    assert [v["version"] for v in list_versions(storage, NAME)] == ["20260101T000000Z", "20260102T000000Z"]
    assert production_version(storage, NAME) == "20260102T000000Z"
    # and once more: still the same single version
    again = steps.publish(ctx, MergedDataset("ds123"), evaluation, ExportedBundle("runs/r7/bundle/", ["rec"]),
                            InfraValidation(), rebuild(GateDecision, PASSED_GATE))
    assert again.model_version == "20260102T000000Z" and len(list_versions(storage, NAME)) == 2


def test_a_damaged_manifest_is_left_out_and_an_incomplete_one_is_not_pulled(storage, tmp_path):
    publish_model(storage, NAME, "v1", make_bundle(tmp_path / "b1"), manifest_for(acc=0.93))
    publish_model(storage, NAME, "v2", make_bundle(tmp_path / "b2"), manifest_for(acc=0.95))
    storage.put_bytes(layout.model_manifest_key(NAME, "v1"), b'{"files": {"det/inference.json"')   # cut short
    assert [v["version"] for v in list_versions(storage, NAME)] == ["v2"]              # listing and publish go on
    assert next_model_version(storage, NAME) not in ("v1", "v2")
    manifest = storage.get_json(layout.model_manifest_key(NAME, "v2"))
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k != "rec/inference.pdiparams"}
    storage.put_json(layout.model_manifest_key(NAME, "v2"), manifest)
    with pytest.raises(ModelIntegrityError, match=r"lists rec/ without inference.pdiparams"):
        pull_model(storage, NAME, tmp_path / "pulled", "v2")
    assert not (tmp_path / "pulled" / "v2").exists()


def test_a_publish_gated_against_an_older_production_is_kept_but_not_promoted(storage, tmp_path):
    from ocr_tasks.release.registry import ProductionMoved

    publish_model(storage, NAME, "v1", make_bundle(tmp_path / "b1"), manifest_for())
    publish_model(storage, NAME, "v2", make_bundle(tmp_path / "b2"), manifest_for(), if_production_is="v1")
    assert production_version(storage, NAME) == "v2"
    # a run that was gated against v1 finishes after v2 went out
    with pytest.raises(ProductionMoved, match="moved from v1 to v2") as moved:
        publish_model(storage, NAME, "v3", make_bundle(tmp_path / "b3"), manifest_for(), if_production_is="v1")
    assert not isinstance(moved.value, UsageError)    # an outcome the run reports, not the caller's mistake
    assert production_version(storage, NAME) == "v2"
    assert [v["version"] for v in list_versions(storage, NAME)] == ["v1", "v2", "v3"]   # stored, whole
    rollback(storage, NAME, "v3")                 # a person reviewed it and promotes it
    assert storage.get_json(layout.production_key(NAME))["previous"] == "v2"


def test_a_version_reserved_by_another_run_is_refused(storage, tmp_path):
    from ocr_tasks.release.registry import reserve_model_version

    now = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    mine = reserve_model_version(storage, NAME, "run-a", now=now)
    assert reserve_model_version(storage, NAME, "run-a", now=now) == mine        # a retry gets it back
    theirs = reserve_model_version(storage, NAME, "run-b", now=now)
    assert (mine, theirs) == ("20261201T020000Z", "20261201T020000Z-2")
    with pytest.raises(PublishError, match="reserved by run run-a"):
        publish_model(storage, NAME, mine, make_bundle(tmp_path / "b"), {**manifest_for(), "run_id": "run-b"})
    assert not list(storage.list(layout.model_version_prefix(NAME, mine) + "det/"))   # nothing uploaded
