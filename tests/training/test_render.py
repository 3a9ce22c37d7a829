"""Rendering PaddleOCR configs: only the pipeline's keys change, the rest is the template's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ocr_tasks.training.engine import render_overrides
from ocr_tasks.errors import UsageError
from ocr_tasks.training.render import (
    OWNED_KEYS,
    checkpoint_overrides,
    config_hash,
    eval_overrides,
    render_config,
    write_config,
)

from tests.kit import REPO

CONFIGS = REPO / "configs"
TEMPLATES = sorted((CONFIGS / "profiles").glob("*.yml")) + sorted((CONFIGS / "production").glob("*.yml"))


def flatten(node: object, prefix: str = "") -> dict[str, object]:
    """Dotted key -> leaf; lists are leaves (label_file_list is replaced whole)."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, object] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def task_of(template: Path) -> str:
    return "rec" if template.name.startswith("rec") else "det"


def render(template: Path, tmp_path: Path, **kwargs) -> dict:
    task = task_of(template)
    return render_config(template, task=task, data_dir=tmp_path / "data",
                         dict_path=tmp_path / "data" / "dict.txt" if task == "rec" else None,
                         save_dir=tmp_path / "run" / task, **kwargs)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_render_sets_exactly_the_owned_keys(template, tmp_path):
    original = flatten(yaml.safe_load(template.read_text()))
    task = task_of(template)
    rendered = flatten(render(template, tmp_path, epochs=3, pretrained=tmp_path / "w" / "best_accuracy", use_gpu=True))
    data, run = tmp_path / "data", tmp_path / "run" / task

    expected = {
        "Train.dataset.data_dir": str(data),
        "Train.dataset.label_file_list": [str(data / task / "train.txt")],
        "Eval.dataset.data_dir": str(data),
        "Eval.dataset.label_file_list": [str(data / task / "val.txt")],
        "Global.save_model_dir": str(run),
        "Global.save_res_path": str(run / Path(original["Global.save_res_path"]).name),
        "Global.epoch_num": 3,
        "Global.pretrained_model": str(tmp_path / "w" / "best_accuracy"),
        "Global.checkpoints": None,
        "Global.use_gpu": True,
    }
    if task == "rec":
        expected["Global.character_dict_path"] = str(data / "dict.txt")
    assert set(expected) <= OWNED_KEYS
    for key, value in expected.items():
        assert rendered[key] == value, key
    # everything else, and the key set itself, is the template's
    assert set(rendered) == set(original) | set(expected)
    assert {k: v for k, v in rendered.items() if k not in expected} == {
        k: v for k, v in original.items() if k not in expected}


def test_det_leaves_dictionary_alone_and_epochs_default_to_template(tmp_path):
    template = CONFIGS / "profiles" / "det_cpu_small.yml"
    original = yaml.safe_load(template.read_text())
    config = render_config(template, task="det", data_dir=tmp_path, dict_path=tmp_path / "dict.txt", save_dir=tmp_path / "o")
    assert "character_dict_path" not in config["Global"]
    assert config["Global"]["epoch_num"] == original["Global"]["epoch_num"]
    assert config["Global"]["use_gpu"] is False and config["Global"]["pretrained_model"] is None


def test_extra_keys_for_staged_fine_tuning(tmp_path):
    template = CONFIGS / "profiles" / "rec_cpu_small.yml"
    config = render(template, tmp_path, checkpoints=tmp_path / "prev" / "latest", extra={
        "Optimizer.lr.learning_rate": 0.001,
        "Train.loader.batch_size_per_card": 8,
        "Global.eval_batch_step": (0, 50),
        "Train.dataset.transforms.2.RecResizeImg.image_shape": [3, 48, 160],
        "Global.new_key": "added",
    })
    assert config["Optimizer"]["lr"]["learning_rate"] == 0.001
    assert config["Train"]["loader"]["batch_size_per_card"] == 8
    assert config["Global"]["eval_batch_step"] == [0, 50]
    assert config["Train"]["dataset"]["transforms"][2]["RecResizeImg"]["image_shape"] == [3, 48, 160]
    assert config["Global"]["checkpoints"] == str(tmp_path / "prev" / "latest")
    assert list(config["Global"])[-1] == "new_key"


