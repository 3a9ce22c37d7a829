"""Run by the browser env's Python (make browser-env): open each HTML file in headless Chromium and say, as
JSON on stdout, what a hostile string managed there.

    .venv-browser/bin/python tests/browser/open_pages.py CDN_DIR MARKER page.html [page.html ...]

CDN_DIR holds the npm packages GX's Data Docs load from public CDNs (make browser-env): their URLs are
answered from it, so the tables those scripts build from the page's data are built here as in a person's
browser; every other request is refused (nothing leaves the machine).

Per page: `ran` (the marker script set document.body.dataset[MARKER]), `dialogs` (alert/confirm/prompt
opened), `script_links` (anchors whose href runs script: javascript:, other than the inert
`javascript:void(0)` of bootstrap-table's pager), `marker_handlers` (event-handler attributes
holding MARKER: a handler smuggled in as markup, even one that has not fired), and
`text_shows_marker` (the payload is still on the page, as text: neutralised, not erased).
"""

import json
import os
import re
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"

PROBE = """marker => ({
  ran: document.body.dataset[marker] !== undefined,
  script_links: [...document.querySelectorAll('a[href]')].map(a => a.href.trim().toLowerCase())
                  .filter(href => href.startsWith('javascript:') && href !== 'javascript:void(0)').length,
  marker_handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])
                     .filter(a => a.name.startsWith('on') && a.value.includes(marker)).length,
  text_shows_marker: document.body.innerText.includes(marker),
})"""


# CDN URL -> the same file in the npm package (the versions `make browser-env` packs)
_CDN = [
    (re.compile(r"https://unpkg\.com/([^@/]+)@[^/]+/(.+)"), "{0}/{1}"),
    (re.compile(r"https://cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/[^/]+/(.+)"), "{0}/dist/{1}"),
    (re.compile(r"https://(?:stackpath|maxcdn)\.bootstrapcdn\.com/(bootstrap)/[^/]+/(.+)"), "{0}/dist/{1}"),
    (re.compile(r"https://code\.jquery\.com/(jquery)-[\d.]+(\.min)?\.js"), "{0}/dist/jquery.min.js"),
]


def _local(cdn: Path, url: str) -> Path | None:
    for pattern, path in _CDN:
        match = pattern.fullmatch(url.split("?")[0])
        if match is not None:
            return cdn / path.format(*match.groups())
    return None


def _serve(root: Path) -> ThreadingHTTPServer:
    """The pages over http://127.0.0.1 (Chromium does not let a route answer a file:// page's requests)."""
    handler = partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> int:
    cdn, marker, pages = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    root = Path(os.path.commonpath([Path(page).resolve().parent for page in pages]))
    server = _serve(root)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    found = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        for page_path in pages:
            page = browser.new_page()
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            def answer(route, request):
                if request.url.startswith(origin + "/"):
                    route.continue_()
                    return
                local = _local(cdn, request.url)
                if local is not None and local.is_file():
                    route.fulfill(path=str(local))
                else:
                    route.abort()                   # nothing leaves the machine
            page.route("**/*", answer)
            page.goto(origin + "/" + quote(Path(page_path).resolve().relative_to(root).as_posix()), wait_until="load")
            page.wait_for_timeout(300)            # onerror handlers fire after load
            found[page_path] = {**page.evaluate(PROBE, marker), "dialogs": len(dialogs)}
            page.close()
        browser.close()
    server.shutdown()
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
