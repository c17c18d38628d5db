"""What the driver knows of each actor's work: the counters every call's meta adds to, the
chunk numbers a trace shows, and the stats table built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from olympipe._engines.ray.planning import Group
from olympipe._graph import Node, Plan
from olympipe._runtime.counters import (
    CHUNKS,
    CRASHES,
    FIELDS,
    LAST_CHUNK,
    PEAK_RSS_MB,
    RECYCLED,
    STARTED,
    Counters,
)
from olympipe.stats import StageStats, with_dropped

if TYPE_CHECKING:
    from olympipe._engines.ray.pools import Pools


class Metering:
    """The counters of one Ray run, a row per stage per actor place."""

    def __init__(self, plan: Plan, groups: list[Group], counters: Counters, auto: set[int]) -> None:
        self._plan = plan
        self._groups = groups
        self._counters = counters
        self._auto = auto

    def took(self, group: Group, index: int, number: int) -> None:
        """Actor ``index`` of ``group`` took a chunk of source chunk ``number`` (a trace's
        chunk numbers: on Ray, those of the source's chunks)."""
        array = self._counters.array
        for row_index in group.rows[index]:
            array[row_index * FIELDS + CHUNKS] += 1
            array[row_index * FIELDS + LAST_CHUNK] = number + 1

    def add_rows(self, group: Group, index: int, rows: list[list[float]]) -> None:
        """Add what one call's stages gained to the counters of actor ``index``'s rows."""
        array = self._counters.array
        for row_index, gained in zip(group.rows[index], rows, strict=True):
            _add_gained(array, row_index * FIELDS, gained)

    def trace_rows(self) -> list[tuple[str, int, int]]:
        """``(stage, actor, counter row)`` of every stage of every actor place (``trace=``)."""
        return [
            (self._plan.labels[node.id], actor, rows[position])
            for group in self._groups
            for actor, rows in enumerate(group.rows)
            for position, node in enumerate(group.nodes)
        ]

    def table(
        self, end: float, pools: Pools | None, dropped: Sequence[tuple[Node, int]]
    ) -> tuple[StageStats, ...]:
        """Every stage's row of ``stats()`` at ``end``, in graph order; ``dropped``: what each
        source's flow policy dropped, counted at the stages it feeds."""
        plan = self._plan
        rows = []
        for group in self._groups:
            pool = pools.pool_of(group) if pools is not None else None
            for position, node in enumerate(group.nodes):
                workers = [r[position] for r in group.rows]
                if pool is not None:  # the places that ever had an actor
                    workers = [w for w in workers if self._counters.row(w)[STARTED]] or workers[:1]
                row = self._counters.stage_stats(
                    plan.labels[node.id], workers, end, auto=node.id in self._auto
                )
                if pool is not None:
                    row = replace(row, workers=pool.live, min_workers=pool.least, max_workers=pool.most)
                rows.append(row)
        at_stage: dict[str, int] = {}
        for source, count in dropped:
            for consumer in plan.consumers[source.id][0]:
                if consumer.node is not None and count:
                    label = plan.labels[consumer.node.id]
                    at_stage[label] = at_stage.get(label, 0) + count
        rows = with_dropped(rows, at_stage)
        order = {n.id: i for i, n in enumerate(plan.stages)}
        labels = {plan.labels[n.id]: order[n.id] for n in plan.stages}
        rows.sort(key=lambda r: labels[r.name])
        return tuple(rows)


def _add_gained(array: Any, at: int, gained: list[float]) -> None:
    """Add one call's gains to a row: sums, but the first start and the highest peak; the
    crash and recycle counts are the driver's own."""
    for f, value in enumerate(gained):
        if f == STARTED:
            if value and (not array[at + f] or value < array[at + f]):
                array[at + f] = value
        elif f == PEAK_RSS_MB:
            array[at + f] = max(array[at + f], value)
        elif f not in (CRASHES, RECYCLED):
            array[at + f] += value
