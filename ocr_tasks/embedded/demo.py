"""The main job on the embedded default: `make demo` (`ocr-retrain demo`).

Everything a team's night looks like, on one machine and CPU only:

1. a real S3-compatible server (rclone `serve s3` on 127.0.0.1, over work/demo/s3/);
2. what a team has: the stock PP-OCRv4 mobile det and rec it runs today (`make stock-models`, uploaded to
   `pretrained/`), and labellers' PPOCRLabel exports uploaded to `incoming/`: one good export of 800 shelf labels,
   half of them prices with a euro sign, which the stock rec has no row for (one polygon dragged outside its
   image, which leaves that image out), and one whose Label.txt is damaged, which the run quarantines;
3. the real DAG `ocr_retraining` triggered in Airflow (api-server, scheduler with the
   LocalExecutor, dag-processor; SQLite metadata database in work/demo/airflow/), credentials through the
   `ocr_retrain_s3` connection. The first run registers the stock model as production (the baseline to beat)
   beside the rec training, in the `gpu` pool's two slots; the stock det finds every line (hmean 1.000 on the
   test split), so the run retrains what stock reads badly, the rec (training.models: [rec]; the CPU profile,
   from scratch: its dict is the labels'), and the gate publishes it only if it reads the test split end to end
   better than stock (gate.must_beat_stock);
4. the published production model pulled back, sha256-verified, and the text it reads
   from a held-out test image printed with the paths of the report and training curves.

State persists in work/demo/: a second `make demo` finds nothing new and the run
short-circuits in seconds; `ocr-retrain demo --add-export` uploads one more export first,
and the run trains again on the grown dataset. `ocr-retrain ui` opens the same state in
the Airflow UI.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from ocr_tasks.storage import layout
from ocr_tasks.config import DEFAULT_CONFIG, REPO_ROOT, PipelineConfig, apply_override, load_config
from ocr_tasks.errors import UsageError
from ocr_tasks.embedded.local_airflow import DAG_ID, SIZED_TO_THE_MACHINE, DagRunResult, LocalAirflow, task_slots
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.storage.s3 import Storage, StorageSettings
from ocr_tasks.embedded.synthetic import ExportSpec, break_label_file, break_one_polygon, make_export
from ocr_tasks.ingest.ppocrlabel import IGNORE_TRANSCRIPTIONS
from ocr_tasks.release.infra_validation import CONSUMER_RUNTIMES, ONNX, ONNX_RUNTIMES, runtime_label
from ocr_tasks.release.onnx_export import RAPIDOCR_SETTINGS
from ocr_tasks.vocabulary import DET, REC, TEST_SPLIT

# shelf labels: article numbers and prices; the stock PP-OCRv4 rec reads no line with the euro sign
PRICE_SIGN = "€"
PRICE_FORMATS = ("{}", PRICE_SIGN + "{}")
MAIN_EXPORT_IMAGES = 800
MAIN_EXPORT = ExportSpec(f"prices_{MAIN_EXPORT_IMAGES}", n_images=MAIN_EXPORT_IMAGES, seed=11,
                         text_formats=PRICE_FORMATS)
BROKEN_EXPORT = ExportSpec("prices_broken", n_images=50, seed=2, text_formats=PRICE_FORMATS)
# the stock models a team runs today (`make stock-models`), uploaded where the config's baseline.* names them
STOCK_MODELS = REPO_ROOT / "stock-models"
STOCK_KEYS = {DET: "pretrained/PP-OCRv4_mobile_det/", REC: "pretrained/PP-OCRv4_mobile_rec/"}
# a fixed labelled set every run reads with the new and the production model, never trained on: plain digits,
# which stock reads, so a fine-tune that forgets them is refused
REFERENCE_SET = ExportSpec("digits_reference", n_images=40, seed=77)
# raw images for the next round of labelling: ocr_prelabel pre-labels them after each publish
UNLABELED_BATCH = "shelf_photos_001"
UNLABELED_SPECS = (ExportSpec("raw_easy", n_images=16, seed=901, text_formats=PRICE_FORMATS),
                   ExportSpec("raw_tilted", n_images=8, seed=902, rotate_degrees=25, text_formats=PRICE_FORMATS))
PRELABEL_DAG = "ocr_prelabel"
EXTRA_EXPORT_IMAGES = 200
DEMO_DET_MIN_HMEAN = 0.85
# det and rec train at once, one CPU core each, as two GPU workers would
DEMO_GPU_SLOTS = 2
# The nightly schedule is off in the embedded instance: with catchup off, Airflow still starts the most
# recent missed night as soon as a scheduled DAG is unpaused, beside the run the demo (or a user) triggers.
MANUAL_ONLY = {"OCR_RETRAIN_SCHEDULE": "none"}

Out = Callable[[str], None]


def run_demo(work_dir: Path, *, add_export: bool = False, epochs: int | None = None, force: bool = False,
             bucket: str = "ocr-data", overrides: list[str] | None = None, out: Out = print) -> int:
    """Exit 0 when production holds a model that reads the sample (published now or earlier), else 1."""
    work_dir = work_dir.resolve()
    out(f"ocr-retrain demo in {work_dir}")
    with embedded_default(work_dir, bucket, add_export=add_export, out=out, airflow_env=MANUAL_ONLY,
                          overrides=overrides) as (
            storage, config, airflow):
        conf: dict[str, object] = {"force": force}
        if epochs is not None:
            conf["epochs"] = epochs
        out(f"[3/5] Airflow in {airflow.home} (SQLite): migrate, pool gpu ({DEMO_GPU_SLOTS} slots), "
            "api-server + scheduler + dag-processor")
        out(f"[4/5] trigger ocr_retraining with conf {json.dumps(conf)}   (task logs: {airflow.home / 'logs'})")
        result = airflow.run_dag(conf, out, gpu_slots=DEMO_GPU_SLOTS, consumers=(PRELABEL_DAG,))
        ran = summarise_run(storage, result, out)
        summarise_prelabel(storage, result, out)

        out("[5/5] the production model, as a consumer pulls it")
        read_ok = show_production(storage, config, work_dir, out)
        if not ran:
            return 1
        return 0 if read_ok else 1


@contextlib.contextmanager
def embedded_default(work_dir: Path, bucket: str, *, add_export: bool, out: Out,
                     airflow_env: dict[str, str] | None = None, overrides: list[str] | None = None,
                     main_images: int = MAIN_EXPORT_IMAGES,
                     ) -> Iterator[tuple[Storage, PipelineConfig, LocalAirflow]]:
    """What the demo and the UI share: the demo config (with `ocr-retrain --set` overrides written into it,
    the deployment's own config), the local S3 server with the labellers' exports uploaded, and an Airflow
    home whose `ocr_retrain_s3` connection points at that server."""
    config_file = write_demo_config(work_dir, bucket, overrides)
    with LocalS3Server(work_dir / "s3", log_file=work_dir / "s3.log").start() as server:
        settings = server.settings(bucket)
        storage = Storage(settings)
        storage.ensure_bucket()
        out(f"[1/5] local S3 server {server.endpoint_url}, bucket {bucket}, files in {work_dir / 's3'}; "
            f"config {config_file}")
        out("[2/5] labellers upload PPOCRLabel exports to incoming/")
        upload_exports(storage, work_dir / "labeller", add_export=add_export, out=out, main_images=main_images)
        airflow = LocalAirflow(work_dir / "airflow", connection=connection_for(settings),
                               extra_env={"OCR_RETRAIN_CONFIG": str(config_file), **(airflow_env or {})})
        yield storage, load_config(config_file), airflow


def _runtime(name: str, read: dict) -> str:
    versions = read.get("versions") or {}
    if read.get("engine") == ONNX:
        return runtime_label(name, versions, ONNX)
    return f"{name} (paddleocr {versions.get('paddleocr')}, paddle {versions.get('paddlepaddle')})"


def write_demo_config(work_dir: Path, bucket: str, overrides: list[str] | None = None) -> Path:
    """configs/pipeline.yaml with the demo's bucket and scratch folder, then `overrides` (key.path=value,
    checked like --set): what the DAG tasks load."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["storage"]["bucket"] = bucket
    raw["work_dir"] = str(work_dir / "work")
    # the demo uploads its labellers' exports in one go, then runs: no sync to wait out
    raw["incoming"]["quiet_period_s"] = 0
    # The demo's data is easy; 0.85 on the held-out test split is a real bar for it, where
    # the shipped 0.5 is only a floor for teams starting out.
    raw["gate"]["det_min_hmean"] = DEMO_DET_MIN_HMEAN
    # the model the team runs today becomes production on the first run; stock det finds every line of this data,
    # so the runs retrain the rec, whose euro sign stock cannot read (both are overridable with --set)
    raw["baseline"].update(STOCK_KEYS)
    raw["training"]["models"] = [REC]
    # the consumer runtimes `make consumer-envs` built (newest and oldest PaddleOCR 3.x), beside the pipeline's own
    raw["infra_validation"]["runtimes"].update(
        {name: str(python) for name, python in CONSUMER_RUNTIMES.items() if python.is_file()})
    # and the ONNX ones `make onnx-envs` built (RapidOCR on the newest and oldest ONNX Runtime line)
    raw["infra_validation"]["onnx_runtimes"] = {name: str(python) for name, python in ONNX_RUNTIMES.items()
                                                if python.is_file()}
    for item in overrides or []:
        apply_override(raw, item)
    target = work_dir / "pipeline.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"# written by `ocr-retrain demo` from {DEFAULT_CONFIG}\n"
                      + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return target


