"""When does a run train? Against the dataset the last finished run trained on."""

import pytest

from ocr_tasks.storage import layout
from ocr_tasks.config import load_config
from ocr_tasks.errors import UsageError
from ocr_tasks.flow import steps
from ocr_tasks.flow.run import RunContext, RunRequest
from tests.kit import export


def prepare_dataset(storage, config, *, force):
    """The night's ingest half, as both runners run it: the dataset version it would train on."""
    ctx = RunContext(config, storage, RunRequest("tonight", force=force))
    return steps.merge(ctx, [steps.check_export(ctx, ref) for ref in steps.discover(ctx).new]).dataset_version


def test_train_decision_follows_the_last_trained_dataset(storage, tmp_path):
    config = load_config(overrides=[f"work_dir={tmp_path / 'work'}"])
    with pytest.raises(UsageError, match="no dataset version exists yet"):
        prepare_dataset(storage, config, force=True)
    assert prepare_dataset(storage, config, force=False) is None

    storage.upload_dir(export(tmp_path / "a", "batch_001", n_images=6), "incoming/batch_001")
    version = prepare_dataset(storage, config, force=False)
    assert version is not None
    # the run crashed in training (nothing recorded): the next night trains the same version
    assert prepare_dataset(storage, config, force=False) == version
    storage.put_json(layout.LAST_TRAINED, {"dataset_version": version})
    assert prepare_dataset(storage, config, force=False) is None
    assert prepare_dataset(storage, config, force=True) == version
    # a re-upload that adds only an unconfirmed image merges the same content: nothing to train
    storage.put_bytes("incoming/batch_001/unlabelled.jpg", b"not labelled yet")
    assert prepare_dataset(storage, config, force=False) is None
