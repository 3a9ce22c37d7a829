"""Versioned, atomic model publishing in storage, and the consumer's side of it.
(Publish and pull share the manifest and its checks: one module.)

    models/<name>/<version>/        det/, rec/, checkpoints/, report/, manifest.json
    models/<name>/production.json   {"version", "updated_at", "previous"}

A version is immutable once its manifest.json exists. Publishing uploads every file,
then the manifest (sha256 and size of each file), then moves the production pointer in
one PUT: a crash at any point leaves production on the previous, complete version, and
a consumer that follows the pointer never sees a half-published model. The files a
manifest lists are verified on every pull, so a modified or truncated object is caught
before a model is loaded.

Concurrent publishers (two runs, a run beside a hand publish) never share a version and never
lose a pointer move: the model's lease (storage/lease.py, `locks/model-<name>.json`) guards

  - version names: `reserve_model_version` picks the next free name and claims it with
    `<version>/reserved.json` (the run id) before any file is uploaded; `publish_model` claims
    the version the same way, so it refuses one that another run is uploading;
  - the pointer: read, check, write. A publish gated against production P promotes only while
    production is still P (`if_production_is`); if another run moved it meanwhile, the version
    is kept, complete, and `ProductionMoved` says so: that run's gate never saw the new production.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ocr_tasks.storage import layout
from ocr_tasks.errors import UsageError
from ocr_tasks.release.onnx_export import RAPIDOCR_SETTINGS
from ocr_tasks.storage.lease import lease
from ocr_tasks.storage.s3 import ObjectNotFoundError, Storage, StorageError
from ocr_tasks.vocabulary import MODEL_KINDS, compact_timestamp, timestamp, utc_now

__all__ = [
    "BUNDLE_DIRS",
    "INFERENCE_FILES",
    "ModelIntegrityError",
    "ProductionMoved",
    "PublishError",
    "check_name",
    "list_versions",
    "next_model_version",
    "production_version",
    "publish_model",
    "reserve_model_version",
    "pull_model",
    "rollback",
]

log = logging.getLogger(__name__)

MODEL_DIRS = MODEL_KINDS
BUNDLE_DIRS = (*MODEL_KINDS, "checkpoints", "report")
# files beside the folders that consumers pull with the models: RapidOCR's settings for the ONNX files (onnx_export.py)
CONSUMER_FILES = (RAPIDOCR_SETTINGS,)
# PaddleOCR 3.x inference layout; without these a consumer has nothing to load.
INFERENCE_FILES = ("inference.json", "inference.pdiparams", "inference.yml")
MANIFEST = "manifest.json"

# One path segment, safe as an S3 key part and a local folder name on every OS.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class PublishError(UsageError):
    """What was asked cannot be done: an existing version, an unknown one, a bad bundle.
    A UsageError so the CLI reports it in one line, without a traceback."""


class ProductionMoved(Exception):
    """Production is no longer the version this publish was gated against; nothing was promoted.

    Not an error: the version is stored, complete, and a person decides whether to promote it
    (`ocr-retrain rollback <version>`). The run that gets it ends superseded (flow/steps/release.py: publish)."""


# `if_production_is` default: promote whatever production is now (a hand publish, a rollback)
ANY_PRODUCTION: Any = object()


class ModelIntegrityError(StorageError):
    """A stored model file does not match its manifest (modified, truncated, or missing)."""


# --------------------------------------------------------------------------- publish


def publish_model(
    storage: Storage, name: str, version: str, bundle: Path, manifest: dict[str, Any], *, promote: bool = True,
    if_production_is: str | None = ANY_PRODUCTION,
) -> dict[str, Any]:
    """Upload `bundle` as models/<name>/<version>/ and make it production.

    `bundle` holds det/ and/or rec/ (each with the PaddleOCR inference files),
    optionally checkpoints/ and report/. `manifest` is the caller's record (dataset
    version, metrics, gate decision...); "files", "name", "version" and "published_at"
    are added here. With `promote=False` the version is stored (e.g. a model that failed
    the gate, kept for inspection) and production is left alone.

    Returns the manifest as written.
    """
    check_name(name, "model name")
    check_name(version, "model version")
    files = _bundle_files(Path(bundle))
    _check_manifest(storage, manifest)
    gate = manifest.get("gate")
    if promote and isinstance(gate, dict) and gate.get("passed") is False:
        raise PublishError(f"model {name} {version} failed the gate; publish it with promote=False "
                           "to keep it without making it production")

    prefix = layout.model_version_prefix(name, version)
    manifest_key = layout.model_manifest_key(name, version)
    # the pipeline's publishes carry their run id; a caller without one owns the names it passes
    _claim(storage, name, version, owner=str(manifest.get("run_id") or ""))
    reservation = layout.model_reservation_key(name, version)
    leftovers = sum(1 for info in storage.list(prefix) if info.key != reservation)
    if leftovers:
        # A publish that died before its manifest: nobody can have used these files, and
        # stale ones not in the new bundle would otherwise sit unlisted in the version.
        log.warning("removing %d object(s) of an unfinished publish under %s", leftovers, storage.uri(prefix))
        for info in list(storage.list(prefix)):
            if info.key != reservation:
                storage.delete(info.key)

    records = {rel: _file_record(path) for rel, path in files.items()}
    log.info("publishing model %s %s: %d file(s), %d bytes", name, version, len(records),
             sum(r["size"] for r in records.values()))
    storage.upload_many((path, prefix + rel) for rel, path in files.items())
    _check_uploaded(storage, prefix, records)

    final = dict(manifest)
    final.update({
        "name": name,
        "version": version,
        "published_at": timestamp(),
        "files": dict(sorted(records.items())),
    })
    storage.put_json(manifest_key, final)
    if promote:
        _point_production(storage, name, version, expected=if_production_is)
    return final


def reserve_model_version(storage: Storage, name: str, run_id: str, now: datetime | None = None) -> str:
    """The version `run_id` publishes as: the next free name (`next_model_version`), claimed for
    this run before any upload so no other publisher can take it. The same run asking again (a
    retried publish task) gets the same version back."""
    check_name(name, "model name")
    record_key = layout.run_prefix(run_id) + "model_version.json"
    with lease(storage, layout.model_lease(name)) as held:
        mine = storage.get_json(record_key, default=None)
        if isinstance(mine, dict) and mine.get("name") == name and isinstance(mine.get("version"), str):
            return mine["version"]
        version = next_model_version(storage, name, now)
        held.check()
        storage.put_json(layout.model_reservation_key(name, version), {"run_id": run_id, "reserved_at": timestamp()})
        storage.put_json(record_key, {"name": name, "version": version})
    log.info("model %s: version %s reserved for run %s", name, version, run_id)
    return version


def _claim(storage: Storage, name: str, version: str, owner: str) -> None:
    """Make `owner` the only publisher of this version, or say who already is."""
    manifest_key = layout.model_manifest_key(name, version)
    reservation_key = layout.model_reservation_key(name, version)
    with lease(storage, layout.model_lease(name)) as held:
        if storage.exists(manifest_key):
            raise PublishError(f"model {name} version {version} is already published ({storage.uri(manifest_key)}); "
                               "versions are immutable, publish under a new version")
        reservation = storage.get_json(reservation_key, default=None)
        holder = reservation.get("run_id") if isinstance(reservation, dict) else None
        if holder is not None and holder != owner:
            holder = holder or "a publish without a run id"
            raise PublishError(f"model {name} version {version} is reserved by run {holder} "
                               f"({storage.uri(reservation_key)}); publish under a new version")
        if holder is None:
            held.check()
            storage.put_json(reservation_key, {"run_id": owner, "reserved_at": timestamp()})


def rollback(storage: Storage, name: str, version: str, *, force: bool = False,
             if_production_is: str | None = ANY_PRODUCTION) -> dict[str, Any]:
    """Point production back (or forward) to an existing published version.

    Refuses a version without a manifest (never completely published) and, unless
    `force`, one whose recorded gate decision failed. With `if_production_is`, only over that
    production (ProductionMoved otherwise). Returns the new production.json.
    """
    check_name(name, "model name")
    check_name(version, "model version")
    manifest = storage.get_json(layout.model_manifest_key(name, version), default=None)
    if manifest is None:
        known = [v["version"] for v in list_versions(storage, name)]
        raise PublishError(f"model {name} has no published version {version} "
                           f"(published: {', '.join(known) if known else 'none'})")
    gate = manifest.get("gate") if isinstance(manifest, dict) else None
    if not force and isinstance(gate, dict) and gate.get("passed") is False:
        raise PublishError(f"model {name} {version} failed its export gate "
                           f"({'; '.join(gate.get('reasons') or []) or 'no reasons recorded'}); use force to promote it anyway")
    _check_whole(storage, name, version, manifest)
    return _point_production(storage, name, version, expected=if_production_is)


def _check_whole(storage: Storage, name: str, version: str, manifest: Any) -> None:
    """Production only ever points at a version every consumer can pull: each file the manifest lists is
    stored with its size (one LIST; `pull_model` checks the sha256 of what it fetches)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise PublishError(f"model {name} {version}: its manifest lists no files; production not moved")
    prefix = layout.model_version_prefix(name, version)
    stored = {info.key[len(prefix):]: info.size for info in storage.list(prefix)}
    broken = [f"{rel} {'is missing' if rel not in stored else f'is {stored[rel]} bytes'} (expected "
              f"{record.get('size') if isinstance(record, dict) else '?'} bytes)"
              for rel, record in sorted(files.items())
              if not isinstance(record, dict) or stored.get(rel) != record.get("size")]
    if broken:
        shown = "; ".join(broken[:5]) + (f"; and {len(broken) - 5} more" if len(broken) > 5 else "")
        raise PublishError(f"model {name} {version} is not whole in {storage.uri(prefix)}: {shown}; "
                           "production not moved (publish it again, or roll back to another version)")


