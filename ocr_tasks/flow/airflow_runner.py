"""The Airflow runner: a pipeline declaration (ocr_tasks/flow/pipeline.py) built into a DAG, one task
per node. The one module of the package that knows Airflow (the DAG files in dags/ call it); the steps,
storage, ingest, training and release never import it.

How each role becomes a task: a step is a TaskFlow `@task`, a short-circuit `@task.short_circuit`
(False skips everything after it), a branch `@task.branch`, an approval the standard provider's
HITLBranchOperator (Required Actions in the UI), a node that maps over a list a mapped task
(`.expand`), a gpu node lands in the gpu pool and queue with retries that resume.

Artifacts travel through XCom in the one codec (ocr_tasks/codec.py). A task pulls what it needs
from the nodes that made it; the graph draws only each node's direct needs (`Pipeline.upstream`),
so the Graph view shows the chain, not every hand-off.

Airflow is imported here at module level: only DAG files and Airflow workers import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import Asset, Param, get_current_context, task

from ocr_tasks import codec
from ocr_tasks.flow.pipeline import Node, Pipeline, Role

log = logging.getLogger("ocr_retraining")

# Names the deployment creates (docker/, the demo): the pool and queue GPU tasks wait on, and the
# storage connection (AWS type: login/password = keys, extra endpoint_url / region_name)
GPU_POOL = "gpu"
GPU_QUEUE = "gpu"
STORAGE_CONNECTION = "ocr_retrain_s3"
# who the tasks are when they write the run's note through Airflow's REST API (HTTP type: login/password of a user
# allowed to edit DAG runs; host = the api-server when it is not the execution API's). Not needed where the simple
# auth manager lets everyone in (`make ui`, the demo): the api-server hands out a token without a password there.
API_CONNECTION = "ocr_retrain_airflow_api"
GPU_RETRIES = 2
ANSWER_KEY = "answer"        # the approval's XCom: the person's answer as the HITL operator gives it
ARTIFACT_KEY = "artifact"    # a node's artifact; the return value is kept for what Airflow reads there:
                             # a short-circuit's bool, a branch's choice, the list a mapped node expands over


# --------------------------------------------------------------------------- run context from Airflow


def storage_credentials() -> dict[str, Any] | None:
    """Keys and endpoint from the Airflow connection `ocr_retrain_s3`, or None (-> the environment, as
    `ocr-retrain` reads it). AWS type: login/password = keys; extra endpoint_url, region_name,
    aws_session_token; or host as the endpoint. Never logged."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import Connection

    try:
        return credentials_of(Connection.get(STORAGE_CONNECTION))
    except AirflowNotFoundException:
        return None


def credentials_of(connection: Any) -> dict[str, Any]:
    """Storage settings from an AWS-type Airflow connection (the task SDK's or the api-server's)."""
    extra = getattr(connection, "extra_dejson", None) or {}
    return {"access_key_id": connection.login or None, "secret_access_key": connection.password or None,
            "session_token": extra.get("aws_session_token"),
            "endpoint_url": extra.get("endpoint_url") or connection.host or None,
            "region": extra.get("region_name") or extra.get("region")}


