"""The words every stage shares, spelled once: model kinds, splits, run statuses, events, timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Final, Literal

ModelKind = Literal["det", "rec"]   # a model kind where a type is wanted; DET and REC where a value is
DET: Final = "det"
REC: Final = "rec"
MODEL_KINDS: Final = (DET, REC)            # PaddleOCR's text detection and recognition

SPLITS: Final = ("train", "val", "test")   # 6:2:2 by default (config `split`)
TEST_SPLIT: Final = "test"                 # the held-out split the gate judges on

class RunStatus(StrEnum):
    """How a run ended (run.json `status`, the CLI's `run <id>: <status>`)."""

    NOTHING_NEW = "nothing-new"
    GATE_FAILED = "gate-failed"
    DRY_RUN = "dry-run"
    PUBLISHED = "published"
    # stored as a version, not made production: another run moved production after this run's gate
    SUPERSEDED = "superseded"
    REJECTED = "rejected"      # passed the gate; the person asked (approval.required) said no, or never answered
    AWAITING_APPROVAL = "awaiting-approval"   # the report a person reads before deciding


NOTHING_NEW: Final = RunStatus.NOTHING_NEW
GATE_FAILED: Final = RunStatus.GATE_FAILED
DRY_RUN: Final = RunStatus.DRY_RUN
PUBLISHED: Final = RunStatus.PUBLISHED
SUPERSEDED: Final = RunStatus.SUPERSEDED
REJECTED: Final = RunStatus.REJECTED


class Decision(StrEnum):
    """A person's answer to an approval request (run.json and the manifest `approval.decision`)."""

    APPROVED = "approved"
    REJECTED = "rejected"


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
