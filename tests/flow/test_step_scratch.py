"""Steps of one run that run at once on one worker (LocalExecutor, the embedded default, a Celery worker
with two slots) never share a local folder: infra_validate and compare both fetch the run's exported
bundle after export, and once did so into the same work_dir/runs/<run_id>/bundle/, each clearing it
before its download (CI failure: compare's `.inference.pdiparams.<hex>.part` vanished under it).
"""

from __future__ import annotations

import hashlib
import os

from ocr_tasks.config import load_config
from ocr_tasks.flow.retraining import RETRAINING
from ocr_tasks.flow.run import RunContext, RunRequest
from tests.storage.test_concurrency import finish, start

PREFIX = "runs/r1/bundle/"


def _upload_bundle(storage) -> dict[str, str]:
    files = {"det/inference.pdiparams": os.urandom(3_000_000), "det/inference.json": os.urandom(200_000),
             "rec/inference.pdiparams": os.urandom(3_000_000), "rec/inference.json": os.urandom(200_000),
             "rec/dict.txt": b"0\n1\n2\n", "checkpoints/rec/best_accuracy.pdparams": os.urandom(2_000_000)}
    for name, data in files.items():
        storage.put_bytes(PREFIX + name, data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_two_steps_fetch_the_bundle_at_once_on_one_work_dir(storage, tmp_path):
    """infra_validate and compare, 12 fetches each, at once, in separate processes: every fetch whole."""
    expected = _upload_bundle(storage)
    common = dict(work_dir=str(tmp_path / "work"), run_id="r1", prefix=PREFIX, expected=expected, times=12)
    workers = [start("fetch_bundle", storage, step=step, **common) for step in ("infra_validate", "compare")]
    results = [finish(worker, timeout=600) for worker in workers]
    assert [r["problems"] for r in results] == [[], []]
    scratch = sorted(p.name for p in (tmp_path / "work" / "runs" / "r1").iterdir())
    assert scratch == ["compare", "infra_validate"]          # each step's own folder, nothing shared


def test_every_node_that_can_run_beside_another_has_its_own_scratch(tmp_path):
    """Nodes with no order between them (train_det | train_rec; infra_validate | compare until compare took
    infra validation's reads) get different scratch folders, under the run's folder, whatever runs them."""
    config = load_config(overrides=[f"work_dir={tmp_path}"])
    ctx = RunContext(config, storage=None, request=RunRequest("r1"))
    side_by_side = [(a.name, b.name) for a in RETRAINING.nodes for b in RETRAINING.nodes
                    if a.name < b.name and a.name not in RETRAINING.ancestors(b) | RETRAINING.descendants([b.name])
                    and b.name not in RETRAINING.ancestors(a)]
    assert ("train_det", "train_rec") in side_by_side
    for a, b in side_by_side:
        assert ctx.for_step(a).scratch != ctx.for_step(b).scratch
        assert ctx.for_step(a).scratch.parent == tmp_path.resolve() / "runs" / "r1"
