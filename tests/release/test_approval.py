"""The approval between gate and publish: the request a person reads, the record of the answer, and the
routes (the real Airflow Approve and Reject paths are in tests/embedded/test_ui.py)."""

from __future__ import annotations

from ocr_tasks.codec import plain
from ocr_tasks.config import load_config
from ocr_tasks.flow import steps
from ocr_tasks.flow.airflow_runner import context_from_params
from ocr_tasks.flow.run import RunContext, RunOutcome, RunRequest
from ocr_tasks.release.approval import approval_markdown, approval_record, cli_approval
from ocr_tasks.release.gate import Bound, CheckKind, GateCheck, GateDecision


def _ctx(tmp_path, *overrides, **request):
    config = load_config(overrides=[f"work_dir={tmp_path}", *overrides])
    return RunContext(config, None, RunRequest("r1", **request))


def test_route_asks_a_person_only_when_approval_is_required_and_the_gate_passed(tmp_path):
    passed, failed = GateDecision(True), GateDecision(False, ["rec acc 0.5 is not > 0.9"])
    assert steps.route(_ctx(tmp_path), passed) == steps.PUBLISH
    assert steps.route(_ctx(tmp_path, "approval.required=true"), passed) == steps.APPROVE
    assert steps.route(_ctx(tmp_path, "approval.required=true"), failed) == steps.RECORD
    assert steps.route(_ctx(tmp_path, "approval.required=true", dry_run=True), passed) == steps.RECORD
    # the DAG's require_approval Param is the per-run override
    ctx = context_from_params({"require_approval": True}, "manual__1", None)
    assert ctx.config.approval.required is True
    assert context_from_params({"require_approval": None}, "manual__1", None).config.approval.required is False


def test_the_request_shows_metrics_slices_reference_sets_and_the_report():
    outcome = RunOutcome("r7", "awaiting-approval", "ds1", metrics={"rec": {"acc": 0.97, "norm_edit_dis": 0.99}},
                         baseline={"version": "v3", "rec": {"acc": 0.95}},
                         gate=GateDecision(True, checks=[GateCheck("rec", "acc", 0.97, 0.9, Bound.ABOVE, True,
                                                                   CheckKind.THRESHOLD)] * 2),
                         comparison={"slices": {"rec": {"export=shop_b": {"samples": 40, "new": {"acc": 0.9},
                                                                          "production": {"acc": 0.95}}}},
                                     "references": {"general": {"rec": {"samples": 50, "new": {"acc": 0.88},
                                                                        "production": {"acc": 0.89}}}}})
    subject, body = approval_markdown("shop-ocr", outcome, 24, "s3://b/runs/r7/report/summary.html")
    assert subject == "Publish shop-ocr from run r7?"
    assert "now: `v3`" in body and "| rec | acc | 0.9700 | 0.9500 |" in body
    assert "| rec | export=shop_b | 40 | 0.9000 | 0.9500 |" in body and "| general | rec | 50 | 0.8800 | 0.8900 |" in body
    assert "No answer in 24 h counts as Reject" in body and "s3://b/runs/r7/report/summary.html" in body
    assert "2 of 2 checks passed" in body


def test_the_record_says_who_when_and_why():
    answer = {"chosen_options": ["Reject"], "params_input": {"comment": "shop_b got worse"},
              "responded_at": "2026-12-01T09:00:00+00:00", "responded_by_user": {"id": "7", "name": "mia"}}
    assert plain(approval_record(answer)) == {"decision": "rejected", "by": "mia", "at": "2026-12-01T09:00:00+00:00",
                                              "comment": "shop_b got worse", "timed_out": False, "via": "airflow"}
    timed_out = approval_record({"chosen_options": ["Reject"], "responded_by_user": None,
                                 "responded_at": "2026-12-02T09:00:00+00:00"})
    assert timed_out.decision == "rejected" and timed_out.timed_out is True and timed_out.by is None
    assert approval_record({"chosen_options": ["Approve"], "responded_by_user": {"id": "1", "name": "li"}}).approved
    assert cli_approval("ops@night").decision == "approved"
    refused = cli_approval(None)
    assert not refused.approved and "--approved-by" in refused.comment
