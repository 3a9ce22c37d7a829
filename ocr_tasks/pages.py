"""The HTML pages people open (the run report, the labellers' ranking), from the Jinja2 templates
in ocr_tasks/templates/.

Every value a template shows is escaped (autoescape): export and file names, transcriptions and
reasons come from uploads and are data, never markup. A variable a template names but is not
given is an error, not an empty cell (StrictUndefined).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2


def fmt(value: object, digits: int = 4) -> str:
    """A value as the pages show it: a float to `digits` places, None as a dash."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.PackageLoader("ocr_tasks", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    environment.filters["fmt"] = fmt
    return environment


def render(template: str, **context: object) -> str:
    """The page `template` (a file in ocr_tasks/templates/) makes of `context`."""
    return _environment().get_template(template).render(**context)


def write(out: Path, template: str, **context: object) -> Path:
    """`render` into the file `out` (UTF-8), its folder made; returns `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(template, **context), encoding="utf-8")
    return out
