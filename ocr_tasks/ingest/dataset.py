"""Merge validated exports into a cumulative, deduplicated, 6:2:2-split dataset version.

A dataset's index (one record per image and per crop) lives on disk (`index.DatasetIndex`,
an SQLite file in the step's scratch folder); image bytes stream from the export folder to
the staging folder one file at a time, and the files a version is made of stream to disk
line by line from the index. Memory does not grow with the number of images.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ocr_tasks.config import SplitConfig
from ocr_tasks.ingest.crops import crop_text_region, encode_jpeg
from ocr_tasks.ingest.images import decoded
from ocr_tasks.ingest.index import CropRecord, DatasetIndex, ImageRecord
from ocr_tasks.ingest.ppocrlabel import Box, shorten
from ocr_tasks.ingest.split import assign_split
from ocr_tasks.ingest.tables import IMAGE_WORKERS, ExportTables
from ocr_tasks.vocabulary import MODEL_KINDS, SPLITS, timestamp

DATASET_FILES = ("dict.txt", "images.jsonl", "crops.jsonl") + tuple(
    f"{task}/{split}.txt" for task in MODEL_KINDS for split in SPLITS)
INDEX_FILE = ".index.sqlite"   # a Dataset's index, in the folder the step writes the version into


class Dataset:
    """A dataset version being built or read: its index on disk at `index_path` (removed by `close`)."""

    def __init__(self, index_path: Path, parent: str | None = None) -> None:
        self._index = DatasetIndex(index_path)
        self.images = self._index.images     # sha256 -> ImageRecord
        self.crops = self._index.crops       # image sha256 -> its CropRecords
        self.parent = parent

    def close(self) -> None:
        self._index.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_index(cls, images_jsonl: Path, crops_jsonl: Path, parent: str | None, index_path: Path) -> "Dataset":
        """A published version's index files (images.jsonl, crops.jsonl), read line by line."""
        dataset = cls(index_path, parent=parent)
        # lines end at "\n" only: str.splitlines() would also break at U+2028 and friends inside labels
        with open(images_jsonl, encoding="utf-8", newline="\n") as lines:
            for line in lines:
                if line.strip():
                    record = ImageRecord.from_json(json.loads(line))
                    dataset.images[record.sha256] = record
        with open(crops_jsonl, encoding="utf-8", newline="\n") as lines:
            dataset.crops.extend(CropRecord(**json.loads(line)) for line in lines if line.strip())
        return dataset

    def add_export(self, tables: ExportTables, stage: Path, ratios: SplitConfig, *, cut_crops: bool = True,
                   remerge: bool = False) -> int:
        """Stage a validated export's images and crops; returns images added or relabelled.

        `cut_crops=False` records the crops cut from polygons without writing them:
        storage never keeps them (they are re-cut on pull), so a merge need not cut them.

        The same image content in a later export replaces the earlier labels: a new
        export is how labellers correct mistakes. A `remerge` (an export merged before,
        uploaded again with more images) updates its own images and adds new ones, but
        never takes back an image a later export relabelled.
        """
        (stage / "images").mkdir(parents=True, exist_ok=True)
        (stage / "crops").mkdir(parents=True, exist_ok=True)
        max_length = tables.limits.max_text_length
        jobs = []
        for line in tables.labels:
            fact = tables.facts[line.relpath]
            boxes = tables.boxes_of(line)   # re-open rewrites undone (TextConflict)
            record = ImageRecord.of(
                sha256=fact.sha256, ext=sys.intern(PurePosixPath(line.relpath).suffix.lower()), export=tables.name,
                source=f"{tables.name}/{line.relpath}", split=assign_split(fact.sha256, ratios),
                boxes=[box.to_json() for box in boxes])
            owner = self.images.get(record.sha256)
            if remerge and owner is not None and owner.export != tables.name:
                continue
            self.images[record.sha256] = record
            # rec takes the boxes that are text (not ###/difficult) and fit max_text_length; each from
            # PPOCRLabel's own crop when rec_gt.txt has one, else cut from its polygon
            wanted = {i: box for i, box in enumerate(boxes)
                      if not box.is_ignore_region and len(box.transcription) <= max_length}
            given = {i: tables.crop_of(line, i) for i in wanted if tables.crop_of(line, i) is not None}
            jobs.append((record, tables.folder / line.relpath, wanted, given))

        def stage_image(job) -> tuple[str, list[CropRecord]]:
            record, source, wanted, given = job
            _place(source, stage / record.relpath)
            crops = _stage_given_crops(record, {i: (given[i], wanted[i].transcription) for i in given}, tables, stage)
            crops += _cut_crops(record, source, {i: box for i, box in wanted.items() if i not in given},
                                stage if cut_crops else None)
            return record.sha256, sorted(crops, key=lambda crop: crop.box)

        with ThreadPoolExecutor(IMAGE_WORKERS) as pool:
            for sha, crops in pool.map(stage_image, jobs):
                self.crops[sha] = crops
        return len(jobs)

    def write(self, out: Path, *, dictionary: list[str] | None, ratios: SplitConfig,
              exports_merged: list[str], max_text_length: int, grow_dictionary: bool = False) -> dict:
        """Write the label lists, dict, index and dataset.json (last) into `out`.

        The dict: the configured one (grown by the labels' other characters, appended in code point order, when
        `grow_dictionary`), or every label character. Each file streams to disk line by line from the index (the
        version hash with it).
        """
        grown: list[str] = []
        if dictionary is None:
            chars = dictionary_from_labels(self)
        else:
            known = set(dictionary)
            grown = [c for c in dictionary_from_labels(self) if c not in known] if grow_dictionary else []
            chars = dictionary + grown
        lines = {
            "dict.txt": lambda: (f"{c}\n" for c in chars),
            "images.jsonl": self.images.lines,
            "crops.jsonl": self.crops.lines,
        }
        for split in SPLITS:
            lines[f"det/{split}.txt"] = lambda split=split: (
                f"{r.relpath}\t{r.boxes_json}\n" for r in self.images.ordered(by="relpath", split=split))
            lines[f"rec/{split}.txt"] = lambda split=split: (
                f"{c.relpath}\t{c.text}\n" for c in self.crops.ordered(split=split))
        digest = hashlib.sha256()
        for name in DATASET_FILES:
            digest.update(name.encode() + b"\0")
            write_lines_atomic(out / name, lines[name](), digest)
            digest.update(b"\0")
        counts = {split: {"images": 0, "boxes": 0, "crops": 0} for split in SPLITS}
        for record in self.images.values():
            counts[record.split]["images"] += 1
            counts[record.split]["boxes"] += len(record.boxes)
        for split, crops in self.crops.split_counts().items():
            counts[split]["crops"] = crops
        info = {
            "version": digest.hexdigest()[:16],
            "parent": self.parent,
            "created_at": timestamp(),
            "split_ratios": ratios.model_dump(),
            # grown: the labels' characters appended to the configured dict (a fine-tuned rec's head grows with them)
            "dictionary": {"source": "configured" if dictionary is not None else "labels", "size": len(chars),
                           "configured": None if dictionary is None else len(dictionary), "grown": "".join(grown)},
            "counts": counts,
            "exports": _per_export_counts(self, max_text_length),
            "max_text_length": max_text_length,
            "merged_in_this_version": sorted(exports_merged),
            "files": list(DATASET_FILES),
        }
        write_text_atomic(out / "dataset.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        return info


def dictionary_from_labels(dataset: Dataset) -> list[str]:
    """Every character of the training texts, in code point order (deterministic).

    Space is left out: PaddleOCR adds it with `use_space_char: true`.
    """
    chars: set[str] = set()
    for text in dataset.crops.texts():
        chars.update(text)
    for record in dataset.images.values():
        for box in record.boxes:
            if not Box(**box).is_ignore_region:
                chars.update(box["transcription"])
    chars.discard(" ")
    return sorted(chars)


def _per_export_counts(dataset: Dataset, max_text_length: int) -> dict[str, dict]:
    """Images and crops per export, and the boxes left out of rec for being longer than max_text_length."""
    images = Counter(dataset.images.column("export"))
    crops = Counter(dataset.crops.exports())
    too_long: dict[str, list[str]] = defaultdict(list)
    for record in dataset.images.values():
        for index, box in enumerate(record.boxes):
            if not Box(**box).is_ignore_region and len(box["transcription"]) > max_text_length:
                too_long[record.export].append(f"{record.source} box {index}: {shorten(box['transcription'], 40, with_length=False)!r}")
    counts = {}
    for name in sorted(images):
        counts[name] = {"images": images[name], "crops": crops[name]}
        if too_long[name]:
            counts[name]["left_out_of_rec"] = {"longer_than_max_text_length": len(too_long[name]),
                                               "examples": sorted(too_long[name])[:5]}
    return counts


def _stage_given_crops(record: ImageRecord, given: dict, tables: ExportTables, stage: Path) -> list[CropRecord]:
    """PPOCRLabel's own crops (index -> (rec_gt line, the box's text: TextConflict's rule))."""
    crops = []
    for index, (line, text) in sorted(given.items()):
        # named by image and box too: identical crop bytes from images in two splits stay two files
        name = f"{record.sha256}_{index}_{tables.facts[line.relpath].sha256[:8]}.jpg"
        crop = CropRecord(name, text, record.sha256, index,
                          tables.name, f"{tables.name}/{line.relpath}", record.split, cut=False)
        _place(tables.folder / line.relpath, stage / crop.relpath)
        crops.append(crop)
    return crops


def _cut_crops(record: ImageRecord, source: Path, boxes: dict[int, Box], stage: Path | None) -> list[CropRecord]:
    crops = [CropRecord(_cut_name(record.sha256, index, box.points), box.transcription, record.sha256, index,
                        record.export, f"{record.source}#box{index}", record.split, cut=True)
             for index, box in sorted(boxes.items())]
    if crops and stage is not None:
        with decoded(source.read_bytes()) as image:
            write_cut_crops(image, [(c, boxes[c.box].points) for c in crops], stage)
    return crops


def _cut_name(image_sha256: str, index: int, points: list) -> str:
    # the polygon is part of the name: a relabelled box must not reuse a stale crop file
    shape = hashlib.sha256(json.dumps(points).encode()).hexdigest()[:8]
    return f"{image_sha256}_{index}_{shape}.jpg"


def recut_crops(dataset: "Dataset", root: Path) -> int:
    """Re-create the crops cut from polygons, under `root`, from the images already there."""
    def jobs() -> Iterator[tuple[ImageRecord, list[tuple[CropRecord, list]]]]:
        for record in dataset.images.values():
            missing = [c for c in dataset.crops.get(record.sha256) if c.cut and not (root / c.relpath).exists()]
            if missing:
                boxes = record.boxes
                yield record, [(c, boxes[c.box]["points"]) for c in missing]

    def cut(job: tuple[ImageRecord, list[tuple[CropRecord, list]]]) -> int:
        record, wanted = job
        with decoded((root / record.relpath).read_bytes()) as image:
            write_cut_crops(image, wanted, root)
        return len(wanted)

    done = 0
    pending = jobs()
    with ThreadPoolExecutor(IMAGE_WORKERS) as pool:
        # a batch at a time: Executor.map would take every job (image records, polygons) up front
        while batch := list(itertools.islice(pending, 256)):
            done += sum(pool.map(cut, batch))
    return done


def stored_files(dataset: "Dataset") -> Iterator[str]:
    """Relative paths of the files a dataset keeps in storage: images and PPOCRLabel's own crops."""
    yield from dataset.images.column("relpath")
    yield from dataset.crops.stored_relpaths()


def write_cut_crops(image, crops: list[tuple[CropRecord, list]], root: Path) -> None:
    """Crops are named by (image hash, box index, polygon hash): re-cutting them anywhere gives the same paths."""
    for crop, points in crops:
        target = root / crop.relpath
        if not target.exists():
            write_bytes_atomic(target, encode_jpeg(crop_text_region(image, points)))


def _place(source: Path, target: Path) -> None:
    """Content-addressed: an existing target already has these bytes."""
    if target.exists():
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.link(source, tmp)  # same filesystem: no copy
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with _atomic_file(path) as out:
        out.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_lines_atomic(path: Path, lines: Iterable[str], digest=None) -> None:
    """Write text lines as UTF-8, atomically, feeding the bytes to `digest` as well."""
    with _atomic_file(path) as out:
        for line in lines:
            data = line.encode("utf-8")
            out.write(data)
            if digest is not None:
                digest.update(data)


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as out:
            yield out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)   # a failed write leaves neither the target nor a stray part file
