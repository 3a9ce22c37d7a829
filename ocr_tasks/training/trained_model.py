"""What a train step hands on: the trained model's checkpoint and config (paths on the worker that
trained it; other workers fetch them back from storage), its curves and its stages. Kept apart from
training/train.py so the pipeline declaration can name it without importing the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocr_tasks.vocabulary import ModelKind


@dataclass
class TrainedModel:
    task: ModelKind
    run_id: str
    checkpoint: str              # local prefix of the best weights, e.g. .../finetune/best_accuracy
    config: str                  # the rendered config of the last stage (replay with tools/train.py -c)
    history: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
