"""One run of a plan on Ray: submission, collection in order, crash repair, recycling,
adaptive chunks and teardown (the engine's design is in ``olympipe/_engines/ray/__init__.py``)."""

from __future__ import annotations

import itertools
import queue
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from olympipe._core.chunking import RAY, costliest, items_for
from olympipe._core.latency import LatencyRecorder
from olympipe._core.tuning import tune
from olympipe._engines.ray.actor import Meta
from olympipe._engines.ray.actors import Actors
from olympipe._engines.ray.cluster import cluster_cpus
from olympipe._engines.ray.drops import Drops
from olympipe._engines.ray.inflight import Call, InFlight, Resume
from olympipe._engines.ray.metering import Metering
from olympipe._engines.ray.planning import Group, held_back, plan_groups
from olympipe._engines.ray.pools import Pools, resizable_pools
from olympipe._engines.ray.repair import Repairer
from olympipe._engines.ray.source import Puller
from olympipe._graph import Node, Plan, RunOptions
from olympipe._progress import Progress, bar_totals, streams_live
from olympipe._runtime.counters import (
    ITEMS_IN,
    Counters,
)
from olympipe._runtime.credits import default_window
from olympipe._runtime.watermark import Watermark
from olympipe.stats import RunStats, pick_bottleneck

# Ray's chunks (see olympipe/_core/chunking.py: an actor call costs ~1 ms of CPU)
MAX_ITEMS = RAY.max_items
SOURCE_QUEUE_ITEMS = 2 * MAX_ITEMS  # pulled ahead: two full chunks, so a chunk is always ready


