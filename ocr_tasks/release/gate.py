"""The export gate: may a freshly trained model replace production?

A pure function over metrics measured on the held-out *test* split. The baseline is
the current production model evaluated on that same split in the same run, so a
regression check compares like with like even as the test split grows night by night.
The infra validation (release/infra_validation.py) adds what consumers will see: the
exported models must load in every consumer runtime, and what they read there must not
drift from tools/eval.py's metrics by more than `max_export_drift` (a model that evals
well and reads badly once exported is a known PaddleOCR trap: mismatched post-processing,
resize or dict). A failed gate is an ordinary outcome (`passed=False` with reasons), never
an exception.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ocr_tasks.config import GateConfig
from ocr_tasks.vocabulary import DET, MODEL_KINDS, REC

if TYPE_CHECKING:
    from ocr_tasks.release.compare import Comparison
    from ocr_tasks.release.infra_validation import InfraValidation

__all__ = ["KEY_METRICS", "Bound", "CheckKind", "GateCheck", "GateDecision", "decide"]

# The one metric per model that thresholds and regressions are judged on.
KEY_METRICS: dict[str, str] = {DET: "hmean", REC: "acc"}

# Metrics arrive as floats computed from counts; without a little slack a drop of exactly
# `max_regression` (0.93 -> 0.92 with 0.01 allowed) would fail on float rounding.
_EPSILON = 1e-9


class CheckKind(StrEnum):
    """What a check judges. In TFX's words: a value threshold bounds a metric, a change threshold
    bounds its change against a baseline (production, or tools/eval.py for an exported model)."""

    THRESHOLD = "threshold"         # value threshold: the test split, or end to end in a runtime
    REGRESSION = "regression"       # change threshold against production, the whole test split
    SLICE = "slice"                 # change threshold against production, one slice of the test split
    REFERENCE = "reference"         # change threshold against production, one reference set
    EXPORT_DRIFT = "export_drift"   # change threshold: exported model in a runtime against tools/eval.py
    RUNTIME = "runtime"             # the exported models load and run in a consumer runtime
    COMPARISON = "comparison"       # the comparison with production could be made


class Bound(StrEnum):
    """How `value` must stand against `threshold` (the record keeps the symbol)."""

    ABOVE = ">"
    AT_LEAST = ">="
    DRIFT_AT_MOST = "drift <="      # |value - eval_value| <= threshold
    HOLDS = "=="                    # a yes/no check: it held


@dataclass
class GateCheck:
    model: str                      # det, rec, e2e, or det+rec
    metric: str
    value: float | None
    threshold: float | None
    op: Bound
    passed: bool
    kind: CheckKind
    runtime: str | None = None      # the consumer runtime it was read in
    baseline: float | None = None   # production's value (change thresholds)
    max_regression: float | None = None
    eval_value: float | None = None  # tools/eval.py's value (export drift)
    drift: float | None = None
    slice: str | None = None
    reference: str | None = None
    samples: int | None = None


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # one sentence per failed check
    checks: list[GateCheck] = field(default_factory=list)  # every check, passed or not
    thresholds: dict[str, Any] = field(default_factory=dict)  # the GateConfig it judged with


def decide(
    new: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]] | None,
    gate: GateConfig,
    models: Sequence[str] = MODEL_KINDS,
    served: InfraValidation | None = None,
    compared: Comparison | None = None,
    stock: bool = False,
) -> GateDecision:
    """Check `new` test metrics against the thresholds in `gate` and against `baseline`.

    Only the models in `models` are judged (a run may retrain det or rec alone). For a
    model the baseline has no entry for, there is nothing to regress from, so only
    the absolute threshold applies. `stock`: production is the stock baseline, which the new
    model must beat end to end (gate.must_beat_stock).
    """
    models = list(dict.fromkeys(models))
    if not models:
        # A gate that checks nothing would pass anything.
        raise ValueError("the gate needs at least one model to check")
    unknown = [m for m in models if m not in KEY_METRICS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r} for the gate (known: {', '.join(KEY_METRICS)})")

    checks: list[GateCheck] = []
    reasons: list[str] = []
    for model in models:
        metric = KEY_METRICS[model]
        value, problem = _metric(new, model, metric)

        if model == REC:
            op, threshold = Bound.ABOVE, gate.rec_min_acc
        else:
            op, threshold = Bound.AT_LEAST, gate.det_min_hmean
        passed = problem is None and _compare(value, op, threshold)
        checks.append(GateCheck(model, metric, value, threshold, op, passed, CheckKind.THRESHOLD))
        if problem is not None:
            reasons.append(f"{model} {metric} {problem} in the new model's test metrics")
        elif not passed:
            reasons.append(f"{model} {metric} {_fmt(value)} is not {op} {_fmt(threshold)}")

        if baseline is None or model not in baseline:
            continue
        base_value, base_problem = _metric(baseline, model, metric)
        # Rounded only for the record: 0.95 - 0.01 would otherwise read 0.9400000000000001.
        threshold = None if base_problem is not None else round(base_value - gate.max_regression, 12)
        passed = problem is None and base_problem is None and value >= base_value - gate.max_regression - _EPSILON
        checks.append(GateCheck(model, metric, value, threshold, Bound.AT_LEAST, passed, CheckKind.REGRESSION,
                                baseline=base_value, max_regression=gate.max_regression))
        if base_problem is not None:
            # Production exists for this model but could not be measured: refusing is the
            # safe answer, since nobody can tell whether the new model is worse.
            reasons.append(f"{model} {metric} {base_problem} in the production model's test metrics, "
                           "so the regression check cannot be made")
        elif problem is not None:
            reasons.append(f"{model} {metric} regression against production {_fmt(base_value)} "
                           "cannot be checked: the new value is missing")
        elif not passed:
            reasons.append(
                f"{model} {metric} {_fmt(value)} dropped {_fmt(base_value - value)} below production "
                f"{_fmt(base_value)} (at most {_fmt(gate.max_regression)} allowed)"
            )

    if served is not None:
        _check_served(new, served, gate, models, checks, reasons)
    if compared is not None:
        _check_compared(compared, served, gate, models, checks, reasons, stock=stock)
    return GateDecision(passed=all(c.passed for c in checks), reasons=reasons, checks=checks,
                        thresholds=gate.model_dump())


def _check_served(new: dict[str, dict[str, float]], served: InfraValidation, gate: GateConfig,
                  models: Sequence[str], checks: list[GateCheck], reasons: list[str]) -> None:
    """Every runtime loads the exported models; their metrics there stay within max_export_drift of eval.py's."""
    for runtime in served.runtimes:
        label = runtime.label()
        checks.append(GateCheck("det+rec", "loads", None, None, Bound.HOLDS, runtime.loaded, CheckKind.RUNTIME,
                                runtime=label))
        if not runtime.loaded:
            error = runtime.error or {}
            message = str(error.get("message", "")).strip().splitlines()
            reasons.append(f"the exported models do not load or run in consumer runtime {label} "
                           f"({error.get('stage', '?')}): {error.get('type', 'error')}: {message[0] if message else ''}")
            continue
        for model in models:
            metric = KEY_METRICS[model]
            evaluated, eval_problem = _metric(new, model, metric)
            exported, problem = _metric(runtime.metrics, model, metric)
            drift = None if problem or eval_problem else abs(exported - evaluated)
            passed = drift is not None and drift <= gate.max_export_drift + _EPSILON
            checks.append(GateCheck(model, metric, exported, gate.max_export_drift, Bound.DRIFT_AT_MOST, passed,
                                    CheckKind.EXPORT_DRIFT, runtime=label, eval_value=evaluated, drift=drift))
            if problem:
                reasons.append(f"{model} {metric} of the exported model {problem} in runtime {label}")
            elif not passed and drift is not None:
                reasons.append(f"{model} {metric} drifts once exported: {_fmt(exported)} read in runtime {label}, "
                               f"{_fmt(evaluated)} from tools/eval.py (drift {_fmt(drift)}, at most "
                               f"{_fmt(gate.max_export_drift)} allowed)")
        both = DET in runtime.metrics and REC in runtime.metrics   # a bundle of one kind reads nothing end to end
        if gate.e2e_min_hmean is not None and both:
            value, problem = _metric(runtime.metrics, "e2e", "e2e_hmean")
            passed = problem is None and _compare(value, Bound.AT_LEAST, gate.e2e_min_hmean)
            checks.append(GateCheck("e2e", "e2e_hmean", value, gate.e2e_min_hmean, Bound.AT_LEAST, passed,
                                    CheckKind.THRESHOLD, runtime=label))
            if not passed:
                det, rec = runtime.metrics[DET].get("hmean"), runtime.metrics[REC].get("acc")
                alone = f" (det hmean {_fmt(det)} and rec acc {_fmt(rec)} read alone)" if det is not None and \
                    rec is not None else ""
                reasons.append(f"end-to-end hmean {_fmt(value) if problem is None else problem} in runtime {label} "
                               f"is not >= {_fmt(gate.e2e_min_hmean)}{alone}: the lines consumers read")


