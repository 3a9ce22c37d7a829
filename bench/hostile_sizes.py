"""What one hostile upload costs validation: one image labelled with a million boxes, one box with a
50 MB transcription, beside 11 ordinary images. Prints seconds and the process's peak memory.

    .venv/bin/python bench/hostile_sizes.py

Measured 2026-12-03 (2-core machine, busy): before the caps, 1 M boxes took 57 s and 1.6 GB in validate;
with validation.max_boxes_per_image (2000) the line is counted, not decoded.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocr_tasks.config import load_config  # noqa: E402
from ocr_tasks.ingest.check import check_local_export  # noqa: E402
from tests.kit import export, label_lines, write_label_lines  # noqa: E402


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    try:
        folder = export(root, "hostile", n_images=12, seed=1)
        lines = label_lines(folder)
        box = {"transcription": "1", "points": [[1, 1], [9, 1], [9, 9], [1, 9]], "difficult": False}
        path = lines[0].split("\t", 1)[0]
        lines[0] = path + "\t" + json.dumps([box] * 1_000_000)
        path = lines[1].split("\t", 1)[0]
        lines[1] = path + "\t" + json.dumps([{**box, "transcription": "7" * 50_000_000}])
        write_label_lines(folder, lines)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        _, report = check_local_export(folder, load_config())
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"validated in {seconds:.1f} s; passed={report.success}; left out: "
              f"{[image.where for image in report.left_out]}")
        print(f"peak RSS {peak / 1024:.0f} MB (before validating: {before / 1024:.0f} MB, the test file built in memory)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