@pytest.mark.parametrize("extra, message", [
    ({"Global.epoch_num": 5}, "may not set Global.epoch_num"),
    ({"Optimiser.lr.learning_rate": 0.1}, "no section Optimiser"),
    ({"Train.dataset.transforms.9.X": 1}, "list index below"),
    ({"Optimizer.lr.learning_rate.x": 1}, "no section Optimizer.lr.learning_rate"),
])
def test_bad_extra_keys_are_refused(tmp_path, extra, message):
    with pytest.raises(UsageError, match=message):    # a stage's overrides in the config
        render(CONFIGS / "profiles" / "rec_cpu_small.yml", tmp_path, extra=extra)


def test_bad_arguments_are_refused(tmp_path):
    template = CONFIGS / "profiles" / "rec_cpu_small.yml"
    with pytest.raises(ValueError, match="rec needs dict_path"):
        render_config(template, task="rec", data_dir=tmp_path, dict_path=None, save_dir=tmp_path)
    with pytest.raises(ValueError, match="task must be"):
        render_config(template, task="cls", data_dir=tmp_path, dict_path=None, save_dir=tmp_path)
    with pytest.raises(ValueError, match="is a URL"):
        render(template, tmp_path, pretrained="https://paddle-model-ecology.bj.bcebos.com/x.pdparams")
    with pytest.raises(ValueError, match="epochs"):
        render(template, tmp_path, epochs=0)
    with pytest.raises(UsageError, match="cannot read"):
        render_config(tmp_path / "missing.yml", task="det", data_dir=tmp_path, dict_path=None, save_dir=tmp_path)
    (tmp_path / "notcfg.yml").write_text("a: 1\n")
    with pytest.raises(UsageError, match="not a PaddleOCR training config"):
        render_config(tmp_path / "notcfg.yml", task="det", data_dir=tmp_path, dict_path=None, save_dir=tmp_path)


def test_template_ratios_become_the_whole_dataset_list_every_epoch(tmp_path):
    config = yaml.safe_load((CONFIGS / "profiles" / "det_cpu_small.yml").read_text())
    config["Train"]["dataset"]["label_file_list"] = ["a.txt", "b.txt"]
    config["Train"]["dataset"]["ratio_list"] = [1.0, 0.5]
    config["Eval"]["dataset"]["ratio_list"] = [0.5]      # one list, half of it: PP-OCRv6 medium rec's
    template = write_config(config, tmp_path / "mixed.yml")
    rendered = render_config(template, task="det", data_dir=tmp_path, dict_path=None, save_dir=tmp_path / "o")
    assert rendered["Train"]["dataset"]["ratio_list"] == [1.0]
    assert rendered["Eval"]["dataset"]["ratio_list"] == [1.0]      # the whole dataset version, every epoch
    assert rendered["Train"]["dataset"]["label_file_list"] == [str(tmp_path / "det" / "train.txt")]


def test_write_config_round_trips_in_template_order(tmp_path):
    template = CONFIGS / "production" / "rec_pp-ocrv5_mobile.yml"
    config = render(template, tmp_path, epochs=2)
    path = write_config(config, tmp_path / "run" / "rec.yml")
    loaded = yaml.safe_load(path.read_text())
    assert loaded == config
    original = yaml.safe_load(template.read_text())
    assert list(loaded) == list(original)
    assert list(loaded["Global"])[: len(original["Global"])] == list(original["Global"])
    assert not list(path.parent.glob(".*.tmp"))


