"""PaddleOCR 2.10's training log, line by line, as events.

The formats are those of PaddleOCR 2.10 ``tools/program.py``, ``tools/eval.py`` and
``ppocr/utils/save_load.py``, pinned by ``tests/data/paddleocr_train_log.txt`` (real
lines). ``engine.run_tool`` feeds every line of a tool's output through ``LogParser``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

__all__ = ["LogParser", "parse_log_line"]

# "[2026/11/21 02:22:22] ppocr INFO: message" (ppocr/utils/logging.py); searched, not
# matched at the start, because a tqdm bar on the shared pipe can precede it.
_PPOCR_RECORD: Final = re.compile(r"\] ppocr (DEBUG|INFO|WARNING|ERROR|CRITICAL): (.*)$")
_TRAIN: Final = re.compile(r"^epoch: \[(\d+)/(\d+)\], global_step: (\d+), (.*)$")
_ETA: Final = re.compile(r", eta: ((?:\d+ days?, )?\d+:\d{2}:\d{2})")
_MEM: Final = re.compile(r"(max_mem_reserved|max_mem_allocated): (\d+) MB")
_SECONDS: Final = re.compile(r"^([-+0-9.eE]+) s$")
_IPS: Final = re.compile(r"^([-+0-9.eE]+) samples/s$")
_METRIC_LINE: Final = re.compile(r"^(\w+):(\S+)$")  # eval.py prints "acc:0.93" one per line
_DATALOADER: Final = re.compile(r"^(train|valid) dataloader has (\d+) iters$")
_INT_KEYS: Final = frozenset({"epoch", "epoch_num", "global_step", "best_epoch", "start_epoch"})
_SECTIONS: Final = {"metric eval ***************": "eval", "metric in ckpt ***************": "checkpoint"}
# train.py logs this at ERROR and still exits 0, having trained nothing.
_FATAL_ERRORS: Final = ("No Images in train dataset",)


def _value(key: str, text: str) -> object:
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if key in _INT_KEYS and number.is_integer() else number


def _pairs(text: str) -> dict[str, object]:
    pairs: dict[str, object] = {}
    for item in text.split(", "):
        key, sep, raw = item.partition(": ")
        if sep and re.fullmatch(r"\w+", key):
            pairs[key] = _value(key, raw)
    return pairs


def _eta_seconds(eta: str) -> int:
    days = 0
    if "day" in eta:
        head, _, eta = eta.partition(", ")
        days = int(head.split()[0])
    h, m, s = (int(x) for x in eta.split(":"))
    return ((days * 24 + h) * 60 + m) * 60 + s


def parse_log_line(line: str) -> dict | None:
    """One PaddleOCR 2.10 log line as an event dict, or None for lines that carry none.

    Kinds: ``train`` (step progress), ``eval`` (``cur metric, ...`` during training),
    ``best`` (``best metric, ...``), ``save`` (a checkpoint written), ``load``
    (``resume from`` / ``load pretrain successful from`` / ``train from scratch``),
    ``dataloader`` (iterations per epoch), ``export`` (inference model written),
    ``eval_disabled``, ``error``; and the pieces of ``tools/eval.py``'s multi-line report,
    ``section`` and ``metric``, which ``LogParser`` folds into ``eval``/``checkpoint``.

    A ``train`` event's lr, losses and metrics are medians over the last
    ``Global.log_smooth_window`` steps (PaddleOCR's TrainingStats), not the step's own.
    """
    record = _PPOCR_RECORD.search(line.rstrip("\r\n"))
    if record is None:
        return None
    level, message = record.groups()
    if level in ("ERROR", "CRITICAL"):
        return {"kind": "error", "message": message,
                "fatal": message.startswith(_FATAL_ERRORS)}
    if train := _TRAIN.match(message):
        return _train_event(*train.groups())
    if message.startswith("cur metric, "):
        return {"kind": "eval", **_pairs(message[len("cur metric, "):])}
    if message.startswith("best metric, "):
        return {"kind": "best", **_pairs(message[len("best metric, "):])}
    if message.startswith("save best model is to "):
        path = message[len("save best model is to "):]
        return {"kind": "save", "path": path, "prefix": Path(path).name, "best": True}
    if message.startswith("save model in "):
        path = message[len("save model in "):]
        return {"kind": "save", "path": path, "prefix": Path(path).name, "best": False}
    if message.startswith("resume from "):
        return {"kind": "load", "mode": "resume", "path": message[len("resume from "):]}
    if message.startswith("load pretrain successful from "):
        return {"kind": "load", "mode": "pretrained", "path": message[len("load pretrain successful from "):]}
    if message == "train from scratch":
        return {"kind": "load", "mode": "scratch", "path": None}
    if message.startswith("inference model is saved to "):
        return {"kind": "export", "path": message[len("inference model is saved to "):]}
    if dataloader := _DATALOADER.match(message):
        return {"kind": "dataloader", "split": "train" if dataloader[1] == "train" else "eval",
                "iters": int(dataloader[2])}
    if message.startswith("No Images in eval dataset"):
        return {"kind": "eval_disabled", "message": message}
    if message in _SECTIONS:
        return {"kind": "section", "name": _SECTIONS[message]}
    if metric := _METRIC_LINE.match(message):
        return {"kind": "metric", "name": metric[1], "value": _value(metric[1], metric[2])}
    return None


def _train_event(epoch: str, epoch_num: str, step: str, rest: str) -> dict:
    event: dict[str, object] = {"kind": "train", "epoch": int(epoch), "epoch_num": int(epoch_num),
                                "global_step": int(step)}
    # The GPU build appends ", max_mem_reserved: N MB, max_mem_allocated: N MB" after eta.
    for name, mb in _MEM.findall(rest):
        event[f"{name}_mb"] = int(mb)
    rest = _MEM.sub("", rest)
    eta = _ETA.search(rest)
    for item in (rest[:eta.start()] if eta else rest).split(", "):
        key, sep, raw = item.partition(": ")
        if not sep:
            continue
        raw = raw.strip()
        if unit := _SECONDS.match(raw) or _IPS.match(raw):
            raw = unit[1]
        event[key] = _value(key, raw)
    if eta:
        event["eta"] = eta[1]
        event["eta_seconds"] = _eta_seconds(eta[1])
    return event


class LogParser:
    """Stateful wrapper of ``parse_log_line`` for a whole log.

    ``tools/eval.py`` reports over several lines (``metric eval ***`` then ``acc:0.9``
    one per line); those are folded into one ``eval`` event (``metric in ckpt`` into a
    ``checkpoint`` event). Every other event passes through as parsed.
    """

    def __init__(self) -> None:
        self._section: str | None = None
        self._values: dict[str, object] = {}

    def feed(self, line: str) -> list[dict]:
        event = parse_log_line(line)
        if event is None:
            return []
        if event["kind"] == "metric":
            if self._section is not None:
                self._values[event["name"]] = event["value"]
            return []
        done = self.close()
        if event["kind"] == "section":
            self._section = event["name"]
            return done
        return done + [event]

    def close(self) -> list[dict]:
        """Flush a section still open (the log ended right after it)."""
        if self._section is None:
            return []
        event = {"kind": self._section, **self._values}
        self._section, self._values = None, {}
        return [event]
