"""Infra validation's own failures: a runtime that is missing, or lacks PaddleOCR, is an answer, not a crash.

Reading with real exported models in real runtimes is in tests/embedded/test_demo.py (the
demo's published model, in the pipeline's runtime and the newest and oldest PaddleOCR 3.x)
and tests/flow/test_runners.py (a 1-epoch model, through the whole chain).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ocr_tasks.codec import plain, rebuild
from ocr_tasks.config import load_config
from ocr_tasks.errors import UsageError
from ocr_tasks.release.gate import decide
from ocr_tasks.release.infra_validation import CONSUMER_RUNTIMES, InfraValidation, validate_in_runtimes


def _data_dir(root: Path) -> Path:
    (root / "det").mkdir(parents=True)
    (root / "rec").mkdir()
    box = {"transcription": "1234", "points": [[0, 0], [10, 0], [10, 5], [0, 5]], "difficult": False}
    (root / "det" / "test.txt").write_text(f"images/a.jpg\t{json.dumps([box])}\n")
    (root / "rec" / "test.txt").write_text("crops/a_0.jpg\t1234\n")
    return root


def _bundle(root: Path) -> Path:
    for kind, name in (("det", "PP-OCRv5_mobile_det"), ("rec", "PP-OCRv5_mobile_rec")):
        (root / kind).mkdir(parents=True)
        (root / kind / "inference.yml").write_text(f"Global:\n  model_name: {name}\n")
    return root


def test_a_missing_runtime_and_one_without_paddleocr_are_refused_with_their_errors(tmp_path):
    bare_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not bare_python.is_file():
        pytest.skip(f"no base interpreter at {bare_python} to stand for a runtime without paddleocr")
    served = validate_in_runtimes(_bundle(tmp_path / "bundle"), _data_dir(tmp_path / "data"),
                                  {"gone": str(tmp_path / "no-venv" / "bin" / "python"), "bare": str(bare_python)},
                                  tmp_path / "work", timeout_s=120)
    gone, bare = served.runtimes
    assert not gone.loaded and "no python interpreter at" in gone.error["message"] and gone.log_file is None
    assert not bare.loaded and bare.error["type"] == "ModuleNotFoundError" and "paddleocr" in bare.error["message"]
    assert bare.versions["paddleocr"] is None and Path(bare.log_file).is_file()
    assert (served.images, served.crops) == (1, 1)
    assert rebuild(InfraValidation, json.loads(json.dumps(plain(served)))) == served
    decision = decide({"det": {"hmean": 0.9}, "rec": {"acc": 0.95}}, None, load_config().gate, served=served)
    assert not decision.passed and len([r for r in decision.reasons if "do not load" in r]) == 2
    assert served.verified_on() == []


def test_an_empty_test_split_is_a_usage_error(tmp_path):
    data, bundle = _data_dir(tmp_path / "data"), _bundle(tmp_path / "bundle")
    (data / "rec" / "test.txt").write_text("")
    with pytest.raises(UsageError, match="0 crops"):
        validate_in_runtimes(bundle, data, {"pipeline": None}, tmp_path / "work", timeout_s=60)
    (data / "det" / "test.txt").write_text("images/a.jpg no tab here\n")
    with pytest.raises(UsageError, match=r"det/test.txt:1: expected 'path<TAB>label'"):
        validate_in_runtimes(bundle, data, {"pipeline": None}, tmp_path / "work", timeout_s=60)


def test_runtimes_config_must_map_names_to_interpreters():
    assert load_config().infra_validation.runtimes == {"pipeline": None}
    with pytest.raises(UsageError, match="infra_validation.runtimes: must be a mapping of runtime names"):
        load_config(overrides=["infra_validation.runtimes=[a, b]"])


def test_the_consumer_runtimes_are_built():
    """`make test` builds them (make consumer-envs); the demo test reads the published model in both."""
    missing = [name for name, python in CONSUMER_RUNTIMES.items() if not python.is_file()]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"consumer runtimes {missing} not built: run `make consumer-envs` (make test does)")
    assert not missing, f"consumer runtimes {missing} not built: .ci/run must build them (make test)"
