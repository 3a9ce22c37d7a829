"""One retraining run: what it was asked to do (`RunRequest`), what it works with (`RunContext`),
the artifacts its steps hand each other, and how it ended (`RunOutcome`).

Every artifact is a plain dataclass: the Airflow runner passes them between tasks (and workers)
through XCom in one codec (ocr_tasks/codec.py), the local runner passes the objects themselves.
An artifact never carries another worker's local path as something to read: trained
models are fetched back from storage by the step that needs them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocr_tasks.config import PipelineConfig
from ocr_tasks.errors import UsageError
from ocr_tasks.ingest.exports import Discovery as ExportsFound
from ocr_tasks.release.approval import ApprovalRecord
from ocr_tasks.release.gate import GateDecision
from ocr_tasks.training.trained_model import TrainedModel
from ocr_tasks.vocabulary import MODEL_KINDS, RunStatus, compact_timestamp

if TYPE_CHECKING:  # boto3 stays out of DAG parsing
    from ocr_tasks.storage.s3 import Storage

MODEL_CHOICES = ("both", *MODEL_KINDS)   # the DAG's `models` Param
_RUN_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def new_run_id() -> str:
    return compact_timestamp()


def sanitize_run_id(run_id: str) -> str:
    """An Airflow run id (`scheduled__2026-01-01T02:00:00+00:00`) as a storage-safe pipeline run id."""
    cleaned = _RUN_ID_BAD.sub("_", run_id).strip("._-")
    if not cleaned:
        raise UsageError(f"run id {run_id!r} has no usable characters")
    return cleaned[:128]


@dataclass(frozen=True)
class Trigger:
    """Who started the run and what they asked for: run.json and the manifest keep it."""

    how: str                                  # manual, scheduled, asset_triggered, cli, ...
    by: str | None = None                     # the user, as the runner knows them (Airflow's triggering user)
    params: dict[str, Any] = field(default_factory=dict)     # the run's Params as given
    overridden: dict[str, dict[str, Any]] = field(default_factory=dict)   # key -> {"deployed", "run"}


GATE_PARAMS = ("rec_min_acc", "det_min_hmean")   # thresholds a run may set (stricter, or looser if allowed)
# the trigger form's `require_approval` choices, and what each asks of approval.required (None: as deployed)
APPROVAL_CHOICES: dict[str, bool | None] = {"as configured": None, "ask": True, "do not ask": False}


def approval_choice(value: object) -> bool | None:
    """The form's `require_approval` choice as an override. True/False/None are taken too, for callers that build a
    RunRequest in Python; the DAG's Param itself admits only the choices (a REST trigger sends "ask", not true)."""
    if value is None or isinstance(value, bool):
        return value
    if value not in APPROVAL_CHOICES:
        raise UsageError(f"require_approval must be one of {', '.join(map(repr, APPROVAL_CHOICES))}, got {value!r}")
    return APPROVAL_CHOICES[str(value)]


def run_overrides(config: PipelineConfig, *, thresholds: Mapping[str, float | None],
                  require_approval: bool | None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The config overrides a run asks for, checked against the deployed config, which is the floor:
    a stricter gate and asking for approval always pass; a looser threshold or skipping a required
    approval only where `trigger.may_relax_gate` / `trigger.may_skip_approval` allow it. Returns the
    overrides and what they change ({key: {"deployed", "run"}})."""
    overrides: list[str] = []
    overridden: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    for key in GATE_PARAMS:
        value = thresholds.get(key)
        if value is None:
            continue
        deployed = getattr(config.gate, key)
        overrides.append(f"gate.{key}={float(value)}")
        if float(value) != deployed:
            overridden[f"gate.{key}"] = {"deployed": deployed, "run": float(value)}
        if float(value) < deployed and not config.trigger.may_relax_gate:
            refused.append(f"{key}={value} is below the deployed gate.{key}={deployed}")
    if require_approval is not None:
        overrides.append(f"approval.required={'true' if require_approval else 'false'}")
        if require_approval != config.approval.required:
            overridden["approval.required"] = {"deployed": config.approval.required, "run": require_approval}
        if config.approval.required and not require_approval and not config.trigger.may_skip_approval:
            refused.append("require_approval 'do not ask' (false) would skip the deployed approval.required=true")
    if refused:
        raise UsageError("a run may make the gate stricter or ask for approval, not relax the deployed config: "
                         + "; ".join(refused) + " (the deployment allows it with trigger.may_relax_gate / "
                         "trigger.may_skip_approval)")
    return overrides, overridden


@dataclass(frozen=True)
class RunRequest:
    """The run's parameters: the DAG's Params, or `ocr-retrain run`'s flags."""

    run_id: str
    models: tuple[str, ...] = MODEL_KINDS    # which model kinds to train this run
    force: bool = False                      # train even when nothing is new
    epochs: int | None = None                # every stage's epochs; None: as configured
    dry_run: bool = False                    # train, evaluate and gate, publish nothing (trains even when nothing is new)
    approved_by: str | None = None           # `ocr-retrain run --approved-by`: who approves, when approval is required
    trigger: Trigger | None = field(default=None, compare=False)   # who started it, with which Params (run.json, manifest)

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODEL_KINDS]
        if unknown or not self.models:
            raise UsageError(f"models must be some of {', '.join(MODEL_KINDS)}, got {list(self.models)}")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")

    @property
    def trains_anyway(self) -> bool:
        """Train though nothing is new: forced, or a dry run (asked for to see a run through, not to find that
        nothing is new; it does not mark the data trained on, so the next night still trains)."""
        return self.force or self.dry_run

    @staticmethod
    def models_from_choice(config: PipelineConfig, choice: str) -> tuple[str, ...]:
        """The form's `models` choice: "both" trains what the config lists, "det"/"rec" narrows it."""
        if choice not in MODEL_CHOICES:
            raise UsageError(f"models must be one of {', '.join(MODEL_CHOICES)}, got {choice!r}")
        return tuple(config.training.models) if choice == "both" else (choice,)


