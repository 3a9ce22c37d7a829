"""The run report people open first: training curves per model and one summary page."""

from __future__ import annotations

import html
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
                  errors: dict | None = None) -> Path:
    """An HTML page that reads offline (pictures beside it): facts, the gate, test metrics vs production
    and as each consumer runtime read them, slices and reference sets, the worst samples, curves."""
    rows = []
    for task, values in sorted(metrics.items()):
        for metric, value in sorted(values.items()):
            before = (baseline or {}).get(task, {}).get(metric)
            rows.append(f"<tr><td>{task}</td><td>{metric}</td><td>{_fmt(value)}</td><td>{_fmt(before)}</td></tr>")
    runtime_rows = []
    for name, read in sorted((exported or {}).items()):
        versions = read.get("versions") or {}
        where = html.escape(f"{name} (paddleocr {versions.get('paddleocr')}, paddlepaddle {versions.get('paddlepaddle')})")
        if read.get("error"):
            error = read["error"]
            runtime_rows.append(f"<tr class=bad><td>{where}</td><td colspan=4>does not load or run: "
                                f"{html.escape(str(error.get('type')))}: {html.escape(str(error.get('message'))[:300])}</td></tr>")
            continue
        values = read.get("metrics") or {}
        latency = read.get("latency_ms") or {}
        runtime_rows.append(
            f"<tr><td>{where}</td><td>{_fmt(values.get('det', {}).get('hmean'))}</td>"
            f"<td>{_fmt(values.get('rec', {}).get('acc'))}</td><td>{_fmt(values.get('e2e', {}).get('e2e_hmean'))}</td>"
            f"<td>{_fmt(latency.get('mean'))} (p95 {_fmt(latency.get('p95'))})</td></tr>")
    checks = "".join(
        f"<tr class={'ok' if c.get('passed') else 'bad'}><td>{html.escape(str(c.get('model')))}</td>"
        f"<td>{html.escape(str(c.get('metric')))}</td><td>{html.escape(_where(c))}</td>"
        f"<td>{_fmt(c.get('value'))} {html.escape(str(c.get('op')))} "
        f"{_fmt(c.get('threshold'))}</td><td>{'pass' if c.get('passed') else 'FAIL'}</td></tr>"
        for c in gate.get("checks", []))
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    images = "".join(f'<p><img src="{html.escape(name)}" alt="{html.escape(name)}"></p>' for name in curves)
    status = str(facts.get("status") or "")
    verdict = "FAILED: not published" if not gate.get("passed") else f"PASSED ({status})" if status else "PASSED"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in gate.get("reasons", []))
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}.ok{{color:#070}}.bad{{color:#b00}}</style>
<h1>{html.escape(title)}</h1>
<table>{fact_rows}</table>
<h2>Gate: {verdict}</h2><ul>{reasons}</ul>
<table><tr><th>model</th><th>metric</th><th>on</th><th>check</th><th></th></tr>{checks}</table>
<h2>Test split metrics</h2>
<table><tr><th>model</th><th>metric</th><th>new</th><th>production</th></tr>{''.join(rows)}</table>
<h2>Exported models in the consumer runtimes (test split, PaddleOCR defaults)</h2>
<table><tr><th>runtime</th><th>det hmean</th><th>rec acc</th><th>end-to-end hmean</th><th>ms per image</th></tr>{''.join(runtime_rows)}</table>
{_comparison_section(comparison or {}, gate.get("thresholds") or {})}
{_errors_section(errors or {})}
<h2>Training curves</h2>{images}
<details><summary>gate JSON</summary><pre>{html.escape(json.dumps(gate, indent=2))}</pre></details>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _where(check: dict) -> str:
    """What a gate check looked at: the test split, a consumer runtime, a slice or a reference set."""
    for key, label in (("runtime", "runtime "), ("slice", "slice "), ("reference", "reference set ")):
        if check.get(key):
            return label + str(check[key])
    return "test split"


def _comparison_section(comparison: dict, thresholds: dict) -> str:
    if not comparison.get("slices") and not comparison.get("references"):
        return ""
    tolerance = thresholds.get("max_slice_regression", 0.05)
    min_samples = thresholds.get("slice_min_samples", 20)
    rows = []
    for kind, slices in sorted((comparison.get("slices") or {}).items()):
        for name, entry in sorted(slices.items()):
            rows.append(_delta_row(kind, name, entry, tolerance, judged=entry["samples"] >= min_samples))
    ref_rows = []
    ref_tolerance = thresholds.get("max_reference_regression", 0.02)
    for name, kinds in sorted((comparison.get("references") or {}).items()):
        for kind, entry in sorted(kinds.items()):
            ref_rows.append(_delta_row(kind, name, entry, ref_tolerance, judged=True))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (comparison.get("problems") or []) +
                    (comparison.get("notes") or []))
    head = "<tr><th>model</th><th>{}</th><th>samples</th><th>new</th><th>production</th><th>change</th></tr>"
    return (f"<h2>Slices of the test split: new vs production {html.escape(str(comparison.get('production_version') or ''))}</h2>"
            f"<p>det hmean / rec acc, read by the exported models; a slice with at least {min_samples} samples may drop "
            f"at most {_fmt(tolerance)}.</p><table>{head.format('slice')}{''.join(rows)}</table>"
            + (f"<h2>Reference sets (the forgetting guard)</h2><table>{head.format('set')}{''.join(ref_rows)}</table>"
               if ref_rows else "")
            + (f"<ul>{notes}</ul>" if notes else ""))


def _delta_row(kind: str, name: str, entry: dict, tolerance: float, *, judged: bool) -> str:
    new = (entry.get("new") or {}).get(KEY_METRICS[kind])
    old = (entry.get("production") or {}).get(KEY_METRICS[kind])
    delta = None if new is None or old is None else new - old
    bad = judged and delta is not None and delta < -tolerance - 1e-9
    shown = "—" if delta is None else f"{delta:+.4f}"
    return (f"<tr class={'bad' if bad else 'ok' if delta is not None and delta >= 0 else ''}><td>{kind}</td>"
            f"<td>{html.escape(name)}</td><td>{entry.get('samples')}{'' if judged else ' (too few to judge)'}</td>"
            f"<td>{_fmt(new)}</td><td>{_fmt(old)}</td><td>{shown}</td></tr>")


def _errors_section(errors: dict) -> str:
    if not errors:
        return ""
    rec_rows = "".join(
        f"<tr><td><img src=\"{html.escape(r['picture'])}\" style=\"max-height:48px\"></td><td>{html.escape(r['label'])}</td>"
        f"<td class=bad>{html.escape(r['new'])} ({_fmt(r.get('new_score'))})</td>"
        f"<td>{html.escape(r['production']) if r.get('production') is not None else '—'} "
        f"({_fmt(r.get('production_score'))})</td><td>{html.escape(str(r.get('export')))}</td></tr>"
        for r in errors.get("rec") or [])
    confusions = "".join(f"<tr><td>{html.escape(c['label'])}</td><td>{html.escape(c['read'])}</td><td>{c['count']}</td></tr>"
                         for c in errors.get("confusions") or [])
    det = "".join(
        f"<figure style=\"display:inline-block;margin:6px\"><img src=\"{html.escape(d['picture'])}\">"
        f"<figcaption>hmean {_fmt(d['hmean'])} (production {_fmt(d.get('production_hmean'))}); "
        f"{d['missed']} missed, {d['false']} false; {html.escape(str(d.get('export')))}</figcaption></figure>"
        for d in errors.get("det") or [])
    parts = ["<h2>Error analysis: the new model's worst test samples</h2>"]
    if errors.get("rec_total"):
        parts.append(f"<h3>Recognition: {errors.get('rec_wrong', 0)} of {errors['rec_total']} crops misread</h3>"
                     f"<table><tr><th>crop</th><th>label</th><th>new reads (score)</th><th>production reads (score)</th>"
                     f"<th>export</th></tr>{rec_rows}</table>"
                     f"<h3>Most confused characters (label → read; ∅ = missing)</h3>"
                     f"<table><tr><th>label</th><th>read</th><th>times</th></tr>{confusions}</table>")
    if errors.get("det_total"):
        parts.append(f"<h3>Detection: {errors.get('det_wrong', 0)} of {errors['det_total']} images with a miss or a "
                     f"false detection</h3><p>green: labelled, blue: detected and matched, <span class=bad>red: "
                     f"missed</span>, <span style=\"color:#d80\">orange: false detection</span>, grey: ignore "
                     f"region</p>{det}")
    return "".join(parts)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("—" if value is None else html.escape(str(value)))
