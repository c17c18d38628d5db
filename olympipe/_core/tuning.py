"""``count="auto"``: which stages share a worker, and how many workers each stage gets.

Two decisions, both pure functions of the plan and the budget:

* **Fusion.** Adjacent ``auto`` per-item stages (and the filters between them) run in the
  same workers as one :class:`~olympipe._stages.fused.FusedSpec`: a hop between processes
  costs a pickle, a pipe write and a read per chunk, and with large intermediates (decoded
  images) it costs more than the work. Measured on the seed image pipeline, one worker per
  stage ran at 0.5-0.9x ``Pool.imap`` whatever the counts; the same stages fused and given
  the whole budget run as ``Pool.imap`` does, with olympipe's chunking and shared memory.
  A plain ``explode()`` and ``filter`` between or after them join the group.
  Stages that need a process of their own are never fused: crash isolation and recycling
  (a death must be one stage's), ``ordered=False``, ``concurrency > 1`` (threads belong to
  one stage), several inputs or outputs, and a stage whose output is also read elsewhere.
* **Allocation.** ``workers=`` (default: the CPUs this process may use) is the budget of
  worker processes. Fixed counts are honoured first, every stateful or fixed stage counting
  its workers; each ``auto`` group gets one, and what is left is shared between them, one
  at a time in graph order. A budget below the fixed counts is an error; below fixed
  counts plus one per ``auto`` group, each ``auto`` group still gets its one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from olympipe._core.cpus import usable_cpus
from olympipe._graph import Endpoint, Node, Plan, consumers_of
from olympipe._stages.base import ParallelSpec, StageSpec
from olympipe._stages.fused import FusedSpec
from olympipe._stages.mapping import ExplodeSpec, FilterSpec


def is_auto(spec: Any) -> bool:
    """Whether a node's spec was given ``count="auto"``."""
    return isinstance(spec, ParallelSpec) and spec.auto


def fixed_workers(plan: Plan, groups: list[list[Node]] | None = None) -> int:
    """Workers of the stages whose count is not ``auto`` (and that no group takes in)."""
    fused = {n.id for g in groups or [] for n in g}
    return sum(n.spec.count for n in plan.stages if not is_auto(n.spec) and n.id not in fused)


def check_budget(plan: Plan, workers: int | None) -> None:
    """A ``workers=`` budget must leave room for every fixed count (checked before any
    process starts)."""
    if workers is None:
        return
    fixed = fixed_workers(plan, fusion_groups(plan))  # a filter or explode() fused costs none
    if workers < fixed:
        raise ValueError(
            f"workers={workers} is smaller than the {fixed} workers the stages with a fixed count need"
        )


def budget(workers: int | None) -> int:
    """The run's budget of worker processes."""
    return workers if workers is not None else usable_cpus()


@dataclass
class Tuned:
    """A plan with its ``auto`` stages fused and sized.

    A stage that may be resized during the run (see :attr:`start_with`) is planned with
    its most workers (its ``count``): its channels, credits and counters have room for
    them all; only ``start_with[node id]`` of them start."""

    plan: Plan
    members: dict[int, tuple[str, ...]] = field(default_factory=dict)  # fused node id -> labels
    auto: set[int] = field(default_factory=set)  # node ids of auto stages (fused or not)
    start_with: dict[int, int] = field(default_factory=dict)  # resizable node id -> first count
    budget: int = 0  # workers the resizable stages share


def tune(plan: Plan, workers: int | None, *, fuse: bool = True) -> Tuned:
    """``plan`` with adjacent ``auto`` stages fused (when ``fuse``) and every ``auto`` stage
    given its share of the budget. A plan without ``auto`` stages comes back as it is.

    With ``fuse`` (the local engine), when two or more auto stages share a budget larger
    than one worker each, they are resizable: the controller moves workers between them
    during the run (a stage that isolates crashes or recycles workers too: a death while
    workers move is handled as at any other time, in the dead worker's place)."""
    if not any(is_auto(n.spec) for n in plan.stages):
        return Tuned(plan)
    groups = fusion_groups(plan)
    units = _auto_units(plan, groups)
    total = budget(workers)
    if not fuse:  # the engine fuses by itself (Ray): every member gets its group's count
        count_of = dict(zip(units, allocate(total, fixed_workers(plan), len(units)), strict=True))
        for group in groups:
            for member in group:
                count_of[member.id] = count_of[group[-1].id]
        return _rewrite(plan, [], [count_of[i] for i in _auto_units(plan, [])])
    fixed = fixed_workers(plan, groups)
    counts = allocate(total, fixed, len(units))
    spare = total - fixed - len(units)
    if len(units) < 2 or spare < 1:
        return _rewrite(plan, groups, counts)
    # Every auto group may move: each has room for the whole share less one per other group.
    shared = sum(counts)
    tuned = _rewrite(plan, groups, [shared - (len(units) - 1)] * len(units))
    tuned.budget = shared
    for unit, first in zip(units, counts, strict=True):
        tuned.start_with[tuned.plan.aliases.get(unit, unit)] = first
    return tuned