@dataclass(frozen=True)
class RunContext:
    """What every step works with: the config (with the run's overrides), storage, the request, and the
    step it runs for (its local scratch folder)."""

    config: PipelineConfig
    storage: Storage
    request: RunRequest
    step: str = "run"

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def scratch(self) -> Path:
        """work_dir/runs/<run_id>/<step>/: this step's local files, never shared with another step."""
        return self.config.work.step(self.run_id, self.step)

    def for_step(self, step: str) -> "RunContext":
        return replace(self, step=step)


# --------------------------------------------------------------------------- artifacts


@dataclass
class Discovery(ExportsFound):
    """discover -> should_run, check_export: the exports found (new, waiting, already ingested)
    and the datasets' state."""

    latest_dataset: str | None = None
    untrained_dataset: str | None = None                       # the latest, when no finished run trained on it


@dataclass
class MergedDataset:
    """merge -> train, evaluate, publish: the dataset version this run trains on (None: nothing to do)."""

    dataset_version: str | None
    merged: dict[str, Any] | None = None       # the new version's DatasetVersion JSON, when exports were merged
    quarantined: dict[str, str | None] = field(default_factory=dict)   # export -> quarantine folder
    left_out: dict[str, dict] = field(default_factory=dict)   # export merged without some images -> {images, report}


@dataclass
class Evaluation:
    """evaluate -> export, gate, publish, record: test-split metrics of the new models and of production's."""

    metrics: dict[str, dict[str, float]]
    trained: dict[str, TrainedModel]
    production_version: str | None = None
    baseline: dict[str, dict[str, float]] = field(default_factory=dict)   # production's metrics, per kind
    production_is_stock: bool = False     # production is the stock baseline (release/baseline.py), never trained here
    # production's reads of this test split, sample by sample, when this run registered it (the stock baseline
    # was read on the split to be scored): the storage key compare takes them from instead of reading again
    production_test_reads: str | None = None

    def baseline_record(self) -> dict[str, Any] | None:
        """Production's metrics as run.json and the manifest record them: {"version", <kind>: metrics}, and
        "stock": true when production is the stock baseline."""
        if not self.production_version:
            return None
        return {"version": self.production_version, **({"stock": True} if self.production_is_stock else {}),
                **self.baseline}


@dataclass
class ExportedBundle:
    """export -> infra_validate, publish: the exported det/, rec/, checkpoints/ under `prefix` in storage."""

    prefix: str                                  # runs/<run_id>/bundle/
    exported: list[str]                          # kinds exported from this run's checkpoints
    carried_over: dict[str, str] = field(default_factory=dict)   # kind -> the production version it came from
    # det post-processing chosen on the val split (release/postprocess.py): chosen, tried, val_images, skipped
    postprocess: dict[str, Any] = field(default_factory=dict)
    # the rec dict this run's rec reads (dataset.json `dictionary`: source, size, configured, grown); None: no rec here
    dictionary: dict[str, Any] | None = None
    # the ONNX files beside the Paddle ones (release/onnx_export.py): files, opset, settings, converter, or skipped
    onnx: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """How the run ended: run.json in storage, the CLI's summary, the notification."""

    run_id: str
    status: RunStatus
    dataset_version: str | None = None
    model_version: str | None = None
    metrics: dict = field(default_factory=dict)
    baseline: dict | None = None
    exported_metrics: dict | None = None   # runtime -> {versions, metrics, latency_ms, error}: the infra validation
    gate: GateDecision | None = None
    report: str | None = None        # local summary.html
    report_uri: str | None = None
    note: str | None = None          # why a gate-passing run is not production (superseded)
    comparison: dict | None = None   # slices and reference sets, new and production (release/compare.py)
    approval: ApprovalRecord | None = None   # who approved or rejected the publish, when, why (approval.required)
    trigger: Trigger | None = None   # who started the run, its Params, what they overrode
    quarantined: dict[str, str | None] = field(default_factory=dict)   # export refused whole -> its quarantine folder
    left_out: dict[str, dict] = field(default_factory=dict)   # export merged without some images -> {images, report}
