"""The one pipeline-config loader: YAML file + `key.path=value` overrides -> typed config.

Unknown keys are errors (a typo in a nightly config must not be silently ignored),
reported with the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pipeline.yaml"


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
    max_image_pixels: int = 40_000_000
    max_image_side: int = 16384
    max_text_length: int = 25
    dict_file: str | None = None


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


@dataclass(frozen=True)
class PipelineConfig:
    storage: StorageConfig = field(default_factory=StorageConfig)
    model_name: str = "ocr"          # models/<model_name>/ in storage
    work_dir: str = "./work"
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    source: str = "<defaults>"  # where it was loaded from, for error messages

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir).expanduser().resolve()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load `path` (default: configs/pipeline.yaml, or $OCR_RETRAIN_CONFIG) and apply overrides."""
    path = Path(path or os.environ.get("OCR_RETRAIN_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UsageError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    for item in overrides or []:
        _apply_override(raw, item)
    raw["source"] = str(path)
    return _build(PipelineConfig, raw, str(path), "")


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
    node[leaf] = yaml.safe_load(value)


def _build(cls: type, raw: dict, source: str, prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UsageError(f"{source}: unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in raw.items():
        ftype = fields[name].type
        nested = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        if nested is not None:
            if not isinstance(value, dict):
                raise UsageError(f"{source}: {prefix}{name} must be a mapping")
            value = _build(nested, value, source, f"{prefix}{name}.")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{source}: {prefix.rstrip('.') or 'config'}: {exc}") from None


_DATACLASSES = {c.__name__: c for c in (StorageConfig, ValidationConfig, SplitConfig, GateConfig)}
