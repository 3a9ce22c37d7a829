"""The README's main job, `make demo`, as a user runs it: the real DAG in Airflow on the embedded default.

Slow (354 s alone on an idle 2-core machine, 2026-12-04, with rec 6 epochs: the run 314 s, then the checks of the
published model; rec 4 epochs since, a minute less; the suite's longest test): Airflow's scheduler runs the DAG with the stock PP-OCRv4 baseline registered beside
rec training (real PaddleOCR training of the CPU profile on the 800-image synthetic export of shelf prices, half with a
euro sign stock cannot read), the real gate (the fine-tune must beat stock end to end), publish, pull, and PaddleOCR
3.x reading a held-out test image. Then what consumers read: the README's snippets in every PaddleOCR 3.x and ONNX
runtime, and bundles planted from the published one that the gate must refuse (post-processing eval.py did not use,
a model that does not load, another checkpoint's ONNX, a reversed dict, and boxes that hug the text: det and rec
perfect alone, lines misread end to end, issue 26's failure).

What is not paid for again here: the README's follow-ups. A quiet night (nothing new: the run short-circuits) is the
same DAG's branch, run by tests/flow/test_runners.py and tests/deploy/test_distributed.py. A retrain after one more
export (`demo --add-export`) is the same DAG on a grown dataset: a rec retrained on tight label crops alone there
passes rec acc and is refused end to end, as docs/benchmarks.md measures with the command that reproduces it
(2.5 min of CPU in this test until 2026-12-04; the refusal itself is checked above on real reads). Everything is
checked against what the run left in S3 (read back through a fresh local server over the demo's folder), not only
against what it printed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ocr_tasks.release.infra_validation import CONSUMER_RUNTIMES, ONNX, ONNX_RUNTIMES, PADDLE, READ_THREADS
from ocr_tasks.storage import layout
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.storage.s3 import Storage

BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parents[2] / "docs" / "consumers.md"   # the consumer snippets (the README links there)
BUCKET = "ocr-data"


def _demo(work: Path, *args: str, timeout: float) -> str:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ocr-retrain"), "demo", "--work-dir", str(work), *args],
                          capture_output=True, text=True, timeout=timeout)
    print(done.stdout[-6000:])
    print(f"ocr-retrain demo {' '.join(args)}: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def _the_stock_model_was_the_baseline_and_the_fine_tune_beats_it(outcome: dict, storage: Storage,
                                                                 printed: str) -> dict:
    """The run registered stock PP-OCRv4 as production before anything else was published (release/baseline.py);
    stock reads the plain numbers and no price (the euro sign is not in its dict), and the fine-tune had to read the
    test split better end to end in every runtime (gate.must_beat_stock) to be published. Returns stock's manifest."""
    baseline = outcome["baseline"]
    assert baseline["stock"] is True
    stock = storage.get_json(layout.model_manifest_key("ocr", baseline["version"]))
    assert set(stock["stock"]) == {"det", "rec"} and stock["metrics"]["det"]["hmean"] >= 0.95
    # the test lines with the sign are the ones stock misreads: its rec acc is about the share without it
    assert 0.3 < baseline["rec"]["acc"] < 0.7 and baseline["rec"]["acc"] == stock["metrics"]["rec"]["acc"]
    e2e = outcome["comparison"]["e2e"]
    assert e2e["production"]["e2e_hmean"] < 0.75 < 0.93 <= e2e["new"]["e2e_hmean"], e2e
    # compare scored stock from the reads register_baseline made of this split, in the same runtime: not read twice
    assert storage.exists(layout.run_baseline_reads_key(outcome["run_id"]))
    assert not [o.key for o in storage.list(layout.run_compare_prefix(outcome["run_id"]))
                if o.key.endswith("test-production.json")]
    assert e2e["production"]["e2e_hmean"] == stock["read"]["e2e"]["e2e_hmean"]
    beaten = [c for c in outcome["gate"]["checks"] if c["model"] == "e2e" and c["op"] == ">"]
    # a check names its runtime with its versions ("pipeline (paddleocr 3.7.0, paddlepaddle 3.2.2)")
    assert {c["runtime"].split()[0] for c in beaten} == set(outcome["exported_metrics"]), beaten
    assert e2e["runtime"] in {c["runtime"] for c in beaten}, (e2e, beaten)
    assert all(c["passed"] and c["baseline"] == e2e["production"]["e2e_hmean"] for c in beaten)
    assert re.search(r"rec acc \(tools/eval\.py\): stock 0\.\d{3}, fine-tuned (0\.9\d\d|1\.000)", printed)
    assert re.search(r"end to end \(det\+rec, what consumers read\) in pipeline .*: hmean stock 0\.\d{3}, "
                     r"fine-tuned (0\.9\d\d|1\.000)", printed)
    return stock


