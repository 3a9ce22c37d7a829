"""Train one model (det or rec) with PaddleOCR's own tools/train.py, stage by stage.

Input artifact: a dataset version materialised as a PaddleOCR data_dir. Output
artifact: a `TrainedModel` (best checkpoint + the rendered config that produced it).
Everything a run writes lives under `work_dir/runs/<run_id>/<kind>/` and is mirrored to
`runs/<run_id>/<kind>/` in storage as it is saved, so a retried task resumes from
`latest` instead of epoch 1, and another task (evaluate, publish) fetches the finished
model with `fetch_trained` without touching the training path.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ocr_tasks.storage import layout
from ocr_tasks.config import REPO_ROOT, DetectorLikeCrops, PipelineConfig, TrainStage
from ocr_tasks.training.checkout import ENGINE_PREFIX, absolute_engine_paths, engine_config
from ocr_tasks.training.engine import Engine, run_tool, visible_gpus
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.dataset_info import read_dataset_info
from ocr_tasks.storage.s3 import Storage
from ocr_tasks.training.detector_crops import write_detector_like_crops
from ocr_tasks.training.render import render_config, write_config
from ocr_tasks.training.trained_model import TrainedModel
from ocr_tasks.vocabulary import REC

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pdparams", ".pdopt", ".states")
FROZEN_BACKBONE = Path(__file__).resolve().parent / "frozen_backbone.py"
AUGMENT_OPS = frozenset({"RecAug", "RecConAug", "IaaAugment", "CopyPaste", "BaseDataAugmentation"})


def template_path(template: str, engine: Engine) -> Path:
    """A template as configured: ``engine:<path in the PaddleOCR repository>`` (see training/checkout.py),
    a path relative to this project, or an absolute path."""
    if template.startswith(ENGINE_PREFIX):
        try:
            return engine_config(template, engine.root, is_checkout=engine.is_checkout)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"training template: {exc}") from exc
    path = Path(template)
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_file():
        raise UsageError(f"training template not found: {template}")
    return path


def train_model(storage: Storage, config: PipelineConfig, task: str, data_dir: Path, run_id: str, *,
                epochs: int | None = None, engine: Engine | None = None) -> TrainedModel:
    """Every configured stage in order, each from the previous stage's best weights."""
    settings = config.training.for_model(task)
    engine = engine or Engine.locate(config.training.engine_checkout)
    gpus = visible_gpus()
    run_dir = config.work.run_model(run_id, task)
    weights = pretrained_weights(storage, settings.pretrained, task, template_path(settings.template, engine),
                                 data_dir, engine, config.work.pretrained)
    trained = TrainedModel(task, run_id, checkpoint="", config="")
    for stage in settings.stages:
        stage_dir = run_dir / stage.name
        remote = layout.run_stage_prefix(run_id, task, stage.name)
        if storage.exists(remote + "done.json"):
            log.info("%s stage %s already finished in an earlier try: reusing its best weights", task, stage.name)
            trained.stages.append(_download_finished_stage(storage, remote, stage_dir))
        else:
            resume = _download_checkpoint(storage, remote, "latest", stage_dir)
            # the resumed run rewrites best_accuracy only if it beats the best so far: keep that best
            _download_checkpoint(storage, remote, "best_accuracy", stage_dir)
            cfg_path = stage_dir / "config.yml"
            stage_config = _stage_config(settings.template, engine, task, data_dir, stage_dir, stage, epochs, weights,
                                         resume, bool(gpus))
            if task == REC:
                _add_detector_like_crops(stage_config["Train"]["dataset"], settings.detector_like_crops, data_dir,
                                         run_dir / "detector_like_crops")
            write_config(stage_config, cfg_path)
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
        weights = _best_weights(stage_dir)
        trained.checkpoint, trained.config = str(weights), str(stage_dir / "config.yml")
    return trained


def fetch_trained(storage: Storage, config: PipelineConfig, trained: TrainedModel) -> TrainedModel:
    """The model another task trained, downloaded to this worker: its last stage's best weights and config.

    Never trains: refuses when a stage of that run has not finished (no done.json).
    """
    stages = config.training.for_model(trained.task).stages
    for stage in stages:
        done = layout.run_stage_prefix(trained.run_id, trained.task, stage.name) + "done.json"
        if not storage.exists(done):
            raise UsageError(f"{trained.task} of run {trained.run_id} is not finished: no {storage.uri(done)}")
    last = stages[-1].name
    stage_dir = config.work.run_model(trained.run_id, trained.task) / last
    _download_finished_stage(storage, layout.run_stage_prefix(trained.run_id, trained.task, last), stage_dir)
    return TrainedModel(trained.task, trained.run_id, str(_best_weights(stage_dir)), str(stage_dir / "config.yml"),
                        history=list(trained.history), stages=list(trained.stages))