def context_from_params(params: Mapping[str, Any], run_id: str, credentials: Mapping[str, Any] | None = None, *,
                        run_type: str = "manual", triggered_by: str | None = None) -> Any:
    """A RunContext from the DAG's Params (the trigger form). The deployed config is the floor: gate
    Params may only tighten it, `require_approval` only ask for approval, unless the deployment's
    `trigger.*` allows more (ocr_tasks/flow/run.py: run_overrides). Who triggered the run, its Params
    and what they changed travel in the request to run.json and the manifest.

    StorageSettings keeps the secrets out of its repr, so logging the context is safe.
    """
    from ocr_tasks.config import load_config
    from ocr_tasks.flow.run import (GATE_PARAMS, RunContext, RunRequest, Trigger, approval_choice, run_overrides,
                                    sanitize_run_id)
    from ocr_tasks.storage.s3 import storage_from_config

    deployed = load_config()
    overrides, overridden = run_overrides(deployed, thresholds={key: params.get(key) for key in GATE_PARAMS},
                                          require_approval=approval_choice(params.get("require_approval")))
    config = load_config(overrides=overrides, overrides_from="trigger form Param") if overrides else deployed
    epochs = params.get("epochs")
    trigger = Trigger(run_type, triggered_by, params=dict(params), overridden=overridden)
    request = RunRequest(sanitize_run_id(run_id), RunRequest.models_from_choice(config, params.get("models", "both")),
                         force=bool(params.get("force")), epochs=int(epochs) if epochs is not None else None,
                         dry_run=bool(params.get("dry_run")), trigger=trigger)
    return RunContext(config, storage_from_config(config, credentials=dict(credentials) if credentials else None),
                      request)


def _task_context(node: Node) -> Any:
    airflow = get_current_context()
    dag_run = airflow.get("dag_run")
    run_type = getattr(getattr(dag_run, "run_type", None), "value", None) or str(getattr(dag_run, "run_type", "manual"))
    return context_from_params(airflow["params"], airflow["run_id"], storage_credentials(), run_type=run_type,
                               triggered_by=getattr(dag_run, "triggering_user_name", None)).for_step(node.name)


# --------------------------------------------------------------------------- the run's note (its outcome at a glance)


def ui_path(path: str) -> str:
    """A path on the Airflow UI's origin, under the deployment's base URL path (`[api] base_url`)."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    prefix = urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return prefix + path


def _pipeline_api() -> Any:
    """Airflow's REST API as the pipeline: the connection `ocr_retrain_airflow_api` (its user logs in, at its host
    when it names one), else the api-server the tasks already report to (the execution API's), whose all-admins
    mode hands out a token without a password (`make ui`, the demo)."""
    from airflow.configuration import conf
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import Connection

    from ocr_tasks.embedded.local_airflow import AirflowApi

    execution = conf.get("core", "execution_api_server_url", fallback="") or ""
    base = execution.split("/execution", 1)[0].rstrip("/") or "http://localhost:8080"
    try:
        connection = Connection.get(API_CONNECTION)
    except AirflowNotFoundException:
        connection = None
    if connection is None or not connection.login:
        return AirflowApi(base=base)
    if connection.host:
        base = f"{connection.schema or 'http'}://{connection.host}:{connection.port or 8080}"
    return AirflowApi(base=base, credentials=(connection.login, connection.password or ""))


def set_run_note(dag_id: str, run_id: str, note: str) -> bool:
    """The run's note in the UI (Markdown), through Airflow's REST API: tasks have no other way to write it in
    Airflow 3. Best effort: a note that cannot be written is a warning naming the fix, never a failed task."""
    try:
        _pipeline_api().set_note(dag_id, run_id, note[:1000])
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("the run's note (its outcome in the UI) was not set: %s: %s. Where the UI has a login, add the "
                    "Airflow connection %s (login/password of a user who may edit DAG runs)",
                    type(exc).__name__, exc, API_CONNECTION)
        return False


def _show_headline(node: Node, ctx: Any, result: Any, inputs: list[Any]) -> None:
    """The node's headline as the run's note. Never fails the task: the step's work is done by now (a publish has
    moved production), and a note is worth a warning, not a failed run."""
    if node.headline is None:
        return
    from ocr_tasks.flow.headline import report_path

    try:
        airflow = get_current_context()
        dag_id, run_id = airflow["dag"].dag_id, airflow["run_id"]
        text = node.headline(ctx, result, *inputs, report=ui_path(report_path(dag_id, run_id)))
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: the run's note was not written: %s: %s", node.name, type(exc).__name__, exc)
        return
    if text:
        log.info("outcome: %s", text.splitlines()[0])
        set_run_note(dag_id, run_id, text)


def on_failure(context: dict[str, Any]) -> None:
    """One clear line per failed task: which task, which run, what went wrong (no secrets, no traceback)."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    summary = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception recorded (see the task log)"
    if len(summary) > 500:
        summary = summary[:500] + "..."
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    where = f"{task_id}[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else task_id
    attempt = getattr(ti, "try_number", "?")
    run_id = context.get("run_id", "?")
    dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(ti, "dag_id", "?")
    log.error("%s FAILED: task %s, run %s, try %s: %s", dag_id, where, run_id, attempt, summary)
    from ocr_tasks.untrusted import for_markdown   # called once retries are spent: the run fails here

    set_run_note(str(dag_id), str(run_id), f"**Failed** in task `{where}` (try {attempt}): {for_markdown(summary)}"
                                           "\n\nThe task's log has the details.")
    try:  # the optional webhook / email (ocr_tasks/flow/notify.py); a notification problem never masks the failure
        from ocr_tasks.config import load_config
        from ocr_tasks.flow.notify import notify, task_failed

        notify(task_failed(where, str(run_id), attempt, summary, getattr(ti, "log_url", None)),
               load_config().notifications)
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: failure notification not sent: %s", dag_id, exc)


