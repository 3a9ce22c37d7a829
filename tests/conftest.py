"""Shared fixtures. Storage tests run against a real S3 server (rclone serve s3), not a mock."""

from __future__ import annotations

import uuid
from pathlib import Path
from collections.abc import Iterator

import pytest

from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.storage.s3 import Storage


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


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default work_dir is ./work: keep every test's scratch files out of the checkout."""
    monkeypatch.chdir(tmp_path)
