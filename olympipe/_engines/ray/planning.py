"""How the Ray engine groups stages into actors: pure functions of the plan (no Ray).

Adjacent per-item stages with the same worker count and no branch between them run in one
actor call (a call costs about a millisecond of CPU); a stage that isolates crashes or
recycles its workers runs alone (a crash, or a recycling, must be one stage's). A stateful
stage behind a crash-isolated one, or behind one that streams (``explode``), is *held back*:
its calls wait until the submission is collected, so that it sees every chunk in order
although a crash upstream is repaired, or the rest of an exploded chunk comes, later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from olympipe._graph import Node, Plan
from olympipe._stages.base import StageSpec


@dataclass
class Group:
    """Stages that run together in the same actors: one, or a fused per-item chain."""

    nodes: list[Node]
    labels: list[str]
    count: int
    slots: int
    timeout: float | None = None  # a timeout stage: judged by the driver
    actors: list[Any] = field(default_factory=list)
    outstanding: list[int] = field(default_factory=list)
    rows: list[list[int]] = field(default_factory=list)  # per actor, per node: counter row
    make_actor: Any = None  # builds one more actor of this group (a replacement)
    sent: list[int] = field(default_factory=list)  # per actor: source items sent (recycling)

    @property
    def isolates_crashes(self) -> bool:
        return bool(getattr(self.head.spec, "isolates_crashes", False))

    @property
    def streams(self) -> bool:
        """Whether a call may leave part of its outputs for later calls (``explode``)."""
        return any(n.spec.streams for n in self.nodes)

    @property
    def drops(self) -> str | None:
        """The drop policy of its input (``on_full=``), if any."""
        policy = getattr(self.head.spec, "on_full", "block")
        return None if policy == "block" else str(policy)

    @property
    def items_per_worker(self) -> int | None:
        value: int | None = getattr(self.head.spec, "items_per_worker", None)
        return value

    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def tail(self) -> Node:
        return self.nodes[-1]


def plan_groups(plan: Plan, fuse: bool, pinned: Iterable[str], auto: Iterable[int] = ()) -> list[Group]:
    """The plan's stages grouped into actors, in graph order. ``auto``: the ids of
    ``count="auto"`` stages, whose pools may be resized: they fuse only with each other."""
    auto = set(auto)
    pinned = set(pinned)
    groups: list[Group] = []
    group_of: dict[int, Group] = {}
    for node in plan.stages:
        spec = node.spec
        assert isinstance(spec, StageSpec)
        upstream_group = group_of.get(node.inputs[0][0].id) if len(node.inputs) == 1 else None
        if (
            fuse
            and upstream_group is not None
            and _fuses_into(plan, upstream_group, node, pinned)
            and (node.id in auto) == (upstream_group.tail.id in auto)
        ):
            upstream_group.nodes.append(node)
            upstream_group.labels.append(plan.labels[node.id])
            upstream_group.slots = spec.output_slots
            group_of[node.id] = upstream_group
            continue
        group = Group([node], [plan.labels[node.id]], spec.count, spec.output_slots, spec.idle_timeout)
        groups.append(group)
        group_of[node.id] = group
    return groups


def _fusable(plan: Plan, node: Node, pinned: set[str]) -> bool:
    spec = node.spec
    # A replaceable stage runs alone: a crash must be one stage's, and so must a recycling.
    alone = spec.renumbers_output or spec.replaceable or plan.labels[node.id] in pinned  # type: ignore[union-attr]
    return spec.per_item and not alone


def _fuses_into(plan: Plan, group: Group, node: Node, pinned: set[str]) -> bool:
    """Whether ``node`` can run in the same call as ``group``, its only input: both
    per-item, same worker count, and nothing else reads the group's output."""
    upstream = group.tail
    return (
        node.inputs[0][0] is upstream
        and _fusable(plan, node, pinned)
        and _fusable(plan, upstream, pinned)
        and group.count == node.spec.count
        and getattr(node.spec, "on_full", "block") == "block"  # a dropping input heads a group
        and upstream.spec.output_slots == 1
        and len(plan.consumers[upstream.id][0]) == 1
    )


def held_back(groups: list[Group], group_of: dict[int, Group]) -> set[int]:
    """The groups whose calls wait until their submission is collected (ids): a stateful
    stage behind a crash-isolated or a streaming one, and whatever follows it. A crash
    upstream must be repaired, and the rest of an exploded chunk made, before such a stage
    sees the next chunk, or it would see later items first. A stage with a drop policy too:
    when its chunk's turn comes, the driver sees what else waits for it, and drops."""
    behind_late: set[int] = set()  # groups whose input may come after later chunks' input
    held: set[int] = set()
    for group in groups:
        upstream = [group_of[up.id] for up, _slot in group.head.inputs if up.id in group_of]
        if any(up.isolates_crashes or up.streams or id(up) in behind_late for up in upstream):
            behind_late.add(id(group))
        stateful = group.head.spec.ordered_input or group.tail.spec.ordered_input
        if (stateful and id(group) in behind_late) or group.drops or any(id(up) in held for up in upstream):
            held.add(id(group))
    return held
