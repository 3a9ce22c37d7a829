"""Notifications (ocr_tasks/flow/notify.py): a real local webhook receiver and a real SMTP conversation.

No mocks: the webhook is an HTTP server on a loopback port, the mail server a minimal
SMTP responder on another; what they receive is what a Slack channel or an inbox would.
"""

from __future__ import annotations

import logging
import socketserver
import threading

import pytest

from ocr_tasks.flow import notify
from ocr_tasks.config import NotificationsConfig, load_config


class _SMTP(socketserver.StreamRequestHandler):
    messages: list[dict] = []

    def handle(self) -> None:
        envelope: dict = {"rcpt": [], "data": ""}
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            command = line.decode().strip()
            upper = command.upper()
            if upper.startswith(("EHLO", "HELO")):
                self.wfile.write(b"250 test\r\n")
            elif upper.startswith("MAIL FROM"):
                envelope["from"] = command
                self.wfile.write(b"250 OK\r\n")
            elif upper.startswith("RCPT TO"):
                envelope["rcpt"].append(command)
                self.wfile.write(b"250 OK\r\n")
            elif upper == "DATA":
                self.wfile.write(b"354 go on\r\n")
                data = []
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data.append(chunk.decode())
                envelope["data"] = "".join(data)
                type(self).messages.append(envelope)
                self.wfile.write(b"250 queued\r\n")
            elif upper == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp(monkeypatch):
    _SMTP.messages = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTP)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(notify.SMTP_ENV, "127.0.0.1")
    monkeypatch.setenv("OCR_RETRAIN_SMTP_PORT", str(server.server_address[1]))
    yield _SMTP.messages
    server.shutdown()


def test_nothing_is_sent_unless_configured(monkeypatch):
    monkeypatch.delenv(notify.WEBHOOK_ENV, raising=False)
    alert = notify.gate_failed("r1", ["rec acc 0.5 is not > 0.9"], None)
    assert notify.notify(alert, NotificationsConfig()) == []


def test_gate_failure_reaches_the_webhook_with_the_missed_metric(webhook):
    alert = notify.gate_failed("scheduled__2026", ["rec acc 0.812 is not > 0.9"], "s3://b/runs/x/report/summary.html")
    assert notify.notify(alert, NotificationsConfig()) == ["webhook"]
    (payload,) = webhook
    assert payload["event"] == "gate_failed" and payload["run_id"] == "scheduled__2026"
    assert "missed: rec acc 0.812 is not &gt; 0.9" in payload["text"]   # chat text escaped the way Slack reads it
    assert payload["details"] == ["missed: rec acc 0.812 is not > 0.9"]
    assert "s3://b/runs/x/report/summary.html" in payload["text"]


def test_events_not_listed_are_not_sent(webhook):
    settings = NotificationsConfig(events=["task_failed"])
    assert notify.notify(notify.gate_failed("r", ["x"], None), settings) == []
    assert notify.notify(notify.task_failed("train_det", "r", 3, "EngineError: boom"), settings) == ["webhook"]
    assert [p["event"] for p in webhook] == ["task_failed"]
    assert "task train_det of run r FAILED (try 3)" in webhook[0]["text"]


def test_unreachable_webhook_is_a_warning_that_does_not_leak_the_url(monkeypatch, caplog):
    monkeypatch.setenv(notify.WEBHOOK_ENV, "http://127.0.0.1:9/hooks/T0K3N-secret")
    with caplog.at_level(logging.WARNING, logger="ocr_tasks.flow.notify"):
        assert notify.notify(notify.gate_failed("r", ["x"], None), NotificationsConfig()) == []
    assert "not delivered" in caplog.text and notify.WEBHOOK_ENV in caplog.text
    assert "T0K3N" not in caplog.text


def test_email_goes_to_the_configured_addresses(smtp, monkeypatch):
    monkeypatch.delenv(notify.WEBHOOK_ENV, raising=False)
    settings = NotificationsConfig(email_to=["ocr-team@example.com", "oncall@example.com"])
    alert = notify.export_quarantined("batch_07", "export batch_07: FAILED (3 images)\n"
                                      "  FAIL polygon outside the image: 1 row(s) [expect_column_values_to_be_in_set "
                                      "on boxes.inside_image]\n       Label.txt:8 box 0: False", "s3://b/quarantine/x/")
    assert notify.notify(alert, settings) == ["email"]
    (message,) = smtp
    assert len(message["rcpt"]) == 2 and "ocr-team@example.com" in message["rcpt"][0]
    assert "Subject: [ocr-retrain] export batch_07 QUARANTINED" in message["data"]
    assert "Label.txt:8 box 0" in message["data"] and "inside_image" in message["data"]


def test_email_without_smtp_server_is_a_warning(monkeypatch, caplog):
    monkeypatch.delenv(notify.SMTP_ENV, raising=False)
    monkeypatch.delenv(notify.WEBHOOK_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="ocr_tasks.flow.notify"):
        assert notify.notify(notify.gate_failed("r", ["x"], None), NotificationsConfig(email_to=["a@b.c"])) == []
    assert notify.SMTP_ENV in caplog.text


def test_quarantine_during_ingest_notifies_which_export_and_expectation(storage, tmp_path, webhook):
    from tests.kit import break_label_file, export, ingest

    bad = export(tmp_path / "a", "bad_batch", n_images=6, seed=3)
    break_label_file(bad)
    storage.upload_dir(bad, "incoming/bad_batch")
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"storage.bucket={storage.settings.bucket}"])
    ingest(storage, config)
    (payload,) = webhook
    assert payload["event"] == "export_quarantined"
    assert "export bad_batch QUARANTINED" in payload["title"]
    assert "Label.txt:3" in payload["text"]                       # the line a labeller fixes
    assert payload["link"].startswith(f"s3://{storage.settings.bucket}/quarantine/bad_batch/")


def test_config_rejects_unknown_events_and_bad_addresses(tmp_path):
    from ocr_tasks.errors import UsageError

    with pytest.raises(UsageError, match="notifications.events"):
        load_config(overrides=["notifications.events=[gate_failed, typo]"])
    with pytest.raises(UsageError, match="email_to"):
        load_config(overrides=["notifications.email_to=[not-an-address]"])
