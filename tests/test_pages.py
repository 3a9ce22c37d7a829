"""The pages' templates: escaped, strict, and shipped with the package."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import jinja2
import pytest

from ocr_tasks import pages

REPO = Path(__file__).resolve().parent.parent


def test_a_value_is_text_and_a_missing_one_is_an_error():
    page = pages.render("ranking.html.j2", batch="<b>", model_version="v1", rows=[])
    assert "&lt;b&gt;: hardest first" in page and "<b>" not in page
    with pytest.raises(jinja2.UndefinedError):
        pages.render("ranking.html.j2", batch="b", rows=[])


def test_every_template_is_package_data():
    """The wheel and the image take ocr_tasks/templates/ only as far as pyproject's package-data says."""
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ocr_tasks"]
    templates = [p.relative_to(REPO / "ocr_tasks").as_posix() for p in (REPO / "ocr_tasks" / "templates").iterdir()]
    assert templates and [t for t in templates if not any(fnmatch(t, g) for g in globs)] == []
