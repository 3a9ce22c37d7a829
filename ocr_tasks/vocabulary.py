"""The words every stage shares, spelled once: model kinds, splits, run statuses, events, timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Final, Literal

ModelKind = Literal["det", "rec"]
DET: Final = "det"
REC: Final = "rec"
MODEL_KINDS: Final = (DET, REC)            # PaddleOCR's text detection and recognition

SPLITS: Final = ("train", "val", "test")   # 6:2:2 by default (config `split`)
TEST_SPLIT: Final = "test"                 # the held-out split the gate judges on

# How a run ended (run.json `status`, the CLI's `run <id>: <status>`)
NOTHING_NEW: Final = "nothing-new"
GATE_FAILED: Final = "gate-failed"
DRY_RUN: Final = "dry-run"
PUBLISHED: Final = "published"
# stored as a version, not made production: another run moved production after this run's gate
SUPERSEDED: Final = "superseded"
REJECTED: Final = "rejected"      # passed the gate; the person asked (approval.required) said no, or never answered

# What can notify (config `notifications.events`)
TASK_FAILED_EVENT: Final = "task_failed"
EXPORT_QUARANTINED_EVENT: Final = "export_quarantined"
GATE_FAILED_EVENT: Final = "gate_failed"
PUBLISHED_EVENT: Final = "published"
SUPERSEDED_EVENT: Final = "superseded"   # a gate-passing model left out of production: someone must decide
REJECTED_EVENT: Final = "rejected"       # a gate-passing model the person asked rejected (or never answered)
EVENTS: Final = (TASK_FAILED_EVENT, EXPORT_QUARANTINED_EVENT, GATE_FAILED_EVENT, PUBLISHED_EVENT, SUPERSEDED_EVENT,
                 REJECTED_EVENT)
DEFAULT_EVENTS: Final = (TASK_FAILED_EVENT, EXPORT_QUARANTINED_EVENT, GATE_FAILED_EVENT, SUPERSEDED_EVENT,
                         REJECTED_EVENT)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(now: datetime | None = None) -> str:
    """When something happened, in records people read: 2026-11-22T02:00:00Z."""
    return (now or utc_now()).isoformat(timespec="seconds").replace("+00:00", "Z")


def compact_timestamp(now: datetime | None = None) -> str:
    """A timestamp usable as a name (run ids, model versions): 20261122T020000Z."""
    return (now or utc_now()).strftime("%Y%m%dT%H%M%SZ")
