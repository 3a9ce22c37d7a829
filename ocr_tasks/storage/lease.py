"""Leases: one writer at a time for the few objects that several runs read, change and write back.

    locks/<name>.json     {"holder", "token", "acquired_at"}

Two objects need one: the ingest ledger (a merge's commit, quarantine entries) and a model's
production pointer with its version names. Everything else in storage is written once under a
name nobody else writes (content-addressed packs and datasets, per-run folders, a reserved model
version), so it needs none. A lease is held for seconds: the work (merging, training, uploading)
happens outside it, and only the check-and-write at the end runs inside.

Taking a lease is a create-if-absent PUT (`If-None-Match: *`), or a replace-if-unchanged
(`If-Match`) of a lease that expired. Stores that honour conditional writes (AWS S3, MinIO) make
that atomic. A store that ignores the headers (the embedded rclone server, measured) gets the
same PUT, then a pause of `settle_s` and a read back: of two writers that both found the lease
free, the later PUT is what both read, so only its writer goes on. That relies on a writer's
read and its PUT being less than `settle_s` apart, which holds on one machine and a LAN but is
timing, not a guarantee; docs/storage.md, "Concurrency: what may run at once, and
what protects it", says so.

A lease whose object is older than `ttl_s` by the store's own clock (its Last-Modified against the
response's Date, so worker clocks do not matter) belongs to a holder that died: it is taken over.
A holder checks `Lease.check()` before each write it protects, and stops if its TTL ran out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from ocr_tasks.errors import StorageError
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.vocabulary import timestamp
from ocr_tasks.worker_identity import worker_hostname

__all__ = ["Lease", "LeaseLost", "LeaseTimeout", "lease"]

log = logging.getLogger(__name__)

TTL_S = 120.0        # far above any protected section (a few requests), far below a night
WAIT_S = 600.0       # how long to queue behind other holders before giving up
SETTLE_S = 1.0       # stores without conditional writes: wait this long, then read back
_CHECK_MARGIN_S = 15.0


class LeaseTimeout(StorageError):
    """Another holder kept the lease for longer than we were willing to wait."""


class LeaseLost(StorageError):
    """Our lease ran out (or was taken over) before the protected write: nothing was written."""


@dataclass
class Lease:
    storage: Storage
    name: str
    key: str
    token: str
    holder: str
    ttl_s: float
    taken_at: float   # time.monotonic() before the PUT that took it: errs on the short side

    def check(self) -> None:
        """Raise LeaseLost unless the lease has comfortably more than its margin left."""
        held_for = time.monotonic() - self.taken_at
        if held_for > self.ttl_s - _CHECK_MARGIN_S:
            raise LeaseLost(f"lease {self.name} ({self.storage.uri(self.key)}) held {held_for:.0f}s, its TTL is "
                            f"{self.ttl_s:.0f}s: another writer may have taken it; nothing was written")


@contextlib.contextmanager
def lease(storage: Storage, name: str, *, holder: str = "", ttl_s: float = TTL_S, wait_s: float = WAIT_S,
          settle_s: float = SETTLE_S) -> Iterator[Lease]:
    """Hold `locks/<name>.json` for the block: waits for other holders, takes over expired ones."""
    held = _acquire(storage, name, holder or default_holder(), ttl_s, wait_s, settle_s)
    try:
        yield held
    finally:
        _release(held)


def default_holder() -> str:
    return f"{worker_hostname()} pid {os.getpid()}"


def _acquire(storage: Storage, name: str, holder: str, ttl_s: float, wait_s: float, settle_s: float) -> Lease:
    key = layout.lock_key(name)
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        current = storage.get_object(key)
        if current is not None and current.age_s < ttl_s:
            other = _holder_of(current.data)
            if time.monotonic() > deadline:
                raise LeaseTimeout(f"lease {name} ({storage.uri(key)}) has been held by {other} for longer than "
                                   f"{wait_s:.0f}s; if that writer is gone, the lease expires {ttl_s:.0f}s after it "
                                   "was taken")
            if not announced:
                log.info("waiting for lease %s, held by %s for %.0fs", name, other, current.age_s)
                announced = True
            time.sleep(0.2 + random.random() * 0.6)
            continue
        if current is not None:
            log.warning("lease %s held by %s expired %.0fs ago (its holder died?): taking it over", name,
                        _holder_of(current.data), current.age_s - ttl_s)
        token = uuid.uuid4().hex
        body = json.dumps({"holder": holder, "token": token, "acquired_at": timestamp()}).encode()
        taken_at = time.monotonic()
        if not storage.put_if_unchanged(key, body, etag=None if current is None else current.etag):
            time.sleep(random.random() * 0.2)   # someone else took it: back to waiting
            continue
        if not storage.supports_conditional_writes():
            time.sleep(settle_s)
        check = storage.get_object(key)
        if check is not None and _token_of(check.data) == token:
            return Lease(storage, name, key, token, holder, ttl_s, taken_at)
        log.info("lease %s: another writer's claim landed after ours; waiting", name)


def _release(held: Lease) -> None:
    try:
        current = held.storage.get_object(held.key)
        if current is not None and _token_of(current.data) == held.token:
            held.storage.delete(held.key)
        else:
            log.warning("lease %s was no longer ours at release (taken over after its TTL)", held.name)
    except StorageError as exc:   # it expires by itself; the protected work is done
        log.warning("could not release lease %s (%s): it expires within %.0fs", held.name, exc, held.ttl_s)


def _parsed(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}    # a lease being written as we read it, or damaged: it ages out like any other
    return value if isinstance(value, dict) else {}


def _holder_of(data: bytes) -> str:
    return str(_parsed(data).get("holder") or "an unknown holder")


def _token_of(data: bytes) -> str | None:
    return _parsed(data).get("token")
