"""The export gate: thresholds, regressions against production, partial runs, missing metrics."""

import json
import math

import pytest

from ocr_tasks.codec import plain
from ocr_tasks.config import GateConfig
from ocr_tasks.release.gate import decide

GATE = GateConfig(rec_min_acc=0.9, det_min_hmean=0.5, max_regression=0.01)


def metrics(acc=0.95, hmean=0.8):
    return {"rec": {"acc": acc, "norm_edit_dis": 0.98}, "det": {"precision": 0.8, "recall": 0.8, "hmean": hmean}}


def failed(decision):
    return [(c.model, c.kind) for c in decision.checks if not c.passed]


def test_good_models_pass_without_baseline():
    decision = decide(metrics(), None, GATE)
    assert decision.passed and decision.reasons == []
    assert [(c.model, c.metric, c.op, c.threshold) for c in decision.checks] == [
        ("det", "hmean", ">=", 0.5), ("rec", "acc", ">", 0.9)]
    assert json.loads(json.dumps(plain(decision))) == plain(decision)


def test_rec_acc_must_be_strictly_greater_than_threshold():
    decision = decide(metrics(acc=0.9), None, GATE)
    assert not decision.passed
    assert failed(decision) == [("rec", "threshold")]
    assert decision.reasons == ["rec acc 0.9 is not > 0.9"]
    assert decide(metrics(acc=0.874), None, GATE).reasons == ["rec acc 0.874 is not > 0.9"]
    assert decide(metrics(acc=0.9001), None, GATE).passed


def test_det_hmean_threshold_is_inclusive():
    assert decide(metrics(hmean=0.5), None, GATE).passed
    decision = decide(metrics(hmean=0.42), None, GATE)
    assert not decision.passed
    assert failed(decision) == [("det", "threshold")]
    assert decision.reasons == ["det hmean 0.42 is not >= 0.5"]


def test_regression_beyond_tolerance_fails_and_within_passes():
    baseline = metrics(acc=0.96, hmean=0.85)
    worse = decide(metrics(acc=0.945, hmean=0.85), baseline, GATE)
    assert not worse.passed
    assert failed(worse) == [("rec", "regression")]
    regression = [c for c in worse.checks if c.kind == "regression" and c.model == "rec"][0]
    assert regression.baseline == 0.96 and regression.threshold == 0.95 and regression.value == 0.945
    assert worse.reasons == ["rec acc 0.945 dropped 0.015 below production 0.96 (at most 0.01 allowed)"]

    # a drop of exactly the tolerance is allowed (no float rounding surprises)
    assert decide(metrics(acc=0.92, hmean=0.84), metrics(acc=0.93, hmean=0.85), GATE).passed
    assert decide(metrics(acc=0.955, hmean=0.90), baseline, GATE).passed

    det_worse = decide(metrics(acc=0.97, hmean=0.80), baseline, GATE)
    assert failed(det_worse) == [("det", "regression")]


def test_regression_check_does_not_hide_the_threshold():
    # better than a weak production model is still not good enough
    decision = decide(metrics(acc=0.88), metrics(acc=0.85), GATE)
    assert failed(decision) == [("rec", "threshold")]


def test_only_the_retrained_model_is_checked():
    terrible_det = {"rec": {"acc": 0.95}, "det": {"hmean": 0.01}}
    decision = decide(terrible_det, metrics(), GATE, models=["rec"])
    assert decision.passed
    assert {c.model for c in decision.checks} == {"rec"}
    # and a rec-only run does not even need det metrics
    assert decide({"rec": {"acc": 0.95}}, None, GATE, models=("rec",)).passed


def test_model_absent_from_baseline_has_no_regression_check():
    decision = decide(metrics(), {"rec": {"acc": 0.95}}, GATE)
    assert decision.passed
    assert [(c.model, c.kind) for c in decision.checks] == [
        ("det", "threshold"), ("rec", "threshold"), ("rec", "regression")]


@pytest.mark.parametrize("new", [
    {"det": {"hmean": 0.8}},
    {"det": {"hmean": 0.8}, "rec": {}},
    {"det": {"hmean": 0.8}, "rec": {"acc": None}},
    {"det": {"hmean": 0.8}, "rec": {"acc": math.nan}},
    {"det": {"hmean": 0.8}, "rec": {"acc": "0.95"}},
])
def test_missing_or_unusable_metric_is_a_failed_check(new):
    decision = decide(new, None, GATE)
    assert not decision.passed
    assert failed(decision) == [("rec", "threshold")]
    assert len(decision.reasons) == 1 and decision.reasons[0].startswith("rec acc is ")
    assert "new model" in decision.reasons[0]


