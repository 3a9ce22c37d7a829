"""The PaddleOCR subprocess runner: log parsing against real lines, streaming, failures, commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from ocr_tasks.training.engine import (
    Engine,
    EngineError,
    render_overrides,
    run_tool,
    tool_command,
    visible_gpus,
)
from ocr_tasks.training.train_log import LogParser, parse_log_line

from tests.kit import DATA, REPO

FIXTURE = DATA / "paddleocr_train_log.txt"


def fixture_lines() -> list[str]:
    # Bytes, not read_text(): universal newlines would split tqdm's \r redraws into lines.
    return FIXTURE.read_bytes().decode("utf-8").split("\n")


def line_with(text: str, nth: int = 0) -> str:
    return [line for line in fixture_lines() if text in line][nth]


# --------------------------------------------------------------------------- parse_log_line


def test_train_line_rec():
    event = parse_log_line(line_with("global_step: 1, lr: 0.005000"))
    assert event == {
        "kind": "train", "epoch": 1, "epoch_num": 2, "global_step": 1,
        "lr": 0.005, "acc": 0.0, "norm_edit_dis": 0.090626, "loss": 63.730301,
        "avg_reader_cost": 0.02321, "avg_batch_cost": 0.27532, "avg_samples": 8.0, "ips": 29.05742,
        "eta": "0:00:01", "eta_seconds": 1,
    }


def test_train_line_det_has_every_loss_term():
    event = parse_log_line(line_with("loss_shrink_maps"))
    assert event == {
        "kind": "train", "epoch": 1, "epoch_num": 1, "global_step": 1,
        "lr": 0.002, "loss": 8.910218, "loss_shrink_maps": 4.608136, "loss_threshold_maps": 3.382902,
        "loss_binary_maps": 0.919181, "loss_cbn": 0.0,
        "avg_reader_cost": 0.10012, "avg_batch_cost": 1.89291, "avg_samples": 8.0, "ips": 4.2263,
        "eta": "0:00:01", "eta_seconds": 1,
    }


def test_train_line_gpu_memory_and_multi_day_eta():
    # tools/program.py's format with the CUDA build's memory suffix (no GPU here to record one).
    line = ("[2026/11/21 03:00:00] ppocr INFO: epoch: [3/75], global_step: 1200, lr: 0.000500, loss: 1.234500, "
            "avg_reader_cost: 0.01000 s, avg_batch_cost: 0.50000 s, avg_samples: 128.0, ips: 256.00000 samples/s, "
            "eta: 1 day, 2:03:04, max_mem_reserved: 20480 MB, max_mem_allocated: 15360 MB")
    event = parse_log_line(line)
    assert event["eta"] == "1 day, 2:03:04" and event["eta_seconds"] == 93784
    assert event["max_mem_reserved_mb"] == 20480 and event["max_mem_allocated_mb"] == 15360
    assert event["ips"] == 256.0 and event["loss"] == 1.2345 and event["global_step"] == 1200


def test_eval_and_best_lines():
    assert parse_log_line(line_with("cur metric, acc")) == {
        "kind": "eval", "acc": 0.0, "norm_edit_dis": 4.99997500014171e-06, "fps": 61.230268392201516}
    assert parse_log_line(line_with("cur metric, precision")) == {
        "kind": "eval", "precision": 0.0, "recall": 0.0, "hmean": 0.0, "fps": 13.165911737655106}
    assert parse_log_line(line_with("best metric, acc")) == {
        "kind": "best", "acc": 0.0, "is_float16": False, "norm_edit_dis": 4.99997500014171e-06,
        "fps": 61.230268392201516, "best_epoch": 1}
    resumed = parse_log_line(line_with("start_epoch: 3"))
    assert resumed["best_epoch"] == 3 and resumed["start_epoch"] == 3
    det_best = parse_log_line(line_with("best metric, hmean"))
    assert det_best["hmean"] == 0.0 and isinstance(det_best["hmean"], float)


def test_save_load_and_dataloader_lines():
    assert parse_log_line(line_with("save best model is to")) == {
        "kind": "save", "path": "/tmp/eng/out/best_accuracy", "prefix": "best_accuracy", "best": True}
    assert parse_log_line(line_with("save model in")) == {
        "kind": "save", "path": "/tmp/eng/out/latest", "prefix": "latest", "best": False}
    assert parse_log_line(line_with("train from scratch")) == {"kind": "load", "mode": "scratch", "path": None}
    assert parse_log_line(line_with("resume from")) == {"kind": "load", "mode": "resume", "path": "/tmp/eng/out/latest"}
    assert parse_log_line(line_with("train dataloader has")) == {"kind": "dataloader", "split": "train", "iters": 4}
    assert parse_log_line(line_with("valid dataloader has")) == {"kind": "dataloader", "split": "eval", "iters": 1}


def test_fatal_error_line():
    assert parse_log_line(line_with("ppocr ERROR")) == {
        "kind": "error", "message": "No Images in train dataset, please ensure", "fatal": True}


def test_noise_is_not_an_event():
    for text in ("UserWarning: No ccache", "warnings.warn", "Skipping import of the encryption", "Backbone :",
                 "profiler_options", "train with paddle", "Initialize indexes", "During the training process",
                 "eval model::", "# Real output"):
        assert parse_log_line(line_with(text)) is None, text


def test_log_parser_folds_eval_py_report():
    parser = LogParser()
    events = [e for line in fixture_lines() for e in parser.feed(line)] + parser.close()
    kinds = [e["kind"] for e in events]
    assert "metric" not in kinds and "section" not in kinds
    checkpoint = next(e for e in events if e["kind"] == "checkpoint")
    assert checkpoint == {"kind": "checkpoint", "acc": 0.0, "is_float16": False, "norm_edit_dis": 4.99997500014171e-06,
                          "fps": 167.70843079629742, "best_epoch": 2, "start_epoch": 3}
    evals = [e for e in events if e["kind"] == "eval"]
    assert evals[-1] == {"kind": "eval", "acc": 0.0, "norm_edit_dis": 1.9999959999239536e-06, "fps": 76.20382045253866}
    assert kinds == [
        "dataloader", "dataloader", "load", "train", "train", "train", "eval", "save", "best", "save",  # rec train
        "train", "save", "best",  # rec epoch 2
        "load", "best",  # resumed
        "train", "eval", "save", "best", "save",  # det train
        "load", "checkpoint", "eval",  # eval.py
        "error",  # empty train set
    ]


def test_log_parser_closes_a_report_at_end_of_log():
    parser = LogParser()
    for line in ("[2026/11/21 02:22:37] ppocr INFO: metric eval ***************",
                 "[2026/11/21 02:22:37] ppocr INFO: hmean:0.85"):
        assert parser.feed(line) == []
    assert parser.close() == [{"kind": "eval", "hmean": 0.85}]


# --------------------------------------------------------------------------- -o rendering


def paddleocr_parse_opt(args: list[str]) -> dict:
    """tools/program.py ArgsParser._parse_opt of PaddleOCR 2.10, verbatim logic."""
    config = {}
    for s in args:
        s = s.strip()
        k, v = s.split("=")
        config[k] = yaml.load(v, Loader=yaml.Loader)
    return config


def test_overrides_read_back_by_paddleocr_as_given():
    overrides = {
        "Train.dataset.label_file_list": ["/data/x y/rec/train.txt", "/data/b.txt"],
        "Global.pretrained_model": None, "Global.use_gpu": True, "Global.epoch_num": 3,
        "Optimizer.lr.learning_rate": 1e-05, "Optimizer.regularizer.factor": 0.0005,
        "Global.save_model_dir": "/out/with space", "Global.name": "yes", "Global.odd": "a: b # c",
        "Global.eval_batch_step": [0, 100], "Global.path": Path("/tmp/p"), "Global.num_as_text": "0123",
        "Global.unicode": "数字", "Global.empty": "",
    }
    parsed = paddleocr_parse_opt(render_overrides(overrides))
    assert parsed == {**overrides, "Global.path": "/tmp/p"}
    assert isinstance(parsed["Optimizer.lr.learning_rate"], float)


def test_override_with_equals_sign_is_refused():
    with pytest.raises(ValueError, match="contains '='"):
        render_overrides({"Global.save_model_dir": "/runs/lr=0.1"})


# --------------------------------------------------------------------------- Engine


def test_locate_default_finds_installed_package_without_importing_paddle():
    code = ("import sys; from ocr_tasks.training.engine import Engine; e = Engine.locate(); "
            "print(e.root); print(e.version()); print('paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    root = Path(out[0])
    assert root.name == "unstructured_paddleocr"
    assert all((root / "tools" / f"{t}.py").is_file() for t in ("train", "eval", "export_model"))
    assert "2.10.0" in out[1]
    assert out[2] == "False"


def test_locate_refuses_folder_without_tools_train(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "eval.py").write_text("")
    with pytest.raises(EngineError, match=r"not a PaddleOCR checkout: tools/train.py not found"):
        Engine.locate(tmp_path)
    with pytest.raises(EngineError, match="does not exist"):
        Engine.locate(tmp_path / "missing")


def test_checkout_version_from_git_else_unknown(tmp_path):
    root = fake_engine(tmp_path / "PaddleOCR", "print('hi')")
    assert Engine.locate(root).version() == "unknown"
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    subprocess.run(git + ["tag", "v2.10.0-custom"], check=True)
    assert Engine.locate(root).version() == "git:v2.10.0-custom"


def test_checkout_with_unmet_requirements_is_refused_naming_each_and_the_fix(tmp_path):
    root = fake_engine(tmp_path / "PaddleOCR", "print('hi')")
    (root / "requirements.txt").write_text(
        "# PaddleOCR's own list\nshapely\nlmdb  # lmdb: its LMDBDataSet\nnumpy<2\nopencv-python\n"
        "pyyaml>=6\nnot-a-package-anyone-has>=1; python_version >= '3'\nold-only; python_version < '3'\n"
        "--extra-index-url https://example.invalid/simple\n")
    with pytest.raises(EngineError) as refused:
        Engine.locate(root)
    message = str(refused.value)
    assert "lmdb (not installed)" in message and "numpy<2 (2." in message
    assert "not-a-package-anyone-has>=1; python_version >= \"3\" (not installed)" in message
    assert "shapely" not in message and "pyyaml" not in message      # installed: not named
    assert "opencv" not in message                                   # opencv-contrib-python provides cv2
    assert "old-only" not in message                                 # its marker does not apply here
    assert f"{sys.executable} -m pip install 'lmdb' 'numpy<2'" in message


def test_checkout_whose_requirements_are_met_is_the_engine(tmp_path):
    root = fake_engine(tmp_path / "PaddleOCR", "print('hi')")
    (root / "requirements.txt").write_text("pyyaml\nnumpy>=2\nopencv-python\n")
    engine = Engine.locate(root)
    assert engine.is_checkout and engine.root == root.absolute()
    assert not Engine.locate().is_checkout


def test_engine_templates_name_a_config_inside_the_checkout_and_its_paths_become_absolute(tmp_path):
    from ocr_tasks.errors import UsageError
    from ocr_tasks.training.checkout import absolute_engine_paths
    from ocr_tasks.training.train import template_path

    root = fake_engine(tmp_path / "PaddleOCR", "print('hi')")
    config = root / "configs" / "rec" / "PP-OCRv6" / "PP-OCRv6_small_rec.yml"
    config.parent.mkdir(parents=True)
    config.write_text("Global: {}\n")
    (root / "ppocr" / "utils" / "dict").mkdir(parents=True)
    (root / "ppocr" / "utils" / "dict" / "ppocrv5_dict.txt").write_text("a\n")
    engine = Engine.locate(root)
    assert template_path("engine:configs/rec/PP-OCRv6/PP-OCRv6_small_rec.yml", engine) == config
    assert template_path("configs/profiles/rec_cpu_small.yml", engine) == REPO / "configs/profiles/rec_cpu_small.yml"
    for bad, says in (("engine:configs/rec/missing.yml", "no configs/rec/missing.yml in the engine"),
                      ("engine:../outside.yml", "a path inside the PaddleOCR repository"),
                      ("engine:/etc/passwd", "a path inside the PaddleOCR repository")):
        with pytest.raises(UsageError, match=says):
            template_path(bad, engine)
    with pytest.raises(UsageError, match="ships no configs/: set training.engine_checkout"):
        template_path("engine:configs/rec/PP-OCRv6/PP-OCRv6_small_rec.yml", Engine.locate())

    rendered = absolute_engine_paths({"Global": {"character_dict_path": "./ppocr/utils/dict/ppocrv5_dict.txt",
                                                 "save_res_path": "./output/rec/predicts.txt", "name": "x/y"},
                                      "Train": {"transforms": [{"Op": {"path": "ppocr/utils/dict"}}]}}, root)
    assert rendered["Global"]["character_dict_path"] == str((root / "ppocr/utils/dict/ppocrv5_dict.txt").resolve())
    assert rendered["Train"]["transforms"][0]["Op"]["path"] == str((root / "ppocr/utils/dict").resolve())
    assert rendered["Global"]["save_res_path"] == "./output/rec/predicts.txt"     # not the engine's: left alone
    assert rendered["Global"]["name"] == "x/y"


def test_a_training_log_in_an_unknown_format_is_an_error_not_an_empty_history(tmp_path):
    engine = Engine.locate(fake_engine(tmp_path / "engine", """
        print("[2026/12/01 07:00:00] ppocr INFO: train from scratch", flush=True)
        print("[2026/12/01 07:00:01] ppocr INFO: ep 1/4 | global_step=5 | loss=6.2", flush=True)
    """))
    with pytest.raises(EngineError, match=r"no training step line was in the format this pipeline reads.*"
                                          r"global_step=5"):
        run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "train.log")
    # the same tool as eval: a step-looking line there is not a training log
    assert run_tool(engine, "eval", tmp_path / "cfg.yml", log_file=tmp_path / "eval.log").history[0]["mode"] == "scratch"


# --------------------------------------------------------------------------- run_tool with a fake tool


def fake_engine(root: Path, body: str) -> Path:
    """A folder shaped like a PaddleOCR checkout whose tools/train.py runs ``body``."""
    (root / "tools").mkdir(parents=True)
    script = "import os, sys, time, json\n" + textwrap.dedent(body)
    for tool in ("train", "eval", "export_model"):
        (root / "tools" / f"{tool}.py").write_text(script)
    return root


REPLAY_FIXTURE = """
    # Replays the real log in small writes, both streams, like PaddleOCR's logger + tqdm.
    data = open(os.environ["FIXTURE"], "rb").read()
    data = data[:data.index(b"# tools/train.py with batch 64")]  # leave out the fatal error
    for i in range(0, len(data), 97):
        (sys.stdout if i % 2 else sys.stderr).buffer.write(data[i:i + 97])
        (sys.stdout if i % 2 else sys.stderr).flush()
    json.dump({"argv": sys.argv, "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
               "proxy": os.environ.get("HTTPS_PROXY"), "extra": os.environ.get("EXTRA"),
               "selected": os.environ.get("FLAGS_selected_gpus")}, open(os.environ["ARGV_OUT"], "w"))
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


