import re

import pytest

from ocr_tasks.config import load_config
from ocr_tasks.errors import UsageError


def test_defaults_load_from_configs_pipeline_yaml():
    config = load_config()
    assert config.split.train == 0.6 and config.gate.rec_min_acc == 0.9
    assert config.training.models == ["det", "rec"]
    assert config.training.for_model("rec").pdx_model_name == "PP-OCRv5_mobile_rec"


def test_overrides_reach_nested_sections_and_stage_lists():
    config = load_config(overrides=[
        "gate.rec_min_acc=0.95",
        "training.rec.stages=[{name: synthetic, epochs: 3, exports: [synth_01]}, {name: real, epochs: 5, freeze_backbone: true}]",
    ])
    assert config.gate.rec_min_acc == 0.95
    synthetic, real = config.training.rec.stages
    assert (synthetic.name, synthetic.epochs, synthetic.exports) == ("synthetic", 3, ["synth_01"])
    assert real.freeze_backbone and real.exports is None


@pytest.mark.parametrize("override, message", [
    ("split.trian=0.5", "unknown config key split.trian"),
    ("training.rec.stages=[{epoch: 3}]", "unknown config key training.rec.stages[0].epoch"),
    ("split.train=0.9", "sum to 1"),
    ("validation.processes=-1", "validation.processes must be >= 0"),
    ("gate=3", "gate must be a mapping"),
    ("nonsense", "key.path=value"),
])
def test_bad_config_names_the_key(override, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(overrides=[override])


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("storage:\n  bucket: [unclosed\n")
    with pytest.raises(UsageError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("validation.max_image_pixels=abc", "validation.max_image_pixels must be int"),
    ("training.models=det", "training.models must be a list"),
    ("training.models=[det, ocr]", "training.models must be a list"),
    ("split.train=[", "not valid YAML"),
])
def test_wrong_types_are_usage_errors(override, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        load_config(overrides=[override])


def test_cli_exit_2_for_unreadable_config_and_bad_keys(tmp_path, capsys):
    from ocr_tasks.cli import main

    assert main(["--config", str(tmp_path), "discover"]) == 2
    assert main(["--set", "storage.bucket=x", "pull-dataset", "../up", "--dest", str(tmp_path / "d")]) == 2
    assert "Traceback" not in capsys.readouterr().err
