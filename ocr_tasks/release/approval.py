"""A person's approval between gate and publish (config `approval`, the DAG's `require_approval` Param).

In the DAG it is Airflow 3's human-in-the-loop: the `approve` task (the standard provider's
HITLBranchOperator with Approve / Reject) shows `approval_markdown`'s subject and body in the
UI's Required Actions, with a comment field. Approve runs publish; Reject, or no answer within
`approval.timeout_h`, runs `reject`, which records the run as rejected and publishes nothing.
`approval_record` turns the operator's answer into what run.json and the manifest keep:

    {"decision": "approved" | "rejected", "by": "<user>" | null, "at": "<time>", "comment": "...",
     "timed_out": bool, "via": "airflow" | "cli"}

`ocr-retrain run --approved-by NAME` is the same approval given on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ocr_tasks.release.gate import KEY_METRICS
from ocr_tasks.untrusted import for_markdown
from ocr_tasks.vocabulary import Decision, timestamp

APPROVE, REJECT = "Approve", "Reject"


def approval_markdown(model: str, outcome: Any, timeout_h: float, report_uri: str, *,
                      report_link: str | None = None) -> tuple[str, str]:
    """The subject and Markdown body a person reads before deciding; `report_link`: the report as the browser
    opens it (the Airflow UI serves it), else its storage URI alone."""
    baseline = outcome.baseline or {}
    lines = [f"Run **{outcome.run_id}** trained on dataset `{outcome.dataset_version}` and **passed the gate**. "
             f"Approve publishes it as the next version of `{model}` and makes it production "
             f"(now: `{baseline.get('version') or 'none'}`{', the stock baseline' if baseline.get('stock') else ''}); "
             f"Reject keeps it out. No answer in {timeout_h:g} h "
             "counts as Reject.", "", "| model | metric | new | production |", "|---|---|---|---|"]
    for kind, metrics in sorted((outcome.metrics or {}).items()):
        before = (baseline.get(kind) or {}).get(KEY_METRICS.get(kind, ""))
        lines.append(f"| {kind} | {KEY_METRICS.get(kind)} | {_fmt(metrics.get(KEY_METRICS.get(kind, '')))} | {_fmt(before)} |")
    comparison = outcome.comparison or {}
    rows = [(kind, name, entry) for kind, slices in sorted((comparison.get("slices") or {}).items())
            for name, entry in sorted(slices.items())]
    if rows:
        lines += ["", "**Slices of the test split** (exported models, new vs production)", "",
                  "| model | slice | samples | new | production |", "|---|---|---|---|---|"]
        lines += [f"| {kind} | {for_markdown(name)} | {entry['samples']} | {_fmt((entry.get('new') or {}).get(KEY_METRICS[kind]))} | "
                  f"{_fmt((entry.get('production') or {}).get(KEY_METRICS[kind]))} |" for kind, name, entry in rows]
    references = comparison.get("references") or {}
    if references:
        lines += ["", "**Reference sets**", "", "| set | model | samples | new | production |", "|---|---|---|---|---|"]
        lines += [f"| {for_markdown(name)} | {kind} | {entry['samples']} | {_fmt((entry.get('new') or {}).get(KEY_METRICS[kind]))} | "
                  f"{_fmt((entry.get('production') or {}).get(KEY_METRICS[kind]))} |"
                  for name, kinds in sorted(references.items()) for kind, entry in sorted(kinds.items())]
    checks = outcome.gate.checks if outcome.gate else []
    lines += ["", f"Gate: {sum(1 for c in checks if c.passed)} of {len(checks)} checks passed.", ""]
    if report_link:
        lines += [f"**[Open the report]({report_link})**: the worst samples as pictures, new beside production, and "
                  f"the training curves (stored at `{report_uri}`)."]
    else:
        lines += [f"Report (worst samples as pictures, curves): `{report_uri}`"]
    lines += ["", "Write your reason below, then Approve or Reject: it is kept with your name in run.json and, "
                  "for a publish, in the model's manifest."]
    return f"Publish {model} from run {outcome.run_id}?", "\n".join(lines)


@dataclass(frozen=True)
class ApprovalRecord:
    """What run.json and the manifest keep of a person's answer."""

    decision: Decision
    by: str | None                  # who answered; None: nobody (timed out, or `ocr-retrain run` without --approved-by)
    at: str
    comment: str | None = None
    timed_out: bool = False
    via: str = "airflow"            # airflow (Required Actions) or cli (--approved-by)

    @property
    def approved(self) -> bool:
        return self.decision is Decision.APPROVED


def approval_record(answer: dict[str, Any] | None, *, via: str = "airflow") -> ApprovalRecord:
    """The person's answer as the HITL operator gives it, as a record."""
    answer = answer or {}
    chosen = list(answer.get("chosen_options") or [])
    user = answer.get("responded_by_user") or None
    params = answer.get("params_input") or {}
    at = answer.get("responded_at")
    return ApprovalRecord(Decision.APPROVED if chosen == [APPROVE] else Decision.REJECTED,
                          by=(user.get("name") or user.get("id")) if isinstance(user, dict) else user,
                          at=at.isoformat() if hasattr(at, "isoformat") else (at or timestamp()),
                          comment=(params.get("comment") or None) if isinstance(params, dict) else None,
                          timed_out=user is None and bool(chosen), via=via)


def cli_approval(approved_by: str | None) -> ApprovalRecord:
    """`ocr-retrain run` asks nobody: approved when --approved-by names who approves, else rejected, saying why."""
    if approved_by:
        return ApprovalRecord(Decision.APPROVED, by=approved_by, at=timestamp(), via="cli")
    return ApprovalRecord(Decision.REJECTED, by=None, at=timestamp(), via="cli",
                          comment="approval.required is set and `ocr-retrain run` asks nobody: pass --approved-by NAME")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "—" if value is None else str(value)
