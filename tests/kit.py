"""Helpers the tests share: synthetic exports and ways to edit them as labellers do, the ingest half, loopback ports.

Fixtures (the S3 server, a bucket per test, the webhook receiver) are in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

from ocr_tasks.embedded.local_airflow import free_port
from ocr_tasks.embedded.synthetic import ExportSpec, break_label_file, break_one_polygon, make_export

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

__all__ = ["DATA", "REPO", "break_label_file", "break_one_polygon", "edit_boxes", "export", "free_port", "ingest", "label_lines", "upload",
           "write_label_lines"]


def export(parent: Path, name: str = "batch_001", **kwargs) -> Path:
    return make_export(parent, ExportSpec(name, **{"n_images": 12, **kwargs}))


def label_lines(folder: Path) -> list[str]:
    return (folder / "Label.txt").read_text(encoding="utf-8-sig").splitlines()


def write_label_lines(folder: Path, lines: list[str]) -> None:
    (folder / "Label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def edit_boxes(folder: Path, line_index: int, edit) -> None:
    """Apply `edit(boxes) -> boxes` to the JSON of one Label.txt line."""
    lines = label_lines(folder)
    path, payload = lines[line_index].split("\t", 1)
    lines[line_index] = f"{path}\t{json.dumps(edit(json.loads(payload)), ensure_ascii=False)}"
    write_label_lines(folder, lines)


def upload(storage, folder: Path, skip=(), name: str | None = None) -> None:
    """Upload an export folder to incoming/<name, default its own>/, as a labeller's sync would."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in skip:
            storage.upload_file(path, f"incoming/{name or folder.name}/{rel}")


def ingest(storage, config):
    """`ocr-retrain ingest`: the chain's ingest half (discover -> check_export -> merge) by the local runner."""
    from ocr_tasks.flow.local_runner import ingest as ingest_half
    from ocr_tasks.flow.run import RunContext, RunRequest

    return ingest_half(RunContext(config, storage, RunRequest("ingest")))
