"""The new bundle beside production's where an average hides things: slices of the test split
and the reference sets (TFX's Evaluator with a baseline, for PaddleOCR).

    compare_with_production(new, production, test_dir, references, ...) -> Comparison

Both bundles are read by the consumer probe in the pipeline's own interpreter, det alone on every
image and rec alone on every crop (and the test split end to end), and scored per slice
(release/slices.py). The new bundle's test split was read so already by infra validation when
its runtimes include the pipeline's own (`null`): those reads are used, not made twice; likewise production's
when it is the stock baseline this run registered, read so on this split (release/baseline.py). The gate refuses a
slice or a reference set that regressed beyond tolerance (gate.max_slice_regression,
gate.max_reference_regression); the report shows the table and the worst samples, from the
per-sample reads kept beside it.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ocr_tasks.release.infra_validation import RuntimeRead, read_samples
from ocr_tasks.release.read_metrics import det_scores, end_to_end_of, rec_scores
from ocr_tasks.release.slices import SampleIndex, slice_scores
from ocr_tasks.vocabulary import DET, MODEL_KINDS, REC

log = logging.getLogger(__name__)

NEW, PRODUCTION = "new", "production"


@dataclass
class Comparison:
    """compare -> gate, publish/record: per-slice and per-reference-set metrics of both models.

    slices:     {kind: {slice: {"samples": n, "new": metrics, "production": metrics | None}}}
    references: {set: {kind: {"samples": n, "new": metrics, "production": metrics | None}}}
    problems:   why a comparison could not be made (a reference set that fails validation, the new
                model not reading a set): the gate refuses with them
    notes:      what was left out and why (production's model not reading: nothing to compare with)
    reads:      where the per-sample reads are, {"test/new": <file or key>, ...} (the report's error analysis)
    e2e:        the test split read end to end by the PaddleOCR pipeline in the pipeline's runtime, per model:
                {"runtime": label, "new": {e2e_precision, e2e_recall, e2e_hmean}, "production": ... | None}
    """

    production_version: str | None = None
    slices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    references: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reads: dict[str, str] = field(default_factory=dict)
    e2e: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What the manifest and run.json keep (the reads are local files)."""
        return {"production_version": self.production_version, "slices": self.slices,
                "references": self.references, "problems": self.problems, "notes": self.notes, "e2e": self.e2e}


def compare_with_production(new: Path, production: Path | None, production_version: str | None, test_dir: Path,
                            references: dict[str, Path], work: Path, *, python: str | None, timeout_s: float,
                            kinds: list[str], new_test_read: tuple[RuntimeRead, dict[str, Any]] | None = None,
                            production_test_answer: dict[str, Any] | None = None) -> Comparison:
    """Read the test split and each reference set with the new bundle and (when there is one) production's.

    `new_test_read`: the new bundle's reads of this test split in the same runtime, already made (infra
    validation in the pipeline's own interpreter): used as they are, not read twice. `production_test_answer`:
    production's, made likewise (the stock baseline this run registered, read on this split in the pipeline's
    own interpreter: release/baseline.py)."""
    result = Comparison(production_version)
    models = {NEW: Path(new).absolute()}
    if production is not None:
        models[PRODUCTION] = Path(production).absolute()
    datasets = {"test": Path(test_dir).absolute(), **{f"reference-{n}": Path(d).absolute() for n, d in references.items()}}
    for dataset, data_dir in datasets.items():
        index = SampleIndex.of(data_dir)
        answers: dict[str, dict[str, Any]] = {}
        for model, bundle in models.items():
            # the test split with every kind the bundle has: a run that retrained rec alone is still read end
            # to end with the det it ships with; the reference sets with the retrained kinds
            usable = [k for k in (MODEL_KINDS if dataset == "test" else kinds) if (bundle / k / "inference.yml").is_file()]
            # the test split also end to end (both bundles, one runtime): e2e may not regress against production
            answer_file = Path(work) / "compare" / f"{dataset}-{model}.json"
            made = new_test_read if model == NEW else None
            if model == PRODUCTION and production_test_answer is not None:
                made = RuntimeRead("pipeline", sys.executable, versions=production_test_answer.get("runtime") or {},
                                   error=production_test_answer.get("error")), production_test_answer
            if dataset == "test" and made is not None:
                read, answer = made
                answer_file.parent.mkdir(parents=True, exist_ok=True)
                answer_file.write_text(json.dumps(answer), encoding="utf-8")
            else:
                read, answer = read_samples(bundle, usable, list(index.boxes) if DET in usable else [],
                                            list(index.crops) if REC in usable else [], f"{dataset}-{model}", python,
                                            answer_file.parent, timeout_s=timeout_s, pipeline=dataset == "test")
            if read.error:
                message = (str(read.error.get("message", "")).strip().splitlines() or [""])[0][:300]
                why = f"the {model} model could not read {dataset}: {read.error.get('type')}: {message}"
                (result.problems if model == NEW else result.notes).append(why)
                continue
            answers[model] = answer
            result.reads[f"{dataset}/{model}"] = str(answer_file)
            if answer.get("ocr"):
                # the runtime infra validation named (when its reads are used), else read as test-new/-production
                shared = new_test_read is not None and read is new_test_read[0]
                result.e2e["runtime"] = read.label() if shared else replace(read, name="pipeline").label()
                result.e2e[model] = end_to_end_of(index.boxes, answer["ocr"])
        if NEW not in answers:
            continue
        if dataset == "test":
            result.slices = _side_by_side(slice_scores(index, answers[NEW]),
                                          slice_scores(index, answers[PRODUCTION]) if PRODUCTION in answers else {})
        else:
            result.references[dataset.removeprefix("reference-")] = {
                kind: {"samples": whole[NEW]["samples"], NEW: whole[NEW]["metrics"],
                       PRODUCTION: whole[PRODUCTION]["metrics"] if PRODUCTION in whole else None}
                for kind, whole in _whole(index, answers).items()}
    for name, kinds_read in result.references.items():
        log.info("reference set %s: %s", name, kinds_read)
    return result


def _side_by_side(new: dict, production: dict) -> dict[str, dict[str, dict[str, Any]]]:
    return {kind: {name: {"samples": entry["samples"], NEW: entry["metrics"],
                          PRODUCTION: production.get(kind, {}).get(name, {}).get("metrics")}
                   for name, entry in slices.items()}
            for kind, slices in new.items()}


def _whole(index: SampleIndex, answers: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Whole-set det and rec metrics per model: {kind: {model: {"samples", "metrics"}}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for model, answer in answers.items():
        det = [(index.boxes[r["image"]], r["polys"]) for r in answer.get("det") or [] if r["image"] in index.boxes]
        rec = [(r["text"], index.crops[r["crop"]][1]) for r in answer.get("rec") or [] if r["crop"] in index.crops]
        if det:
            out.setdefault(DET, {})[model] = {"samples": len(det), "metrics": det_scores(det)}
        if rec:
            out.setdefault(REC, {})[model] = {"samples": len(rec), "metrics": rec_scores(rec)}
    return {kind: models for kind, models in out.items() if NEW in models}
