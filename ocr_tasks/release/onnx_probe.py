"""Read the test split with a bundle's ONNX det+rec, inside a consumer's RapidOCR 3.x + ONNX Runtime.

    <runtime python> onnx_probe.py job.json

consumer_probe.py's counterpart for consumers who never load Paddle: run by the infra validation
(ocr_tasks/release/infra_validation.py) with the interpreter of each `infra_validation.onnx_runtimes` entry, a
venv holding rapidocr and onnxruntime as consumers install them (`make onnx-envs`). Standalone on purpose
(stdlib + rapidocr, whose PyYAML reads the settings): that interpreter has no ocr_tasks.

It reads as the RapidOCR snippet in docs/consumers.md, "ONNX (RapidOCR)", does: the bundle's rapidocr.yaml
(release/onnx_export.py writes it from det/ and rec/inference.yml: pre-processing, input shape, the det
post-processing chosen on val), model paths relative to the bundle, and nothing else but the job's CPU
thread count. The job and the answer are consumer_probe.py's, so one scorer serves both:

    {"runtime": {"python", "rapidocr", "onnxruntime"},
     "det": [{"image", "polys", "scores"}], "rec": [{"crop", "text", "score"}],
     "ocr": [{"image", "lines": [{"poly", "text", "score"}], "seconds"}], "cpu_threads": the job's or null,
     "tuning": [], "error": null | {"stage", "type", "message"}}
"""

import json
import platform
import sys
import time
import traceback
from pathlib import Path


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("rapidocr", "onnxruntime"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def rapidocr_params(bundle, cpu_threads=None):
    """rapidocr.yaml of `bundle`, its model and dict paths made absolute: what `RapidOCR(params=...)` takes."""
    import yaml

    bundle = Path(bundle)
    params = yaml.safe_load((bundle / "rapidocr.yaml").read_text(encoding="utf-8"))
    for key, value in params.items():
        if key.endswith(("model_path", "keys_path")) and value:
            params[key] = str(bundle / value)
    if cpu_threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = cpu_threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = cpu_threads
    return params


def _polys(value):
    return [[[float(x), float(y)] for x, y in poly] for poly in (value if value is not None else [])]


def _read(job, answer):
    """det alone, rec alone, then det+rec; a model kind the job lacks is not read."""
    from rapidocr import RapidOCR

    threads = job.get("cpu_threads")
    answer["cpu_threads"] = threads
    answer["stage"] = "load"
    engine = RapidOCR(params=rapidocr_params(job["bundle"], threads))
    has_det, has_rec = bool(job.get("det_dir")), bool(job.get("rec_dir"))
    if has_det and not job.get("pipeline_only"):
        answer["stage"] = "det"
        for image in job["images"]:
            found = engine(image, use_det=True, use_cls=False, use_rec=False)
            answer["det"].append({"image": image, "polys": _polys(found.boxes),
                                  "scores": [float(s) for s in (found.scores or [])]})
    if has_rec:
        answer["stage"] = "rec"
        for crop in job["crops"]:
            found = engine(crop, use_det=False, use_cls=False, use_rec=True)
            texts, scores = list(found.txts or []), list(found.scores or [])
            answer["rec"].append({"crop": crop, "text": str(texts[0]) if texts else "",
                                  "score": float(scores[0]) if scores else 0.0})
    if has_det and has_rec and job.get("pipeline", True):
        answer["stage"] = "ocr"
        engine(job["images"][0], use_det=True, use_cls=False, use_rec=True)   # warm-up, as consumer_probe.py
        for image in job["images"]:
            started = time.perf_counter()
            found = engine(image, use_det=True, use_cls=False, use_rec=True)
            seconds = time.perf_counter() - started
            lines = [{"poly": poly, "text": str(text), "score": float(score)}
                     for poly, text, score in zip(_polys(found.boxes), found.txts or [], found.scores or [])]
            answer["ocr"].append({"image": image, "lines": lines, "seconds": seconds})
    answer.pop("stage")


def main(job_path):
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    answer = {"runtime": _versions(), "det": [], "rec": [], "ocr": [], "tuning": [], "error": None}
    try:
        _read(job, answer)
    except Exception as exc:  # noqa: BLE001 - the runtime's own error is the answer
        answer["error"] = {"stage": answer.pop("stage", "?"), "type": type(exc).__name__,
                           "message": str(exc)[:2000], "traceback": traceback.format_exc()[-4000:]}
    Path(job["out"]).write_text(json.dumps(answer), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