def production_version(storage: Storage, name: str) -> str | None:
    """The version production.json points to, or None before the first publish."""
    check_name(name, "model name")
    pointer = _read_pointer(storage, name)
    return None if pointer is None else pointer["version"]


def list_versions(storage: Storage, name: str) -> list[dict[str, Any]]:
    """Every completely published version of `name`, oldest first.

    Each: version, published_at, gate_passed (None when no gate was recorded), metrics
    (as recorded), models (det/rec present), production (is it the current one), run_id and
    stock (the stock folders of a registered baseline, else None).
    """
    check_name(name, "model name")
    current = production_version(storage, name)
    versions = []
    for version in storage.list_dirs(layout.models_prefix(name)):
        key = layout.model_manifest_key(name, version)
        try:
            manifest = json.loads(storage.get_bytes(key))
        except ObjectNotFoundError:
            continue  # an unfinished publish, not a version
        except ValueError as exc:
            # one damaged manifest must not hide every other version (nor stop a publish)
            log.warning("model %s %s: %s is not valid JSON (%s): left out of the listing", name, version,
                        storage.uri(key), exc)
            continue
        if not isinstance(manifest, dict):
            continue  # an unfinished publish, not a version
        gate = manifest.get("gate")
        files = manifest.get("files") or {}
        versions.append({
            "version": version,
            "published_at": manifest.get("published_at"),
            "gate_passed": gate.get("passed") if isinstance(gate, dict) else None,
            "metrics": manifest.get("metrics") or {},
            "models": [m for m in MODEL_DIRS if any(rel.startswith(f"{m}/") for rel in files)],
            "production": version == current,
            "run_id": manifest.get("run_id"),
            "stock": manifest.get("stock"),     # a stock baseline (release/baseline.py): where its folders were
        })
    return versions