def test_run_tool_streams_parses_and_writes_log(tmp_path, caplog):
    engine = Engine.locate(fake_engine(tmp_path / "engine", REPLAY_FIXTURE))
    seen: list[dict] = []
    caplog.set_level("INFO", logger="ocr_tasks.training.engine")
    run = run_tool(engine, "train", tmp_path / "cfg.yml", {"Global.epoch_num": 2}, log_file=tmp_path / "logs" / "train.log",
                   env={"FIXTURE": str(FIXTURE), "ARGV_OUT": str(tmp_path / "argv.json"), "EXTRA": "x"},
                   on_event=seen.append)
    assert run.history == seen
    assert [e["kind"] for e in run.history][:5] == ["dataloader", "dataloader", "load", "train", "train"]
    assert run.final_metrics == {"acc": 0.0, "norm_edit_dis": 1.9999959999239536e-06, "fps": 76.20382045253866}
    assert run.best["best_epoch"] == 1 and run.seconds > 0
    assert run.command == [engine.python, str(engine.root / "tools" / "train.py"), "-c", str(tmp_path / "cfg.yml"),
                           "-o", "Global.epoch_num=2", "Global.use_gpu=false"]

    child = json.loads((tmp_path / "argv.json").read_text())
    assert child["argv"] == run.command[1:]
    assert child["unbuffered"] == "1" and child["proxy"] == "http://127.0.0.1:9" and child["extra"] == "x"
    assert child["selected"] is None

    logged = run.log_file.read_text(encoding="utf-8").splitlines()
    assert logged[0].startswith("# ") and "tools/train.py" in logged[0]
    # tqdm's redraws collapse to what a terminal would end up showing
    bars = [line for line in logged if "eval model::" in line]
    assert len(bars) == 3 and all("100%" in bar and "\r" not in bar for bar in bars)
    assert any("ppocr INFO: save model in /tmp/eng/out/latest" in r.getMessage() for r in caplog.records)


