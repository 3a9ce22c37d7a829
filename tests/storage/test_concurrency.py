"""Concurrent writers, as real separate processes, on both kinds of store: the embedded rclone server
(ignores conditional writes: leases settle and re-check) and an AWS-like server (moto's, honours
If-Match / If-None-Match). Each test asserts that nothing was lost or mixed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from ocr_tasks.codec import plain
from ocr_tasks.config import IncomingConfig
from ocr_tasks.ingest.exports import discover_exports
from ocr_tasks.ingest.ledger import load_ledger
from ocr_tasks.release.registry import list_versions, production_version, pull_model
from ocr_tasks.storage import layout
from ocr_tasks.storage.lease import LeaseTimeout, lease
from tests.kit import REPO, export, upload
from tests.release.test_publish import local_files, make_bundle


def start(job: str, storage, **args) -> subprocess.Popen:
    payload = {"settings": dataclasses.asdict(storage.settings), **args}
    return subprocess.Popen([sys.executable, "-m", "tests.storage.concurrent_workers", job, json.dumps(payload)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def finish(process: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_the_store_kind_is_detected(any_storage, request):
    expected = request.node.callspec.params["any_storage"] == "aws-like"
    assert any_storage.supports_conditional_writes() is expected
    assert not list(any_storage.list("locks/"))      # the probe leaves nothing behind


def test_a_lease_lets_one_writer_at_a_time_change_an_object(any_storage):
    writers, times = 4, 4
    processes = [start("count", any_storage, holder=f"writer {i}", times=times) for i in range(writers)]
    for process in processes:
        finish(process)
    # each increment is a read-sleep-write: without mutual exclusion, overlapping ones lose updates
    assert any_storage.get_json("counter.json") == writers * times
    assert not any_storage.exists(layout.lock_key("counter"))      # released


def test_a_dead_holders_lease_expires_and_a_live_one_is_waited_for(any_storage):
    any_storage.put_json(layout.lock_key("ledger-test"), {"holder": "a worker that died", "token": "x"})
    with pytest.raises(LeaseTimeout, match="a worker that died"):
        with lease(any_storage, "ledger-test", ttl_s=30, wait_s=1):
            pass
    time.sleep(2.1)
    with lease(any_storage, "ledger-test", ttl_s=2, wait_s=5) as held:   # older than its TTL: taken over
        assert json.loads(any_storage.get_bytes(held.key))["token"] == held.token


def _merge_setup(storage, tmp_path):
    for index, name in enumerate(("batch_a", "batch_b")):
        upload(storage, export(tmp_path / name, name, n_images=5, seed=40 + index))
    refs = {ref.name: plain(ref) for ref in
            discover_exports(storage, load_ledger(storage), IncomingConfig(quiet_period_s=0)).new}
    return refs


def _assert_nothing_lost(storage, exports):
    ledger = load_ledger(storage)
    latest = ledger["dataset_version"]
    dataset = storage.get_json(layout.dataset_prefix(latest) + "dataset.json")
    assert sorted(dataset["exports"]) == sorted(exports)        # every export is in the latest dataset
    assert {name: ledger["exports"][name]["status"] for name in exports} == {name: "merged" for name in exports}
    assert sum(e["images"] for e in dataset["exports"].values()) == 5 * len(exports)


def test_an_ingest_that_loses_the_race_merges_again_on_top_of_the_winner(any_storage, tmp_path):
    """Deterministic: merge A is held just before its ledger commit while merge B commits."""
    refs = _merge_setup(any_storage, tmp_path)
    stall = tmp_path / "stall"
    slow = start("merge", any_storage, refs=[refs["batch_a"]], work_dir=str(tmp_path / "w1"), stall=str(stall))
    deadline = time.monotonic() + 240
    while not stall.with_suffix(".ready").exists():
        assert slow.poll() is None and time.monotonic() < deadline, "the stalled merge never reached its commit"
        time.sleep(0.1)
    fast = finish(start("merge", any_storage, refs=[refs["batch_b"]], work_dir=str(tmp_path / "w2")))
    assert fast["merged"] == ["batch_b"]
    stall.with_suffix(".released").touch()
    late = finish(slow)
    assert late["merged"] == ["batch_a"] and late["version"] != fast["version"]
    assert load_ledger(any_storage)["dataset_version"] == late["version"]
    _assert_nothing_lost(any_storage, ["batch_a", "batch_b"])


def test_two_ingests_at_once_lose_nothing(any_storage, tmp_path):
    """Natural timing: two merges of different exports started together."""
    refs = _merge_setup(any_storage, tmp_path)
    processes = [start("merge", any_storage, refs=[refs[name]], work_dir=str(tmp_path / name))
                 for name in ("batch_a", "batch_b")]
    for process in processes:
        finish(process)
    _assert_nothing_lost(any_storage, ["batch_a", "batch_b"])


def test_an_export_both_ingests_found_is_merged_once(any_storage, tmp_path):
    refs = _merge_setup(any_storage, tmp_path)
    processes = [start("merge", any_storage, refs=[refs["batch_a"], refs["batch_b"]], work_dir=str(tmp_path / f"w{i}"))
                 for i in range(2)]
    results = [finish(process) for process in processes]
    _assert_nothing_lost(any_storage, ["batch_a", "batch_b"])
    # same content, same version: the loser found both already merged (or built the identical version)
    assert {r["version"] for r in results} == {load_ledger(any_storage)["dataset_version"]}


def test_two_publishers_in_the_same_second_get_two_whole_versions(any_storage, tmp_path):
    bundles = {}
    for run in ("run-1", "run-2"):
        bundle = make_bundle(tmp_path / run)
        (bundle / "checkpoints" / "rec" / "big.pdparams").write_bytes(os.urandom(12 * 1024 * 1024))
        bundles[run] = bundle
    processes = [start("publish", any_storage, name="shop", run_id=run, bundle=str(bundle),
                       now="2026-12-01T02:00:00+00:00") for run, bundle in bundles.items()]
    results = {r["run_id"]: r for r in (finish(p) for p in processes)}

    versions = {r["version"] for r in results.values()}
    assert versions == {"20261201T020000Z", "20261201T020000Z-2"}         # never the same name
    promoted = [r for r in results.values() if r["promoted"]]
    assert len(promoted) == 1           # the other found production moved and is kept, not promoted
    assert production_version(any_storage, "shop") == promoted[0]["version"]
    assert any_storage.get_json(layout.production_key("shop"))["previous"] is None
    assert sorted(v["version"] for v in list_versions(any_storage, "shop")) == sorted(versions)
    for run, result in results.items():   # each version holds exactly its own bundle's bytes
        pulled = pull_model(any_storage, "shop", tmp_path / "pulled", result["version"], include_checkpoints=True)
        mine = {rel: data for rel, data in local_files(bundles[run]).items() if not rel.startswith("report/")}
        assert {rel: data for rel, data in local_files(pulled).items() if rel != "manifest.json"} == mine
