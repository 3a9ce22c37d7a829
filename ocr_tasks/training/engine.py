"""The one way the pipeline runs PaddleOCR's training tools: a child process per tool.

PaddleOCR's engine is driven the way its users drive it by hand,
``python tools/train.py -c cfg.yml -o Key=Value ...``, never imported: paddle in the
parent would tie the Airflow worker to paddle's threads, signals and GPU state, and a
crash in the engine must not take the pipeline down with it. The engine is either the
installed ``unstructured_paddleocr`` package (PaddleOCR 2.10's ``tools/`` and ``ppocr/`` as
a wheel, ``unstructured.paddleocr==2.10.0``; pinned with the rest of the stack, see
docs/development.md, "Dependencies") or a user's own PaddleOCR checkout or fork with the same ``tools/``.

Progress comes from the tool's log lines, parsed by ``train_log.LogParser``.

Kept in one module: locating the engine, building the command and running it
are one contract with ``tools/*.py`` (the ``-o`` rendering, the offline environment and
the process-group stop are only right together).
"""

from __future__ import annotations

import collections
import importlib.metadata
import importlib.util
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from ocr_tasks.training.checkout import REQUIREMENTS_FILE, missing_requirements
from ocr_tasks.training.cpu_math import math_library_env
from ocr_tasks.training.render import plain
from ocr_tasks.training.train_log import LogParser

__all__ = [
    "Engine",
    "EngineError",
    "ToolRun",
    "render_overrides",
    "offline_env",
    "run_logged",
    "run_tool",
    "tool_command",
    "visible_gpus",
]

_PACKAGE: Final = "unstructured_paddleocr"
_TAIL_LINES: Final = 40
_MAX_LINE_BYTES: Final = 64 * 1024
# Closed port on loopback: a download the child attempts (a URL as pretrained_model, a
# backbone with `pretrained: true`) fails at once instead of hanging on a vendor host
# the workers cannot reach, and the log says which URL it wanted.
_NO_NETWORK_PROXY: Final = "http://127.0.0.1:9"

_log = logging.getLogger(__name__)