def test_run_tool_failure_raises_with_tail(tmp_path):
    engine = Engine.locate(fake_engine(tmp_path / "engine", """
        for i in range(100):
            print(f"line {i}")
        print("Traceback (most recent call last):", file=sys.stderr)
        print("AssertionError: The /x/best_accuracy.pdparams does not exists!", file=sys.stderr)
        sys.exit(1)
    """))
    with pytest.raises(EngineError) as info:
        run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "train.log")
    message = str(info.value)
    assert message.startswith("tools/train.py failed (exit 1) after ")
    assert "last log lines:\nline 62\n" in message and "line 61\n" not in message
    assert message.endswith("AssertionError: The /x/best_accuracy.pdparams does not exists!")
    assert info.value.returncode == 1 and len(info.value.tail) == 40 and info.value.log_file == tmp_path / "train.log"
    assert (tmp_path / "train.log").read_text().count("\n") == 103  # header + every line, not only the tail


def test_run_tool_exit_0_without_training_is_an_error(tmp_path):
    engine = Engine.locate(fake_engine(tmp_path / "engine", """
        data = open(os.environ["FIXTURE"], "rb").read()
        sys.stdout.buffer.write(data[data.index(b"# tools/train.py with batch 64"):])
    """))
    with pytest.raises(EngineError, match="exited 0 after .* but did nothing: No Images in train dataset"):
        run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "train.log", env={"FIXTURE": str(FIXTURE)})


