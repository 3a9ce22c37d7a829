"""Shared fixtures: a real S3 server (rclone serve s3, not a mock), a bucket per test, a real webhook receiver,
and a second S3 server that honours conditional writes as AWS does (moto's, started here).

Helpers that are not fixtures (exports, labeller edits, free ports) are in kit.py."""

from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from collections.abc import Iterator

import pytest

from ocr_tasks.config import OVERRIDES_ENV
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.flow import notify
from ocr_tasks.storage.s3 import Storage

# Tests upload an export and ingest it at once: no quiet period to wait out (set for the whole session,
# module-scoped fixtures included; tests/ingest/test_upload_timing.py sets its own). Subprocesses that
# build their own environment (Airflow) get it in their config file instead.
os.environ.setdefault(OVERRIDES_ENV, "incoming.quiet_period_s=0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each worker opens with its own slow tests, as `slow(minutes=...)` estimates them; fast tests fill the rest.

    `make test` runs three workers with xdist's worksteal scheduling, which first cuts the list into one
    contiguous share per worker (the first `n // workers` items, then the rest split alike), and later lets a
    worker that ran dry steal the back half of another's queue. So the longest test (the demo) opens the first
    share, the tests marked `one_worker` the second, and the other slow tests, longest first, open the shares
    after the first: no worker gets two long tests while another has none (with every slow test at
    the end of the last share, one worker ran the UI, distributed and stock tests one after another, 947 s,
    as long as the demo). Each goes to the share with the fewest estimated minutes so far. The fast tests
    behind them are what a worker that runs dry steals.

    `one_worker` tests share costly module fixtures (tests/flow/test_runners.py: a whole run each): kept
    together at the front of a share, one worker takes them before anything is stolen (stealing takes from
    the end of a queue). Left at the end, a steal split them and a second worker built the fixtures again.
    """
    def minutes(item: pytest.Item) -> float:
        slow = item.get_closest_marker("slow")
        return 0.0 if slow is None else float(slow.kwargs.get("minutes", 1))

    longest = max((minutes(item) for item in items), default=0.0)
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    first = [item for item in items if longest and minutes(item) == longest]
    together = [item for item in items if item.get_closest_marker("one_worker") and item not in first]
    slow = sorted((item for item in items if minutes(item) and item not in first and item not in together),
                  key=lambda item: -minutes(item))
    fast = [item for item in items if not minutes(item) and item not in together]
    if workers <= 1:
        items[:] = first + together + fast + slow
        return
    heads: list[list[pytest.Item]] = [list(first)] + [[] for _ in range(workers - 1)]
    heads[1] += together
    for item in slow:   # to the share with the fewest estimated minutes so far
        lightest = min(range(1, workers), key=lambda share: sum(minutes(each) for each in heads[share]))
        heads[lightest].append(item)
    laid: list[pytest.Item] = []
    remaining = len(items)
    for share, head in enumerate(heads):
        size = remaining // (workers - share)           # worksteal's first cut
        padding = max(0, size - len(head))
        laid += head + fast[:padding]
        fast = fast[padding:]
        remaining -= len(head) + padding
    items[:] = laid + fast


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Server]:
    """One local S3 server for the whole run; each top-level folder of its root is a bucket."""
    with LocalS3Server(tmp_path_factory.mktemp("s3root")) as server:
        yield server


@pytest.fixture
def storage(s3_server: LocalS3Server) -> Storage:
    """A Storage on a fresh, existing bucket of its own, so tests never see each other's keys."""
    st = Storage(s3_server.settings(f"test-{uuid.uuid4().hex[:16]}"))
    st.ensure_bucket()
    return st


class AwsLikeS3Server:
    """moto's S3 server in its own process: an S3-compatible server with AWS's conditional
    writes (If-Match / If-None-Match answered 412), which the embedded rclone server ignores."""

    def __init__(self) -> None:
        import shutil
        import subprocess
        import sys
        import time

        from tests.kit import free_port

        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if binary is None:
            pytest.skip("moto_server is not installed (the test extra: make install)")
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                Storage(self.settings("probe-bucket")).ensure_bucket()
                return
            except Exception:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.2)

    def settings(self, bucket: str, prefix: str = ""):
        from ocr_tasks.storage.s3 import StorageSettings

        return StorageSettings(bucket=bucket, prefix=prefix, endpoint_url=self.endpoint_url, region="us-east-1",
                               addressing_style="path", access_key_id="moto", secret_access_key="moto-secret")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


@pytest.fixture(scope="session")
def aws_like_server() -> Iterator[AwsLikeS3Server]:
    server = AwsLikeS3Server()
    yield server
    server.stop()


@pytest.fixture(params=["rclone", "aws-like"])
def any_storage(request: pytest.FixtureRequest) -> Storage:
    """A fresh bucket on each kind of store: one that ignores conditional writes, one that honours them."""
    server = request.getfixturevalue("s3_server" if request.param == "rclone" else "aws_like_server")
    st = Storage(server.settings(f"test-{uuid.uuid4().hex[:16]}"))
    st.ensure_bucket()
    return st


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default work_dir is ./work: keep every test's scratch files out of the checkout."""
    monkeypatch.chdir(tmp_path)


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """An HTTP receiver on a loopback port set as the notification webhook; yields the payloads it got."""
    _Webhook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(notify.WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hooks/T0K3N-secret")
    yield _Webhook.received
    server.shutdown()