def test_config_hash_follows_content_not_formatting(tmp_path):
    config = render(CONFIGS / "profiles" / "det_cpu_small.yml", tmp_path)
    a = write_config(config, tmp_path / "a.yml")
    b = tmp_path / "b.yml"
    b.write_text("# same config, other layout\n" + yaml.safe_dump(config, sort_keys=True, default_flow_style=True))
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 16
    config["Global"]["epoch_num"] += 1
    assert config_hash(write_config(config, tmp_path / "c.yml")) != config_hash(a)


def test_eval_overrides_point_at_the_test_split(tmp_path):
    overrides = eval_overrides("rec", tmp_path / "data")
    assert overrides == {
        "Eval.dataset.data_dir": str(tmp_path / "data"),
        "Eval.dataset.label_file_list": [str(tmp_path / "data" / "rec" / "test.txt")],
    }
    assert eval_overrides("det", tmp_path, split="val")["Eval.dataset.label_file_list"] == [str(tmp_path / "det" / "val.txt")]
    with pytest.raises(ValueError, match="split"):
        eval_overrides("det", tmp_path, split="holdout")
    # and they survive the trip through -o
    assert render_overrides(overrides)[1] == f"Eval.dataset.label_file_list=[{tmp_path / 'data' / 'rec' / 'test.txt'}]"


def test_checkpoint_overrides_take_prefix_or_pdparams(tmp_path):
    expected = {"Global.checkpoints": str(tmp_path / "best_accuracy")}
    assert checkpoint_overrides(tmp_path / "best_accuracy") == expected
    assert checkpoint_overrides(tmp_path / "best_accuracy.pdparams") == expected


@pytest.mark.parametrize("template", [t for t in TEMPLATES if task_of(t) == "rec"], ids=lambda p: p.name)
def test_rec_max_text_length_is_what_the_dataset_kept(template, tmp_path):
    """dataset.json says which max_text_length the rec lines were kept to; every copy of the template's follows."""
    original = yaml.safe_load(template.read_text())["Global"]["max_text_length"]
    assert flatten(render(template, tmp_path))["Global.max_text_length"] == original      # no dataset.json: the template's
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text('{"max_text_length": 40}')
    rendered = flatten(render(template, tmp_path))
    copies = {k: v for k, v in rendered.items() if k.endswith("max_text_length")}
    assert copies["Global.max_text_length"] == 40
    template_copies = {k for k, v in flatten(yaml.safe_load(template.read_text())).items()
                       if k.endswith("max_text_length") and v == original}
    assert all(copies[k] == 40 for k in template_copies), copies


def test_a_stage_mixes_general_data_in_with_ratio_list(tmp_path):
    """PaddleOCR's ratio_list: the dataset's list whole, a general list at its share, its paths made absolute."""
    import pytest

    from ocr_tasks.config import MixedData, TrainStage
    from ocr_tasks.errors import UsageError
    from ocr_tasks.training.train import _mix_in

    general = tmp_path / "general"
    (general / "crops").mkdir(parents=True)
    (general / "rec_train.txt").write_text("crops/a.png\tINVOICE\n/abs/b.png\tTotal\n", encoding="utf-8")
    dataset = {"data_dir": "/ds", "label_file_list": ["/ds/rec/train.txt"], "ratio_list": [1.0]}
    _mix_in(dataset, TrainStage(mix=[MixedData(str(general / "rec_train.txt"), 0.3)]), tmp_path / "mix")
    assert dataset["ratio_list"] == [1.0, 0.3] and dataset["label_file_list"][0] == "/ds/rec/train.txt"
    written = open(dataset["label_file_list"][1], encoding="utf-8").read().splitlines()
    assert written == [f"{general / 'crops/a.png'}\tINVOICE", "/abs/b.png\tTotal"]
    with pytest.raises(UsageError, match="cannot be read"):
        _mix_in(dict(dataset), TrainStage(mix=[MixedData(str(tmp_path / "nope.txt"))]), tmp_path / "mix2")
    with pytest.raises(UsageError, match=r"ratio: must be in \(0, 1\]"):
        MixedData("x.txt", 1.5)
