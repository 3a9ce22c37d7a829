"""Peak memory of validating large images: decode threads x pixels, bounded by validation.decode_memory_mb.

Writes an export of N 16-bit RGB PNGs (16384 x 2441 by default: a scanned page strip) plus one
108 MP JPEG (12000 x 9000, a phone photo), then runs `build_tables` (every image decoded, 8
threads) in a fresh process per budget and prints its peak RSS and the budget's peak.

    .venv/bin/python bench/decode_memory.py --images 8 --budgets 256 1024 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

CHILD = r'''
import json, resource, sys, time
from pathlib import Path
from ocr_tasks.config import ValidationConfig
from ocr_tasks.ingest import images
from ocr_tasks.ingest.tables import build_tables
started = time.monotonic()
tables = build_tables(Path(sys.argv[1]), ValidationConfig(decode_memory_mb=int(sys.argv[2])))
problems = [f.problem for f in tables.facts.values() if f.problem]
print(json.dumps({"seconds": time.monotonic() - started, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "budget_peak_mb": images.DECODE_BUDGET.peak / 2 ** 20, "images": len(tables.facts), "problems": problems}))
'''


def make_export(folder: Path, n: int, width: int, height: int) -> None:
    folder.mkdir(parents=True)
    ramp = np.linspace(0, 65535, width, dtype=np.uint16)
    page = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2)
    page[height // 3: height // 3 + 200, 1000:9000] = 0     # a dark "text line"
    ok, png = cv2.imencode(".png", page, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    del page
    photo = np.full((9000, 12000, 3), 200, np.uint8)
    photo[4000:4400, 2000:10000] = 20
    ok, jpg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
    del photo
    lines = []
    box = json.dumps([{"transcription": "line", "points": [[1000, height // 3], [9000, height // 3],
                                                           [9000, height // 3 + 200], [1000, height // 3 + 200]],
                       "difficult": False}])
    for i in range(n):
        (folder / f"page_{i}.png").write_bytes(png.tobytes())
        lines.append(f"{folder.name}/page_{i}.png\t{box}")
    (folder / "photo.jpg").write_bytes(jpg.tobytes())
    lines.append(f"{folder.name}/photo.jpg\t" + json.dumps([{"transcription": "line", "points": [
        [2000, 4000], [10000, 4000], [10000, 4400], [2000, 4400]], "difficult": False}]))
    (folder / "Label.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(16384, 2441), metavar=("W", "H"))
    parser.add_argument("--budgets", type=int, nargs="+", default=[256, 1024, 100000], help="decode_memory_mb values")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pages"
        started = time.monotonic()
        make_export(folder, args.images, *args.size)
        print(f"export: {args.images} x {args.size[0]}x{args.size[1]} 16-bit PNG + one 12000x9000 JPEG "
              f"({time.monotonic() - started:.0f} s to write)")
        for budget in args.budgets:
            done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(budget)], capture_output=True,
                                  text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"decode_memory_mb {budget:>6}: peak RSS {result['peak_rss_mb']:7.0f} MB, budget peak "
                  f"{result['budget_peak_mb']:6.0f} MB, {result['seconds']:5.1f} s, {result['images']} images, "
                  f"problems: {result['problems'] or 'none'}")


if __name__ == "__main__":
    main()
