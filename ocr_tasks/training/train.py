"""Train, evaluate and export one model (det or rec) with PaddleOCR's own tools.

Input artifact: a dataset version materialised as a PaddleOCR data_dir. Output
artifacts: a `TrainedModel` (best checkpoint + the rendered config that produced it),
test-split metrics, an inference model. Everything a run writes lives under
`work_dir/runs/<run_id>/<task>/` and is mirrored to `runs/<run_id>/<task>/` in storage
as it is saved, so a retried task resumes from `latest` instead of epoch 1.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ocr_tasks.storage import layout
from ocr_tasks.config import REPO_ROOT, PipelineConfig, TrainStage
from ocr_tasks.training.engine import Engine, run_tool, visible_gpus
from ocr_tasks.errors import UsageError
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.training.render import checkpoint_overrides, eval_overrides, render_config, write_config

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pdparams", ".pdopt", ".states")
FROZEN_BACKBONE = Path(__file__).resolve().parent / "frozen_backbone.py"
AUGMENT_OPS = frozenset({"RecAug", "RecConAug", "IaaAugment", "CopyPaste", "BaseDataAugmentation"})


@dataclass
class TrainedModel:
    task: str
    run_id: str
    checkpoint: str              # local prefix of the best weights, e.g. .../finetune/best_accuracy
    config: str                  # the rendered config of the last stage (replay with tools/train.py -c)
    history: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def template_path(template: str) -> Path:
    path = Path(template)
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_file():
        raise UsageError(f"training template not found: {template}")
    return path


def run_prefix(run_id: str, task: str) -> str:
    return f"{layout.RUNS}{run_id}/{task}/"


def train_model(storage: Storage, config: PipelineConfig, task: str, data_dir: Path, run_id: str, *,
                epochs: int | None = None, engine: Engine | None = None) -> TrainedModel:
    """Every configured stage in order, each from the previous stage's best weights."""
    settings = config.training.for_model(task)
    engine = engine or Engine.locate(config.training.engine_checkout)
    gpus = visible_gpus()
    run_dir = config.work_path / "runs" / run_id / task
    weights = fetch_pretrained(storage, settings.pretrained, config.work_path / "pretrained")
    trained = TrainedModel(task, run_id, checkpoint="", config="")
    for stage in settings.stages:
        stage_dir = run_dir / stage.name
        remote = run_prefix(run_id, task) + f"{stage.name}/"
        if storage.exists(remote + "done.json"):
            log.info("%s stage %s already finished in an earlier try: reusing its best weights", task, stage.name)
            _download_checkpoint(storage, remote, "best_accuracy", stage_dir) or \
                _download_checkpoint(storage, remote, "latest", stage_dir)
            storage.download_file(remote + "config.yml", stage_dir / "config.yml")  # evaluate/export need it
            trained.stages.append(storage.get_json(remote + "done.json"))
        else:
            resume = _download_checkpoint(storage, remote, "latest", stage_dir)
            # the resumed run rewrites best_accuracy only if it beats the best so far: keep that best
            _download_checkpoint(storage, remote, "best_accuracy", stage_dir)
            cfg_path = stage_dir / "config.yml"
            write_config(_stage_config(settings.template, task, data_dir, stage_dir, stage, epochs, weights,
                                       resume, bool(gpus)), cfg_path)
            storage.upload_file(cfg_path, remote + "config.yml")
            if resume:
                log.info("%s stage %s resumes from %s", task, stage.name, resume)
            run = run_tool(engine, "train", cfg_path, log_file=stage_dir / "train.log", cwd=stage_dir,
                           gpus=gpus, on_event=_checkpoint_sync(storage, remote, trained.history), log=log,
                           entry=FROZEN_BACKBONE if stage.freeze_backbone else None)
            storage.upload_file(stage_dir / "train.log", remote + "train.log")
            # the parsed metrics history (loss terms, acc/hmean, ips, eta per step), for curves and audits
            storage.put_text(remote + "history.jsonl", "".join(json.dumps(e) + "\n" for e in run.history))
            summary = {"stage": stage.name, "seconds": round(run.seconds, 1), "best": run.best,
                       "config": storage.uri(remote + "config.yml")}
            storage.put_json(remote + "done.json", summary)
            trained.stages.append(summary)
        best = stage_dir / "best_accuracy"
        if not best.with_suffix(".pdparams").exists():
            best = stage_dir / "latest"  # no evaluation ran (a tiny val split): the last weights are the best we have
        weights = best
        trained.checkpoint, trained.config = str(best), str(stage_dir / "config.yml")
    return trained


def _stage_config(template: str, task: str, data_dir: Path, stage_dir: Path, stage: TrainStage, epochs: int | None,
                  weights: Path | None, resume: Path | None, use_gpu: bool) -> dict:
    extra = dict(stage.overrides)
    if stage.learning_rate is not None:
        extra["Optimizer.lr.learning_rate"] = stage.learning_rate
    config = render_config(template_path(template), task=task, data_dir=data_dir,
                           dict_path=data_dir / "dict.txt" if task == "rec" else None, save_dir=stage_dir,
                           epochs=epochs or stage.epochs, pretrained=weights, checkpoints=resume,
                           use_gpu=use_gpu, extra=extra)
    if stage.exports is not None:
        subset = _train_list_for_exports(data_dir, task, stage.exports, stage_dir / f"train_{task}.txt")
        config["Train"]["dataset"]["label_file_list"] = [str(subset)]
    if not stage.augment:
        transforms = config["Train"]["dataset"]["transforms"]
        config["Train"]["dataset"]["transforms"] = [t for t in transforms if not (set(t or {}) & AUGMENT_OPS)]
    return config


