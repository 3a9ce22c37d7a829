"""Airflow on this machine (SQLite, LocalExecutor), driven through its own CLI.

`ocr-retrain demo` runs the real DAG with `airflow dags test`; `ocr-retrain ui` starts
`airflow standalone` with the DAG ready to trigger. Both run Airflow as a subprocess of
the venv's `airflow` command, never by importing it: `ocr_tasks` stays Airflow-free,
and the run is exactly what a user typing the command would get.

Storage reaches the DAG the production way: the Airflow connection `ocr_retrain_s3`
(here as an AIRFLOW_CONN_ environment variable of the child process, so the key never
lands in the metadata database or a log).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ocr_tasks.config import REPO_ROOT
from ocr_tasks.errors import UsageError

DAGS_FOLDER = REPO_ROOT / "dags"
DAG_ID = "ocr_retraining"
CONNECTION_ENV = "AIRFLOW_CONN_OCR_RETRAIN_S3"

_FINISHED = re.compile(r"DagRun Finished: .*?run_id=(?P<run_id>[^,]+),.*?state=(?P<state>\w+)")


@dataclass(frozen=True)
class DagRunResult:
    returncode: int
    run_id: str | None          # the Airflow run id, e.g. manual__2026-11-21T04:11:05.165556+00:00
    state: str | None           # success | failed | None (Airflow did not get that far)
    seconds: float
    log_file: Path


@dataclass
class LocalAirflow:
    """One AIRFLOW_HOME with its SQLite database, the project's dags/ and the storage connection."""

    home: Path
    connection: dict[str, object]                # conn_type/login/password/extra of ocr_retrain_s3
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def executable(self) -> Path:
        return Path(sys.executable).parent / "airflow"

    def env(self) -> dict[str, str]:
        # the user's own Airflow/AWS settings must not leak into the demo's private instance
        private = ("AIRFLOW__", "AIRFLOW_CONN_", "AWS_", "OCR_RETRAIN_S3_", "OCR_RETRAIN_OVERRIDES")
        env = {k: v for k, v in os.environ.items() if not k.startswith(private)}
        env.update({
            # `airflow standalone` starts its components as `airflow ...` from PATH
            "PATH": os.pathsep.join([str(self.executable.parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # localhost only: every UI user is an admin, no password to copy from a file
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            CONNECTION_ENV: json.dumps(self.connection),
            "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        })
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`airflow <args>`; a failure raises with Airflow's own last lines."""
        if not self.executable.exists():
            raise UsageError(f"{self.executable} not found: run `make install` first")
        self.home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([str(self.executable), *args], env=self.env(), cwd=self.home, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise UsageError(f"`airflow {' '.join(args)}` failed (exit {done.returncode}):\n{tail}")
        return done

    def prepare(self, gpu_slots: int = 1) -> None:
        """Migrate the metadata database and create the `gpu` pool the training tasks wait on."""
        self.cli("db", "migrate")
        self.cli("pools", "set", "gpu", str(gpu_slots), "training tasks: one slot per GPU (CPU here)")

    def dags_test(self, conf: dict[str, object], log_file: Path,
                  on_line: Callable[[str], None] | None = None, timeout: float = 3600) -> DagRunResult:
        """One run of the DAG in this process tree (`airflow dags test`); every line goes to log_file."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        run_id = state = None
        with open(log_file, "w", encoding="utf-8") as sink:
            proc = subprocess.Popen([str(self.executable), "dags", "test", DAG_ID, "-c", json.dumps(conf)],
                                    env=self.env(), cwd=self.home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    sink.write(line)
                    sink.flush()
                    finished = _FINISHED.search(line)
                    if finished:
                        run_id, state = finished["run_id"], finished["state"]
                    if on_line:
                        on_line(line.rstrip("\n"))
                    if time.monotonic() - started > timeout:
                        raise TimeoutError(f"airflow dags test ran over {timeout:.0f} s; log: {log_file}")
                returncode = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return DagRunResult(returncode, run_id, state, time.monotonic() - started, log_file)

    def standalone(self) -> int:
        """`airflow standalone` in the foreground (api-server, scheduler, dag-processor, triggerer) until
        Ctrl-C or SIGTERM; then every process it started is stopped, none is left behind."""
        # its own session: a signal to our process group reaches us first, and we stop the whole tree
        # while standalone is still alive to name its children (they would be orphaned otherwise)
        proc = subprocess.Popen([str(self.executable), "standalone"], env=self.env(), cwd=self.home,
                                start_new_session=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
            stop_tree(proc)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_tree(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM a process and all its descendants (standalone's components start their own
    sessions, so a process-group signal misses them), then SIGKILL what is left."""
    import psutil  # an Airflow dependency: present wherever Airflow is

    try:
        root = psutil.Process(proc.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.poll()


# --------------------------------------------------------------------------- what a person watches


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_OWN = re.compile(r"^\S+\s+\[(?P<level>\w+)\s*\]\s+(?P<message>.*?)\s+\[(?:ocr_retraining|ocr_tasks\.flow\.steps)\]")
_EPOCH = re.compile(r"epoch: \[(?P<epoch>\d+)/(?P<epochs>\d+)\], global_step: (?P<step>\d+).*?"
                    r"(?:(?P<metric>acc|loss): (?P<value>[\d.]+))")
_BEST = re.compile(r"best metric, (?P<metric>\w+): (?P<value>[\d.e-]+)")
_FAILED = re.compile(r"\[error\s*\]")


class ProgressPrinter:
    """Turns Airflow's verbose `dags test` output into a few readable lines per task.

    The full log is in the file; here: each task's start and end with elapsed time,
    the DAG's own messages, one line per training epoch, and anything that failed.
    """

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write
        self.started = time.monotonic()
        self.task_started: dict[str, float] = {}
        self.last_epoch: tuple[str, str] | None = None
        self.last_best: tuple[str, str, str] | None = None
        self.last_progress = 0.0
        self.in_traceback = False
        self.current = ""

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def __call__(self, line: str) -> None:
        if self.in_traceback:
            if line and not line[0].isspace() and not line.startswith("Traceback"):
                self.in_traceback = False  # the exception line closes a traceback: that is the message
                self.write(f"            {line.strip()[:600]}")
            return
        if "Task failed with exception" in line:
            self.in_traceback = True
            self.write(f"  {self._clock()}  ! {self.current} failed:")
        elif m := _TASK_START.search(line):
            self.current = _label(m["task"], m["index"])
            self.task_started[self.current] = time.monotonic()
            self.write(f"  {self._clock()}  > {self.current}")
        elif m := _TASK_END.search(line):
            label = _label(m["task"], m["index"])
            took = time.monotonic() - self.task_started.get(label, time.monotonic())
            self.write(f"  {self._clock()}  done {label} ({took:.0f} s)")
        elif m := _OWN.search(line):
            self.write(f"            {m['message']}")
        elif m := _EPOCH.search(line):
            key = (self.current, m["epoch"])
            # the first log line of each epoch, and one every 30 s inside a long one
            if key != self.last_epoch or time.monotonic() - self.last_progress > 30:
                self.last_epoch, self.last_progress = key, time.monotonic()
                self.write(f"            {self.current} epoch {m['epoch']}/{m['epochs']}, step {m['step']}, "
                           f"{m['metric']} {float(m['value']):.3f}")
        elif (m := _BEST.search(line)) and (self.current, m["metric"], m["value"]) != self.last_best:
            self.last_best = (self.current, m["metric"], m["value"])
            self.write(f"            {self.current} best {m['metric']} on val so far: {float(m['value']):.3f}")
        elif _FAILED.search(line) and "ppocr" not in line:
            self.write(f"  {self._clock()}  ! {line.strip()[:400]}")


def _label(task: str, index: str) -> str:
    return f"{task}[{index}]" if int(index) >= 0 else task
