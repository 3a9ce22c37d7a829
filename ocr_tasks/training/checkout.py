"""A PaddleOCR checkout as the training engine: what it needs installed, and configs named inside it.

A team's own PaddleOCR repository (a release tag such as v3.7.0, or their fork) is the engine
when ``training.engine_checkout`` names it: its ``tools/*.py`` run as they do by hand. Two
things follow from running someone else's repository, both decided here:

- **Its requirements.** ``tools/train.py`` imports what the checkout's ``requirements.txt``
  lists (a 3.3 checkout failed on ``lmdb``, missing from the pipeline's own environment). The
  check reads that file with PEP 508 rules and compares it with what is installed, so a worker
  with a missing package fails at once with one message naming every missing or wrong package
  and the pip line that fixes it, instead of a traceback minutes into a training task.
  The OpenCV distributions count as one: the checkout asks for ``opencv-python`` and the
  pipeline keeps only ``opencv-contrib-python`` (a superset; several distributions writing one
  ``cv2`` package break each other, see requirements.exclude).
- **Configs inside the engine.** A template ``engine:configs/rec/PP-OCRv6/PP-OCRv6_small_rec.yml``
  is that repository path of the engine, so teams train PaddleOCR's own PP-OCRv5/v6 configs
  without copies in this project. Relative paths inside such a config (PaddleOCR's are relative
  to the repository root, where people run tools/train.py) are made absolute against the engine
  when the file exists there; the pipeline runs the tools in each run's own folder.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = ["ENGINE_PREFIX", "Unmet", "absolute_engine_paths", "engine_config", "missing_requirements"]

ENGINE_PREFIX: Final = "engine:"
REQUIREMENTS_FILE: Final = "requirements.txt"
# one `cv2` package, several distributions that ship it
_OPENCV: Final = frozenset({"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                            "opencv-contrib-python-headless"})


@dataclass(frozen=True)
class Unmet:
    """One line of a requirements file this environment does not satisfy."""

    requirement: str | None      # what pip would install (None: the line is not a requirement pip reads)
    why: str                     # "not installed", "2.3.5 installed", or what is wrong with the line

    def __str__(self) -> str:
        return f"{self.requirement} ({self.why})" if self.requirement else self.why


def missing_requirements(requirements: Path) -> list[Unmet]:
    """The requirements of ``requirements`` this environment does not satisfy, each with why
    (``lmdb (not installed)``, ``numpy<2 (2.3.5 installed)``); empty when all are met.
    Lines whose environment marker does not apply here are skipped; pip options (``-r``,
    ``--index-url``) and URLs are not requirements of a package name and are skipped too."""
    problems = []
    for number, line in enumerate(requirements.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(Unmet(None, f"{requirements.name}:{number} {text!r} is not a requirement pip reads ({exc})"))
            continue
        if requirement.url or (requirement.marker is not None and not requirement.marker.evaluate()):
            continue
        installed = _installed_version(requirement.name)
        if installed is None:
            problems.append(Unmet(str(requirement), "not installed"))
        elif requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            problems.append(Unmet(str(requirement), f"{installed} installed"))
    return problems


def _installed_version(name: str) -> str | None:
    candidates = _OPENCV if canonicalize_name(name) in _OPENCV else {name}
    for candidate in sorted(candidates):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def engine_config(template: str, engine_root: Path, *, is_checkout: bool) -> Path:
    """The file an ``engine:<repository path>`` template names inside the engine."""
    relative = PurePosixPath(template[len(ENGINE_PREFIX):].strip())
    if not relative.parts or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"template {template!r}: after {ENGINE_PREFIX!r} comes a path inside the PaddleOCR "
                         "repository, such as engine:configs/rec/PP-OCRv6/PP-OCRv6_small_rec.yml")
    path = engine_root / relative
    if not path.is_file():
        hint = ("" if is_checkout else
                "; the installed unstructured.paddleocr engine ships no configs/: set training.engine_checkout "
                "to a PaddleOCR checkout")
        raise FileNotFoundError(f"template {template!r}: no {relative} in the engine at {engine_root}{hint}")
    return path


def absolute_engine_paths(config: object, engine_root: Path) -> object:
    """``config`` with every relative path string that names a file or folder of the engine made
    absolute (``./ppocr/utils/dict/ppocrv5_dict.txt`` -> ``<engine>/ppocr/utils/dict/...``)."""
    if isinstance(config, dict):
        return {key: absolute_engine_paths(value, engine_root) for key, value in config.items()}
    if isinstance(config, list):
        return [absolute_engine_paths(value, engine_root) for value in config]
    if isinstance(config, str) and config and not config.startswith(("/", "~")) and "\n" not in config \
            and ("/" in config) and len(config) < 4096:
        candidate = engine_root / config
        if candidate.exists():
            return str(candidate.resolve())
    return config
