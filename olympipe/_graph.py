"""The pipeline graph as data, and the plan of the sub-graph a terminal call needs.

A :class:`Node` is immutable: an operator spec plus the endpoints it reads. An *endpoint*
is ``(node, slot)``; every node has one output slot except ``split``, which has ``n``.
Nodes get increasing ids as they are built, and a node's inputs always exist before it, so
sorting by id is a topological order and the graph cannot have cycles.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from olympipe._stages.base import StageSpec

# Process-wide: node ids must differ between every pipeline of the process, since one graph
# may join pipelines built anywhere (gather, wait_for_all_results).
_ids = itertools.count()


@dataclass(frozen=True)
class SourceSpec:
    """An iterable pulled lazily in the caller's process by a feeder thread."""

    iterable: Iterable[Any]
    name: str = "source"
    one_item_chunks: bool = False  # every item its own chunk (a server's requests)
    server: bool = False  # an HTTP server (Pipeline.server): per-item stages only
    on_full: str = "block"  # the flow policy where its items wait (olympipe/_core/flow.py)

    # The facts engines read off a stage spec, so that a node's spec answers either way.
    ordered_input: ClassVar[bool] = False
    per_item: ClassVar[bool] = False
    one_to_one: ClassVar[bool] = True
    streams: ClassVar[bool] = False
    parallelism: ClassVar[int] = 1
    renumbers_output: ClassVar[bool] = False

    @property
    def count(self) -> int:
        """A source has one producer, the feeder."""
        return 1

    @property
    def output_slots(self) -> int:
        """A source has one output."""
        return 1


@dataclass(frozen=True, eq=False)
class Node:
    """One operator (or source) of the graph and the endpoints it reads from."""

    spec: StageSpec | SourceSpec
    inputs: tuple[Endpoint, ...] = ()
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def is_source(self) -> bool:
        """Whether this node is fed by the caller's process rather than workers."""
        return isinstance(self.spec, SourceSpec)


Endpoint = tuple[Node, int]


@dataclass
class Consumer:
    """Where one output slot of a node goes: the inbox of ``node`` (on ``port``) or sink ``sink``."""

    port: int
    node: Node | None = None
    sink: int | None = None


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out, beyond what the graph says: set on ``Pipeline(...)`` and
    per terminal call."""

    start_method: str | None = None
    queue_size: int | None = None
    progress: bool = False
    workers: int | None = None  # the run's budget of worker processes (None: usable CPUs)
    metrics_port: int | None = None  # serve Prometheus metrics there while a run lasts
    trace: str | os.PathLike[str] | None = None  # write the run's timeline there at its end
    resume: str | os.PathLike[str] | None = None  # record the finished items there
    resume_key: Callable[[Any], Any] | None = None  # skip finished items by key, not position
    resume_if_changed: bool = False  # go on from a progress file of another graph


@dataclass
class Plan:
    """The sub-graph needed by some sinks: nodes in topological order and their edges."""

    nodes: list[Node]
    sinks: list[Endpoint]
    consumers: dict[int, list[list[Consumer]]]  # node id -> per slot -> consumers
    labels: dict[int, str] = field(default_factory=dict)  # stage node id -> unique name
    # A plan an engine rewrote (fused stages): the builder's node id -> this plan's node id
    aliases: dict[int, int] = field(default_factory=dict)
    # What a source node's feeder reads instead of its own iterable (a resumed run's rest)
    feeds: dict[int, Iterable[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Stage names made unique (``name``, ``name#2``, ...) for bars, stats and errors.
        seen: dict[str, int] = {}
        for node in self.stages:
            name = node.spec.name
            seen[name] = seen.get(name, 0) + 1
            self.labels[node.id] = name if seen[name] == 1 else f"{name}#{seen[name]}"

    def sink_of(self, endpoint: Endpoint) -> int:
        """The index of the sink that collects ``endpoint``."""
        node_id = self.aliases.get(endpoint[0].id, endpoint[0].id)
        for index, (node, slot) in enumerate(self.sinks):
            if node.id == node_id and slot == endpoint[1]:
                return index
        raise KeyError("this pipeline is not a sink of the plan")

    def source_length(self, node: Node) -> int | None:
        """How many items a source node yields, when its iterable says."""
        return length_of(self.iterable(node))

    def iterable(self, node: Node) -> Iterable[Any]:
        """What the feeder of source ``node`` reads."""
        assert isinstance(node.spec, SourceSpec)
        return self.feeds.get(node.id, node.spec.iterable)

    @property
    def stages(self) -> list[Node]:
        """The nodes that run in worker processes."""
        return [n for n in self.nodes if not n.is_source]

    @property
    def sources(self) -> list[Node]:
        """The nodes fed by the caller's process."""
        return [n for n in self.nodes if n.is_source]

    def wanted(self, node_id: int, ended: set[int]) -> bool:
        """Whether some sink still needs what ``node_id`` produces, given the nodes whose
        output has ``ended`` (a source stops being pulled when nothing wants it)."""
        if node_id in ended:
            return False
        for slot in self.consumers[node_id]:
            for consumer in slot:
                if consumer.sink is not None:
                    return True
                assert consumer.node is not None
                if self.wanted(consumer.node.id, ended):
                    return True
        return False

    def producers(self, node: Node) -> int:
        """How many processes (or feeders) write into ``node``'s inbox."""
        return sum(upstream.spec.count for upstream, _slot in node.inputs)


