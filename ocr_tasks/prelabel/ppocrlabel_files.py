"""The files PPOCRLabel (3.1.6) reads when a labeller opens a folder, written so it shows the model's predictions.

    <folder>/Cache.cach      one line per image: "<folder name>/<file>\\t<JSON list of boxes>", each box
                             {"transcription", "points", "difficult"}: PPOCRLabel's auto-label cache.
                             Opening the folder merges it under Label.txt (Label.txt wins per image), so
                             every unconfirmed image shows its predicted boxes and texts, ready to correct.
    <folder>/fileState.txt   empty: no image is confirmed (PPOCRLabel counts *any* line as confirmed,
                             whatever its state value)
    <folder>/Label.txt       empty: PPOCRLabel writes the confirmed labels here as the labeller works

How PPOCRLabel reads them (PPOCRLabel.py, `importDirImages`, `loadLabelFile`, `getImglabelidx`): keys are
the opened folder's name and the file name joined by "/", so the folder keeps the batch's name; each
line is split on its one tab and the JSON is read with Python's eval after replacing the words false,
true and null, which would also rewrite those words inside a transcription ("nullable" would become
"Noneable"). Transcriptions therefore spell those letters with JSON escapes (n\\u0075ll), which both
eval and json.loads turn back into the same text. `read_cache_file` parses a file exactly as
PPOCRLabel does, for tests and for `ocr-retrain` to check what it wrote.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

CACHE_FILE = "Cache.cach"
FILE_STATE = "fileState.txt"
LABEL_FILE = "Label.txt"

_REWRITTEN = re.compile(r"null|true|false")
_ESCAPED = {"null": "n\\u0075ll", "true": "tr\\u0075e", "false": "f\\u0061lse"}


def cache_line(folder_name: str, file_name: str, boxes: Iterable[tuple[Sequence[Sequence[float]], str]]) -> str:
    """One Cache.cach line for an image: its predicted (polygon, text) boxes."""
    items = []
    for points, text in boxes:
        encoded = _REWRITTEN.sub(lambda m: _ESCAPED[m.group(0)], json.dumps(text, ensure_ascii=False))
        pts = json.dumps([[round(float(x)), round(float(y))] for x, y in points])
        items.append(f'{{"transcription": {encoded}, "points": {pts}, "difficult": false}}')
    return f"{folder_name}/{file_name}\t[{', '.join(items)}]\n"


def write_ppocrlabel_folder(folder: Path, predictions: dict[str, list[tuple[Sequence[Sequence[float]], str]]]) -> None:
    """Cache.cach with every image's predictions (file name -> boxes), empty fileState.txt and Label.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [cache_line(folder.name, name, boxes) for name, boxes in sorted(predictions.items())]
    (folder / CACHE_FILE).write_text("".join(lines), encoding="utf-8")
    (folder / FILE_STATE).write_text("", encoding="utf-8")
    (folder / LABEL_FILE).write_text("", encoding="utf-8")


def read_cache_file(path: Path) -> dict[str, list[dict]]:
    """Cache.cach (or Label.txt) parsed the way PPOCRLabel 3.1.6's loadLabelFile does, eval and all."""
    labels: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as handle:
        for each in handle.readlines():
            file, label = each.split("\t")
            if label:
                label = label.replace("false", "False").replace("true", "True").replace("null", "None")
                # PPOCRLabel calls eval; on these literal lines literal_eval gives the same value, safely
                labels[file] = ast.literal_eval(label)
            else:
                labels[file] = []
    return labels
