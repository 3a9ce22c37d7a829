"""Infra validation (TFX's InfraValidator, for PaddleOCR): the exported det+rec read the test split
inside each consumer runtime before production may move.

The gate's other metrics come from tools/eval.py on checkpoints; consumers run something
else, the exported inference models in PaddleOCR 3.x with its defaults. For each runtime
configured under `infra_validation.runtimes` (name -> python of a venv with paddleocr and
paddlepaddle), `consumer_probe.py` runs in that interpreter, offline, and reads:

    det   the exported det alone on every test image          -> precision, recall, hmean
    rec   the exported rec alone on every test crop           -> acc, norm_edit_dis
    e2e   the PaddleOCR pipeline (det+rec) on every test image -> e2e_precision/recall/hmean,
          and the CPU (or GPU) seconds each image took         -> latency_ms (mean, p50, p95), on
          READ_THREADS CPU threads

The bundle's ONNX files (release/onnx_export.py) are read the same way in each runtime of
`infra_validation.onnx_runtimes` (a venv with rapidocr and onnxruntime): `onnx_probe.py` takes the same job
and gives the same answer, RapidOCR reading with the bundle's rapidocr.yaml, so one scorer and one gate serve
both kinds of consumer.

A runtime that cannot load or run the models answers with its own error; the gate refuses
with it (ocr_tasks/release/gate.py), as it refuses metrics that drift from eval.py's.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_tasks.config import REPO_ROOT
from ocr_tasks.errors import UsageError
from ocr_tasks.release.onnx_export import RAPIDOCR_SETTINGS
from ocr_tasks.release.read_metrics import LabelledBox, det_scores, end_to_end_of, rec_scores
from ocr_tasks.vocabulary import DET, REC, TEST_SPLIT

log = logging.getLogger(__name__)

PROBE = Path(__file__).with_name("consumer_probe.py")
ONNX_PROBE = Path(__file__).with_name("onnx_probe.py")   # the same job and answer, read by RapidOCR + ONNX Runtime
PADDLE, ONNX = "paddle", "onnx"
E2E = "e2e"
# the test runtimes `make consumer-envs` builds from runtimes/*.lock: the newest and the oldest PaddleOCR 3.x
CONSUMER_RUNTIMES = {name: REPO_ROOT / f".venv-consumer-{name}" / "bin" / "python" for name in ("newest", "oldest")}
# the ONNX consumer runtimes `make onnx-envs` builds: RapidOCR 3.x on the newest and the oldest ONNX Runtime line
ONNX_RUNTIMES = {f"onnx-{name}": REPO_ROOT / f".venv-onnx-{name}" / "bin" / "python" for name in ("newest", "oldest")}
# CPU threads every probe reads with (PaddleOCR's `cpu_threads`; its default is 8). One: a probe runs beside other tasks
# on a worker, where 8 threads spin for a share of the cores: on 2 busy cores, 40 test images read in 9 CPU seconds at
# one thread against 15-16 at eight (half of it system time), in less wall time too. The reads are the same program's;
# the latency recorded is one thread's, comparable from run to run whatever else the worker runs.
READ_THREADS = 1


@dataclass
class RuntimeRead:
    """What one consumer runtime made of the exported models."""

    name: str
    python: str
    engine: str = PADDLE   # PADDLE: PaddleOCR 3.x on the Paddle files; ONNX: RapidOCR on the ONNX files
    # python, paddlepaddle, paddleocr, paddlex (ONNX: python, rapidocr, onnxruntime)
    versions: dict[str, str | None] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)   # det, rec, e2e
    latency_ms: dict[str, float] = field(default_factory=dict)   # per image, the whole pipeline
    cpu_threads: int | None = None   # what the pipeline read with on CPU (READ_THREADS); None: PaddleOCR's default
    error: dict[str, str] | None = None   # {"stage", "type", "message"}: the runtime's own error
    log_file: str | None = None
    reads: str | None = None   # its per-sample answer: a local file, then (infra_validate) its key in storage

    @property
    def loaded(self) -> bool:
        return self.error is None

    def label(self) -> str:
        return runtime_label(self.name, self.versions, self.engine)


def runtime_label(name: str, versions: dict[str, str | None], engine: str | None = PADDLE) -> str:
    """"pipeline (paddleocr 3.7.0, paddlepaddle 3.2.2)", "onnx-newest (rapidocr 3.10.0, onnxruntime 1.23.2)"."""
    v = versions or {}
    if engine == ONNX:
        return f"{name} (rapidocr {v.get('rapidocr') or '?'}, onnxruntime {v.get('onnxruntime') or '?'})"
    return f"{name} (paddleocr {v.get('paddleocr') or '?'}, paddlepaddle {v.get('paddlepaddle') or '?'})"


@dataclass
class InfraValidation:
    """infra_validate -> gate, publish: what each consumer runtime read on the test split."""

    runtimes: list[RuntimeRead] = field(default_factory=list)
    images: int = 0
    crops: int = 0

    def by_runtime(self) -> dict[str, dict[str, Any]]:
        """{runtime name: versions, metrics, latency_ms, cpu_threads, error}: what run.json and the manifest record."""
        return {r.name: {"engine": r.engine, "versions": r.versions, "metrics": r.metrics,
                         "latency_ms": r.latency_ms, "cpu_threads": r.cpu_threads, "error": r.error}
                for r in self.runtimes}

    def verified_on(self) -> list[dict[str, Any]]:
        """The runtimes that loaded and read the models: what the manifest promises consumers."""
        return [{"name": r.name, "engine": r.engine, **r.versions, "latency_ms": r.latency_ms,
                 "cpu_threads": r.cpu_threads} for r in self.runtimes if r.loaded]


def validate_in_runtimes(bundle: Path, data_dir: Path, runtimes: dict[str, str | None], work: Path, *,
                         timeout_s: float, onnx_runtimes: dict[str, str] | None = None) -> InfraValidation:
    """Read the test split of `data_dir` with bundle/det and bundle/rec in every runtime, and with the bundle's
    ONNX files (release/onnx_export.py) in every ONNX runtime when it has them (a bundle without ONNX says why in
    its manifest; the Paddle runtimes decide alone then)."""
    bundle, data_dir, work = Path(bundle).absolute(), Path(data_dir).absolute(), Path(work).absolute()
    # a first run that trained one kind publishes that kind alone: it is read alone (no end-to-end)
    kinds = [kind for kind in (DET, REC) if (bundle / kind / "inference.yml").is_file()]
    if not kinds:
        raise UsageError(f"{bundle}: no det/inference.yml or rec/inference.yml: not an exported model folder")
    boxes = labelled_images(data_dir / DET / f"{TEST_SPLIT}.txt", data_dir) if DET in kinds else {}
    crops = labelled_crops(data_dir / REC / f"{TEST_SPLIT}.txt", data_dir) if REC in kinds else {}
    if (DET in kinds and not boxes) or (REC in kinds and not crops):
        raise UsageError(f"{data_dir}: the test split has {len(boxes)} images and {len(crops)} crops; "
                         f"infra validation of {' and '.join(kinds)} needs "
                         + " and ".join({DET: "images", REC: "crops"}[k] for k in kinds))
    result = InfraValidation(images=len(boxes), crops=len(crops))

    every = [(name, python, PADDLE) for name, python in runtimes.items()]
    if onnx_runtimes and (bundle / RAPIDOCR_SETTINGS).is_file():
        every += [(name, python, ONNX) for name, python in onnx_runtimes.items()]
    elif onnx_runtimes:
        log.warning("%s has no ONNX (%s): the ONNX runtimes %s do not read it", bundle, RAPIDOCR_SETTINGS,
                    ", ".join(onnx_runtimes))

    def read_in(runtime: tuple[str, str | None, str]) -> tuple[RuntimeRead, dict[str, Any]]:
        return read_samples(bundle, kinds, list(boxes), list(crops), runtime[0], runtime[1], work,
                            timeout_s=timeout_s, engine=runtime[2])

    # each probe reads with READ_THREADS threads: the runtimes read side by side, as many as the cores hold
    # (the demo's three runtimes: 51 s one after another on 2 idle cores)
    side_by_side = max(1, min(len(every), (os.cpu_count() or 1) // READ_THREADS))
    with ThreadPoolExecutor(side_by_side) as pool:
        answers = list(pool.map(read_in, every))
    for read, answer in answers:
        if read.error is None:
            read.metrics, read.latency_ms = _score(answer, boxes, crops)
            read.cpu_threads = answer.get("cpu_threads")
            read.reads = str(work / f"{read.name}.json")
        if read.error:
            log.warning("runtime %s could not read the exported models: %s: %s", read.label(),
                        read.error.get("type"), read.error.get("message", "")[:500])
        else:
            log.info("runtime %s read the test split: %s, latency %s", read.label(), read.metrics, read.latency_ms)
        result.runtimes.append(read)
    return result


def read_samples(bundle: Path, kinds: list[str], images: list[str], crops: list[str], name: str,
                 python: str | None, work: Path, *, timeout_s: float, pipeline: bool = True,
                 device: str = "cpu", extra_job: dict[str, Any] | None = None, engine: str = PADDLE,
                 ) -> tuple[RuntimeRead, dict[str, Any]]:
    """Run the consumer probe in one runtime: bundle's det on `images`, its rec on `crops`, and (with
    `pipeline`) PaddleOCR's whole pipeline on `images`. Returns the runtime's record (its error,
    if it failed) and its answer, the per-sample reads."""
    from ocr_tasks.release.inference import model_name_of, pipeline_settings
    from ocr_tasks.training.engine import offline_env, run_logged

    work.mkdir(parents=True, exist_ok=True)
    interpreter = str(_interpreter(python))
    answer_file = work / f"{name}.json"
    job = {"out": str(answer_file), "device": device, "images": images, "crops": crops, "pipeline": pipeline,
           "cpu_threads": READ_THREADS, "bundle": str(bundle)}
    for kind in kinds:
        job[f"{kind}_dir"], job[f"{kind}_model_name"] = str(bundle / kind), model_name_of(bundle / kind)
    if DET in kinds:
        job["pipeline_args"] = pipeline_settings(bundle / DET)   # as docs/consumers.md's snippet passes them
    job.update(extra_job or {})
    job_file = work / f"{name}.job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    answer_file.unlink(missing_ok=True)
    log_file = work / f"{name}.log"
    read = RuntimeRead(name, interpreter, engine=engine, log_file=str(log_file))
    if not Path(interpreter).is_file():
        read.log_file = None
        setting, target = ("onnx_runtimes", "onnx-envs") if engine == ONNX else ("runtimes", "consumer-envs")
        read.error = {"stage": "start", "type": "FileNotFoundError",
                      "message": f"no python interpreter at {interpreter} (infra_validation.{setting}.{name}); "
                                 f"`make {target}` builds the test runtimes"}
        return read, {}
    probe = ONNX_PROBE if engine == ONNX else PROBE
    code, tail, seconds = run_logged([interpreter, str(probe), str(job_file)], log_file, cwd=work,
                                     env=offline_env(), log=log, timeout_s=timeout_s)
    answer = _answer(answer_file)
    if answer is None:
        why = "timed out" if code == 124 else f"exited {code} without an answer"
        read.error = {"stage": "start", "type": "ProbeFailed",
                      "message": f"{why} after {seconds:.0f}s; log {log_file}: " + " | ".join(tail[-5:])}
        return read, {}
    read.versions = answer.get("runtime") or {}
    read.error = answer.get("error")
    if read.error:
        read.error.pop("traceback", None)
    return read, answer


def with_sample_paths(answer: dict[str, Any], path_of: Callable[[str], str]) -> dict[str, Any]:
    """A probe answer with every image and crop path mapped: relative to the dataset folder to keep it, under
    another worker's dataset folder to use it there."""
    def lines(reads: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        return [{**read, key: path_of(read[key])} for read in reads]

    return {**answer, "det": lines(answer.get("det") or [], "image"), "rec": lines(answer.get("rec") or [], "crop"),
            "ocr": lines(answer.get("ocr") or [], "image"),
            "tuning": [lines(reads, "image") for reads in answer.get("tuning") or []]}


def _interpreter(python: str | None) -> Path:
    """A configured runtime's python: relative paths are this project's (like training templates).
    Not resolved: a venv's bin/python is a symlink, and following it would leave the venv."""
    if not python:
        return Path(sys.executable)
    path = Path(python).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _score(answer: dict[str, Any], boxes: dict[str, list[LabelledBox]], crops: dict[str, str]
           ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    both = bool(boxes) and bool(crops)
    if len(answer["det"]) != len(boxes) or len(answer["rec"]) != len(crops) or \
            len(answer["ocr"]) != (len(boxes) if both else 0):
        raise UsageError("the consumer probe answered for fewer images or crops than it was given")
    metrics: dict[str, dict[str, float]] = {}
    if boxes:
        metrics[DET] = det_scores((boxes[r["image"]], r["polys"]) for r in answer["det"])
    if crops:
        metrics[REC] = rec_scores((r["text"], crops[r["crop"]]) for r in answer["rec"])
    if not both:
        return metrics, {}
    metrics[E2E] = end_to_end_of(boxes, answer["ocr"])
    seconds = sorted(r["seconds"] for r in answer["ocr"])
    latency = {"mean": 1000 * statistics.fmean(seconds), "p50": 1000 * statistics.median(seconds),
               "p95": 1000 * seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))],
               "images": len(seconds)}
    return metrics, {k: round(v, 2) for k, v in latency.items()}


def _answer(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def labelled_images(label_file: Path, data_dir: Path) -> dict[str, list[LabelledBox]]:
    """{absolute image path: its labelled boxes} from a PaddleOCR det label file."""
    images: dict[str, list[LabelledBox]] = {}
    for number, (path, label) in enumerate(_label_lines(label_file), 1):
        try:
            boxes = [LabelledBox(box["points"], str(box["transcription"])) for box in json.loads(label)]
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"{label_file}:{number}: not a PaddleOCR det label ({exc})") from None
        images[str(data_dir / path)] = boxes
    return images


def labelled_crops(label_file: Path, data_dir: Path) -> dict[str, str]:
    """{absolute crop path: its text} from a PaddleOCR rec label file."""
    return {str(data_dir / path): text for path, text in _label_lines(label_file)}


def _label_lines(label_file: Path) -> list[tuple[str, str]]:
    try:
        lines = label_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"{label_file}: cannot read the test split ({exc})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        path, sep, label = line.partition("\t")
        if not sep:
            raise UsageError(f"{label_file}:{number}: expected 'path<TAB>label'")
        pairs.append((path, label))
    return pairs