class RayRun:
    """One execution of a plan on Ray."""

    def __init__(self, engine: Any, plan: Plan, options: RunOptions) -> None:
        import ray

        self._ray = ray
        self.engine = engine
        # count="auto": sized from the budget; adjacent auto stages get the same count, so
        # that plan_groups fuses them as it fuses equal fixed counts.
        tuned = tune(plan, options.workers or engine.max_workers or cluster_cpus(ray), fuse=False)
        plan = tuned.plan
        self.plan = plan
        self.options = options
        self._auto = tuned.auto
        self.groups = plan_groups(plan, engine.fuse, engine.stage_options, tuned.auto)
        self._group_of = {n.id: g for g in self.groups for n in g.nodes}
        pools, shared = resizable_pools(self.groups, tuned.auto)
        places = {id(pool.group): pool.places for pool in pools}  # a resizable pool: its most actors
        rows = itertools.count()
        for group in self.groups:
            group.rows = [
                [next(rows) for _ in group.nodes] for _ in range(places.get(id(group), group.count))
            ]
        self.counters = Counters(None, sum(len(g.rows) * len(g.nodes) for g in self.groups))
        self.actors = Actors(ray, engine, self.groups, self.counters)
        self.metering = Metering(plan, self.groups, self.counters, tuned.auto)
        self._repairer = Repairer(ray, self.actors, self.metering.add_rows)
        self._drops = Drops(ray, self.counters)
        actors = self.actors
        self._pools = (
            Pools(
                pools,
                shared,
                self.counters.array,
                actors.grow,
                actors.retire,
                actors.still_closing,
                self._is_open,
            )
            if pools
            else None
        )
        self._ended: set[int] = set()
        self._inflight: deque[InFlight] = deque()
        self._pullers: list[Puller] = []
        self._rr = itertools.count()
        self._progress: Progress | None = None
        self._started = False
        self._closed = False
        self._started_at = 0.0
        self._ended_at = 0.0
        self._source_items = 0
        self._finished = 0  # source items whose outputs were all taken (see finished())
        self._watermarks: dict[int, Watermark] = {}  # stateful group -> what it holds (resume=)
        self._floors: dict[int, int] = {}  # stateful group -> the source items it is done with
        self._done = False  # every sink has ended cleanly
        # A call must carry enough items for a stage's concurrency to overlap them: an
        # actor runs its calls one at a time.
        self._parallel = max((n.spec.parallelism for g in self.groups for n in g.nodes), default=1)
        self._target = engine.chunk_size or self._parallel
        self._last_activity = 0.0
        self._chunks_submitted = 0  # source chunks submitted: the next one's number
        self._deferred = held_back(self.groups, self._group_of)
        self._deferred_nodes = {n.id for g in self.groups if id(g) in self._deferred for n in g.nodes}
        limits = [g.items_per_worker for g in self.groups if g.items_per_worker is not None]
        self._most_per_chunk = min([MAX_ITEMS, *limits])  # a chunk never exceeds a worker's budget
        most = max((len(g.rows) for g in self.groups), default=1)
        self._max_in_flight = engine.max_in_flight or default_window(most)
        fed = [
            self._group_of[c.node.id].count for s in plan.sources for c in plan.consumers[s.id][0] if c.node
        ]
        if fed and engine.max_in_flight is None and any(s.spec.on_full != "block" for s in plan.sources):  # type: ignore[union-attr]
            self._max_in_flight = max(fed)  # a dropping source: one chunk per actor, the newest
        self.latency = LatencyRecorder()
        self._pulled: list[Puller] = []  # every source's puller, for the dropped counts

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to (or start) Ray, create every actor and wait until they are built."""
        if self._started:
            return
        self._started = True
        self._started_at = time.time()
        self.actors.start()
        if self.options.progress:
            self._progress = Progress(self.stats, bar_totals(self.plan), latency=streams_live(self.plan))
            self._progress.start()

    # -- running ----------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """``(sink index, chunk)`` in order per sink; raises the run's first failure."""
        self.start()
        for node in self.plan.sources:
            puller = Puller(
                node,
                self.plan.iterable(node),
                SOURCE_QUEUE_ITEMS,
                lambda: min(self._target, self._most_per_chunk),
            )
            self._pullers.append(puller)
            self._pulled.append(puller)
            puller.start()
        self._last_activity = time.monotonic()
        self._settle()
        while True:
            if self._pools is not None:
                self._pools.tick()
            self._submit_available()
            if not self._inflight:
                if not self._pullers:
                    break
                continue
            yield from self._collect_oldest()
        self._settle()
        while self._inflight:
            yield from self._collect_oldest()
        self._done = True
        self.actors.close_live()

    def _submit_available(self) -> None:
        """Submit chunks from the sources while there is room in flight."""
        while self._pullers and len(self._inflight) < self._max_in_flight:
            for puller in list(self._pullers):
                if not self.plan.wanted(puller.node.id, self._ended):
                    self._end_source(puller)
                    continue
                chunk, ended, born = self._take(puller, block=not self._inflight)
                if chunk:
                    self._submit_chunk(puller.node, chunk, born)
                if ended:
                    self._end_source(puller)
            if self._inflight and not any(p.queue.qsize() for p in self._pullers):
                return

    def _take(self, puller: Puller, block: bool) -> tuple[list[Any], bool, float]:
        """Up to the target number of items from one source, whether it has ended, and when
        the first of them was read. Blocks for the first item only when nothing is in
        flight (until a ``timeout`` stage's deadline, if any)."""
        try:
            first = puller.queue.get(timeout=self._deadline_left()) if block else puller.queue.get_nowait()
        except queue.Empty:
            if puller.cut:
                return [], True, 0.0
            if block:
                self._expire_timeouts()
            return [], False, 0.0
        most = min(self._target, self._most_per_chunk)
        items, ended, born = puller.chunk_from(first, most)
        if items:
            self._source_items += len(items)
            self._last_activity = time.monotonic()
        return items, ended, born

    def finished(self) -> int:
        """How many source items have had all they produced taken from :meth:`events`
        (``resume=``); a stage that holds items across chunks is refused before the run."""
        return self._source_items if self._done else self._finished

    def end_sources(self, node_ids: set[int]) -> None:
        """End these sources after what they have already read."""
        for puller in list(self._pullers):
            if puller.node.id in node_ids:
                puller.end_source()

    def _deadline_left(self) -> float | None:
        timeouts = [g.timeout for g in self.groups if g.timeout is not None and g.head.id not in self._ended]
        if not timeouts:
            return None
        return max(0.0, self._last_activity + min(timeouts) - time.monotonic())

    def _expire_timeouts(self) -> None:
        now = time.monotonic()
        for group in self.groups:
            idle = group.timeout is not None and now >= self._last_activity + group.timeout
            if idle and group.head.id not in self._ended:
                self._ended.add(group.head.id)
        self._settle()

    def _submit_chunk(self, source: Node, chunk: list[Any], born: float) -> None:
        first: Any = chunk
        if sum(len(c) for c in self.plan.consumers[source.id]) > 1:
            first = self._ray.put(chunk)  # one copy in the store for every branch
        upto = self._source_items
        self._submit(
            {(source.id, 0): [first]},
            finishing=None,
            source_items=len(chunk),
            born=born,
            marks=(upto - len(chunk), upto),
        )

    def _submit(
        self,
        refs: dict[tuple[int, int], list[Any]],
        finishing: Group | None,
        source_items: int = 0,
        resuming: Resume | None = None,
        born: float = 0.0,
        marks: tuple[int, int] = (0, 0),
    ) -> InFlight | None:
        """Call every group that has input in ``refs`` (or ``finishing``'s flush, or the
        next part ``resuming`` names), in graph order, chaining the returned refs; record
        what the sinks get. Calls of held-back groups wait until the submission is
        collected. A continuation is returned for the caller to place; any other
        submission goes to the back of the queue."""
        entry = InFlight([], source_items=source_items, finishing=finishing, resuming=resuming, born=born)
        entry.since, entry.upto = marks
        if source_items:
            entry.number, self._chunks_submitted = self._chunks_submitted, self._chunks_submitted + 1
        front = [g for g in self.groups if id(g) not in self._deferred]
        self._call_groups(entry, front, refs, lambda g: g.head.id not in self._ended)
        self._add_sinks(entry, refs, deferred=False)
        held = [g for g in self.groups if id(g) in self._deferred]
        entry.open_groups = {id(g) for g in held if g.head.id not in self._ended}
        starting = finishing if resuming is None else resuming.group  # a group called without input
        starts_held = starting is not None and id(starting) in self._deferred
        if entry.open_groups or starts_held:
            entry.later = refs
        if not (entry.sinks or entry.metas or entry.later is not None):
            return None
        if resuming is None:
            self._inflight.append(entry)
        return entry

    def _submit_later(self, entry: InFlight) -> None:
        """The held-back calls of a submission now collected, its inputs made good."""
        assert entry.later is not None
        ray = self._ray
        refs = {
            key: [entry.remade.get(r, r) if isinstance(r, ray.ObjectRef) else r for r in values]
            for key, values in entry.later.items()
        }
        held = [g for g in self.groups if id(g) in self._deferred]
        self._call_groups(entry, held, refs, lambda g: id(g) in entry.open_groups)
        self._add_sinks(entry, refs, deferred=True)
        entry.later = None

    def _call_groups(
        self,
        entry: InFlight,
        groups: list[Group],
        refs: dict[tuple[int, int], list[Any]],
        is_open: Any,
    ) -> None:
        resuming = entry.resuming
        for group in groups:
            calls: list[tuple[str, tuple[Any, ...]]] = []
            if group is entry.finishing:
                calls.append(("finish", ()))
            elif resuming is not None and group is resuming.group:
                calls.append(("more", (resuming.key,)))
            elif is_open(group):
                for upstream, slot in group.head.inputs:
                    calls.extend(("process", (ref,)) for ref in refs.get((upstream.id, slot), []))
            if group.drops is not None and calls and not resuming:
                drops = self._drops
                calls = [
                    c
                    for c in calls
                    if c[0] != "process" or not drops.dropped(group, entry, c[1][0], self._inflight)
                ]
            for method, args in calls:
                if method == "more":
                    assert resuming is not None
                    index = resuming.index
                else:
                    index = self._pick(group)
                if method == "process" and group.items_per_worker is not None:
                    self.actors.recycle_if_spent(group, index, entry.source_items)
                handle = getattr(group.actors[index], method)
                out = handle.options(num_returns=group.slots + 1).remote(*args)
                group.outstanding[index] += 1
                entry.calls.append(Call(group, index, method, args, list(out)))
                for slot in range(group.slots):
                    refs.setdefault((group.tail.id, slot), []).append(out[slot])

    def _add_sinks(self, entry: InFlight, refs: dict[tuple[int, int], list[Any]], deferred: bool) -> None:
        """What the sinks fed by front groups (or by held-back ones) get from ``refs``."""
        for sink, (node, slot) in enumerate(self.plan.sinks):
            if (node.id in self._deferred_nodes) != deferred:
                continue
            for ref in refs.get((node.id, slot), []):
                if not node.is_source:
                    entry.sinks.append((sink, ref))
        if deferred:
            return
        # A sink fed straight by a source gets the items without any call.
        for sink, (node, slot) in enumerate(self.plan.sinks):
            if node.is_source and (node.id, slot) in refs:
                entry.sinks.extend((sink, ref) for ref in refs[(node.id, slot)])

    def _pick(self, group: Group) -> int:
        """The actor of ``group`` with the fewest calls outstanding (round robin on ties)."""
        if group.count == 1:
            return 0
        start = next(self._rr) % group.count
        order = [(start + i) % group.count for i in range(group.count)]
        return min(order, key=lambda i: group.outstanding[i])

    def _collect_oldest(self) -> Iterator[tuple[int, list[Any]]]:
        entry = self._inflight.popleft()
        if entry.later is not None:
            self._values(entry, [meta for _group, _index, meta in entry.metas])
            self._submit_later(entry)
        values = self._values(entry, entry.refs())
        chunks = values[: len(entry.sinks)]
        exhausted = False
        rests: list[Resume] = []
        metas = values[len(entry.sinks) :]
        for call, meta in zip(entry.calls, metas, strict=True):
            exhausted |= self._account(call.group, call.index, meta)
            if call.method == "process" and entry.number >= 0:
                self.metering.took(call.group, call.index, entry.number)
            if meta[2] is not None:
                rests.append(Resume(call.group, call.index, meta[2]))
        floor = self._floor_after(entry, metas, more_to_come=bool(rests))
        self._last_activity = time.monotonic()
        self._adapt_target()
        if exhausted:
            self._settle()
        self._continue(rests, entry.born, (entry.since, entry.upto))
        for (sink, _ref), chunk in zip(entry.sinks, chunks, strict=True):
            if chunk:
                if entry.born:
                    self.latency.add(time.monotonic() - entry.born, len(chunk))
                yield sink, chunk
        if floor > self._finished:
            self._finished = floor  # taken, and nothing of those items is still to come

    def _floor_after(self, entry: InFlight, metas: list[Meta], more_to_come: bool) -> int:
        """The source items finished once ``entry``'s outputs are taken (``resume=``): its
        chunk's, unless parts of it are still to come, and none that a stateful stage holds."""
        mark = entry.since if more_to_come else entry.upto
        for call, meta in zip(entry.calls, metas, strict=True):
            group = call.group
            if not group.tail.spec.ordered_input:
                continue
            watermark = self._watermarks.setdefault(id(group), Watermark(1))
            if call.method == "process":
                watermark.took(0, mark, int(meta[1][-1][ITEMS_IN]))
            self._floors[id(group)] = watermark.after(meta[3])
        return min([mark, *self._floors.values()])

    def _continue(self, rests: list[Resume], born: float, marks: tuple[int, int]) -> None:
        """Ask for the next part of each streaming chunk still wanted, ahead of every later
        submission (its outputs come before theirs); let the others go. A streaming group
        ends once none of its calls is out (see :meth:`_settle`)."""
        ahead = []
        for rest in rests:
            if self.plan.wanted(rest.group.tail.id, self._ended):
                entry = self._submit({}, finishing=None, resuming=rest, born=born, marks=marks)
                if entry is not None:
                    ahead.append(entry)
            else:
                rest.group.actors[rest.index].forget.remote(rest.key)
        self._inflight.extendleft(reversed(ahead))
        if any(g.streams and g.head.id not in self._ended for g in self.groups):
            self._settle()

    def _values(self, entry: InFlight, refs: list[Any]) -> list[Any]:
        """The values of ``refs`` (refs of ``entry``); a dead actor of a crash-isolated stage
        is repaired first (see ``repair.py``)."""
        ray = self._ray
        todo = [r for r in refs if isinstance(r, ray.ObjectRef) and r not in entry.remade]
        try:
            got = dict(zip(todo, ray.get(todo), strict=True))
        except Exception as exc:
            if not self.actors.died(exc) or not any(c.group.isolates_crashes for c in entry.calls):
                self.actors.read_quietly(todo)
                raise self.actors.translate(exc)
            self._repairer.repair(entry)
            got = {}
        try:
            return [
                r
                if not isinstance(r, ray.ObjectRef)
                else entry.remade[r]
                if r in entry.remade
                else got[r]
                if r in got
                else ray.get(r)
                for r in refs
            ]
        except Exception as exc:
            raise self.actors.translate(exc)

    def _account(self, group: Group, index: int, meta: Meta) -> bool:
        group.outstanding[index] = max(0, group.outstanding[index] - 1)
        stage_exhausted, rows = meta[0], meta[1]
        self.metering.add_rows(group, index, rows)
        if stage_exhausted and group.tail.id not in self._ended:
            self._ended.add(group.tail.id)
            return True
        return False

    # -- crashes and recycled workers ------------------------------------------------------

    # -- count="auto" ----------------------------------------------------------------------

    def _is_open(self, group: Group) -> bool:
        """Whether a group may still get input (a pool is not resized after its end)."""
        return group.head.id not in self._ended

    def _adapt_target(self) -> None:
        """About the policy's target of work per call at the costliest stage."""
        if self.engine.chunk_size is not None:
            return
        stages = [
            ([r[position] for r in group.rows], group.nodes[position].spec.parallelism)
            for group in self.groups
            for position in range(len(group.nodes))
        ]
        worst = costliest(self.counters, stages)
        if worst is not None:
            self._target = items_for(RAY, worst, self._parallel)

    # -- ending -----------------------------------------------------------------------------

    def _end_source(self, puller: Puller) -> None:
        puller.stop()
        self._pullers.remove(puller)
        self._ended.add(puller.node.id)
        self._settle()

    def _settle(self) -> None:
        """End, in graph order, every group whose inputs have all ended: stateful ones are
        flushed first (the flush is queued behind their last chunk)."""
        for group in self.groups:
            if group.head.id in self._ended:
                continue
            if not all(up.id in self._ended for up, _slot in group.head.inputs):
                continue
            if group.streams and any(group.outstanding):
                continue  # a call may yet leave parts to come
            if group.tail.spec.ordered_input:
                self._submit({}, finishing=group)
            self._ended.update(n.id for n in group.nodes)

    def trace_rows(self) -> list[tuple[str, int, int]]:
        """``(stage, actor, counter row)`` of every stage of every actor place (``trace=``)."""
        return self.metering.trace_rows()

    def stats(self) -> RunStats:
        """The run's figures so far, from the counters each call returned."""
        end = self._ended_at or time.time()
        dropped = [(puller.node, puller.dropped) for puller in self._pulled]
        rows = self.metering.table(end, self._pools, dropped)
        return RunStats(
            rows=rows,
            bottleneck=pick_bottleneck(rows),
            wall_seconds=end - self._started_at if self._started_at else 0.0,
            source_items=self._source_items + sum(p.dropped for p in self._pulled),
            resizes=tuple(self._pools.resizes) if self._pools is not None else (),
            latency=self.latency.summary(),
        )

    def close(self) -> None:
        """Kill every actor (their CPUs are free again) and stop the sources; a Ray started
        for this run is shut down. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._ended_at = time.time()
        if self._progress is not None:
            self._progress.close()
        for puller in self._pullers:
            puller.stop()
        self.actors.kill_all()
        self._collect_abandoned()
        for puller in self._pullers:
            puller.join(1.0)
        if self.actors.started_ray:
            self._ray.shutdown()

    def _collect_abandoned(self) -> None:
        """Read the refs of chunks no one will collect now (after a failure or a ``break``):
        Ray logs an "Unhandled error" for each failed ref dropped unread. The actors are
        dead, so each answers at once."""
        ray = self._ray
        refs = [r for entry in self._inflight for r in entry.refs() if isinstance(r, ray.ObjectRef)]
        self._inflight.clear()
        self.actors.read_quietly(refs)
