"""Strings from uploads are data wherever they land: one hostile corpus through every writer of Markdown
(the approval request), chat (the webhook) and logs (ocr_tasks/untrusted.py); HTML pages are in
tests/test_pages.py, tests/release/test_report.py and GX's Data Docs in tests/ingest/test_hostile_uploads.py."""

from __future__ import annotations

import logging

import pytest
from markdown_it import MarkdownIt

from ocr_tasks.config import load_config
from ocr_tasks.flow.notify import export_quarantined, notify
from ocr_tasks.flow.run import RunOutcome
from ocr_tasks.release.approval import approval_markdown
from ocr_tasks.untrusted import for_chat, for_log, for_markdown

HOSTILE = [
    "<script>document.body.dataset.pwned=1</script>",
    'x<img src=q onerror="document.body.dataset.pwned=1">',
    "shop|<img src=x>|[click](javascript:alert(1))",
    "![pixel](http://tracker.example/p.png)",
    "`code` **bold** ~~gone~~ <!-- hidden -->",
    "<!channel> <!here> <@U024BE7LH> <http://evil.example|your bank> @here @channel @all",
    "invoice\u202egpj.exe",
    "two\nlines\r\nforged: [ERROR] fake",
    "https://evil.example/login",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_markdown_the_approver_reads_shows_names_as_text(name):
    outcome = RunOutcome("r1", "awaiting-approval", "ds1", metrics={"det": {"hmean": 0.9}},
                         comparison={"slices": {"det": {f"export={name}": {"samples": 30, "new": {"hmean": 0.9},
                                                                           "production": {"hmean": 0.8}}}},
                                     "references": {name: {"det": {"samples": 20, "new": {"hmean": 0.9},
                                                                   "production": {"hmean": 0.9}}}}})
    _, body = approval_markdown("ocr", outcome, 24, "s3://b/runs/r1/report/summary.html")
    html = MarkdownIt("commonmark", {"html": True, "linkify": True}).enable(["table", "linkify"]).render(body)
    assert "<script" not in html and "<img" not in html and "<a " not in html and "<!--" not in html
    assert "<code>code</code>" not in html                      # a name cannot open a code span
    assert "<strong>bold" not in html and "<s>" not in html and "\u202e" not in html
    for table in html.split("<table>")[1:]:     # every row keeps its columns: no cells added by a name
        head = table.split("</thead>")[0].count("<th>")
        assert {row.count("<td>") for row in table.split("</tbody>")[0].split("<tr>")[2:]} <= {head}


def test_chat_gets_no_mentions_links_or_markup(webhook):
    notify(export_quarantined(HOSTILE[5], "refused\n" + "\n".join(HOSTILE), None, "r1"), load_config().notifications)
    (payload,) = webhook
    text = payload["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<@U024BE7LH>" not in text and "<http" not in text
    assert "@here" not in text and "@channel" not in text and "@all" not in text
    assert "<script" not in text and "\u202e" not in text and "U+202E" in text
    assert payload["title"].startswith("export <!channel>")       # the structured fields keep the data as it is


def test_logs_get_one_line_per_record_and_no_direction_tricks(caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("ocr_tasks.test").warning("export %s QUARANTINED", for_log(HOSTILE[7] + HOSTILE[6]))
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
    assert "\\n" in record.getMessage() and "<U+202E>" in record.getMessage()


@pytest.mark.parametrize("name", HOSTILE)
def test_every_helper_keeps_the_text_readable(name):
    """Neutralised, not erased: a person still reads what the labeller wrote."""
    for helper in (for_markdown, for_chat, for_log):
        shown = helper(name)
        assert "pwned" not in name or "pwned" in shown
        assert len(shown) >= len(name.replace("\u202e", "")) - 2
