"""ONNX beside the Paddle models of a bundle, for consumers who run ONNX Runtime (RapidOCR and the like).

    export_onnx(bundle, converter, opset, work) -> OnnxExport

After export has chosen the det post-processing, each kind's inference.json is converted by paddle2onnx in the
converter's own environment (onnx_convert.py there: paddle2onnx imports only beside the paddle it was built for,
not the pipeline's), into `det/inference.onnx` and `rec/inference.onnx` beside the Paddle files, the rec's dict in
its `character` metadata. `rapidocr.yaml` at the bundle's root is RapidOCR 3.x's `params`, generated from the two
inference.yml files (pre-processing, input shape, the chosen post-processing, the dict): a consumer loads it and
reads what the gate measured (infra validation reads the test split with exactly that file, onnx_probe.py).

Where conversion cannot be made (no converter configured or built, or paddle2onnx fails on an architecture), the
bundle has no ONNX and `skipped` says why, in the manifest and the report; the Paddle release goes on, unless
`onnx.required` says a bundle without ONNX may not be published (gate.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ocr_tasks.release.inference import pipeline_settings
from ocr_tasks.vocabulary import DET, MODEL_KINDS, REC

log = logging.getLogger(__name__)

CONVERTER = Path(__file__).with_name("onnx_convert.py")
ONNX_FILE = "inference.onnx"
RAPIDOCR_SETTINGS = "rapidocr.yaml"
# inference.yml's det keys -> RapidOCR's Det.* names (the same meaning in both)
_DET_KEYS = {"text_det_thresh": "Det.thresh", "text_det_box_thresh": "Det.box_thresh",
             "text_det_unclip_ratio": "Det.unclip_ratio", "text_det_limit_side_len": "Det.limit_side_len",
             "text_det_limit_type": "Det.limit_type"}


@dataclass
class OnnxExport:
    """export -> infra_validate, publish: the bundle's ONNX files, or why it has none."""

    files: dict[str, str] = field(default_factory=dict)      # kind -> path in the bundle ("det/inference.onnx")
    opset: int | None = None
    settings: str | None = None                              # RAPIDOCR_SETTINGS, when there are files
    converter: dict[str, str | None] = field(default_factory=dict)   # paddle2onnx, paddlepaddle, onnx versions
    skipped: str | None = None                               # why the bundle has no ONNX

    @property
    def made(self) -> bool:
        return bool(self.files) and self.skipped is None


