"""Workers of ``count="auto"`` stages, started and retired while a run goes on.

A resizable stage is planned with its most workers (its *places*: rows of counters, reader
and writer counts of its channels, credit windows), and only some places have a live
worker. Every window, :meth:`Resizer.tick` reads the stages' counters and asks the
:class:`~olympipe._core.controller.Controller` for counts, then:

* **grows** a stage by starting a worker in one of its empty places, the way a replacement
  starts (from the fork server: the caller has threads by now). Each channel the stage
  writes into counts one more producer first (``Channel.producer_added``), so that its end
  of stream waits for the newcomer; a stage whose output has already ended is not grown.
* **shrinks** a stage by leaving a *retire request* in a counter its workers share: the
  first worker to finish a chunk takes it, runs its stage's ``close()`` (``close_method``)
  and exits holding nothing (a stage that can be resized has several places, so no worker
  keeps chunks for later: its chunks are put back in order downstream). Once it has
  exited, the caller counts it out of each channel it wrote into, as it would have done
  at its end.

At most one worker is retiring at a time, and a stage grows only while the live workers
(the retiring one aside) are fewer than the budget: never more than the budget plus one.
Places never used are counted out of the channels when the run starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from olympipe._core.controller import WINDOW_SECONDS, Controller, Load
from olympipe._runtime.counters import BLOCKED_OUT, BUSY, FIELDS, WAIT_IN
from olympipe._transport.channel import Channel


@dataclass
class Resizable:
    """One resizable stage: its places (worker rows) and who lives in them."""

    label: str
    places: list[int]
    live: set[int]
    retire: Any  # a shared ``Value('i')``: retire requests, taken by its workers
    outputs: list[Channel]  # every channel its workers write into
    movable: bool = True  # False: keeps its first count (its stage does not pickle)
    least: int = 0
    most: int = 0
    retiring: int = 0
    last: tuple[float, float, float] = (0.0, 0.0, 0.0)  # busy, waited, blocked at the last tick

    def __post_init__(self) -> None:
        self.least = self.most = len(self.live)


@dataclass
class Resizer:
    """Applies the controller's counts to the resizable stages of one run."""

    stages: list[Resizable]
    budget: int
    counters: Any  # the run's counter array
    start: Callable[[int], Any]  # starts a worker in a place; returns it (None: not started)
    started_at: float = field(default_factory=time.monotonic)
    resizes: list[tuple[float, str, int, int]] = field(default_factory=list)
    _controller: Controller = field(init=False)
    _movable: list[Resizable] = field(init=False)
    _next: float = field(init=False)
    _last_tick: float = field(init=False)

    def __post_init__(self) -> None:
        fixed = sum(len(s.live) for s in self.stages if not s.movable)
        self._movable = [s for s in self.stages if s.movable]
        self._controller = Controller(self.budget - fixed)
        self._last_tick = time.monotonic()
        self._next = self._last_tick + WINDOW_SECONDS

    def timeout(self) -> float:
        """Seconds until the next tick is due (for the supervisor's ``wait``)."""
        return max(0.0, self._next - time.monotonic())

    def tick(self) -> list[Any]:
        """If a window has passed: read the stages, apply the counts; the workers started."""
        now = time.monotonic()
        if now < self._next:
            return []
        seconds, self._last_tick = now - self._last_tick, now
        self._next = now + WINDOW_SECONDS
        loads = [self._load(stage) for stage in self._movable]
        if len(loads) < 2 or any(stage.retiring for stage in self.stages):
            return []  # nothing to move, or a retirement under way: measure again after it
        targets = self._controller.decide(loads, seconds)
        started: list[Any] = []
        for stage, load, target in zip(self._movable, loads, targets, strict=True):
            if target < load.workers and not any(s.retiring for s in self.stages):
                self._retire_one(stage)
            elif target > load.workers and self._live() < self._controller.budget:
                worker = self._grow(stage)
                if worker is not None:
                    started.append(worker)
        return started

    def exited(self, index: int) -> None:
        """A worker that took a retire request has exited: count it out of its channels."""
        for stage in self.stages:
            if index in stage.live:
                stage.live.discard(index)
                stage.retiring -= 1
                for channel in stage.outputs:
                    channel.producer_done()
                return

    def count_out_empty_places(self) -> None:
        """At the start: every place without a worker is counted out of the channels."""
        for stage in self.stages:
            for index in stage.places:
                if index not in stage.live:
                    for channel in stage.outputs:
                        channel.producer_done()

    def stage_of(self, index: int) -> Resizable | None:
        """The resizable stage a worker row belongs to."""
        return next((s for s in self.stages if index in s.places), None)

    def _live(self) -> int:
        return sum(len(s.live) - s.retiring for s in self._movable)

    def _load(self, stage: Resizable) -> Load:
        totals = tuple(
            float(sum(self.counters[i * FIELDS + f] for i in stage.places))
            for f in (BUSY, WAIT_IN, BLOCKED_OUT)
        )
        busy, waited, blocked = (now - before for now, before in zip(totals, stage.last, strict=True))
        stage.last = totals  # type: ignore[assignment]
        return Load(len(stage.live) - stage.retiring, len(stage.places), busy, waited, blocked)

    def _retire_one(self, stage: Resizable) -> None:
        with stage.retire.get_lock():
            stage.retire.value += 1
        stage.retiring += 1
        self._record(stage, len(stage.live), len(stage.live) - 1)

    def _grow(self, stage: Resizable) -> Any:
        empty = [i for i in stage.places if i not in stage.live]
        if not empty:
            return None
        added: list[Channel] = []
        for channel in stage.outputs:
            if not channel.producer_added():
                for done in added:  # its output has ended: nothing left for a newcomer
                    done.producer_done()
                return None
            added.append(channel)
        worker = self.start(empty[0])
        stage.live.add(empty[0])
        self._record(stage, len(stage.live) - 1, len(stage.live))
        return worker

    def _record(self, stage: Resizable, old: int, new: int) -> None:
        self.resizes.append((time.monotonic() - self.started_at, stage.label, old, new))
        stage.least = min(stage.least, new)
        stage.most = max(stage.most, new)
