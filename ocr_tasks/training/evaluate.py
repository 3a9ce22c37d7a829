"""tools/eval.py of a trained checkpoint on a split of the dataset (the gate's metrics)."""

from __future__ import annotations

import logging
from pathlib import Path

from ocr_tasks.errors import UsageError
from ocr_tasks.training.engine import Engine, run_tool, visible_gpus
from ocr_tasks.training.render import checkpoint_overrides, eval_overrides
from ocr_tasks.vocabulary import DET, REC, TEST_SPLIT

log = logging.getLogger(__name__)

# what tools/eval.py prints for each model kind, and the gate reads
EVAL_METRICS = {DET: ("precision", "recall", "hmean"), REC: ("acc", "norm_edit_dis")}


def evaluate(task: str, config_path: Path, checkpoint: Path, data_dir: Path, log_file: Path,
             engine: Engine, *, dict_path: Path | None = None) -> dict[str, float]:
    """tools/eval.py of a checkpoint on the held-out test split.

    `dict_path` is the model's own dict (production's, for the baseline); by default the dataset's.
    """
    overrides = {**eval_overrides(task, data_dir, TEST_SPLIT), **checkpoint_overrides(checkpoint)}
    if task == REC:
        overrides["Global.character_dict_path"] = str(dict_path or Path(data_dir) / "dict.txt")
    run = run_tool(engine, "eval", config_path, overrides, log_file=log_file, cwd=log_file.parent,
                   gpus=visible_gpus()[:1], log=log)
    keys = EVAL_METRICS[task]
    missing = [k for k in keys if k not in run.final_metrics]
    if missing:
        raise UsageError(f"tools/eval.py printed no {', '.join(missing)} for {task}; see {log_file}")
    return {k: float(run.final_metrics[k]) for k in keys}
