"""A toy pipeline for tests/flow/test_pipeline.py: every role a node can have, on tiny artifacts, each
end writing what it saw to storage so the two runners' runs can be compared. Adding a step to a
pipeline is one entry in such a tuple: no runner changes."""

from __future__ import annotations

from ocr_tasks.flow.pipeline import Node, Pipeline, Role
from ocr_tasks.flow.run import Discovery
from ocr_tasks.ingest.check import ExportCheck
from ocr_tasks.ingest.exports import ExportRef

NAMES = ("alpha", "beta", "gamma")


def find(ctx) -> Discovery:
    return Discovery(new=[ExportRef(name, f"incoming/{name}/", name * 4, len(name)) for name in NAMES])


def go(ctx, found: Discovery) -> bool:
    return bool(found.new)


def check(ctx, ref: ExportRef) -> ExportCheck:
    return ExportCheck(ref, passed=ref.name != "beta", summary=f"{ref.name} checked in {ctx.step}")


def count(ctx, checks: list[ExportCheck]) -> dict:
    return {"passed": sorted(c.export.name for c in checks if c.passed), "seen": len(checks)}


def skipped_always(ctx) -> bool:
    return False


def never(ctx, counted: dict) -> dict:
    raise AssertionError("a node whose `when` is false must not run")


def choose(ctx, counted: dict) -> str:
    return "many" if len(counted["passed"]) >= 2 else "few"


def end(ctx, counted: dict, unused: dict | None) -> dict:
    record = {"end": ctx.step, "counted": counted, "unused": unused, "scratch": ctx.scratch.name}
    ctx.storage.put_json(f"toy/{ctx.run_id}/end.json", record)
    return record


TOY = Pipeline("toy_pipeline", (
    Node("find", find, output="found"),
    Node("go", go, inputs=("found",), role=Role.SHORT_CIRCUIT),
    Node("check", check, inputs=("found",), map_over=("found", "new"), output="checks", after=("go",)),
    Node("count", count, inputs=("checks",), output="counted", joins_optional=True),
    Node("maybe", never, inputs=("counted",), output="unused", when=skipped_always),
    Node("choose", choose, inputs=("counted",), role=Role.BRANCH, branches=("many", "few"), after=("maybe",),
         joins_optional=True),
    Node("many", end, inputs=("counted", "unused"), output="ended_many"),
    Node("few", end, inputs=("counted", "unused"), output="ended_few"),
))
