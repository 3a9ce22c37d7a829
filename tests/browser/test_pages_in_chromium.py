"""The pages people open, opened as they open them: Chromium (headless) loads the run report, the GX Data Docs
of a quarantined export and the labellers' ranking, each fed the same hostile corpus (tests/test_untrusted.py's
HOSTILE: script tags, event-handler attributes, Markdown links to javascript:, chat mentions, bidi controls)
through the export's folder name, file names and transcriptions. No script may run, no handler may be planted,
and the text must still be there to read.

Needs Debian's `chromium` (/usr/bin/chromium) and `make browser-env` (Playwright's driver, never its browser
download); both are set up by `make test` and .ci/run where the machine allows, and the test skips, saying
which is missing, where not.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ocr_tasks.config import load_config
from tests.kit import REPO, edit_boxes, export
from tests.test_untrusted import HOSTILE

BROWSER_PYTHON = REPO / ".venv-browser" / "bin" / "python"
CDN = REPO / ".venv-browser" / "cdn"           # GX's CDN scripts, from the npm registry (make browser-env)
CHROMIUM = Path("/usr/bin/chromium")
MARKER = "pwned"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not BROWSER_PYTHON.exists() or not (CDN / ".done").exists(),
    reason="needs Chromium at /usr/bin/chromium (apt-get install chromium) and `make browser-env` (Playwright's "
           "driver; GX's CDN scripts through npm)")

# the folder name an S3 key can carry: no '/', and short enough for a filesystem
HOSTILE_EXPORT = 'shop<img src=q onerror="document.body.dataset.pwned=1">'


def _open(pages: list[Path]) -> dict[str, dict]:
    done = subprocess.run([str(BROWSER_PYTHON), str(Path(__file__).with_name("open_pages.py")), str(CDN), MARKER,
                           *map(str, pages)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _assert_inert(found: dict[str, dict]) -> None:
    for page, seen in found.items():
        assert not seen["ran"] and seen["dialogs"] == 0, (page, seen)
        assert seen["script_links"] == 0 and seen["marker_handlers"] == 0, (page, seen)


def test_no_script_runs_in_the_report_the_data_docs_or_the_ranking(tmp_path):
    from PIL import Image

    from ocr_tasks.ingest.check import check_local_export
    from ocr_tasks.prelabel.ranking import RankedImage, write_ranking
    from ocr_tasks.release.report import write_summary

    # the GX Data Docs of a quarantined export: a hostile folder name, hostile transcriptions on bad boxes
    folder = export(tmp_path / "labeller", HOSTILE_EXPORT, n_images=3, seed=5)
    for line, text in enumerate(HOSTILE[:3]):
        edit_boxes(folder, line, lambda boxes, text=text: [{**boxes[0], "transcription": text,
                                                            "points": [[5, 5]] * 4}] + boxes[1:])
    _, report = check_local_export(folder, load_config(), tmp_path / "docs")
    assert not report.success     # every image's box is broken: quarantined whole, with Data Docs
    docs = sorted((tmp_path / "docs").rglob("*.html"))
    assert len(docs) >= 2

    # the run report: the names and texts a run carries from uploads, in every section that shows them
    hostile = " ".join(HOSTILE)
    gate = {"passed": False, "reasons": [hostile], "checks": [
        {"model": "det", "metric": "hmean", "slice": f"export={HOSTILE_EXPORT}", "value": 0.4, "op": ">=",
         "threshold": 0.5, "passed": False}]}
    errors = {"rec_total": 1, "rec_wrong": 1, "confusions": [{"label": HOSTILE[0], "read": HOSTILE[1], "count": 1}],
              "rec": [{"picture": "errors/rec_00.jpg", "label": hostile, "new": HOSTILE[1], "new_score": 0.5,
                       "production": HOSTILE[2], "production_score": 0.4, "export": HOSTILE_EXPORT}]}
    comparison = {"production_version": "v1", "notes": HOSTILE, "slices": {"det": {
        f"export={name}": {"samples": 30, "new": {"hmean": 0.5}, "production": {"hmean": 0.9}} for name in HOSTILE}}}
    summary = write_summary(tmp_path / "report" / "summary.html", title=HOSTILE_EXPORT, facts={"exports": hostile},
                            metrics={"det": {"hmean": 0.4}}, baseline=None, gate=gate, curves=[],
                            exported={"newest": {"error": {"type": "OSError", "message": hostile}}},
                            comparison=comparison, errors=errors)

    # the labellers' ranking: image file names from an unlabelled batch
    batch = tmp_path / "batch"
    batch.mkdir()
    rows = []
    for rank, name in enumerate([f"{HOSTILE_EXPORT}.jpg", "a<svg onload=document.body.dataset.pwned=1>.png"], 1):
        Image.new("RGB", (60, 30), "white").save(batch / name)
        rows.append(RankedImage(rank, name, 0.9, 1, 0.1, 0.1, 0.2, f"why: {HOSTILE[0]}"))
    write_ranking(rows, tmp_path / "ranking", batch, model_version=HOSTILE[1])

    ranking = tmp_path / "ranking" / "ranking.html"
    found = _open([summary, ranking, *docs])
    _assert_inert(found)
    # neutralised, not erased: our pages still show the text (GX's show the export by its safe name, gx_name)
    assert found[str(summary)]["text_shows_marker"] and found[str(ranking)]["text_shows_marker"]
    assert str(tmp_path / "docs" / "index.html") in found and len([p for p in found if "/validations/" in p]) == 2


def test_the_check_itself_sees_a_script_that_runs(tmp_path):
    """The probe is not blind: an unescaped payload on a page is caught by it."""
    page = tmp_path / "raw.html"
    page.write_text(f"<html><body><p>{HOSTILE[1]}</p><a href=\"javascript:alert(1)\">x</a></body></html>")
    (seen,) = _open([page]).values()
    assert seen["ran"] and seen["script_links"] == 1 and seen["marker_handlers"] == 1
