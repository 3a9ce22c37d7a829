"""Strings from uploads (export and file names, transcriptions, reasons quoting them) are data wherever they
land: one helper per kind of output, used by every writer of that kind.

    HTML          Jinja2 autoescape (ocr_tasks/pages.py); names GX renders: ingest/validate.py `gx_name`
    Markdown      `for_markdown`: the approval request a person reads in the Airflow UI
    chat          `for_chat`: webhook text (Slack, Mattermost, Teams): no mentions, links or markup
    logs          `for_log`: one line, control and direction characters shown, never obeyed

Bidirectional controls (U+202A-U+202E, U+2066-U+2069) can make `gpj.exe` read as `exe.jpg`; they are
shown as their code point in all three.
"""

from __future__ import annotations

import re

_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# what can make markup in a line of Markdown: code, emphasis, links and images, HTML, table cells, entities,
# (`_` and `.` stay: intraword underscores are not emphasis, and names are full of both)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]()!|<>~&:])")   # `:` too: no bare-URL autolinks
_MENTION = re.compile(r"@(?=\w)")


def _shown(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group()):04X}>"


def for_markdown(text: object) -> str:
    """Literal text inside Markdown (a table cell, a sentence): no markup, links, HTML or new table cells."""
    value = _BIDI.sub(lambda m: f"U+{ord(m.group()):04X}", str(text))
    value = _CONTROL.sub(" ", value)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", value)


def for_chat(text: object) -> str:
    """Literal text in a chat message: Slack's own escaping of & < > (so `<!channel>`, `<@U1>`, `<url|x>` stay
    text), and a word joiner after each @ so `@channel`, `@here`, `@all`, `@someone` ping nobody."""
    value = _BIDI.sub(lambda m: f"U+{ord(m.group()):04X}", str(text))
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", value)


def for_log(text: object) -> str:
    """One log line: newlines and other control characters escaped (no forged lines), bidi controls shown."""
    value = _BIDI.sub(_shown, str(text))
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)