def _train_list_for_exports(data_dir: Path, task: str, exports: list[str], out: Path) -> Path:
    """The training lines whose image came from one of `exports` (e.g. synthetic first, real after)."""
    index = "images.jsonl" if task == "det" else "crops.jsonl"
    keep = set()
    for line in (data_dir / index).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["export"] in exports:
            keep.add(f"images/{record['sha256']}{record['ext']}" if task == "det" else f"crops/{record['name']}")
    lines = [l for l in (data_dir / task / "train.txt").read_text(encoding="utf-8").splitlines() if l.split("\t", 1)[0] in keep]
    if not lines:
        raise UsageError(f"{task}: no training data from exports {exports}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{l}\n" for l in lines), encoding="utf-8")
    return out


def _checkpoint_sync(storage: Storage, remote: str, history: list[dict]):
    step = {"global_step": 0}

    def on_event(event: dict) -> None:
        if event.get("kind") == "train":
            step["global_step"] = event.get("global_step", step["global_step"])
        elif event.get("kind") == "eval":
            event.setdefault("global_step", step["global_step"])
        history.append(event)
        if event.get("kind") == "save":
            # the engine logs "save model in ..." after the files are written
            local = Path(event["path"])
            storage.upload_many((local.with_suffix(s), remote + local.name + s)
                                for s in CHECKPOINT_SUFFIXES if local.with_suffix(s).exists())

    return on_event


def _download_checkpoint(storage: Storage, remote: str, name: str, stage_dir: Path) -> Path | None:
    present = {o.key for o in storage.list(remote + name + ".")}
    keys = [remote + name + s for s in CHECKPOINT_SUFFIXES if remote + name + s in present]
    if remote + name + ".pdparams" not in present:
        return None
    stage_dir.mkdir(parents=True, exist_ok=True)
    storage.download_many((key, stage_dir / key.rsplit("/", 1)[1]) for key in keys)
    return stage_dir / name


def fetch_pretrained(storage: Storage, key: str | None, dest: Path) -> Path | None:
    """Pretrained weights come from the user's storage (a key in the bucket), never a model hub."""
    if not key:
        return None
    if "://" in key and not key.startswith("s3://"):
        raise UsageError(f"pretrained weights must be a key in storage, not {key}")
    if key.startswith("s3://"):
        bucket, _, key = key[len("s3://"):].partition("/")
        if bucket != storage.settings.bucket or not key:
            raise UsageError(f"pretrained weights must be a key in bucket {storage.settings.bucket}, got s3://{bucket}/{key}")
    local = dest / key  # the whole key: det and rec weights often share a file name
    storage.download_file(key, local)  # always: the key may point at newer weights under the same name
    return local.with_suffix("") if local.suffix == ".pdparams" else local


def evaluate(task: str, config_path: Path, checkpoint: Path, data_dir: Path, log_file: Path,
             engine: Engine, *, dict_path: Path | None = None) -> dict[str, float]:
    """tools/eval.py of a checkpoint on the held-out test split.

    `dict_path` is the model's own dict (production's, for the baseline); by default the dataset's.
    """
    overrides = {**eval_overrides(task, data_dir, "test"), **checkpoint_overrides(checkpoint)}
    if task == "rec":
        overrides["Global.character_dict_path"] = str(dict_path or Path(data_dir) / "dict.txt")
    run = run_tool(engine, "eval", config_path, overrides, log_file=log_file, cwd=log_file.parent,
                   gpus=visible_gpus()[:1], log=log)
    keys = ("acc", "norm_edit_dis") if task == "rec" else ("precision", "recall", "hmean")
    missing = [k for k in keys if k not in run.final_metrics]
    if missing:
        raise UsageError(f"tools/eval.py printed no {', '.join(missing)} for {task}; see {log_file}")
    return {k: float(run.final_metrics[k]) for k in keys}


def export_inference(task: str, config_path: Path, checkpoint: Path, out_dir: Path, pdx_model_name: str,
                     engine: Engine, log_file: Path) -> Path:
    """tools/export_model.py with the flags paddle 3.x and PaddleOCR 3.x need (see ENGINE.md)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    overrides = {"Global.pretrained_model": str(checkpoint), "Global.checkpoints": None,
                 "Global.save_inference_dir": str(out_dir), "Global.export_with_pir": True,
                 "Global.pdx_model_name": pdx_model_name}
    run_tool(engine, "export_model", config_path, overrides, log_file=log_file, cwd=log_file.parent, log=log)
    student = out_dir / "Student"
    if student.is_dir():  # distillation configs export every sub-model; consumers get the Student
        for item in student.iterdir():
            shutil.move(str(item), out_dir / item.name)
        shutil.rmtree(out_dir / "Student")
        shutil.rmtree(out_dir / "Teacher", ignore_errors=True)
    _drop_label_encoders(out_dir / "inference.yml")
    return out_dir


def _drop_label_encoders(inference_yml: Path) -> None:
    """Remove training-only label encoders from the inference preprocessing.

    export_model copies the Eval transforms, label encoder included; PaddleOCR 3.x
    (PaddleX) refuses a rec model whose preprocessing names CTCLabelEncode (it knows
    only MultiLabelEncode), and no consumer has labels to encode anyway.
    """
    data = yaml.safe_load(inference_yml.read_text(encoding="utf-8"))
    ops = (data.get("PreProcess") or {}).get("transform_ops") or []
    kept = [op for op in ops if not any(str(name).endswith("LabelEncode") for name in (op or {}))]
    if len(kept) != len(ops):
        data["PreProcess"]["transform_ops"] = kept
        inference_yml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
