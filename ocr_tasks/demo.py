"""The main job on the embedded default: local S3 server, synthetic PPOCRLabel exports, ingest.

`make demo` runs it. What it shows today (data path): two labellers' exports arrive in
`incoming/`, one with a broken polygon; the good one becomes a dataset version, the bad
one is quarantined with its report. Training, gate and publish join here as they land.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import load_config
from .ingest import ingest, load_ledger, pull_dataset
from .s3server import LocalS3Server
from .storage import Storage
from .synthetic import ExportSpec, make_export

log = logging.getLogger(__name__)


def run_demo(work_dir: Path, bucket: str = "ocr-data") -> int:
    work_dir = work_dir.resolve()
    config = load_config(overrides=[f"work_dir={work_dir}", f"storage.bucket={bucket}"])
    with LocalS3Server(work_dir / "s3", log_file=work_dir / "s3.log").start() as server:
        storage = Storage(server.settings(bucket))
        storage.ensure_bucket()
        print(f"local S3 server {server.endpoint_url} over {work_dir / 's3'}")
        _upload_synthetic_exports(storage, work_dir / "labeller")
        result = ingest(storage, config)
        for check in result.checks:
            print(check.summary)
            if check.report_uri:
                print(f"  quarantined -> {check.report_uri}")
        version = load_ledger(storage)["dataset_version"]
        if version is None:
            print("no dataset version yet")
            return 1
        local = pull_dataset(storage, version, work_dir / "datasets" / version)
        print(f"dataset {version}: {storage.uri(f'datasets/{version}/')}")
        print(f"materialised for PaddleOCR (data_dir): {local}")
    return 0


def _upload_synthetic_exports(storage: Storage, labeller_dir: Path) -> None:
    """What labellers do: export from PPOCRLabel and upload the folder to incoming/."""
    specs = [ExportSpec("digits_001", n_images=200, seed=1, unconfirmed=10, with_rec_crops=True),
             ExportSpec("digits_002", n_images=50, seed=2)]
    for spec in specs:
        if storage.exists(f"incoming/{spec.name}/Label.txt"):
            continue
        folder = labeller_dir / spec.name
        if not folder.exists():
            make_export(labeller_dir, spec)
        if spec.name == "digits_002":
            _break_one_polygon(folder)
        storage.upload_dir(folder, f"incoming/{spec.name}")
        print(f"uploaded {spec.name} -> {storage.uri(f'incoming/{spec.name}/')}")


def _break_one_polygon(folder: Path) -> None:
    label = folder / "Label.txt"
    lines = label.read_text(encoding="utf-8").splitlines()
    lines[7] = lines[7].replace('"points": [[', '"points": [[-40, -40], [', 1)
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