def _check_e2e_regression(compared: Comparison, served: InfraValidation | None, gate: GateConfig,
                          checks: list[GateCheck], reasons: list[str], stock: bool = False) -> None:
    """The test split read end to end in every runtime against production's, read by compare in the pipeline's
    runtime (the same program reads the same in every runtime: production is read once). Against the stock
    baseline (gate.must_beat_stock) no drop is tolerated: the new model must read strictly better."""
    e2e = compared.e2e or {}
    base = (e2e.get("production") or {}).get("e2e_hmean")
    if not isinstance(base, (int, float)):
        return
    reads = {e2e.get("runtime"): (e2e.get("new") or {}).get("e2e_hmean")}
    for runtime in served.runtimes if served is not None else []:
        if runtime.loaded and "e2e" in runtime.metrics:
            reads[runtime.label()] = runtime.metrics["e2e"].get("e2e_hmean")
    for label, value in reads.items():
        if not isinstance(value, (int, float)):
            continue
        if stock and gate.must_beat_stock:
            passed = value > base + _EPSILON
            checks.append(GateCheck("e2e", "e2e_hmean", value, base, Bound.ABOVE, passed, CheckKind.REGRESSION,
                                    runtime=label, baseline=base))
            if not passed:
                reasons.append(f"end-to-end hmean {_fmt(value)} in runtime {label} does not beat the stock baseline's "
                               f"{_fmt(base)} (read in {e2e.get('runtime')}) on the test split (gate.must_beat_stock: "
                               "a fine-tune must read better than the model it would replace)")
            continue
        passed = value >= base - gate.max_e2e_regression - _EPSILON
        checks.append(GateCheck("e2e", "e2e_hmean", value, round(base - gate.max_e2e_regression, 12),
                                Bound.AT_LEAST, passed, CheckKind.REGRESSION, runtime=label,
                                baseline=base, max_regression=gate.max_e2e_regression))
        if not passed:
            reasons.append(f"end-to-end hmean {_fmt(value)} in runtime {label} dropped {_fmt(base - value)} below "
                           f"production {_fmt(base)} (read in {e2e.get('runtime')}) on the test split (at most "
                           f"{_fmt(gate.max_e2e_regression)} allowed)")


