"""The one pipeline-config loader: YAML file + `key.path=value` overrides -> typed config.

Unknown keys are errors (a typo in a nightly config must not be silently ignored),
reported with the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ocr_tasks.errors import UsageError
from ocr_tasks.storage import layout
from ocr_tasks.storage.layout import WorkDir
from ocr_tasks.vocabulary import DEFAULT_EVENTS, DET, EVENTS, MODEL_KINDS, REC

OVERRIDES_ENV = "OCR_RETRAIN_OVERRIDES"
REPO_ROOT = Path(__file__).resolve().parent.parent   # configs/, expectations/, dags/ ship beside the package
DEFAULT_CONFIG = REPO_ROOT / "configs" / "pipeline.yaml"


@dataclass(frozen=True)
class StorageConfig:
    bucket: str = "ocr-data"
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    addressing_style: str = "path"
    concurrency: int = 16


@dataclass(frozen=True)
class ValidationConfig:
    max_image_pixels: int = 120_000_000   # today's phone cameras: 108 MP (12000 x 9000); larger is refused undecoded
    max_image_side: int = 16384
    decode_memory_mb: int = 1024          # decoded pixels held at once across decode threads (one image may exceed it alone)
    max_text_length: int = 25
    dict_file: str | None = None
    processes: int = 0      # exports validated at once by `ocr-retrain run/ingest`; 0: one per CPU core

    def __post_init__(self) -> None:
        if self.processes < 0:
            raise UsageError(f"validation.processes must be >= 0 (0: one per CPU core), got {self.processes}")
        if self.decode_memory_mb < 1:
            raise UsageError(f"validation.decode_memory_mb must be >= 1, got {self.decode_memory_mb}")


@dataclass(frozen=True)
class IncomingConfig:
    """When an export under incoming/ is complete: uploads take time and arrive in any order."""

    quiet_period_s: float = 300        # ingested only once none of its objects changed for this long
    require_file_state: bool = True    # wait for fileState.txt (PPOCRLabel writes it with Label.txt)
    give_up_after_h: float = 24        # still incomplete this long after its last upload: quarantined

    def __post_init__(self) -> None:
        if self.quiet_period_s < 0:
            raise UsageError(f"incoming.quiet_period_s must be >= 0, got {self.quiet_period_s}")
        if self.give_up_after_h <= 0:
            raise UsageError(f"incoming.give_up_after_h must be > 0, got {self.give_up_after_h}")


@dataclass(frozen=True)
class ApprovalConfig:
    """A person approves each publish in the Airflow UI (Airflow 3's human-in-the-loop), after the gate."""

    required: bool = False     # the DAG's `require_approval` Param overrides it per run
    timeout_h: float = 24      # no answer within this long: the run is recorded as rejected

    def __post_init__(self) -> None:
        if self.timeout_h <= 0:
            raise UsageError(f"approval.timeout_h must be > 0, got {self.timeout_h}")


@dataclass(frozen=True)
class PrelabelConfig:
    """The ocr_prelabel DAG and `ocr-retrain prelabel`: production pre-labels unlabeled/<batch>/ for PPOCRLabel."""

    python: str | None = None     # the interpreter that reads the images (paddleocr 3.x); None: the pipeline's
    on_gpu: bool = False          # run on the gpu queue and pool (as training does) instead of the default queue
    timeout_s: int = 3600

    def __post_init__(self) -> None:
        if self.timeout_s < 1:
            raise UsageError(f"prelabel.timeout_s must be >= 1, got {self.timeout_s}")


@dataclass(frozen=True)
class SplitConfig:
    train: float = 0.6
    val: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        ratios = (self.train, self.val, self.test)
        if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            raise UsageError(f"split ratios must be >= 0 and sum to 1, got train={self.train} val={self.val} test={self.test}")


@dataclass(frozen=True)
class GateConfig:
    rec_min_acc: float = 0.9        # rec acc on the test split must be strictly greater
    det_min_hmean: float = 0.5      # det hmean on the test split must be at least this
    max_regression: float = 0.01    # allowed drop (absolute) against production on the same test split
    max_export_drift: float = 0.02  # allowed |exported model's metric - tools/eval.py's|, in every consumer runtime
    e2e_min_hmean: float | None = None   # end-to-end (det+rec) hmean floor in every runtime; None: recorded only
    # slices of the test split (per export, text length, script): judged when both models have this many samples
    slice_min_samples: int = 20
    max_slice_regression: float = 0.05   # allowed drop (absolute) of a slice's det hmean / rec acc against production
    max_reference_regression: float = 0.02   # allowed drop on each reference set (reference/<name>/) against production


@dataclass(frozen=True)
class InfraValidationConfig:
    """The consumer runtimes the exported det+rec must load and read the test split in, before the gate."""

    # name -> python of a venv with paddleocr + paddlepaddle as consumers install them; null: this interpreter
    runtimes: dict = field(default_factory=lambda: {"pipeline": None})
    timeout_s: int = 1800           # per runtime

    def __post_init__(self) -> None:
        if not isinstance(self.runtimes, dict) or not all(
                isinstance(name, str) and name.strip() and (python is None or isinstance(python, str))
                for name, python in self.runtimes.items()):
            raise UsageError("infra_validation.runtimes must map names to python interpreter paths (or null), "
                             f"got {self.runtimes!r}")
        if not isinstance(self.timeout_s, int) or self.timeout_s < 1:
            raise UsageError(f"infra_validation.timeout_s must be a positive number of seconds, got {self.timeout_s!r}")


@dataclass(frozen=True)
class NotificationsConfig:
    # where they go (webhook URL, SMTP server) comes from the environment: see ocr_tasks/flow/notify.py
    events: list[str] = field(default_factory=lambda: list(DEFAULT_EVENTS))
    email_to: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.events, list) or not set(self.events) <= set(EVENTS):
            raise UsageError(f"notifications.events must be a list of {', '.join(EVENTS)}; got {self.events!r}")
        if not isinstance(self.email_to, list) or not all(isinstance(a, str) and "@" in a for a in self.email_to):
            raise UsageError(f"notifications.email_to must be a list of email addresses; got {self.email_to!r}")


