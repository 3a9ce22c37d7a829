"""Ingest throughput: N synthetic labeled images in a local S3 server -> discover + validate + merge + split.

    .venv/bin/python bench/ingest.py                 # N = 5,000
    .venv/bin/python bench/ingest.py --n 5000 20000  # memory should stay flat as N grows

Set-up makes --distinct exports with the synthetic generator (~50 images/s) and, past those,
copies of them whose every JPEG carries one more comment segment (COM) naming the copy: the same
pixels and labels, other bytes, so each copy is new content to the pipeline (hashes, dedupe, split)
and 100,000 images take minutes to make instead of half an hour.

Each N runs in a fresh child process so its peak RSS is its own; exports are checked in
processes of their own (validation.processes, 0 = one per core): "children MB" is the
largest peak RSS among them and the rclone server. Generation and upload of the exports are set-up, not timed.
Target (issue 10): >= 1,000 images/s at 20,000 images on 2 cores; the 100,000-image peak RSS
within 2x the 10,000-image one. --processes 1 checks the exports one after another.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def copy_export(source: Path, target: Path, tag: str) -> Path:
    """source's files under target, every .jpg with a COM segment holding tag right after its SOI marker."""
    comment = tag.encode("ascii")
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    for path in source.rglob("*"):
        if path.is_dir():
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        if path.suffix.lower() == ".jpg" and data[:2] == b"\xff\xd8":
            data = data[:2] + segment + data[2:]
        out.write_bytes(data)
    return target


def run_one(n: int, per_export: int, processes: int, distinct: int) -> dict:
    from ocr_tasks.config import load_config
    from ocr_tasks.flow.local_runner import ingest
    from ocr_tasks.flow.run import RunContext, RunRequest
    from ocr_tasks.embedded.s3server import LocalS3Server
    from ocr_tasks.storage.s3 import Storage
    from ocr_tasks.embedded.synthetic import ExportSpec, make_export

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        with LocalS3Server(tmp / "s3").start() as server:
            storage = Storage(server.settings("bench"))
            storage.ensure_bucket()
            exports = (n + per_export - 1) // per_export
            made: list[Path] = []
            for index in range(exports):
                count = min(per_export, n - index * per_export)
                name = f"batch_{index:03d}"
                if index < distinct or count != per_export:   # a last, smaller export is made afresh
                    folder = make_export(tmp / "exports", ExportSpec(name, n_images=count, seed=index))
                    made.append(folder)
                else:
                    folder = copy_export(made[index % distinct], tmp / "exports" / name, f"copy {index}")
                storage.upload_dir(folder, f"incoming/{folder.name}")
                if index >= distinct:
                    shutil.rmtree(folder)   # uploaded: the set-up's disk stays that of the distinct exports
            config = load_config(overrides=[f"work_dir={tmp / 'work'}", f"validation.processes={processes}"])
            baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            result = ingest(RunContext(config, storage, RunRequest("bench")))
            seconds = time.perf_counter() - start
    assert result.dataset is not None and all(check.passed for check in result.checks)
    images = sum(c["images"] for c in result.dataset.counts.values())
    assert images == n, (images, n)
    return {"images": n, "exports": exports, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "rss_before_ingest_mb": round(baseline_rss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5000])
    parser.add_argument("--per-export", type=int, default=1000, help="images per export folder")
    parser.add_argument("--processes", type=int, default=0, help="validation.processes (0: one per core)")
    parser.add_argument("--distinct", type=int, default=10,
                        help="exports made by the generator; the rest are copies with other bytes (default 10)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.n[0], args.per_export, args.processes, args.distinct)))
        return
    print(f"{'images':>8} {'exports':>7} {'seconds':>8} {'images/s':>9} {'peak RSS MB':>12} {'children MB':>11}")
    for n in args.n:
        child = subprocess.run([sys.executable, __file__, "--child", "--n", str(n), "--per-export", str(args.per_export),
                                "--processes", str(args.processes), "--distinct", str(args.distinct)],
                               capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"bench for N={n} failed:\n{child.stderr[-3000:]}")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{row['images']:>8} {row['exports']:>7} {row['seconds']:>8} {row['images_per_s']:>9} {row['peak_rss_mb']:>12} {row['children_peak_rss_mb']:>11}")


if __name__ == "__main__":
    main()
