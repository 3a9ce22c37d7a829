"""Finding new PPOCRLabel exports in `incoming/` and bringing them to local disk.

"New" means the export's fingerprint (every object's key, size and ETag) is not in
the ingest ledger. New exports come in upload order (their newest object's time), so
when two relabel the same image, the later upload wins. An export whose name
or keys the pipeline cannot store safely (`.`/`..`, control characters, a name too long
for a filesystem, a key with `..` segments) is refused by rule and the others go on.

Uploads take time and arrive in any order (config `incoming`). An export is complete, and new,
when Label.txt, fileState.txt and every file they name are there and none of its objects
changed for `quiet_period_s` (by the store's clock). Until then it waits for the next run.
One still incomplete `give_up_after_h` after its last upload is abandoned: "file never
arrived", quarantined and notified by the discover step. Re-uploading the missing file makes
it new again (its fingerprint changes).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ocr_tasks.config import IncomingConfig
from ocr_tasks.storage import layout
from ocr_tasks.ingest.ppocrlabel import (FILE_STATE, LABEL_FILE, REC_GT, parse_file_state, parse_label_file,
                                         parse_rec_gt, shorten, unicode_form_mismatch)

if TYPE_CHECKING:   # the pipeline declaration names these artifacts without importing boto3
    from ocr_tasks.storage.s3 import ObjectInfo, Storage

LABEL_FILES = (LABEL_FILE, FILE_STATE, REC_GT)
# the work dir holds exports/<name>/<fingerprint>/<name>/: filesystems stop at 255 bytes a name
MAX_EXPORT_NAME_BYTES = 200


def unsafe_export_name(name: str) -> str | None:
    """Why an incoming/ folder name cannot be an export, or None."""
    if not name:
        return "a key with an empty folder name (incoming//...: a doubled '/' in the upload path): upload it again " \
               "as incoming/<export>/..."
    if name in (".", ".."):
        return f"the folder name {name!r} is a path alias, not a name"
    if any(ord(c) < 32 or c in "\\\x7f" for c in name):
        return f"the folder name {shorten(name)!r} holds control characters or a backslash"
    if len(name.encode("utf-8")) > MAX_EXPORT_NAME_BYTES:
        return (f"the folder name is {len(name.encode('utf-8'))} bytes, more than {MAX_EXPORT_NAME_BYTES}: "
                "rename it shorter")
    return None


@dataclass(frozen=True)
class ExportRef:
    name: str
    prefix: str          # "incoming/<name>/"
    fingerprint: str
    objects: int
    uploaded_at: str | None = None   # its newest object's time: exports merge in upload order, the later wins


@dataclass
class Discovery:
    new: list[ExportRef] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)   # export -> why it is not ready
    already_ingested: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)   # incoming/ folder -> why it can never be an export
    abandoned: list[ExportRef] = field(default_factory=list)   # incomplete for too long (why: in `waiting`)


def fingerprint(objects: list[ObjectInfo]) -> str:
    digest = hashlib.sha256()
    for item in sorted(objects, key=lambda o: o.key):
        digest.update(f"{item.key}\t{item.size}\t{item.etag}\n".encode())
    return digest.hexdigest()


def discover_exports(storage: Storage, ledger: dict, rules: IncomingConfig) -> Discovery:
    found = Discovery()
    known = ledger.get("exports", {})
    now = storage.server_time() + timedelta(seconds=1)   # its Date header is truncated to the second
    for name in sorted(storage.list_dirs(layout.INCOMING, with_empty=True)):
        refused = unsafe_export_name(name)
        if refused:
            found.refused[shorten(name)] = refused
            continue
        prefix = f"{layout.INCOMING}{name}/"
        try:
            objects = list(storage.list(prefix))
        except ValueError as exc:   # the storage layer's key rules: '..', '.' or empty segments
            found.refused[name] = f"it holds an object key the pipeline refuses: {shorten(str(exc))}"
            continue
        unsafe = next((o.key for o in objects if layout.unsafe_key_reason(o.key)), None)
        if unsafe is not None:   # e.g. incoming/x/../y/Label.txt: never fetched, never "waiting" for ever
            found.refused[name] = (f"it holds the object key {shorten(unsafe)!r}: {layout.unsafe_key_reason(unsafe)}; "
                                   "delete it and upload the export again without it")
            continue
        fp = fingerprint(objects)
        if known.get(name, {}).get("fingerprint") == fp:
            found.already_ingested.append(name)
            continue
        uploaded = max((o.last_modified for o in objects if o.last_modified), default=None)
        quiet_for = (now - datetime.fromisoformat(uploaded)).total_seconds() if uploaded else float("inf")
        ref = ExportRef(name, prefix, fp, len(objects), uploaded)
        missing = _missing_files(storage, prefix, {o.key[len(prefix):] for o in objects}, rules)
        if missing and quiet_for > rules.give_up_after_h * 3600:
            found.abandoned.append(ref)
            found.waiting[name] = (f"file never arrived: {missing}, {quiet_for / 3600:.1f} h after the export's last "
                                   f"upload (incoming.give_up_after_h: {rules.give_up_after_h:g}); upload the missing "
                                   "file(s) and the export is taken again")
        elif missing:
            found.waiting[name] = missing
        elif rules.quiet_period_s and quiet_for < rules.quiet_period_s:
            found.waiting[name] = (f"still being uploaded: an object changed {max(quiet_for, 0):.0f}s ago, it is taken "
                                   f"once nothing changed for {rules.quiet_period_s:g}s (incoming.quiet_period_s)")
        else:
            found.new.append(ref)
    # a correction uploaded later must win over the export it corrects, whatever the two are called
    found.new.sort(key=lambda ref: (ref.uploaded_at or "", ref.name))
    return found


def _missing_files(storage: Storage, prefix: str, present: set[str], rules: IncomingConfig) -> str | None:
    if LABEL_FILE not in present:
        return f"no {LABEL_FILE} yet"
    if rules.require_file_state and FILE_STATE not in present:
        return (f"no {FILE_STATE} yet (PPOCRLabel writes it beside {LABEL_FILE}: without it every labelled image would count as "
                "confirmed; incoming.require_file_state: false takes exports made by other tools)")
    wanted = _referenced_files(
        storage.get_bytes(prefix + LABEL_FILE),
        storage.get_bytes(prefix + FILE_STATE) if FILE_STATE in present else None,
        storage.get_bytes(prefix + REC_GT) if REC_GT in present else None)
    absent = sorted(wanted - present)
    if absent:
        return (f"{len(absent)} file(s) named in the labels not uploaded yet, e.g. {shorten(absent[0])}"
                + (unicode_form_mismatch(absent[0], present) or ""))
    return None


def _referenced_files(label: bytes, file_state: bytes | None, rec_gt: bytes | None) -> set[str]:
    """Files inside the export the confirmed labels point at (broken lines are validation's business)."""
    confirmed = parse_file_state(file_state) if file_state is not None else None
    wanted = {line.relpath for line in parse_label_file(label)
              if not line.problem and (confirmed is None or line.file_name in confirmed)}
    if rec_gt is not None:
        wanted |= {line.relpath for line in parse_rec_gt(rec_gt) if not line.problem}
    return wanted


def fetch_export(storage: Storage, ref: ExportRef, exports_dir: Path) -> Path:
    """Download the label files and every file they reference to exports_dir/<name>/<fp>/<name>.

    `exports_dir` is the worker's `config.work.exports` (or a scratch folder). Unconfirmed
    images and Cache.cach stay in storage. A finished download is marked and reused, so
    validate and merge tasks on one worker fetch once.
    """
    root = exports_dir / ref.name / ref.fingerprint[:12]
    folder = root / ref.name
    done = root / ".fetched"
    if done.exists():
        return folder
    shutil.rmtree(root, ignore_errors=True)
    folder.mkdir(parents=True)
    present = {o.key[len(ref.prefix):] for o in storage.list(ref.prefix)}
    labels = [name for name in LABEL_FILES if name in present]
    storage.download_many((ref.prefix + name, folder / name) for name in labels)
    read = lambda name: (folder / name).read_bytes() if (folder / name).exists() else None  # noqa: E731
    wanted = _referenced_files(read(LABEL_FILE), read(FILE_STATE), read(REC_GT)) & present
    storage.download_many((ref.prefix + rel, folder / PurePosixPath(rel)) for rel in sorted(wanted))
    done.write_text(ref.fingerprint)
    return folder
