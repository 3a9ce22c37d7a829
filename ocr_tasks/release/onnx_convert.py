"""Convert an exported bundle's det and rec to ONNX, inside the converter's own environment.

    <converter python> onnx_convert.py job.json

Run by release/onnx_export.py with the interpreter of `onnx.converter` (`make onnx-envs` builds it from
runtimes/onnx-convert.lock: paddle2onnx 2.1.0 beside the paddle it imports with). Standalone on purpose (stdlib,
paddle2onnx, onnx): that interpreter has no ocr_tasks.

For each model folder of the job: paddle2onnx's own command line (as PaddleOCR's "Obtaining ONNX Models" page runs
it) on inference.json, without its optimizer (polygraphy's constant folding installs packages at run time); the
file is then loaded and checked by onnx's checker (paddle2onnx logs a failed conversion and may leave an empty
file behind, so its exit code alone says little). The rec model gets its dict as the `character` metadata entry,
newline-joined, without CTC's blank and space: where RapidOCR reads it first, so a consumer cannot pair the model
with another dict by mistake.

    job:    {"out", "opset", "models": {kind: {"dir", "save_file", "character": [..] | null}}}
    answer: {"versions": {"paddle2onnx", "paddlepaddle", "onnx"},
             "models": {kind: {"file", "opset", "inputs", "bytes"}}, "error": null | {"kind", "type", "message"}}
"""

import json
import subprocess
import sys
import traceback
from pathlib import Path


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("paddle2onnx", "paddlepaddle", "onnx"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _convert(kind, spec, opset):
    import onnx

    model_dir, save_file = Path(spec["dir"]), Path(spec["save_file"])
    save_file.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "paddle2onnx.command", "--model_dir", str(model_dir),
                           "--model_filename", "inference.json", "--params_filename", "inference.pdiparams",
                           "--save_file", str(save_file), "--opset_version", str(opset),
                           "--enable_onnx_checker", "True", "--optimize_tool", "None"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not save_file.is_file() or save_file.stat().st_size == 0:
        save_file.unlink(missing_ok=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
        raise RuntimeError(f"paddle2onnx exited {done.returncode}: " + " | ".join(tail))
    model = onnx.load(str(save_file))
    onnx.checker.check_model(model)
    if spec.get("character") is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "character", "\n".join(spec["character"])
        onnx.save(model, str(save_file))
    opsets = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    inputs = [{"name": i.name, "shape": [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}
              for i in model.graph.input]
    return {"file": str(save_file), "opset": opsets[0] if opsets else None, "inputs": inputs,
            "bytes": save_file.stat().st_size}


def main(job_path):
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    answer = {"versions": _versions(), "models": {}, "error": None}
    kind = None
    try:
        for kind, spec in job["models"].items():
            answer["models"][kind] = _convert(kind, spec, job["opset"])
    except Exception as exc:  # noqa: BLE001 - the converter's own error is the answer
        answer["error"] = {"kind": kind, "type": type(exc).__name__, "message": str(exc)[:2000],
                           "traceback": traceback.format_exc()[-4000:]}
    Path(job["out"]).write_text(json.dumps(answer), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