def test_missing_baseline_metric_fails_the_regression_check():
    decision = decide(metrics(), {"rec": {"norm_edit_dis": 0.9}}, GATE, models=["rec"])
    assert not decision.passed
    assert failed(decision) == [("rec", "regression")]
    assert "production model" in decision.reasons[0]


def test_every_failure_gets_a_reason():
    decision = decide({"det": {"hmean": 0.3}}, metrics(acc=0.99, hmean=0.9), GATE)
    assert not decision.passed
    assert len(decision.reasons) == len(failed(decision)) == 4
    assert all(isinstance(r, str) and r[:3] in ("det", "rec") for r in decision.reasons)


def test_asking_for_nothing_or_an_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="at least one model"):
        decide(metrics(), None, GATE, models=())
    with pytest.raises(ValueError, match="unknown model 'cls'"):
        decide(metrics(), None, GATE, models=("cls",))


# --------------------------------------------------------------------------- the exported models, as consumers read them

def served(*runtimes):
    from ocr_tasks.release.infra_validation import InfraValidation, RuntimeRead

    return InfraValidation([RuntimeRead(**r) for r in runtimes], images=10, crops=20)


def runtime(name="newest", hmean=0.8, acc=0.95, e2e=0.9, error=None):
    read = {"name": name, "python": f"/venvs/{name}/bin/python",
            "versions": {"paddleocr": "3.7.0", "paddlepaddle": "3.3.1"}, "error": error}
    if error is None:
        read["metrics"] = {"det": {"hmean": hmean}, "rec": {"acc": acc}, "e2e": {"e2e_hmean": e2e}}
    return read


def test_exported_models_that_read_like_eval_pass_and_every_runtime_is_a_check():
    decision = decide(metrics(), None, GATE, served=served(runtime("pipeline"), runtime("oldest", hmean=0.79)))
    assert decision.passed and decision.reasons == []
    kinds = [(c.kind, c.runtime.split()[0] if c.runtime else None) for c in decision.checks]
    assert kinds.count(("runtime", "pipeline")) == 1 and kinds.count(("export_drift", "oldest")) == 2
    drift = next(c for c in decision.checks if c.kind == "export_drift" and c.model == "det"
                 and c.runtime.startswith("oldest"))
    assert drift.value == 0.79 and drift.eval_value == 0.8 and drift.drift == pytest.approx(0.01)


def test_a_planted_mismatch_is_refused_naming_the_drift_and_the_runtime():
    decision = decide(metrics(acc=0.97), None, GATE, served=served(runtime("newest", acc=0.62)))
    assert not decision.passed and failed(decision) == [("rec", "export_drift")]
    (reason,) = decision.reasons
    assert reason == ("rec acc drifts once exported: 0.62 read in runtime newest (paddleocr 3.7.0, paddlepaddle "
                      "3.3.1), 0.97 from tools/eval.py (drift 0.35, at most 0.02 allowed)")
    # better once exported is a mismatch too: eval.py and the consumers do not compute the same thing
    assert not decide(metrics(hmean=0.6), None, GATE, served=served(runtime(hmean=0.9))).passed
    # exactly at the tolerance passes
    assert decide(metrics(hmean=0.8), None, GATE, served=served(runtime(hmean=0.78))).passed


def test_a_model_that_does_not_load_is_refused_with_the_runtimes_error():
    error = {"stage": "det", "type": "NotImplementedError",
             "message": "(Unimplemented) ConvertPirAttribute2RuntimeAttribute not support\nmore lines"}
    decision = decide(metrics(), None, GATE, served=served(runtime("pipeline"), runtime("newest", error=error)))
    assert not decision.passed and failed(decision) == [("det+rec", "runtime")]
    assert decision.reasons == ["the exported models do not load or run in consumer runtime newest (paddleocr 3.7.0, "
                                "paddlepaddle 3.3.1) (det): NotImplementedError: (Unimplemented) "
                                "ConvertPirAttribute2RuntimeAttribute not support"]


