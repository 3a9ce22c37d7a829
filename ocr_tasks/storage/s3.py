"""The project's one storage layer: boto3 over any S3-compatible endpoint.

The same code talks to AWS S3, MinIO, Ceph RGW and the embedded rclone server
(`ocr_tasks.embedded.s3server`), so it sticks to the S3 subset they all implement and keeps
every endpoint-specific choice in `StorageSettings`. No Airflow import: tasks,
the CLI and tests all share this module.

Keys passed by callers are posix paths *relative to* `settings.prefix`; the
prefix is the only place a deployment decides where in the bucket data lives.

Kept in one module on purpose: every operation goes through one retry
and error-translation path (`_call`), one key-safety check and one client, and splitting
the operations from those would let a new one bypass them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    ThrottlingStatusCodeChecker,
    TransientRetryableChecker,
)

from ocr_tasks.errors import StorageError, UsageError
from ocr_tasks.storage import layout

__all__ = [
    "MISSING",
    "ObjectInfo",
    "ObjectNotFoundError",
    "Storage",
    "StorageError",
    "StorageSettings",
    "StoredObject",
    "parse_s3_uri",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
MiB = 1024 * 1024


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Sentinel for `Storage.get_json(default=...)`: distinguishes "no default" from None."""

_ADDRESSING_STYLES = ("path", "virtual", "auto")


def _env(name: str) -> str | None:
    # An exported-but-empty variable (common in compose files) means "unset".
    value = os.environ.get(name, "").strip()
    return value or None


ENDPOINT_SETTINGS = "OCR_RETRAIN_S3_ENDPOINT, AWS_ENDPOINT_URL or the Airflow connection's endpoint_url"
NOT_S3 = f"it does not look like an S3 server (check {ENDPOINT_SETTINGS})"