def _what_consumers_read_end_to_end_is_what_the_gate_certifies(outcome: dict, storage: Storage) -> None:
    """End to end, every consumer runtime reads close to what the gate certifies (det hmean x rec acc), and the det
    post-processing chosen on val is what the bundle's det/inference.yml carries. The det is stock's, carried into the
    bundle: its hmean is the one each runtime reads with it alone, beside tools/eval.py's rec acc.

    The bounds are issue 26's: e2e >= 0.93, and within 0.03 of the certified product. Measured (README,
    Benchmarks): with this pipeline's own det, e2e 0.971 in all three runtimes against 0.987 x 1.000 (det 6 epochs);
    with det 4 epochs the gap was 0.049-0.066 (boxes that missed or cut thin lines), where tight crops alone read
    0.744-0.774."""
    for name, read in outcome["exported_metrics"].items():
        certified = read["metrics"]["det"]["hmean"] * outcome["metrics"]["rec"]["acc"]
        e2e = read["metrics"]["e2e"]["e2e_hmean"]
        assert e2e >= 0.93 and certified - e2e <= 0.03, (name, e2e, certified)
    manifest = storage.get_json(layout.model_manifest_key("ocr", outcome["model_version"]))
    tuned = manifest["postprocess"]
    assert tuned["val_images"] > 0 and len(tuned["tried"]) == 5 and tuned["skipped"] is None
    best = max(t["e2e_hmean"] for t in tuned["tried"])
    assert [t["e2e_hmean"] for t in tuned["tried"] if all(t[k] == v for k, v in tuned["chosen"].items())] == [best]
    spec = yaml.safe_load(storage.get_text(layout.model_version_prefix("ocr", outcome["model_version"])
                                           + "det/inference.yml"))
    assert {k: spec["PostProcess"][k] for k in tuned["chosen"]} == tuned["chosen"]


def _the_read_shown_is_what_the_gate_measured(outcome: dict, storage: Storage, image: str, text: str) -> None:
    """The text the demo prints for its held-out image is what infra validation read from that image in the same
    runtime: the consumer path reads as measured. Whether it is right is the e2e hmean's business (checked above):
    at e2e ~0.93 about one line in fifteen is misread, so one image's text being right is a coin that sometimes
    lands wrong (a CI run read '9002965' for '992965' at e2e 0.90), not a check."""
    reads = storage.get_json(layout.run_runtime_reads_key(outcome["run_id"], "pipeline"))
    (measured,) = [r for r in reads["ocr"] if r["image"] == f"images/{image}"]
    assert sorted(text.split(" | ")) == sorted(line["text"] for line in measured["lines"]), (text, measured)


