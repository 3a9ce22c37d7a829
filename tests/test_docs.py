"""The docs: README.md is the front page (short, every page it links to exists) and the manual under docs/ builds
as a MkDocs site with --strict (a link to a missing page or heading, or a page left out of the nav, fails), offline,
with the MkDocs and Material pinned in runtimes/docs.lock (`make docs-env`, which `make test` runs)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.kit import REPO

MKDOCS = REPO / ".venv-docs" / "bin" / "mkdocs"
README = REPO / "README.md"
README_MAX_LINES = 200    # a front page: what it does, the two commands, where results land, the map of the docs


def test_the_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines: keep it a front page, move the detail into a page under docs/")


def test_every_page_the_readme_links_to_exists():
    text = README.read_text(encoding="utf-8")
    targets = {target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
               if not re.match(r"[a-z]+:", target) and not target.startswith("#")}
    assert any(t.startswith("docs/") for t in targets), "README.md links to no page of the manual"
    missing = sorted(t for t in targets if not (REPO / t).exists())
    assert not missing, f"README.md links to pages that do not exist: {missing}"


@pytest.mark.skipif(not MKDOCS.is_file(), reason="the docs environment is not built (.venv-docs): `make docs-env` "
                                                 "(make test does)")
def test_the_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(MKDOCS), "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (site / "index.html").is_file() and (site / "operate" / "airflow-ui.html").is_file()
    # the consumer snippets the demo test runs are on the page the README sends consumers to
    consumers = (site / "consumers.html").read_text(encoding="utf-8")
    assert "PaddleOCR" in consumers and "RapidOCR" in consumers
