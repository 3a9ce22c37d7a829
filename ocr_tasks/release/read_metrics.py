"""Scores of what a consumer runtime read, against the test split's labels.

The same definitions as PaddleOCR's tools/eval.py, so the gate can compare the two:
- det: DetMetric (ppocr/metrics/eval_det_iou.py). A detection matches a labelled box at
  IoU > 0.5, one to one; `###`/`*` boxes are ignore regions, and a detection lying over
  one (more than half of its area) counts neither way. precision, recall, hmean over all
  images.
- rec: RecMetric with its defaults: exact match after removing spaces; acc and
  norm_edit_dis.
- end to end (no eval.py counterpart): a read line is correct when its polygon matches a
  labelled box (IoU > 0.5, one to one, best IoU first) and its text equals the box's
  transcription (spaces removed). precision over the lines read, recall over the boxes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shapely.geometry import Polygon

from ocr_tasks.ingest.ppocrlabel import IGNORE_TRANSCRIPTIONS

IOU_THRESHOLD = 0.5
DONT_CARE_AREA = 0.5

Points = Sequence[Sequence[float]]


@dataclass(frozen=True)
class LabelledBox:
    points: Points
    text: str

    @property
    def ignored(self) -> bool:
        return self.text in IGNORE_TRANSCRIPTIONS


@dataclass(frozen=True)
class TextLine:
    points: Points
    text: str


def read_lines(read: dict) -> list[TextLine]:
    """One image's lines as the consumer probe answers them (`{"image", "lines": [{"poly", "text"}]}`)."""
    return [TextLine(line["poly"], line["text"]) for line in read["lines"]]


def end_to_end_of(boxes: dict[str, Sequence[LabelledBox]], reads: Iterable[dict]) -> dict[str, float]:
    """end_to_end_scores of the probe's per-image reads against `boxes` (image path -> labelled boxes)."""
    return end_to_end_scores((boxes[read["image"]], read_lines(read)) for read in reads if read["image"] in boxes)


def det_scores(images: Iterable[tuple[Sequence[LabelledBox], Sequence[Points]]]) -> dict[str, float]:
    """precision, recall, hmean of detected polygons over (labelled boxes, detections) per image."""
    matched = gt_care = det_care = 0
    for boxes, detections in images:
        m, g, d = _match_image(boxes, [TextLine(p, "") for p in detections], need_text=False)
        matched, gt_care, det_care = matched + m, gt_care + g, det_care + d
    return _prh(matched, gt_care, det_care)


def end_to_end_scores(images: Iterable[tuple[Sequence[LabelledBox], Sequence[TextLine]]]) -> dict[str, float]:
    """e2e_precision, e2e_recall, e2e_hmean of read lines (polygon and text) per image."""
    correct = gt_care = read_care = 0
    for boxes, lines in images:
        c, g, r = _match_image(boxes, lines, need_text=True)
        correct, gt_care, read_care = correct + c, gt_care + g, read_care + r
    return {f"e2e_{k}": v for k, v in _prh(correct, gt_care, read_care).items()}


