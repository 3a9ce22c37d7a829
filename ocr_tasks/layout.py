"""Where things live in the bucket (under the configured root prefix).

    incoming/<export>/            what labellers upload (PPOCRLabel export folders); never modified
    ledger/ingest.json            which exports were merged or quarantined, and the latest dataset
    quarantine/<export>/<fp>/     report.txt, validation.json, data_docs/, the export's label files
    datasets/packs/<pack>.tar     the images (and PPOCRLabel crops) each merge added, one tar per merge
    datasets/<version>/           det/, rec/, dict.txt, images.jsonl, crops.jsonl, packs.json,
                                  dataset.json (written last)

Label lists reference `images/...` and `crops/...` relative to the dataset root, so a
dataset materialised locally (`ocr-retrain pull-dataset`) is `data_dir` for PaddleOCR.
"""

INCOMING = "incoming/"
LEDGER = "ledger/ingest.json"
QUARANTINE = "quarantine/"
DATASETS = "datasets/"
PACKS = "datasets/packs/"


def dataset_prefix(version: str) -> str:
    return f"{DATASETS}{version}/"


def quarantine_prefix(export: str, fingerprint: str) -> str:
    return f"{QUARANTINE}{export}/{fingerprint[:12]}/"


def pack_key(pack_id: str) -> str:
    return f"{PACKS}{pack_id}.tar"
