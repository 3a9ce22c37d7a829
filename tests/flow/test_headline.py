"""The run's outcome at a glance (issue 29): one Markdown note per way a run ends, the note Airflow shows on the run
(set by the deciding task through the REST API: tests/embedded/test_ui.py sees it in Chromium). Upload-derived
text in it stays text."""

from __future__ import annotations

import re

from ocr_tasks.config import load_config
from ocr_tasks.flow import headline, steps
from ocr_tasks.flow.retraining import RETRAINING
from ocr_tasks.flow.run import Discovery, MergedDataset, RunContext, RunOutcome, RunRequest
from ocr_tasks.release.approval import ApprovalRecord
from ocr_tasks.release.gate import GateDecision
from ocr_tasks.vocabulary import Decision, RunStatus

LINK = "/ocr-retrain/reports/ocr_retraining/manual__1/summary.html"


def _ctx(tmp_path, **request):
    return RunContext(load_config(overrides=[f"work_dir={tmp_path}"]), None, RunRequest("r1", **request))


def test_every_end_of_a_run_has_a_headline_that_says_which(tmp_path):
    ctx = _ctx(tmp_path)
    metrics = {"rec": {"acc": 0.97}}
    published = RunOutcome("r1", RunStatus.PUBLISHED, "v3", model_version="v0004", metrics=metrics)
    text = headline.run_ended(ctx, published, report=LINK)
    assert text.startswith("**Published** `ocr` `v0004`, now production") and "rec acc 0.970" in text
    assert text.endswith(f"[Open the report]({LINK})")

    reasons = [f"reason {i}" for i in range(5)]
    refused = headline.run_ended(ctx, RunOutcome("r1", RunStatus.GATE_FAILED, "v3", gate=GateDecision(False, reasons)))
    assert refused.startswith("**Refused by the gate** (5 checks failed); production unchanged:")
    assert "- reason 0" in refused and "- reason 2" in refused and "reason 3" not in refused   # the first three
    assert "2 more in the report" in refused
    long = headline.run_ended(ctx, RunOutcome("r1", RunStatus.GATE_FAILED, "v3", gate=GateDecision(False, ["x" * 5000] * 3)),
                              report=LINK)
    assert len(long) < 1000 and long.endswith(f"[Open the report]({LINK})")   # Airflow keeps 1000 characters

    dry = headline.run_ended(ctx, RunOutcome("r1", RunStatus.DRY_RUN, "v3", metrics=metrics))
    assert dry.startswith("**Dry run**: passed the gate; nothing published")
    superseded = headline.run_ended(ctx, RunOutcome("r1", RunStatus.SUPERSEDED, "v3", model_version="v0005"))
    assert superseded.startswith("**Superseded**") and "`v0005`" in superseded

    rejected = RunOutcome("r1", RunStatus.REJECTED, "v3", approval=ApprovalRecord(
        Decision.REJECTED, by="mia", at="t", comment="slice looks off"))
    assert headline.run_ended(ctx, rejected) == ("**Rejected**: passed the gate, rejected by mia: “slice looks off”; "
                                                 "nothing published.")
    timed_out = RunOutcome("r1", RunStatus.REJECTED, "v3", approval=ApprovalRecord(
        Decision.REJECTED, by=None, at="t", timed_out=True))
    assert "nobody answered in time (counts as Reject)" in headline.run_ended(ctx, timed_out)

    assert headline.awaiting_approval(ctx, report=LINK).startswith("**Waiting for approval**: passed the gate; "
                                                                   "approve or reject it in Required Actions (no "
                                                                   "answer in 24 h counts as Reject)")
    assert headline.nothing_new(ctx, True, Discovery()) is None            # the run goes on: no headline yet
    quiet = headline.nothing_new(ctx, False, Discovery(waiting={"batch-7": "no manifest yet"}))
    assert quiet.startswith("**Nothing new**") and "1 export still uploading" in quiet
    quarantined = headline.nothing_passed(ctx, False, MergedDataset(None, quarantined={"bad": None}))
    assert quarantined.startswith("**Nothing new passed validation**: quarantined bad;")


def test_no_login_is_said_plainly_where_the_approver_is_anonymous(tmp_path):
    approved = RunOutcome("r1", RunStatus.PUBLISHED, "v3", model_version="v0002", approval=ApprovalRecord(
        Decision.APPROVED, by="Anonymous", at="t", comment="ok"))
    text = headline.run_ended(_ctx(tmp_path), approved)
    assert "approved by Anonymous (no login: anyone who opens this UI can answer)" in text
    assert headline.approver("Anonymous", via="cli") == "Anonymous"   # a name given on the command line is a name


def test_upload_text_in_a_headline_makes_no_markup_or_links(tmp_path):
    hostile = "export=[click](http://evil.example) <img src=x onerror=alert(1)> **bold**"
    refused = headline.run_ended(_ctx(tmp_path), RunOutcome("r1", RunStatus.GATE_FAILED, "v3",
                                                             gate=GateDecision(False, [hostile])))
    reason = refused.split("\n- ", 1)[1]
    assert not re.search(r"(?<!\\)[\[\]()<>*]", reason), reason       # every markup character escaped
    assert r"\[click\]\(http\://evil.example\)" in reason
    quarantined = headline.nothing_passed(_ctx(tmp_path), False, MergedDataset(None, quarantined={"<b>x</b>": None}))
    assert r"quarantined \<b\>x\</b\>;" in quarantined


def test_the_nodes_that_end_a_run_declare_its_headline():
    with_headline = {node.name for node in RETRAINING.nodes if node.headline is not None}
    assert with_headline == {"should_run", "has_dataset", "approve", "publish", "record", "publish_approved", "reject"}


def test_a_dry_run_trains_even_when_nothing_is_new(tmp_path):
    """The form's dry_run is asked for to see a run through: it must not stop at "nothing new" (issue 29)."""
    quiet = Discovery(latest_dataset="v3", untrained_dataset=None)
    assert steps.should_run(_ctx(tmp_path), quiet) is False
    assert steps.should_run(_ctx(tmp_path, dry_run=True), quiet) is True
    assert RunRequest("r", dry_run=True).trains_anyway and not RunRequest("r").trains_anyway