def test_run_tool_delivers_events_while_the_tool_runs(tmp_path):
    go = tmp_path / "go"
    engine = Engine.locate(fake_engine(tmp_path / "engine", f"""
        print("[2026/11/21 02:22:22] ppocr INFO: train from scratch")
        deadline = time.time() + 20
        while not os.path.exists({str(go)!r}):
            if time.time() > deadline:
                sys.exit(3)  # the event never reached the parent while we ran
            time.sleep(0.05)
    """))
    run = run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "train.log",
                   on_event=lambda event: go.touch())
    assert [e["kind"] for e in run.history] == ["load"]


def test_interrupted_run_stops_the_tool(tmp_path):
    pid_file = tmp_path / "pid"
    engine = Engine.locate(fake_engine(tmp_path / "engine", f"""
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        print("[2026/11/21 02:22:22] ppocr INFO: train from scratch", flush=True)
        time.sleep(120)
    """))

    class Cancelled(Exception):
        pass

    def cancel(event: dict) -> None:
        raise Cancelled

    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "train.log", on_event=cancel)
    assert time.monotonic() - started < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_urls_are_refused(tmp_path):
    engine = Engine.locate(fake_engine(tmp_path / "engine", "pass"))
    with pytest.raises(ValueError, match="is a URL"):
        run_tool(engine, "train", tmp_path / "cfg.yml", {"Global.pretrained_model": "https://x/y.pdparams"},
                 log_file=tmp_path / "train.log")


