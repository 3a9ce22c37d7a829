"""Overhead of running PaddleOCR's tools/train.py through ocr-retrain's engine runner.

The same rendered config and data, trained twice: once as a plain `tools/train.py -c`
subprocess (output to a file), once through `ocr_tasks.training.engine.run_tool` (streaming every
line to our log, parsing metrics). Prints both wall times and their ratio. Target <= 1.05.

    .venv/bin/python bench/train_overhead.py [--task rec] [--images 60] [--epochs 3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from ocr_tasks.config import load_config
    from ocr_tasks.training.engine import Engine, run_tool, tool_command
    from ocr_tasks.ingest.prepare import prepare
    from ocr_tasks.embedded.synthetic import ExportSpec, make_export
    from ocr_tasks.training.train import template_path
    from ocr_tasks.training.render import render_config, write_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("det", "rec"), default="rec")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each way; medians are compared")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    engine = Engine.locate()
    config = load_config()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        export = make_export(tmp / "labeller", ExportSpec("bench", n_images=args.images, seed=3))
        data_dir = tmp / "data"
        prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp / 'work'}"]))
        template = template_path(config.training.for_model(args.task).template, engine)

        def rendered(name: str) -> Path:
            out = tmp / name
            cfg = render_config(template, task=args.task, data_dir=data_dir,
                                dict_path=data_dir / "dict.txt" if args.task == "rec" else None,
                                save_dir=out, epochs=args.epochs)
            return write_config(cfg, out / "config.yml")

        direct, runner = [], []
        for i in range(args.repeat):
            cfg = rendered(f"direct{i}")
            command = tool_command(engine, "train", cfg, {})
            start = time.perf_counter()
            with open(cfg.parent / "train.log", "wb") as log:
                subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cfg.parent, check=True)
            direct.append(time.perf_counter() - start)

            cfg = rendered(f"runner{i}")
            start = time.perf_counter()
            run = run_tool(engine, "train", cfg, log_file=cfg.parent / "train.log", cwd=cfg.parent)
            runner.append(time.perf_counter() - start)
            assert run.history, "the runner parsed no events"
    d, r = statistics.median(direct), statistics.median(runner)
    print(f"task {args.task}, {args.images} images, {args.epochs} epochs, {args.repeat} runs each")
    print(f"direct tools/train.py : {' '.join(f'{x:.1f}s' for x in direct)}  median {d:.1f}s")
    print(f"ocr-retrain run_tool  : {' '.join(f'{x:.1f}s' for x in runner)}  median {r:.1f}s")
    print(f"ratio (runner/direct) : {r / d:.3f}")


if __name__ == "__main__":
    main()
