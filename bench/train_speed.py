"""Where CPU training time goes: PaddleOCR's train data pipeline vs the model step vs a real run.

Builds a small synthetic dataset the way the demo does (PPOCRLabel export of 320x160 images,
``make_export`` + ``prepare``), renders the training config exactly as the pipeline does for the
first configured stage (the training profile, ``configs/profiles/cpu.yaml`` -> its template + the stage's
learning rate and overrides), then measures, each configuration in its own child process so that
paddle's thread settings (read once, at paddle's start) take effect:

  data   samples/s of iterating PaddleOCR's own train DataLoader (``ppocr.data.build_dataloader``,
         the profile's transforms, shuffle, batch size) for each --workers value; nothing else runs
         in the process, so this is the most the loader can feed the model.
  model  samples/s of forward + loss + backward + optimizer step + clear_grad on one fixed batch
         (the first batch of that loader), with the profile's Architecture/Loss/Optimizer built by
         PaddleOCR's own builders, for each --threads value (and --onednn).
  train  optional (--train): one real ``tools/train.py`` run through ``engine.run_tool`` with
         --epochs and any -o overrides; reports the median ``ips`` of its log (PaddleOCR's
         samples/s, reader time included, eval excluded), and splits the wall time into start-up
         (until the first step), the train loop (of which waiting for the reader), the
         evaluations on the val split (Global.eval_batch_step) and the rest (checkpoints, exit).

The training loop needs both the loader and the step in one process: with num_workers >= 1
the loader's workers run beside the step, so a step-bound run goes at about ``model`` samples/s
only if the machine has a core to spare for the workers; with num_workers 0 the two add up
(1/ips ~ 1/data + 1/model).

Thread knobs (environment of the child): paddle's CPU math library (MKLML/oneDNN, OpenMP) is
pinned to FLAGS_paddle_num_threads threads when paddle starts (default 1, whatever
OMP_NUM_THREADS says); --threads sets FLAGS_paddle_num_threads, OMP_NUM_THREADS and
MKL_NUM_THREADS together. --onednn adds runs with FLAGS_use_onednn=1 (paddle 3's name;
FLAGS_use_mkldnn=1 too): meant to pick oneDNN kernels in dynamic mode (no change was seen with
paddle 3.2 CPU). --env KEY=VALUE adds a variable to every child (and to the --train run).
MKL_DEBUG_CPU_TYPE=5 makes paddle's MKLML take its AVX2 code path on AMD CPUs (it dispatches
non-Intel CPUs to a slow generic path otherwise): measure it with --variant MKL_DEBUG_CPU_TYPE=5.

Examples (numbers only; nothing is asserted):

    .venv/bin/python bench/train_speed.py                          # det, data + model
    .venv/bin/python bench/train_speed.py --task rec
    .venv/bin/python bench/train_speed.py --workers 0,1,2 --threads 1,2 --onednn
    .venv/bin/python bench/train_speed.py --skip-data --threads 1 --variant MKL_DEBUG_CPU_TYPE=5 \\
        --variant 'MKL_DEBUG_CPU_TYPE=5 Architecture.Neck.out_channels=64' --repeat 2
    .venv/bin/python bench/train_speed.py --skip-data --skip-model --train --epochs 1 \\
        --env FLAGS_paddle_num_threads=2 -o Global.eval_batch_step=[0,1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_RESULT = "BENCH-RESULT "


# --------------------------------------------------------------------------- children (one per configuration)


def _child(kind: str, spec: dict) -> None:
    import logging
    import warnings
    warnings.filterwarnings("ignore")
    sys.path.insert(0, spec["engine_root"])
    import yaml
    import numpy as np
    import paddle
    from ppocr.data import build_dataloader
    from ppocr.utils.utility import set_seed

    config = yaml.safe_load(Path(spec["config"]).read_text(encoding="utf-8"))
    logger = logging.getLogger("bench")
    logger.addHandler(logging.NullHandler())
    device = paddle.set_device("cpu")
    set_seed(1024)
    flags = paddle.get_flags(["FLAGS_paddle_num_threads", "FLAGS_use_onednn"])
    result: dict = {"flags": {k.replace("FLAGS_", ""): v for k, v in flags.items()}}
    if kind == "data":
        config["Train"]["loader"]["num_workers"] = spec["workers"]
        if spec.get("shm") is not None:
            config["Train"]["loader"]["use_shared_memory"] = spec["shm"]
        loader = build_dataloader(config, "Train", device, logger, seed=1024)
        want = spec["batches"]
        samples, stamps = 0, [time.perf_counter()]
        while len(stamps) <= want:
            for batch in loader:
                samples += int(batch[0].shape[0])
                stamps.append(time.perf_counter())
                if len(stamps) > want:
                    break
        # the first batch carries worker start-up (and, with workers, the prefetch ramp)
        sizes = samples / want
        steady = stamps[-1] - stamps[1]
        result.update(total_s=stamps[-1] - stamps[0], first_batch_s=stamps[1] - stamps[0],
                      samples_per_s=sizes * (want - 1) / steady if want > 1 else sizes / (stamps[1] - stamps[0]))
    elif kind == "model":
        from ppocr.losses import build_loss
        from ppocr.modeling.architectures import build_model
        from ppocr.optimizer import build_optimizer
        from ppocr.postprocess import build_post_process

        config["Train"]["loader"]["num_workers"] = 0
        loader = build_dataloader(config, "Train", device, logger, seed=1024)
        batch = next(iter(loader))
        post = build_post_process(config["PostProcess"], config["Global"])
        if hasattr(post, "character"):  # rec: head size from the dictionary, as tools/train.py does
            config["Architecture"]["Head"]["out_channels"] = len(post.character)
        model = build_model(config["Architecture"])
        loss_class = build_loss(config["Loss"])
        optimizer, lr_scheduler = build_optimizer(config["Optimizer"], epochs=config["Global"]["epoch_num"],
                                                  step_each_epoch=max(len(loader), 1), model=model)
        model.train()

        def step() -> None:
            preds = model(batch[0])
            loss = loss_class(preds, batch)
            loss["loss"].backward()
            optimizer.step()
            optimizer.clear_grad()
            if not isinstance(lr_scheduler, float):
                lr_scheduler.step()
            float(loss["loss"])  # sync, as the train loop's logging does

        for _ in range(spec["warmup"]):
            step()
        times = []
        for _ in range(spec["steps"]):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        if spec.get("profile"):
            result["profile"] = _op_profile(step, spec["profile"])
        n = int(batch[0].shape[0])
        result.update(batch=n, step_s=statistics.median(times), samples_per_s=n / statistics.median(times),
                      mean_samples_per_s=n * len(times) / sum(times))
        # forward alone (no grad), for the share of backward + update
        with paddle.no_grad():
            model.eval()
            fwd = []
            for _ in range(max(2, spec["steps"] // 2)):
                start = time.perf_counter()
                out = model(batch[0])
                np.asarray(out["maps"] if isinstance(out, dict) and "maps" in out else
                           (out if not isinstance(out, dict) else next(iter(out.values()))))
                fwd.append(time.perf_counter() - start)
        result["eval_forward_samples_per_s"] = n / statistics.median(fwd)
    print(_RESULT + json.dumps(result), flush=True)


def _op_profile(step, top: int) -> list[tuple[str, float]]:
    """Share of CPU time per operator (forward and backward kernels apart) over a few steps,
    from paddle's own profiler: where a model step's time goes."""
    import paddle.profiler as profiler

    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)
    prof.start()
    for _ in range(3):
        step()
        prof.step()
    prof.stop()
    totals: dict[str, float] = {}
    stack = list(prof.profiler_result.get_data().values())
    while stack:  # outermost operator events only: their kernels and inner ops are inside them
        node = stack.pop()
        if node.type == profiler.TracerEventType.Operator:
            totals[node.name] = totals.get(node.name, 0.0) + (node.end_ns - node.start_ns) / 1e9
        else:
            stack.extend(node.children_node)
    whole = sum(totals.values()) or 1.0
    return [(name, round(100 * t / whole, 1)) for name, t in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]


def _run_child(kind: str, spec: dict, env: dict[str, str], cwd: Path) -> dict:
    child_env = dict(os.environ)
    child_env.update(env)
    child_env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
                          capture_output=True, text=True, cwd=cwd, env=child_env)
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT):])
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    raise SystemExit(f"{kind} child failed (exit {proc.returncode}):\n{tail}")


# --------------------------------------------------------------------------- the parent


def _thread_env(threads: int, onednn: bool) -> dict[str, str]:
    t = str(threads)
    env = {"FLAGS_paddle_num_threads": t, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t}
    env["FLAGS_use_onednn"] = env["FLAGS_use_mkldnn"] = "1" if onednn else "0"  # paddle 3 / 2 names
    return env


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _train_run(engine, cfg: Path, env: dict[str, str]) -> dict:
    from ocr_tasks.training.engine import run_tool

    import yaml

    print_step = int(yaml.safe_load(cfg.read_text(encoding="utf-8"))["Global"]["print_batch_step"])
    arrivals: list[tuple[float, dict]] = []
    start = time.perf_counter()
    run_tool(engine, "train", cfg, log_file=cfg.parent / "train.log", cwd=cfg.parent, env=env,
                   on_event=lambda e: arrivals.append((time.perf_counter(), e)))
    wall = time.perf_counter() - start
    loop = reader = eval_s = 0.0
    last_step, last_t, first_t = 0, None, None
    ips = []
    for t, e in arrivals:
        if e["kind"] == "train":
            # PaddleOCR sums the costs since its previous log line and divides by print_batch_step,
            # however many steps that window had (fewer at an epoch's end)
            last_step = e["global_step"]
            window = float(e.get("avg_batch_cost", 0.0)) * print_step
            loop += window
            reader += float(e.get("avg_reader_cost", 0.0)) * print_step
            if "ips" in e:
                ips.append(float(e["ips"]))
            last_t = t
            if first_t is None:
                first_t = t - window
        elif e["kind"] == "eval" and last_t is not None:
            eval_s += t - last_t  # the eval runs right after the step's log line (eval steps are print steps)
    evals = [e for _, e in arrivals if e["kind"] == "eval"]
    return {"wall_s": wall, "steps": last_step, "ips_median": statistics.median(ips) if ips else float("nan"),
            "loop_s": loop, "reader_s": reader, "eval_s": eval_s, "evals": len(evals),
            "startup_s": (first_t - start) if first_t is not None else float("nan"),
            "last_eval": {k: round(v, 3) if isinstance(v, float) else v
                          for k, v in (evals[-1] if evals else {}).items() if k != "kind"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=("det", "rec"), default="det", help="which model (default det)")
    parser.add_argument("--images", type=int, default=100,
                        help="images in the synthetic export (320x160, 1-3 lines; 60%% go to train; default 100; "
                             "the demo has 800)")
    parser.add_argument("--workers", default="0,1,2",
                        help="data: Train.loader.num_workers values to try, comma-separated (default 0,1,2)")
    parser.add_argument("--shm", choices=("default", "on", "off"), default="default",
                        help="data: Train.loader.use_shared_memory (default: the profile's, i.e. PaddleOCR's True)")
    parser.add_argument("--batches", type=int, default=12,
                        help="data: batches timed per configuration (the first, start-up, is reported apart)")
    parser.add_argument("--threads", default="1,2",
                        help="model: paddle CPU thread counts to try (FLAGS_paddle_num_threads = OMP_NUM_THREADS = "
                             "MKL_NUM_THREADS), comma-separated (default 1,2)")
    parser.add_argument("--onednn", action="store_true", help="model: also try each thread count with FLAGS_use_onednn=1 (and FLAGS_use_mkldnn=1)")
    parser.add_argument("--steps", type=int, default=6, help="model: timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="model: untimed steps first")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="model: also print the N operators taking most CPU time (paddle's profiler, 3 steps)")
    parser.add_argument("--skip-data", action="store_true", help="skip the data-pipeline measurement")
    parser.add_argument("--skip-model", action="store_true", help="skip the model-step measurement")
    parser.add_argument("--train", action="store_true", help="also run tools/train.py once (see --epochs, -o, --env)")
    parser.add_argument("--epochs", type=int, default=1, help="train: Global.epoch_num of the real run (default 1)")
    parser.add_argument("-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="train: a PaddleOCR -o override (YAML value), repeatable; also applied to the config "
                             "the data and model measurements read")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for every child and the train run, repeatable "
                             "(e.g. FLAGS_paddle_num_threads=2); --threads wins for the model runs")
    parser.add_argument("--variant", dest="variants", action="append", default=[], metavar="'K=V K=V'",
                        help="data/model: also measure with these changes, repeatable; each a space-separated list "
                             "of KEY=VALUE, a dotted KEY a config override (Architecture.Neck.out_channels=64), "
                             "any other an environment variable (MKL_DEBUG_CPU_TYPE=5)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="data/model: rounds over all configurations, alternating; the median is reported")
    parser.add_argument("--template", help="PaddleOCR config template (default: the pipeline's for --task)")
    parser.add_argument("--work", type=Path,
                        help="keep the dataset, rendered configs and train logs in this folder and reuse a dataset "
                             "already there (same --images); default: a temporary folder, removed at the end")
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], json.loads(args.child[1]))
        return

    import logging
    import yaml
    from ocr_tasks.config import load_config
    from ocr_tasks.embedded.synthetic import ExportSpec, make_export
    from ocr_tasks.ingest.prepare import prepare
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.render import write_config
    from ocr_tasks.training.train import _stage_config

    logging.basicConfig(level=logging.WARNING)
    engine = Engine.locate()
    config = load_config()
    settings = config.training.for_model(args.task)
    stage = settings.stages[0]
    template = args.template or settings.template
    overrides = _pairs(args.overrides, "-o")
    env = _pairs(args.env, "--env")
    rows: list[tuple[str, str, str]] = []

    with contextlib.ExitStack() as stack:
        if args.work is not None:
            tmp = args.work.absolute() / f"{args.images}"
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-speed-")))
        started = time.perf_counter()
        data_dir = tmp / "data"
        if not (data_dir / args.task / "val.txt").is_file():
            export = make_export(tmp / "labeller", ExportSpec("bench", n_images=args.images, seed=11))
            prepare([str(export)], data_dir, load_config(overrides=[f"work_dir={tmp / 'work'}"]))
        n_train = sum(1 for _ in (data_dir / args.task / "train.txt").open(encoding="utf-8"))
        n_val = sum(1 for _ in (data_dir / args.task / "val.txt").open(encoding="utf-8"))
        print(f"task {args.task}: template {template}, stage {stage.name!r}; {args.images} images -> "
              f"{n_train} train / {n_val} val samples (dataset built in {time.perf_counter() - started:.1f}s)")

        def rendered(name: str, epochs: int | None, extra: dict[str, str] | None = None) -> Path:
            shutil.rmtree(tmp / name, ignore_errors=True)  # a kept --work folder: no old checkpoints/logs
            cfg = _stage_config(template, engine, args.task, data_dir, tmp / name, stage, epochs, None, None, False)
            for key, value in {**overrides, **(extra or {})}.items():
                node = cfg
                *parents, last = key.split(".")
                for part in parents:
                    node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
                node[last] = yaml.safe_load(value)  # as PaddleOCR's -o reads the value
            return write_config(cfg, tmp / name / "config.yml")

        base = rendered("bench", None)
        loader_cfg = yaml.safe_load(base.read_text())["Train"]["loader"]
        batch = loader_cfg["batch_size_per_card"]
        print(f"Train.loader: batch_size_per_card {batch}, num_workers {loader_cfg.get('num_workers')}, "
              f"use_shared_memory {loader_cfg.get('use_shared_memory', True)}; cpu count {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}")
        # (label, config path, extra env) per --variant; the profile as is comes first
        variants = [("", base, {})]
        for i, spec in enumerate(args.variants):
            items = _pairs(spec.split(), "--variant")
            keys = {k: v for k, v in items.items() if "." in k}
            variants.append((spec, rendered(f"variant{i}", None, keys) if keys else base,
                             {k: v for k, v in items.items() if "." not in k}))

        def measure(part: str, confs: list[tuple[str, dict, dict]], show) -> None:
            results: dict[str, list[dict]] = {label: [] for label, _, _ in confs}
            for round_ in range(args.repeat):  # alternating rounds: load drifts hit every configuration alike
                for label, spec, child_env in confs:
                    results[label].append(_run_child(part, spec, child_env, tmp))
                    if round_ == args.repeat - 1:
                        rs = results[label]
                        median = statistics.median(r["samples_per_s"] for r in rs)
                        runs = "/".join(f"{r['samples_per_s']:.1f}" for r in rs)
                        rows.append((part, label, f"{median:7.1f} samples/s" + (f" [{runs}]" if len(rs) > 1 else "")
                                     + f"  ({show(rs[-1])})"))
                        print(f"  {rows[-1][0]:5} {rows[-1][1]:36} {rows[-1][2]}", flush=True)

        if not args.skip_data:
            shm = {"default": None, "on": True, "off": False}[args.shm]
            confs = []
            for vlabel, cfg, venv in variants:
                for workers in _ints(args.workers):
                    label = " ".join(x for x in (f"num_workers={workers}" + ("" if shm is None else f" shm={shm}"),
                                                  vlabel) if x)
                    confs.append((label, {"config": str(cfg), "engine_root": str(engine.root), "workers": workers,
                                          "batches": args.batches, "shm": shm},
                                  {**env, **_thread_env(1, False), **venv}))
            measure("data", confs, lambda r: f"first batch {r['first_batch_s']:.2f}s, "
                                             f"{args.batches} batches {r['total_s']:.1f}s")

        if not args.skip_model:
            confs = []
            for vlabel, cfg, venv in variants:
                for threads in _ints(args.threads):
                    for onednn in ((False, True) if args.onednn else (False,)):
                        label = " ".join(x for x in (f"threads={threads}" + (" onednn" if onednn else ""), vlabel) if x)
                        confs.append((label, {"config": str(cfg), "engine_root": str(engine.root),
                                              "steps": args.steps, "warmup": args.warmup,
                                              "profile": args.profile},
                                      {**env, **_thread_env(threads, onednn), **venv}))
            measure("model", confs, lambda r: f"step {r['step_s']:.2f}s, batch {r['batch']}; eval forward "
                                              f"{r['eval_forward_samples_per_s']:.1f} samples/s"
                                              + "".join(f"\n        {pct:5.1f}%  {op}" for op, pct in r.get("profile", [])))

        if args.train:
            cfg = rendered("train", args.epochs)
            r = _train_run(engine, cfg, env)  # the -o overrides are in the rendered config
            label = " ".join(f"{k}={v}" for k, v in {**env, **overrides}.items()) or "profile as is"
            rows.append(("train", label,
                         f"{r['ips_median']:7.1f} samples/s  (wall {r['wall_s']:.1f}s for {args.epochs} epoch(s), "
                         f"{r['steps']} steps: start-up {r['startup_s']:.1f}s, train loop {r['loop_s']:.1f}s "
                         f"(reader wait {r['reader_s']:.1f}s), {r['evals']} eval(s) {r['eval_s']:.1f}s, rest "
                         f"{r['wall_s'] - r['startup_s'] - r['loop_s'] - r['eval_s']:.1f}s; last eval {r['last_eval']})"))
            print(f"  {rows[-1][0]:5} {rows[-1][1]:36} {rows[-1][2]}", flush=True)

    print()
    print(f"{'part':5}  {'configuration':36}  result")
    for part, conf, result in rows:
        print(f"{part:5}  {conf:36}  {result}")
    print(f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: absolute numbers move with it)")


if __name__ == "__main__":
    main()