# --------------------------------------------------------------------------- GPUs


def test_multi_gpu_command_shape(tmp_path):
    engine = Engine.locate(fake_engine(tmp_path / "engine", "pass"))
    script = str(engine.root / "tools" / "train.py")
    assert tool_command(engine, "train", Path("/c.yml"), {"Global.epoch_num": 1}, gpus=[0, 1]) == [
        engine.python, "-m", "paddle.distributed.launch", "--gpus", "0,1", script,
        "-c", "/c.yml", "-o", "Global.epoch_num=1", "Global.use_gpu=true"]
    assert tool_command(engine, "eval", Path("/c.yml"), gpus=[2]) == [
        engine.python, str(engine.root / "tools" / "eval.py"), "-c", "/c.yml", "-o", "Global.use_gpu=true"]
    with pytest.raises(ValueError, match="contradicts gpus"):
        tool_command(engine, "train", Path("/c.yml"), {"Global.use_gpu": True})
    # a wrapping entry (frozen backbone) runs the tool script as its first argument, on any GPU count
    assert tool_command(engine, "train", Path("/c.yml"), entry=Path("/w.py")) == [
        engine.python, "/w.py", script, "-c", "/c.yml", "-o", "Global.use_gpu=false"]
    assert tool_command(engine, "train", Path("/c.yml"), gpus=[0, 1], entry=Path("/w.py"))[5:7] == ["/w.py", script]


