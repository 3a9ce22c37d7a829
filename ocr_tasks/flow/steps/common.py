"""What several steps share: the dataset version as a local data_dir (one pull at a time per worker),
the trained models and the exported bundle fetched back from storage into the step's own scratch, and the
consumer probe's per-sample reads kept in storage for the steps after (which may run on another worker)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocr_tasks.errors import UsageError

if TYPE_CHECKING:
    from ocr_tasks.flow.run import ExportedBundle, MergedDataset, RunContext
    from ocr_tasks.training.trained_model import TrainedModel


def local_dataset(ctx: RunContext, version: str) -> Path:
    """The dataset version as a PaddleOCR data_dir on this worker: one folder across runs
    (a pull fetches only new packs), one pull at a time (det and rec tasks on one worker)."""
    from ocr_tasks.ingest.pull import pull_dataset

    with _locked(ctx.config.work.current_dataset_lock):
        return pull_dataset(ctx.storage, version, ctx.config.work.current_dataset)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dataset_version(merged: MergedDataset) -> str:
    if merged.dataset_version is None:
        raise UsageError("no dataset version to train on")
    return merged.dataset_version


def fetch_all(ctx: RunContext, trained: dict[str, TrainedModel]) -> dict[str, TrainedModel]:
    from ocr_tasks.training.train import fetch_trained

    return {kind: fetch_trained(ctx.storage, ctx.config, model) for kind, model in sorted(trained.items())}


def fetch_bundle(ctx: RunContext, exported: ExportedBundle) -> Path:
    """The exported bundle in this step's scratch, fresh from storage (export may have run on another
    worker; a step running beside this one on the same worker fetches into its own scratch)."""
    import shutil

    bundle = ctx.scratch / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    if not ctx.storage.download_prefix(exported.prefix, bundle):
        raise UsageError(f"run {ctx.run_id}: no exported bundle under {ctx.storage.uri(exported.prefix)}")
    return bundle




def keep_reads(ctx: RunContext, key: str, answer: dict[str, Any], data_dir: Path) -> str:
    """A probe's per-sample answer stored at `key`, its sample paths relative to the dataset folder: another
    worker's dataset folder is elsewhere. Returns `key`."""
    from ocr_tasks.release.infra_validation import with_sample_paths

    root = data_dir.absolute()
    ctx.storage.put_json(key, with_sample_paths(answer, lambda path: str(Path(path).relative_to(root))))
    return key


def kept_reads(ctx: RunContext, key: str, data_dir: Path) -> dict[str, Any]:
    """What keep_reads stored at `key`, its sample paths under this worker's dataset folder `data_dir`."""
    from ocr_tasks.release.infra_validation import with_sample_paths

    root = data_dir.absolute()
    return with_sample_paths(ctx.storage.get_json(key), lambda path: str(root / path))
