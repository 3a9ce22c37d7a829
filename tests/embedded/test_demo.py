"""The README's main job, `make demo`, as a user runs it: the real DAG in Airflow on the embedded default.

Slow (about 6 minutes on 2 cores): Airflow's scheduler runs the DAG with det and rec training
side by side (real PaddleOCR training of the CPU profiles on the 800-image synthetic export),
the real gate, publish, pull, and PaddleOCR 3.x reading a held-out test image. Then the two follow-ups the README promises:
- a second run with nothing new short-circuits and leaves production alone;
- a run after one more export trains again on the grown dataset (1 epoch from scratch
  here, so the gate must refuse it and production must stay where it was).
Everything is checked against what the run left in S3 (read back through a fresh local
server over the demo's folder), not only against what it printed.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocr_tasks.storage import layout
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.storage.s3 import Storage

BIN = Path(sys.executable).parent
BUCKET = "ocr-data"


def _demo(work: Path, *args: str, timeout: float) -> str:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ocr-retrain"), "demo", "--work-dir", str(work), *args], capture_output=True,
                          text=True, timeout=timeout)
    print(done.stdout[-6000:])
    print(f"ocr-retrain demo {' '.join(args)}: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def _runs(storage: Storage) -> dict[str, dict]:
    return {o.key.split("/")[1]: storage.get_json(o.key) for o in storage.list(layout.RUNS)
            if o.key.endswith("/run.json")}


@pytest.mark.slow(minutes=6)
def test_make_demo_trains_gates_publishes_and_reads_then_short_circuits_then_retrains(tmp_path):
    work = tmp_path / "demo"
    first = _demo(work, timeout=2400)

    # what the user sees: every task, the quarantined export, the gate, the text read back
    for task in ("discover", "should_run", "check_export[0]", "check_export[1]", "merge", "train_det", "train_rec",
                 "evaluate", "export", "infra_validate", "gate", "route", "publish"):
        assert f"done {task} (" in first, task
    assert "export digits_broken QUARANTINED" in first
    assert re.search(r"train_det epoch \d+/4,", first) and re.search(r"train_rec epoch \d+/12,", first)
    (read,) = re.findall(r"read from held-out test image (\S+): '(.*)'   \(labelled: '(.*)'\)", first)
    image, text, labelled = read
    # the gate is the quality bar; this checks the consumer path reads the right text. Training on
    # CPU is not bit-for-bit repeatable, so one wrong character is tolerated (exact in every run so far)
    assert text and difflib.SequenceMatcher(None, text, labelled).ratio() >= 0.8, \
        f"{image}: read {text!r}, labelled {labelled!r}"
    assert (work / "models").is_dir() and re.search(r"training curve: .*det_curves\.png", first)

    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings(BUCKET))
        runs = _runs(storage)
        (outcome,) = runs.values()
        assert outcome["status"] == "published"
        assert outcome["metrics"]["rec"]["acc"] > 0.9 and outcome["metrics"]["det"]["hmean"] >= 0.85
        assert outcome["gate"]["passed"] is True
        production = storage.get_json(layout.production_key("ocr"))
        assert production["version"] == outcome["model_version"]
        ledger = storage.get_json(layout.LEDGER)
        assert ledger["exports"]["digits_broken"]["status"] == "quarantined"
        assert ledger["exports"]["digits_800"]["status"] == "merged"
        first_dataset = outcome["dataset_version"]

    # a quiet night: nothing new -> short-circuit, nothing trained, production unchanged
    quiet = _demo(work, timeout=600)
    assert "short-circuited" in quiet and "> train_det" not in quiet
    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings(BUCKET))
        assert len(_runs(storage)) == 1
        assert storage.get_json(layout.production_key("ocr"))["version"] == production["version"]

    # a new export arrives -> the next run trains on the grown dataset
    grown = _demo(work, "--add-export", "--epochs", "1", timeout=1200)
    assert "digits_extra_001: 200 images" in grown and "done train_det (" in grown
    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings(BUCKET))
        runs = _runs(storage)
        assert len(runs) == 2
        (second,) = [r for r in runs.values() if r["run_id"] != outcome["run_id"]]
        assert second["dataset_version"] != first_dataset
        assert storage.get_json(layout.LEDGER)["exports"]["digits_extra_001"]["status"] == "merged"
        # 1 epoch from scratch cannot pass the real gate: production must stay where it was
        assert second["status"] == "gate-failed" and second["gate"]["reasons"]
        assert storage.get_json(layout.production_key("ocr"))["version"] == production["version"]