def test_run_tool_multi_gpu_goes_through_the_launcher(tmp_path):
    engine = Engine.locate(fake_engine(tmp_path / "engine", "pass"))
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                           f"json.dump({{'argv': sys.argv[1:], 'selected': os.environ.get('FLAGS_selected_gpus')}}, "
                           f"open({str(tmp_path / 'argv.json')!r}, 'w'))\n")
    fake_python.chmod(0o755)
    engine = Engine(root=engine.root, python=str(fake_python))
    run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "logs" / "train.log", gpus=(0, 1))
    child = json.loads((tmp_path / "argv.json").read_text())
    assert child["argv"][:6] == ["-m", "paddle.distributed.launch", "--gpus", "0,1",
                                 "--log_dir", str(tmp_path / "logs" / "train.workers")]
    assert child["argv"][-1] == "Global.use_gpu=true"
    run_tool(engine, "train", tmp_path / "cfg.yml", log_file=tmp_path / "logs" / "train.log", gpus=(1,))
    child = json.loads((tmp_path / "argv.json").read_text())
    assert child["argv"][0] == str(engine.root / "tools" / "train.py") and child["selected"] == "1"


@pytest.mark.parametrize("mask, expected", [
    ("0,1", [0, 1]), ("3", [0]), ("", []), ("-1", []), ("0,-1,1", [0]), ("GPU-8f3e1c2a-0000-1111-2222-333344445555", [0]),
])
def test_visible_gpus_from_cuda_visible_devices(monkeypatch, mask, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    assert visible_gpus() == expected


def test_visible_gpus_from_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == []
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n"
                   "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0a1b2c3d-0000-1111-2222-333344445555)'\n"
                   "echo '  MIG 3g.40gb     Device  0: (UUID: MIG-0a1b2c3d-0000-1111-2222-333344445555)'\n"
                   "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-9f8e7d6c-0000-1111-2222-333344445555)'\n")
    smi.chmod(0o755)
    assert visible_gpus() == [0, 1]


# --------------------------------------------------------------------------- the real engine


@pytest.mark.slow
def test_real_rec_training_one_epoch_then_eval(tmp_path):
    """The installed PaddleOCR 2.10 engine, CPU profile, 20 synthetic images: train 1 epoch, eval the test split."""
    from ocr_tasks.cli import main
    from ocr_tasks.training.render import checkpoint_overrides, eval_overrides, render_config, write_config
    from tests.kit import export

    data = tmp_path / "data"
    assert main(["prepare", str(export(tmp_path / "in", n_images=20, seed=3)), "--out", str(data)]) == 0
    save_dir = tmp_path / "run" / "rec"
    config = write_config(render_config(
        REPO / "configs" / "profiles" / "rec_cpu_small.yml",
        task="rec", data_dir=data, dict_path=data / "dict.txt", save_dir=save_dir, epochs=1,
        # ~36 training crops: the profile's batch of 32 with drop_last would leave one step
        extra={"Train.loader.batch_size_per_card": 8, "Global.eval_batch_step": [0, 2], "Global.print_batch_step": 1},
    ), tmp_path / "run" / "rec.yml")
    engine = Engine.locate()

    trained = run_tool(engine, "train", config, log_file=tmp_path / "run" / "train.log")
    kinds = [e["kind"] for e in trained.history]
    assert kinds.count("train") == 4 and kinds.count("eval") == 2 and "best" in kinds
    assert {e["prefix"] for e in trained.history if e["kind"] == "save"} == {"best_accuracy", "latest"}
    assert (save_dir / "best_accuracy.pdparams").is_file() and (save_dir / "latest.pdparams").is_file()
    assert set(trained.final_metrics) == {"acc", "norm_edit_dis", "fps"}

    evaluated = run_tool(engine, "eval", config, {**eval_overrides("rec", data), **checkpoint_overrides(save_dir / "best_accuracy")},
                         log_file=tmp_path / "run" / "eval.log")
    assert [e["kind"] for e in evaluated.history] == ["load", "checkpoint", "eval"]
    assert set(evaluated.final_metrics) == {"acc", "norm_edit_dis", "fps"}
    assert 0.0 <= evaluated.final_metrics["acc"] <= 1.0


def test_a_tool_dies_with_the_task_that_started_it(tmp_path):
    """A task process killed outright (SIGKILL: a supervisor's last word, a lost worker) runs no `finally`;
    its tool, in a session of its own, must not go on training or reading unseen."""
    import signal

    import psutil

    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from ocr_tasks.training.engine import run_logged
        run_logged([sys.executable, "-c", "import time; time.sleep(300)"], Path(sys.argv[1]))
    """)
    task = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "tool.log")])
    deadline = time.monotonic() + 60
    while not (tools := psutil.Process(task.pid).children()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tools, "the tool never started"
    os.kill(task.pid, signal.SIGKILL)
    task.wait()
    gone, alive = psutil.wait_procs(tools, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