def _download_finished_stage(storage: Storage, remote: str, stage_dir: Path) -> dict:
    """A finished stage's best weights (or latest) and config.yml; returns its done.json summary."""
    _download_checkpoint(storage, remote, "best_accuracy", stage_dir) or \
        _download_checkpoint(storage, remote, "latest", stage_dir)
    storage.download_file(remote + "config.yml", stage_dir / "config.yml")  # evaluate/export need it
    return storage.get_json(remote + "done.json")


def _best_weights(stage_dir: Path) -> Path:
    best = stage_dir / "best_accuracy"
    # no evaluation ran (a tiny val split): the last weights are the best we have
    return best if best.with_suffix(".pdparams").exists() else stage_dir / "latest"


def _stage_config(template: str, engine: Engine, task: str, data_dir: Path, stage_dir: Path, stage: TrainStage,
                  epochs: int | None, weights: Path | None, resume: Path | None, use_gpu: bool) -> dict:
    extra = dict(stage.overrides)
    if stage.learning_rate is not None:
        extra["Optimizer.lr.learning_rate"] = stage.learning_rate
    config = render_config(template_path(template, engine), task=task, data_dir=data_dir,
                           dict_path=data_dir / "dict.txt" if task == "rec" else None, save_dir=stage_dir,
                           epochs=epochs or stage.epochs, pretrained=weights, checkpoints=resume,
                           use_gpu=use_gpu, extra=extra)
    if template.startswith(ENGINE_PREFIX):
        # its relative paths are the repository's; the tools run in the stage's own folder
        config = absolute_engine_paths(config, engine.root)
    if stage.exports is not None:
        subset = _train_list_for_exports(data_dir, task, stage.exports, stage_dir / f"train_{task}.txt")
        config["Train"]["dataset"]["label_file_list"] = [str(subset)]
    if stage.mix:
        _mix_in(config["Train"]["dataset"], stage, stage_dir / f"mix_{task}")
    if not stage.augment:
        transforms = config["Train"]["dataset"]["transforms"]
        config["Train"]["dataset"]["transforms"] = [t for t in transforms if not (set(t or {}) & AUGMENT_OPS)]
    fit_to_data(config, task, os.cpu_count() or 1)
    return config


def fit_to_data(config: dict, task: str, cores: int) -> None:
    """A template's loader sized for 8 GPUs and a large set, fitted to what this worker has: batches no larger
    than the train split (a batch of 128 over 40 crops is one short step an epoch, or none with drop_last) and
    loader workers no more than the cores (each is a process). Eval loaders get the same worker cap."""
    train = config["Train"]
    samples = sum(_count_lines(Path(f)) for f in train["dataset"].get("label_file_list") or [])
    loader, sampler = train.get("loader") or {}, train.get("sampler") or {}
    batch = loader.get("batch_size_per_card")
    if samples and isinstance(batch, int) and batch > samples:
        log.info("%s: batch_size_per_card %d > %d train samples: %d", task, batch, samples, samples)
        loader["batch_size_per_card"] = samples
        if isinstance(sampler.get("first_bs"), int) and sampler["first_bs"] > samples:
            sampler["first_bs"] = samples      # MultiScaleSampler sizes its batches from first_bs
    for section in ("Train", "Eval"):
        section_loader = config.get(section, {}).get("loader") or {}
        workers = section_loader.get("num_workers")
        if isinstance(workers, int) and workers > cores:
            log.info("%s: %s num_workers %d > %d cores: %d", task, section, workers, cores, cores)
            section_loader["num_workers"] = cores


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def _add_detector_like_crops(dataset: dict, settings: DetectorLikeCrops, data_dir: Path, folder: Path) -> None:
    """Beside the tight crops, crops of the train boxes as a detector cuts them (training/detector_crops.py)."""
    from ocr_tasks.training.render import kept_text_length

    if settings.copies == 0:
        return
    labels = write_detector_like_crops(data_dir, folder, copies=settings.copies, margin=settings.margin,
                                       jitter=settings.jitter, max_text_length=kept_text_length(data_dir))
    if labels is None:
        return
    ratios = list(dataset.get("ratio_list") or [1.0] * len(dataset["label_file_list"]))
    dataset["label_file_list"] = [*dataset["label_file_list"], str(labels)]
    dataset["ratio_list"] = [*ratios, 1.0]