def _is_http_url(value: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True)
class StorageSettings:
    bucket: str
    prefix: str = ""  # root prefix inside the bucket; every rel key is under it
    endpoint_url: str | None = None  # None -> AWS default
    region: str = "us-east-1"
    addressing_style: str = "path"  # "path" | "virtual" | "auto"
    # None -> boto3's env/credential chain. repr=False keeps secrets out of logs and tracebacks.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    # botocore "standard" retries inside each try (connection errors, 5xx, throttling). Few: its
    # backoff grows to 20 s a retry, so 10 attempts made a refused endpoint take 82 s to give up (measured).
    max_attempts: int = 3
    concurrency: int = 16  # threads for upload_many/download_many
    multipart_threshold_mb: int = 64
    # Outer retry around each operation, on top of botocore's: botocore's retries share a
    # per-client quota that a burst of failures from many threads drains in seconds, after
    # which it stops retrying at all; this one is per call, so an endpoint that is down for
    # ~10 s (a MinIO restart, a pod reschedule) is ridden out. Defaults sleep 12-23 s in total
    # (jittered): a refused endpoint gives up in about 20 s (bench/dead_endpoint.py).
    transfer_retries: int = 6
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 8.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0     # boto3's default: a server that accepts and never answers costs max_attempts of these
    # No retry starts later than this after the first try: an endpoint that never answers (each
    # try waits connect_timeout_s per botocore attempt) gives up in about this plus one try.
    give_up_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.bucket or "/" in self.bucket or self.bucket != self.bucket.strip():
            raise ValueError(f"invalid bucket name: {self.bucket!r}")
        # Normalise once here so every key join below can assume "a/b" (no edge slashes).
        object.__setattr__(self, "prefix", _clean_prefix(self.prefix, what="storage prefix"))
        if self.endpoint_url is not None and not _is_http_url(self.endpoint_url):
            # botocore's own answer is "Invalid endpoint", with a traceback, at the first request
            raise UsageError(f"S3 endpoint {self.endpoint_url!r} ({ENDPOINT_SETTINGS}) must be an http:// or https:// "
                             f"URL, e.g. http://{self.endpoint_url.split('://')[-1]}")
        if self.addressing_style not in _ADDRESSING_STYLES:
            raise ValueError(
                f"addressing_style must be one of {_ADDRESSING_STYLES}, got {self.addressing_style!r}"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            # A half-set pair would silently fall back to another identity in boto3's chain.
            raise ValueError("access_key_id and secret_access_key must be given together")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        for name in ("max_attempts", "concurrency", "multipart_threshold_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.transfer_retries < 0:
            raise ValueError(f"transfer_retries must be >= 0, got {self.transfer_retries}")

    @classmethod
    def from_env(cls, bucket: str, prefix: str = "", **overrides: Any) -> StorageSettings:
        """Settings for `bucket`, taking endpoint/region/keys from the environment.

        Explicit `overrides` win over the environment. Project variables win over
        the generic AWS ones so a shell that also talks to real AWS is not redirected.
        """
        values: dict[str, Any] = {
            "endpoint_url": _env("OCR_RETRAIN_S3_ENDPOINT") or _env("AWS_ENDPOINT_URL"),
            "region": _env("OCR_RETRAIN_S3_REGION")
            or _env("AWS_REGION")
            or _env("AWS_DEFAULT_REGION")
            or "us-east-1",
            "access_key_id": _env("AWS_ACCESS_KEY_ID"),
            "secret_access_key": _env("AWS_SECRET_ACCESS_KEY"),
            "session_token": _env("AWS_SESSION_TOKEN"),
        }
        values.update(overrides)
        return cls(bucket=bucket, prefix=prefix, **values)


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to settings.prefix
    size: int
    etag: str  # without quotes; for multipart uploads AWS's is "md5-N", rclone's is the plain MD5
    # when the object was last written (ISO 8601, UTC), as the store says; not part of its identity
    last_modified: str | None = field(default=None, compare=False)


class ObjectNotFoundError(StorageError):
    """The key (or bucket) does not exist."""


@dataclass(frozen=True)
class StoredObject:
    """One GET: the body, its ETag (for a conditional write back) and two times from the
    store's own clock, so a lease's age is measured without trusting the worker's clock."""

    data: bytes
    etag: str                  # as the store sent it, quotes included: what If-Match wants back
    last_modified: datetime
    read_at: datetime          # the response's Date header

    @property
    def age_s(self) -> float:
        return (self.read_at - self.last_modified).total_seconds()


# A conditional write that lost: 412 when the object changed (or appeared), 409 when AWS
# saw two conditional writes to the key at once.
_CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


# --------------------------------------------------------------------------- keys


def _check_segments(path: str, what: str) -> None:
    reason = layout.unsafe_key_reason(path)
    if reason:
        raise ValueError(f"invalid {what} {path!r}: {reason}")


def _clean_prefix(prefix: str, *, what: str = "prefix") -> str:
    if prefix.startswith("/"):
        raise ValueError(f"invalid {what} {prefix!r}: must be relative (no leading '/')")
    prefix = prefix.rstrip("/")
    if prefix:
        _check_segments(prefix, what)
    return prefix


def _clean_key(key: str) -> str:
    if not key:
        raise ValueError("empty object key")
    if key.startswith("/"):
        raise ValueError(f"invalid key {key!r}: must be relative (no leading '/')")
    if key.endswith("/"):
        raise ValueError(f"invalid key {key!r}: ends with '/', which is a folder, not an object")
    _check_segments(key, "key")
    return key


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """"s3://bucket/some/prefix/" -> ("bucket", "some/prefix"). A URI someone typed: UsageError if it is not one."""
    scheme = "s3://"
    if not isinstance(uri, str) or not uri.startswith(scheme):
        raise UsageError(f"not an S3 URI (expected s3://bucket[/prefix]): {uri!r}")
    bucket, _, rest = uri[len(scheme) :].partition("/")
    if not bucket or bucket != bucket.strip():
        raise UsageError(f"S3 URI has no bucket name (expected s3://bucket[/prefix]): {uri!r}")
    try:
        prefix = _clean_prefix(rest, what="prefix in S3 URI")
    except ValueError as exc:
        raise UsageError(f"{exc} (in {uri!r})") from None
    return bucket, prefix


# --------------------------------------------------------------------------- errors


def _client_error_code(exc: BaseException) -> str | None:
    if isinstance(exc, bce.ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def _http_status(exc: BaseException) -> int | None:
    if isinstance(exc, bce.ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _is_not_found(exc: BaseException) -> bool:
    # HEAD responses have no body, so botocore reports the bare status "404" as the code.
    return _client_error_code(exc) in ("NoSuchKey", "NotFound", "404") or _http_status(exc) == 404


# Which service answers are worth another try is botocore's "standard" retry policy
# (5xx, 429, throttling codes such as SlowDown), asked here rather than copied: a
# restarting server answers 500 InternalError for a moment, and botocore's own short
# retry budget (max_attempts) can be spent before it is back. A permanent 500 (rclone
# answers a file-vs-folder key clash that way) costs `transfer_retries` backoffs, then fails.
_SERVICE_RETRY_POLICY = (TransientRetryableChecker(), ThrottledRetryableChecker(), ThrottlingStatusCodeChecker())


def _service_says_retry(exc: BaseException) -> bool:
    if not isinstance(exc, bce.ClientError):
        return False
    status = _http_status(exc)
    context = RetryContext(attempt_number=1, parsed_response=exc.response,
                           http_response=SimpleNamespace(status_code=status) if status else None)
    return any(checker.is_retryable(context) for checker in _SERVICE_RETRY_POLICY)


_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    bce.EndpointConnectionError,  # connection refused / DNS: endpoint down or restarting
    bce.ConnectTimeoutError,
    bce.ConnectionClosedError,
    bce.ReadTimeoutError,
    bce.ResponseStreamingError,  # connection dropped while reading a body
    bce.IncompleteReadError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    # boto3 wraps transfer failures (S3UploadFailedError, RetriesExceededError) and
    # s3transfer re-raises from worker threads, so look through the whole chain.
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "last_exception", None)]


def _is_transient(exc: BaseException) -> bool:
    for e in _causes(exc):
        if isinstance(e, bce.SSLError):
            return False  # certificate problems do not heal by waiting
        if isinstance(e, _TRANSIENT_TYPES) or _service_says_retry(e):
            return True
    if isinstance(exc, S3UploadFailedError):
        # Older boto3 keeps only the text of the underlying error.
        text = str(exc)
        return any(t in text for t in ("Could not connect", "Connection was closed", "Read timeout"))
    return False


def _describe(exc: BaseException) -> str:
    code = _client_error_code(exc)
    if code is not None:
        msg = exc.response.get("Error", {}).get("Message") or ""  # type: ignore[attr-defined]
        return f"{code}: {msg}" if msg and msg != code else code
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- storage


class Storage:
    """S3 operations on one bucket under one root prefix. Thread-safe."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self._client_obj: Any = None
        self._client_lock = threading.Lock()
        self._conditional_writes: bool | None = None
        s = settings
        self._transfer_config = TransferConfig(
            multipart_threshold=s.multipart_threshold_mb * MiB,
            # Small parts and few threads per file: each in-flight part is held in memory
            # by the client, *_many runs `concurrency` files at once, and rclone streams
            # parts in order, buffering early arrivals in its own memory (capped, then
            # SlowDown). 8 MiB x 10,000 parts still allows 80 GB objects.
            multipart_chunksize=8 * MiB,
            max_concurrency=4,
            use_threads=True,
            # Never the CRT transfer client (picked automatically when awscrt is installed):
            # it bypasses this client's retry and endpoint configuration.
            preferred_transfer_client="classic",
        )

    def __repr__(self) -> str:
        return f"Storage({self.uri()!r}, endpoint_url={self.settings.endpoint_url!r})"

    # -- client

    @property
    def _client(self) -> Any:
        # Built lazily so constructing a Storage (e.g. at DAG parse time) does no I/O.
        # A boto3 client is thread-safe once built; building it is not, hence the lock
        # and a private Session rather than boto3's shared default one.
        if self._client_obj is None:
            with self._client_lock:
                if self._client_obj is None:
                    s = self.settings
                    session = boto3.session.Session(
                        aws_access_key_id=s.access_key_id,
                        aws_secret_access_key=s.secret_access_key,
                        aws_session_token=s.session_token,
                        region_name=s.region,
                    )
                    config = Config(
                        region_name=s.region,
                        signature_version="s3v4",
                        s3={"addressing_style": s.addressing_style},
                        retries={"mode": "standard", "max_attempts": s.max_attempts},
                        connect_timeout=s.connect_timeout_s,
                        read_timeout=s.read_timeout_s,
                        max_pool_connections=max(10, s.concurrency * 2),
                        # botocore >= 1.36 adds CRC32 trailers to every upload by default,
                        # which several S3-compatible servers (older MinIO, Ceph) reject.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                    )
                    self._client_obj = session.client("s3", endpoint_url=s.endpoint_url, config=config)
        return self._client_obj

    # -- keys

    def _full(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    def _full_dir(self, prefix: str) -> str:
        """Folder-style prefix: "" -> root, "a/b" or "a/b/" -> "root/a/b/"."""
        prefix = _clean_prefix(prefix)
        full = "/".join(p for p in (self.settings.prefix, prefix) if p)
        return f"{full}/" if full else ""

    def _rel(self, full_key: str) -> str:
        root = self.settings.prefix
        return full_key[len(root) + 1 :] if root else full_key

    def uri(self, key: str = "") -> str:
        """"s3://bucket/prefix/key"; a trailing "/" on `key` is kept (folder URIs)."""
        if key:
            if key.endswith("/"):
                full = self._full_dir(key)
            else:
                full = self._full(key)
        else:
            full = self.settings.prefix
        return f"s3://{self.settings.bucket}/{full}"

    def _uri_full(self, full_key: str) -> str:
        return f"s3://{self.settings.bucket}/{full_key}"

    # -- error handling and retry

    def _call(self, op: str, target: str, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying transient failures with backoff; translate errors.

        Every operation here is idempotent (PUT of the same bytes, GET, LIST,
        DELETE, COPY), so a retry after an ambiguous failure is always safe.
        """
        s = self.settings
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                return fn()
            except (bce.BotoCoreError, bce.ClientError, S3UploadFailedError, RetriesExceededError, OSError) as exc:
                if isinstance(exc, StorageError):
                    raise
                if isinstance(exc, OSError) and not isinstance(exc, bce.BotoCoreError) and not _is_transient(exc):
                    # a local filesystem problem: let the caller see the real OSError (botocore's
                    # SSLError is an OSError too, through requests: that one is the endpoint's)
                    raise
                delay = min(s.retry_max_delay_s, s.retry_base_delay_s * 2 ** attempt)
                delay = delay * (0.5 + random.random() / 2)  # jitter: don't retry in lockstep
                in_time = time.monotonic() - started + delay <= s.give_up_after_s
                if _is_transient(exc) and attempt < s.transfer_retries and in_time:
                    attempt += 1
                    log.warning(
                        "S3 %s %s failed (%s); retry %d/%d in %.1fs",
                        op, target, _describe(exc), attempt, s.transfer_retries, delay,
                    )
                    time.sleep(delay)
                    continue
                raise self._translate(op, target, exc, attempts=attempt + 1) from exc

    def _translate(self, op: str, target: str, exc: BaseException, *, attempts: int) -> StorageError:
        code = _client_error_code(exc)
        for e in _causes(exc):
            if _client_error_code(e) is not None:
                code = _client_error_code(e)
                exc = e
                break
        if code == "NoSuchBucket":
            return ObjectNotFoundError(f"bucket not found: s3://{self.settings.bucket}", code=code)
        if op in ("GetObject", "ListObjectsV2") and code == "404":
            # an S3 server says NoSuchKey or NoSuchBucket in an XML body; a bare 404 is some other HTTP service,
            # which would otherwise read as an empty bucket
            return StorageError(f"S3 {op} {target}: the endpoint {self.settings.endpoint_url or 'AWS'} answered HTTP "
                                f"404 without an S3 error: {NOT_S3}")
        if _is_not_found(exc):
            return ObjectNotFoundError(f"object not found: {target}", code=code)
        if isinstance(exc, bce.SSLError):
            return StorageError(
                f"S3 {op} {target}: TLS with endpoint {self.settings.endpoint_url or 'AWS'} failed "
                f"({_describe(exc)}): if the server speaks plain HTTP, give an http:// endpoint")
        if code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "403"):
            return StorageError(
                f"S3 {op} {target} refused ({code}): check the access key/secret for "
                f"endpoint {self.settings.endpoint_url or 'AWS'}",
                code=code,
            )
        if code is None and _is_transient(exc):
            return StorageError(
                f"S3 {op} {target} failed after {attempts} attempts: endpoint "
                f"{self.settings.endpoint_url or 'AWS'} unreachable ({_describe(exc)}); "
                "check that the server is up and the endpoint URL is right"
            )
        return StorageError(f"S3 {op} {target} failed ({_describe(exc)})", code=code)

    # -- bucket

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (safe against a concurrent creator)."""
        c, bucket = self._client, self.settings.bucket
        target = f"s3://{bucket}"

        def head() -> bool:
            try:
                c.head_bucket(Bucket=bucket)
                return True
            except bce.ClientError as exc:
                if _is_not_found(exc) or _client_error_code(exc) == "NoSuchBucket":
                    return False
                raise

        if self._call("HeadBucket", target, head):
            return
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self.settings.region != "us-east-1":
            # AWS rejects an explicit us-east-1 constraint and requires one elsewhere.
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        try:
            self._call("CreateBucket", target, lambda: c.create_bucket(**kwargs))
        except StorageError as exc:
            # Lost a race with another creator (AWS: ...OwnedByYou, rclone/MinIO: ...Exists);
            # if we can see it now, it is ours to use. Otherwise it is someone else's.
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists") and self._call(
                "HeadBucket", target, head
            ):
                return
            raise

    # -- objects

    def exists(self, key: str) -> bool:
        full = self._full(key)

        def head() -> bool:
            try:
                self._client.head_object(Bucket=self.settings.bucket, Key=full)
                return True
            except bce.ClientError as exc:
                if _is_not_found(exc) and _client_error_code(exc) != "NoSuchBucket":
                    return False
                raise

        return self._call("HeadObject", self._uri_full(full), head)

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects whose relative key starts with `prefix` (plain S3 string-prefix
        semantics: "runs/1" also matches "runs/10/x"). With recursive=False only
        objects directly in the folder `prefix` are listed."""
        for obj in self._list_raw(self._full_str_prefix(prefix), recursive=recursive):
            modified = obj.get("LastModified")
            yield ObjectInfo(
                key=self._rel(obj["Key"]),
                size=int(obj.get("Size", 0)),
                etag=str(obj.get("ETag", "")).strip('"'),
                last_modified=modified.astimezone(timezone.utc).isoformat() if modified is not None else None,
            )

    def _full_str_prefix(self, prefix: str) -> str:
        if prefix.startswith("/"):
            raise ValueError(f"invalid prefix {prefix!r}: must be relative (no leading '/')")
        # Every complete segment must be valid; the last may be partial ("runs/20").
        complete = prefix[:-1] if prefix.endswith("/") else prefix
        if complete:
            _check_segments(complete, "prefix")
        root = self.settings.prefix
        return f"{root}/{prefix}" if root else prefix

    def _list_raw(self, full_prefix: str, *, recursive: bool = True) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": full_prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        for page in self._pages(kwargs):
            yield from page.get("Contents", [])

    def _pages(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # A hand-rolled loop rather than a paginator so each page request gets the outer retry.
        target = self._uri_full(kwargs["Prefix"])
        token: str | None = None
        while True:
            req = dict(kwargs, ContinuationToken=token) if token else kwargs
            page = self._call("ListObjectsV2", target, lambda: self._client.list_objects_v2(**req))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def list_dirs(self, prefix: str, *, with_empty: bool = False) -> list[str]:
        """Names of the immediate "sub-folders" of folder `prefix` (sorted, no slashes); `with_empty` keeps the
        empty name a key such as "incoming//x" makes (discovery reports it instead of passing it by)."""
        full_prefix = self._full_dir(prefix)
        names: list[str] = []
        for page in self._pages({"Bucket": self.settings.bucket, "Prefix": full_prefix, "Delimiter": "/"}):
            for cp in page.get("CommonPrefixes", []):
                names.append(cp["Prefix"][len(full_prefix) :].rstrip("/"))
        return sorted(n for n in names if n or with_empty)

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)

        def get() -> bytes:
            # The body is read inside the retried call: a connection dropped mid-body
            # is as transient as one refused up front.
            return self._client.get_object(Bucket=self.settings.bucket, Key=full)["Body"].read()

        return self._call("GetObject", self._uri_full(full), get)

    def get_object(self, key: str) -> StoredObject | None:
        """The object with its ETag and the store's times; None when absent."""
        full = self._full(key)

        def get() -> StoredObject | None:
            try:
                resp = self._client.get_object(Bucket=self.settings.bucket, Key=full)
            except bce.ClientError as exc:
                if _is_not_found(exc) and _client_error_code(exc) != "NoSuchBucket":
                    return None
                raise
            data = resp["Body"].read()
            date = (resp.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date")
            modified = resp["LastModified"].astimezone(timezone.utc)
            read_at = parsedate_to_datetime(date).astimezone(timezone.utc) if date else modified
            return StoredObject(data, str(resp.get("ETag", "")), modified, max(read_at, modified))

        return self._call("GetObject", self._uri_full(full), get)

    def put_if_unchanged(self, key: str, data: bytes, *, etag: str | None) -> bool:
        """Write `key` only if it is still the object read with `etag` (None: only if it does
        not exist yet). False when another writer got there first.

        S3's conditional writes (If-Match / If-None-Match). A store that ignores the headers
        writes unconditionally: `supports_conditional_writes` says which kind this is, and
        `storage.lease` copes with both.
        """
        full = self._full(key)
        kwargs: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": full, "Body": data,
                                  "ContentType": "application/json"}
        if etag is None:
            kwargs["IfNoneMatch"] = "*"
        else:
            kwargs["IfMatch"] = etag

        def put() -> bool:
            try:
                self._client.put_object(**kwargs)
                return True
            except bce.ClientError as exc:
                if _client_error_code(exc) in _CONDITION_FAILED or _http_status(exc) in (409, 412):
                    return False
                raise

        return self._call("PutObject", self._uri_full(full), put)

    def server_time(self) -> datetime:
        """The store's clock (a HEAD of the bucket's Date header): what objects' Last-Modified
        times are measured against, whatever the worker's clock says."""
        def head() -> datetime:
            resp = self._client.head_bucket(Bucket=self.settings.bucket)
            date = (resp.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date")
            return parsedate_to_datetime(date).astimezone(timezone.utc) if date else datetime.now(timezone.utc)

        return self._call("HeadBucket", self.uri(), head)

    def supports_conditional_writes(self) -> bool:
        """Does the store honour If-None-Match on PUT? Asked once per Storage, with a probe
        object under locks/ (AWS, MinIO and moto do; rclone's `serve s3` ignores it)."""
        if self._conditional_writes is None:
            probe = f"locks/.conditional-write-probe-{uuid.uuid4().hex}"
            try:
                self.put_bytes(probe, b"{}")
                try:
                    self._conditional_writes = not self.put_if_unchanged(probe, b"{}", etag=None)
                except StorageError as exc:   # e.g. 501 NotImplemented: the header is not understood
                    log.info("%s does not take conditional writes (%s)", self.uri(), exc)
                    self._conditional_writes = False
            finally:
                self.delete(probe)
            log.info("%s: conditional writes %s", self.uri(),
                     "honoured" if self._conditional_writes else "ignored (leases settle and re-check)")
        return self._conditional_writes

    def get_text(self, key: str) -> str:
        return self.get_bytes(key).decode("utf-8")

    def get_json(self, key: str, default: Any = MISSING) -> Any:
        """Parsed JSON at `key`; `default` if the key is absent (else ObjectNotFoundError)."""
        try:
            data = self.get_bytes(key)
        except ObjectNotFoundError as exc:
            # A missing *bucket* is misconfiguration, not "no document yet".
            if default is MISSING or exc.code == "NoSuchBucket":
                raise
            return default
        try:
            return json.loads(data)
        except ValueError as exc:
            if data.lstrip()[:1] == b"<":   # a web page where an S3 object was asked for
                raise StorageError(f"{self.uri(key)} is not JSON but a web page ({data.lstrip()[:40]!r}...) from the "
                                   f"endpoint {self.settings.endpoint_url or 'AWS'}: {NOT_S3}") from exc
            raise StorageError(f"invalid JSON in {self.uri(key)}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        full = self._full(key)
        kwargs: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": full, "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        self._call("PutObject", self._uri_full(full), lambda: self._client.put_object(**kwargs))

    def put_text(self, key: str, text: str) -> None:
        self.put_bytes(key, text.encode("utf-8"), content_type="text/plain; charset=utf-8")

    def put_json(self, key: str, obj: Any) -> None:
        # One PutObject, never multipart: S3 single-object writes are atomic (readers see
        # the old or the new document, never a mix), which ledger/pointer writes rely on.
        data = json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")
        self.put_bytes(key, data, content_type="application/json")

    # -- files

    def upload_file(self, local: Path, key: str) -> None:
        """Upload a file; multipart above `multipart_threshold_mb`."""
        full = self._full(key)
        local = Path(local)
        if not local.is_file():
            raise StorageError(f"cannot upload {local} to {self._uri_full(full)}: not a file")
        if local.stat().st_size < self.settings.multipart_threshold_mb * MiB:
            # One PutObject: boto3's managed transfer starts a thread pool per call,
            # which made many small files (dataset images) 3x slower than plain puts.
            self._call(
                "PutObject",
                self._uri_full(full),
                lambda: self._client.put_object(Bucket=self.settings.bucket, Key=full, Body=local.read_bytes()),
            )
            return
        self._call(
            "Upload",
            self._uri_full(full),
            lambda: self._client.upload_file(
                str(local), self.settings.bucket, full, Config=self._transfer_config
            ),
        )

    def download_file(self, key: str, local: Path) -> None:
        """Download to `local`, atomically: a crash or failure leaves either the old
        file or nothing at `local`, never a partial one."""
        self._download(self._full(key), Path(local))

    def _download(self, full: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        # Same folder as the target so the final rename cannot cross filesystems.
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:12]}.part")
        try:
            self._call("Download", self._uri_full(full), lambda: self._fetch_to(full, tmp))
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    def _fetch_to(self, full: str, tmp: Path) -> None:
        # A plain streamed GET for small objects (see upload_file); ranged parallel
        # GETs through the managed transfer only pay off for big ones.
        response = self._client.get_object(Bucket=self.settings.bucket, Key=full)
        if response["ContentLength"] >= self.settings.multipart_threshold_mb * MiB:
            response["Body"].close()
            self._client.download_file(self.settings.bucket, full, str(tmp), Config=self._transfer_config)
            return
        body = response["Body"]
        with open(tmp, "wb") as out:
            while chunk := body.read(MiB):
                out.write(chunk)

    def _run_many(self, op: str, jobs: Iterable[T], fn: Callable[[T], None]) -> int:
        """Run fn(job) for each job on `concurrency` threads; returns the count done.

        Submission is bounded, so a generator of a million pairs is not materialised.
        On the first failure nothing new is started and queued work is cancelled; the
        running ones are allowed to finish, then that first error is raised.
        """
        done = 0
        first_error: BaseException | None = None
        max_in_flight = self.settings.concurrency * 2
        in_flight: set[Future[None]] = set()

        def drain(pool_limit: int) -> None:
            nonlocal done, first_error, in_flight
            while len(in_flight) > pool_limit:
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for f in finished:
                    if f.cancelled():
                        continue
                    exc = f.exception()
                    if exc is None:
                        done += 1
                    elif first_error is None:
                        first_error = exc
                if first_error is not None:
                    for f in in_flight:
                        f.cancel()  # only queued ones cancel; running ones finish

        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix=f"s3-{op}") as pool:
            for job in jobs:
                in_flight.add(pool.submit(fn, job))
                drain(max_in_flight - 1)
                if first_error is not None:
                    break
            drain(0)
        if first_error is not None:
            if isinstance(first_error, StorageError):
                raise type(first_error)(
                    f"{op}: {first_error} ({done} succeeded before it)", code=first_error.code
                ) from first_error
            raise StorageError(f"{op}: {type(first_error).__name__}: {first_error}") from first_error
        return done

    def upload_many(self, pairs: Iterable[tuple[Path, str]]) -> int:
        return self._run_many("upload_many", pairs, lambda p: self.upload_file(p[0], p[1]))

    def download_many(self, pairs: Iterable[tuple[str, Path]]) -> int:
        return self._run_many("download_many", pairs, lambda p: self.download_file(p[0], p[1]))

    def upload_dir(self, local_dir: Path, prefix: str) -> int:
        """Every file under `local_dir` -> `prefix/relpath` (posix). Returns the count."""
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StorageError(f"cannot upload {local_dir}: not a folder")
        prefix = _clean_prefix(prefix)
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())

        def key_for(path: Path) -> str:
            rel = path.relative_to(local_dir).as_posix()
            return f"{prefix}/{rel}" if prefix else rel

        return self.upload_many((p, key_for(p)) for p in files)

    def download_prefix(self, prefix: str, local_dir: Path) -> int:
        """Every object in folder `prefix` -> `local_dir/relpath`. Returns the count."""
        local_dir = Path(local_dir)
        full_prefix = self._full_dir(prefix)
        base = local_dir.resolve()
        pairs: list[tuple[str, Path]] = []
        # Raw keys, not re-validated rel keys: on AWS other writers may have stored keys
        # our validation would reject; they are fine to read as long as they map inside.
        for obj in self._list_raw(full_prefix):
            sub = obj["Key"][len(full_prefix) :]
            target = (local_dir / sub).resolve()
            if not sub or sub.endswith("/") or base not in target.parents:
                raise StorageError(
                    f"refusing to download {self._uri_full(obj['Key'])}: key does not map to a file inside {local_dir}"
                )
            pairs.append((obj["Key"], local_dir / sub))
        return self._run_many("download_prefix", pairs, lambda p: self._download(p[0], p[1]))

    # -- server-side

    def copy(self, src_key: str, dst_key: str) -> None:
        """Server-side copy within the bucket.

        A single CopyObject, not boto3's managed (multipart) copy: rclone's serve s3
        does not support multipart copies (UploadPartCopy, rclone#7454), and one
        CopyObject works everywhere up to S3's 5 GiB single-copy limit, far above
        any model or dataset shard this pipeline writes.
        """
        src, dst = self._full(src_key), self._full(dst_key)
        self._call(
            "CopyObject",
            f"{self._uri_full(src)} -> {self._uri_full(dst)}",
            lambda: self._client.copy_object(
                Bucket=self.settings.bucket, Key=dst, CopySource={"Bucket": self.settings.bucket, "Key": src}
            ),
        )

    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing key is not an error (as in S3)."""
        full = self._full(key)
        self._call(
            "DeleteObject",
            self._uri_full(full),
            lambda: self._client.delete_object(Bucket=self.settings.bucket, Key=full),
        )

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object in folder `prefix` ("" = everything under the root
        prefix). Folder semantics on purpose: "runs/1" must not delete "runs/10/"."""
        full_prefix = self._full_dir(prefix)
        # List fully before deleting: deleting while paginating can make a server
        # whose continuation token is a position in a directory walk skip keys.
        keys = [obj["Key"] for obj in self._list_raw(full_prefix)]
        deleted = 0
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[i : i + 1000]
            resp = self._call(
                "DeleteObjects",
                self._uri_full(full_prefix),
                lambda batch=batch: self._client.delete_objects(
                    Bucket=self.settings.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                ),
            )
            errors = resp.get("Errors") or []
            if errors:
                e = errors[0]
                raise StorageError(
                    f"S3 DeleteObjects failed for {len(errors)} of {len(batch)} keys, first "
                    f"{self._uri_full(e.get('Key', '?'))}: {e.get('Code')} {e.get('Message', '')}".rstrip(),
                    code=e.get("Code"),
                )
            deleted += len(batch)
        return deleted


