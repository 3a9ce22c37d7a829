"""Does a published model read correctly on every PaddleOCR 3.x consumer runtime?

For each paddleocr minor line x paddlepaddle 3.x, builds a venv (uv, under
work/bench/consumers/, cached: a second run reuses them) the way a consumer installs
them, then reads one held-out image with the consumer snippet of docs/consumers.md, with
PaddleOCR's defaults (oneDNN on, on CPU) and with enable_mkldnn=False. Prints one table per model.

    .venv/bin/python bench/consumer_matrix.py --model portable=work/demo/models/<v> \\
        --image work/demo/work/datasets/current/images/<test image>.jpg --expect 992965

Needs the package index (it installs paddleocr/paddlex/paddlepaddle releases).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PADDLEOCR_LINES = ("3.0.3", "3.1.1", "3.2.0", "3.3.3", "3.4.1", "3.5.0", "3.6.0", "3.7.0")
PADDLES = ("3.0.0", "3.1.1", "3.2.2", "3.3.1")

# The consumer snippet of docs/consumers.md, "PaddleOCR 3.x", as a consumer runs it (plus the oneDNN
# switch of the second column).
READ = r'''
import json, os, sys
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
model, image, mkldnn = sys.argv[1], sys.argv[2], sys.argv[3] == "default"
import yaml
name = lambda part: yaml.safe_load(open(f"{model}/{part}/inference.yml"))["Global"]["model_name"]
from paddleocr import PaddleOCR
extra = {} if mkldnn else {"enable_mkldnn": False}
try:
    ocr = PaddleOCR(text_detection_model_name=name("det"), text_detection_model_dir=f"{model}/det",
                    text_recognition_model_name=name("rec"), text_recognition_model_dir=f"{model}/rec",
                    use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False,
                    device="cpu", **extra)
    (result,) = ocr.predict(image)
    print("RESULT " + json.dumps({"texts": list(result["rec_texts"])}))
except Exception as exc:
    print("RESULT " + json.dumps({"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"}))
'''


def venv_for(paddleocr: str, paddle: str, root: Path) -> Path:
    venv = root / f"paddleocr{paddleocr}-paddle{paddle}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    line = ".".join(paddleocr.split(".")[:2])
    wants = [f"paddleocr=={paddleocr}", f"paddlex=={line}.*", f"paddlepaddle=={paddle}", "setuptools"]
    if line in ("3.0", "3.1"):
        wants.append("langchain<1")   # those lines import langchain.docstore, gone in langchain 1.x
    subprocess.run(["uv", "venv", "-q", "--allow-existing", "--python", "3.11", str(venv)], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(python), *wants], check=True)
    (venv / ".complete").touch()
    return python


def read(python: Path, model: Path, image: Path, mode: str, font: Path) -> dict:
    env = {**os.environ, "PADDLE_PDX_LOCAL_FONT_FILE_PATH": str(font)}   # paddlex 3.0 downloads fonts at import
    done = subprocess.run([str(python), "-c", READ, str(model), str(image), mode], capture_output=True, text=True,
                          env=env, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": f"exit {done.returncode}: " + (done.stderr.strip().splitlines() or ["?"])[-1][:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="label=model folder (det/, rec/)")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--expect", required=True, help="the text the image holds (lines joined by a space)")
    parser.add_argument("--venvs", type=Path, default=ROOT / "work" / "bench" / "consumers")
    parser.add_argument("--paddleocr", nargs="*", default=PADDLEOCR_LINES)
    parser.add_argument("--paddle", nargs="*", default=PADDLES)
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    args.venvs.mkdir(parents=True, exist_ok=True)
    font = args.venvs / "placeholder-font.ttf"
    font.touch()
    cells: dict[tuple[str, str, str, str], str] = {}
    started = time.monotonic()
    for paddleocr in args.paddleocr:
        for paddle in args.paddle:
            python = venv_for(paddleocr, paddle, args.venvs)
            for label, model in models.items():
                for mode in ("default", "mkldnn-off"):
                    answer = read(python, Path(model).resolve(), args.image.resolve(), mode, font)
                    text = " ".join(answer.get("texts") or [])
                    cells[label, paddleocr, paddle, mode] = ("ok" if text == args.expect else f"read {text!r}") \
                        if "error" not in answer else f"FAILS: {answer['error']}"
                    print(f"[{time.monotonic() - started:6.0f}s] {label} paddleocr {paddleocr} paddle {paddle} "
                          f"{mode}: {cells[label, paddleocr, paddle, mode]}", flush=True)
    for label in models:
        print(f"\n{label}: {models[label]}  (image {args.image.name}, expected {args.expect!r}; cell: default / mkldnn off)\n")
        print("| paddleocr | " + " | ".join(f"paddle {p}" for p in args.paddle) + " |")
        print("|---|" + "---|" * len(args.paddle))
        for paddleocr in args.paddleocr:
            row = [" / ".join(cells[label, paddleocr, p, m] for m in ("default", "mkldnn-off")) for p in args.paddle]
            print(f"| {paddleocr} | " + " | ".join(row) + " |")
    ok = sum(1 for v in cells.values() if v == "ok")
    print(f"\n{ok} of {len(cells)} cells ok, {time.monotonic() - started:.0f} s")
    sys.exit(0 if ok == len(cells) else 1)


if __name__ == "__main__":
    main()