def connection_for(settings: StorageSettings) -> dict[str, object]:
    """The `ocr_retrain_s3` Airflow connection (AWS type) for these storage settings."""
    return {"conn_type": "aws", "login": settings.access_key_id, "password": settings.secret_access_key,
            "extra": {"endpoint_url": settings.endpoint_url, "region_name": settings.region}}


def upload_exports(storage: Storage, labeller_dir: Path, *, add_export: bool, out: Out,
                   main_images: int = MAIN_EXPORT_IMAGES) -> None:
    """What labellers do: export from PPOCRLabel and upload the folder to incoming/ (once per export).

    The first export has `main_images` images on a new work dir (`ocr-retrain ui --images`); a work dir
    that holds one already keeps it, whatever its size."""
    _upload_stock_models(storage, out)
    main = _main_export(storage, main_images, out)
    specs = [main, BROKEN_EXPORT]
    if add_export:
        specs.append(_next_extra_export(storage))
    for spec in specs:
        if storage.exists(f"incoming/{spec.name}/Label.txt"):
            out(f"      {spec.name}: already in incoming/")
            continue
        folder = labeller_dir / spec.name
        if not (folder / "Label.txt").exists():
            make_export(labeller_dir, spec)
            if spec is BROKEN_EXPORT:
                break_label_file(folder)
            elif spec is main:
                break_one_polygon(folder)
        storage.upload_dir(folder, f"incoming/{spec.name}")
        note = {BROKEN_EXPORT: " (Label.txt line 3 cut short: expect the export quarantined)",
                main: " (one polygon outside its image: expect that image left out, the rest merged)"}.get(spec, "")
        out(f"      {spec.name}: {spec.n_images} images -> {storage.uri(f'incoming/{spec.name}/')}{note}")
    reference = f"{layout.REFERENCE}{REFERENCE_SET.name}/"
    if not storage.exists(reference + "Label.txt"):
        if not (labeller_dir / REFERENCE_SET.name / "Label.txt").exists():
            make_export(labeller_dir, REFERENCE_SET)
        storage.upload_dir(labeller_dir / REFERENCE_SET.name, reference)
        out(f"      {REFERENCE_SET.name}: {REFERENCE_SET.n_images} images -> {storage.uri(reference)} "
            "(a reference set: every run reads it with the new and the production model, none trains on it)")
    unlabeled = f"{layout.UNLABELED}{UNLABELED_BATCH}/"
    if not any(True for _ in storage.list(unlabeled)):
        count = 0
        for spec in UNLABELED_SPECS:   # pictures only: nobody has labelled them yet
            folder = labeller_dir / "raw" / spec.name
            if not (folder / "Label.txt").exists():
                make_export(labeller_dir / "raw", spec)
            for image in sorted(p for p in folder.iterdir() if p.suffix == f".{spec.image_format}"):
                storage.upload_file(image, f"{unlabeled}{spec.name}_{image.name}")
                count += 1
        out(f"      {UNLABELED_BATCH}: {count} raw images -> {storage.uri(unlabeled)} (to label next: "
            "each new production model pre-labels them for PPOCRLabel)")


