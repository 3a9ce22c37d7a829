"""A dataset's index on disk: one row per image and per crop, read back in order, never all at once.

A version's index (images.jsonl, crops.jsonl) grows with every merge; held as Python objects it
cost about 1.5 kB per image (two boxes, two crops), so a 100,000-image dataset took ~150 MB in
the merging process before anything was written. The rows live in an SQLite file in the step's
own scratch folder instead (stdlib, no server): writing a version streams them in the order its
files need, and memory stays that of the page cache and the current row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(slots=True)
class ImageRecord:
    sha256: str
    ext: str
    export: str
    source: str                  # "<export>/<file>" as uploaded
    split: str
    # PPOCRLabel's box list, unchanged, as the JSON text of det/*.txt lines: parsed boxes
    # (a dict and a list per point each) cost about three times the memory
    boxes_json: str

    @classmethod
    def of(cls, sha256: str, ext: str, export: str, source: str, split: str, boxes: list[dict]) -> ImageRecord:
        return cls(sha256, ext, export, source, split, json.dumps(boxes, ensure_ascii=False))

    @classmethod
    def from_json(cls, data: dict) -> ImageRecord:
        return cls.of(data["sha256"], data["ext"], data["export"], data["source"], data["split"], data["boxes"])

    @property
    def boxes(self) -> list[dict]:
        return json.loads(self.boxes_json)

    def json_line(self) -> str:
        """The images.jsonl line: json.dumps of the record with "boxes" last, byte for byte."""
        head = json.dumps({"sha256": self.sha256, "ext": self.ext, "export": self.export, "source": self.source,
                           "split": self.split}, ensure_ascii=False)
        return f'{head[:-1]}, "boxes": {self.boxes_json}}}\n'

    @property
    def relpath(self) -> str:
        return f"images/{self.sha256}{self.ext}"


@dataclass(slots=True)
class CropRecord:
    name: str                    # file name under crops/
    text: str
    image_sha256: str            # the crop follows its source image's split
    box: int
    export: str
    source: str                  # "<export>/crop_img/..." or "<export>/<file>#box<i>" when cut here
    split: str
    cut: bool                    # cut from the polygon here: derived data, re-cut when pulled, never stored

    @property
    def relpath(self) -> str:
        return f"crops/{self.name}"

    def json_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"


_SCHEMA = """
create table images (sha256 text primary key, relpath text not null, split text not null, export text not null,
                     line text not null);
create table crops (image_sha256 text not null, box integer not null, relpath text not null, split text not null,
                    export text not null, cut integer not null, line text not null);
create index crops_by_image on crops (image_sha256);
create index images_by_path on images (relpath);
create index crops_by_path on crops (relpath, image_sha256, box);
"""


class DatasetIndex:
    """The images and crops of one dataset version, in an SQLite file that `close` removes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        # used by the thread that builds the dataset only (image staging threads never touch it)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("pragma journal_mode = off")     # scratch data: rebuilt from storage after a crash
        self._db.execute("pragma synchronous = off")
        self._db.executescript(_SCHEMA)
        self._db.execute("begin")
        self.images = ImageTable(self._db)
        self.crops = CropTable(self._db)

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)


class ImageTable:
    """sha256 -> ImageRecord, like a dict; `ordered` streams them by sha256 or by path."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __setitem__(self, sha256: str, record: ImageRecord) -> None:
        self._db.execute("insert or replace into images values (?, ?, ?, ?, ?)",
                         (sha256, record.relpath, record.split, record.export, record.json_line()))

    def get(self, sha256: str) -> ImageRecord | None:
        row = self._db.execute("select line from images where sha256 = ?", (sha256,)).fetchone()
        return _image(row[0]) if row else None

    def __getitem__(self, sha256: str) -> ImageRecord:
        record = self.get(sha256)
        if record is None:
            raise KeyError(sha256)
        return record

    def __contains__(self, sha256: object) -> bool:
        return self._db.execute("select 1 from images where sha256 = ?", (sha256,)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("select count(*) from images").fetchone()[0]

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._db.execute("select sha256 from images order by sha256"))

    def values(self) -> Iterator[ImageRecord]:
        return self.ordered()

    def ordered(self, by: str = "sha256", split: str | None = None) -> Iterator[ImageRecord]:
        order = {"sha256": "sha256", "relpath": "relpath"}[by]
        where, args = ("where split = ?", (split,)) if split else ("", ())
        return (_image(row[0]) for row in self._db.execute(f"select line from images {where} order by {order}", args))

    def lines(self) -> Iterator[str]:
        """images.jsonl, line by line, by sha256."""
        return (row[0] for row in self._db.execute("select line from images order by sha256"))

    def column(self, name: str) -> Iterator[str]:
        if name not in ("relpath", "export", "split"):
            raise ValueError(name)
        return (row[0] for row in self._db.execute(f"select {name} from images order by sha256"))


class CropTable:
    """image sha256 -> its crops (a list, replaced whole); `ordered` streams all by path."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __setitem__(self, image_sha256: str, crops: list[CropRecord]) -> None:
        self._db.execute("delete from crops where image_sha256 = ?", (image_sha256,))
        self.extend(crops)

    def extend(self, crops: Iterable[CropRecord]) -> None:
        self._db.executemany("insert into crops values (?, ?, ?, ?, ?, ?, ?)",
                             ((c.image_sha256, c.box, c.relpath, c.split, c.export, int(c.cut), c.json_line())
                              for c in crops))

    def get(self, image_sha256: str, default: list | None = None) -> list[CropRecord]:
        rows = self._db.execute("select line from crops where image_sha256 = ? order by box, relpath",
                                (image_sha256,)).fetchall()
        return [_crop(row[0]) for row in rows] if rows else (default if default is not None else [])

    def ordered(self, split: str | None = None) -> Iterator[CropRecord]:
        where, args = ("where split = ?", (split,)) if split else ("", ())
        return (_crop(row[0]) for row in
                self._db.execute(f"select line from crops {where} order by relpath, image_sha256, box", args))

    def lines(self) -> Iterator[str]:
        """crops.jsonl, line by line, by path."""
        return (row[0] for row in self._db.execute("select line from crops order by relpath, image_sha256, box"))

    def stored_relpaths(self) -> Iterator[str]:
        """PPOCRLabel's own crops (kept in storage); crops cut from polygons are re-cut instead."""
        return (row[0] for row in self._db.execute("select relpath from crops where cut = 0 order by relpath"))

    def exports(self) -> Iterator[str]:
        return (row[0] for row in self._db.execute("select export from crops"))

    def texts(self) -> Iterator[str]:
        return (json.loads(row[0])["text"] for row in self._db.execute("select line from crops"))

    def split_counts(self) -> dict[str, int]:
        return dict(self._db.execute("select split, count(*) from crops group by split").fetchall())


def _image(line: str) -> ImageRecord:
    return ImageRecord.from_json(json.loads(line))


def _crop(line: str) -> CropRecord:
    return CropRecord(**json.loads(line))
