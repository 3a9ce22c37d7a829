"""Run by the browser env's Python (make browser-env): a person's clicks in the Airflow UI of `ocr-retrain ui`, in
headless Chromium. One action per call; what it saw comes back as JSON on stdout, and screenshots go to OUT.

    .venv-browser/bin/python tests/browser/airflow_ui.py trigger  PORT OUT '{"force": true, "models": "det", ...}'
    .venv-browser/bin/python tests/browser/airflow_ui.py answer   PORT OUT RUN_ID Approve|Reject "comment"
    .venv-browser/bin/python tests/browser/airflow_ui.py outcome  PORT OUT RUN_ID "Published"

trigger: the DAG page's Trigger button, the Params form filled field by field (switches, the models and
require_approval choices, numbers), submitted; gives the run id the UI created and the form's texts.
answer: Browse > Required Actions, the run's request opened, the reason typed, the button clicked; gives what the
form showed (the buttons' looks before and after the reason, whether they were enabled without one), then
clicks the request's report link and gives the report it opened.
outcome: the run's page, once its note shows the expected outcome; gives the page's text, then opens the run's
Report tab and gives the report's title and text.
"""

import json
import sys
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
DAG = "ocr_retraining"
WAIT_MS = 60_000      # a busy 2-core machine: the UI's queries share it with training


def _browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])


def _switch(page: Page, name: str, on: bool) -> None:
    box = page.locator(f"input[name=element_{name}]")
    if box.is_checked() != on:
        page.locator("label", has=box).click()
    expect(box).to_be_checked(checked=on)


def _choose(page: Page, name: str, value: str) -> None:
    field = page.locator(f"input[name=element_{name}]").locator("xpath=..")
    field.get_by_role("combobox").click()
    page.get_by_role("option", name=value, exact=True).click()
    expect(page.locator(f"input[name=element_{name}]")).to_have_value(value)


def trigger(page: Page, base: str, out: Path, params: dict) -> dict:
    page.goto(f"{base}/dags/{DAG}")
    page.get_by_role("button", name="Trigger").first.click()
    form = page.locator("[role=dialog][data-state=open]")
    expect(form.get_by_text("Run Parameters")).to_be_visible(timeout=WAIT_MS)
    described = {name: form.locator(f"[name=element_{name}]").get_attribute("aria-describedby") for name in params}
    helps = {name: page.locator(f"[id='{ref}']").inner_text() if ref else "" for name, ref in described.items()}
    for name, value in params.items():
        if isinstance(value, bool):
            _switch(page, name, value)
        elif isinstance(value, str):
            _choose(page, name, value)
        else:
            page.locator(f"input[name=element_{name}]").fill(str(value))
    page.screenshot(path=str(out / f"1-trigger-form-{len(list(out.glob('1-trigger-form*'))) + 1}.png"))
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/dags/{DAG}/dagRuns"),
                              timeout=WAIT_MS) as answer:
        page.get_by_test_id("trigger-dag-submit").click()
    run = answer.value.json()
    return {"run_id": run["dag_run_id"], "conf": run.get("conf"), "help": helps}


def answer(page: Page, base: str, out: Path, run_id: str, option: str, comment: str) -> dict:
    page.goto(f"{base}/required_actions")
    row = page.locator("tr", has_text=run_id)
    expect(row.get_by_text("Approval Required")).to_be_visible(timeout=WAIT_MS)
    page.screenshot(path=str(out / f"2-required-actions-{option.lower()}.png"))
    row.get_by_role("link", name="Publish").first.click()          # the request's subject
    form = page.locator("[data-testid^=hitl-option-]").first
    expect(form).to_be_visible(timeout=WAIT_MS)
    buttons = {name: page.get_by_test_id(f"hitl-option-{name}") for name in ("Approve", "Reject")}
    looks = {name: {"enabled_without_reason": button.is_enabled(),
                    "background": button.evaluate("b => getComputedStyle(b).backgroundColor")}
             for name, button in buttons.items()}
    body = page.locator("body").inner_text()
    report_links = page.get_by_role("link", name="Open the report").count()
    page.screenshot(path=str(out / f"2-approval-{option.lower()}.png"), full_page=True)
    reason = page.locator("[name=element_comment]")
    reason.fill(comment)
    expect(buttons[option]).to_be_enabled(timeout=WAIT_MS)
    for name, button in buttons.items():
        looks[name].update(enabled_with_reason=button.is_enabled(),
                           background_with_reason=button.evaluate("b => getComputedStyle(b).backgroundColor"))
    buttons[option].click()
    expect(buttons[option]).to_be_disabled(timeout=WAIT_MS)     # answered: the form locks
    page.screenshot(path=str(out / f"3-answered-{option.lower()}.png"), full_page=True)
    report = _open_link(page, "Open the report")                  # the request's report link, clicked
    return {"looks": looks, "body": body, "report_links": report_links, "report": report}


def outcome(page: Page, base: str, out: Path, run_id: str, expected: str) -> dict:
    page.goto(f"{base}/dags/{DAG}/runs/{run_id}")
    expect(page.get_by_text(expected).first).to_be_visible(timeout=WAIT_MS)    # the run's note, at the top
    shown = page.locator("body").inner_text()
    page.screenshot(path=str(out / f"4-outcome-{expected.lower().replace(' ', '-')}.png"))
    page.get_by_text("Report", exact=True).click()                           # the run's Report tab
    frame = page.frame_locator("iframe").first
    expect(frame.locator("h1").first).to_be_visible(timeout=WAIT_MS)
    pictures = frame.locator("img")
    expect(pictures.first).to_be_visible(timeout=WAIT_MS)
    next(f for f in page.frames if "/ocr-retrain/reports/" in f.url).wait_for_load_state("load")   # its pictures too
    tab = {"title": frame.locator("h1").first.inner_text(), "text": frame.locator("body").inner_text()[:6000],
           "src": page.locator("iframe").first.get_attribute("src"),
           "pictures": pictures.count(),
           "pictures_shown": pictures.evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")}
    page.screenshot(path=str(out / f"5-report-tab-{expected.lower().replace(' ', '-')}.png"))
    return {"shown": shown, "tab": tab}


def _open_link(page: Page, name: str) -> dict:
    """Click a link as a person does; the page it opens (a new tab or this one), its title and text."""
    link = page.get_by_role("link", name=name).first
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as opened:
            link.click()
        target = opened.value
    else:
        link.click()
        target = page
    target.wait_for_load_state()
    return {"url": target.url, "title": target.title(), "text": target.locator("body").inner_text()[:6000]}


def main() -> int:
    action, port, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        try:
            if action == "trigger":
                found = trigger(page, base, out, json.loads(sys.argv[4]))
            elif action == "answer":
                found = answer(page, base, out, sys.argv[4], sys.argv[5], sys.argv[6])
            else:
                found = outcome(page, base, out, sys.argv[4], sys.argv[5])
        except Exception:
            page.screenshot(path=str(out / f"failed-{action}.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
