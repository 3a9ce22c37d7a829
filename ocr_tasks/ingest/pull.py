"""A published dataset version, materialised locally as a PaddleOCR data_dir."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tempfile
from pathlib import Path, PurePosixPath

from ocr_tasks.errors import StorageError, UsageError
from ocr_tasks.ingest.dataset import DATASET_FILES, INDEX_FILE, Dataset, recut_crops, stored_files
from ocr_tasks.ingest.packs import extract_pack, pack_id_of
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage

# every file a dataset version names; anything else in its index is not followed
_DATASET_FILE = re.compile(r"(images|crops)/[A-Za-z0-9][A-Za-z0-9._-]*")
# a version is one name (16 hex digits as merge writes them), never a path
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_image_contents(version: str, relpaths: list[str], dest: Path) -> None:
    """An image is named by the sha256 of its bytes (images/<sha256>.<ext>): one whose bytes differ came
    from a pack that packs.json was edited to name; it is removed, and the pull refused."""
    for rel in relpaths:
        stem = PurePosixPath(rel).stem
        if not rel.startswith("images/") or not _SHA256.fullmatch(stem):
            continue
        with open(dest / rel, "rb") as data:
            digest = hashlib.file_digest(data, "sha256").hexdigest()
        if digest != stem:
            (dest / rel).unlink()
            raise StorageError(f"dataset {version}: {rel} from its pack holds other bytes (sha256 {digest[:16]}…): "
                               "the dataset's packs were changed after the merge; refused")


_SHA256 = re.compile(r"[0-9a-f]{64}")


def pull_dataset(storage: Storage, version: str, dest: Path) -> Path:
    """Materialise a dataset version locally as a PaddleOCR data_dir.

    Only packs holding files not already in `dest` are fetched, so pulling the next
    version into the same folder downloads just what is new. Crops cut from polygons
    are re-cut here.
    """
    if not _VERSION.fullmatch(version):
        raise UsageError(f"invalid dataset version {version!r}: give a version name, as `ocr-retrain discover` lists")
    prefix = layout.dataset_prefix(version)
    if not storage.exists(prefix + "dataset.json"):
        raise UsageError(f"dataset version {version} not found (no {storage.uri(prefix + 'dataset.json')})")
    dest.mkdir(parents=True, exist_ok=True)
    storage.download_many((prefix + name, dest / name) for name in DATASET_FILES + ("packs.json", "dataset.json"))
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest) as scratch, \
            Dataset.from_index(dest / "images.jsonl", dest / "crops.jsonl", version, Path(scratch) / INDEX_FILE) as dataset:
        packs = json.loads((dest / "packs.json").read_text(encoding="utf-8"))
        for rel in itertools.chain(stored_files(dataset), (rel for members in packs.values() for rel in members)):
            if not _DATASET_FILE.fullmatch(rel):
                raise UsageError(f"dataset {version}: refusing file path {rel!r} (not images/<name> or crops/<name>)")
        for pack_id, members in packs.items():
            wanted = {rel for rel in members if not (dest / rel).exists()}
            if wanted:
                tar = Path(scratch) / f"{pack_id}.tar"
                storage.download_file(layout.pack_key(pack_id), tar)
                found = pack_id_of(tar)
                if found != pack_id:   # a pack is named by its sha256: these bytes are not what the merge stored
                    raise StorageError(
                        f"dataset {version}: {storage.uri(layout.pack_key(pack_id))} does not hold what the merge "
                        f"stored (its bytes hash to {found}, not {pack_id}): it was changed or replaced after the "
                        "merge; nothing of it was extracted. Restore the object (bucket versioning, a backup) or "
                        "ingest the exports again into a new version")
                extract_pack(tar, wanted, dest)
                tar.unlink()
                _check_image_contents(version, sorted(wanted), dest)
        absent = next((rel for rel in stored_files(dataset) if not (dest / rel).exists()), None)
        if absent is not None:
            missing = sum(1 for rel in stored_files(dataset) if not (dest / rel).exists())
            raise UsageError(f"dataset {version}: {missing} file(s) missing from its packs, e.g. {absent}")
        recut_crops(dataset, dest)
    return dest
