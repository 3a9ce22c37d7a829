"""The run's outcome in one short Markdown note: what a person sees on the run in the Airflow UI (the DAG run
note, set by the task that decided it; ocr_tasks/flow/airflow_runner.py). `ocr-retrain run` prints the same
outcome in full from run.json (ocr_tasks/cli.py).

Every way a run ends has its headline: published, superseded, refused by the gate (with its first reasons),
dry run, rejected, waiting for approval, nothing new. A node declares its headline (`Node.headline`:
(ctx, its artifact, its inputs..., report=link) -> text or None). Reasons and names can quote uploads (export names in
slice names): they pass through `for_markdown`, so a note never carries markup or links from an upload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ocr_tasks.untrusted import for_markdown
from ocr_tasks.vocabulary import DRY_RUN, GATE_FAILED, PUBLISHED, REJECTED, SUPERSEDED

if TYPE_CHECKING:
    from ocr_tasks.flow.run import Discovery, MergedDataset, RunContext, RunOutcome

FIRST_REASONS = 3                       # the gate's reasons a note shows; the report has them all
REASON_CHARS = 200                      # each cut there: Airflow keeps 1000 characters of a note, the link included
REPORT_ROUTE = "/ocr-retrain/reports"   # where the Airflow plugin serves a run's report (ocr_tasks/flow/airflow_plugin.py)


def report_path(dag_id: str, run_id: str) -> str:
    """The report of a run as the Airflow api-server serves it (a path on the UI's own origin: the browser sends
    its Airflow login with it, and storage credentials never leave the server)."""
    return f"{REPORT_ROUTE}/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/summary.html"


def nothing_new(ctx: RunContext, go: bool, discovery: Discovery | None = None, **_: Any) -> str | None:
    """should_run's headline when it stops the run."""
    if go:
        return None
    waiting = len(discovery.waiting) if discovery else 0
    more = f" ({waiting} export{'s' if waiting != 1 else ''} still uploading, left for the next run)" if waiting else ""
    return ("**Nothing new**: no new export under incoming/ and the latest dataset is already trained on"
            f"{more}. Trigger with `force` to train anyway.")


def nothing_passed(ctx: RunContext, go: bool, merged: MergedDataset | None = None, **_: Any) -> str | None:
    """has_dataset's headline when every new export was quarantined."""
    if go:
        return None
    quarantined = sorted((merged.quarantined if merged else {}) or {})
    names = ", ".join(for_markdown(name) for name in quarantined[:FIRST_REASONS])
    extra = f" and {len(quarantined) - FIRST_REASONS} more" if len(quarantined) > FIRST_REASONS else ""
    return (f"**Nothing new passed validation**: quarantined {names}{extra}; the latest dataset is already "
            "trained on." if quarantined else "**Nothing new passed validation**; the latest dataset is already trained on.")


def awaiting_approval(ctx: RunContext, *_: Any, report: str | None = None) -> str:
    timeout = ctx.config.approval.timeout_h
    return (f"**Waiting for approval**: passed the gate; approve or reject it in Required Actions (no answer in "
            f"{timeout:g} h counts as Reject).{_report_link(report)}")


def run_ended(ctx: RunContext, outcome: RunOutcome, *_: Any, report: str | None = None) -> str:
    """publish's, record's and reject's headline, from the run's outcome (run.json)."""
    link = _report_link(report)
    model = f"`{ctx.config.model_name}`"
    if outcome.status == PUBLISHED:
        approved = outcome.approval
        by = f", approved by {approver(approved.by, approved.via)}" if approved else ""
        return f"**Published** {model} `{outcome.model_version}`, now production{by}.{_metrics(outcome)}{link}"
    if outcome.status == SUPERSEDED:
        return (f"**Superseded**: stored as {model} `{outcome.model_version}`, not made production: another run "
                f"moved production after this run's gate.{link}")
    if outcome.status == GATE_FAILED:
        reasons = list(outcome.gate.reasons if outcome.gate else [])
        shown = "".join(f"\n- {for_markdown(_cut(reason))}" for reason in reasons[:FIRST_REASONS])
        more = f"\n- … and {len(reasons) - FIRST_REASONS} more in the report" if len(reasons) > FIRST_REASONS else ""
        return (f"**Refused by the gate** ({len(reasons)} check{'s' if len(reasons) != 1 else ''} failed); "
                f"production unchanged:{shown}{more}{link}")
    if outcome.status == REJECTED:
        record = outcome.approval
        if record is not None and record.timed_out:
            who = "nobody answered in time (counts as Reject)"
        else:
            who = f"rejected by {approver(record.by, record.via) if record else 'nobody'}"
        why = f": “{for_markdown(_cut(record.comment))}”" if record and record.comment else ""
        return f"**Rejected**: passed the gate, {who}{why}; nothing published.{link}"
    if outcome.status == DRY_RUN:
        return f"**Dry run**: passed the gate; nothing published (the `dry_run` Param).{_metrics(outcome)}{link}"
    return f"**{for_markdown(outcome.status)}**{link}"


def approver(by: str | None, via: str = "airflow") -> str:
    """Who answered, said plainly when the Airflow has no login (`make ui`: everyone is an admin, named Anonymous)."""
    if not by:
        return "nobody"
    if via == "airflow" and by.lower() == "anonymous":
        return "Anonymous (no login: anyone who opens this UI can answer)"
    return for_markdown(by)   # escaped text, not a code span: escapes are not undone inside backticks


def _cut(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 1] + "…"


def _metrics(outcome: RunOutcome) -> str:
    from ocr_tasks.release.gate import KEY_METRICS

    shown = [f"{kind} {KEY_METRICS[kind]} {metrics[KEY_METRICS[kind]]:.3f}"
             for kind, metrics in sorted((outcome.metrics or {}).items())
             if isinstance((metrics or {}).get(KEY_METRICS.get(kind, "")), (int, float))]
    return f" Test split: {', '.join(shown)}." if shown else ""


def _report_link(report: str | None) -> str:
    return f"\n\n[Open the report]({report})" if report else ""
