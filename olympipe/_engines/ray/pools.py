"""``count="auto"`` on Ray: actor pools that grow and shrink while the run goes on.

The same :class:`~olympipe._core.controller.Controller` as the local engine decides; this
module reads its inputs from the counters each actor call returns and applies its counts
through two callbacks of the run (start an actor in a place, retire one). An actor pool is
a list of *places* (counter rows, planned for the most actors the pool may have); the first
``live`` places have an actor that takes new chunks.

* **Load.** An actor never blocks on its output (the driver's in-flight window bounds the
  run), so a pool's window is its busy seconds and the rest of its actors' time idle.
* **Retiring** an actor takes it out of the places that get new chunks at once; its queued
  calls still run (an actor runs its calls in order), then its ``close()``
  (``close_method``), and the driver kills it once that returns. One retirement at a time,
  and no decision while one is under way: never more actors than the budget plus one.
* **Which pools move.** Two or more ``auto`` groups with a worker to spare between them,
  none of which streams (an ``explode`` keeps the rest of a chunk in its actor), isolates
  crashes or recycles its actors (those keep a fixed list of actors to repair): the rule of
  the local engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from olympipe._core.controller import WINDOW_SECONDS, Controller, Load
from olympipe._engines.ray.planning import Group
from olympipe._runtime.counters import BUSY, FIELDS


@dataclass
class Pool:
    """One resizable group: how many of its places have a live actor."""

    group: Group
    places: int  # the most actors it may have
    live: int
    least: int = 0
    most: int = 0
    last_busy: float = 0.0

    def __post_init__(self) -> None:
        self.least = self.most = self.live


@dataclass
class Pools:
    """Applies the controller's counts to the resizable pools of one Ray run."""

    pools: list[Pool]
    budget: int  # actors the pools share
    counters: list[float]  # the run's counter array (flat rows)
    grow: Callable[[Group, int], None]  # start an actor in a place
    retire: Callable[[Group, int], None]  # retire the actor of a place
    retiring: Callable[[], bool]  # whether a retired actor is still closing
    is_open: Callable[[Group], bool]  # whether a group may still get input
    started_at: float = field(default_factory=time.monotonic)
    resizes: list[tuple[float, str, int, int]] = field(default_factory=list)
    _controller: Controller = field(init=False)
    _last_tick: float = field(init=False)

    def __post_init__(self) -> None:
        self._controller = Controller(self.budget)
        self._last_tick = time.monotonic()

    def pool_of(self, group: Group) -> Pool | None:
        """The pool of ``group``, if it is resizable."""
        return next((p for p in self.pools if p.group is group), None)

    def tick(self) -> None:
        """If a window has passed: read the pools' loads and apply the controller's counts."""
        now = time.monotonic()
        seconds = now - self._last_tick
        if seconds < WINDOW_SECONDS:
            return
        self._last_tick = now
        loads = [self._load(pool, seconds) for pool in self.pools]
        if self.retiring():
            return  # measure again once the retirement is over
        targets = self._controller.decide(loads, seconds)
        for pool, load, target in zip(self.pools, loads, targets, strict=True):
            if not self.is_open(pool.group):
                continue
            if target < load.workers and not self.retiring():
                pool.live -= 1
                self.retire(pool.group, pool.live)
                self._record(pool, pool.live + 1, pool.live)
            elif target > load.workers and sum(p.live for p in self.pools) < self.budget:
                self.grow(pool.group, pool.live)
                pool.live += 1
                self._record(pool, pool.live - 1, pool.live)

    def _load(self, pool: Pool, seconds: float) -> Load:
        busy_total = sum(self.counters[row * FIELDS + BUSY] for rows in pool.group.rows for row in rows)
        busy, pool.last_busy = busy_total - pool.last_busy, busy_total
        idle = max(0.0, pool.live * seconds - busy)
        return Load(pool.live, pool.places, busy, idle, 0.0)

    def _record(self, pool: Pool, old: int, new: int) -> None:
        self.resizes.append((time.monotonic() - self.started_at, pool.group.labels[0], old, new))
        pool.least = min(pool.least, new)
        pool.most = max(pool.most, new)


def resizable_pools(groups: list[Group], auto: set[int]) -> tuple[list[Pool], int]:
    """The pools that may move, each with its most actors, and the budget they share (the
    actors the planning gave them: the run's budget less every fixed count); none when
    there is nothing to move."""
    movable = [
        g
        for g in groups
        if all(n.id in auto for n in g.nodes)
        and not (g.streams or g.isolates_crashes or g.items_per_worker is not None)
    ]
    shared = sum(g.count for g in movable)
    if len(movable) < 2 or shared <= len(movable):
        return [], 0
    most = shared - (len(movable) - 1)
    return [Pool(g, most, g.count) for g in movable], shared
