"""Slices of the test split, the gate's slice and reference checks, and the report's error analysis.

The dataset is a real one (`prepare` of synthetic PPOCRLabel exports); the per-sample reads stand
in for the consumer probe's answer (its real runs are in the demo test and test_infra_validation)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocr_tasks.config import GateConfig, load_config
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.ingest.reference import ALL_TEST
from ocr_tasks.release.compare import Comparison, _side_by_side
from ocr_tasks.release.error_analysis import analyse_errors
from ocr_tasks.release.gate import decide
from ocr_tasks.release.report import write_summary
from ocr_tasks.release.slices import SampleIndex, slice_scores, text_slices
from tests.kit import export

GOOD = {"det": {"precision": 1.0, "recall": 1.0, "hmean": 1.0}, "rec": {"acc": 0.95, "norm_edit_dis": 0.99}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two exports, every sample in the test split."""
    root = tmp_path_factory.mktemp("slices")
    folders = [export(root / "src", "shop_a", n_images=12, seed=1), export(root / "src", "shop_b", n_images=12, seed=2)]
    config = load_config(overrides=[f"work_dir={root / 'work'}"])
    prepare([str(f) for f in folders], root / "ds", config.model_copy(update={"split": ALL_TEST}))
    return root / "ds"


def reads(index: SampleIndex, misread_export: str | None = None, miss_boxes_of: str | None = None) -> dict:
    """A probe answer: every crop read right and every box found, except the named export's."""
    rec = [{"crop": crop, "text": ("X" + text[1:]) if export == misread_export else text, "score": 0.9}
           for crop, (export, text) in index.crops.items()]
    det = [{"image": image, "polys": [] if index.images[image] == miss_boxes_of else [b.points for b in boxes]}
           for image, boxes in index.boxes.items()]
    return {"det": det, "rec": rec}


def test_text_slices_name_length_and_script():
    assert text_slices("0490") == ["text_length=1-4", "script=digits"]
    assert text_slices("Total: 12.50") == ["text_length=9-16", "script=latin"]
    assert text_slices("发票号码") == ["text_length=1-4", "script=cjk"]
    assert text_slices("x" * 30) == ["text_length=17+", "script=latin"]
    assert text_slices("Привет") == ["text_length=5-8", "script=other"]


def test_slices_score_each_export_and_text_class(dataset):
    index = SampleIndex.of(dataset)
    assert set(index.images.values()) == {"shop_a", "shop_b"} and index.crops
    scores = slice_scores(index, reads(index, misread_export="shop_b", miss_boxes_of="shop_a"))
    assert scores["rec"]["export=shop_a"]["metrics"]["acc"] == 1.0
    assert scores["rec"]["export=shop_b"]["metrics"]["acc"] == 0.0
    assert scores["det"]["export=shop_a"]["metrics"]["hmean"] == 0.0
    assert scores["det"]["export=shop_b"]["metrics"]["hmean"] == 1.0
    assert scores["rec"]["script=digits"]["samples"] == len(index.crops)
    assert sum(e["samples"] for name, e in scores["rec"].items() if name.startswith("export=")) == len(index.crops)