def published_by_run(storage: Storage, name: str, run_id: str) -> str | None:
    """The version a run already published, if any: a retried publish task must not publish twice."""
    for entry in list_versions(storage, name):
        if entry["run_id"] == run_id:
            return entry["version"]
    return None


def next_model_version(storage: Storage, name: str, now: datetime | None = None) -> str:
    """A new version name for `name`: the UTC time ("20261121T023000Z"), with "-2", "-3"...
    appended when taken. A naive `now` is taken as UTC. Unfinished publishes count as
    taken, so a retry never reuses a half-written version's name by accident."""
    check_name(name, "model name")
    now = now or utc_now()
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    base = compact_timestamp(now)
    taken = set(storage.list_dirs(layout.models_prefix(name)))
    version, n = base, 1
    while version in taken:
        n += 1
        version = f"{base}-{n}"
    return version


# --------------------------------------------------------------------------- pull


def pull_model(
    storage: Storage, name: str, dest: Path, version: str | None = None, *, include_checkpoints: bool = False,
    include_report: bool = False,
) -> Path:
    """Download a published version (default: production) into dest/<version>/.

    det/, rec/ and manifest.json (plus checkpoints/ and report/ when asked), every file checked
    against the manifest's sha256 and size. Files land in a staging folder inside
    `dest` that becomes dest/<version> only once all of them verify, so a failed pull
    leaves no partial model behind; nothing outside `dest` is touched. An existing,
    intact dest/<version> is returned without downloading.
    """
    check_name(name, "model name")
    if version is None:
        version = production_version(storage, name)
        if version is None:
            raise PublishError(f"model {name} has no production version yet "
                               f"(no {storage.uri(layout.production_key(name))})")
    check_name(version, "model version")
    prefix = layout.model_version_prefix(name, version)
    manifest_key = layout.model_manifest_key(name, version)
    try:
        manifest_bytes = storage.get_bytes(manifest_key)
    except ObjectNotFoundError as exc:
        if exc.code == "NoSuchBucket":
            raise
        raise PublishError(f"model {name} has no published version {version} (no {storage.uri(manifest_key)})") from None
    wanted = _wanted_files(storage, manifest_key, manifest_bytes, include_checkpoints, include_report)

    dest = Path(dest)
    target = dest / version
    if target.exists() and not target.is_dir():
        raise PublishError(f"cannot pull model {name} {version} into {target}: it exists and is not a folder")
    if target.is_dir() and not _mismatches(target, wanted) and _same_bytes(target / MANIFEST, manifest_bytes):
        return target

    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".part", dir=dest))
    try:
        storage.download_many((prefix + rel, staging / rel) for rel in wanted)
        bad = _mismatches(staging, wanted)
        if bad:
            rel, why = bad[0]
            more = f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""
            raise ModelIntegrityError(
                f"model {name} {version}: {rel} does not match its manifest: {why}{more}; "
                f"the stored object {storage.uri(prefix + rel)} was modified or corrupted, nothing was installed"
            )
        (staging / MANIFEST).write_bytes(manifest_bytes)
        _replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("pulled model %s %s into %s (%d file(s))", name, version, target, len(wanted))
    return target


