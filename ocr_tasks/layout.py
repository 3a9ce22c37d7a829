"""Where things live in the bucket (under the configured root prefix).

    incoming/<export>/            what labellers upload (PPOCRLabel export folders); never modified
    ledger/ingest.json            which exports were merged or quarantined, and the latest dataset
    quarantine/<export>/<fp>/     report.txt, validation.json, data_docs/, the export's label files
    datasets/blobs/images/<sha256><ext>   content-addressed images, shared by all versions
    datasets/blobs/crops/<sha256>.jpg     content-addressed recognition crops
    datasets/<version>/           det/, rec/, dict.txt, images.jsonl, crops.jsonl, dataset.json (written last)

Label lists reference `images/...` and `crops/...` relative to the dataset root, so a
dataset materialised locally (`ocr-retrain pull-dataset`) is `data_dir` for PaddleOCR.
"""

INCOMING = "incoming/"
LEDGER = "ledger/ingest.json"
QUARANTINE = "quarantine/"
DATASETS = "datasets/"
BLOBS = "datasets/blobs/"


def dataset_prefix(version: str) -> str:
    return f"{DATASETS}{version}/"


def quarantine_prefix(export: str, fingerprint: str) -> str:
    return f"{QUARANTINE}{export}/{fingerprint[:12]}/"