@dataclass(frozen=True)
class MixedData:
    """General data sampled beside the dataset in training (PaddleOCR's ratio_list): a PaddleOCR label
    list on the training workers, image paths absolute or relative to the list's own folder."""
    label_file: str
    ratio: float = 0.3            # the share of this list sampled every epoch

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise UsageError(f"mix ratio must be in (0, 1], got {self.ratio} for {self.label_file}")


@dataclass(frozen=True)
class TrainStage:
    """One step of staged fine-tuning; each stage starts from the previous stage's best."""
    name: str = "finetune"
    epochs: int = 20
    learning_rate: float | None = None          # None -> the template's
    freeze_backbone: bool = False
    augment: bool = True                        # False drops the template's augmentation ops
    exports: list[str] | None = None            # train only on images from these exports (None -> all)
    mix: list[MixedData] = field(default_factory=list)   # general data sampled beside the dataset (ratio_list)
    overrides: dict[str, Any] = field(default_factory=dict)   # any other dotted PaddleOCR key


@dataclass(frozen=True)
class ModelTraining:
    template: str                               # PaddleOCR config (repo-relative or absolute)
    pdx_model_name: str                         # written into inference.yml so PaddleOCR 3.x loads it
    pretrained: str | None = None               # *.pdparams key in storage (never a hub download); None -> from scratch
    stages: list[TrainStage] = field(default_factory=lambda: [TrainStage()])


@dataclass(frozen=True)
class TrainingConfig:
    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS))
    engine_checkout: str | None = None          # a PaddleOCR checkout/fork; None -> the unstructured.paddleocr package
    det: ModelTraining = field(default_factory=lambda: ModelTraining(
        "configs/profiles/det_cpu_small.yml", "PP-OCRv5_mobile_det"))
    rec: ModelTraining = field(default_factory=lambda: ModelTraining(
        "configs/profiles/rec_cpu_small.yml", "PP-OCRv5_mobile_rec"))

    def __post_init__(self) -> None:
        if not isinstance(self.models, list) or not self.models or not set(self.models) <= set(MODEL_KINDS):
            raise UsageError(f"training.models must be a list of det and/or rec, got {self.models!r}")

    def for_model(self, task: str) -> ModelTraining:
        return {DET: self.det, REC: self.rec}[task]