# --------------------------------------------------------------------------- helpers


def check_name(value: str, what: str) -> None:
    """A model name or version as given (by a person too): one safe key segment, else PublishError."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value.endswith(".json"):
        # ".json" names would clash with production.json / manifest.json keys.
        raise PublishError(f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-' "
                           "(starting with a letter or digit, not ending in .json)")


def _bundle_files(bundle: Path) -> dict[str, Path]:
    """relpath -> local file for everything to publish; problems found before any upload."""
    if not bundle.is_dir():
        raise PublishError(f"model bundle {bundle} is not a folder")
    unexpected = sorted(p.name for p in bundle.iterdir()
                        if not (p.name in BUNDLE_DIRS and p.is_dir() or p.name in CONSUMER_FILES and p.is_file()))
    if unexpected:
        raise PublishError(f"model bundle {bundle} has unexpected entries {', '.join(unexpected)} "
                           f"(expected only the folders {', '.join(BUNDLE_DIRS)} and the files "
                           f"{', '.join(CONSUMER_FILES)})")
    present = [m for m in MODEL_DIRS if (bundle / m).is_dir()]
    if not present:
        raise PublishError(f"model bundle {bundle} has neither det/ nor rec/: nothing to publish")
    for model in present:
        missing = [f for f in INFERENCE_FILES if not (bundle / model / f).is_file()]
        if missing:
            raise PublishError(f"model bundle {bundle}: {model}/ lacks the inference file(s) {', '.join(missing)}")
    files: dict[str, Path] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_file():
            rel = path.relative_to(bundle).as_posix()
            if not _safe_rel(rel):
                raise PublishError(f"model bundle {bundle}: {rel!r} cannot be stored as an object key")
            files[rel] = path
    return files


def _check_manifest(storage: Storage, manifest: dict[str, Any]) -> None:
    if not isinstance(manifest, dict):
        raise PublishError(f"the model manifest must be a mapping, got {type(manifest).__name__}")
    try:
        text = json.dumps(manifest, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PublishError(f"the model manifest cannot be written as JSON: {exc}") from None
    s = storage.settings
    for secret in (s.secret_access_key, s.session_token):
        # Manifests are read by every consumer; a leaked key there is a leaked key everywhere.
        if secret and secret in text:
            raise PublishError("the model manifest contains the storage credentials; refusing to publish it")


def _file_record(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"sha256": digest, "size": path.stat().st_size}


def _check_uploaded(storage: Storage, prefix: str, records: dict[str, dict[str, Any]]) -> None:
    # One LIST confirms every object landed whole before a manifest vouches for it.
    stored = {info.key[len(prefix):]: info.size for info in storage.list(prefix)}
    for rel, record in records.items():
        if stored.get(rel) != record["size"]:
            raise StorageError(f"upload of {storage.uri(prefix + rel)} did not complete "
                               f"(stored size {stored.get(rel)}, expected {record['size']}); not published")


def _point_production(storage: Storage, name: str, version: str, *, expected: Any = ANY_PRODUCTION) -> dict[str, Any]:
    with lease(storage, layout.model_lease(name)) as held:
        current = _read_pointer(storage, name)
        now = None if current is None else current["version"]
        if now == version:
            return current  # already production: rewriting would make it its own "previous"
        if expected is not ANY_PRODUCTION and now != expected:
            raise ProductionMoved(
                f"model {name} {version} is stored but NOT production: production moved from {expected or 'none'} "
                f"to {now} while this run ran, and its gate compared against {expected or 'no production'}. "
                f"Review it, then `ocr-retrain rollback {version}` promotes it")
        pointer = {"version": version, "updated_at": timestamp(), "previous": now}
        held.check()
        storage.put_json(layout.production_key(name), pointer)  # one PUT: readers see old or new
    log.info("model %s production -> %s (was %s)", name, version, pointer["previous"])
    return pointer


def _read_pointer(storage: Storage, name: str) -> dict[str, Any] | None:
    key = layout.production_key(name)
    pointer = storage.get_json(key, default=None)
    if pointer is None:
        return None
    if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
        raise StorageError(f"{storage.uri(key)} is not a production pointer (expected {{\"version\": ...}})")
    return pointer


def _wanted_files(storage: Storage, manifest_key: str, manifest_bytes: bytes,
                  include_checkpoints: bool, include_report: bool = False) -> dict[str, dict[str, Any]]:
    where = storage.uri(manifest_key)
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise ModelIntegrityError(f"invalid JSON in {where}: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ModelIntegrityError(f"{where} has no \"files\" listing")
    dirs = MODEL_DIRS + (("checkpoints",) if include_checkpoints else ()) + (("report",) if include_report else ())
    wanted: dict[str, dict[str, Any]] = {}
    for rel, record in files.items():
        if rel.split("/", 1)[0] not in dirs and rel not in CONSUMER_FILES:
            continue
        if not (_safe_rel(rel) and isinstance(record, dict) and isinstance(record.get("sha256"), str)
                and isinstance(record.get("size"), int)):
            raise ModelIntegrityError(f"{where}: malformed entry for {rel!r}")
        wanted[rel] = record
    if not any(rel.split("/", 1)[0] in MODEL_DIRS for rel in wanted):
        raise ModelIntegrityError(f"{where} lists no det/ or rec/ files")
    for model in MODEL_DIRS:   # a model the manifest names must be whole, or consumers get a folder that cannot load
        if any(rel.startswith(f"{model}/") for rel in wanted):
            missing = [f for f in INFERENCE_FILES if f"{model}/{f}" not in wanted]
            if missing:
                raise ModelIntegrityError(f"{where} lists {model}/ without {', '.join(missing)}: not a loadable "
                                          "PaddleOCR inference model")
    return wanted


def _safe_rel(rel: str) -> bool:
    # Keys from a manifest become local paths: nothing may climb out of the target folder.
    return (bool(rel) and "\\" not in rel and rel != MANIFEST
            and all(p not in ("", ".", "..") for p in rel.split("/")))


def _mismatches(root: Path, wanted: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    bad = []
    for rel, record in sorted(wanted.items()):
        path = root / rel
        if not path.is_file():
            bad.append((rel, "missing"))
            continue
        actual = _file_record(path)
        if actual["size"] != record["size"]:
            bad.append((rel, f"size {actual['size']} bytes, expected {record['size']}"))
        elif actual["sha256"] != record["sha256"]:
            bad.append((rel, f"sha256 {actual['sha256'][:12]}..., expected {record['sha256'][:12]}..."))
    return bad


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.is_file() and path.read_bytes() == data


def _replace_dir(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    # A folder cannot be swapped for another in one step: move the old one aside (inside
    # dest), then the new one in, so no mix of old and new files is ever on disk.
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
