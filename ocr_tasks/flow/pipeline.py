"""How a pipeline is declared: nodes with a name, a step function, the artifacts it takes and the one
it makes, and how it steers the run. Written once (ocr_tasks/flow/retraining.py), run by two runners
built from it: `run_local` (ocr_tasks/flow/local_runner.py, one process, `ocr-retrain run`) and
`build_dag` (ocr_tasks/flow/airflow_runner.py, one Airflow task per node). Kedro's `Pipeline` of
`node(...)`s and TFX's pipeline handed to a runner are the model.

A node's step is called as `run(ctx, *inputs)`: `ctx` the RunContext, the inputs the artifacts the
named earlier nodes returned (None for a node that did not run). Nothing here knows Airflow.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Role(enum.Enum):
    STEP = "step"                    # returns its artifact
    SHORT_CIRCUIT = "short_circuit"  # returns a bool: False ends the run quietly, nothing after it runs
    BRANCH = "branch"                # returns the name of the one node of `branches` that runs next
    APPROVAL = "approval"            # a person answers (the Airflow UI, or --approved-by by hand)


@dataclass(frozen=True)
class Approval:
    """What an APPROVAL node asks: its options, the node each one leads to, the answer when nobody gives one."""

    options: Mapping[str, str]          # option shown to the person -> the node it leads to
    default: str                        # the option taken when nobody answers in time
    request: Callable[..., tuple[str, str]]    # (ctx, *inputs) -> (subject, Markdown body)
    record: Callable[[Any], Any]        # the UI's raw answer -> the artifact later nodes get
    by_hand: Callable[[Any], tuple[str, Any]]   # (ctx) -> (option, artifact): the local runner asks nobody


@dataclass(frozen=True)
class Node:
    name: str                                   # the Airflow task id, the local runner's log name
    run: Callable[..., Any] | None              # the step; None for an APPROVAL node (a person answers)
    inputs: tuple[str, ...] = ()                # artifacts of earlier nodes, passed positionally
    output: str | None = None                   # the artifact this node makes
    role: Role = Role.STEP
    after: tuple[str, ...] = ()                 # nodes that must come first without handing an artifact
    map_over: tuple[str, str] | None = None     # (artifact, attribute): one run per item of that list
    when: Callable[[Any], bool] | None = None   # (ctx) -> False: the node is skipped this run (output None)
    branches: tuple[str, ...] = ()              # BRANCH: the nodes it may choose
    approval: Approval | None = None            # APPROVAL: the question and where each answer leads
    on_gpu: bool = False                        # the gpu pool and queue, with retries that resume
    publishes: bool = False                     # it moves the production model (the DAG's Asset)
    joins_optional: bool = False                # runs when no upstream failed, though some were skipped
    # (ctx, artifact, *inputs, report=link) -> the run's outcome in a line of Markdown, when this node decides it
    # (ocr_tasks/flow/headline.py): the Airflow run's note
    headline: Callable[..., str | None] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if (self.run is None) != (self.role is Role.APPROVAL):
            raise ValueError(f"node {self.name}: only an approval node has no step function")
        if self.role is Role.APPROVAL and self.approval is None:
            raise ValueError(f"node {self.name}: an approval node needs its Approval")
        if self.map_over and self.map_over[0] not in self.inputs:
            raise ValueError(f"node {self.name}: maps over {self.map_over[0]}, which is not one of its inputs")

    @property
    def next_choices(self) -> tuple[str, ...]:
        """The nodes a BRANCH or APPROVAL node chooses between."""
        return tuple(self.approval.options.values()) if self.approval else self.branches


@dataclass(frozen=True)
class Pipeline:
    """Nodes in an order that runs (each after what it needs); the declaration is checked on creation."""

    name: str
    nodes: tuple[Node, ...]
    doc: str = ""
    _by_name: dict[str, Node] = field(init=False, repr=False, compare=False)
    _made_by: dict[str, Node] = field(init=False, repr=False, compare=False)   # artifact -> its node

    def __post_init__(self) -> None:
        by_name: dict[str, Node] = {}
        made: dict[str, str] = {}
        for node in self.nodes:
            if node.name in by_name:
                raise ValueError(f"pipeline {self.name}: two nodes named {node.name}")
            for artifact in node.inputs:
                if artifact not in made:
                    raise ValueError(f"pipeline {self.name}: node {node.name} takes {artifact}, "
                                     "which no earlier node makes")
            for name in node.after:
                if name not in by_name:
                    raise ValueError(f"pipeline {self.name}: node {node.name} comes after {name}, no earlier node")
            if node.output:
                if node.output in made:
                    raise ValueError(f"pipeline {self.name}: {node.output} is made by {made[node.output]} "
                                     f"and by {node.name}")
                made[node.output] = node.name
            by_name[node.name] = node
        for node in self.nodes:
            unknown = [n for n in node.next_choices if n not in by_name]
            if unknown:
                raise ValueError(f"pipeline {self.name}: node {node.name} may lead to {unknown}, not declared")
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_made_by", {artifact: by_name[name] for artifact, name in made.items()})

    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]

    def producer(self, artifact: str) -> Node:
        return self._made_by[artifact]

    def direct_needs(self, node: Node) -> set[str]:
        """The nodes `node` needs first: its artifacts' makers, its `after`, the node choosing it."""
        needs = {self.producer(artifact).name for artifact in node.inputs} | set(node.after)
        needs |= {other.name for other in self.nodes if node.name in other.next_choices}
        return needs

    def upstream(self, node: Node) -> set[str]:
        """The nodes drawn as `node`'s edges: what it needs, less what it needs only through another
        need (the transitive reduction), so a graph shows the chain, not every hand-off."""
        needs = self.direct_needs(node)
        implied = set().union(*(self.ancestors(self[name]) for name in needs)) if needs else set()
        return needs - implied

    def ancestors(self, node: Node) -> set[str]:
        seen: set[str] = set()
        todo = list(self.direct_needs(node))
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.direct_needs(self[name]))
        return seen

    def descendants(self, names: Iterable[str]) -> set[str]:
        """`names` and every node that needs one of them, directly or not."""
        found = set(names)
        for node in self.nodes:   # declaration order is a run order: one pass suffices
            if self.direct_needs(node) & found:
                found.add(node.name)
        return found

    def until(self, last: str) -> "Pipeline":
        """The nodes up to and including `last` (`ocr-retrain ingest`: the chain up to merge)."""
        keep = self.ancestors(self[last]) | {last}
        return Pipeline(f"{self.name}[..{last}]", tuple(n for n in self.nodes if n.name in keep), self.doc)

    def picture(self) -> str:
        """The chain as text, one line per node with what it needs (README and the DAG's doc)."""
        lines = []
        for node in self.nodes:
            needs = sorted(self.upstream(node), key=[n.name for n in self.nodes].index)
            how = {Role.SHORT_CIRCUIT: " (stops the run when false)", Role.BRANCH: " (chooses one)",
                   Role.APPROVAL: " (a person answers)"}.get(node.role, "")
            extra = [f"one per item of {node.map_over[0]}.{node.map_over[1]}" if node.map_over else "",
                     "gpu pool" if node.on_gpu else "", "moves production" if node.publishes else ""]
            extra_text = f" [{', '.join(e for e in extra if e)}]" if any(extra) else ""
            lines.append(f"{' | '.join(needs) or 'start':>28} -> {node.name}{how}{extra_text}")
        return "\n".join(lines)