def storage_from_config(config: Any, *, bucket: str | None = None, prefix: str | None = None,
                        credentials: dict[str, Any] | None = None) -> Storage:
    """The Storage a pipeline config names; endpoint and keys fall back to the environment.

    The config's endpoint wins over OCR_RETRAIN_S3_ENDPOINT only when set, so one config
    file serves every environment and credentials never live in it. `credentials` (from
    the Airflow runner's storage connection: access_key_id, secret_access_key, session_token, endpoint_url,
    region) win over both.
    """
    section = config.storage
    overrides: dict[str, Any] = {"addressing_style": section.addressing_style, "concurrency": section.concurrency}
    if section.endpoint_url:
        overrides["endpoint_url"] = section.endpoint_url
    if section.region and not (_env("OCR_RETRAIN_S3_REGION") or _env("AWS_REGION") or _env("AWS_DEFAULT_REGION")):
        overrides["region"] = section.region
    if credentials:
        overrides.update({key: credentials.get(key) or None
                          for key in ("access_key_id", "secret_access_key", "session_token")})
        overrides.update({key: credentials[key] for key in ("endpoint_url", "region") if credentials.get(key)})
    try:
        settings = StorageSettings.from_env(bucket or section.bucket, section.prefix if prefix is None else prefix, **overrides)
    except ValueError as exc:
        raise StorageError(f"storage settings in {config.source}: {exc}") from None
    return Storage(settings)
