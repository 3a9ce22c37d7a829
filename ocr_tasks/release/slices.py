"""Metrics per slice of the test split: where a model got better or worse, not only on average.

A slice is named `<dimension>=<value>`:

    export=<name>         det: the test images whose labels came from that export; rec: their crops
    text_length=<range>   rec: labels of 1-4, 5-8, 9-16 or 17+ characters (spaces not counted)
    script=<class>        rec: labels of digits only, latin letters (with digits and punctuation),
                          CJK, or other scripts

Scores come from per-sample reads of the exported models (the consumer probe's answer, as
infra validation produces it) and are computed as the gate's runtime metrics are
(read_metrics: DetMetric's and RecMetric's rules), so a slice of the new model and the same
slice of production are judged alike.
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_tasks.release.read_metrics import LabelledBox, det_scores, rec_scores
from ocr_tasks.vocabulary import DET, REC, TEST_SPLIT

__all__ = ["SampleIndex", "slice_scores", "text_slices"]

_LENGTHS = ((1, 4), (5, 8), (9, 16))


@dataclass
class SampleIndex:
    """The test split's samples with what they are sliced by: absolute path -> export (and label)."""

    images: dict[str, str] = field(default_factory=dict)             # image path -> export
    boxes: dict[str, list[LabelledBox]] = field(default_factory=dict)   # image path -> labelled boxes
    crops: dict[str, tuple[str, str]] = field(default_factory=dict)  # crop path -> (export, text)

    @classmethod
    def of(cls, data_dir: Path, split: str = TEST_SPLIT) -> "SampleIndex":
        """From a dataset folder: the split's label files (what the gate's runtime metrics read)
        and images.jsonl / crops.jsonl (which export each sample came from)."""
        from ocr_tasks.release.infra_validation import labelled_crops, labelled_images

        data_dir = Path(data_dir).absolute()
        exports = {str(data_dir / "images" / f"{r['sha256']}{r['ext']}"): str(r.get("export") or "?")
                   for r in _records(data_dir / "images.jsonl")}
        exports.update({str(data_dir / "crops" / r["name"]): str(r.get("export") or "?")
                        for r in _records(data_dir / "crops.jsonl")})
        index = cls()
        det_file, rec_file = data_dir / DET / f"{split}.txt", data_dir / REC / f"{split}.txt"
        index.boxes = labelled_images(det_file, data_dir) if det_file.is_file() else {}
        index.images = {path: exports.get(path, "?") for path in index.boxes}
        crops = labelled_crops(rec_file, data_dir) if rec_file.is_file() else {}
        index.crops = {path: (exports.get(path, "?"), text) for path, text in crops.items()}
        return index


def text_slices(text: str) -> list[str]:
    """The label-derived slices a rec sample belongs to."""
    plain = "".join(text.split())
    length = len(plain)
    bucket = next((f"{low}-{high}" for low, high in _LENGTHS if low <= length <= high), f"{_LENGTHS[-1][1] + 1}+")
    return [f"text_length={bucket}", f"script={_script(plain)}"]


def slice_scores(index: SampleIndex, answer: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{kind: {slice: {"samples": n, "metrics": {...}}}} from one probe answer on `index`'s samples."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    det_groups: dict[str, list] = defaultdict(list)
    for read in answer.get("det") or []:
        if read["image"] in index.images:
            det_groups[f"export={index.images[read['image']]}"].append((index.boxes[read["image"]], read["polys"]))
    if det_groups:
        result[DET] = {name: {"samples": len(pairs), "metrics": det_scores(pairs)}
                       for name, pairs in sorted(det_groups.items())}
    rec_groups: dict[str, list] = defaultdict(list)
    for read in answer.get("rec") or []:
        if read["crop"] in index.crops:
            export, text = index.crops[read["crop"]]
            for name in (f"export={export}", *text_slices(text)):
                rec_groups[name].append((read["text"], text))
    if rec_groups:
        result[REC] = {name: {"samples": len(pairs), "metrics": rec_scores(pairs)}
                       for name, pairs in sorted(rec_groups.items())}
    return result


def _script(text: str) -> str:
    if not text:
        return "empty"
    if all(c.isdigit() for c in text):
        return "digits"
    letters = [c for c in text if c.isalpha()]
    if letters and all(_is_cjk(c) for c in letters):
        return "cjk"
    if all(c.isascii() or unicodedata.category(c).startswith("P") for c in text) or \
            all("LATIN" in unicodedata.name(c, "") for c in letters):
        return "latin"
    return "other"


def _is_cjk(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def _records(path: Path):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
