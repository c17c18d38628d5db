"""How big a chunk of source items is: one rule for every engine, with a policy per hop.

A chunk amortises the fixed cost of a hop (a pickle and a pipe write on the local engine, an
actor call through Ray's object store) over its items. The rule is the same everywhere: aim
at :attr:`ChunkPolicy.target_seconds` of work at the costliest stage per item of it, never
more than :attr:`~ChunkPolicy.max_items` items or :attr:`~ChunkPolicy.max_bytes` of buffers,
and never hold a partial chunk longer than :attr:`~ChunkPolicy.hold_seconds` waiting for
more (a slow source's items go on at once). The numbers differ because the hops do: a pipe
hop costs tens of microseconds, an actor call about a millisecond of CPU, so a Ray chunk
carries ten times the work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from olympipe._runtime.counters import BUSY, ITEMS_IN


@dataclass(frozen=True)
class ChunkPolicy:
    """The bounds of one engine's chunks."""

    target_seconds: float  # work per chunk at the costliest stage
    hold_seconds: float  # the longest a partial chunk waits for more items
    max_items: int
    max_bytes: int  # large items travel alone: bounded memory, balanced workers


LOCAL = ChunkPolicy(target_seconds=0.001, hold_seconds=0.001, max_items=4096, max_bytes=1 << 20)
RAY = ChunkPolicy(target_seconds=0.01, hold_seconds=0.005, max_items=1024, max_bytes=8 << 20)


def costliest(counters: Any, stages: Iterable[tuple[list[int], int]]) -> float | None:
    """Seconds of work per item at the costliest stage, from its counters rows (``stages``:
    per stage, its rows and the items one worker works on at once); ``None`` before any."""
    worst: float | None = None
    for rows, parallel in stages:
        items = counters.total(rows, ITEMS_IN)
        if items:
            per_item = counters.total(rows, BUSY) / items / parallel
            worst = per_item if worst is None else max(worst, per_item)
    return worst


def items_for(policy: ChunkPolicy, cost: float | None, at_least: int = 1) -> int:
    """Items per chunk for a costliest stage of ``cost`` seconds per item."""
    if cost is None or cost <= 0:
        return policy.max_items
    return int(min(max(policy.target_seconds / cost, at_least, 1), policy.max_items))
