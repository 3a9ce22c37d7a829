"""A PaddleOCR training config for one run: the template, plus what the pipeline owns.

The pipeline owns where data and outputs live and how long to train; the model, the
augmentations and the optimizer belong to the template (configs/profiles/,
configs/production/ or a user's own PaddleOCR config). The rendered config is written
next to the run's outputs, so ``python tools/train.py -c <that file>`` replays the run
by hand, with nothing passed on the command line.

Resuming an interrupted run (PaddleOCR 2.10, ``ppocr/utils/save_load.load_model`` and
``tools/program.train``; seen on a real run):

- ``Global.checkpoints=<save_dir>/latest`` (the prefix; ``.pdparams`` is stripped)
  loads ``latest.pdparams`` (weights), ``latest.pdopt`` (optimizer moments *and* the LR
  scheduler's position) and ``latest.states`` (best metrics so far, the last epoch).
  Training restarts at the saved epoch + 1 and runs to ``Global.epoch_num``; a run
  whose last epoch was already ``epoch_num`` trains nothing and exits 0.
  ``checkpoints`` wins over ``pretrained_model`` when both are set.
- ``global_step`` is not restored: the logged step and the ``eval_batch_step`` cadence
  start again from 0 in the resumed part.
- The restored best ``acc`` is reset to 0.0, so for rec the first evaluation after a
  resume overwrites ``best_accuracy`` even when it is worse (det keeps its ``hmean``).
- The cosine schedule continues from where it stopped, computed recursively from the
  last LR: resume with the *same* ``epoch_num`` and the same training set. Raising
  ``epoch_num`` after a finished run keeps the LR at 0 (seen: ``lr: 0.000000`` for the
  whole extra epoch). To train further on a grown dataset, start a new run from the
  weights instead: ``pretrained=<save_dir>/best_accuracy`` (weights only; fresh
  optimizer and schedule, epoch 1).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ocr_tasks.ingest.dataset_info import read_dataset_info

import yaml

from ocr_tasks.errors import UsageError
from ocr_tasks.vocabulary import MODEL_KINDS, REC, SPLITS, TEST_SPLIT

__all__ = [
    "OWNED_KEYS",
    "checkpoint_overrides",
    "config_hash",
    "eval_overrides",
    "load_template",
    "plain",
    "render_config",
    "write_config",
]

# Everything render_config may change; the rest of the template passes through as is.
OWNED_KEYS: Final = frozenset({
    "Train.dataset.data_dir",
    "Train.dataset.label_file_list",
    "Train.dataset.ratio_list",
    "Eval.dataset.data_dir",
    "Eval.dataset.label_file_list",
    "Eval.dataset.ratio_list",
    "Global.character_dict_path",
    "Global.max_text_length",
    "Global.save_model_dir",
    "Global.save_res_path",
    "Global.epoch_num",
    "Global.pretrained_model",
    "Global.checkpoints",
    "Global.use_gpu",
})


def load_template(template: Path) -> dict:
    template = Path(template)
    try:
        config = yaml.safe_load(template.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read PaddleOCR config template {template}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"PaddleOCR config template {template} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("Global", "Train", "Eval")):
        raise UsageError(f"{template} is not a PaddleOCR training config (needs Global, Train and Eval sections)")
    for section in ("Train", "Eval"):
        if not isinstance(config[section].get("dataset"), dict):
            raise UsageError(f"{template}: {section}.dataset is missing")
    return config


def render_config(template: Path, *, task: str, data_dir: Path, dict_path: Path | None, save_dir: Path,
                  epochs: int | None = None, pretrained: Path | None = None, checkpoints: Path | None = None,
                  use_gpu: bool = False, extra: Mapping[str, object] | None = None) -> dict:
    """The template with the pipeline's keys set (``OWNED_KEYS``), then ``extra``.

    ``data_dir`` is a PaddleOCR data_dir as ``pull-dataset``/``prepare`` write it:
    ``<task>/train.txt`` trains, ``<task>/val.txt`` evaluates during training (the test
    split is kept for the gate, see ``eval_overrides``). ``dict_path`` is required for
    rec and ignored for det. ``epochs=None`` keeps the template's ``epoch_num``.
    ``extra`` sets further dotted keys (``{"Optimizer.lr.learning_rate": 0.001}``;
    a numeric part indexes a list, ``Train.dataset.transforms.2.RecResizeImg.image_shape``);
    it may not touch the owned keys, which have their own arguments. ``extra`` comes from the
    config (a stage's ``overrides``), so a key it cannot set is a UsageError; a bad argument, a ValueError.
    """
    if task not in MODEL_KINDS:
        raise ValueError(f"task must be one of {MODEL_KINDS}, got {task!r}")
    if task == REC and dict_path is None:
        raise ValueError("rec needs dict_path (the dataset's dict.txt): the head's size is read from it")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    for name, weights in (("pretrained", pretrained), ("checkpoints", checkpoints)):
        if weights is not None and "://" in str(weights):
            # PaddleOCR would download it at run time; weights come from the pipeline's storage.
            raise ValueError(f"{name}={weights} is a URL: fetch it first and give the local path")
    clashes = sorted(OWNED_KEYS.intersection(extra or {}))
    if clashes:
        raise UsageError(f"extra may not set {', '.join(clashes)}: use render_config's own arguments")

    config = copy.deepcopy(load_template(template))
    data_dir = Path(data_dir).absolute()
    save_dir = Path(save_dir).absolute()
    for section, split in (("Train", "train"), ("Eval", "val")):
        _point_dataset(config[section]["dataset"], data_dir, data_dir / task / f"{split}.txt")

    global_section = config["Global"]
    if task == REC:
        global_section["character_dict_path"] = str(Path(dict_path).absolute())  # type: ignore[arg-type]
        kept = kept_text_length(data_dir)
        if kept is not None:
            _set_max_text_length(config, kept)
    global_section["save_model_dir"] = str(save_dir)
    # Keep the template's file name (predicts_db.txt, ...) but inside this run's folder.
    res_name = Path(str(global_section.get("save_res_path") or "predicts.txt")).name
    global_section["save_res_path"] = str(save_dir / res_name)
    if epochs is not None:
        # Values the template tied to epoch_num with a YAML anchor (det's MakeBorderMap
        # total_epoch) keep the template's number, exactly as with PaddleOCR's own -o;
        # 2.10 reads total_epoch only when an epoch is passed to the transform, which
        # its data loaders never do.
        global_section["epoch_num"] = epochs
    global_section["pretrained_model"] = str(Path(pretrained).absolute()) if pretrained is not None else None
    global_section["checkpoints"] = str(Path(checkpoints).absolute()) if checkpoints is not None else None
    global_section["use_gpu"] = bool(use_gpu)

    for key, value in (extra or {}).items():
        _set_dotted(config, key, value)
    return config


def kept_text_length(data_dir: Path) -> int | None:
    """The max_text_length the dataset version kept rec lines to (dataset.json), if it says."""
    value = read_dataset_info(data_dir).get("max_text_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _set_max_text_length(config: dict, length: int) -> None:
    """Global.max_text_length and every copy of the template's value (YAML anchors: heads, label
    encoders) set to what the dataset kept: PaddleOCR drops longer rec samples silently otherwise,
    and a smaller head would be trained than the data needs."""
    old = config["Global"].get("max_text_length")

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "max_text_length" and value == old:
                    node[key] = length
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    config["Global"]["max_text_length"] = length


def _point_dataset(dataset: dict, data_dir: Path, label_file: Path) -> None:
    dataset["data_dir"] = str(data_dir)
    dataset["label_file_list"] = [str(label_file)]
    # SimpleDataSet asserts one ratio per label file, and samples that share of each list every
    # epoch: the template's ratios were for its own data mix (PP-OCRv6 medium rec says [0.5]),
    # the pipeline's one list is the whole dataset version, all of it every epoch.
    if "ratio_list" in dataset:
        dataset["ratio_list"] = [1.0]


def _set_dotted(config: dict, key: str, value: object) -> None:
    parts = key.split(".")
    if not key or not all(parts):
        raise UsageError(f"bad config key {key!r}")
    node: object = config
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[:depth + 1]), key)
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, key, key)
        node[index] = plain(value)
    elif isinstance(node, dict):
        node[last] = plain(value)
    else:
        raise UsageError(f"cannot set {key}: {'.'.join(parts[:-1])} is a {type(node).__name__}, not a mapping")


def _child(node: object, part: str, where: str, key: str) -> object:
    if isinstance(node, dict):
        if part not in node or not isinstance(node[part], (dict, list)):
            raise UsageError(f"cannot set {key}: the template has no section {where}")
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, where, key)]
    raise UsageError(f"cannot set {key}: {where} is not a section")


def _index(node: list, part: str, where: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise UsageError(f"cannot set {key}: {where} needs a list index below {len(node)}")
    return int(part)


def plain(value: object) -> object:
    """``value`` as YAML-safe plain data: paths as strings, tuples as lists, mapping keys as strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def write_config(config: dict, path: Path) -> Path:
    """Write ``config`` as YAML in its own key order (the template's), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def config_hash(path: Path) -> str:
    """16 hex chars identifying what the config says, not how it is formatted."""
    content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def eval_overrides(task: str, data_dir: Path, split: str = TEST_SPLIT) -> dict[str, object]:
    """``-o`` overrides that make ``tools/eval.py`` score one split of ``data_dir``."""
    if task not in MODEL_KINDS:
        raise ValueError(f"task must be one of {MODEL_KINDS}, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir).absolute()
    return {
        "Eval.dataset.data_dir": str(data_dir),
        "Eval.dataset.label_file_list": [str(data_dir / task / f"{split}.txt")],
    }


def checkpoint_overrides(path: Path) -> dict[str, object]:
    """``-o`` overrides that load a checkpoint (``.../best_accuracy`` or its ``.pdparams``).

    For tools/train.py this resumes (see the module notes); for eval.py and
    export_model.py it only loads the weights.
    """
    text = str(Path(path).absolute())
    if text.endswith(".pdparams"):
        text = text[: -len(".pdparams")]
    return {"Global.checkpoints": text}