def _exported_metrics_printed_and_recorded(printed: str, outcome: dict) -> None:
    """The infra validation ran before the gate, in every runtime there is, and agreed with eval.py."""
    exported = outcome["exported_metrics"]
    expected = {"pipeline"} | {name for name, python in {**CONSUMER_RUNTIMES, **ONNX_RUNTIMES}.items()
                               if python.is_file()}
    assert set(exported) == expected
    for name, read in exported.items():
        assert read["error"] is None, (name, read["error"])
        assert read["metrics"]["det"]["hmean"] >= 0.95, name          # stock's det, carried into the bundle
        assert abs(read["metrics"]["rec"]["acc"] - outcome["metrics"]["rec"]["acc"]) <= 0.02, name
        assert 0 < read["latency_ms"]["mean"] and read["latency_ms"]["images"] > 0
        assert read["cpu_threads"] == READ_THREADS, name   # PaddleOCR 3.0 to 3.7 took the setting
        versions = r"rapidocr [\d.]+, onnxruntime [\d.]+" if read["engine"] == ONNX else r"paddleocr [\d.]+, paddle [\d.]+"
        assert re.search(rf"exported, read in {name} \({versions}\): acc", printed), name
    # the same program in every PaddleOCR runtime: what they read is the same (oneDNN on or off, paddle 3.0 to 3.3);
    # the same ONNX files in every RapidOCR runtime likewise. ONNX is a converted program with RapidOCR's own pre- and
    # post-processing: a line in a few hundred may read otherwise (e2e 0.994 against 0.997 on this machine, 2026-12-04),
    # well inside the drift the gate allows (gate.max_export_drift, 0.02)
    by_engine = {}
    for read in exported.values():
        by_engine.setdefault(read["engine"], set()).add(json.dumps(read["metrics"], sort_keys=True))
    assert all(len(reads) == 1 for reads in by_engine.values()), by_engine
    paddle = json.loads(next(iter(by_engine.pop(PADDLE))))
    for (onnx,) in by_engine.values():
        onnx = json.loads(onnx)
        for kind, metric in (("det", "hmean"), ("rec", "acc"), ("e2e", "e2e_hmean")):
            assert abs(onnx[kind][metric] - paddle[kind][metric]) <= 0.01, (kind, onnx, paddle)
    assert {c["runtime"].split()[0] for c in outcome["gate"]["checks"] if c["kind"] == "runtime"} == expected


