"""What one model's training setting does to the reading end to end, with the other model held fixed.

Copies a finished `make demo` work dir (its S3 folder and pulled dataset) once per variant, and runs
`ocr-retrain run --models <det|rec> --force --dry-run` on each copy through the same function the CLI calls, with
the variant's `--set` overrides: that model alone is retrained and production's other model stays, so any change
in the end-to-end hmean comes from the one retrained. Infra validation reads in the pipeline's own runtime. Prints
one RESULT line per variant: the retrained model's metric on the test split (rec acc on the label crops, det
hmean), e2e precision/recall/hmean, minutes. Nothing is asserted; the demo's own folder is only read.

    .venv/bin/python bench/train_variants.py work/demo base
    .venv/bin/python bench/train_variants.py work/demo margin03x2 \\
        training.rec.detector_like_crops.margin=[-0.05,0.3] training.rec.detector_like_crops.copies=2
    .venv/bin/python bench/train_variants.py --model det work/demo det6 \\
        'training.det.stages=[{name: finetune, epochs: 6}]'

Run two variants at once on 2 cores (each trains on one). Measured 2026-12-03 over one demo state
(det hmean 0.974): see the comment on `DetectorLikeCrops.margin` in ocr_tasks/config.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ocr_tasks.config import load_config
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.flow.local_runner import run_local
from ocr_tasks.flow.run import RunContext, RunRequest, sanitize_run_id
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo_dir", type=Path, help="a `make demo` work dir (work/demo) that has published")
    parser.add_argument("name", help="the variant's name (its run id)")
    parser.add_argument("sets", nargs="*", help="KEY=VALUE config overrides, as `--set` takes them")
    parser.add_argument("--model", choices=("det", "rec"), default="rec", help="the one retrained (default rec)")
    parser.add_argument("--bucket", default="ocr-data")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix=f"{args.model}-variant-{args.name}-"))
    shutil.copytree(args.demo_dir / "s3", work / "s3")
    shutil.copytree(args.demo_dir / "work" / "datasets", work / "work" / "datasets", symlinks=True)
    with LocalS3Server(work / "s3").start() as server:
        config = load_config(overrides=[f"work_dir={work / 'work'}", f"storage.bucket={args.bucket}",
                                        "infra_validation.runtimes={pipeline: null}", "incoming.quiet_period_s=0",
                                        *args.sets])
        storage = Storage(server.settings(args.bucket))
        started = time.monotonic()
        run_local(RunContext(config, storage, RunRequest(args.name, models=(args.model,), force=True, dry_run=True)))
        run = storage.get_json(layout.run_record_key(sanitize_run_id(args.name)))
    print("RESULT", args.name, args.sets, json.dumps({
        args.model: run["metrics"][args.model], "e2e": {k: v["metrics"]["e2e"] for k, v in run["exported_metrics"].items()},
        "minutes": round((time.monotonic() - started) / 60, 1), "work": str(work)}))


if __name__ == "__main__":
    main()
