"""Where things live in the bucket (under the configured root prefix).

    incoming/<export>/            what labellers upload (PPOCRLabel export folders); never modified
    unlabeled/<batch>/            raw images to label next (ocr_prelabel pre-labels them)
    prelabeled/<batch>/<version>/ <batch>/ (a PPOCRLabel folder: images, Cache.cach with the model's
                                  predictions), ranking.csv/.html (hardest first), done.json (last)
    reference/<name>/             fixed labelled sets (PPOCRLabel exports) every run reads with the new and
                                  the production model; never merged into training (ingest/reference.py)
    ledger/ingest.json            which exports were merged or quarantined, and the latest dataset
    quarantine/<export>/<fp>/     report.txt, validation.json, data_docs/, the export's label files
    datasets/packs/<pack>.tar     the images (and PPOCRLabel crops) each merge added, one tar per merge
    datasets/<version>/           det/, rec/, dict.txt, images.jsonl, crops.jsonl, packs.json,
                                  dataset.json (written last)
    runs/last_trained.json        the dataset version the last finished (non-dry) run trained on
    runs/<run_id>/<det|rec>/<stage>/   config.yml (replayable), train.log, history.jsonl, latest.* and best_accuracy.*
                                  checkpoints as they are saved, done.json when the stage finished
    runs/<run_id>/bundle/         the exported det/, rec/ and checkpoints/ (export), exactly what publish publishes
    runs/<run_id>/infra_validation.json   what each consumer runtime read with that bundle
    runs/<run_id>/runtimes/<runtime>.json the same, sample by sample (compare reuses the pipeline's own)
    runs/<run_id>/compare/        per-sample reads of the test split and reference sets, new and production
    models/<name>/<version>/      det/, rec/ (PaddleOCR inference models), checkpoints/{det,rec}/
                                  (training checkpoints: the next run's baseline), report/,
                                  manifest.json (sha256 and size of every file; written last)
    models/<name>/production.json {"version", "updated_at", "previous"}: the pointer consumers
                                  follow, one PUT after the version is complete
    models/<name>/<version>/reserved.json   which run reserved the version name (before any upload)
    locks/<name>.json             a lease: one writer at a time for the ledger and for a model's
                                  pointer and version names (storage/lease.py); gone when released

On each worker, `work_dir` (config) holds the local side, laid out by `WorkDir`:

    exports/<export>/<fp>/<export>/   a fetched export (validation and merge on one worker fetch once)
    datasets/current/             the latest pulled dataset version (PaddleOCR data_dir), one folder
                                  across runs: a pull fetches only new packs
    datasets/stage-<id>/          a merge being built (removed when done)
    runs/<run_id>/<det|rec>/<stage>/   the engine's save_model_dir, config.yml, train.log
    runs/<run_id>/<step>/         each step's own scratch (bundle/, production/, runtimes/, report/): two
                                  steps of one run on one worker at once never share a folder
    references/<name>/<fp>/       a reference set as a dataset (every sample in test), cached by fingerprint
    pretrained/<key>              pretrained weights from the bucket
    tmp/                          scratch; nothing is written outside work_dir

Label lists reference `images/...` and `crops/...` relative to the dataset root, so a
dataset materialised locally (`ocr-retrain pull-dataset`) is `data_dir` for PaddleOCR.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

INCOMING = "incoming/"
REFERENCE = "reference/"
UNLABELED = "unlabeled/"
PRELABELED = "prelabeled/"
LEDGER = "ledger/ingest.json"
QUARANTINE = "quarantine/"
DATASETS = "datasets/"
PACKS = "datasets/packs/"
RUNS = "runs/"
LAST_TRAINED = "runs/last_trained.json"
MODELS = "models/"
LOCKS = "locks/"
LEDGER_LEASE = "ingest-ledger"


def unsafe_key_reason(key: str) -> str | None:
    """Why a key cannot be stored or fetched safely, or None: '..' could escape a prefix (and the local
    folder a download writes into); empty and '.' segments alias another key on filesystem-backed servers
    (rclone, MinIO). One rule for the storage layer and for what discovery finds others uploaded."""
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        return "empty, '.' or '..' path segment"
    return None


def dataset_prefix(version: str) -> str:
    return f"{DATASETS}{version}/"


def quarantine_prefix(export: str, fingerprint: str) -> str:
    return f"{QUARANTINE}{export}/{fingerprint[:12]}/"


def pack_key(pack_id: str) -> str:
    return f"{PACKS}{pack_id}.tar"


def models_prefix(name: str) -> str:
    return f"{MODELS}{name}/"


def model_version_prefix(name: str, version: str) -> str:
    return f"{models_prefix(name)}{version}/"


def prelabel_prefix(batch: str, model_version: str) -> str:
    return f"{PRELABELED}{batch}/{model_version}/"


def prelabel_done_key(batch: str, model_version: str) -> str:
    return prelabel_prefix(batch, model_version) + "done.json"


def lock_key(name: str) -> str:
    return f"{LOCKS}{name}.json"


def model_lease(name: str) -> str:
    return f"model-{name}"


def model_reservation_key(name: str, version: str) -> str:
    return model_version_prefix(name, version) + "reserved.json"


def model_manifest_key(name: str, version: str) -> str:
    return model_version_prefix(name, version) + "manifest.json"


def model_report_prefix(name: str, version: str) -> str:
    return model_version_prefix(name, version) + "report/"


def production_key(name: str) -> str:
    return models_prefix(name) + "production.json"


def run_prefix(run_id: str) -> str:
    return f"{RUNS}{run_id}/"


def run_record_key(run_id: str) -> str:
    return run_prefix(run_id) + "run.json"


def run_report_prefix(run_id: str) -> str:
    return run_prefix(run_id) + "report/"


def run_model_prefix(run_id: str, kind: str) -> str:
    """runs/<run_id>/<det|rec>/: every stage's checkpoints, logs and done.json."""
    return f"{run_prefix(run_id)}{kind}/"