# --------------------------------------------------------------------------- nodes -> tasks


def _inputs(pipeline: Pipeline, node: Node, ti: Any, item: Any = None) -> list[Any]:
    """The node's artifacts, pulled from the tasks that made them (None for a task that did not run); a
    mapped instance gets its `item` in place of the list it was mapped from."""
    values = []
    for artifact in node.inputs:
        if node.map_over and artifact == node.map_over[0]:
            values.append(codec.load(item))
            continue
        producer = pipeline.producer(artifact)
        if producer.role is Role.APPROVAL:
            answer = ti.xcom_pull(task_ids=producer.name, key=ANSWER_KEY)
            values.append(producer.approval.record(answer) if answer else None)
            continue
        value = ti.xcom_pull(task_ids=producer.name, key=ARTIFACT_KEY)
        if producer.map_over:   # every mapped instance's artifact, by map index (one instance comes back bare)
            value = [] if value is None else value if isinstance(value, list) else [value]
        values.append(codec.load(value))
    return values


def _callable(pipeline: Pipeline, node: Node):
    mapped_attributes = {other.map_over[1] for other in pipeline.nodes
                         if other.map_over and pipeline.producer(other.map_over[0]) is node}
    if len(mapped_attributes) > 1:   # Airflow maps over a task's return value only
        raise ValueError(f"{pipeline.name}: nodes map over {sorted(mapped_attributes)} of {node.name}: one at most")
    mapped_attribute = next(iter(mapped_attributes), None)

    def run_node(item: Any = None) -> Any:
        from airflow.exceptions import AirflowSkipException

        ctx = _task_context(node)
        if node.when is not None and not node.when(ctx):
            raise AirflowSkipException(f"{node.name}: not asked for in this run ({node.when.__name__})")
        ti = get_current_context()["ti"]
        inputs = _inputs(pipeline, node, ti, item)
        result = node.run(ctx, *inputs)
        _show_headline(node, ctx, result, inputs)
        if node.role in (Role.SHORT_CIRCUIT, Role.BRANCH):
            return result
        ti.xcom_push(key=ARTIFACT_KEY, value=codec.dump(result))
        if mapped_attribute is None:
            return None
        return [codec.dump(each) for each in getattr(result, mapped_attribute)]   # what the mapped node expands over

    run_node.__name__ = node.name
    run_node.__doc__ = node.doc
    return run_node


