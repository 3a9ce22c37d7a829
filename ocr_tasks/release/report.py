"""The run report people open first: training curves per model and one summary page."""

from __future__ import annotations

import json
from pathlib import Path

from ocr_tasks.release.gate import KEY_METRICS
from ocr_tasks.vocabulary import DET, REC

CURVE_METRICS = {
    DET: ("loss", "loss_shrink_maps", "loss_threshold_maps", "loss_binary_maps", "hmean", "precision", "recall"),
    REC: ("loss", "loss_ctc", "loss_nrtr", "acc", "norm_edit_dis"),
}


def plot_curves(task: str, history: list[dict], out: Path) -> Path | None:
    """Loss terms (train) and quality metrics (train and eval) against the global step."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    train = [e for e in history if e.get("kind") == "train" and "global_step" in e]
    evals = [e for e in history if e.get("kind") == "eval" and "global_step" in e]
    if not train and not evals:
        return None
    losses = [m for m in CURVE_METRICS[task] if m.startswith("loss") and any(m in e for e in train)]
    quality = [m for m in CURVE_METRICS[task] if not m.startswith("loss")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for metric in losses:
        left.plot([e["global_step"] for e in train if metric in e], [e[metric] for e in train if metric in e], label=metric)
    left.set(title=f"{task} training loss", xlabel="step")
    for metric in quality:
        points = [(e["global_step"], e[metric]) for e in train if metric in e]
        if points:
            right.plot(*zip(*points), label=f"train {metric}", alpha=0.6)
        points = [(e["global_step"], e[metric]) for e in evals if metric in e]
        if points:
            right.plot(*zip(*points), marker="o", label=f"val {metric}")
    right.set(title=f"{task} accuracy", xlabel="step", ylim=(0, 1.02))
    for axis in (left, right):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def write_summary(out: Path, *, title: str, facts: dict[str, object], metrics: dict, baseline: dict | None,
                  gate: dict, curves: list[str], exported: dict | None = None, comparison: dict | None = None,
                  errors: dict | None = None, data: dict | None = None) -> Path:
    """An HTML page that reads offline (pictures beside it): facts, the exports this run refused or merged
    without some images (`data`: {"quarantined": {export: folder}, "left_out": {export: {images, report}}}),
    the gate, test metrics vs production and as each consumer runtime read them, slices and reference
    sets, the worst samples, curves (templates/report.html.j2)."""
    from ocr_tasks import pages

    status = str(facts.get("status") or "")
    verdict = "FAILED: not published" if not gate.get("passed") else f"PASSED ({status})" if status else "PASSED"
    checks = [{"passed": bool(c.get("passed")), "where": _where(c),
               **{key: c.get(key) for key in ("model", "metric", "value", "op", "threshold")}}
              for c in gate.get("checks", [])]
    rows = [(task, metric, value, (baseline or {}).get(task, {}).get(metric))
            for task, values in sorted(metrics.items()) for metric, value in sorted(values.items())]
    return pages.write(out, "report.html.j2", title=title, facts=facts, verdict=verdict,
                       reasons=gate.get("reasons", []), checks=checks, metrics=rows,
                       runtimes=[_runtime(name, read) for name, read in sorted((exported or {}).items())],
                       comparison=_comparison(comparison or {}, gate.get("thresholds") or {}), errors=errors or {},
                       curves=curves, gate_json=json.dumps(gate, indent=2),
                       quarantined=sorted(((data or {}).get("quarantined") or {}).items()),
                       left_out=sorted(((data or {}).get("left_out") or {}).items()))


def _where(check: dict) -> str:
    """What a gate check looked at: the test split, a consumer runtime, a slice or a reference set."""
    for key, label in (("runtime", "runtime "), ("slice", "slice "), ("reference", "reference set ")):
        if check.get(key):
            return label + str(check[key])
    return "test split"


def _runtime(name: str, read: dict) -> dict:
    """One consumer runtime's row: its error, or what it read."""
    from ocr_tasks.release.infra_validation import runtime_label

    where = runtime_label(name, read.get("versions") or {}, read.get("engine"))
    if read.get("error"):
        error = read["error"]
        return {"where": where, "error": f"{error.get('type')}: {str(error.get('message'))[:300]}"}
    values = read.get("metrics") or {}
    latency = read.get("latency_ms") or {}
    return {"where": where, "error": None, "det_hmean": values.get("det", {}).get("hmean"),
            "rec_acc": values.get("rec", {}).get("acc"), "e2e_hmean": values.get("e2e", {}).get("e2e_hmean"),
            "latency_mean": latency.get("mean"), "latency_p95": latency.get("p95"), "threads": read.get("cpu_threads")}


def _comparison(comparison: dict, thresholds: dict) -> dict | None:
    """The slices and reference sets, new vs production, each row judged against its tolerance."""
    if not comparison.get("slices") and not comparison.get("references"):
        return None
    tolerance = thresholds.get("max_slice_regression", 0.05)
    min_samples = thresholds.get("slice_min_samples", 20)
    ref_tolerance = thresholds.get("max_reference_regression", 0.02)
    return {
        "production_version": str(comparison.get("production_version") or ""),
        "min_samples": min_samples,
        "tolerance": tolerance,
        "slices": [_delta_row(kind, name, entry, tolerance, judged=entry["samples"] >= min_samples)
                   for kind, slices in sorted((comparison.get("slices") or {}).items())
                   for name, entry in sorted(slices.items())],
        "references": [_delta_row(kind, name, entry, ref_tolerance, judged=True)
                       for name, kinds in sorted((comparison.get("references") or {}).items())
                       for kind, entry in sorted(kinds.items())],
        "notes": (comparison.get("problems") or []) + (comparison.get("notes") or []),
    }


def _delta_row(kind: str, name: str, entry: dict, tolerance: float, *, judged: bool) -> dict:
    new = (entry.get("new") or {}).get(KEY_METRICS[kind])
    old = (entry.get("production") or {}).get(KEY_METRICS[kind])
    delta = None if new is None or old is None else new - old
    bad = judged and delta is not None and delta < -tolerance - 1e-9
    return {"kind": kind, "name": name, "samples": entry.get("samples"), "judged": judged, "new": new,
            "production": old, "change": "—" if delta is None else f"{delta:+.4f}",
            "verdict": "bad" if bad else "ok" if delta is not None and delta >= 0 else ""}