def run_stage_prefix(run_id: str, kind: str, stage: str) -> str:
    return f"{run_model_prefix(run_id, kind)}{stage}/"


def run_metrics_key(run_id: str) -> str:
    return run_prefix(run_id) + "metrics.json"


def run_bundle_prefix(run_id: str) -> str:
    """runs/<run_id>/bundle/: the exported models infra validation reads and publish publishes."""
    return run_prefix(run_id) + "bundle/"


def run_compare_prefix(run_id: str) -> str:
    return run_prefix(run_id) + "compare/"


def run_baseline_reads_key(run_id: str) -> str:
    """runs/<run_id>/baseline/test-reads.json: the stock baseline this run registered, read on the run's test split
    sample by sample (release/baseline.py), which compare uses as production's reads instead of reading them again."""
    return f"{run_prefix(run_id)}baseline/test-reads.json"


def run_infra_validation_key(run_id: str) -> str:
    return run_prefix(run_id) + "infra_validation.json"


def run_runtime_reads_key(run_id: str, runtime: str) -> str:
    """runs/<run_id>/runtimes/<runtime>.json: what one consumer runtime read, sample by sample (paths relative
    to the dataset folder), for compare and the report."""
    return f"{run_prefix(run_id)}runtimes/{runtime}.json"


@dataclass(frozen=True)
class WorkDir:
    """The worker's local folders under the configured work_dir (see the module docstring)."""

    root: Path

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def current_dataset(self) -> Path:
        return self.root / "datasets" / "current"

    @property
    def current_dataset_lock(self) -> Path:
        return self.root / "datasets" / ".current.lock"

    def new_dataset_stage(self) -> Path:
        return self.root / "datasets" / f"stage-{uuid.uuid4().hex[:8]}"

    def run(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def run_model(self, run_id: str, kind: str) -> Path:
        return self.run(run_id) / kind

    def step(self, run_id: str, step: str) -> Path:
        """One step's scratch: steps of a run may run at once on one worker (LocalExecutor, a Celery
        worker with two slots), so none fetches into or clears another's folder."""
        # runs/<run_id>/det|rec/ hold the trained models (run_model): a step's scratch must never be one of them
        if step in ("det", "rec") or not step or "/" in step or step.startswith("."):
            raise ValueError(f"not a step name for a scratch folder: {step!r}")
        return self.run(run_id) / step

    @property
    def prelabel(self) -> Path:
        return self.root / "prelabel"

    @property
    def references(self) -> Path:
        return self.root / "references"

    @property
    def pretrained(self) -> Path:
        return self.root / "pretrained"

    @property
    def scratch(self) -> Path:
        """Temporary files go under work_dir, never the system temp."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path
