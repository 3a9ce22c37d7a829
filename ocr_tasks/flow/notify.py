"""Tell people when a night needs them: a task failed, an export was quarantined, the gate said no.

Which events notify is in the config (`notifications.events`); where they go is not,
because a webhook URL usually carries its token and an SMTP login is a secret:

- webhook: `$OCR_RETRAIN_ALERT_WEBHOOK`. A JSON POST with `text` (what Slack,
  Mattermost and Teams incoming webhooks display) plus the structured fields.
- email: to `notifications.email_to`, through `$OCR_RETRAIN_SMTP_HOST`
  (`$OCR_RETRAIN_SMTP_PORT`, default 25; 587 uses STARTTLS, 465 TLS;
  `$OCR_RETRAIN_SMTP_USER`/`_PASSWORD`/`_FROM` as needed).

Both are off unless configured. Sending never fails the run: a notification that
cannot be delivered is logged (without the URL or the password) and the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage

from ocr_tasks.config import NotificationsConfig
from ocr_tasks.untrusted import for_chat
from ocr_tasks.vocabulary import RunStatus

log = logging.getLogger(__name__)

EVENTS = ("task_failed", "export_quarantined", "gate_failed", "published")
WEBHOOK_ENV = "OCR_RETRAIN_ALERT_WEBHOOK"
SMTP_ENV = "OCR_RETRAIN_SMTP_HOST"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Alert:
    event: str                  # one of EVENTS
    title: str                  # one line: what happened, to what
    details: list[str] = field(default_factory=list)   # the lines a person needs to act
    link: str | None = None     # report / quarantine / log location
    run_id: str | None = None

    def text(self) -> str:
        lines = [f"[ocr-retrain] {self.title}", *self.details]
        if self.link:
            lines.append(f"report: {self.link}")
        return "\n".join(lines)


def notify(alert: Alert, settings: NotificationsConfig) -> list[str]:
    """Send `alert` on every configured channel; returns the channels it reached."""
    if alert.event not in settings.events:
        return []
    sent = []
    webhook = os.environ.get(WEBHOOK_ENV, "").strip()
    if webhook and _post_webhook(webhook, alert):
        sent.append("webhook")
    if settings.email_to and _send_email(alert, settings.email_to):
        sent.append("email")
    return sent


def _post_webhook(url: str, alert: Alert) -> bool:
    # what chat renders is `text`: literal (no mentions, links, markup); the fields stay as they are, as data
    body = json.dumps({"text": for_chat(alert.text()), **asdict(alert)}).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (the operator's URL)
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # the URL is a secret (Slack-style tokens live in it): name the variable, not the value
        log.warning("notification %s not delivered to the webhook in $%s: %s", alert.event, WEBHOOK_ENV,
                    getattr(exc, "reason", exc))
        return False


def _send_email(alert: Alert, to: list[str]) -> bool:
    host = os.environ.get(SMTP_ENV, "").strip()
    if not host:
        log.warning("notification %s: notifications.email_to is set but $%s is not; no email sent", alert.event,
                    SMTP_ENV)
        return False
    port = int(os.environ.get("OCR_RETRAIN_SMTP_PORT", "25"))
    message = EmailMessage()
    message["Subject"] = f"[ocr-retrain] {alert.title}"
    message["From"] = os.environ.get("OCR_RETRAIN_SMTP_FROM") or f"ocr-retrain@{socket.gethostname()}"
    message["To"] = ", ".join(to)
    message.set_content(alert.text())
    try:
        smtp_class = smtplib.SMTP_SSL if port == 465 else smtplib.SMTP
        with smtp_class(host, port, timeout=TIMEOUT_S) as smtp:
            if port == 587:
                smtp.starttls()
            user = os.environ.get("OCR_RETRAIN_SMTP_USER")
            if user:
                smtp.login(user, os.environ.get("OCR_RETRAIN_SMTP_PASSWORD", ""))
            smtp.send_message(message)
        return True
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("notification %s not emailed via %s:%d: %s", alert.event, host, port, exc)
        return False


# --------------------------------------------------------------------------- the pipeline's alerts


def export_quarantined(export: str, summary: str, report_uri: str | None, run_id: str | None = None) -> Alert:
    return Alert("export_quarantined", f"export {export} QUARANTINED: it failed validation",
                 details=summary.splitlines()[1:21], link=report_uri, run_id=run_id)


def images_left_out(export: str, count: int, summary: str, report_uri: str | None) -> Alert:
    """Sent to whoever hears of quarantines (same event): the labellers have images to fix."""
    return Alert("export_quarantined", f"export {export} merged WITHOUT {count} image(s): their boxes cannot be used",
                 details=summary.splitlines()[1:21], link=report_uri)


def gate_failed(run_id: str, reasons: list[str], report_uri: str | None) -> Alert:
    return Alert("gate_failed", f"run {run_id}: the gate kept the new models out of production",
                 details=[f"missed: {reason}" for reason in reasons], link=report_uri, run_id=run_id)


def published(run_id: str, model: str, version: str, metrics: dict, report_uri: str | None) -> Alert:
    shown = "; ".join(f"{task} " + ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, (int, float)))
                      for task, m in sorted(metrics.items()))
    return Alert("published", f"model {model} {version} is in production", details=[shown], link=report_uri,
                 run_id=run_id)


def superseded(run_id: str, model: str, version: str, note: str, report_uri: str | None) -> Alert:
    return Alert("superseded", f"model {model} {version} passed the gate but is NOT in production",
                 details=[note], link=report_uri, run_id=run_id)


def rejected(run_id: str, model: str, approval: dict, report_uri: str | None) -> Alert:
    who = approval.get("by") or "nobody (no answer in time)"
    return Alert("rejected", f"run {run_id}: the {model} model passed the gate and was REJECTED by {who}",
                 details=[f"at {approval.get('at')}: {approval.get('comment') or 'no reason given'}"], link=report_uri,
                 run_id=run_id)


def task_failed(task: str, run_id: str, attempt: object, error: str, log_url: str | None = None) -> Alert:
    return Alert("task_failed", f"task {task} of run {run_id} FAILED (try {attempt})", details=[error],
                 link=log_url, run_id=run_id)


def notify_outcome(outcome: dict, model: str, settings: NotificationsConfig) -> list[str]:
    """The end of a run (run.json): a failed gate or a publish, as configured."""
    if outcome.get("status") == RunStatus.GATE_FAILED:
        alert = gate_failed(outcome["run_id"], list((outcome.get("gate") or {}).get("reasons") or []),
                            outcome.get("report_uri"))
    elif outcome.get("status") == RunStatus.PUBLISHED:
        alert = published(outcome["run_id"], model, outcome.get("model_version") or "?", outcome.get("metrics") or {},
                          outcome.get("report_uri"))
    elif outcome.get("status") == RunStatus.REJECTED:
        alert = rejected(outcome["run_id"], model, outcome.get("approval") or {}, outcome.get("report_uri"))
    elif outcome.get("status") == RunStatus.SUPERSEDED:
        alert = superseded(outcome["run_id"], model, outcome.get("model_version") or "?", outcome.get("note") or "",
                           outcome.get("report_uri"))
    else:
        return []
    return notify(alert, settings)
