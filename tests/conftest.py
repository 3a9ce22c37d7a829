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
    """The longest test first, the other slow tests last, as `slow(minutes=...)` estimates them.

    `make test` runs three workers with xdist's worksteal scheduling, which first cuts the list
    into one share per worker: the first worker starts the demo (the longest), the last gets the
    other slow tests at the end of its share, and whichever runs dry steals queued fast tests.
    A worker commits to the test after the one it runs, so the demo is followed by a fast one.

    Tests marked `one_worker` share costly module fixtures (tests/flow/test_runners.py: a whole run
    each): they open the second share, so one worker that does not run the demo takes them together
    before anything is stolen (stealing takes from the end of a queue). Left at the end, a steal
    split them and a second worker built the fixtures again (76 s in a CI run).
    """
    def minutes(item: pytest.Item) -> float:
        slow = item.get_closest_marker("slow")
        return 0.0 if slow is None else float(slow.kwargs.get("minutes", 1))

    longest = max((minutes(item) for item in items), default=0.0)

    def place(item: pytest.Item) -> tuple[int, float]:
        if longest and minutes(item) == longest:
            return 0, 0.0
        return (2, -minutes(item)) if minutes(item) else (1, 0.0)

    items.sort(key=place)
    together = [item for item in items if item.get_closest_marker("one_worker")]
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    if together and workers > 1:
        rest = [item for item in items if not item.get_closest_marker("one_worker")]
        share = (len(rest) + len(together)) // workers    # worksteal's shares: the list cut in `workers` pieces
        items[:] = rest[:share] + together + rest[share:]


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