def test_a_slice_that_regresses_is_refused_by_name_while_the_average_improves(dataset):
    index = SampleIndex.of(dataset)
    crops_b = sum(1 for export, _ in index.crops.values() if export == "shop_b")
    # production misread all of shop_a and read shop_b; the new model reads shop_a and misreads
    # one in four of shop_b: better on average, worse on shop_b
    new = reads(index)
    wrong_b = [r for r in new["rec"] if index.crops[r["crop"]][0] == "shop_b"][: max(1, crops_b // 4)]
    for r in wrong_b:
        r["text"] = "X" + r["text"][1:]
    production = reads(index, misread_export="shop_a")
    slices = _side_by_side(slice_scores(index, new), slice_scores(index, production))
    assert slices["rec"]["export=shop_a"]["new"]["acc"] > slices["rec"]["export=shop_a"]["production"]["acc"]
    compared = Comparison("v1", slices)
    gate = GateConfig(slice_min_samples=5)
    decision = decide(GOOD, {"rec": {"acc": 0.5}, "det": GOOD["det"]}, gate, models=["rec"], compared=compared)
    assert not decision.passed
    (reason,) = decision.reasons
    assert re.match(r"rec acc on test slice export=shop_b \(\d+ samples\) dropped .* below production \(1 -> ", reason)
    # too few samples to judge: recorded, not refused
    assert decide(GOOD, None, GateConfig(slice_min_samples=10_000), models=["rec"], compared=compared).passed


def test_a_reference_set_the_new_model_forgets_is_refused(dataset):
    compared = Comparison("v1", references={"general": {
        "rec": {"samples": 40, "new": {"acc": 0.6}, "production": {"acc": 0.93}},
        "det": {"samples": 10, "new": {"hmean": 0.99}, "production": {"hmean": 0.98}}}})
    decision = decide(GOOD, None, GateConfig(), compared=compared)
    assert decision.reasons == ["rec acc on reference set general (40 samples) dropped 0.33 below production "
                                "(0.93 -> 0.6; at most 0.02 allowed)"]
    problems = Comparison("v1", problems=["reference set broken (s3://b/reference/broken/) fails validation: x"])
    assert decide(GOOD, None, GateConfig(), compared=problems).reasons == problems.problems


def test_error_analysis_pictures_the_worst_samples_and_the_report_shows_them(dataset, tmp_path):
    index = SampleIndex.of(dataset)
    new = reads(index, misread_export="shop_b", miss_boxes_of="shop_a")
    production = reads(index)
    errors = analyse_errors({"test/new": new, "test/production": production}, dataset, tmp_path, worst=4)
    assert errors["rec_wrong"] == sum(1 for e, _ in index.crops.values() if e == "shop_b")
    assert len(errors["rec"]) == 4 and all(r["new"].startswith("X") and r["production"] == r["label"]
                                           for r in errors["rec"])
    assert errors["confusions"][0]["read"] == "X"
    assert errors["det_wrong"] == sum(1 for e in index.images.values() if e == "shop_a")
    assert all(d["hmean"] == 0.0 and d["production_hmean"] == 1.0 for d in errors["det"])
    for row in errors["rec"] + errors["det"]:
        assert (tmp_path / row["picture"]).stat().st_size > 0
    slices = _side_by_side(slice_scores(index, new), slice_scores(index, production))
    page = write_summary(tmp_path / "summary.html", title="t", facts={}, metrics=GOOD, baseline=None,
                         gate={"passed": False, "checks": [], "reasons": []}, curves=[],
                         comparison=Comparison("v1", slices).record(), errors=errors).read_text()
    assert "export=shop_b" in page and 'src="errors/rec_00' in page and 'src="errors/det_00.png"' in page
    assert "Most confused characters" in page


def test_error_analysis_draws_the_worst_end_to_end_reads_and_tables_them_per_export(dataset, tmp_path):
    """What the pipeline read: a line misread (what was read beside the label), a box missed, per export."""
    index = SampleIndex.of(dataset)

    def ocr(misread_export=None):
        return [{"image": image, "lines": [
            {"poly": box.points, "text": ("9" + box.text) if index.images[image] == misread_export else box.text}
            for box in boxes if not box.ignored]} for image, boxes in index.boxes.items()]

    new = {**reads(index), "ocr": ocr(misread_export="shop_a")}
    production = {**reads(index), "ocr": ocr()}
    errors = analyse_errors({"test/new": new, "test/production": production}, dataset, tmp_path, worst=3)
    assert errors["e2e_total"] == len(index.boxes)
    assert errors["e2e_wrong"] == sum(1 for e in index.images.values() if e == "shop_a")
    assert errors["e2e_by_export"]["shop_a"]["e2e_hmean"] == 0.0
    assert errors["e2e_by_export"]["shop_b"]["e2e_hmean"] == 1.0
    worst = errors["e2e"][0]
    assert worst["hmean"] == 0.0 and worst["production_hmean"] == 1.0 and worst["export"] == "shop_a"
    assert all(line["read"] == "9" + line["label"] for line in worst["misread"])
    assert (tmp_path / worst["picture"]).stat().st_size > 0
    by_text = errors["e2e_by_text"]
    assert by_text["script=digits"]["lines"] == sum(1 for boxes in index.boxes.values() for b in boxes if not b.ignored)
    assert 0 < by_text["script=digits"]["e2e_recall"] < 1       # shop_a's lines misread, shop_b's read
    page = write_summary(tmp_path / "summary.html", title="t", facts={}, metrics=GOOD, baseline=None,
                         gate={"passed": False, "checks": [], "reasons": []}, curves=[], errors=errors).read_text()
    line = worst["misread"][0]
    assert f'<span class="bad">read {line["read"]}</span>, labelled {line["label"]}' in page
    assert 'src="errors/e2e_00.png"' in page and "<td>shop_a</td>" in page and "<td>script=digits</td>" in page


def test_compare_scores_the_new_model_from_infra_validations_reads_on_another_worker(dataset, tmp_path):
    """infra_validate keeps its reads with paths relative to the dataset; compare, on a worker whose dataset folder
    is elsewhere, scores the new model's slices from them and runs no probe of its own for them."""
    import shutil

    from ocr_tasks.release.compare import compare_with_production
    from ocr_tasks.release.infra_validation import RuntimeRead, with_sample_paths

    index = SampleIndex.of(dataset)
    answer = {**reads(index, misread_export="shop_b"), "ocr": [], "tuning": []}
    kept = with_sample_paths(answer, lambda path: str(Path(path).relative_to(dataset)))
    assert all(not r["crop"].startswith("/") for r in kept["rec"]) and kept["det"][0]["image"].startswith("images/")

    elsewhere = tmp_path / "other-worker" / "ds"
    shutil.copytree(dataset, elsewhere)
    bundle = tmp_path / "bundle"
    for kind in ("det", "rec"):
        (bundle / kind).mkdir(parents=True)
        (bundle / kind / "inference.yml").write_text("Global: {}\n")
    served = RuntimeRead("pipeline", "/usr/bin/python3", versions={"paddleocr": "3.7.0", "paddlepaddle": "3.2.2"})
    result = compare_with_production(
        bundle, None, None, elsewhere, {}, tmp_path / "work", python=str(tmp_path / "no-such-python"), timeout_s=60,
        kinds=["det", "rec"], new_test_read=(served, with_sample_paths(kept, lambda path: str(elsewhere / path))))
    assert result.problems == [] and result.notes == []     # nothing was read by a probe (it has no interpreter)
    assert result.slices["rec"]["export=shop_b"]["new"]["acc"] == 0.0
    assert result.slices["rec"]["export=shop_a"]["new"]["acc"] == 1.0
    assert result.slices["det"]["export=shop_a"]["new"]["hmean"] == 1.0
    kept_file = Path(result.reads["test/new"])
    assert kept_file.is_file() and str(elsewhere) in kept_file.read_text()   # the report reads them from here


def test_compare_scores_production_from_the_reads_of_the_baseline_this_run_registered(dataset, tmp_path):
    """The stock baseline registered this run was read on this test split already (release/baseline.py): compare
    scores production from those reads and runs no probe for it."""
    from ocr_tasks.release.compare import compare_with_production
    from ocr_tasks.release.infra_validation import RuntimeRead

    index = SampleIndex.of(dataset)
    bundles = {}
    for model in ("new", "production"):
        bundles[model] = tmp_path / model
        for kind in ("det", "rec"):
            (bundles[model] / kind).mkdir(parents=True)
            (bundles[model] / kind / "inference.yml").write_text("Global: {}\n")
    production = {**reads(index, misread_export="shop_a"), "ocr": [], "tuning": [],
                  "runtime": {"paddleocr": "3.7.0", "paddlepaddle": "3.2.2"}}
    new = {**reads(index), "ocr": [], "tuning": []}
    result = compare_with_production(
        bundles["new"], bundles["production"], "20261204T000000Z", dataset, {}, tmp_path / "work",
        python=str(tmp_path / "no-such-python"), timeout_s=60, kinds=["rec"],
        new_test_read=(RuntimeRead("pipeline", "/usr/bin/python3"), new), production_test_answer=production)
    # a probe for production could not have started (no interpreter): its failure would be a note
    assert result.problems == [] and result.notes == []
    assert Path(result.reads["test/production"]).is_file()
    assert result.slices["rec"]["export=shop_a"]["production"]["acc"] == 0.0
    assert result.slices["rec"]["export=shop_b"]["production"]["acc"] == 1.0
    assert result.slices["rec"]["export=shop_a"]["new"]["acc"] == 1.0
