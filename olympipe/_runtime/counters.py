"""Per-worker counters in shared memory: written by one worker each, read by anyone.

One row of doubles per worker. Each worker adds to its own row after every chunk, so no
lock and no message is needed; readers (the feeder sizing chunks, progress bars, ``stats()``)
accept a value that is a chunk old.
"""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only readers build stats: a worker never imports them
    from olympipe._graph import Plan
    from olympipe._runtime.resizer import Resizer
    from olympipe.stats import StageStats

ITEMS_IN = 0
ITEMS_OUT = 1
ERRORS = 2
BUSY = 3  # seconds inside the stage's code
WAIT_IN = 4  # seconds waiting for input
BLOCKED_OUT = 5  # seconds blocked writing output
CPU = 6  # CPU seconds of the worker process (user + system)
PEAK_RSS_MB = 7  # the worker's peak resident memory
STARTED = 8  # time.time() at which the worker started its loop
RETRIED = 9  # attempts repeated after a retry_on exception
CRASHES = 10  # deaths survived: written by the supervisor when it replaces the worker
RECYCLED = 11  # replacements after max_items_per_worker: written by the supervisor
CURRENT = 12  # a crash-isolated worker: the index in its chunk of the item it runs (-1: unknown)
DROPPED = 13  # items its input's flow policy (on_full=) dropped
CHUNKS = 14  # chunks it took (a trace shows them per span)
LAST_CHUNK = 15  # 1 + the number of the last chunk it took in its input's order (0: none yet)
FIELDS = 16


class Counters:
    """The counter table of one run: ``workers`` rows of :data:`FIELDS` doubles."""

    def __init__(self, ctx: BaseContext | None, workers: int) -> None:
        size = max(1, workers) * FIELDS
        # Shared memory between processes; a plain list when every stage runs in this one.
        self.array: Any = ctx.RawArray("d", size) if ctx is not None else [0.0] * size

    def row(self, worker: int) -> list[float]:
        """A copy of one worker's row."""
        base = worker * FIELDS
        return list(self.array[base : base + FIELDS])

    def total(self, workers: list[int], field: int) -> float:
        """The sum of one field over some workers."""
        array = self.array
        return float(sum(array[w * FIELDS + field] for w in workers))

    def stage_stats(self, name: str, workers: list[int], end: float, *, auto: bool = False) -> StageStats:
        """One stage's figures at time ``end`` (``time.time()``): sums over its workers, and
        each percentage averaged over them, relative to each worker's own running time."""
        from olympipe.stats import StageStats

        rows = [self.row(w) for w in workers]
        shares = dict.fromkeys((BUSY, WAIT_IN, BLOCKED_OUT, CPU), 0.0)
        for row in rows:
            wall = end - row[STARTED] if row[STARTED] else 0.0
            if wall > 0:
                for f in shares:
                    shares[f] += 100 * row[f] / wall
        n = len(rows)
        return StageStats(
            name=name,
            workers=n,
            min_workers=n,
            max_workers=n,
            auto=auto,
            items_in=int(sum(r[ITEMS_IN] for r in rows)),
            items_out=int(sum(r[ITEMS_OUT] for r in rows)),
            errors=int(sum(r[ERRORS] for r in rows)),
            busy_pct=min(100.0, shares[BUSY] / n),
            wait_in_pct=min(100.0, shares[WAIT_IN] / n),
            blocked_out_pct=min(100.0, shares[BLOCKED_OUT] / n),
            peak_rss_mb=max(r[PEAK_RSS_MB] for r in rows),
            cpu_pct=shares[CPU] / n,
            retries=int(sum(r[RETRIED] for r in rows)),
            crashes=int(sum(r[CRASHES] for r in rows)),
            recycled=int(sum(r[RECYCLED] for r in rows)),
            dropped=int(sum(r[DROPPED] for r in rows)),
        )

    def member_stats(
        self, names: tuple[str, ...], workers: list[int], first_rows: list[int], end: float, *, auto: bool
    ) -> list[StageStats]:
        """The figures of each stage fused into the same workers: its own items, errors and
        busy time (member rows, from each worker's ``first_rows``); waiting, blocking and
        memory are the workers'; CPU is shared out by busy time."""
        from dataclasses import replace

        whole = self.stage_stats("+".join(names), workers, end, auto=auto)
        busy = [self.total([r + m for r in first_rows], BUSY) for m in range(len(names))]
        all_busy = sum(busy) or 1.0
        walls = [end - self.array[w * FIELDS + STARTED] for w in workers if self.array[w * FIELDS + STARTED]]
        wall = sum(walls)
        out = []
        for m, name in enumerate(names):
            rows = [r + m for r in first_rows]
            out.append(
                replace(
                    whole,
                    name=name,
                    items_in=int(self.total(rows, ITEMS_IN)),
                    items_out=int(self.total(rows, ITEMS_OUT)),
                    errors=int(self.total(rows, ERRORS)),
                    retries=int(self.total(rows, RETRIED)),
                    busy_pct=min(100.0, 100 * busy[m] / wall) if wall > 0 else 0.0,
                    cpu_pct=whole.cpu_pct * busy[m] / all_busy,
                )
            )
        return out


class Rows:
    """Which rows of a run's counters are whose: a row per worker place (``workers[node]``,
    filled as the places are made), then, for stages fused into one, a row per member per
    place; and how the rows make ``stats()``'s table, a line per stage as built."""

    def __init__(self, plan: Plan, members: dict[int, tuple[str, ...]], auto: set[int]) -> None:
        self.members = members  # fused node -> the labels of its stages
        self.auto = auto  # count="auto" nodes
        self.workers: dict[int, list[int]] = {}  # node -> its places' rows
        self.order = [n.id for n in plan.stages]
        self._first_member: dict[int, int] = {}  # fused node -> its first member row
        size = sum(n.spec.count for n in plan.stages)
        for node in plan.stages:
            if node.id in members:
                self._first_member[node.id] = size
                size += node.spec.count * len(members[node.id])
        self.size = size

    def member_row(self, node_id: int, position: int) -> int:
        """The first member row of a fused node's place ``position`` (-1: not fused)."""
        members = self.members.get(node_id)
        return self._first_member[node_id] + position * len(members) if members else -1

    def first_name(self, node_id: int, labels: dict[int, str]) -> str:
        """The name of a node's line in ``stats()``: a fused node's first stage."""
        members = self.members.get(node_id)
        return members[0] if members else labels[node_id]

    def stats(
        self, counters: Counters, labels: dict[int, str], resizer: Resizer | None, end: float
    ) -> list[StageStats]:
        """A line per stage as built (a fused stage's members each their own)."""
        from dataclasses import replace

        rows: list[StageStats] = []
        for node_id in self.order:
            places = self.workers.get(node_id)
            if not places:
                continue
            auto = node_id in self.auto
            members = self.members.get(node_id)
            resizable = resizer.stage_of(places[0]) if resizer is not None else None
            positions: list[int] | range = range(len(places))
            if resizable is not None:  # the places that ever had a worker
                positions = [p for p in positions if counters.row(places[p])[STARTED]] or range(1)
            used = [places[p] for p in positions]
            if members is None:
                made = [counters.stage_stats(labels[node_id], used, end, auto=auto)]
            else:
                firsts = [self.member_row(node_id, p) for p in positions]
                made = counters.member_stats(members, used, firsts, end, auto=auto)
            if resizable is not None:
                live = len(resizable.live) - resizable.retiring
                made = [
                    replace(r, workers=live, min_workers=resizable.least, max_workers=resizable.most)
                    for r in made
                ]
            rows.extend(made)
        return rows
