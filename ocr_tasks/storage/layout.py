"""Where things live in the bucket (under the configured root prefix).

    incoming/<export>/            what labellers upload (PPOCRLabel export folders); never modified
    ledger/ingest.json            which exports were merged or quarantined, and the latest dataset
    quarantine/<export>/<fp>/     report.txt, validation.json, data_docs/, the export's label files
    datasets/packs/<pack>.tar     the images (and PPOCRLabel crops) each merge added, one tar per merge
    datasets/<version>/           det/, rec/, dict.txt, images.jsonl, crops.jsonl, packs.json,
                                  dataset.json (written last)
    runs/last_trained.json        the dataset version the last finished (non-dry) run trained on
    runs/<run_id>/<det|rec>/<stage>/   config.yml (replayable), train.log, history.jsonl, latest.* and best_accuracy.*
                                  checkpoints as they are saved, done.json when the stage finished
    models/<name>/<version>/      det/, rec/ (PaddleOCR inference models), checkpoints/{det,rec}/
                                  (training checkpoints: the next run's baseline), report/,
                                  manifest.json (sha256 and size of every file; written last)
    models/<name>/production.json {"version", "updated_at", "previous"}: the pointer consumers
                                  follow, one PUT after the version is complete

Label lists reference `images/...` and `crops/...` relative to the dataset root, so a
dataset materialised locally (`ocr-retrain pull-dataset`) is `data_dir` for PaddleOCR.
"""

INCOMING = "incoming/"
LEDGER = "ledger/ingest.json"
QUARANTINE = "quarantine/"
DATASETS = "datasets/"
PACKS = "datasets/packs/"
RUNS = "runs/"
LAST_TRAINED = "runs/last_trained.json"
MODELS = "models/"


def dataset_prefix(version: str) -> str:
    return f"{DATASETS}{version}/"


def quarantine_prefix(export: str, fingerprint: str) -> str:
    return f"{QUARANTINE}{export}/{fingerprint[:12]}/"


def pack_key(pack_id: str) -> str:
    return f"{PACKS}{pack_id}.tar"


def models_prefix(name: str) -> str:
    return f"{MODELS}{name}/"


def model_version_prefix(name: str, version: str) -> str:
    return f"{MODELS}{name}/{version}/"


def model_manifest_key(name: str, version: str) -> str:
    return f"{model_version_prefix(name, version)}manifest.json"


def production_key(name: str) -> str:
    return f"{MODELS}{name}/production.json"


def model_report_prefix(name: str, version: str) -> str:
    return f"{model_version_prefix(name, version)}report/"


def run_record_key(run_id: str) -> str:
    return f"{RUNS}{run_id}/run.json"


def run_report_prefix(run_id: str) -> str:
    return f"{RUNS}{run_id}/report/"