def length_of(iterable: Iterable[Any]) -> int | None:
    """``len(iterable)`` when it has one (a list, a range), else ``None`` (a generator)."""
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def upstream_of(endpoints: Iterable[Endpoint]) -> list[Node]:
    """Every node the given endpoints read from, themselves included, in graph order."""
    seen: dict[int, Node] = {}
    stack = [node for node, _slot in endpoints]
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        stack.extend(upstream for upstream, _slot in node.inputs)
    return sorted(seen.values(), key=lambda n: n.id)


def sources_of(endpoints: Iterable[Endpoint]) -> list[Node]:
    """The source nodes the given endpoints read from, in graph order."""
    return [n for n in upstream_of(endpoints) if n.is_source]


def plan_for(endpoints: Sequence[Endpoint]) -> Plan:
    """The plan that runs exactly the stages the given endpoints need."""
    sinks: list[Endpoint] = []
    for endpoint in endpoints:
        if not any(endpoint[0] is n and endpoint[1] == s for n, s in sinks):
            sinks.append(endpoint)
    nodes = upstream_of(sinks)
    return Plan(nodes=nodes, sinks=sinks, consumers=consumers_of(nodes, sinks))


def consumers_of(nodes: list[Node], sinks: list[Endpoint]) -> dict[int, list[list[Consumer]]]:
    """Per node and output slot: the nodes (and sinks) that read it."""
    consumers: dict[int, list[list[Consumer]]] = {
        n.id: [[] for _ in range(n.spec.output_slots)] for n in nodes
    }
    for node in nodes:
        for port, (upstream, slot) in enumerate(node.inputs):
            consumers[upstream.id][slot].append(Consumer(port=port, node=node))
    for index, (node, slot) in enumerate(sinks):
        consumers[node.id][slot].append(Consumer(port=0, sink=index))
    return consumers


def describe(node: Node) -> str:
    """One line for a node: its name, workers and kind."""
    spec = node.spec
    if isinstance(spec, SourceSpec):
        length = length_of(spec.iterable)
        size = f", {length:,} items" if length is not None else ""
        return f"source ({type(spec.iterable).__name__}{size})"
    auto = getattr(spec, "auto", False)
    workers = " x auto" if auto else (f" x{spec.count}" if spec.count > 1 else "")
    return f"{spec.name}{workers} [{type(spec).__name__.removesuffix('Spec').lower()}]"


def render(plan: Plan) -> str:
    """The plan as an ASCII tree from each source; a node reached twice (gather) is shown once."""
    lines: list[str] = []
    shown: set[int] = set()

    def walk(node: Node, prefix: str, last: bool, root: bool, slot_label: str) -> None:
        branch = "" if root else ("`-- " if last else "|-- ")
        again = node.id in shown
        text = describe(node) + (" (see above)" if again else "")
        lines.append(f"{prefix}{branch}{slot_label}{text}")
        if again:
            return
        shown.add(node.id)
        children: list[tuple[Consumer, str]] = []
        for slot, consumers in enumerate(plan.consumers[node.id]):
            label = f"[{slot}] " if node.spec.output_slots > 1 else ""
            children.extend((c, label) for c in consumers)
        child_prefix = prefix + ("" if root else ("    " if last else "|   "))
        for i, (consumer, label) in enumerate(children):
            is_last = i == len(children) - 1
            if consumer.node is not None:
                walk(consumer.node, child_prefix, is_last, False, label)
            else:
                lines.append(f"{child_prefix}{'`-- ' if is_last else '|-- '}{label}=> result {consumer.sink}")

    for source in plan.sources:
        walk(source, "", True, True, "")
    return "\n".join(lines)