def _mix_in(dataset: dict, stage: TrainStage, folder: Path) -> None:
    """The dataset's training list at ratio 1.0, then each general list at its ratio (SimpleDataSet samples
    that share of each list every epoch). Paths in a general list become absolute: SimpleDataSet joins
    every line to the one data_dir, which is the dataset's."""
    folder.mkdir(parents=True, exist_ok=True)
    lists, ratios = list(dataset["label_file_list"]), [1.0] * len(dataset["label_file_list"])
    for number, mixed in enumerate(stage.mix):
        source = Path(mixed.label_file).expanduser()
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"training stage {stage.name}: mix label_file {source} cannot be read ({exc})") from None
        absolute = []
        for line in lines:
            path, sep, label = line.partition("\t")
            if sep:
                absolute.append(f"{(source.parent / path).absolute() if not Path(path).is_absolute() else path}"
                                f"\t{label}")
        if not absolute:
            raise UsageError(f"training stage {stage.name}: mix label_file {source} has no 'path<TAB>label' lines")
        target = folder / f"{number}_{source.name}"
        target.write_text("\n".join(absolute) + "\n", encoding="utf-8")
        lists.append(str(target))
        ratios.append(mixed.ratio)
    dataset["label_file_list"], dataset["ratio_list"] = lists, ratios


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


def pretrained_weights(storage: Storage, key: str | None, task: str, template: Path, data_dir: Path, engine: Engine,
                       dest: Path) -> Path | None:
    """What the first stage starts from: training weights as configured, or an inference model folder converted
    into them for this template (training/stock_weights.py); None: from scratch."""
    from ocr_tasks.training.stock_weights import converted_pretrained, is_inference_folder

    if key and is_inference_folder(key):
        return converted_pretrained(storage, bucket_key(storage, key), task, template, data_dir,
                                    data_dir / "dict.txt" if task == REC else None, engine, dest)
    if key and task == REC:
        _refuse_grown_dict_for_weights(key, data_dir)
    return fetch_pretrained(storage, key, dest)


def _refuse_grown_dict_for_weights(key: str, data_dir: Path) -> None:
    """Training weights carry no dict of their own, so only the converter grows a head (from an inference folder,
    whose dict.txt says which row is which character). Loading weights whose head is smaller than the grown dict,
    PaddleOCR logs `not matched` and starts the head from scratch: the characters it read are lost (#17785)."""
    grown = (read_dataset_info(data_dir).get("dictionary") or {}).get("grown")
    if grown:
        raise UsageError(f"training.rec.pretrained: {key} are training weights, and the labels add {len(grown)} "
                         f"characters to validation.dict_file ({ascii(grown[:20])}): the head would start from "
                         "scratch. Set validation.outside_dict: leave_out (their images are left out, the head kept), "
                         "or name the stock inference model folder (a key ending in /), whose head grows")


def bucket_key(storage: Storage, key: str) -> str:
    """A configured key as the bucket names it: `s3://<this bucket>/key` or `key`; another bucket or scheme is refused."""
    if "://" in key and not key.startswith("s3://"):
        raise UsageError(f"pretrained weights must be a key in storage, not {key}")
    if key.startswith("s3://"):
        bucket, _, key = key[len("s3://"):].partition("/")
        if bucket != storage.settings.bucket or not key:
            raise UsageError(f"pretrained weights must be a key in bucket {storage.settings.bucket}, got s3://{bucket}/{key}")
    return key


def fetch_pretrained(storage: Storage, key: str | None, dest: Path) -> Path | None:
    """Pretrained weights come from the user's storage (a key in the bucket), never a model hub."""
    if not key:
        return None
    key = bucket_key(storage, key)
    local = dest / key  # the whole key: det and rec weights often share a file name
    storage.download_file(key, local)  # always: the key may point at newer weights under the same name
    return local.with_suffix("") if local.suffix == ".pdparams" else local
