"""A retried training task resumes from the checkpoint it synced to storage, on any worker."""

import json

import pytest

from ocr_tasks.training import train as train_module
from ocr_tasks.config import load_config
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.embedded.synthetic import ExportSpec, make_export

pytestmark = pytest.mark.slow


class WorkerKilled(Exception):
    pass


def test_retry_on_another_worker_resumes_from_latest(storage, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    export = make_export(tmp_path / "labeller", ExportSpec("digits", n_images=30, seed=5))
    prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp_path / 'scratch'}"]))
    first_worker = load_config(overrides=[f"work_dir={tmp_path / 'worker1'}"])
    real_sync = train_module._checkpoint_sync

    def dies_after_first_checkpoint(storage_, remote, history):
        sync = real_sync(storage_, remote, history)

        def on_event(event):
            sync(event)
            if event.get("kind") == "save" and not event.get("best"):
                raise WorkerKilled("worker lost during epoch 2")
        return on_event

    monkeypatch.setattr(train_module, "_checkpoint_sync", dies_after_first_checkpoint)
    with pytest.raises(WorkerKilled):
        train_module.train_model(storage, first_worker, "rec", data_dir, "retry-run", epochs=3)
    assert storage.exists("runs/retry-run/rec/finetune/latest.pdparams")
    assert not storage.exists("runs/retry-run/rec/finetune/done.json")

    monkeypatch.setattr(train_module, "_checkpoint_sync", real_sync)
    second_worker = load_config(overrides=[f"work_dir={tmp_path / 'worker2'}"])  # nothing local
    trained = train_module.train_model(storage, second_worker, "rec", data_dir, "retry-run", epochs=3)
    loads = [e for e in trained.history if e["kind"] == "load"]
    assert loads and loads[0]["mode"] == "resume"
    epochs = [e["epoch"] for e in trained.history if e["kind"] == "train"]
    assert epochs and min(epochs) >= 2                     # epoch 1 was not trained again
    assert storage.exists("runs/retry-run/rec/finetune/done.json")
    history = [json.loads(l) for l in storage.get_text("runs/retry-run/rec/finetune/history.jsonl").splitlines()]
    assert any(e["kind"] == "train" and "loss" in e and "ips" in e for e in history)

    # a third try after the stage finished reuses it without training
    third = train_module.train_model(storage, load_config(overrides=[f"work_dir={tmp_path / 'w3'}"]),
                                     "rec", data_dir, "retry-run", epochs=3)
    assert third.history == [] and third.checkpoint.endswith(("best_accuracy", "latest"))
    assert (tmp_path / "w3" / "runs" / "retry-run" / "rec" / "finetune" / "config.yml").is_file()
