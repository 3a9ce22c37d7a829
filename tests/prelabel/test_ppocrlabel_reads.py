"""PPOCRLabel's own loading code (ppocrlabel 3.1.6 in .venv-ppocrlabel, `make ppocrlabel-env`) opens a folder
written by ocr_tasks/prelabel/ppocrlabel_files.py: every image listed, none confirmed, each showing the
predicted boxes and texts. (The demo test does the same on what the production model pre-labelled.)"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ocr_tasks.embedded.synthetic import ExportSpec, make_export
from ocr_tasks.prelabel.ppocrlabel_files import write_ppocrlabel_folder
from tests.kit import REPO

PPOCRLABEL_PYTHON = REPO / ".venv-ppocrlabel" / "bin" / "python"
LOADER = REPO / "tests" / "prelabel" / "ppocrlabel_loader.py"


def open_in_ppocrlabel(folder) -> dict:
    """{image file: {"confirmed", "boxes"}} as PPOCRLabel shows the folder."""
    if not PPOCRLABEL_PYTHON.is_file():
        pytest.skip(f"PPOCRLabel's environment is not built ({PPOCRLABEL_PYTHON}): `make ppocrlabel-env`")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}
    done = subprocess.run([str(PPOCRLABEL_PYTHON), str(LOADER), str(folder)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ppocrlabel_shows_the_predictions_of_every_unconfirmed_image(tmp_path):
    source = make_export(tmp_path / "src", ExportSpec("labels", n_images=4, seed=5))
    folder = tmp_path / "batch_12"
    folder.mkdir()
    predictions = {}
    for line in (source / "Label.txt").read_text(encoding="utf-8").splitlines():
        path, boxes = line.split("\t", 1)
        name = path.rsplit("/", 1)[-1]
        (folder / name).write_bytes((source / name).read_bytes())
        predictions[name] = [(b["points"], b["transcription"]) for b in json.loads(boxes)]
    predictions[name] = predictions[name] + [([[2, 2], [60, 2], [60, 20], [2, 20]], "nullable true")]
    write_ppocrlabel_folder(folder, predictions)

    shown = open_in_ppocrlabel(folder)
    assert set(shown) == set(predictions)
    for image, view in shown.items():
        assert view["confirmed"] is False
        assert [(b["points"], b["transcription"]) for b in view["boxes"]] == \
            [([[round(x), round(y)] for x, y in points], text) for points, text in predictions[image]]
    assert shown[name]["boxes"][-1]["transcription"] == "nullable true"     # not PPOCRLabel's "Noneable True"
