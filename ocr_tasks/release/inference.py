"""Read text with a published model, the way consumers do: the PaddleOCR 3.x pipeline, offline.

`read_image` takes a pulled model folder (det/ and rec/ in PaddleOCR's inference layout)
and one image; the model names PaddleOCR needs come from each model's own
`inference.yml` (Global.model_name, written at export), so nothing is guessed and
nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ocr_tasks.errors import UsageError
from ocr_tasks.release.consumer_probe import offline_paddlex_env
from ocr_tasks.vocabulary import DET, MODEL_KINDS, REC


@dataclass(frozen=True)
class ReadLine:
    text: str
    score: float
    box: list[list[int]]     # the detected polygon, image pixels


def model_name_of(model_dir: Path) -> str:
    """Global.model_name from an exported model's inference.yml."""
    spec = model_dir / "inference.yml"
    try:
        name = (yaml.safe_load(spec.read_text(encoding="utf-8")) or {}).get("Global", {}).get("model_name")
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{spec}: cannot read the exported model's spec ({exc})") from None
    if not name:
        raise UsageError(f"{spec}: no Global.model_name; was this folder written by export_model.py?")
    return str(name)


# inference.yml's det post-processing -> the PaddleOCR(...) pipeline's argument for it
_PIPELINE_ARGS = {"thresh": "text_det_thresh", "box_thresh": "text_det_box_thresh",
                  "unclip_ratio": "text_det_unclip_ratio"}
_RESIZE_ARGS = {"limit_side_len": "text_det_limit_side_len", "limit_type": "text_det_limit_type"}


def pipeline_settings(det_dir: Path) -> dict[str, object]:
    """What a consumer passes to `PaddleOCR(...)` so the pipeline reads as the gate measured: the det model's
    post-processing (chosen on the val split at export, release/postprocess.py) and input resizing, from its
    inference.yml. TextDetection alone reads these from the file; the pipeline uses its own defaults
    (thresh 0.3, box_thresh 0.6, unclip 1.5, limit_side_len 64 "min") unless they are passed."""
    spec = Path(det_dir) / "inference.yml"
    try:
        config = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{spec}: cannot read the exported model's spec ({exc})") from None
    post = config.get("PostProcess") or {}
    args: dict[str, object] = {arg: post[key] for key, arg in _PIPELINE_ARGS.items() if key in post}
    for op in (config.get("PreProcess") or {}).get("transform_ops") or []:
        resize = op.get("DetResizeForTest") if isinstance(op, dict) else None
        if isinstance(resize, dict):
            args.update({arg: resize[key] for key, arg in _RESIZE_ARGS.items() if key in resize})
    return args


def read_image(model_dir: Path, image: Path, *, device: str = "cpu") -> list[ReadLine]:
    """Detect and recognise the text lines of `image`, top to bottom, with det/ and rec/ of `model_dir`."""
    model_dir, image = Path(model_dir), Path(image)
    for part in MODEL_KINDS:
        if not (model_dir / part / "inference.yml").is_file():
            raise UsageError(f"{model_dir}: no {part}/inference.yml; pull a model with `ocr-retrain pull-model` first")
    if not image.is_file():
        raise UsageError(f"image not found: {image}")
    offline_paddlex_env()   # this must work offline, on every PaddleOCR 3.x
    from paddleocr import PaddleOCR

    ocr = PaddleOCR(
        text_detection_model_name=model_name_of(model_dir / DET), text_detection_model_dir=str(model_dir / DET),
        text_recognition_model_name=model_name_of(model_dir / REC), text_recognition_model_dir=str(model_dir / REC),
        use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False, device=device,
        **pipeline_settings(model_dir / DET),
    )
    (result,) = ocr.predict(str(image))
    lines = [ReadLine(str(text), float(score), [[int(x), int(y)] for x, y in poly])
             for text, score, poly in zip(result["rec_texts"], result["rec_scores"], result["rec_polys"], strict=True)]
    return _top_to_bottom(lines)


def read_image_onnx(model_dir: Path, image: Path, python: str, work: Path) -> list[ReadLine]:
    """`read_image` with the model's ONNX files, as RapidOCR reads them with its rapidocr.yaml, in the ONNX runtime
    at `python` (a venv with rapidocr and onnxruntime: `make onnx-envs`): the reader infra validation ran."""
    from ocr_tasks.release.infra_validation import ONNX, read_samples
    from ocr_tasks.release.onnx_export import RAPIDOCR_SETTINGS

    model_dir, image = Path(model_dir).absolute(), Path(image).absolute()
    if not (model_dir / RAPIDOCR_SETTINGS).is_file():
        raise UsageError(f"{model_dir}: no {RAPIDOCR_SETTINGS}: this model was published without ONNX (its "
                         "manifest.json's onnx.skipped says why)")
    if not image.is_file():
        raise UsageError(f"image not found: {image}")
    read, answer = read_samples(model_dir, list(MODEL_KINDS), [str(image)], [], "onnx", python, work, timeout_s=600,
                                extra_job={"pipeline_only": True}, engine=ONNX)
    if read.error:
        raise UsageError(f"the ONNX runtime {read.label()} could not read {image} ({read.error.get('stage')}): "
                         f"{read.error.get('type')}: {str(read.error.get('message', ''))[:500]}")
    (found,) = answer["ocr"]
    return _top_to_bottom([ReadLine(line["text"], line["score"], [[int(x), int(y)] for x, y in line["poly"]])
                           for line in found["lines"]])


def _top_to_bottom(lines: list[ReadLine]) -> list[ReadLine]:
    return sorted(lines, key=lambda line: (min(y for _, y in line.box), min(x for x, _ in line.box)))