def allocate(total: int, fixed: int, groups: int) -> list[int]:
    """Workers for each of ``groups`` auto groups: one each, then the rest of ``total``
    after ``fixed``, shared one at a time in order."""
    counts = [1] * groups
    spare = max(0, total - fixed - groups)
    for turn in range(spare):
        counts[turn % groups] += 1
    return counts


def fusion_groups(plan: Plan) -> list[list[Node]]:
    """Chains of adjacent fusable nodes with at least one ``auto`` stage, two or more long."""
    group_of: dict[int, list[Node]] = {}
    groups: list[list[Node]] = []
    for node in plan.stages:
        if not _fusable(node):
            continue
        upstream = node.inputs[0][0]
        chain = group_of.get(upstream.id)
        if chain is not None and len(plan.consumers[upstream.id][0]) == 1:
            chain.append(node)
        else:
            chain = [node]
            groups.append(chain)
        group_of[node.id] = chain
    return [g for g in groups if len(g) > 1 and any(is_auto(n.spec) for n in g)]


def _fusable(node: Node) -> bool:
    spec = node.spec
    if not isinstance(spec, StageSpec) or len(node.inputs) != 1 or spec.output_slots != 1:
        return False
    if isinstance(spec, FilterSpec):
        return True
    if isinstance(spec, ExplodeSpec) and spec.fn is None:
        # Its items come made by the stage before it (a list of crops, of PNGs): in the same
        # worker they need no pickling and no hop. Not explode(fn): fn may make an endless
        # iterable, which only a single worker can stream in bounded parts.
        return True
    return (
        is_auto(spec)
        and spec.per_item
        and getattr(spec, "on_full", "block") == "block"  # a dropping input is a stage's own
        and not spec.replaceable
        and not spec.renumbers_output
        and spec.parallelism == 1
    )


def _auto_units(plan: Plan, groups: list[list[Node]]) -> list[int]:
    """The ids of what gets a count of its own: each fused group's tail, each other auto node."""
    fused = {n.id for g in groups for n in g}
    tails = {g[-1].id for g in groups}
    return [n.id for n in plan.stages if n.id in tails or (is_auto(n.spec) and n.id not in fused)]


def _rewrite(plan: Plan, groups: list[list[Node]], counts: list[int]) -> Tuned:
    units = _auto_units(plan, groups)
    count_of = dict(zip(units, counts, strict=True))
    tail_group = {g[-1].id: g for g in groups}
    inside = {n.id for g in groups for n in g[:-1]}
    new: dict[int, Node] = {}  # old id -> its node in the new plan
    nodes: list[Node] = []
    labels: dict[int, str] = {}
    tuned = Tuned(plan)
    for node in plan.nodes:
        if node.id in inside:
            continue
        group = tail_group.get(node.id)
        head = group[0] if group is not None else node
        inputs = tuple((new.get(up.id, up), slot) for up, slot in head.inputs)
        spec: Any = node.spec
        if group is not None:
            names = tuple(plan.labels[n.id] for n in group)
            spec = FusedSpec(
                name="+".join(names),
                workers=count_of[node.id],
                auto=True,
                members=tuple(n.spec for n in group),  # type: ignore[misc]
                labels=names,
            )
        elif node.id in count_of:
            spec = replace(spec, workers=count_of[node.id])
        if spec is node.spec and all(a[0] is b[0] for a, b in zip(inputs, node.inputs, strict=True)):
            made = node
        else:
            made = Node(spec, inputs)
        new[node.id] = made
        nodes.append(made)
        if not made.is_source:
            labels[made.id] = "+".join(names) if group is not None else plan.labels[node.id]
            if group is not None:
                tuned.members[made.id] = names
            if node.id in count_of:
                tuned.auto.add(made.id)
        if group is not None:
            for member in group:
                new[member.id] = made
    sinks: list[Endpoint] = [(new.get(n.id, n), slot) for n, slot in plan.sinks]
    rewritten = Plan(nodes=nodes, sinks=sinks, consumers=consumers_of(nodes, sinks))
    rewritten.labels = labels
    rewritten.aliases = {old: made.id for old, made in new.items() if made.id != old}
    rewritten.feeds = plan.feeds  # sources are kept as they are
    tuned.plan = rewritten
    return tuned