def _consumer_runtimes_read_the_published_model(model: Path, image: Path, text: str) -> None:
    """The README's consumer snippet, unchanged, in the newest and oldest PaddleOCR 3.x, reads what the demo read.
    (`ocr-retrain read` in those runtimes is the PaddleOCR pipeline with the same arguments infra validation's probe
    passes there, which the gate's reads above cover; the demo itself ran it in the pipeline's runtime.)"""
    snippet = re.search(r"```python\n(import yaml\nfrom paddleocr import PaddleOCR\n.*?)```", README.read_text(),
                        re.S).group(1)
    snippet = snippet.replace("models/<v>", str(model)) + f"\nprint('READ', ocr.predict({str(image)!r})[0]['rec_texts'])\n"
    for name, python in CONSUMER_RUNTIMES.items():
        if not python.is_file():
            print(f"consumer runtime {name} not built ({python}): `make consumer-envs`; not checked here")
            continue
        env = {**os.environ, "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
               "PADDLE_PDX_LOCAL_FONT_FILE_PATH": str(image)}   # paddlex 3.0 wants a font file at import (README)
        done = subprocess.run([str(python), "-c", snippet], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        (read,) = re.findall(r"^READ (.*)$", done.stdout, re.M)
        assert sorted(ast.literal_eval(read)) == sorted(text.split(" | ")), (name, read)   # what the demo read



def _onnx_consumers_read_the_published_model(model: Path, manifest: dict, stock_model: Path, data_dir: Path,
                                             image: Path, text: str, printed: str, tmp_path: Path) -> None:
    """The bundle carries ONNX (issue 28): the files with their sha256, rapidocr.yaml, and the README's RapidOCR
    snippet, unchanged, reads in each ONNX runtime what the demo read with PaddleOCR. Then a rec ONNX converted
    from another checkpoint (stock's, planted in a copy of the bundle) is refused by the gate, naming the runtime."""
    from ocr_tasks.config import GateConfig, load_config
    from ocr_tasks.release.gate import decide
    from ocr_tasks.release.infra_validation import validate_in_runtimes
    from ocr_tasks.release.onnx_export import export_onnx

    built = {name: python for name, python in ONNX_RUNTIMES.items() if python.is_file()}
    converter = load_config().onnx.converter
    if not built or not Path(converter).is_file():
        print(f"ONNX runtimes or converter not built ({converter}): `make onnx-envs`; not checked here")
        return
    onnx = manifest["onnx"]
    assert onnx["skipped"] is None and onnx["files"] == {"det": "det/inference.onnx", "rec": "rec/inference.onnx"}
    assert onnx["opset"] >= 14 and onnx["settings"] == "rapidocr.yaml" and onnx["converter"]["paddle2onnx"]
    assert {"det/inference.onnx", "rec/inference.onnx", "rapidocr.yaml"} <= set(manifest["files"])
    assert all(len(manifest["files"][f]["sha256"]) == 64 for f in onnx["files"].values())
    assert "ONNX beside them: det/inference.onnx, rec/inference.onnx and rapidocr.yaml" in printed

    snippet = re.search(r"```python\n(import yaml\nfrom pathlib import Path\nfrom rapidocr import RapidOCR\n.*?)```",
                        README.read_text(), re.S).group(1)
    snippet = snippet.replace('"models/<v>"', repr(str(model))).replace('engine("photo.jpg")', f"engine({str(image)!r})")
    for name, python in built.items():
        done = subprocess.run([str(python), "-c", snippet], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        read = ast.literal_eval(done.stdout.strip().splitlines()[-1])
        assert sorted(read) == sorted(text.split(" | ")), (name, read, text)   # what PaddleOCR read there
    done = subprocess.run([str(BIN / "ocr-retrain"), "read", "--model", str(model), "--engine", "onnx", str(image)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(line.split("\t")[0] for line in done.stdout.splitlines()) == sorted(text.split(" | ")), done.stdout

    # planted: stock's rec ONNX (another checkpoint: its 48-pixel input does not run with this bundle's settings),
    # then this rec's ONNX with its dict reversed (RapidOCR reads the dict from the model: wrong characters, no error)
    stock = tmp_path / "stock-onnx"
    shutil.copytree(stock_model, stock)
    assert export_onnx(stock, converter, 14, tmp_path / "stock-onnx-work").made
    from_stock, reversed_dict = tmp_path / "planted-stock-rec", tmp_path / "planted-reversed-dict"
    for planted in (from_stock, reversed_dict):
        shutil.copytree(model, planted)
    shutil.copy(stock / "rec" / "inference.onnx", from_stock / "rec" / "inference.onnx")
    subprocess.run([converter, "-c", "import onnx, sys; m = onnx.load(sys.argv[1]); "
                    "e = next(p for p in m.metadata_props if p.key == 'character'); "
                    "e.value = chr(10).join(reversed(e.value.splitlines())); onnx.save(m, sys.argv[1])",
                    str(reversed_dict / "rec" / "inference.onnx")], check=True, timeout=120)
    few = _first_test_samples(data_dir, tmp_path / "few-onnx", images=12)
    name, python = next(iter(built.items()))
    for planted, expected in ((from_stock, "the exported models do not load or run in consumer runtime"),
                              (reversed_dict, "rec acc drifts once exported")):
        served = validate_in_runtimes(planted, few, {}, tmp_path / f"iv-{planted.name}", timeout_s=900,
                                      onnx_runtimes={name: str(python)})
        decision = decide({"rec": {"acc": 1.0}}, None, GateConfig(), models=["rec"], served=served)
        assert not decision.passed, (planted.name, served.runtimes[0].metrics)
        assert any(r.startswith(expected) and f"{name} (rapidocr " in r for r in decision.reasons), decision.reasons


def _planted_mismatch_and_unloadable_model_are_refused(model: Path, data_dir: Path, metrics: dict,
                                                       tmp_path: Path) -> None:
    """A good eval and a bad export: the gate refuses, naming the drift; a model that does not load, with its error.
    `metrics`: tools/eval.py's, the published rec's and the stock det's it carries."""
    from ocr_tasks.config import GateConfig
    from ocr_tasks.release.gate import decide
    from ocr_tasks.release.infra_validation import validate_in_runtimes

    gate = GateConfig(det_min_hmean=0.85)
    data_dir = _first_test_samples(data_dir, tmp_path / "few", images=12)   # a drift to nothing shows on a few
    mismatched = tmp_path / "mismatched"
    _with_det_postprocess(model, mismatched, box_thresh=0.995)   # export post-processing that eval.py did not use
    served = validate_in_runtimes(mismatched, data_dir, {"pipeline": None}, tmp_path / "iv-mismatch", timeout_s=900)
    decision = decide(metrics, None, gate, served=served)
    assert not decision.passed
    assert any(r.startswith("det hmean drifts once exported") and "tools/eval.py" in r for r in decision.reasons), \
        decision.reasons

    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "rec" / "inference.json").write_text('{"base_code": {"magic": "pir", "version": 1}, "program": {}}')
    served = validate_in_runtimes(broken, data_dir, {"pipeline": None}, tmp_path / "iv-broken", timeout_s=900)
    decision = decide(metrics, None, gate, served=served)
    assert not decision.passed and not served.runtimes[0].loaded
    (reason,) = [r for r in decision.reasons if "do not load" in r]
    assert "consumer runtime pipeline" in reason and served.runtimes[0].error["type"] in reason, reason


def _lines_cut_by_tight_boxes_are_refused_end_to_end(model: Path, data_dir: Path, tmp_path: Path) -> None:
    """Issue 26's failure, read for real: the published det with the post-processing of a detector that hugs the
    text (unclip_ratio 1.0 where val chose 1.9) finds every line (det hmean 1.0 read alone) and the rec reads every
    label crop (1.0 alone, 2026-12-04; at least 0.95 asked: the rec is the run's), yet end to end the lines come out
    cut and misread (0.48 on these 12 images).
    The gate refuses it on end to end, on the floor and below production (read by compare in the same runtime),
    and on nothing else. The same happens to a rec retrained on tight label crops alone: docs/benchmarks.md
    measures that retrain (0.744-0.870 end to end, refused) with the command that reproduces it."""
    from ocr_tasks.config import GateConfig
    from ocr_tasks.release.compare import compare_with_production
    from ocr_tasks.release.gate import decide
    from ocr_tasks.release.infra_validation import validate_in_runtimes

    few = _first_test_samples(data_dir, tmp_path / "few-e2e", images=12)
    tight = tmp_path / "tight-boxes"
    chosen = _with_det_postprocess(model, tight, unclip_ratio=1.0)
    assert chosen["unclip_ratio"] > 1.2, chosen   # what val chose: boxes with a margin
    served = validate_in_runtimes(tight, few, {"pipeline": None}, tmp_path / "iv-tight", timeout_s=900)
    (read,) = served.runtimes
    assert read.metrics["det"]["hmean"] >= 0.95 and read.metrics["rec"]["acc"] >= 0.95, read.metrics
    compared = compare_with_production(tight, model, "published", few, {}, tmp_path / "compare-tight", python=None,
                                       timeout_s=900, kinds=["rec"],
                                       new_test_read=(read, json.loads(Path(read.reads).read_text(encoding="utf-8"))))
    assert compared.e2e["production"]["e2e_hmean"] >= 0.93 > 0.85 > compared.e2e["new"]["e2e_hmean"], compared.e2e
    # the rec is the published one, unchanged: its read of these crops alone stands for tools/eval.py's here (the
    # drift between the two is the other plants' business; on 36 crops one misread is a drift of 0.028)
    decision = decide({"rec": read.metrics["rec"]}, None, GateConfig(), models=["rec"], served=served,
                      compared=compared)
    assert not decision.passed and decision.reasons, decision.reasons
    assert all(r.startswith("end-to-end hmean ") and " in runtime pipeline (paddleocr " in r
               for r in decision.reasons), decision.reasons
    assert any("below production" in r for r in decision.reasons), decision.reasons


def _with_det_postprocess(model: Path, target: Path, **settings: float) -> dict:
    """A copy of the bundle at `target` whose det/inference.yml post-processing has `settings`; returns the one
    it had."""
    shutil.copytree(model, target)
    spec = target / "det" / "inference.yml"
    raw = yaml.safe_load(spec.read_text())
    had = dict(raw["PostProcess"])
    raw["PostProcess"].update(settings)
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    return had


def _first_test_samples(data_dir: Path, target: Path, *, images: int) -> Path:
    """A dataset folder over the same images whose test split is its first `images` images and their crops."""
    for kind, keep in (("det", images), ("rec", 3 * images)):
        (target / kind).mkdir(parents=True)
        lines = (data_dir / kind / "test.txt").read_text(encoding="utf-8").splitlines()[:keep]
        (target / kind / "test.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("images", "crops", "images.jsonl", "crops.jsonl"):   # the samples, and their exports for slices
        (target / name).symlink_to(data_dir / name)
    return target


def _the_publish_prelabelled_the_next_batch(work: Path, printed: str, version: str, tmp_path: Path) -> None:
    """The publish's Asset event started ocr_prelabel: the raw batch is a PPOCRLabel folder, and PPOCRLabel's
    own loader shows the production model's boxes and texts on every (unconfirmed) image."""
    from ocr_tasks.embedded.demo import UNLABELED_BATCH, UNLABELED_SPECS
    from tests.prelabel.test_ppocrlabel_reads import open_in_ppocrlabel

    assert "ocr_prelabel run " in printed and "started by the production model Asset" in printed
    assert f"pre-labelled for PPOCRLabel: s3://{BUCKET}/prelabeled/{UNLABELED_BATCH}/{version}/{UNLABELED_BATCH}/" \
        in printed
    truth = {}
    for spec in UNLABELED_SPECS:
        for line in (work / "labeller" / "raw" / spec.name / "Label.txt").read_text(encoding="utf-8").splitlines():
            path, boxes = line.split("\t", 1)
            truth[f"{spec.name}_{path.rsplit('/', 1)[-1]}"] = {b["transcription"] for b in json.loads(boxes)}
    folder = tmp_path / UNLABELED_BATCH
    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings(BUCKET))
        prefix = f"prelabeled/{UNLABELED_BATCH}/{version}/"
        assert storage.get_json(prefix + "done.json")["images"] == len(truth)
        storage.download_prefix(prefix + f"{UNLABELED_BATCH}/", folder)
        ranking = storage.get_text(prefix + "ranking.csv").splitlines()
    assert len(ranking) == len(truth) + 1
    shown = open_in_ppocrlabel(folder)
    assert set(shown) == set(truth) and not any(view["confirmed"] for view in shown.values())
    read_right = [name for name, view in shown.items() if {b["transcription"] for b in view["boxes"]} & truth[name]]
    assert all(view["boxes"] for view in shown.values()), shown        # every image comes with boxes to correct
    assert len(read_right) >= len(truth) // 2, shown                   # and most with a text already right


def _runs(storage: Storage) -> dict[str, dict]:
    return {o.key.split("/")[1]: storage.get_json(o.key) for o in storage.list(layout.RUNS)
            if o.key.endswith("/run.json")}


@pytest.mark.slow(minutes=6)   # 354 s alone on an idle 2-core machine with rec 6 epochs (4 since), 2026-12-04
def test_make_demo_beats_the_stock_model_publishes_and_consumers_read_what_the_gate_certified(tmp_path):
    work = tmp_path / "demo"
    first = _demo(work, timeout=2400)

    # what the user sees: every task, the quarantined export, the stock baseline, the gate, the text read back
    for task in ("discover", "should_run", "check_export[0]", "check_export[1]", "merge", "register_baseline",
                 "train_rec", "evaluate", "export", "infra_validate", "compare", "gate", "route", "publish"):
        assert f"done {task} (" in first, task
    # stock det finds every line: not retrained (a poll of the progress printer may list other skipped tasks with it)
    assert re.search(r"skipped: [^\n]*\btrain_det\b", first)
    assert "export prices_broken QUARANTINED" in first
    # the outcome at a glance: the run's note in the UI, set by publish through Airflow's REST API (issue 29)
    assert re.search(r"the run's note in the Airflow UI: \*\*Published\*\* `ocr` `\S+`, now production\.", first)
    assert re.search(r"train_rec epoch \d+/4,", first)
    (read,) = re.findall(r"read from held-out test image (\S+): '(.*)'   \(labelled: '(.*)'\)", first)
    image, text, labelled = read
    assert text and labelled
    (stock_read,) = re.findall(r"the stock baseline \S+ reads the same image: '(.*)'$", first, re.M)
    assert "€" in labelled and "€" not in stock_read, (labelled, stock_read)   # a price: stock has no euro sign
    assert (work / "models").is_dir() and re.search(r"training curve: .*rec_curves\.png", first)

    with LocalS3Server(work / "s3").start() as server:
        storage = Storage(server.settings(BUCKET))
        runs = _runs(storage)
        (outcome,) = runs.values()
        assert outcome["status"] == "published"
        assert outcome["metrics"]["rec"]["acc"] > 0.9 and set(outcome["metrics"]) == {"rec"}
        assert outcome["gate"]["passed"] is True
        stock = _the_stock_model_was_the_baseline_and_the_fine_tune_beats_it(outcome, storage, first)
        _what_consumers_read_end_to_end_is_what_the_gate_certifies(outcome, storage)
        _the_read_shown_is_what_the_gate_measured(outcome, storage, image, text)
        # compared on slices and the reference set with the stock model
        comparison = outcome["comparison"]
        assert comparison["production_version"] == stock["version"] and not comparison["problems"]
        assert set(comparison["slices"]["rec"]) >= {"export=prices_800", "script=digits", "text_length=5-8"}
        reference = comparison["references"]["digits_reference"]
        assert reference["rec"]["samples"] >= 40 and reference["rec"]["new"]["acc"] > 0.9
        assert reference["rec"]["production"]["acc"] > 0.9                  # stock reads plain digits
        assert "det" not in reference           # the reference sets are read with the retrained kinds: det is stock's
        production = storage.get_json(layout.production_key("ocr"))
        assert production["version"] == outcome["model_version"]
        ledger = storage.get_json(layout.LEDGER)
        assert ledger["exports"]["prices_broken"]["status"] == "quarantined"
        assert ledger["exports"]["prices_800"]["status"] == "merged"
        assert list(ledger["exports"]["prices_800"]["left_out"]) == ["img_0002.jpg"]   # its one broken polygon
        # and the run's record and report say so, with where to see why
        assert outcome["left_out"]["prices_800"]["images"] == 1 and "prices_broken" in outcome["quarantined"]
        report = storage.get_text(layout.model_report_prefix("ocr", outcome["model_version"]) + "summary.html")
        assert "prices_800: merged without 1 image; which and why: s3://" in report
        assert "prices_broken: refused whole (quarantined)" in report
        assert "stock vs fine-tuned" in report

    model = work / "models" / outcome["model_version"]
    _the_publish_prelabelled_the_next_batch(work, first, outcome["model_version"], tmp_path)
    _exported_metrics_printed_and_recorded(first, outcome)
    with LocalS3Server(work / "s3").start() as server:
        manifest = Storage(server.settings(BUCKET)).get_json(layout.model_manifest_key("ocr", outcome["model_version"]))
    first_data = work / "work" / "datasets" / "current"    # the run's dataset, its test split held out

    _consumer_runtimes_read_the_published_model(model, first_data / "images" / image, text)
    _onnx_consumers_read_the_published_model(model, manifest, work / "models" / stock["version"], first_data,
                                             first_data / "images" / image, text, first, tmp_path)
    _planted_mismatch_and_unloadable_model_are_refused(model, first_data,
                                                       {**outcome["metrics"], "det": stock["metrics"]["det"]},
                                                       tmp_path)
    _lines_cut_by_tight_boxes_are_refused_end_to_end(model, first_data, tmp_path)