class ApprovalTask(HITLBranchOperator):
    """An APPROVAL node: HITLBranchOperator whose subject and body the node's `request` writes when the
    task starts (the report is written then, so the person can read it first, one click away in the body). The
    answer (options, comment, who, when) is kept as the XCom "answer" for the nodes after it.

    No option is the operator's `defaults`: Airflow's form draws the defaults as the filled primary button, and a
    Reject drawn primary beside a grey Approve invites the wrong click. No answer in time still counts as the
    node's default (Reject): the scheduler resumes the task with a timeout, answered here as that option."""

    def __init__(self, *, pipeline: Pipeline, node: Node, **kwargs: Any) -> None:
        super().__init__(subject=f"{node.name}?", **kwargs)
        self._pipeline, self._node = pipeline, node

    def execute(self, context: Any) -> Any:
        from ocr_tasks.flow.headline import report_path

        ctx = _task_context(self._node)
        inputs = _inputs(self._pipeline, self._node, context["ti"])
        link = ui_path(report_path(context["dag"].dag_id, context["run_id"]))
        self.subject, self.body = self._node.approval.request(ctx, *inputs, report_link=link)
        _show_headline(self._node, ctx, None, inputs)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("error_type") == "timeout":   # nobody answered in time: the node's default, by nobody
            event = self._answer_timeout(context)
        # pushed first: branching ends the task by raising (Airflow 3 skips the other branch that way)
        at = event.get("responded_at")
        context["ti"].xcom_push(key=ANSWER_KEY, value={
            "chosen_options": list(event.get("chosen_options") or []),
            "params_input": dict(event.get("params_input") or {}),
            "responded_at": at.isoformat() if hasattr(at, "isoformat") else at,
            "responded_by_user": event.get("responded_by_user")})
        return super().execute_complete(context=context, event=event)

    def _answer_timeout(self, context: Any) -> dict[str, Any]:
        """The default as the request's answer, so Required Actions closes it (a late click is refused there) and
        run.json says timed out. Should a person answer in that very instant, the API refuses this second answer:
        the run still takes the timeout, and says so in a warning."""
        from airflow.sdk.execution_time.hitl import update_hitl_detail_response
        from airflow.sdk.timezone import utcnow

        answer = {"chosen_options": [self._node.approval.default], "params_input": {}, "responded_at": utcnow(),
                  "responded_by_user": None}
        try:
            update_hitl_detail_response(context["ti"].id, answer["chosen_options"], {})
        except Exception as exc:  # noqa: BLE001
            log.warning("approval timed out; the request could not be closed in Required Actions: %s", exc)
        return answer


def build_tasks(pipeline: Pipeline, *, approval_timeout: timedelta, gpu_retry_delay: timedelta,
                publishes_to: Asset | None = None) -> dict[str, Any]:
    """Every node as a task inside the current `with DAG` / `@dag` body, wired by `Pipeline.upstream`."""
    made: dict[str, Any] = {}
    for node in pipeline.nodes:
        options: dict[str, Any] = {"task_id": node.name}
        if node.on_gpu:
            options.update(pool=GPU_POOL, queue=GPU_QUEUE, retries=GPU_RETRIES, retry_delay=gpu_retry_delay)
        if node.joins_optional:
            options["trigger_rule"] = "none_failed"
        if node.publishes and publishes_to is not None:
            options["outlets"] = [publishes_to]
        if node.role is Role.APPROVAL:
            made[node.name] = ApprovalTask(
                pipeline=pipeline, node=node, task_id=node.name, options=list(node.approval.options),
                options_mapping=dict(node.approval.options), response_timeout=approval_timeout, doc_md=node.doc,
                params={"comment": Param("", type="string", title="Your reason (required)",
                                         description="Why you approve or reject: both buttons stay disabled until "
                                                     "it is filled. It is kept in run.json and, for a publish, in "
                                                     "the model's manifest, beside your name and the time.")})
            continue
        decorator = {Role.SHORT_CIRCUIT: task.short_circuit, Role.BRANCH: task.branch}.get(node.role, task)
        operator = decorator(**options)(_callable(pipeline, node))
        if node.map_over:
            source = made[pipeline.producer(node.map_over[0]).name]
            made[node.name] = operator.expand(item=source)
        else:
            made[node.name] = operator()
    for node in pipeline.nodes:
        for upstream in pipeline.upstream(node):
            made[upstream] >> made[node.name]
    return made