def _upload_stock_models(storage: Storage, out: Out) -> None:
    """The team's stock models into the bucket, once (the pipeline reads models from storage, never a hub)."""
    for kind, key in STOCK_KEYS.items():
        if storage.exists(key + "inference.pdiparams"):
            continue
        folder = STOCK_MODELS / f"PP-OCRv4_mobile_{kind}"
        if not (folder / "inference.pdiparams").is_file():
            raise UsageError(f"{folder}: the stock PP-OCRv4 models are not here; `make stock-models` fetches them "
                             "(`make demo` does it first)")
        storage.upload_dir(folder, key)
        out(f"      stock PP-OCRv4 mobile {kind} (the model the team runs today) -> {storage.uri(key)}")


def _main_export(storage: Storage, images: int, out: Out) -> ExportSpec:
    held = sorted(name for name in {o.key.split("/")[1] for o in storage.list("incoming/")}
                  if re.fullmatch(r"prices_\d+", name))
    if held and held[0] != f"prices_{images}":
        out(f"      {held[0]} is the first export here already: kept ({images} images asked)")
        images = int(held[0].split("_")[1])
    return ExportSpec(f"prices_{images}", n_images=images, seed=MAIN_EXPORT.seed, text_formats=PRICE_FORMATS)


def _next_extra_export(storage: Storage) -> ExportSpec:
    taken = {o.key.split("/")[1] for o in storage.list("incoming/")}
    n = 1
    while f"prices_extra_{n:03d}" in taken:
        n += 1
    return ExportSpec(f"prices_extra_{n:03d}", n_images=EXTRA_EXPORT_IMAGES, seed=1000 + n,
                      text_formats=PRICE_FORMATS)