def export_onnx(bundle: Path, converter: str | None, opset: int, work: Path, *, timeout_s: float = 900
                ) -> OnnxExport:
    """Write det/ and rec/inference.onnx and rapidocr.yaml into `bundle`, or say why not (nothing half-written)."""
    from ocr_tasks.training.engine import offline_env, run_logged

    bundle, work = Path(bundle).absolute(), Path(work).absolute()
    kinds = [kind for kind in MODEL_KINDS if (bundle / kind / "inference.json").is_file()]
    if converter is None:
        return OnnxExport(skipped="onnx.converter is null: ONNX is not exported")
    if not Path(converter).is_file():
        return OnnxExport(skipped=f"no converter python at {converter} (onnx.converter): `make onnx-envs` builds it")
    if not kinds:
        return OnnxExport(skipped="the bundle has no inference.json to convert")
    work.mkdir(parents=True, exist_ok=True)
    answer_file = work / "onnx.json"
    answer_file.unlink(missing_ok=True)
    job = {"out": str(answer_file), "opset": opset, "models": {
        kind: {"dir": str(bundle / kind), "save_file": str(bundle / kind / ONNX_FILE),
               "character": _dictionary(bundle / REC) if kind == REC else None} for kind in kinds}}
    job_file = work / "onnx.job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    code, tail, seconds = run_logged([converter, str(CONVERTER), str(job_file)], work / "onnx.log", cwd=work,
                                     env=offline_env(), log=log, timeout_s=timeout_s)
    answer = json.loads(answer_file.read_text(encoding="utf-8")) if answer_file.is_file() else None
    if answer is None or answer.get("error"):
        for kind in kinds:
            (bundle / kind / ONNX_FILE).unlink(missing_ok=True)
        why = (f"paddle2onnx could not convert {answer['error']['kind']}: {answer['error']['type']}: "
               f"{answer['error']['message'][:500]}") if answer else \
            f"the converter exited {code} without an answer after {seconds:.0f} s: " + " | ".join(tail[-3:])
        log.warning("no ONNX in %s: %s", bundle, why)
        return OnnxExport(converter=(answer or {}).get("versions", {}), skipped=why)
    settings = rapidocr_settings(bundle)
    (bundle / RAPIDOCR_SETTINGS).write_text(
        "# RapidOCR 3.x params read as the gate measured (generated from det/ and rec/inference.yml); paths are\n"
        "# relative to this folder. docs/consumers.md, \"ONNX (RapidOCR)\".\n"
        + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    opsets = {model["opset"] for model in answer["models"].values()}
    log.info("ONNX (opset %s, paddle2onnx %s) written in %.0f s: %s", sorted(opsets),
             answer["versions"].get("paddle2onnx"), seconds, ", ".join(f"{k}/{ONNX_FILE}" for k in kinds))
    return OnnxExport(files={kind: f"{kind}/{ONNX_FILE}" for kind in kinds}, opset=max(opsets),
                      settings=RAPIDOCR_SETTINGS, converter=answer["versions"])


def rapidocr_settings(bundle: Path) -> dict[str, object]:
    """RapidOCR's `params` for the bundle's ONNX models, as PaddleOCR 3.x reads the Paddle ones: the det's
    resizing, normalisation and post-processing from det/inference.yml (the pipeline's defaults for what it does
    not say), the rec's input shape from rec/inference.yml; no angle classifier, every line kept whatever its
    score (PaddleOCR's text_rec_score_thresh is 0; RapidOCR's own default drops lines under 0.5)."""
    params: dict[str, object] = {"Global.use_cls": False, "Global.text_score": 0.0}
    if (bundle / DET / "inference.yml").is_file():
        det = pipeline_settings(bundle / DET)
        params["Det.model_path"] = f"{DET}/{ONNX_FILE}"
        params.update({_DET_KEYS[key]: value for key, value in det.items() if key in _DET_KEYS})
        params.setdefault("Det.limit_side_len", 64)       # the PaddleOCR 3.x pipeline's defaults
        params.setdefault("Det.limit_type", "min")
        normalize = _op(bundle / DET, "NormalizeImage")
        if normalize:
            params["Det.mean"], params["Det.std"] = list(normalize["mean"]), list(normalize["std"])
        params["Det.use_dilation"] = False
        params["Det.score_mode"] = "fast"
    if (bundle / REC / "inference.yml").is_file():
        params["Rec.model_path"] = f"{REC}/{ONNX_FILE}"
        resize = _op(bundle / REC, "RecResizeImg")
        if resize and resize.get("image_shape"):
            params["Rec.rec_img_shape"] = list(resize["image_shape"])
        if (bundle / REC / "dict.txt").is_file():   # the model's own `character` metadata wins over it
            params["Rec.rec_keys_path"] = f"{REC}/dict.txt"
    return params


def _spec(model_dir: Path) -> dict:
    return yaml.safe_load((model_dir / "inference.yml").read_text(encoding="utf-8")) or {}


def _op(model_dir: Path, name: str) -> dict | None:
    for op in (_spec(model_dir).get("PreProcess") or {}).get("transform_ops") or []:
        if isinstance(op, dict) and isinstance(op.get(name), dict):
            return op[name]
    return None


def _dictionary(rec_dir: Path) -> list[str]:
    return [str(c) for c in (_spec(rec_dir).get("PostProcess") or {}).get("character_dict") or []]
