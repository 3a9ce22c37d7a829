"""Read the test split with an exported det+rec, inside a consumer's PaddleOCR 3.x runtime.

    <runtime python> consumer_probe.py job.json

Run by the infra validation (ocr_tasks/release/infra_validation.py) with the interpreter
of each configured consumer runtime: a venv holding nothing but paddleocr and
paddlepaddle, as consumers install them. Standalone on purpose (stdlib + paddleocr): that
interpreter has no ocr_tasks.

Everything runs as a consumer's code following docs/consumers.md, "PaddleOCR 3.x", would: PaddleOCR's
defaults (no enable_mkldnn) but for `cpu_threads`, which the job sets (one: the same reads, at a fraction of
the CPU on a shared worker; see infra_validation.READ_THREADS), plus the det post-processing the
bundle's det/inference.yml carries, passed to
the `PaddleOCR(...)` pipeline as `text_det_*` arguments (`pipeline_args`: the pipeline takes
its own defaults otherwise; TextDetection alone reads them from inference.yml). The job names
the model folders and the labelled images and crops; the answer (one JSON file) holds what the
runtime read, not metrics: those are computed by the pipeline, one way for every runtime.
With `settings` (a list of `text_det_*` mappings) the pipeline reads the images once per
setting instead (release/postprocess.py chooses among them on the val split).

    {"runtime": {"python", "paddle", "paddleocr", "paddlex"},
     "det": [{"image", "polys"}], "rec": [{"crop", "text", "score"}],
     "ocr": [{"image", "lines": [{"poly", "text", "score"}], "seconds"}], "cpu_threads": the job's or null,
     "tuning": [[{"image", "lines"}] per setting],
     "error": null | {"stage", "type", "message"}}
"""

import glob
import json
import os
import platform
import sys
import time
import traceback


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("paddlepaddle", "paddleocr", "paddlex"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    if found["paddlepaddle"] is None:
        try:
            found["paddlepaddle"] = version("paddlepaddle-gpu")
        except PackageNotFoundError:
            pass
    return found


def _polys(value):
    return [[[float(x), float(y)] for x, y in poly] for poly in (value if value is not None else [])]


def _paddlex_line():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return ".".join(version("paddlex").split(".")[:2])
    except PackageNotFoundError:
        return None


def offline_paddlex_env():
    """Settings PaddleX needs to start offline (also used by `ocr-retrain read`).

    It probes its model hosts at import unless told not to; paddlex 3.0.x also downloads
    two fonts at import, to draw results, unless PADDLE_PDX_LOCAL_FONT_FILE_PATH names a
    file. Nobody here draws, and paddlex opens that file only to draw, so it is a system
    font when there is one, else this very file: nothing is downloaded or written. A
    user's own settings win.
    """
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    if not os.environ.get("PADDLE_PDX_LOCAL_FONT_FILE_PATH") and _paddlex_line() == "3.0":
        fonts = sorted(glob.glob("/usr/share/fonts/**/*.ttf", recursive=True))
        os.environ["PADDLE_PDX_LOCAL_FONT_FILE_PATH"] = fonts[0] if fonts else os.path.abspath(__file__)


def _read(job, answer):
    """det alone, rec alone, then the whole pipeline; a model kind the job lacks is not read."""
    from paddleocr import PaddleOCR, TextDetection, TextRecognition

    det_dir, rec_dir = job.get("det_dir"), job.get("rec_dir")
    det_name, rec_name = job.get("det_model_name"), job.get("rec_model_name")
    device = job.get("device", "cpu")
    # the job's CPU thread count (infra_validation.READ_THREADS), else PaddleOCR's default
    threads = {"cpu_threads": job["cpu_threads"]} if job.get("cpu_threads") and device == "cpu" else {}
    answer["cpu_threads"] = threads.get("cpu_threads")

    if det_dir and not job.get("settings"):
        answer["stage"] = "det"
        detector = TextDetection(model_name=det_name, model_dir=det_dir, device=device, **threads)
        for image in job["images"]:
            (result,) = detector.predict(image)
            answer["det"].append({"image": image, "polys": _polys(result["dt_polys"]),
                                  "scores": [float(s) for s in result.get("dt_scores", [])]})
        del detector

    if rec_dir:
        answer["stage"] = "rec"
        recognizer = TextRecognition(model_name=rec_name, model_dir=rec_dir, device=device, **threads)
        for crop in job["crops"]:
            (result,) = recognizer.predict(crop)
            answer["rec"].append({"crop": crop, "text": str(result["rec_text"]), "score": float(result["rec_score"])})
        del recognizer

    if det_dir and rec_dir and (job.get("pipeline", True) or job.get("settings")):
        answer["stage"] = "ocr"
        ocr = PaddleOCR(text_detection_model_name=det_name, text_detection_model_dir=det_dir,
                        text_recognition_model_name=rec_name, text_recognition_model_dir=rec_dir,
                        use_doc_orientation_classify=False, use_doc_unwarping=False,
                        use_textline_orientation=False, device=device, **threads,
                        **job.get("pipeline_args", {}))
        ocr.predict(job["images"][0])   # warm-up: the first call builds the predictors' kernels
        for setting in job.get("settings") or []:
            answer["stage"] = "tuning"
            read = []
            for image in job["images"]:
                (result,) = ocr.predict(image, **setting)
                read.append({"image": image, "lines": _lines(result)})
            answer["tuning"].append(read)
        if not job.get("pipeline", True):
            answer.pop("stage")
            return
        for image in job["images"]:
            started = time.perf_counter()
            (result,) = ocr.predict(image)
            seconds = time.perf_counter() - started
            answer["ocr"].append({"image": image, "lines": _lines(result), "seconds": seconds})
    answer.pop("stage")


def _lines(result):
    return [{"poly": [[float(x), float(y)] for x, y in poly], "text": str(text), "score": float(score)}
            for text, score, poly in zip(result["rec_texts"], result["rec_scores"], result["rec_polys"])]


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    offline_paddlex_env()
    answer = {"runtime": _versions(), "det": [], "rec": [], "ocr": [], "tuning": [], "error": None, "stage": "import"}
    try:
        _read(job, answer)
    except Exception as exc:  # the runtime's own error is the answer: the gate refuses with it
        answer["error"] = {"stage": answer.pop("stage", "?"), "type": type(exc).__name__,
                           "message": str(exc).strip()[-2000:], "traceback": traceback.format_exc()[-4000:]}
    tmp = job["out"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(answer, handle)
    os.replace(tmp, job["out"])


if __name__ == "__main__":
    main()
