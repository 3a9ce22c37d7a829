"""`ocr-retrain`: every pipeline step by hand, through the same functions the DAG calls.

Exit codes: 0 success; 1 the data failed (report printed) or the training engine did; 2 a usage
error, unreadable input or a storage failure (UsageError, StorageError: one line, no traceback).
Any other exception is a bug: its traceback shows, and the exit code is Python's 1.

Over 400 lines because it is one parser: every command's flags, then one short `cmd_*` per command
that calls the pipeline's own functions; splitting it would spread one --help over several files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ocr_tasks.errors import StorageError, UsageError

EXIT_OK, EXIT_DATA, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from ocr_tasks.training.engine import EngineError

    try:
        return args.handler(args)
    except (UsageError, StorageError) as exc:
        print(f"ocr-retrain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:  # the training engine failed: its log tail says why
        print(f"ocr-retrain: engine error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="pipeline config YAML (default: configs/pipeline.yaml or $OCR_RETRAIN_CONFIG)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set split.train=0.7 (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="validate one PPOCRLabel export (folder or s3:// prefix)")
    validate.add_argument("source", metavar="SRC")
    validate.add_argument("--dict", dest="dict_file",
                          help="PaddleOCR dict file (validation.dict_file): characters outside it fail with "
                               "--set validation.outside_dict=leave_out; by default (grow) they are added to the dict")
    validate.add_argument("--docs", type=Path, help="write GX Data Docs HTML into this folder when it fails")
    validate.set_defaults(handler=cmd_validate)

    prepare = commands.add_parser("prepare", help="validate exports and write the passing ones as a split dataset")
    prepare.add_argument("sources", nargs="+", metavar="SRC")
    prepare.add_argument("--out", type=Path, required=True)
    prepare.add_argument("--dict", dest="dict_file",
                         help="PaddleOCR dict file (validation.dict_file): the dataset's dict.txt is it, then the "
                              "labels' other characters (validation.outside_dict: grow, the default)")
    prepare.set_defaults(handler=cmd_prepare)

    ingest = commands.add_parser("ingest", help="storage: discover new exports, validate, quarantine, merge a new dataset version")
    ingest.set_defaults(handler=cmd_ingest)

    discover = commands.add_parser("discover", help="storage: list new, waiting and already ingested exports")
    discover.set_defaults(handler=cmd_discover)

    pull = commands.add_parser("pull-dataset", help="storage: materialise a dataset version as a PaddleOCR data_dir")
    pull.add_argument("version", nargs="?", default="latest")
    pull.add_argument("--dest", type=Path, required=True)
    pull.set_defaults(handler=cmd_pull_dataset)

    run = commands.add_parser("run", help="storage: ingest -> train -> evaluate -> export -> infra-validate -> gate -> publish")
    run.add_argument("--force", action="store_true", help="retrain even when no new export arrived")
    run.add_argument("--models", help="comma-separated subset of det,rec (default: training.models)")
    run.add_argument("--epochs", type=int, help="override every stage's epochs")
    run.add_argument("--dry-run", action="store_true",
                     help="every step up to the gate as usual (ingest, train, evaluate, export, infra-validate, "
                          "gate), then publish nothing: the report goes to runs/<run_id>/report/")
    run.add_argument("--approved-by", metavar="NAME",
                     help="who approves the publish, when approval.required is set (else the run is rejected)")
    run.add_argument("--run-id", help="reuse a run id to resume its checkpoints")
    run.set_defaults(handler=cmd_run)

    graph = commands.add_parser("graph", help="the retraining pipeline as declared: each step and what it needs "
                                              "(what the DAG and `run` execute)")
    graph.set_defaults(handler=cmd_graph)

    models = commands.add_parser("models", help="storage: published model versions and which is production")
    models.add_argument("--name", help="model name (default: config model_name)")
    models.set_defaults(handler=cmd_models)

    pull_model = commands.add_parser("pull-model", help="storage: download a published model (production by default), sha256-verified")
    pull_model.add_argument("--name", help="model name (default: config model_name)")
    pull_model.add_argument("--version", help="a published version (default: production)")
    pull_model.add_argument("--dest", type=Path, required=True)
    pull_model.add_argument("--report", action="store_true",
                            help="also its report (report/summary.html with its pictures), sha256-verified")
    pull_model.set_defaults(handler=cmd_pull_model)

    rollback = commands.add_parser("rollback", help="storage: point production back to an earlier published version")
    rollback.add_argument("version")
    rollback.add_argument("--name", help="model name (default: config model_name)")
    rollback.set_defaults(handler=cmd_rollback)

    served = commands.add_parser("infra-validate", help="read a dataset's test split with a model folder in each "
                                 "consumer runtime (what the gate checks before publishing)")
    served.add_argument("model", type=Path, help="a model folder (det/, rec/): a pulled version or runs/<id>/bundle")
    served.add_argument("--data", type=Path, required=True, help="a PaddleOCR data_dir (`ocr-retrain pull-dataset`)")
    served.add_argument("--runtime", action="append", default=[], metavar="NAME=PYTHON",
                        help="a consumer runtime's python (repeatable); default: infra_validation.runtimes")
    served.set_defaults(handler=cmd_infra_validate)

    stock = commands.add_parser("convert-pretrained", help="storage: convert an inference model folder into training "
                                "weights for a kind's template, as a training run would (verified, cached)")
    stock.add_argument("kind", choices=("det", "rec"))
    stock.add_argument("key", help="the folder's key in the bucket (ends in /), as training.<kind>.pretrained names it")
    stock.add_argument("--data", type=Path, required=True,
                       help="a PaddleOCR data_dir (`ocr-retrain pull-dataset`): its train images calibrate and verify")
    stock.set_defaults(handler=cmd_convert_pretrained)

    baseline = commands.add_parser("register-baseline", help="storage: publish the stock models (training.<kind>."
                                   "pretrained folders) as production, the baseline the first fine-tune must beat")
    baseline.add_argument("--data", type=Path, required=True,
                          help="a PaddleOCR data_dir (`ocr-retrain pull-dataset`): calibration, and the test split scored")
    baseline.add_argument("--version", help="the version name (default: the time, like every published version)")
    baseline.add_argument("--replace-production", action="store_true",
                          help="make the stock models production even if a fine-tuned model is production now")
    baseline.set_defaults(handler=cmd_register_baseline)

    prelabel = commands.add_parser("prelabel", help="storage: a published model pre-labels unlabeled/<batch>/ for "
                                   "PPOCRLabel (Cache.cach), hardest images first (ranking.csv/html)")
    prelabel.add_argument("batches", nargs="*", metavar="s3://BUCKET/unlabeled/BATCH/",
                          help="the batches (default: every unlabeled/<batch>/ the version has not done)")
    prelabel.add_argument("--model-version", help="a published version (default: production)")
    prelabel.set_defaults(handler=cmd_prelabel)

    read = commands.add_parser("read", help="read the text of an image with a published model (PaddleOCR 3.x)")
    read.add_argument("image", type=Path)
    read.add_argument("--model", type=Path, help="a pulled model folder (det/, rec/); default: pull production")
    read.add_argument("--dest", type=Path, default=Path("models"), help="where production is pulled (default models/)")
    read.add_argument("--device", default="cpu", help="cpu or gpu:0")
    read.add_argument("--engine", choices=("paddle", "onnx"), default="paddle",
                      help="paddle: PaddleOCR 3.x on the Paddle files (default); onnx: RapidOCR on the ONNX files, "
                           "with the model's rapidocr.yaml")
    read.add_argument("--onnx-python", help="python of a venv with rapidocr and onnxruntime (default: the first of "
                                            "infra_validation.onnx_runtimes, else .venv-onnx-newest: make onnx-envs)")
    read.set_defaults(handler=cmd_read)

    demo = commands.add_parser("demo", help="the main job on the embedded default: local S3, the real DAG, CPU")
    demo.add_argument("--work-dir", type=Path, default=Path("work/demo"))
    demo.add_argument("--add-export", action="store_true", help="upload one more synthetic export first (retrains)")
    demo.add_argument("--epochs", type=int, help="epochs per stage (the DAG's `epochs` param); default: as configured")
    demo.add_argument("--force", action="store_true", help="train even when nothing is new")
    demo.set_defaults(handler=cmd_demo)

    ui = commands.add_parser("ui", help="Airflow UI (airflow standalone) on the demo's state, DAG ready to trigger")
    ui.add_argument("--work-dir", type=Path, default=Path("work/demo"))
    ui.add_argument("--port", type=int, default=8080)
    ui.add_argument("--images", type=int, default=800,
                    help="images in the labellers' first export on a new work dir (default 800, the demo's); "
                         "fewer make each run triggered from the UI train in seconds")
    ui.set_defaults(handler=cmd_ui)

    storage = commands.add_parser("storage", help="the embedded local S3 server")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True)
    serve = storage_commands.add_parser("serve", help="serve a local folder as S3 on 127.0.0.1 (rclone serve s3)")
    serve.add_argument("--root", type=Path, default=Path("work/s3"), help="folder to serve; each subfolder is a bucket")
    serve.add_argument("--port", type=int, default=9000)
    serve.set_defaults(handler=cmd_storage_serve)
    return parser


def _config(args: argparse.Namespace):
    from ocr_tasks.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "dict_file", None):
        overrides.append(f"validation.dict_file={json.dumps(str(Path(args.dict_file).resolve()))}")
    return load_config(args.config, overrides)


def _storage_for_uri(config):
    def open_uri(uri: str):
        from ocr_tasks.storage.s3 import parse_s3_uri, storage_from_config

        bucket, prefix = parse_s3_uri(uri)
        return storage_from_config(config, bucket=bucket, prefix=""), (prefix.rstrip("/") + "/" if prefix else "")

    return open_uri


def _local_context(args, **request):
    """The run context `ocr-retrain` steps work with: config, storage from the environment, the request."""
    from ocr_tasks.flow.run import RunContext, RunRequest, new_run_id
    from ocr_tasks.storage.s3 import storage_from_config

    config = _config(args)
    request.setdefault("models", tuple(config.training.models))
    return RunContext(config, storage_from_config(config), RunRequest(request.pop("run_id", None) or new_run_id(),
                                                                      **request))


def _cli_trigger(args, request: dict):
    """`ocr-retrain run` as run.json records it: the login that ran it, its flags and --set overrides (whoever
    runs the CLI holds the config, so nothing is refused here)."""
    import getpass

    from ocr_tasks.flow.run import Trigger

    try:
        user = getpass.getuser()
    except (KeyError, OSError):   # no user name for this uid (containers)
        user = None
    params = {key: value for key, value in request.items() if key != "run_id" and value not in (None, False)}
    return Trigger("cli", user, params={**params, "set": list(args.overrides)})


def cmd_validate(args) -> int:
    import tempfile

    from ocr_tasks.ingest.check import check_local_export
    from ocr_tasks.ingest.prepare import resolve_source

    config = _config(args)
    with tempfile.TemporaryDirectory(prefix="validate-", dir=config.work.scratch) as scratch:
        folder = resolve_source(args.source, Path(scratch), _storage_for_uri(config))
        _, report = check_local_export(folder, config, args.docs.resolve() if args.docs else None)
    print(report.summary())
    return EXIT_OK if report.success else EXIT_DATA


def cmd_prepare(args) -> int:
    from ocr_tasks.ingest.prepare import prepare

    config = _config(args)
    result = prepare(args.sources, args.out, config, _storage_for_uri(config))
    for report in result.reports:
        print(report.summary())
    if result.info:
        counts = ", ".join(f"{split} {c['images']} images/{c['crops']} crops" for split, c in result.info["counts"].items())
        print(f"dataset {result.info['version']} written to {args.out.resolve()} ({counts})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.excluded:
        print(f"excluded (failed validation): {', '.join(result.excluded)}")
        return EXIT_DATA
    return EXIT_OK


def cmd_ingest(args) -> int:
    from ocr_tasks.flow.local_runner import ingest

    result = ingest(_local_context(args))
    for name, why in result.discovery.waiting.items():
        print(f"waiting  {name}: {why}")
    for check in result.checks:
        print(check.summary)
        if check.report_uri:
            print(f"  quarantined: {check.report_uri}")
    if result.dataset:
        print(f"dataset {result.dataset.version}: {result.dataset.uri}")
    elif not result.checks:
        print("nothing new to ingest")
    return EXIT_DATA if any(not c.passed for c in result.checks) else EXIT_OK


def cmd_discover(args) -> int:
    from ocr_tasks.flow import steps

    found = steps.discover(_local_context(args))
    for ref in found.new:
        print(f"new      {ref.name} ({ref.objects} objects, fingerprint {ref.fingerprint[:12]})")
    abandoned = {ref.name for ref in found.abandoned}
    for name, why in found.waiting.items():
        print(f"{'QUARANTINED' if name in abandoned else 'waiting '} {name}: {why}")
    for name, why in found.refused.items():
        print(f"REFUSED  {name}: {why}")
    for name in found.already_ingested:
        print(f"done     {name}")
    print(f"latest dataset {found.latest_dataset or 'none'}"
          + (" (not trained on yet)" if found.untrained_dataset else ""))
    return EXIT_OK


def _require_label_file(data_dir: Path, label_file: str) -> None:
    if not (data_dir / label_file).is_file():
        raise UsageError(f"{data_dir}: no {label_file}: give a PaddleOCR data_dir (`ocr-retrain pull-dataset`)")


def cmd_convert_pretrained(args) -> int:
    from ocr_tasks.storage.s3 import storage_from_config
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.stock_weights import is_inference_folder
    from ocr_tasks.training.train import pretrained_weights, template_path

    if not is_inference_folder(args.key):
        raise UsageError(f"{args.key}: an inference model folder's key ends in / (training weights need no conversion)")
    _require_label_file(args.data, f"{args.kind}/train.txt")
    config = _config(args)
    settings, engine = config.training.for_model(args.kind), Engine.locate(config.training.engine_checkout)
    weights = pretrained_weights(storage_from_config(config), args.key, args.kind,
                                 template_path(settings.template, engine), args.data.resolve(), engine,
                                 config.work.pretrained)
    print(f"{args.key} -> {weights.with_suffix('.pdparams')} (training weights for {settings.template}; cached in "
          f"the bucket under pretrained/converted/)")
    return EXIT_OK


def cmd_register_baseline(args) -> int:
    from ocr_tasks.release.baseline import register_stock_baseline
    from ocr_tasks.storage.s3 import storage_from_config

    _require_label_file(args.data, "det/test.txt")
    config = _config(args)
    manifest = register_stock_baseline(storage_from_config(config), config, args.data.resolve(),
                                       config.work.pretrained / "baseline", version=args.version,
                                       replace_production=args.replace_production)
    scores = ", ".join(f"{kind} {json.dumps(m)}" for kind, m in manifest["metrics"].items())
    print(f"stock baseline published as {config.model_name} {manifest['version']} (production); test split: {scores}")
    return EXIT_OK


def cmd_pull_dataset(args) -> int:
    from ocr_tasks.ingest.ledger import load_ledger
    from ocr_tasks.ingest.pull import pull_dataset
    from ocr_tasks.storage.s3 import storage_from_config

    storage = storage_from_config(_config(args))
    version = load_ledger(storage).get("dataset_version") if args.version == "latest" else args.version
    if not version:
        raise UsageError("no dataset version has been published yet")
    print(pull_dataset(storage, version, args.dest.resolve()))
    return EXIT_OK


def cmd_run(args) -> int:
    from ocr_tasks.flow.local_runner import run_local

    request = {"run_id": args.run_id, "force": args.force, "epochs": args.epochs, "dry_run": args.dry_run,
               "approved_by": args.approved_by}
    if args.models:
        request["models"] = tuple(m.strip() for m in args.models.split(","))
    ctx = _local_context(args, **request, trigger=_cli_trigger(args, request))
    outcome = run_local(ctx)
    config = ctx.config
    print(f"run {outcome.run_id}: {outcome.status}")
    for task, values in outcome.metrics.items():
        print(f"  {task} test: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    for reason in outcome.gate.reasons if outcome.gate else []:
        print(f"  gate: {reason}")
    if outcome.model_version:
        print(f"  published {config.model_name} {outcome.model_version}")
    if outcome.note:
        print(f"  {outcome.note}")
    if outcome.approval:
        approval = outcome.approval
        print(f"  {approval.decision} by {approval.by or 'nobody'}" + (f": {approval.comment}" if approval.comment else ""))
    if outcome.report:
        print(f"  report: {outcome.report} ({outcome.report_uri})")
    return EXIT_OK


def cmd_graph(args) -> int:
    from ocr_tasks.flow.retraining import RETRAINING

    print(RETRAINING.picture())
    return EXIT_OK


def cmd_models(args) -> int:
    from ocr_tasks.release.registry import list_versions
    from ocr_tasks.storage.s3 import storage_from_config

    config = _config(args)
    name = args.name or config.model_name
    versions = list_versions(storage_from_config(config), name)
    if not versions:
        print(f"no published versions of {name}")
    for item in versions:
        marker = "*" if item["production"] else " "
        gate = {True: "passed", False: "failed", None: "none"}[item["gate_passed"]]
        origin = "  stock baseline (" + ", ".join(sorted(item["stock"].values())) + ")" if item.get("stock") else ""
        print(f"{marker} {item['version']}  {item['published_at']}  gate={gate}{origin}  {item['metrics']}")
    return EXIT_OK


def cmd_pull_model(args) -> int:
    from ocr_tasks.release.registry import pull_model
    from ocr_tasks.storage.s3 import storage_from_config

    config = _config(args)
    target = pull_model(storage_from_config(config), args.name or config.model_name, args.dest.resolve(), args.version,
                        include_report=args.report)
    print(target)
    if args.report:
        report = target / "report" / "summary.html"
        print(f"report: {report}" if report.is_file() else "report: none published with this version")
    return EXIT_OK


def cmd_rollback(args) -> int:
    from ocr_tasks.release.registry import rollback
    from ocr_tasks.storage.s3 import storage_from_config

    config = _config(args)
    pointer = rollback(storage_from_config(config), args.name or config.model_name, args.version)
    print(f"production is now {pointer['version']} (was {pointer.get('previous')})")
    return EXIT_OK


def cmd_prelabel(args) -> int:
    from ocr_tasks.prelabel.prelabel import batches_to_prelabel, prelabel_batch
    from ocr_tasks.release.registry import check_name, production_version
    from ocr_tasks.storage import layout
    from ocr_tasks.storage.s3 import parse_s3_uri, storage_from_config

    config = _config(args)
    storage = storage_from_config(config)
    batches = []
    for uri in args.batches:
        bucket, prefix = parse_s3_uri(uri)
        root = config.storage.prefix.strip("/")
        rel = prefix[len(root):].lstrip("/") if root and prefix.startswith(root) else prefix
        parts = rel.strip("/").split("/")
        if bucket != storage.settings.bucket or len(parts) != 2 or parts[0] + "/" != layout.UNLABELED:
            raise UsageError(f"{uri}: give a batch folder of the configured bucket, "
                             f"s3://{storage.settings.bucket}/{root + '/' if root else ''}{layout.UNLABELED}<batch>/")
        batches.append(parts[1])
    version = args.model_version or production_version(storage, config.model_name)
    if version is None:
        raise UsageError(f"model {config.model_name} has no production version yet: nothing to pre-label with")
    check_name(version, "model version")
    for batch in batches or batches_to_prelabel(storage, version):
        result = prelabel_batch(storage, config, batch, version)
        if result.already_done:
            print(f"{batch}: already pre-labelled by {version}: {result.uri}")
        else:
            print(f"{batch}: {result.images} image(s) pre-labelled by {version} in {result.seconds:.0f} s")
            print(f"  open in PPOCRLabel: {result.uri}  (hardest first: {result.ranking_uri})")
        for why in result.left_out:
            print(f"  left out: {why}")
    if not batches and not batches_to_prelabel(storage, version):
        print(f"every batch under {storage.uri(layout.UNLABELED)} is pre-labelled by {version}")
    return EXIT_OK


def cmd_infra_validate(args) -> int:
    from ocr_tasks.release.infra_validation import validate_in_runtimes

    config = _config(args)
    runtimes = dict(config.infra_validation.runtimes)
    if args.runtime:
        pairs = [item.partition("=") for item in args.runtime]
        if any(not name or not sep for name, sep, _ in pairs):
            raise UsageError(f"--runtime must look like NAME=PYTHON, got {args.runtime}")
        runtimes = {name: python or None for name, _, python in pairs}
    served = validate_in_runtimes(args.model, args.data, runtimes, config.work.scratch / "infra_validation",
                                  timeout_s=config.infra_validation.timeout_s)
    print(f"test split of {args.data}: {served.images} images, {served.crops} crops")
    for read in served.runtimes:
        if not read.loaded:
            error = read.error or {}
            print(f"{read.label()}: DOES NOT LOAD ({error.get('stage')}): {error.get('type')}: "
                  f"{str(error.get('message', '')).strip()[:500]}\n  log: {read.log_file}")
            continue
        m, latency = read.metrics, read.latency_ms
        parts = [f"det hmean {m['det']['hmean']:.4f}" if "det" in m else "",
                 f"rec acc {m['rec']['acc']:.4f}" if "rec" in m else "",
                 f"end-to-end hmean {m['e2e']['e2e_hmean']:.4f}, {latency['mean']:.1f} ms per image "
                 f"(p95 {latency['p95']:.1f})" if "e2e" in m else ""]
        print(f"{read.label()}: " + ", ".join(p for p in parts if p))
    return EXIT_OK if all(r.loaded for r in served.runtimes) else EXIT_DATA


def cmd_read(args) -> int:
    from ocr_tasks.ingest.images import inspect_image
    from ocr_tasks.release.inference import read_image

    config = _config(args)
    # ingest's own checks, before any model is pulled or loaded: a text file, a truncated or oversized image is
    # named here, not met as a traceback (or as empty reads) from the runtime
    facts = inspect_image(args.image, max_pixels=config.validation.max_image_pixels,
                          max_side=config.validation.max_image_side)
    if facts.problem:
        raise UsageError(f"{args.image}: {facts.problem}: nothing read")
    model = args.model
    if model is None:
        from ocr_tasks.release.registry import pull_model
        from ocr_tasks.storage.s3 import storage_from_config

        model = pull_model(storage_from_config(config), config.model_name, args.dest.resolve())
    if args.engine == "onnx":
        import tempfile

        from ocr_tasks.release.inference import read_image_onnx
        from ocr_tasks.release.infra_validation import ONNX_RUNTIMES

        python = args.onnx_python or next(iter(config.infra_validation.onnx_runtimes.values()),
                                          str(ONNX_RUNTIMES["onnx-newest"]))
        with tempfile.TemporaryDirectory(prefix="ocr-retrain-read-") as work:
            lines = read_image_onnx(model, args.image, python, Path(work))
    else:
        lines = read_image(model, args.image, device=args.device)
    for line in lines:
        print(f"{line.text}\t{line.score:.3f}\t{json.dumps(line.box)}")
    return EXIT_OK


def _check_overrides(args) -> None:
    """`--set` checked against the shipped config before the demo or the UI writes anything: a typo or a value out
    of range is named as the flag the user typed, not as the demo's pipeline.yaml it would be written into."""
    from ocr_tasks.config import DEFAULT_CONFIG, load_config

    if args.overrides:
        load_config(DEFAULT_CONFIG, list(args.overrides))


def cmd_demo(args) -> int:
    from ocr_tasks.embedded.demo import run_demo

    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be >= 1")
    _check_overrides(args)
    return run_demo(args.work_dir, add_export=args.add_export, epochs=args.epochs, force=args.force,
                    overrides=list(args.overrides), out=lambda line: print(line, flush=True))


def cmd_ui(args) -> int:
    from ocr_tasks.embedded.demo import run_ui

    if args.images < 20:
        raise UsageError(f"--images must be >= 20 (6:2:2 splits of fewer leave a split nearly empty), got {args.images}")
    _check_overrides(args)
    return run_ui(args.work_dir, port=args.port, overrides=list(args.overrides), images=args.images,
                  out=lambda line: print(line, flush=True))


def cmd_storage_serve(args) -> int:
    from ocr_tasks.embedded.s3server import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, serve

    serve(args.root.resolve(), "127.0.0.1", args.port, LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
