"""Pre-labelling speed on CPU, and how well "hardest first" finds the images the model misreads.

    .venv/bin/python bench/prelabel.py --model work/demo/models/<version> [--per-kind 40]

A synthetic batch with known texts: images like the model's training data (easy), the same with
text rotated up to 25 degrees, and lines with letters the digits model never saw (hard). The
model reads them the way `ocr-retrain prelabel` does (the consumer probe: PaddleOCR 3.x pipeline
and det alone, offline), then the batch is ranked by uncertainty (ocr_tasks/prelabel/ranking.py).

Prints images/s of reading (the probe's whole run, model load included, and per image once loaded)
and the share of misread images (any labelled line not read exactly at IoU > 0.5) among the
top 10 % of the ranking against the share in the whole batch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocr_tasks.embedded.synthetic import ExportSpec, make_export  # noqa: E402
from ocr_tasks.prelabel.prelabel import _box_thresh, _reads_by_name  # noqa: E402
from ocr_tasks.prelabel.ranking import rank_images  # noqa: E402
from ocr_tasks.release.read_metrics import LabelledBox, TextLine, end_to_end_scores  # noqa: E402
from ocr_tasks.release.infra_validation import read_samples  # noqa: E402
from ocr_tasks.vocabulary import DET, REC  # noqa: E402


def make_batch(root: Path, per_kind: int) -> tuple[Path, dict[str, list[LabelledBox]]]:
    specs = [ExportSpec("easy", n_images=per_kind, seed=501),
             ExportSpec("rotated", n_images=per_kind, seed=502, rotate_degrees=25),
             ExportSpec("letters", n_images=per_kind, seed=503, charset="ABCDEFGHKMNPRSTXYZ0123456789")]
    batch = root / "batch"
    batch.mkdir(parents=True)
    truth: dict[str, list[LabelledBox]] = {}
    for spec in specs:
        folder = make_export(root / "exports", spec)
        for line in (folder / "Label.txt").read_text(encoding="utf-8").splitlines():
            path, boxes = line.split("\t", 1)
            name = f"{spec.name}_{Path(path).name}"
            shutil.copyfile(folder / Path(path).name, batch / name)
            truth[name] = [LabelledBox(b["points"], b["transcription"]) for b in json.loads(boxes)]
    return batch, truth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True, help="a pulled model folder with det/ and rec/")
    parser.add_argument("--per-kind", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        batch, truth = make_batch(Path(tmp), args.per_kind)
        images = sorted(batch.iterdir())
        started = time.monotonic()
        read, answer = read_samples(args.model.absolute(), [DET, REC], [str(p) for p in images], [], "bench", None,
                                    Path(tmp) / "probe", timeout_s=3600)
        seconds = time.monotonic() - started
        if read.error:
            raise SystemExit(f"the model could not read the batch: {read.error}")
        per_image = [item["seconds"] for item in answer["ocr"]]
        reads = _reads_by_name(answer)
        ranked = rank_images(reads, _box_thresh(args.model))
        misread = {name for name, boxes in truth.items()
                   if end_to_end_scores([(boxes, [TextLine(l["poly"], l["text"]) for l in reads[name]["lines"]])])
                   ["e2e_recall"] < 1.0}
        top = ranked[: max(1, len(ranked) // 10)]
        in_top = sum(1 for row in top if row.image in misread)
        print(f"images: {len(images)} ({args.per_kind} each easy / rotated / letters), misread: {len(misread)} "
              f"({len(misread) / len(images):.0%})")
        print(f"probe run: {seconds:.1f} s for det alone + pipeline, model load included "
              f"({len(images) / seconds:.2f} images/s)")
        print(f"pipeline once loaded: {1000 * sum(per_image) / len(per_image):.0f} ms per image "
              f"({len(per_image) / sum(per_image):.1f} images/s)")
        print(f"top 10 % of the ranking ({len(top)} images): {in_top} misread ({in_top / len(top):.0%}), "
              f"against {len(misread) / len(images):.0%} in the whole batch")
        bottom = ranked[-len(top):]
        in_bottom = sum(1 for row in bottom if row.image in misread)
        print(f"bottom 10 % of the ranking: {in_bottom} misread ({in_bottom / len(bottom):.0%})")
        kinds = ("easy", "rotated", "letters")
        rates = {k: f"{sum(1 for n in misread if n.startswith(k)) / args.per_kind:.0%}" for k in kinds}
        print(f"misread by kind: {rates}; in the top 10 %: "
              f"{ {k: sum(1 for row in top if row.image.startswith(k)) for k in kinds} }")
        quarter = ranked[: max(1, len(ranked) // 4)]
        print(f"top 25 %: {sum(1 for row in quarter if row.image in misread) / len(quarter):.0%} misread")


if __name__ == "__main__":
    main()