@dataclass(frozen=True)
class PipelineConfig:
    storage: StorageConfig = field(default_factory=StorageConfig)
    model_name: str = "ocr"          # models/<model_name>/ in storage
    work_dir: str = "./work"
    incoming: IncomingConfig = field(default_factory=IncomingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    approval: ApprovalConfig = field(default_factory=ApprovalConfig)
    prelabel: PrelabelConfig = field(default_factory=PrelabelConfig)
    infra_validation: InfraValidationConfig = field(default_factory=InfraValidationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    source: str = "<defaults>"  # where it was loaded from, for error messages

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir).expanduser().resolve()

    @property
    def production_model_uri(self) -> str:
        """s3://<bucket>/<prefix>/models/<name>/production.json: what a publish updates (the DAG's Asset)."""
        prefix = self.storage.prefix.strip("/")
        return f"s3://{self.storage.bucket}/{prefix + '/' if prefix else ''}{layout.production_key(self.model_name)}"

    @property
    def work(self) -> WorkDir:
        """The worker's local folders, laid out once (ocr_tasks/storage/layout.py)."""
        return WorkDir(self.work_path)


# libyaml's safe loader when PyYAML was built with it: the DAG file loads the config at every parse
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load `path` (default: configs/pipeline.yaml, or $OCR_RETRAIN_CONFIG) and apply overrides."""
    path = Path(path or os.environ.get("OCR_RETRAIN_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_SAFE_LOADER) or {}
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UsageError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    # $OCR_RETRAIN_OVERRIDES ("work_dir=/data/work storage.bucket=ocr-prod"): how a container or
    # an Airflow deployment adjusts the shipped config without copying it; explicit overrides win
    try:
        from_env = shlex.split(os.environ.get(OVERRIDES_ENV, ""))
    except ValueError as exc:
        raise UsageError(f"${OVERRIDES_ENV}: cannot split it into key=value items ({exc})") from None
    for item in from_env:
        try:
            _apply_override(raw, item)
        except UsageError as exc:
            raise UsageError(f"${OVERRIDES_ENV}: {exc}") from None
    for item in overrides or []:
        _apply_override(raw, item)
    raw["source"] = str(path)
    return _build(PipelineConfig, raw, str(path), "")


def load_config_for_parsing(dag_id: str) -> PipelineConfig | None:
    """The config as a DAG file is parsed (yaml only: cheap), or None, logged, when it is broken: a
    broken config must not break parsing, the tasks report it. Callers fall back to the defaults."""
    try:
        return load_config()
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the DAG still parses
        logging.getLogger(dag_id).warning("%s: cannot read the pipeline config (%s); parsing with the defaults",
                                          dag_id, exc)
        return None


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"override must look like key.path=value, got {item!r}")
    node = raw
    *parents, leaf = key.strip().split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"override {item!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise UsageError(f"override {item!r}: value is not valid YAML ({getattr(exc, 'problem', exc)})") from None


def _build(cls: type, raw: dict, source: str, prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UsageError(f"{source}: unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in raw.items():
        ftype = fields[name].type
        ftype = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", "")
        nested = _DATACLASSES.get(ftype)
        if nested is not None:
            if not isinstance(value, dict):
                raise UsageError(f"{source}: {prefix}{name} must be a mapping")
            value = _build(nested, value, source, f"{prefix}{name}.")
        elif ftype.startswith("list[") and ftype[5:-1] in _DATACLASSES:
            item_class = _DATACLASSES[ftype[5:-1]]
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise UsageError(f"{source}: {prefix}{name} must be a list of mappings")
            value = [_build(item_class, v, source, f"{prefix}{name}[{i}].") for i, v in enumerate(value)]
        elif ftype in _SCALARS and value is not None and not _SCALARS[ftype](value):
            raise UsageError(f"{source}: {prefix}{name} must be {ftype.split(' |')[0]}, got {value!r}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{source}: {prefix.rstrip('.') or 'config'}: {exc}") from None
    except UsageError as exc:  # a value check in __post_init__: say which file it came from
        raise UsageError(exc.args[0] if str(exc).startswith(source) else f"{source}: {exc}") from None


_SCALARS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "float | None": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "str | None": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
}
_DATACLASSES = {c.__name__: c for c in (StorageConfig, IncomingConfig, ValidationConfig, ApprovalConfig, PrelabelConfig, SplitConfig, GateConfig, InfraValidationConfig, MixedData,
                                         TrainStage, ModelTraining, TrainingConfig, NotificationsConfig)}