def rec_scores(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """acc and norm_edit_dis of (predicted, labelled) texts, as RecMetric computes them."""
    correct = total = 0
    edit = 0.0
    for predicted, label in pairs:
        predicted, label = _plain(predicted), _plain(label)
        total += 1
        correct += predicted == label
        edit += _levenshtein(predicted, label) / max(len(predicted), len(label), 1)
    if total == 0:
        return {"acc": 0.0, "norm_edit_dis": 0.0}
    return {"acc": correct / total, "norm_edit_dis": 1 - edit / total}


@dataclass
class ImageMatch:
    """One image's detections against its labels (DetMetric's matching): what the report draws."""

    matched: list[tuple[Points, Points]]   # (labelled box, detection)
    missed: list[Points]                   # labelled boxes that count and no detection matched
    false: list[Points]                    # detections that count and match no labelled box
    ignored: list[Points]                  # ignore regions (### / *)

    @property
    def hmean(self) -> float:
        m = len(self.matched)
        return _prh(m, m + len(self.missed), m + len(self.false))["hmean"]


def match_detections(boxes: Sequence[LabelledBox], detections: Sequence[Points]) -> ImageMatch:
    care, reads, pairs = _assign(boxes, [TextLine(p, "") for p in detections], need_text=False)
    gi_used = {gi for gi, _, _ in pairs}
    ri_used = {ri for _, ri, _ in pairs}
    return ImageMatch([(care[gi][0].points, reads[ri][0].points) for gi, ri, _ in pairs],
                      [box.points for i, (box, _) in enumerate(care) if i not in gi_used],
                      [line.points for i, (line, _) in enumerate(reads) if i not in ri_used],
                      [box.points for box in boxes if box.ignored])


@dataclass
class LineMatch:
    """One image's read lines against its labels (end_to_end_scores' matching): what the report draws."""

    right: list[tuple[LabelledBox, TextLine]]          # box found and read as labelled
    misread: list[tuple[LabelledBox, TextLine]]        # box found, text differs
    missed: list[LabelledBox]                          # no read line over it
    false: list[TextLine]                              # read lines over no labelled box

    @property
    def hmean(self) -> float:
        right = len(self.right)
        return _prh(right, right + len(self.misread) + len(self.missed),
                    right + len(self.misread) + len(self.false))["hmean"]


def match_lines(boxes: Sequence[LabelledBox], lines: Sequence[TextLine]) -> LineMatch:
    care, reads, pairs = _assign(boxes, lines, need_text=True)
    right = [(care[gi][0], reads[ri][0]) for gi, ri, ok in pairs if ok]
    misread = [(care[gi][0], reads[ri][0]) for gi, ri, ok in pairs if not ok]
    gi_used, ri_used = {gi for gi, _, _ in pairs}, {ri for _, ri, _ in pairs}
    return LineMatch(right, misread, [box for i, (box, _) in enumerate(care) if i not in gi_used],
                     [line for i, (line, _) in enumerate(reads) if i not in ri_used])


def _match_image(boxes: Sequence[LabelledBox], lines: Sequence[TextLine], *, need_text: bool) -> tuple[int, int, int]:
    """(matches, labelled boxes that count, read lines that count) for one image."""
    care, reads, pairs = _assign(boxes, lines, need_text=need_text)
    return sum(1 for _, _, text_ok in pairs if text_ok), len(care), len(reads)


def _assign(boxes: Sequence[LabelledBox], lines: Sequence[TextLine], *, need_text: bool):
    """The labelled boxes and read lines that count, and the one-to-one (box, line, text matches) pairs."""
    gts = [(box, _polygon(box.points)) for box in boxes]
    gts = [(box, poly) for box, poly in gts if poly is not None]
    ignore = [poly for box, poly in gts if box.ignored]
    care = [(box, poly) for box, poly in gts if not box.ignored]
    reads = []
    for line in lines:
        poly = _polygon(line.points)
        if poly is None:
            continue
        if any(poly.area > 0 and poly.intersection(region).area / poly.area > DONT_CARE_AREA for region in ignore):
            continue
        reads.append((line, poly))
    pairs = sorted(((_iou(gp, rp), gi, ri) for gi, (_, gp) in enumerate(care) for ri, (_, rp) in enumerate(reads)),
                   key=lambda t: -t[0]) if need_text else \
        [(_iou(gp, rp), gi, ri) for gi, (_, gp) in enumerate(care) for ri, (_, rp) in enumerate(reads)]
    used_gt: set[int] = set()
    used_read: set[int] = set()
    assigned = []
    for iou, gi, ri in pairs:
        if iou <= IOU_THRESHOLD or gi in used_gt or ri in used_read:
            continue
        used_gt.add(gi)
        used_read.add(ri)
        assigned.append((gi, ri, not need_text or _plain(reads[ri][0].text) == _plain(care[gi][0].text)))
    return care, reads, assigned


def _polygon(points: Points) -> Polygon | None:
    if len(points) < 3:
        return None
    poly = Polygon([(float(x), float(y)) for x, y in points])
    return poly if poly.is_valid else None   # eval_det_iou skips invalid polygons too


def _iou(a: Polygon, b: Polygon) -> float:
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _prh(matched: int, gt_care: int, det_care: int) -> dict[str, float]:
    recall = matched / gt_care if gt_care else 0.0
    precision = matched / det_care if det_care else 0.0
    hmean = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "hmean": hmean}


def edit_operations(predicted: str, label: str) -> list[tuple[str, str]]:
    """(label char, predicted char) for each substitution, deletion ("", when the model
    missed a char: label char, "") and insertion (model added one: "", predicted char), spaces ignored."""
    a, b = _plain(label), _plain(predicted)
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    ops = []
    i, j = len(a), len(b)
    while i or j:
        if i and j and table[i][j] == table[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            if a[i - 1] != b[j - 1]:
                ops.append((a[i - 1], b[j - 1]))
            i, j = i - 1, j - 1
        elif i and table[i][j] == table[i - 1][j] + 1:
            ops.append((a[i - 1], ""))
            i -= 1
        else:
            ops.append(("", b[j - 1]))
            j -= 1
    return ops[::-1]


def _plain(text: str) -> str:
    return text.replace(" ", "")


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