def test_only_the_retrained_kinds_are_compared_and_the_e2e_floor_is_on_by_default():
    only_rec = decide({"rec": {"acc": 0.95}}, None, GATE, models=["rec"], served=served(runtime(hmean=0.1)))
    assert only_rec.passed            # det came from production: its eval metrics are not this run's
    # the demo's tight-crop rec, as measured: det 0.974 and rec 1.000 alone, 0.774 end to end
    decision = decide(metrics(hmean=0.974, acc=1.0), None, GATE,
                      served=served(runtime(hmean=0.974, acc=1.0, e2e=0.774)))
    assert decision.reasons == ["end-to-end hmean 0.774 in runtime newest (paddleocr 3.7.0, paddlepaddle 3.3.1) "
                                "is not >= 0.85 (det hmean 0.974 and rec acc 1 read alone): the lines consumers read"]
    assert GATE.e2e_min_hmean == 0.85
    relaxed = GateConfig(rec_min_acc=0.9, det_min_hmean=0.5, max_regression=0.01, e2e_min_hmean=None)
    assert decide(metrics(), None, relaxed, served=served(runtime(e2e=0.1))).passed   # None: recorded, not gated
    # a bundle of one kind reads nothing end to end: no floor to miss
    one_kind = served(runtime())
    one_kind.runtimes[0].metrics = {"det": {"hmean": 0.8}}
    assert decide(metrics(), None, GATE, models=["det"], served=one_kind).passed


def test_end_to_end_may_not_regress_against_production_naming_the_runtime():
    from ocr_tasks.release.compare import Comparison

    label = "pipeline (paddleocr 3.7.0, paddlepaddle 3.2.2)"
    worse = Comparison("v1", e2e={"runtime": label, "new": {"e2e_hmean": 0.90}, "production": {"e2e_hmean": 0.95}})
    decision = decide(metrics(), None, GATE, compared=worse)
    assert decision.reasons == [f"end-to-end hmean 0.9 in runtime {label} dropped 0.05 below production 0.95 (read "
                                f"in {label}) on the test split (at most 0.02 allowed)"]
    close = Comparison("v1", e2e={"runtime": label, "new": {"e2e_hmean": 0.94}, "production": {"e2e_hmean": 0.95}})
    assert decide(metrics(), None, GATE, compared=close).passed

    # every consumer runtime's end-to-end read is held to production's: one that reads worse than the pipeline's
    # own is refused, naming it (and only it)
    reads = served(runtime("pipeline", e2e=0.94), runtime("oldest", e2e=0.91))
    reads.runtimes[0].versions["paddlepaddle"] = "3.2.2"
    decision = decide(metrics(), None, GATE, served=reads, compared=close)
    assert decision.reasons == ["end-to-end hmean 0.91 in runtime oldest (paddleocr 3.7.0, paddlepaddle 3.3.1) dropped "
                                f"0.04 below production 0.95 (read in {label}) on the test split (at most 0.02 "
                                "allowed)"]
    regressions = [c.runtime for c in decision.checks if c.kind == "regression" and c.model == "e2e"]
    assert regressions == [label, "oldest (paddleocr 3.7.0, paddlepaddle 3.3.1)"]   # one check per runtime


def test_against_the_stock_baseline_the_new_model_must_read_better_end_to_end_in_every_runtime():
    """gate.must_beat_stock: the tolerance that lets one fine-tune follow another within a hair does not let a
    fine-tune replace the stock model a team runs today unless it reads the test split better."""
    from ocr_tasks.release.compare import Comparison

    label = "pipeline (paddleocr 3.7.0, paddlepaddle 3.2.2)"
    level = Comparison("v0", e2e={"runtime": label, "new": {"e2e_hmean": 0.94}, "production": {"e2e_hmean": 0.95}})
    assert decide(metrics(), None, GATE, compared=level).passed                 # a fine-tune behind a fine-tune
    decision = decide(metrics(), None, GATE, compared=level, stock=True)
    assert decision.reasons == [f"end-to-end hmean 0.94 in runtime {label} does not beat the stock baseline's 0.95 "
                                f"(read in {label}) on the test split (gate.must_beat_stock: a fine-tune must read "
                                "better than the model it would replace)"]
    equal = Comparison("v0", e2e={"runtime": label, "new": {"e2e_hmean": 0.95}, "production": {"e2e_hmean": 0.95}})
    assert not decide(metrics(), None, GATE, compared=equal, stock=True).passed   # level is not better
    better = Comparison("v0", e2e={"runtime": label, "new": {"e2e_hmean": 0.97}, "production": {"e2e_hmean": 0.52}})
    reads = served(runtime("pipeline", e2e=0.97), runtime("oldest", e2e=0.50))
    decision = decide(metrics(), None, GATE, served=reads, compared=better, stock=True)
    assert [r for r in decision.reasons if "stock" in r] == [
        f"end-to-end hmean 0.5 in runtime oldest (paddleocr 3.7.0, paddlepaddle 3.3.1) does not beat the stock "
        f"baseline's 0.52 (read in {label}) on the test split (gate.must_beat_stock: a fine-tune must read better "
        "than the model it would replace)"]
    off = GateConfig(rec_min_acc=0.9, det_min_hmean=0.5, max_regression=0.01, must_beat_stock=False)
    assert decide(metrics(), None, off, compared=level, stock=True).passed   # off: the ordinary tolerance