def summarise_run(storage: Storage, result: DagRunResult, out: Out) -> bool:
    """What the DAG run did, from what it left in storage; False when the run itself failed."""
    if result.state != "success":
        out(f"      the DAG run FAILED (state {result.state}) after {result.seconds:.0f} s; "
            f"the failing task's message is above, its whole log in {result.log_file}")
        return False
    from ocr_tasks.flow.run import sanitize_run_id

    run_id = sanitize_run_id(result.run_id)
    outcome = storage.get_json(layout.run_record_key(run_id), default=None)
    if result.note:   # what the UI shows on the run
        out(f"      the run's note in the Airflow UI: {result.note.splitlines()[0]}")
    if outcome is None:
        out(f"      run {result.run_id}: nothing new, nothing to train: short-circuited in {result.seconds:.0f} s")
        return True
    out(f"      run {result.run_id}: {outcome['status']} in {result.seconds:.0f} s, dataset {outcome['dataset_version']}")
    exported = outcome.get("exported_metrics") or {}
    for task, metrics in sorted(outcome.get("metrics", {}).items()):
        out(f"      {task} on the held-out test split: "
            + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
            + "   (tools/eval.py, checkpoint)")
        for runtime, read in exported.items():
            if read.get("metrics"):
                out(f"          exported, read in {_runtime(runtime, read)}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in read["metrics"].get(task, {}).items()))
    for runtime, read in exported.items():
        if read.get("error"):
            error = read["error"]
            out(f"      {_runtime(runtime, read)} cannot read the exported models: {error.get('type')}: "
                + str(error.get("message", "")).splitlines()[0][:200])
        elif read.get("metrics"):
            e2e, latency = read["metrics"].get("e2e", {}), read.get("latency_ms") or {}
            out(f"      end to end (det+rec) in {_runtime(runtime, read)}: hmean {e2e.get('e2e_hmean', 0):.3f}, "
                f"{latency.get('mean', 0):.0f} ms per image on CPU (p95 {latency.get('p95', 0):.0f} ms"
                + (f", {read['cpu_threads']} CPU thread" if read.get("cpu_threads") else "") + ")")
    from ocr_tasks.release.gate import KEY_METRICS

    comparison = outcome.get("comparison") or {}
    _stock_vs_fine_tuned(outcome, comparison, out)
    for name, kinds in sorted((comparison.get("references") or {}).items()):
        for kind, entry in sorted(kinds.items()):
            key = KEY_METRICS[kind]
            before = (entry.get("production") or {}).get(key)
            out(f"      reference set {name}, {kind} {key}: new {entry['new'][key]:.3f}"
                + (f", production {before:.3f}" if before is not None else " (no production to compare with)"))
    for reason in (outcome.get("gate") or {}).get("reasons") or []:
        out(f"      gate: {reason}")
    if outcome.get("report_uri"):
        out(f"      report: {outcome['report_uri']}")
    return True


def _stock_vs_fine_tuned(outcome: dict, comparison: dict, out: Out) -> None:
    """The question a team asks first: does the fine-tune read our data better than the stock model we run?"""
    from ocr_tasks.release.gate import KEY_METRICS

    baseline = outcome.get("baseline") or {}
    if not baseline.get("stock"):
        return
    out(f"      stock vs fine-tuned on the held-out test split (production before this run: the stock baseline "
        f"{baseline.get('version')}):")
    for kind, metrics in sorted(outcome.get("metrics", {}).items()):
        key = KEY_METRICS[kind]
        if isinstance((baseline.get(kind) or {}).get(key), (int, float)):
            out(f"          {kind} {key} (tools/eval.py): stock {baseline[kind][key]:.3f}, fine-tuned {metrics[key]:.3f}")
    e2e = comparison.get("e2e") or {}
    stock, new = (e2e.get("production") or {}).get("e2e_hmean"), (e2e.get("new") or {}).get("e2e_hmean")
    if isinstance(stock, (int, float)) and isinstance(new, (int, float)):
        out(f"          end to end (det+rec, what consumers read) in {e2e.get('runtime')}: hmean stock {stock:.3f}, "
            f"fine-tuned {new:.3f}")


def summarise_prelabel(storage: Storage, result: DagRunResult, out: Out) -> None:
    """Where the pre-labelled batch is, when the publish started ocr_prelabel."""
    prelabel = result.consumers.get(PRELABEL_DAG)
    if prelabel is None:
        return
    if prelabel.state != "success":
        out(f"      {PRELABEL_DAG} FAILED (state {prelabel.state}); its task logs: {prelabel.log_file}")
        return
    for key in sorted(o.key for o in storage.list(layout.PRELABELED) if o.key.endswith("/done.json")):
        prefix = key.rsplit("/", 1)[0] + "/"
        batch = prefix.split("/")[1]
        out(f"      pre-labelled for PPOCRLabel: {storage.uri(prefix + batch + '/')} "
            f"(hardest first: {storage.uri(prefix + 'ranking.html')})")


def show_production(storage: Storage, config: PipelineConfig, work_dir: Path, out: Out) -> bool:
    """Pull production, read a held-out test image with it, print what it read and where the report is."""
    from ocr_tasks.ingest.ledger import load_ledger
    from ocr_tasks.ingest.pull import pull_dataset
    from ocr_tasks.release.inference import read_image
    from ocr_tasks.release.registry import list_versions, production_version, pull_model

    version = production_version(storage, config.model_name)
    if version is None:
        out(f"      no production model yet ({storage.uri(layout.production_key(config.model_name))} is absent)")
        return False
    model = pull_model(storage, config.model_name, work_dir / "models", version, include_report=True)
    out(f"      production {config.model_name} {version} -> {model} (det/, rec/: PaddleOCR inference layout)")
    if (model / RAPIDOCR_SETTINGS).is_file():
        out(f"      ONNX beside them: det/inference.onnx, rec/inference.onnx and {RAPIDOCR_SETTINGS} (RapidOCR: "
            "docs/consumers.md, \"ONNX (RapidOCR)\"; `ocr-retrain read --engine onnx IMAGE`)")
    report = model / "report"
    out(f"      report: {report / 'summary.html'}")
    for curve in sorted(report.glob("*.png")):
        out(f"      training curve: {curve}")

    dataset = load_ledger(storage)["dataset_version"]
    data_dir = pull_dataset(storage, dataset, config.work.current_dataset)
    image, expected = _first_test_image(data_dir, showing=PRICE_SIGN)   # what stock cannot read, where it shows
    lines = read_image(model, image)
    read = " | ".join(line.text for line in lines) or "(nothing)"
    out(f"      read from held-out test image {image.name}: {read!r}   (labelled: {' | '.join(expected)!r})")
    stock = next((item["version"] for item in list_versions(storage, config.model_name)
                  if item.get("stock") and item["version"] != version), None)
    if stock is not None:
        stock_model = pull_model(storage, config.model_name, work_dir / "models", stock)
        stock_read = " | ".join(line.text for line in read_image(stock_model, image)) or "(nothing)"
        out(f"      the stock baseline {stock} reads the same image: {stock_read!r}")
    return True


def _first_test_image(data_dir: Path, showing: str = "") -> tuple[Path, list[str]]:
    """The first labelled test image, the first whose labels hold `showing` where there is one."""
    test_list = data_dir / DET / f"{TEST_SPLIT}.txt"
    labelled = []
    for line in test_list.read_text(encoding="utf-8").splitlines():
        rel, _, labels = line.partition("\t")
        boxes = json.loads(labels)
        texts = [b["transcription"] for b in sorted(boxes, key=lambda b: min(p[1] for p in b["points"]))
                 if b["transcription"] not in IGNORE_TRANSCRIPTIONS]
        if texts and showing in "".join(texts):
            return data_dir / rel, texts
        labelled += [(data_dir / rel, texts)] if texts else []
    if labelled:
        return labelled[0]
    raise UsageError(f"{test_list}: no labelled test image to read")


def run_ui(work_dir: Path, *, port: int = 8080, bucket: str = "ocr-data", overrides: list[str] | None = None,
           images: int = MAIN_EXPORT_IMAGES, out: Out = print) -> int:
    """`airflow standalone` over the demo's state, the DAG unpaused and ready to trigger by hand
    (manual only: opening the UI should not start a training run by itself, see MANUAL_ONLY)."""
    work_dir = work_dir.resolve()
    airflow_env = {**MANUAL_ONLY, **SIZED_TO_THE_MACHINE, "AIRFLOW__API__PORT": str(port),
                   # where task processes report to: this api-server, not :8080
                   "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/"}
    with embedded_default(work_dir, bucket, add_export=False, out=out, airflow_env=airflow_env,
                          overrides=overrides, main_images=images) as (_, _, airflow):
        airflow.prepare(DEMO_GPU_SLOTS)
        out(f"Starting Airflow (api-server, scheduler, dag-processor, triggerer; {task_slots()} task slots): "
            "its address follows once it answers, in about a minute.")

        def ready() -> None:
            out(f"Airflow UI: http://127.0.0.1:{port}/dags/ocr_retraining  (no login on localhost)")
            out("  Trigger -> the Params form: force, models, epochs, thresholds, dry_run, require_approval. "
                "Ctrl-C stops everything.")
            out("  Each run's outcome is its note; its report is the run's Report tab.")
            out("  More exports: `ocr-retrain demo --add-export` in another shell uploads one (or copy your own into "
                f"{work_dir / 's3' / bucket / 'incoming'}/<name>/).")

        # unpaused as the dag-processor finds them; the prelabel DAG too: each publish pre-labels the next batch
        return airflow.standalone(port, on_ready=ready, unpause=(DAG_ID, PRELABEL_DAG))
