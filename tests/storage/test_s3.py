"""ocr_tasks.storage.s3 against a real S3 server (rclone serve s3 on loopback): no mocks."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from ocr_tasks.embedded.s3server import LOCAL_SECRET_KEY, LocalS3Server
from ocr_tasks.errors import UsageError
from ocr_tasks.storage.s3 import (
    ObjectInfo,
    ObjectNotFoundError,
    Storage,
    StorageError,
    StorageSettings,
    parse_s3_uri,
)


def with_prefix(storage: Storage, server: LocalS3Server, prefix: str, **overrides) -> Storage:
    return Storage(server.settings(storage.settings.bucket, prefix, **overrides))


# --------------------------------------------------------------------------- round trips


def test_round_trips_and_prefix_lands_where_expected(storage: Storage, s3_server: LocalS3Server) -> None:
    st = with_prefix(storage, s3_server, "/runs/2024-01/".strip("/"))
    st.put_bytes("raw/blob.bin", b"\x00\x01\xff")
    st.put_text("notes/ünïcode.txt", "héllo ✓")
    st.put_json("ledger.json", {"runs": [1, 2], "name": "ünï"})

    assert st.get_bytes("raw/blob.bin") == b"\x00\x01\xff"
    assert st.get_text("notes/ünïcode.txt") == "héllo ✓"
    assert st.get_json("ledger.json") == {"runs": [1, 2], "name": "ünï"}
    assert st.exists("ledger.json") and not st.exists("ledger.jso") and not st.exists("raw")
    # The root prefix really is a folder inside the bucket on the server's disk.
    on_disk = s3_server.root / st.settings.bucket / "runs" / "2024-01" / "raw" / "blob.bin"
    assert on_disk.read_bytes() == b"\x00\x01\xff"
    assert st.uri("raw/blob.bin") == f"s3://{st.settings.bucket}/runs/2024-01/raw/blob.bin"
    assert st.uri() == f"s3://{st.settings.bucket}/runs/2024-01"
    assert storage.uri() == f"s3://{st.settings.bucket}/"

    # Overwrite is a whole-object replace.
    st.put_json("ledger.json", {"runs": [1, 2, 3]})
    assert st.get_json("ledger.json") == {"runs": [1, 2, 3]}

    st.copy("raw/blob.bin", "copies/blob.bin")
    assert st.get_bytes("copies/blob.bin") == b"\x00\x01\xff"
    st.delete("raw/blob.bin")
    st.delete("raw/blob.bin")  # deleting a missing key is fine, as in S3
    assert not st.exists("raw/blob.bin")
    assert sorted(i.key for i in st.list()) == ["copies/blob.bin", "ledger.json", "notes/ünïcode.txt"]
    # The unprefixed view sees the same objects under their full keys.
    assert "runs/2024-01/ledger.json" in {i.key for i in storage.list()}


def test_ensure_bucket_is_idempotent(s3_server: LocalS3Server) -> None:
    st = Storage(s3_server.settings("idempotent-bucket"))
    st.ensure_bucket()
    st.ensure_bucket()  # rclone answers a second CreateBucket with BucketAlreadyExists
    st.put_text("k", "v")
    assert st.get_text("k") == "v"


def test_missing_key_error_names_the_key_and_get_json_default(storage: Storage) -> None:
    with pytest.raises(StorageError, match=r"not found: s3://test-[0-9a-f]+/models/none\.json") as err:
        storage.get_bytes("models/none.json")
    assert isinstance(err.value, ObjectNotFoundError)
    with pytest.raises(ObjectNotFoundError, match="models/none.json"):
        storage.get_json("models/none.json")
    assert storage.get_json("models/none.json", default=None) is None
    assert storage.get_json("models/none.json", default={"a": 1}) == {"a": 1}
    storage.put_bytes("bad.json", b"{not json")
    with pytest.raises(StorageError, match="invalid JSON in s3://.*/bad.json"):
        storage.get_json("bad.json", default=None)


def test_missing_bucket_is_reported(s3_server: LocalS3Server) -> None:
    st = Storage(s3_server.settings("no-such-bucket-here"))
    with pytest.raises(ObjectNotFoundError, match="bucket not found: s3://no-such-bucket-here"):
        st.get_bytes("x")
    with pytest.raises(ObjectNotFoundError, match="bucket not found"):
        st.get_json("x", default=None)  # a missing bucket is misconfiguration, not "no document yet"


# --------------------------------------------------------------------------- listing


def test_list_paginates_past_1000_keys(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(1100):
        p = src / f"d{i % 2}" / f"k{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(str(i))
    assert storage.upload_dir(src, "many") == 1100

    infos = list(storage.list("many/"))
    assert len(infos) == 1100  # one ListObjectsV2 page holds at most 1000
    assert len({i.key for i in infos}) == 1100
    by_key = {i.key: i for i in infos}
    assert by_key["many/d1/k00007.txt"] == ObjectInfo(
        "many/d1/k00007.txt", 1, hashlib.md5(b"7").hexdigest()
    )
    assert len(list(storage.list("many/d0/"))) == 550
    # Plain string-prefix semantics for list(): "many/d1/k0001" matches k00010..k00019.
    assert {i.key for i in storage.list("many/d1/k0001")} == {f"many/d1/k{n:05d}.txt" for n in range(11, 20, 2)}
    assert list(storage.list("many/", recursive=False)) == []
    assert list(storage.list("nothing-here/")) == []


def test_list_dirs_and_non_recursive_list(storage: Storage, s3_server: LocalS3Server) -> None:
    st = with_prefix(storage, s3_server, "root")
    for key in ["exports/a/1.json", "exports/a/2.json", "exports/b/x/1.json", "exports/top.json", "other/z.json"]:
        st.put_text(key, "{}")
    assert st.list_dirs("exports") == ["a", "b"]
    assert st.list_dirs("exports/") == ["a", "b"]
    assert st.list_dirs("") == ["exports", "other"]
    assert st.list_dirs("exports/b") == ["x"]
    assert st.list_dirs("missing") == []
    assert [i.key for i in st.list("exports/", recursive=False)] == ["exports/top.json"]


# --------------------------------------------------------------------------- files


def test_upload_many_download_many_200_files(storage: Storage, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    pairs, expected = [], {}
    for i in range(200):
        data = os.urandom(1000 + i * 37)
        p = src / f"f{i:03d}.bin"
        p.write_bytes(data)
        pairs.append((p, f"batch/sub{i % 7}/f{i:03d}.bin"))
        expected[f"batch/sub{i % 7}/f{i:03d}.bin"] = data
    assert storage.upload_many(iter(pairs)) == 200  # a generator is fine
    assert {i.key for i in storage.list("batch/")} == set(expected)

    assert storage.download_many((k, dst / k) for k in expected) == 200
    for key, data in expected.items():
        assert (dst / key).read_bytes() == data

    # download_prefix / upload_dir mirror folders.
    assert storage.download_prefix("batch/sub3", tmp_path / "mirror") == len([k for k in expected if "/sub3/" in k])
    assert (tmp_path / "mirror" / "f003.bin").read_bytes() == expected["batch/sub3/f003.bin"]


def test_upload_many_reports_first_error_after_the_rest(storage: Storage, tmp_path: Path) -> None:
    pairs = []
    for i in range(20):
        p = tmp_path / f"f{i}.txt"
        if i != 5:
            p.write_text(str(i))
        pairs.append((p, f"u/f{i}.txt"))
    with pytest.raises(StorageError, match="f5.txt"):
        storage.upload_many(pairs)
    # The failure did not abort uploads that were already running; nothing half-written.
    keys = {i.key for i in storage.list("u/")}
    assert "u/f5.txt" not in keys
    assert all(storage.get_text(k) == k[len("u/f") : -len(".txt")] for k in keys)


def test_multipart_upload_above_lowered_threshold(storage: Storage, s3_server: LocalS3Server, tmp_path: Path) -> None:
    st = with_prefix(storage, s3_server, "", multipart_threshold_mb=5)
    parts: list[int] = []
    st._client.meta.events.register(
        "before-parameter-build.s3.UploadPart", lambda params, **_: parts.append(params["PartNumber"])
    )
    data = os.urandom(20 * 1024 * 1024 + 12345)
    src = tmp_path / "model.pdparams"
    src.write_bytes(data)
    st.upload_file(src, "models/big/model.pdparams")
    assert sorted(parts) == [1, 2, 3]  # really multipart: 8 MiB parts

    info = next(iter(st.list("models/big/")))
    assert info.size == len(data)
    out = tmp_path / "back" / "model.pdparams"
    st.download_file("models/big/model.pdparams", out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    # Server-side copy of a multipart-uploaded object (a single CopyObject).
    st.copy("models/big/model.pdparams", "models/best/model.pdparams")
    assert st.get_bytes("models/best/model.pdparams") == data


class _Boom(Exception):
    pass


def test_download_file_never_leaves_a_partial_file(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    storage.put_bytes("big.bin", data)
    target = tmp_path / "out" / "big.bin"
    target.parent.mkdir()

    # Missing key: nothing is created.
    with pytest.raises(ObjectNotFoundError, match="missing.bin"):
        storage.download_file("missing.bin", target)
    assert list(target.parent.iterdir()) == []

    # Connection dies mid-body, after part of the file has been written.
    class DyingBody:
        def __init__(self, body):
            self._body, self._sent = body, 0

        def read(self, n=-1):
            if self._sent > 1024 * 1024:
                raise _Boom("connection lost mid-download")
            chunk = self._body.read(n)
            self._sent += len(chunk)
            return chunk

        def __getattr__(self, name):
            return getattr(self._body, name)

    def break_body(parsed, **_):
        parsed["Body"] = DyingBody(parsed["Body"])

    target.write_bytes(b"previous good version")
    storage._client.meta.events.register("after-call.s3.GetObject", break_body)
    try:
        with pytest.raises(_Boom):
            storage.download_file("big.bin", target)
    finally:
        storage._client.meta.events.unregister("after-call.s3.GetObject", break_body)
    # The old file is intact and no temp/partial file is left beside it.
    assert target.read_bytes() == b"previous good version"
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]

    storage.download_file("big.bin", target)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]


def test_delete_prefix_has_folder_semantics(storage: Storage) -> None:
    for key in ["runs/1/a", "runs/1/b/c", "runs/10/a", "runs/1x"]:
        storage.put_text(key, "x")
    assert storage.delete_prefix("runs/1") == 2
    assert sorted(i.key for i in storage.list()) == ["runs/10/a", "runs/1x"]
    assert storage.delete_prefix("") == 2
    assert list(storage.list()) == []


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("key", ["../x", "a/../b", "a/..", "/abs", "a//b", "./a", "", "dir/"])
def test_bad_keys_are_rejected(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put_text(key, "x")


def test_bad_prefixes_are_rejected(storage: Storage) -> None:
    with pytest.raises(ValueError):
        StorageSettings(bucket="b-1", prefix="a/../b")
    with pytest.raises(ValueError):
        list(storage.list("../"))
    with pytest.raises(ValueError):
        storage.list_dirs("/abs")
    with pytest.raises(ValueError):
        storage.delete_prefix("a/..")
    # Edge slashes on the root prefix are normalised, not doubled.
    assert StorageSettings(bucket="b-1", prefix="/x/y/".lstrip("/")).prefix == "x/y"


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/k.json") == ("bucket", "k.json")
    for bad in ["bucket/x", "s3:/bucket", "s3:///x", "http://b/x", "s3://b/../x", "s3://b//x"]:
        with pytest.raises(UsageError, match="S3 URI|s3://"):     # someone typed it: one line, exit 2
            parse_s3_uri(bad)


def test_settings_from_env_and_no_secrets_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://ignored:1")
    monkeypatch.setenv("OCR_RETRAIN_S3_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "")  # empty means unset
    s = StorageSettings.from_env("data", "p/", concurrency=4)
    assert (s.endpoint_url, s.region, s.prefix, s.concurrency) == ("http://minio:9000", "eu-central-1", "p", 4)
    assert (s.access_key_id, s.secret_access_key, s.session_token) == ("AKIAEXAMPLEKEY", "super-secret-value", None)
    for text in (repr(s), str(s), repr(Storage(s))):
        assert "super-secret-value" not in text and "AKIAEXAMPLEKEY" not in text
    monkeypatch.delenv("OCR_RETRAIN_S3_ENDPOINT")
    assert StorageSettings.from_env("data").endpoint_url == "http://ignored:1"
    assert StorageSettings.from_env("data", endpoint_url=None).endpoint_url is None


def test_wrong_secret_is_refused(storage: Storage, s3_server: LocalS3Server) -> None:
    bad = Storage(
        s3_server.settings(storage.settings.bucket, secret_access_key="wrong-secret-123", max_attempts=1)
    )
    with pytest.raises(StorageError, match="refused") as err:
        bad.put_text("x.txt", "nope")
    assert "wrong-secret-123" not in str(err.value) and LOCAL_SECRET_KEY not in str(err.value)
    with pytest.raises(StorageError):
        list(bad.list())
    assert not storage.exists("x.txt")


def test_an_https_endpoint_for_a_plain_http_server_says_so(storage: Storage, s3_server: LocalS3Server) -> None:
    settings = s3_server.settings(storage.settings.bucket, max_attempts=1)
    tls = Storage(dataclasses.replace(settings, endpoint_url=settings.endpoint_url.replace("http://", "https://")))
    with pytest.raises(StorageError, match=r"TLS with endpoint https://.* failed .*give an http:// endpoint"):
        tls.get_bytes("x.txt")


# --------------------------------------------------------------------------- resilience


def test_rides_out_a_server_restart_on_the_same_port(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with LocalS3Server(tmp_path / "root") as server:
        st = Storage(
            server.settings(
                "restart-bucket",
                max_attempts=2,  # keep botocore's own retries short; the outer retry does the waiting
                transfer_retries=20,
                retry_base_delay_s=0.2,
                retry_max_delay_s=1.0,
            )
        )
        st.ensure_bucket()
        st.put_text("before.txt", "ok")
        port = server.port

        def restart_later() -> None:
            time.sleep(3)
            server.start()

        # 1) a single PUT issued while the endpoint is down
        server.stop()
        t = threading.Thread(target=restart_later)
        t.start()
        caplog.set_level(logging.WARNING, logger="ocr_tasks.storage.s3")
        t0 = time.monotonic()
        st.put_bytes("during-outage.bin", b"payload")
        waited = time.monotonic() - t0
        t.join()
        assert server.port == port
        assert waited > 2.5, "the PUT cannot have succeeded before the server came back"
        assert st.get_bytes("during-outage.bin") == b"payload"
        retries = [r for r in caplog.records if r.levelno == logging.WARNING and "retry" in r.getMessage()]
        assert retries and "during-outage.bin" in retries[0].getMessage()
        assert all(LOCAL_SECRET_KEY not in r.getMessage() for r in caplog.records)

        # 2) a concurrent batch upload spanning an outage
        files = []
        for i in range(30):
            p = tmp_path / "batch" / f"f{i}.txt"
            p.parent.mkdir(exist_ok=True)
            p.write_text(f"file {i}")
            files.append((p, f"batch/f{i}.txt"))
        server.stop()
        t = threading.Thread(target=restart_later)
        t.start()
        assert st.upload_many(files) == 30
        t.join()
        assert sorted(st.get_text(k) for _, k in files) == sorted(f"file {i}" for i in range(30))

        # 3) a server that stays down gives up with a clear error
        server.stop()
        quick = Storage(server.settings("restart-bucket", max_attempts=1, transfer_retries=1, retry_base_delay_s=0.05))
        with pytest.raises(StorageError, match=r"after 2 attempts: endpoint http://127\.0\.0\.1:\d+ unreachable"):
            quick.get_bytes("before.txt")


def test_no_retry_starts_after_the_give_up_time(s3_server: LocalS3Server, caplog) -> None:
    """Retries stop at give_up_after_s, however many transfer_retries are left (bench/dead_endpoint.py times it)."""
    from tests.kit import free_port

    dead = Storage(s3_server.settings("b", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1,
                                      transfer_retries=50, retry_base_delay_s=0.2, give_up_after_s=1.0))
    started = time.time()
    with caplog.at_level(logging.WARNING, logger="ocr_tasks.storage.s3"):
        with pytest.raises(StorageError, match="unreachable .*check that the server is up") as err:
            dead.get_bytes("x")
    failed_at = time.time()
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    # delays 0.1-0.2, 0.2-0.4, 0.4-0.8 s...: at most 3 fit in one second, and none is scheduled past it
    assert len(retries) <= 3 and f"after {len(retries) + 1} attempts" in str(err.value)
    for record in retries:
        delay = float(re.search(r" in ([\d.]+)s", record.getMessage()).group(1))
        assert record.created + delay - started <= 1.0 + 0.05, record.getMessage()   # the log rounds to 0.1 s
    # on a busy machine one refused connection may itself take most of the second (seen in CI): only a first try
    # that failed early enough for the shortest delay (0.2 s at most) must have been retried
    assert retries or failed_at - started > 1.0 - 0.2 - 0.1, (failed_at - started, caplog.text)


def test_server_start_failure_shows_rclone_log(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        server = LocalS3Server(tmp_path / "root", port=busy)
        with pytest.raises(StorageError, match=r"(?s)exited.*address already in use"):
            server.start(timeout=10)
    assert not server.running


@pytest.mark.parametrize("code,status,retried", [
    ("InternalError", 500, True),      # a server restarting under load answers 500 for a moment
    ("BadGateway", 502, True),
    ("SlowDown", 503, True),
    ("TooManyRequests", 429, True),
    ("Throttling", 400, True),
    ("AccessDenied", 403, False),
    ("NoSuchKey", 404, False),
    ("InvalidArgument", 400, False),
])
def test_service_errors_are_retried_as_botocore_standard_mode_would(code: str, status: int, retried: bool) -> None:
    import botocore.exceptions as bce

    from ocr_tasks.storage.s3 import _is_transient

    error = bce.ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                            "PutObject")
    assert _is_transient(error) is retried