def _check_compared(compared: Comparison, served: InfraValidation | None, gate: GateConfig, models: Sequence[str],
                    checks: list[GateCheck], reasons: list[str], stock: bool = False) -> None:
    """No slice of the test split (with enough samples) and no reference set regresses against production,
    nor the test split read end to end."""
    for problem in compared.problems:
        checks.append(GateCheck("det+rec", "compared", None, None, Bound.HOLDS, False, CheckKind.COMPARISON))
        reasons.append(problem)
    _check_e2e_regression(compared, served, gate, checks, reasons, stock=stock)
    for model in models:
        metric = KEY_METRICS[model]
        for name, entry in sorted((compared.slices.get(model) or {}).items()):
            if entry.get("production") is None or entry["samples"] < gate.slice_min_samples:
                continue
            _regression(model, metric, entry, gate.max_slice_regression, CheckKind.SLICE, name,
                        f"on test slice {name} ({entry['samples']} samples)", checks, reasons)
        for name, kinds in sorted(compared.references.items()):
            entry = kinds.get(model)
            if entry is None or entry.get("production") is None:
                continue
            _regression(model, metric, entry, gate.max_reference_regression, CheckKind.REFERENCE, name,
                        f"on reference set {name} ({entry['samples']} samples)", checks, reasons)


def _regression(model: str, metric: str, entry: dict[str, Any], tolerance: float, kind: CheckKind, name: str,
                where: str, checks: list[GateCheck], reasons: list[str]) -> None:
    value, problem = _metric({model: entry.get("new") or {}}, model, metric)
    base, base_problem = _metric({model: entry.get("production") or {}}, model, metric)
    if base_problem:
        return
    passed = problem is None and value >= base - tolerance - _EPSILON
    checks.append(GateCheck(model, metric, value, base - tolerance, Bound.AT_LEAST, passed, kind,
                            samples=entry["samples"], baseline=base, **{kind.value: name}))
    if problem:
        reasons.append(f"{model} {metric} {where} {problem}")
    elif not passed:
        reasons.append(f"{model} {metric} {where} dropped {_fmt(base - value)} below production "
                       f"({_fmt(base)} -> {_fmt(value)}; at most {_fmt(tolerance)} allowed)")


def _metric(metrics: dict[str, dict[str, float]], model: str, metric: str) -> tuple[float | None, str | None]:
    """(value, None) for a usable number, else (raw value or None, why it is unusable)."""
    section = metrics.get(model) if isinstance(metrics, dict) else None
    if not isinstance(section, dict) or metric not in section or section[metric] is None:
        return None, "is missing"
    raw = section[metric]
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None, f"is not a number ({raw!r})"
    if not math.isfinite(raw):
        return None, f"is not a finite number ({raw})"
    return float(raw), None


def _compare(value: float | None, op: Bound, threshold: float) -> bool:
    if value is None:
        return False
    return value > threshold if op is Bound.ABOVE else value >= threshold - _EPSILON


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"
