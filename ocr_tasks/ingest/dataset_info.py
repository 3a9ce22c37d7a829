"""What a local dataset folder's dataset.json says (ingest/dataset.py writes it last): one reader for every step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_dataset_info(data_dir: Path) -> dict[str, Any]:
    """dataset.json of `data_dir`; {} where there is none or it does not parse (a folder made by hand)."""
    try:
        info = json.loads((Path(data_dir) / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
