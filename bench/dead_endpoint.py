"""How long storage takes to give up on an endpoint that is down, and whether it rides out a restart.

    .venv/bin/python bench/dead_endpoint.py [--hung]

Endpoints, with the default StorageSettings (retries, timeouts):
  refused    nothing listens on the port (a server that is down)
  restart    the embedded S3 server stopped, started again on the same port 8 s later
  hung       (--hung, minutes) a socket that takes connections and never answers: every
             botocore attempt waits read_timeout_s
Prints seconds to the error (or to success) and the error's first line.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocr_tasks.embedded.s3server import LocalS3Server  # noqa: E402
from ocr_tasks.storage.s3 import Storage, StorageError, StorageSettings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(storage: Storage) -> tuple[float, str]:
    started = time.monotonic()
    try:
        storage.get_bytes("probe.txt")
        outcome = "read it"
    except StorageError as exc:
        outcome = str(exc).splitlines()[0][:160]
    return time.monotonic() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hung", action="store_true")
    args = parser.parse_args()
    keys = {"access_key_id": "bench", "secret_access_key": "bench-secret"}
    endpoints = {"refused": f"http://127.0.0.1:{free_port()}"}
    if args.hung:
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)     # the kernel completes connects; nobody ever reads or answers
        endpoints["hung"] = f"http://127.0.0.1:{hung.getsockname()[1]}"
    for name, url in endpoints.items():
        seconds, outcome = timed(Storage(StorageSettings(bucket="bench", endpoint_url=url, **keys)))
        print(f"{name:9s} {seconds:6.1f} s  {outcome}")

    with tempfile.TemporaryDirectory() as root:
        server = LocalS3Server(Path(root))
        server.start()
        storage = Storage(server.settings("bench"))
        storage.ensure_bucket()
        storage.put_text("probe.txt", "hello")
        server.stop()
        restarted = threading.Timer(8.0, server.start)    # the same port: start() keeps it
        restarted.start()
        seconds, outcome = timed(storage)
        restarted.join()
        server.stop()
        print(f"{'restart':9s} {seconds:6.1f} s  {outcome} (the server was down for 8 s)")


if __name__ == "__main__":
    main()
