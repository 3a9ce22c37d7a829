"""What `make ui` costs the machine while it idles, and how long until its address answers.

Starts `ocr-retrain ui` on a fresh work dir (a 200-image first export, manual only), waits for the
"Airflow UI: http://…" line, checks the api-server answers at that moment, lets it settle, then prints the
processes it runs and their resident memory (unique set size, so shared pages count once), and stops it.
Before sizing (Airflow's default parallelism 32, as issue 29 measured it): ~40 processes and ~2 GB on 2 cores.

    .venv/bin/python bench/ui_footprint.py [--settle 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_tasks.embedded.local_airflow import free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=30, help="seconds to idle before measuring")
    args = parser.parse_args()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    sets = ["--set", "postprocess.val_images=0"]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "ui.log"
        command = [str(Path(sys.executable).parent / "ocr-retrain"), *sets, "ui", "--work-dir", str(Path(tmp) / "demo"),
                   "--port", str(port), "--images", "200"]
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            while "Airflow UI: http" not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    print(log.read_text(errors="replace")[-2000:])
                    return 1
                time.sleep(0.5)
            printed = time.monotonic() - started
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as answer:
                healthy = answer.status == 200
            time.sleep(args.settle)
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            memory = 0
            for p in tree:
                try:
                    memory += p.memory_full_info().uss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            slots = next((line for line in log.read_text().splitlines() if "task slots" in line), "")
            print(f"address printed after {printed:.0f} s (setting up the demo's state included); "
                  f"api-server healthy then: {healthy}")
            print(f"idle after {args.settle:.0f} s: {len(tree)} processes, {memory / 2**20:.0f} MiB unique memory; "
                  f"{os.cpu_count()} CPUs; {slots.split('; ')[-1].split(')')[0] if slots else '?'}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
