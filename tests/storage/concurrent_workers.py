"""Child processes for tests/storage/test_concurrency.py: each is a separate writer, as a CLI
`ingest` beside a DAG run or two workers would be.

    python -m tests.storage.concurrent_workers <job> '<json arguments>'

Prints one JSON line with what it did.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from ocr_tasks.codec import plain, rebuild
from ocr_tasks.storage.s3 import Storage, StorageSettings


def _storage(args: dict) -> Storage:
    return Storage(StorageSettings(**args["settings"]))


def count(args: dict) -> dict:
    """Add 1 to a counter object `times` times, each a read-sleep-write under the lease."""
    from ocr_tasks.storage.lease import lease

    storage = _storage(args)
    for _ in range(args["times"]):
        with lease(storage, "counter", holder=args["holder"]) as held:
            value = storage.get_json("counter.json", default=0)
            time.sleep(0.05)           # the gap in which an unprotected writer loses an update
            held.check()
            storage.put_json("counter.json", value + 1)
    return {"holder": args["holder"]}


def merge(args: dict) -> dict:
    """merge_exports of these refs; with `stall`, stop before the ledger commit until a file appears."""
    from ocr_tasks.config import load_config
    from ocr_tasks.ingest import merge as merging
    from ocr_tasks.ingest.exports import ExportRef

    if args.get("stall"):
        real_commit = merging.commit_merge
        stall = Path(args["stall"])

        def commit_when_released(*a, **kw):
            if not stall.with_suffix(".released").exists():
                stall.with_suffix(".ready").touch()
                deadline = time.monotonic() + 120
                while not stall.with_suffix(".released").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            return real_commit(*a, **kw)

        merging.commit_merge = commit_when_released
    config = load_config(overrides=[f"work_dir={args['work_dir']}"])
    refs = [rebuild(ExportRef, ref) for ref in args["refs"]]
    result = merging.merge_exports(_storage(args), refs, config)
    return plain(result)


def publish(args: dict) -> dict:
    """The publish step's storage half: reserve a version name, upload, promote over no production."""
    from ocr_tasks.release.registry import ProductionMoved, publish_model, reserve_model_version

    storage = _storage(args)
    now = datetime.fromisoformat(args["now"])      # both publishers in the same second
    version = reserve_model_version(storage, args["name"], args["run_id"], now=now)
    try:
        publish_model(storage, args["name"], version, Path(args["bundle"]),
                      {"run_id": args["run_id"], "gate": {"passed": True}}, if_production_is=None)
        promoted = True
    except ProductionMoved:
        promoted = False
    return {"version": version, "promoted": promoted, "run_id": args["run_id"]}


def fetch_bundle(args: dict) -> dict:
    """A step's fetch of the run's exported bundle, `times` times, as infra_validate and compare do side by
    side on one worker; after each fetch every file must be whole (its bytes as uploaded)."""
    import hashlib

    from ocr_tasks.config import load_config
    from ocr_tasks.flow.run import ExportedBundle, RunContext, RunRequest
    from ocr_tasks.flow.steps import fetch_bundle as fetch

    config = load_config(overrides=[f"work_dir={args['work_dir']}"])
    ctx = RunContext(config, _storage(args), RunRequest(args["run_id"]), args["step"])
    problems = []
    for attempt in range(args["times"]):
        try:
            local = fetch(ctx, ExportedBundle(args["prefix"], ["det", "rec"]))
            got = {str(f.relative_to(local)): hashlib.sha256(f.read_bytes()).hexdigest()
                   for f in sorted(local.rglob("*")) if f.is_file()}
            if got != args["expected"]:
                problems.append(f"fetch {attempt}: files differ from the bundle ({sorted(got)})")
        except Exception as exc:  # noqa: BLE001 - the race shows as any error; report it, go on
            problems.append(f"fetch {attempt}: {type(exc).__name__}: {exc}"[:300])
    return {"step": args["step"], "problems": problems}


if __name__ == "__main__":
    job, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"count": count, "merge": merge, "publish": publish, "fetch_bundle": fetch_bundle}[job](arguments)))