class EngineError(Exception):
    """A tool failed; the message carries the exit status and the tail of its log."""

    def __init__(self, message: str, *, returncode: int | None = None, tail: Sequence[str] = (),
                 log_file: Path | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.tail = list(tail)
        self.log_file = log_file


# --------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class Engine:
    """Where PaddleOCR's ``tools/`` live and which interpreter runs them."""

    root: Path  # folder holding tools/train.py, tools/eval.py, tools/export_model.py
    python: str = sys.executable
    is_checkout: bool = False  # a PaddleOCR repository (configs/, requirements.txt), not the installed package

    @classmethod
    def locate(cls, checkout: str | Path | None = None) -> "Engine":
        """The installed ``unstructured_paddleocr`` engine, or a user's PaddleOCR checkout."""
        if checkout is None:
            # find_spec reads the package's location without executing it: importing it
            # would import paddle into the parent.
            spec = importlib.util.find_spec(_PACKAGE)
            if spec is None or not spec.submodule_search_locations:
                raise EngineError(
                    f"PaddleOCR training engine not installed: no '{_PACKAGE}' package in "
                    f"{sys.executable}'s environment (pip install 'unstructured.paddleocr==2.10.0', "
                    "or point the pipeline at a PaddleOCR checkout)")
            root = Path(next(iter(spec.submodule_search_locations)))
        else:
            root = Path(checkout).expanduser()
        root = root.absolute()
        if not root.is_dir():
            raise EngineError(f"PaddleOCR checkout {root} does not exist")
        if not (root / "tools" / "train.py").is_file():
            raise EngineError(
                f"{root} is not a PaddleOCR checkout: tools/train.py not found "
                "(expected the repository root, the folder that holds tools/ and ppocr/)")
        if checkout is None:
            return cls(root=root)
        requirements = root / REQUIREMENTS_FILE
        missing = missing_requirements(requirements) if requirements.is_file() else []
        if missing:
            names = " ".join(f"'{m.requirement}'" for m in missing if m.requirement)
            raise EngineError(
                f"the PaddleOCR checkout {root} needs what {sys.executable}'s environment lacks: "
                + "; ".join(map(str, missing)) + (f". Install with: {sys.executable} -m pip install {names}" if names else ""))
        return cls(root=root, is_checkout=True)

    def tool(self, name: str) -> Path:
        script = self.root / "tools" / f"{name}.py"
        if not script.is_file():
            raise EngineError(f"no tools/{name}.py in the PaddleOCR engine at {self.root}")
        return script

    def version(self) -> str:
        """What to write into manifests: the distribution's version, else ``git describe``."""
        dists = importlib.metadata.packages_distributions().get(self.root.name, [])
        if dists and self.root.parent.absolute() in {Path(p).absolute() for p in sys.path if p}:
            name = dists[0]
            try:
                return f"{name}=={importlib.metadata.version(name)}"
            except importlib.metadata.PackageNotFoundError:
                pass
        described = _git_describe(self.root)
        return f"git:{described}" if described else "unknown"


def _git_describe(root: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        # Only the checkout's own repository: an engine folder inside some other work
        # tree (a venv inside the project, say) must not report that repository's commit.
        top = subprocess.run([git, "-C", str(root), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None
        described = subprocess.run([git, "-C", str(root), "describe", "--tags", "--always", "--dirty"],
                                   capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if described.returncode != 0:
        return None
    return described.stdout.strip() or None


def visible_gpus() -> list[int]:
    """GPU indices a child process can use, as paddle numbers them (0..n-1), without paddle.

    ``CUDA_VISIBLE_DEVICES`` wins when set (the devices it names are renumbered from 0
    in the child; CUDA stops at the first invalid entry, so does this); otherwise the
    GPUs ``nvidia-smi -L`` lists; none when neither says anything.
    """
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        count = 0
        for entry in mask.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-") or not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
                break
            count += 1
        return list(range(count))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listing.returncode != 0:
        return []
    return list(range(sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))))


# --------------------------------------------------------------------------- command


def render_overrides(overrides: Mapping[str, object]) -> list[str]:
    """``-o`` arguments PaddleOCR 2.10's ArgsParser reads back to the same values.

    It splits each argument at ``=`` and YAML-loads the right side, so values are
    written as YAML flow scalars (lists as ``[a, b]``, None as ``null``, floats that
    stay floats, strings quoted when YAML would read them as something else).
    """
    rendered = []
    for key, value in overrides.items():
        if not key or key != key.strip() or any(c.isspace() for c in key):
            raise ValueError(f"bad config key {key!r}")
        text = _yaml_flow(plain(value))
        if "=" in key or "=" in text:
            # ArgsParser does `k, v = s.split("=")`: a second "=" cannot be passed with -o.
            raise ValueError(f"override {key}={text} cannot be passed with -o (key or value contains '='); "
                             "write it into the config instead")
        rendered.append(f"{key}={text}")
    return rendered


def _yaml_flow(value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    text = text.rstrip("\n")
    if text.endswith("\n..."):  # document-end marker safe_dump adds after a bare scalar
        text = text[:-4]
    return text.rstrip("\n")


def tool_command(engine: Engine, tool: str, config: Path, overrides: Mapping[str, object] | None = None, *,
                 gpus: Sequence[int] = (), launch_log_dir: Path | None = None, entry: Path | None = None) -> list[str]:
    """The argv for one tool run; ``Global.use_gpu`` follows ``gpus``.

    ``entry``: a script run instead, with the tool's path as its first argument (it
    wraps the tool, e.g. ``ocr_tasks/training/frozen_backbone.py``).
    """
    merged = dict(overrides or {})
    use_gpu = bool(gpus)
    if "Global.use_gpu" in merged and bool(merged["Global.use_gpu"]) != use_gpu:
        raise ValueError(f"Global.use_gpu={merged['Global.use_gpu']} contradicts gpus={list(gpus)}: "
                         "the gpus argument decides")
    merged["Global.use_gpu"] = use_gpu
    script = str(engine.tool(tool))
    wrapped = [str(entry), script] if entry is not None else [script]
    if len(gpus) > 1:
        prefix = [engine.python, "-m", "paddle.distributed.launch", "--gpus", ",".join(str(g) for g in gpus)]
        if launch_log_dir is not None:
            # The launcher writes one workerlog per rank into ./log of the cwd otherwise.
            prefix += ["--log_dir", str(launch_log_dir)]
        command = prefix + wrapped
    else:
        command = [engine.python, *wrapped]
    return command + ["-c", str(config), "-o", *render_overrides(merged)]


# --------------------------------------------------------------------------- running


@dataclass
class ToolRun:
    tool: str
    command: list[str]
    log_file: Path
    history: list[dict] = field(default_factory=list)  # parsed events in order
    final_metrics: dict[str, float] = field(default_factory=dict)  # last eval metrics seen
    seconds: float = 0.0

    @property
    def best(self) -> dict | None:
        """The last ``best metric`` the tool reported (train only)."""
        return next((e for e in reversed(self.history) if e["kind"] == "best"), None)


class _DisplayLines:
    """Bytes from a pipe in, display lines out.

    A carriage return starts the line over as on a terminal: tqdm redraws its bar that
    way, so a long eval costs one log line, not thousands of redraws. Lines longer
    than a cap are cut, so a child that never writes a newline cannot fill memory.
    """

    def __init__(self, max_bytes: int = _MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._restart = False
        self._max = max_bytes

    def feed(self, chunk: bytes) -> Iterator[str]:
        *complete, partial = chunk.split(b"\n")
        for piece in complete:
            self._add(piece)
            yield self._take()
        self._add(partial)

    def close(self) -> Iterator[str]:
        if self._buf:
            yield self._take()

    def _add(self, piece: bytes) -> None:
        for i, segment in enumerate(piece.split(b"\r")):
            if i > 0:
                self._restart = True
            if segment:
                if self._restart:
                    self._buf.clear()
                    self._restart = False
                room = self._max - len(self._buf)
                if room > 0:
                    self._buf += segment[:room]

    def _take(self) -> str:
        text = self._buf.decode("utf-8", errors="replace")
        self._buf.clear()
        self._restart = False
        return text


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update({
        "PYTHONUNBUFFERED": "1",  # progress must arrive line by line, not at exit
        "PYTHONIOENCODING": "utf-8",  # labels are not ASCII in general; a C locale would crash the print
        "HTTP_PROXY": _NO_NETWORK_PROXY, "HTTPS_PROXY": _NO_NETWORK_PROXY, "ALL_PROXY": _NO_NETWORK_PROXY,
        "http_proxy": _NO_NETWORK_PROXY, "https_proxy": _NO_NETWORK_PROXY, "all_proxy": _NO_NETWORK_PROXY,
        # multi-GPU launch talks to its own ranks over loopback
        "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1",
    })
    for key, value in math_library_env().items():
        merged.setdefault(key, value)   # the user's own setting wins
    if env:
        merged.update({k: str(v) for k, v in env.items()})
    return merged


def _refuse_urls(overrides: Mapping[str, object]) -> None:
    for key, value in overrides.items():
        if isinstance(value, str) and re.match(r"^[a-z][a-z0-9+.-]*://", value, re.I):
            # PaddleOCR would download it (ppocr/utils/network.py); weights come from the
            # pipeline's own storage, fetched before the run.
            raise ValueError(f"{key}={value} is a URL: the engine runs offline, give a local path")


def run_tool(engine: Engine, tool: str, config: Path, overrides: Mapping[str, object] | None = None, *,
             log_file: Path, cwd: Path | None = None, gpus: Sequence[int] = (), env: Mapping[str, str] | None = None,
             on_event: Callable[[dict], None] | None = None, log: logging.Logger | None = None,
             entry: Path | None = None) -> ToolRun:
    """Run ``tools/<tool>.py -c config -o overrides`` to the end, streaming its log.

    Every output line goes to ``log`` (INFO) and ``log_file`` as it arrives; parsed
    events go to ``on_event`` and into the returned ``ToolRun.history``. A non-zero
    exit, or a tool that reports it had nothing to train on, raises ``EngineError``
    with the last lines of the log. If this process is interrupted (or ``on_event``
    raises), the tool and everything it started are stopped before the error propagates.

    ``env`` adds to (does not replace) this process's environment; ``cwd`` (default:
    this process's) is where relative paths in the config resolve.
    """
    logger = log or _log
    overrides = dict(overrides or {})
    _refuse_urls(overrides)
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    launch_logs = log_file.parent / f"{log_file.stem}.workers" if len(gpus) > 1 else None
    command = tool_command(engine, tool, Path(config), overrides, gpus=gpus, launch_log_dir=launch_logs, entry=entry)
    child_env = _child_env(env)
    if len(gpus) == 1:
        child_env["FLAGS_selected_gpus"] = str(gpus[0])  # paddle's device index for a single process

    run = ToolRun(tool=tool, command=command, log_file=log_file)
    label = f"tools/{tool}.py"
    parser = LogParser()
    fatal: list[str] = []
    unread_step: str | None = None   # the first line that looks like a training step but did not parse as one

    def handle(events: list[dict]) -> None:
        for event in events:
            run.history.append(event)
            if event["kind"] == "eval":
                run.final_metrics = {k: float(v) for k, v in event.items()
                                     if k != "kind" and isinstance(v, (int, float)) and not isinstance(v, bool)}
            elif event["kind"] == "error" and event.get("fatal"):
                fatal.append(event["message"])
            if on_event is not None:
                on_event(event)

    def on_line(line: str) -> None:
        nonlocal unread_step
        events = parser.feed(line)
        if unread_step is None and "global_step" in line and not any(e["kind"] == "train" for e in events):
            unread_step = line
        handle(events)

    returncode, tail, run.seconds = run_logged(command, log_file, cwd=cwd, env=child_env, on_line=on_line,
                                               log=logger)
    handle(parser.close())

    if returncode != 0:
        raise EngineError(f"{label} failed (exit {returncode}) after {run.seconds:.1f}s; "
                          f"full log: {log_file}; last log lines:\n" + "\n".join(tail),
                          returncode=returncode, tail=tail, log_file=log_file)
    if tool == "train" and unread_step is not None and not any(e["kind"] == "train" for e in run.history):
        # another engine version's log format: reading it as "no steps" would hide every metric
        raise EngineError(f"{label} ran, but no training step line was in the format this pipeline reads "
                          f"(PaddleOCR 2.10-3.x: '[time] ppocr INFO: epoch: [e/n], global_step: s, ...'); "
                          f"the engine at {engine.root} printed: {unread_step[:300]!r}; full log: {log_file}",
                          returncode=returncode, tail=tail, log_file=log_file)
    if fatal:
        raise EngineError(f"{label} exited 0 after {run.seconds:.1f}s but did nothing: {fatal[0]}; "
                          f"full log: {log_file}; last log lines:\n" + "\n".join(tail),
                          returncode=returncode, tail=tail, log_file=log_file)
    logger.info("%s finished in %.1fs", label, run.seconds)
    return run


def run_logged(command: Sequence[str], log_file: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
               on_line: Callable[[str], None] | None = None, log: logging.Logger | None = None,
               timeout_s: float | None = None) -> tuple[int, list[str], float]:
    """Run `command` in its own process group to the end: (exit status, last log lines, seconds).

    Each output line goes to `log` (INFO), to `log_file` as it arrives, and to `on_line`.
    `env` is the child's whole environment (see `offline_env`). If this process is
    interrupted, `on_line` raises or `timeout_s` passes, the child and everything it
    started are stopped first (a timeout then reads as exit status 124).
    """
    logger = log or _log
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    logger.info("running %s", " ".join(command))
    started = time.monotonic()
    timed_out = threading.Event()

    def stop_for_timeout() -> None:
        timed_out.set()
        _stop(proc)

    with open(log_file, "w", encoding="utf-8") as sink:
        sink.write(f"# {' '.join(command)}\n")
        proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=dict(env) if env is not None else None,
                                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        timer = threading.Timer(timeout_s, stop_for_timeout) if timeout_s else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            lines = _DisplayLines()
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(65536):
                for line in lines.feed(chunk):
                    _emit(line, sink, tail, logger)
                    if on_line is not None:
                        on_line(line)
            for line in lines.close():
                _emit(line, sink, tail, logger)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                _stop(proc)
    return (124 if timed_out.is_set() else returncode), list(tail), time.monotonic() - started


def offline_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child that must not reach the network (see _NO_NETWORK_PROXY)."""
    return _child_env(env)


def _emit(line: str, sink, tail: collections.deque[str], logger: logging.Logger) -> None:
    sink.write(line + "\n")
    sink.flush()  # the file is what people tail while a night's training runs
    tail.append(line)
    logger.info("%s", line)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For the child, before exec: SIGTERM when the process that started it (`parent`) dies. A task process
    killed outright (SIGKILL from a supervisor, a lost worker) runs no `finally`, and the child, in a session
    of its own, would go on training or reading unseen; Linux's PR_SET_PDEATHSIG ends it instead."""
    def preexec() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):   # not Linux: the `finally` above is all there is
            return
        if os.getppid() != parent:
            # the parent died between fork and prctl (a busy machine: a CI run saw it): no signal will come
            os._exit(128 + signal.SIGTERM)
    return preexec


def _stop(proc: subprocess.Popen) -> None:
    """Stop the tool's whole process group: the multi-GPU launcher has one child per rank."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
