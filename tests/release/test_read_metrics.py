"""Scores of what a consumer runtime read: DetMetric's matching, RecMetric's accuracy, end to end."""

import pytest

from ocr_tasks.release.read_metrics import LabelledBox, TextLine, det_scores, end_to_end_scores, rec_scores


def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


GT = [LabelledBox(box(0, 0, 100, 20), "1234"), LabelledBox(box(0, 40, 100, 60), "5678"),
      LabelledBox(box(0, 80, 100, 100), "###")]


def test_det_matches_at_iou_above_half_one_to_one_and_ignores_dont_care_regions():
    detections = [box(2, 0, 100, 20),        # IoU 0.98 with the first box
                  box(0, 0, 100, 20),        # a duplicate: the first box is taken, so a false positive
                  box(0, 40, 40, 60),        # IoU 0.4 with the second: no match
                  box(0, 80, 100, 100)]      # on the ### region: counts neither way
    scores = det_scores([(GT, detections)])
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["hmean"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    perfect = det_scores([(GT, [b.points for b in GT])])
    assert perfect == {"precision": 1.0, "recall": 1.0, "hmean": 1.0}
    assert det_scores([(GT, [])]) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}


def test_rec_accuracy_ignores_spaces_like_recmetric():
    scores = rec_scores([("12 34", "1234"), ("5678", "5679"), ("", "00")])
    assert scores["acc"] == pytest.approx(1 / 3)
    assert scores["norm_edit_dis"] == pytest.approx(1 - (0 + 1 / 4 + 1) / 3)
    assert rec_scores([]) == {"acc": 0.0, "norm_edit_dis": 0.0}


def test_end_to_end_needs_the_box_and_the_text():
    lines = [TextLine(box(0, 0, 100, 20), "1234"),     # right box, right text
             TextLine(box(0, 40, 100, 60), "567"),     # right box, wrong text
             TextLine(box(0, 80, 100, 100), "junk")]   # over the ### region: not counted
    scores = end_to_end_scores([(GT, lines)])
    assert scores == {"e2e_precision": 0.5, "e2e_recall": 0.5, "e2e_hmean": 0.5}
