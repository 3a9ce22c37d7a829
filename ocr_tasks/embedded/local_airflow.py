"""Airflow on this machine (SQLite, LocalExecutor), driven through its own CLI and REST API.

`ocr-retrain demo` starts Airflow's api-server, scheduler and dag-processor and triggers one
run of the real DAG, as the UI's Trigger button does: the scheduler runs tasks side by side
(train_det and train_rec at once, the `gpu` pool's two slots standing for two GPUs), exactly
as a deployment does. `ocr-retrain ui` starts `airflow standalone` with the DAG ready to
trigger. Both run Airflow as subprocesses of the venv's `airflow` command, never by importing
it: `ocr_tasks` stays Airflow-free, and the run is what a user typing the commands would get.

Why not `airflow dags test`: it runs one task after another in one process, so det and rec
trained in turn (the demo's DAG run: 554 s, of which rec 135 s behind det's 364 s).

Storage reaches the DAG the production way: the Airflow connection `ocr_retrain_s3`
(here as an AIRFLOW_CONN_ environment variable of the child process, so the key never
lands in the metadata database or a log).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from ocr_tasks.config import REPO_ROOT
from ocr_tasks.errors import UsageError

DAGS_FOLDER = REPO_ROOT / "dags"
DAG_ID = "ocr_retraining"


def task_slots() -> int:
    """Airflow's parallelism on this machine. The LocalExecutor starts that many worker processes up front
    (Airflow's default 32: ~40 idle processes and ~2 GB on a 2-core laptop); a run needs a few at once (the
    exports checked side by side, the stock baseline beside training), and the gpu pool caps training anyway."""
    return max(4, min(16, 2 * (os.cpu_count() or 2)))


# the components' sizes on a laptop-sized machine (the demo, `make ui`): see task_slots
SIZED_TO_THE_MACHINE = {"AIRFLOW__CORE__PARALLELISM": str(task_slots()),
                        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",   # two DAG files
                        "AIRFLOW__API__WORKERS": "1"}
CONNECTION_ENV = "AIRFLOW_CONN_OCR_RETRAIN_S3"


@dataclass(frozen=True)
class DagRunResult:
    run_id: str                 # the Airflow run id, e.g. manual__2026-11-21T04:11:05.165556+00:00
    state: str                  # success | failed
    seconds: float
    log_file: Path              # the run's task logs: a folder per task
    consumers: dict[str, "DagRunResult"] = field(default_factory=dict)   # runs the Asset started, by DAG
    note: str | None = None     # the run's note as the UI shows it: its outcome (ocr_tasks/flow/headline.py)


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

    @contextlib.contextmanager
    def services(self, port: int | None = None, *, timeout: float = 300) -> Iterator[AirflowApi]:
        """Airflow's own components on this home, in the background: api-server, scheduler (LocalExecutor)
        and dag-processor, as a deployment runs them (no triggerer: no task defers). Yields the REST API
        once it serves the DAG; on exit every process they started, task processes included, is stopped."""
        port = port or free_port()
        env = self.env()
        env.update({
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # one secret for the components of this session: tokens the api-server signs must verify
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            **SIZED_TO_THE_MACHINE,
        })
        logs = self.home / "services"
        logs.mkdir(parents=True, exist_ok=True)
        procs: dict[str, subprocess.Popen] = {}
        try:
            for name in ("api-server", "scheduler", "dag-processor"):
                with open(logs / f"{name}.log", "ab") as sink:
                    procs[name] = subprocess.Popen([str(self.executable), name], env=env, cwd=self.home,
                                                   stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                                   start_new_session=True)
            api = AirflowApi(port)
            deadline = time.monotonic() + timeout
            while not api.ready(DAG_ID):
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise UsageError(f"airflow {name} exited ({proc.returncode}) while starting:\n"
                                         + _tail(logs / f"{name}.log"))
                if time.monotonic() > deadline:
                    raise UsageError(f"Airflow's api-server did not serve {DAG_ID} within {timeout:.0f} s; "
                                     f"logs in {logs}")
                time.sleep(1)
            yield api
        finally:
            for proc in procs.values():
                stop_tree(proc)

    def run_dag(self, conf: dict[str, object], on_line: Callable[[str], None], *,
                gpu_slots: int = 2, timeout: float = 3600, consumers: tuple[str, ...] = ()
                ) -> DagRunResult:
        """One run of the DAG through the scheduler: trigger it (as the UI's Trigger button does), follow
        its tasks until it ends, print what a person wants to see (`RunFollower`), stop the services.

        Ctrl-C or SIGTERM marks the run failed before the services stop, and a run an earlier,
        killed demo left `running` is marked failed first: with one active run allowed, a stale one
        would hold the new run in the queue until Airflow noticed its tasks had no heartbeat.

        `consumers` are DAGs scheduled on the production model Asset (ocr_prelabel): unpaused, and when
        the run published, the run the Asset event started is followed too (`DagRunResult.consumers`)."""
        self.prepare(gpu_slots)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with self.services() as api:
                api.unpause(DAG_ID)
                known = {}
                for consumer in consumers:
                    api.unpause(consumer)
                    known[consumer] = set(api.runs(consumer))
                for stale in api.runs(DAG_ID, "running", "queued"):
                    api.set_run_state(DAG_ID, stale, "failed")
                    on_line(f"      run {stale}, left unfinished by an interrupted demo: marked failed")
                started = time.monotonic()
                run_id = api.trigger(DAG_ID, conf)
                try:
                    result = self._follow(api, DAG_ID, run_id,
                                          RunFollower(self.home / "logs", DAG_ID, run_id, on_line), started, timeout)
                    published = any(t["task_id"].startswith("publish") and t["state"] == "success"
                                    for t in api.task_instances(DAG_ID, run_id))
                    for consumer in consumers if published and result.state == "success" else ():
                        new = self._started_by_asset(api, consumer, known[consumer])
                        if new is None:
                            on_line(f"      {consumer}: no run started by the production model Asset within 120 s")
                            continue
                        on_line(f"      {consumer} run {new}, started by the production model Asset:")
                        result.consumers[consumer] = self._follow(
                            api, consumer, new, RunFollower(self.home / "logs", consumer, new, on_line),
                            time.monotonic(), timeout)
                    return result
                except BaseException:
                    with contextlib.suppress(OSError, ValueError):
                        api.set_run_state(DAG_ID, run_id, "failed")
                    raise
        finally:
            signal.signal(signal.SIGTERM, previous)

    @staticmethod
    def _started_by_asset(api: AirflowApi, dag_id: str, known: set[str], wait: float = 120) -> str | None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            new = sorted(set(api.runs(dag_id)) - known)
            if new:
                return new[0]
            time.sleep(2)
        return None

    @staticmethod
    def _follow(api: AirflowApi, dag_id: str, run_id: str, follower: RunFollower, started: float,
                timeout: float) -> DagRunResult:
        state, unanswered_since = None, None
        while state not in ("success", "failed"):
            if time.monotonic() - started > timeout:
                raise UsageError(f"the DAG run {run_id} ran over {timeout:.0f} s; logs in {follower.run_logs}")
            time.sleep(2)
            try:
                state = api.run_state(dag_id, run_id)
                follower.update(api.task_instances(dag_id, run_id))
                unanswered_since = None
            except (OSError, ValueError) as exc:  # an api-server busy on a loaded machine: ask again
                unanswered_since = unanswered_since or time.monotonic()
                if time.monotonic() - unanswered_since > 120:
                    raise UsageError(f"Airflow's api-server stopped answering ({exc}); logs in "
                                     f"{follower.run_logs.parents[2] / 'services'}") from exc
        try:
            note = api.run(dag_id, run_id).get("note")
        except (OSError, ValueError):
            note = None
        return DagRunResult(run_id, state, time.monotonic() - started, follower.run_logs, note=note)

    def standalone(self, port: int, on_ready: Callable[[], None] | None = None, *,
                   unpause: tuple[str, ...] = (DAG_ID,)) -> int:
        """`airflow standalone` in the foreground (api-server, scheduler, dag-processor, triggerer) until
        Ctrl-C or SIGTERM; then every process it started is stopped, none is left behind. The DAGs in `unpause`
        are unpaused through the REST API as soon as the dag-processor has parsed each (three `airflow` commands
        before the start did it: ~8 CPU-seconds and ~10 s more before the address), and `on_ready` is called
        then: the address is worth printing once the api-server on `port` serves the DAG ready to trigger."""
        import threading

        # its own session: a signal to our process group reaches us first, and we stop the whole tree
        # while standalone is still alive to name its children (they would be orphaned otherwise)
        proc = subprocess.Popen([str(self.executable), "standalone"], env=self.env(), cwd=self.home,
                                start_new_session=True)

        def announce() -> None:
            api = AirflowApi(port)
            waiting = [DAG_ID, *(dag_id for dag_id in unpause if dag_id != DAG_ID)]
            while proc.poll() is None and waiting:
                with contextlib.suppress(OSError, ValueError):   # a half-started server: ask again
                    if api.ready(waiting[0]):
                        if waiting[0] in unpause:
                            api.unpause(waiting[0])
                        waiting.pop(0)
                        continue
                time.sleep(1)
            if proc.poll() is None and on_ready is not None:
                on_ready()

        threading.Thread(target=announce, daemon=True).start()
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


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it), for a server started next."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class AirflowApi:
    """Airflow's REST API (v2), as the UI calls it: on 127.0.0.1:`port` (the embedded default), or at `base`. With
    `credentials` (user, password) it logs in; without, the simple auth manager's all-admins mode hands out a token
    without a password (`make ui`, the demo)."""

    def __init__(self, port: int | None = None, *, base: str | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.base = (base or f"http://127.0.0.1:{port}").rstrip("/")
        self._credentials = credentials
        self._token: str | None = None

    def _login(self) -> str:
        if self._credentials:
            user, password = self._credentials
            request = urllib.request.Request(f"{self.base}/auth/token", method="POST",
                                             data=json.dumps({"username": user, "password": password}).encode(),
                                             headers={"Content-Type": "application/json"})
        else:
            request = urllib.request.Request(f"{self.base}/auth/token")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        if self._token is None:
            self._token = self._login()
        request = urllib.request.Request(f"{self.base}/api/v2/{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self._token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def ready(self, dag_id: str) -> bool:
        """True once the api-server answers and the dag-processor has parsed the DAG."""
        try:
            self.get(f"dags/{dag_id}")
            return True
        except (OSError, ValueError):  # not listening yet, 404 until parsed, a half-started server
            return False

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def runs(self, dag_id: str, *states: str) -> list[str]:
        query = "&".join(f"state={state}" for state in states)
        return [run["dag_run_id"] for run in self.get(f"dags/{dag_id}/dagRuns?{query}&limit=100")["dag_runs"]]

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        self._call("PATCH", f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", {"state": state})

    def trigger(self, dag_id: str, conf: dict[str, object]) -> str:
        return self._call("POST", f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.run(dag_id, run_id)["state"]

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        self._call("PATCH", f"dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}?update_mask=note",
                   {"note": note})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=1000")["task_instances"]

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """What a human-in-the-loop task asks (subject, body, options, params) and any answer."""
        return self.get(f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails")

    def respond(self, dag_id: str, run_id: str, task_id: str, options: list[str], params: dict | None = None) -> dict:
        """Answer a human-in-the-loop task, as the UI's Required Actions form does."""
        return self._call("PATCH", f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/"
                                   "hitlDetails", {"chosen_options": options, "params_input": params or {}})


# --------------------------------------------------------------------------- what a person watches


_EPOCH = re.compile(r"epoch: \[(?P<epoch>\d+)/(?P<epochs>\d+)\], global_step: (?P<step>\d+).*?"
                    r"(?:(?P<metric>acc|loss): (?P<value>[\d.]+))")
_BEST = re.compile(r"best metric, (?P<metric>\w+): (?P<value>[\d.e-]+)")
# the pipeline's own messages: the DAG file's logger and the chain's steps
_OWN_LOGGERS = ("ocr_retraining", "ocr_tasks.flow.steps")   # prefixes: the DAG and every step module
_ENDED = {"success": "done", "failed": "failed", "up_for_retry": "failed, will retry"}
# ended without running: one line per poll for all of them
_NOT_RUN = {"skipped": "skipped", "upstream_failed": "not run (upstream failed)"}


class RunFollower:
    """A DAG run as a few readable lines, from its task instances and their log files.

    Each poll (`update`) prints a task when it starts and when it ends (with its duration), and
    from the task logs Airflow writes (one JSON record per line): the DAG's own messages, one line
    per training epoch, the best validation metric, and the exception of a failed task. The
    whole logs stay in the files (`run_logs`).
    """

    def __init__(self, logs: Path, dag_id: str, run_id: str, write: Callable[[str], None] = print) -> None:
        self.run_logs = logs / f"dag_id={dag_id}" / f"run_id={run_id}"
        self.write = write
        self.started = time.monotonic()
        self.states: dict[str, str] = {}
        self.offsets: dict[Path, int] = {}
        self.last_epoch: dict[str, tuple[str, float]] = {}
        self.last_best: dict[str, str] = {}

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def update(self, task_instances: list[dict]) -> None:
        not_run: dict[str, list[str]] = {}
        for ti in sorted(task_instances, key=lambda t: (t.get("start_date") or "~", t["task_id"], t["map_index"])):
            label = _label(ti["task_id"], ti["map_index"])
            state = ti.get("state") or "none"
            before = self.states.get(label)
            if state == before:
                if state == "running":
                    self._read_log(label, ti)
                continue
            self.states[label] = state
            if state in _NOT_RUN:
                not_run.setdefault(_NOT_RUN[state], []).append(label)
                continue
            if state in ("running", *_ENDED) and before != "running" and ti.get("start_date"):
                self.write(f"  {self._clock()}  > {label}")
            if ti.get("start_date"):
                self._read_log(label, ti)   # short tasks start and end between two polls: read what they said
            if state in _ENDED:
                took = _seconds(ti.get("start_date"), ti.get("end_date"))
                self.write(f"  {self._clock()}  {_ENDED[state]} {label}" + (f" ({took:.0f} s)" if took is not None else ""))
        for what, labels in not_run.items():
            self.write(f"  {self._clock()}  {what}: {', '.join(labels)}")

    def _read_log(self, label: str, ti: dict) -> None:
        folder = self.run_logs / f"task_id={ti['task_id']}"
        if ti["map_index"] >= 0:
            folder = folder / f"map_index={ti['map_index']}"
        path = folder / f"attempt={max(int(ti.get('try_number') or 1), 1)}.log"
        try:
            with path.open("rb") as log:
                log.seek(self.offsets.get(path, 0))
                chunk = log.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self.offsets[path] = self.offsets.get(path, 0) + len(complete)
        for raw in complete.decode("utf-8", errors="replace").splitlines():
            self._record(label, raw)

    def _record(self, label: str, raw: str) -> None:
        try:
            record = json.loads(raw)
        except ValueError:
            record = {"event": raw}
        if not isinstance(record, dict):
            return
        event = str(record.get("event", ""))
        level = str(record.get("level", "")).lower()
        if str(record.get("logger") or "").startswith(_OWN_LOGGERS) and level in ("info", "warning", "error"):
            self.write(f"            {event[:600]}")
        elif m := _EPOCH.search(event):
            previous = self.last_epoch.get(label)
            # the first line of each epoch, and one every 30 s inside a long one
            if previous is None or previous[0] != m["epoch"] or time.monotonic() - previous[1] > 30:
                self.last_epoch[label] = (m["epoch"], time.monotonic())
                self.write(f"            {label} epoch {m['epoch']}/{m['epochs']}, step {m['step']}, "
                           f"{m['metric']} {float(m['value']):.3f}")
        elif (m := _BEST.search(event)) and self.last_best.get(label) != m["value"]:
            self.last_best[label] = m["value"]
            self.write(f"            {label} best {m['metric']} on val so far: {float(m['value']):.3f}")
        elif event == "Task failed with exception" and record.get("error_detail"):
            error = record["error_detail"][0]   # the exception raised; its causes are in the file
            self.write(f"            {error.get('exc_type', '')}: {str(error.get('exc_value', ''))[:600]}")


def _seconds(start: str | None, end: str | None) -> float | None:
    """A task's run time from its start and end (the API's `duration` read twice the real time in 3.1.8)."""
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def _label(task: str, index: int | str) -> str:
    return f"{task}[{index}]" if int(index) >= 0 else task
