"""The retraining pipeline, declared once: every step, what it takes, what it makes, where it runs.

`ocr-retrain run` (ocr_tasks/flow/local_runner.py) and the Airflow DAG `ocr_retraining`
(dags/ocr_retraining.py through ocr_tasks/flow/airflow_runner.py) both run exactly this. Adding a
step is one `Node` here and its function in ocr_tasks/flow/steps/ (one module per stage); `ocr-retrain graph` prints
the chain (the picture in README.md and docs/pipeline.md is checked against it by tests/flow/test_pipeline.py).
"""

from __future__ import annotations

from functools import partial

from ocr_tasks.flow import headline, steps
from ocr_tasks.flow.pipeline import Approval, Node, Pipeline, Role
from ocr_tasks.release.approval import APPROVE, REJECT, approval_record
from ocr_tasks.vocabulary import DET, REC

# what every end of a run reads to write run.json, the report and the manifest
_RUN_ARTIFACTS = ("merged", "evaluation", "exported", "served", "decision", "compared")


def _train(kind: str) -> Node:
    return Node(f"train_{kind}", partial(steps.train, kind=kind), inputs=("merged",), output=f"trained_{kind}",
                after=("has_dataset",), when=steps.wants(kind), on_gpu=True,
                doc=f"train {kind}; a retry resumes from the checkpoints in storage")


RETRAINING = Pipeline("ocr_retraining", (
    Node("discover", steps.discover, output="discovery",
         doc="the new exports under incoming/, those still uploading, the datasets' state"),
    Node("should_run", steps.should_run, inputs=("discovery",), role=Role.SHORT_CIRCUIT,
         headline=headline.nothing_new, doc="go on when forced, when an export is new, or when the latest dataset was never trained on"),
    Node("check_export", steps.check_export, inputs=("discovery",), map_over=("discovery", "new"),
         output="checks", after=("should_run",), doc="Great Expectations suites; a failing export is quarantined"),
    Node("merge", steps.merge, inputs=("checks",), output="merged", after=("should_run",), joins_optional=True,
         doc="the exports that passed, merged and split 6:2:2 into a new dataset version"),
    Node("has_dataset", steps.has_dataset, inputs=("merged",), role=Role.SHORT_CIRCUIT, headline=headline.nothing_passed,
         doc="stop when nothing passed and the latest dataset is trained on"),
    Node("register_baseline", steps.register_baseline, inputs=("merged",), output="stock_baseline",
         after=("has_dataset",), when=steps.first_run_with_a_baseline, on_gpu=True,
         doc="the model the team runs today (baseline.*) made production before the first fine-tune"),
    _train(DET),
    _train(REC),
    Node("evaluate", steps.evaluate, inputs=("merged", f"trained_{DET}", f"trained_{REC}", "stock_baseline"),
         output="evaluation", joins_optional=True,
         doc="test-split metrics, new and production's (the stock baseline's on the first night)"),
    Node("export", steps.export, inputs=("merged", "evaluation"), output="exported",
         doc="inference models for every PaddleOCR 3.x runtime, under runs/<run_id>/bundle/"),
    Node("infra_validate", steps.infra_validate, inputs=("merged", "exported"), output="served",
         doc="the consumer runtimes read the test split with the exported bundle"),
    Node("compare", steps.compare, inputs=("merged", "evaluation", "exported", "served"), output="compared",
         doc="new beside production on slices of the test split and on the reference sets (the new model's "
             "test reads are infra validation's)"),
    Node("gate", steps.gate, inputs=("evaluation", "served", "compared"), output="decision",
         doc="thresholds, regressions, runtimes, slices, reference sets"),
    Node("route", steps.route, inputs=("decision",), role=Role.BRANCH, branches=("publish", "approve", "record"),
         doc="publish, ask a person first (approval.required), or record a run that does not publish"),
    Node("publish", steps.publish, inputs=_RUN_ARTIFACTS, output="published", publishes=True,
         headline=headline.run_ended,
         doc="the next version, made production"),
    Node("approve", None, inputs=("merged", "evaluation", "served", "decision", "compared"), output="approval",
         role=Role.APPROVAL, approval=Approval(options={APPROVE: "publish_approved", REJECT: "reject"},
                                               default=REJECT, request=steps.approval_request,
                                               record=approval_record, by_hand=steps.approval_by_hand),
         headline=headline.awaiting_approval,
         doc="a person approves or rejects in the Airflow UI (Reject when nobody answers in time)"),
    Node("record", steps.record, inputs=_RUN_ARTIFACTS, output="recorded", headline=headline.run_ended,
         doc="a run that does not publish (gate failed, dry run): its report and run.json"),
    Node("publish_approved", steps.publish, inputs=(*_RUN_ARTIFACTS, "approval"), output="published_approved",
         publishes=True, headline=headline.run_ended, doc="publish, after a person approved it"),
    Node("reject", steps.record, inputs=(*_RUN_ARTIFACTS, "approval"), output="rejected", headline=headline.run_ended,
         doc="recorded as rejected, nothing published"),
), doc=__doc__ or "")
