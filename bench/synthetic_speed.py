"""Images per second of ocr_tasks.embedded.synthetic.make_export for 1,000 default images.

Run: .venv/bin/python bench/synthetic_speed.py [n_images]
The goal is >= 1,000 images/s single-threaded: tests, benchmarks and the demo all
generate their data on the fly, so generation must never be what they wait for.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2

from ocr_tasks.embedded.synthetic import ExportSpec, make_export


def main(n_images: int = 1000) -> float:
    # One thread, so the number means the same on a 2-core CI box and a 64-core one.
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        make_export(Path(tmp), ExportSpec("warmup", n_images=5))  # imports, cv2 lazy init
        start, cpu_start = time.perf_counter(), time.process_time()
        make_export(Path(tmp), ExportSpec("bench", n_images=n_images))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    rate = n_images / elapsed
    # CPU time too: on a shared box the wall clock mostly measures the neighbours.
    print(f"{n_images} images in {elapsed:.3f} s: {rate:,.0f} images/s wall, "
          f"{n_images / cpu:,.0f} images/s per CPU-second (single-threaded, default spec)")
    return rate


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
