"""Does fine-tuning the stock model beat it on data it reads badly, without forgetting the rest?

The data (synthetic PPOCRLabel exports, rendered as the demo's are):
- `prices`: digit strings where about one character in six is a euro sign (drawn as C struck by =). The stock
  PP-OCRv4 mobile rec's dict (6,623 characters) has no euro sign, so stock misreads every line that has one: the
  simplest honest case of "the stock model reads our data badly", and the commonest first ask (a symbol, unit or
  code format the stock dict lacks). Its dict grows by the sign (validation.outside_dict: grow).
- `digits_reference`: plain digit lines, a reference set (`reference/<name>/`, never trained on): what the stock
  model already read well. Its drop is the forgetting.

The run, in a private bucket on the embedded S3 server, through the functions the CLI calls:
`register-baseline` (the stock det and rec from `make stock-models`, converted, exported, scored: production),
then `ocr-retrain run --models rec` with the production profile from the stock rec folder (the stock det is
carried over from production: it finds digit lines at hmean 1.000 already), infra-validated in the pipeline's
runtime and compared with the stock baseline on the test split, end to end and on the reference set. The gate is
the default one. Prints one table and the CPU minutes (this process and its children: training, eval, export,
reads). Nothing is asserted.

    .venv/bin/python bench/finetune_stock.py                          # 60 price images, 10 epochs, lr 0.001, batch 16
    .venv/bin/python bench/finetune_stock.py --images 200 --epochs 12 --lr 0.001 --keep /tmp/ft
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from ocr_tasks.config import load_config
from ocr_tasks.embedded.s3server import LocalS3Server
from ocr_tasks.embedded.synthetic import ExportSpec, make_export
from ocr_tasks.flow.local_runner import run_local
from ocr_tasks.flow.run import RunContext, RunRequest
from ocr_tasks.ingest.prepare import prepare
from ocr_tasks.release.baseline import register_stock_baseline
from ocr_tasks.storage import layout
from ocr_tasks.storage.s3 import Storage

REPO = Path(__file__).resolve().parents[1]
STOCK = REPO / "stock-models"
BUCKET = "finetune-stock"


def cpu_minutes() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60, help="price images (6:2:2 split)")
    parser.add_argument("--reference-images", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.001)
    # the production template's batch (128, sized for GPUs) made one step of 128 crops take minutes on 2 cores
    parser.add_argument("--batch", type=int, default=16, help="Train.loader.batch_size_per_card (and first_bs)")
    parser.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary folder")
    args = parser.parse_args()
    if not (STOCK / "PP-OCRv4_mobile_rec" / "dict.txt").is_file():
        raise SystemExit("the stock PP-OCRv4 models are not here: run `make stock-models`")

    root = args.keep or Path(tempfile.mkdtemp(prefix="finetune-stock-"))
    labeller = root / "labeller"
    prices = make_export(labeller, ExportSpec("prices", n_images=args.images, seed=31,
                                              charset="0123456789" + "€€"))
    reference = make_export(labeller, ExportSpec("digits_reference", n_images=args.reference_images, seed=77))
    stock_dict = STOCK / "PP-OCRv4_mobile_rec" / "dict.txt"
    sets = [f"work_dir={root / 'work'}", f"storage.bucket={BUCKET}", "training.profile=production",
            f"validation.dict_file={stock_dict}", "incoming.quiet_period_s=0",
            "training.det.pretrained=pretrained/PP-OCRv4_mobile_det/",
            "training.rec.pretrained=pretrained/PP-OCRv4_mobile_rec/",
            "infra_validation.runtimes={pipeline: null}",
            f"training.rec.stages=[{{name: finetune, epochs: {args.epochs}, learning_rate: {args.lr}, overrides: "
            f"{{Train.loader.batch_size_per_card: {args.batch}, Train.sampler.first_bs: {args.batch}, "
            f"Optimizer.lr.warmup_epoch: 1}}}}]"]
    started, cpu_before = time.monotonic(), cpu_minutes()
    with LocalS3Server(root / "s3").start() as server:
        storage = Storage(server.settings(BUCKET))
        storage.ensure_bucket()
        for kind in ("det", "rec"):
            storage.upload_dir(STOCK / f"PP-OCRv4_mobile_{kind}", f"pretrained/PP-OCRv4_mobile_{kind}/")
        storage.upload_dir(prices, "incoming/prices/")
        storage.upload_dir(reference, f"{layout.REFERENCE}digits_reference/")
        config = load_config(overrides=sets)
        # the baseline is scored on the same test split the run will use: the split is by image content hash
        baseline_data = root / "baseline-data"
        prepare([str(prices)], baseline_data, load_config(overrides=sets))
        register_stock_baseline(storage, config, baseline_data, root / "baseline")
        baseline_minutes = cpu_minutes() - cpu_before
        outcome = run_local(RunContext(config, storage, RunRequest("finetune", models=("rec",), force=True)))
        run = storage.get_json(layout.run_record_key(outcome.run_id))
    minutes, cpu = (time.monotonic() - started) / 60, cpu_minutes() - cpu_before

    comparison = run["comparison"]
    e2e = comparison.get("e2e") or {}
    ref = comparison["references"]["digits_reference"]
    rows = [
        ("rec acc, test split (label crops)", run["baseline"]["rec"]["acc"], run["metrics"]["rec"]["acc"]),
        ("e2e hmean, test split (stock det)", (e2e.get("production") or {}).get("e2e_hmean"),
         (e2e.get("new") or {}).get("e2e_hmean")),
        ("rec acc, digits_reference (forgetting)", ref["rec"]["production"]["acc"], ref["rec"]["new"]["acc"]),
    ]
    print(f"\nstock PP-OCRv4 mobile vs fine-tuned from it (rec, {args.epochs} epochs, lr {args.lr}, batch {args.batch}) on "
          f"{args.images} price images (the dict grown by the euro sign); read in {e2e.get('runtime')}")
    print(f"{'':42} {'stock':>8} {'fine-tuned':>11}")
    for name, stock, tuned in rows:
        print(f"{name:42} {stock if stock is None else f'{stock:.3f}':>8} {tuned if tuned is None else f'{tuned:.3f}':>11}")
    print(f"gate: {'passed' if run['gate']['passed'] else 'refused'}; status {run['status']}")
    for reason in run["gate"]["reasons"]:
        print(f"  {reason}")
    print(f"CPU minutes: {cpu:.1f} in all ({baseline_minutes:.1f} converting and scoring the stock baseline); "
          f"wall {minutes:.1f} min; work in {root}")
    print("RESULT", json.dumps({"rows": rows, "status": run["status"], "cpu_minutes": round(cpu, 1),
                                "wall_minutes": round(minutes, 1)}))


if __name__ == "__main__":
    main()
