"""The ingest steps: discover new exports, decide whether to run, check each export (GX), merge the ones
that passed into a dataset version, stop when there is nothing to train."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocr_tasks.errors import UsageError
from ocr_tasks.codec import plain
from ocr_tasks.storage import layout
from ocr_tasks.untrusted import for_log

if TYPE_CHECKING:
    from ocr_tasks.flow.run import Discovery, MergedDataset, RunContext
    from ocr_tasks.ingest.check import ExportCheck
    from ocr_tasks.ingest.exports import ExportRef
    from ocr_tasks.storage.s3 import Storage

log = logging.getLogger(__name__)


def discover(ctx: RunContext) -> Discovery:
    """The exports under incoming/ that are new, the ones still uploading, and the datasets' state."""
    from ocr_tasks.flow.notify import export_quarantined, notify
    from ocr_tasks.flow.run import Discovery
    from ocr_tasks.ingest.check import abandon_export, quarantined_entries
    from ocr_tasks.ingest.exports import discover_exports
    from ocr_tasks.ingest.ledger import load_ledger, record_exports

    ledger = load_ledger(ctx.storage)
    found = discover_exports(ctx.storage, ledger, ctx.config.incoming)
    abandoned = {ref.name for ref in found.abandoned}
    for name, why in found.waiting.items():
        if name not in abandoned:
            log.info("export %s is not complete, left for the next run: %s", for_log(name), for_log(why))
    if found.abandoned:   # quarantined (report, ledger entry, notification) so nobody waits for them forever
        checks = [abandon_export(ctx.storage, ref, found.waiting[ref.name], ctx.config) for ref in found.abandoned]
        record_exports(ctx.storage, quarantined_entries(checks))
    for name, why in found.refused.items():
        log.warning("incoming/%s/ REFUSED (the other exports go on): %s", for_log(name), for_log(why))
        notify(export_quarantined(name, f"refused\n{why}", None, ctx.run_id), ctx.config.notifications)
    latest = ledger.get("dataset_version")
    return Discovery(found.new, dict(found.waiting), list(found.already_ingested), dict(found.refused),
                     list(found.abandoned), latest_dataset=latest, untrained_dataset=dataset_to_train(ctx.storage, latest, force=False))


def should_run(ctx: RunContext, discovery: Discovery) -> bool:
    """Go on when forced (or a dry run), when there are new exports, or when the latest dataset was never trained on."""
    go = bool(ctx.request.trains_anyway or discovery.new or discovery.untrained_dataset)
    if not go:
        log.info("no new exports, the latest dataset is trained on, not forced: nothing to do tonight")
    return go


def check_export(ctx: RunContext, ref: ExportRef) -> ExportCheck:
    """Validate one export (GX suites); a failing one is quarantined with its report, not an error."""
    from ocr_tasks.ingest.check import check_export as check

    result = check(ctx.storage, ref, ctx.config)
    if not result.passed:
        log.warning("export %s QUARANTINED (the run goes on without it): report %s", for_log(ref.name),
                    for_log(result.report_uri))
    return result


def merge(ctx: RunContext, checks: Sequence[ExportCheck] | None) -> MergedDataset:
    """Merge the exports that passed into a new dataset version; say which version to train on."""
    from ocr_tasks.flow.run import MergedDataset
    from ocr_tasks.ingest.check import quarantined_entries
    from ocr_tasks.ingest.ledger import load_ledger, record_exports
    from ocr_tasks.ingest.merge import merge_exports

    checks = [check for check in checks or [] if check is not None]

    passed = [c.export for c in checks if c.passed]
    quarantined = {c.export.name: c.report_uri for c in checks if not c.passed}
    if quarantined:   # the run's one ledger writer: checks ran side by side
        record_exports(ctx.storage, quarantined_entries(list(checks)))
    partial = [c for c in checks if c.passed and c.left_out]    # merged without some of their images
    merged = plain(merge_exports(ctx.storage, passed, ctx.config, {c.export.name: c.left_out for c in partial})) \
        if passed else None
    latest = load_ledger(ctx.storage).get("dataset_version")
    version = dataset_to_train(ctx.storage, latest, force=ctx.request.trains_anyway)
    log.info("dataset to train on: %s; quarantined: %s", version, for_log(sorted(quarantined)) if quarantined else "none")
    return MergedDataset(version, merged, quarantined,
                         {c.export.name: {"images": len(c.left_out), "report": c.report_uri} for c in partial})


def has_dataset(ctx: RunContext, merged: MergedDataset) -> bool:
    if merged.dataset_version is None:
        log.info("nothing new passed validation and the latest dataset is trained on: stopping")
        return False
    return True


def dataset_to_train(storage: Storage, latest: str | None, *, force: bool) -> str | None:
    """The one rule for "train tonight?": the latest dataset version, unless the last finished
    run already trained on it (and the run is not forced).

    Compared with what was trained on, not with whether this run merged something: a run
    that crashed after ingest retrains next night, a label-neutral re-upload trains nothing.
    """
    if latest is None:
        if force:
            raise UsageError("forced run, but no dataset version exists yet: upload an export to incoming/ first")
        return None
    trained_on = storage.get_json(layout.LAST_TRAINED, default={}).get("dataset_version")
    return latest if force or latest != trained_on else None
