"""One run of a plan on Ray: submission, collection in order, crash repair, recycling,
adaptive chunks, stats and teardown (the engine's design is in ``olympipe/_engines/ray/__init__.py``)."""

from __future__ import annotations

import itertools
import queue
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from olympipe._core.chunking import RAY, costliest, items_for
from olympipe._core.latency import LatencyRecorder
from olympipe._core.tuning import tune
from olympipe._engines.inline import error_from
from olympipe._engines.ray.actor import Meta, StageActor, StageFailed
from olympipe._engines.ray.cluster import alive_nodes, cluster_cpus, on_node, uploaded
from olympipe._engines.ray.planning import Group, held_back, plan_groups
from olympipe._engines.ray.pools import Pools, resizable_pools
from olympipe._engines.ray.source import END, Puller, SourceError
from olympipe._graph import Node, Plan, RunOptions
from olympipe._progress import Progress, bar_totals, streams_live
from olympipe._runtime.counters import (
    CRASHES,
    DROPPED,
    FIELDS,
    ITEMS_OUT,
    PEAK_RSS_MB,
    RECYCLED,
    STARTED,
    Counters,
)
from olympipe._runtime.credits import default_window
from olympipe._transport.codec import dumps_definition
from olympipe.errors import PipelineError, WorkerDied
from olympipe.stats import RunStats, pick_bottleneck, with_dropped

# Ray's chunks (see olympipe/_core/chunking.py: an actor call costs ~1 ms of CPU)
MAX_ITEMS = RAY.max_items
MAX_CHUNK_BYTES = RAY.max_bytes
HOLD_SECONDS = RAY.hold_seconds  # how long a partial chunk waits for more items while others are in flight
SOURCE_QUEUE_ITEMS = 2 * MAX_ITEMS  # pulled ahead: two full chunks, so a chunk is always ready
KILL_CONFIRM_SECONDS = 10.0  # how long close() waits for Ray to confirm the actors' deaths


@dataclass
class _Call:
    """One actor call of a submission: enough to make it again after a crash."""

    group: Group
    index: int  # which actor of the group
    method: str  # "process", "finish" (a flush) or "more" (the rest of a streaming chunk)
    args: tuple[Any, ...]
    outs: list[Any]  # a ref per output slot, then the meta ref


@dataclass(frozen=True)
class _Resume:
    """The rest of a streaming chunk: actor ``index`` of ``group`` holds it as ``key``."""

    group: Group
    index: int
    key: int


@dataclass
class _InFlight:
    """One submission: the refs each sink collects, and every call's meta ref."""

    sinks: list[tuple[int, Any]]
    calls: list[_Call] = field(default_factory=list)
    remade: dict[Any, Any] = field(default_factory=dict)  # a ref lost in a crash -> its value
    # Calls held back until this submission is collected (see RayRun._deferred):
    later: dict[tuple[int, int], list[Any]] | None = None  # the refs they read
    finishing: Group | None = None
    resuming: _Resume | None = None
    open_groups: set[int] = field(default_factory=set)  # ids of the held-back groups still open
    source_items: int = 0
    born: float = 0.0  # when the oldest source item behind it was read (0: unknown)

    @property
    def metas(self) -> list[tuple[Group, int, Any]]:
        """``(group, actor index, meta ref)`` of every call."""
        return [(call.group, call.index, call.outs[-1]) for call in self.calls]


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
        self._pools = (
            Pools(
                pools,
                shared,
                self.counters.array,
                self._grow_pool,
                self._retire_from_pool,
                self._still_closing,
                self._is_open,
            )
            if pools
            else None
        )
        self._group_of_actor: dict[str, Group] = {}  # actor id -> its group, for errors
        self._skip: set[int] = set()  # ids of submissions a drop_newest group drops when their turn comes
        self._ended: set[int] = set()
        self._inflight: deque[_InFlight] = deque()
        self._pullers: list[Puller] = []
        self._rr = itertools.count()
        self._progress: Progress | None = None
        self._started_ray = False
        self._started = False
        self._closed = False
        self._started_at = 0.0
        self._ended_at = 0.0
        self._source_items = 0
        self._target = engine.chunk_size or 1
        self._retired: list[Any] = []  # replaced actors: killed with the others at the end
        self._closing: list[tuple[Any, Any]] = []  # recycled actors and their close() refs
        self._last_activity = 0.0
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
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False}
            if self.engine.runtime_env is not None:
                kwargs["runtime_env"] = self.engine.runtime_env
            kwargs.update(self.engine.init_kwargs)
            ray.init(address=self.engine.address, **kwargs)
            self._started_ray = True
            actor_env = None  # the job's runtime_env already holds it
        else:
            actor_env = uploaded(ray, self.engine.runtime_env)
        actor_class = ray.remote(StageActor)
        nodes = itertools.cycle(alive_nodes(ray))
        for group in self.groups:
            definition = dumps_definition([n.spec for n in group.nodes])
            chosen: dict[str, Any] = {}
            for label in group.labels:
                chosen.update(self.engine.stage_options.get(label, {}))

            def make_actor(definition: Any = definition, chosen: Any = chosen, group: Group = group) -> Any:
                # No CPU reserved unless asked: workers share cores, as processes do
                # locally, so more workers than CPUs still run. A stage's workers go round
                # the nodes (Ray's SPREAD leaves zero-CPU actors on one node).
                options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
                options["scheduling_strategy"] = on_node(ray, next(nodes))
                if actor_env is not None:  # a Ray this process had initialised already
                    options["runtime_env"] = actor_env
                options.update(chosen)
                actor = actor_class.options(**options).remote(definition, group.labels, self.engine.zero_copy)
                self._group_of_actor[actor._actor_id.hex()] = group
                return actor

            group.make_actor = make_actor
            for _ in range(group.count):
                group.actors.append(make_actor())
                group.outstanding.append(0)
                group.sent.append(0)
        try:
            ray.get([a.ready.remote() for g in self.groups for a in g.actors])
        except Exception as exc:
            raise self._translate(exc)
        if self.options.progress:
            self._progress = Progress(self.stats, bar_totals(self.plan), latency=streams_live(self.plan))
            self._progress.start()

    # -- running ----------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """``(sink index, chunk)`` in order per sink; raises the run's first failure."""
        self.start()
        for node in self.plan.sources:
            puller = Puller(node, SOURCE_QUEUE_ITEMS, lambda: min(self._target, self._most_per_chunk))
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
        self._close_actors()

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
        items: list[Any] = []
        born = 0.0
        try:
            first = puller.queue.get(timeout=self._deadline_left()) if block else puller.queue.get_nowait()
        except queue.Empty:
            if puller.cut:
                return items, True, born
            if block:
                self._expire_timeouts()
            return items, False, born
        hold_until = time.monotonic() + HOLD_SECONDS
        value = first
        ended = False
        while True:
            if value is END:
                ended = True
                break
            if isinstance(value, SourceError):
                raise error_from("source", value.exc)
            read_at, item = value
            born = born or read_at
            items.append(item)
            if len(items) >= self._target or len(items) >= self._most_per_chunk:
                break
            if _nbytes(item) * len(items) >= MAX_CHUNK_BYTES:
                break
            try:
                left = hold_until - time.monotonic()
                value = puller.queue.get(timeout=left) if left > 0 else puller.queue.get_nowait()
            except queue.Empty:
                break
        if items:
            self._source_items += len(items)
            self._last_activity = time.monotonic()
        return items, ended, born

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
        self._submit({(source.id, 0): [first]}, finishing=None, source_items=len(chunk), born=born)

    def _submit(
        self,
        refs: dict[tuple[int, int], list[Any]],
        finishing: Group | None,
        source_items: int = 0,
        resuming: _Resume | None = None,
        born: float = 0.0,
    ) -> _InFlight | None:
        """Call every group that has input in ``refs`` (or ``finishing``'s flush, or the
        next part ``resuming`` names), in graph order, chaining the returned refs; record
        what the sinks get. Calls of held-back groups wait until the submission is
        collected. A continuation is returned for the caller to place; any other
        submission goes to the back of the queue."""
        entry = _InFlight([], source_items=source_items, finishing=finishing, resuming=resuming, born=born)
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

    def _submit_later(self, entry: _InFlight) -> None:
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
        entry: _InFlight,
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
                calls = [c for c in calls if c[0] != "process" or not self._dropped(group, entry, c[1][0])]
            for method, args in calls:
                if method == "more":
                    assert resuming is not None
                    index = resuming.index
                else:
                    index = self._pick(group)
                if method == "process" and group.items_per_worker is not None:
                    self._recycle_if_spent(group, index, entry.source_items)
                handle = getattr(group.actors[index], method)
                out = handle.options(num_returns=group.slots + 1).remote(*args)
                group.outstanding[index] += 1
                entry.calls.append(_Call(group, index, method, args, list(out)))
                for slot in range(group.slots):
                    refs.setdefault((group.tail.id, slot), []).append(out[slot])

    def _add_sinks(self, entry: _InFlight, refs: dict[tuple[int, int], list[Any]], deferred: bool) -> None:
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

    def _dropped(self, group: Group, entry: _InFlight, ref: Any) -> bool:
        """``on_full`` of a (held-back) group, as its chunk of ``entry`` comes to be called:
        the previous chunk is done. ``drop_oldest``: dropped if a later chunk for it is
        ready already. ``drop_newest``: dropped if it became ready while an earlier chunk
        waited; else the later ones ready now are. The dropped items are counted."""
        later = [e for e in self._inflight if e.later is not None]
        ready_later = [r for e in later for r in self._inputs_of(group, e) if self._ready(r)]
        if group.drops == "drop_oldest":
            drop = bool(ready_later)
        else:
            drop = id(entry) in self._skip
            self._skip.discard(id(entry))
            if not drop:
                self._skip.update(
                    id(e) for e in later if any(self._ready(r) for r in self._inputs_of(group, e))
                )
        if drop:
            row = group.rows[0][0]
            self.counters.array[row * FIELDS + DROPPED] += self._items_in(entry, ref)
        return drop

    @staticmethod
    def _inputs_of(group: Group, entry: _InFlight) -> list[Any]:
        assert entry.later is not None
        return [r for upstream, slot in group.head.inputs for r in entry.later.get((upstream.id, slot), [])]

    def _ready(self, ref: Any) -> bool:
        if not isinstance(ref, self._ray.ObjectRef):
            return True
        ready, _ = self._ray.wait([ref], num_returns=1, timeout=0)
        return bool(ready)

    def _items_in(self, entry: _InFlight, ref: Any) -> int:
        """How many items a chunk (a ref a call of ``entry`` made, or a source chunk) holds:
        from the making call's figures, without fetching the chunk."""
        if not isinstance(ref, self._ray.ObjectRef):
            return len(ref)
        for call in entry.calls:
            if any(out is ref for out in call.outs[:-1]):
                meta = entry.remade.get(call.outs[-1]) or self._ray.get(call.outs[-1])
                _exhausted, rows, _more = meta
                return int(rows[-1][ITEMS_OUT])
        return len(self._ray.get(ref))

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
        values = self._values(entry, self._refs_of(entry))
        chunks = values[: len(entry.sinks)]
        exhausted = False
        rests: list[_Resume] = []
        for (group, index, _ref), meta in zip(entry.metas, values[len(entry.sinks) :], strict=True):
            exhausted |= self._account(group, index, meta)
            if meta[2] is not None:
                rests.append(_Resume(group, index, meta[2]))
        self._last_activity = time.monotonic()
        self._adapt_target()
        if exhausted:
            self._settle()
        self._continue(rests, entry.born)
        for (sink, _ref), chunk in zip(entry.sinks, chunks, strict=True):
            if chunk:
                if entry.born:
                    self.latency.add(time.monotonic() - entry.born, len(chunk))
                yield sink, chunk

    def _continue(self, rests: list[_Resume], born: float) -> None:
        """Ask for the next part of each streaming chunk still wanted, ahead of every later
        submission (its outputs come before theirs); let the others go. A streaming group
        ends once none of its calls is out (see :meth:`_settle`)."""
        ahead = []
        for rest in rests:
            if self.plan.wanted(rest.group.tail.id, self._ended):
                entry = self._submit({}, finishing=None, resuming=rest, born=born)
                if entry is not None:
                    ahead.append(entry)
            else:
                rest.group.actors[rest.index].forget.remote(rest.key)
        self._inflight.extendleft(reversed(ahead))
        if any(g.streams and g.head.id not in self._ended for g in self.groups):
            self._settle()

    def _values(self, entry: _InFlight, refs: list[Any]) -> list[Any]:
        """The values of ``refs`` (refs of ``entry``); a dead actor of a crash-isolated stage
        is repaired first (see :meth:`_repair`)."""
        ray = self._ray
        todo = [r for r in refs if isinstance(r, ray.ObjectRef) and r not in entry.remade]
        try:
            got = dict(zip(todo, ray.get(todo), strict=True))
        except Exception as exc:
            if not self._actor_died(exc) or not any(c.group.isolates_crashes for c in entry.calls):
                self._read_quietly(todo)
                raise self._translate(exc)
            self._repair(entry)
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
            raise self._translate(exc)

    def _account(self, group: Group, index: int, meta: Meta) -> bool:
        group.outstanding[index] = max(0, group.outstanding[index] - 1)
        stage_exhausted, rows, _more = meta
        self._add_rows(group, index, rows)
        if stage_exhausted and group.tail.id not in self._ended:
            self._ended.add(group.tail.id)
            return True
        return False

    def _add_rows(self, group: Group, index: int, rows: list[list[float]]) -> None:
        """Add what one call's stages gained to the counters of actor ``index``'s rows."""
        array = self.counters.array
        for row_index, gained in zip(group.rows[index], rows, strict=True):
            _add_gained(array, row_index * FIELDS, gained)

    # -- crashes and recycled workers ------------------------------------------------------

    def _actor_died(self, exc: BaseException) -> bool:
        return isinstance(exc, self._ray.exceptions.RayActorError)

    def _repair(self, entry: _InFlight) -> None:
        """An actor died under this submission: make its calls again, in graph order, on
        live actors (a replacement for a dead one), recording in ``entry.remade`` the values
        that stand for the lost refs. A chunk that kills its actor again is re-run item by
        item, and the item that kills it goes to ``on_error`` as a :class:`WorkerDied`."""
        ray = self._ray
        remade = entry.remade
        for call in entry.calls:
            if call.outs[-1] in remade:
                continue  # made again already
            args = tuple(remade.get(a, a) if isinstance(a, ray.ObjectRef) else a for a in call.args)
            if args == call.args and self._call_succeeded(call):
                continue
            if call.group.tail.spec.ordered_input:
                raise _died(
                    call.group, RuntimeError("a stateful stage's input was lost with a crashed actor")
                )
            values = self._remake(call, [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args])
            remade.update(zip(call.outs, values, strict=True))

    def _call_succeeded(self, call: _Call) -> bool:
        try:
            self._ray.get(call.outs[-1])
        except Exception as exc:
            # Its input was there (an upstream call that failed was made again first, and
            # its args replaced): this actor itself died.
            if self._actor_died(exc) and call.group.isolates_crashes:
                return False
            raise self._translate(exc)
        return True

    def _remake(self, call: _Call, args: list[Any]) -> list[Any]:
        """Make one call again on a live actor. A crash-isolated chunk goes item by item, so
        that the item that kills the actor again goes to ``on_error`` as a
        :class:`WorkerDied` (and counts as one crash, as on the local engine); the figures of
        each item's call are added here, and the remade meta adds nothing more."""
        group, index = call.group, call.index
        self._ensure_alive(group, index)
        if not (group.isolates_crashes and call.method == "process"):
            try:
                return self._call(group, index, *args, method=call.method)
            except Exception as exc:
                raise self._translate(exc)
        chunks: list[list[Any]] = [[] for _ in range(group.slots)]
        exhausted = False
        for item in args[0]:
            try:
                result = self._call(group, index, [item])
            except Exception as exc:
                if not self._actor_died(exc):
                    raise self._translate(exc)
                self._replace_actor(group, index, CRASHES)
                result = self._call(group, index, item, _died(group, exc), method="recover")
            for slot in range(group.slots):
                chunks[slot].extend(result[slot])
            exhausted, rows, _more = result[-1]  # a crash-isolated group does not stream
            self._add_rows(group, index, rows)
        nothing: Meta = (exhausted, [[0.0] * FIELDS for _ in group.nodes], None)
        return [*chunks, nothing]

    def _call(self, group: Group, index: int, *args: Any, method: str = "process") -> list[Any]:
        handle = getattr(group.actors[index], method)
        return list(self._ray.get(handle.options(num_returns=group.slots + 1).remote(*args)))

    def _ensure_alive(self, group: Group, index: int) -> None:
        try:
            self._ray.get(group.actors[index].ready.remote())
        except Exception as exc:
            if not (self._actor_died(exc) and group.isolates_crashes):
                raise self._translate(exc)
            self._replace_actor(group, index, None)  # counted when its item is found

    def _replace_actor(self, group: Group, index: int, counter: int | None) -> None:
        """A new actor in place of actor ``index`` (its calls' figures add to the same
        rows); ``counter``: ``CRASHES`` or ``RECYCLED``, counted on the group's first stage."""
        old = group.actors[index]
        self._retired.append(old)
        if counter != RECYCLED:
            try:
                self._ray.kill(old, no_restart=True)
            except Exception:  # already dead
                pass
        if counter is not None:
            self.counters.array[group.rows[index][0] * FIELDS + counter] += 1
        group.actors[index] = group.make_actor()
        group.sent[index] = 0
        if counter != RECYCLED:
            try:
                self._ray.get(group.actors[index].ready.remote())
            except Exception as exc:
                raise self._translate(exc)

    def _recycle_if_spent(self, group: Group, index: int, items: int) -> None:
        """``max_items_per_worker``: an actor whose budget this chunk would exceed closes
        (after its queued calls: ``close_method`` runs in it) and a fresh one takes over."""
        limit = group.items_per_worker
        assert limit is not None
        if group.sent[index] and group.sent[index] + items > limit:
            old = group.actors[index]
            self._closing.append((old, old.close.remote()))
            self._replace_actor(group, index, RECYCLED)
            self._reap_closed()
        group.sent[index] += items

    # -- count="auto" ----------------------------------------------------------------------

    def _grow_pool(self, group: Group, place: int) -> None:
        """A new actor in ``place``, the first one past the live ones."""
        actor = group.make_actor()
        if place < len(group.actors):
            group.actors[place] = actor  # a place whose actor retired
            group.outstanding[place] = 0
        else:
            group.actors.append(actor)
            group.outstanding.append(0)
            group.sent.append(0)
        group.count = place + 1

    def _retire_from_pool(self, group: Group, place: int) -> None:
        """The actor of ``place`` (the last live one) takes no new chunk; it closes after
        its queued calls and is killed once it has (:meth:`_reap_closed`)."""
        group.count = place
        actor = group.actors[place]
        self._retired.append(actor)
        self._closing.append((actor, actor.close.remote()))

    def _still_closing(self) -> bool:
        self._reap_closed()
        return bool(self._closing)

    def _is_open(self, group: Group) -> bool:
        return group.head.id not in self._ended

    def _reap_closed(self) -> None:
        """Kill the recycled actors that have closed, so that idle ones do not pile up."""
        ray = self._ray
        refs = [ref for _actor, ref in self._closing]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not done:
            return
        finished = set(done)
        still = []
        for actor, ref in self._closing:
            if ref not in finished:
                still.append((actor, ref))
                continue
            try:
                ray.get(ref)
            except Exception as exc:  # close_method failed: the run's failure
                raise self._translate(exc)
            ray.kill(actor, no_restart=True)
        self._closing = still

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
            self._target = items_for(RAY, worst)

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

    def _translate(self, exc: BaseException) -> PipelineError:
        """A Ray error as the error the local engine would raise."""
        ray = self._ray
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, StageFailed) and type(exc) is StageFailed:
            cause = exc
        if isinstance(cause, StageFailed):
            return cause.failure.to_error()
        if isinstance(exc, ray.exceptions.RayActorError):
            group_of_actor = self._group_of_actor.get(getattr(exc, "actor_id", None) or "")
            if group_of_actor is not None:
                return _died(group_of_actor, exc)
            return _died(self.groups[0], exc) if self.groups else PipelineError(str(exc), stage="ray")
        if isinstance(exc, PipelineError):
            return exc
        return error_from("ray", exc)

    def stats(self) -> RunStats:
        """The run's figures so far, from the counters each call returned."""
        end = self._ended_at or time.time()
        rows = []
        for group in self.groups:
            pool = self._pools.pool_of(group) if self._pools is not None else None
            for position, node in enumerate(group.nodes):
                workers = [r[position] for r in group.rows]
                if pool is not None:  # the places that ever had an actor
                    workers = [w for w in workers if self.counters.row(w)[STARTED]] or workers[:1]
                row = self.counters.stage_stats(
                    self.plan.labels[node.id], workers, end, auto=node.id in self._auto
                )
                if pool is not None:
                    row = replace(row, workers=pool.live, min_workers=pool.least, max_workers=pool.most)
                rows.append(row)
        dropped: dict[str, int] = {}
        for puller in self._pulled:
            for consumer in self.plan.consumers[puller.node.id][0]:
                if consumer.node is not None and puller.dropped:
                    label = self.plan.labels[consumer.node.id]
                    dropped[label] = dropped.get(label, 0) + puller.dropped
        rows = with_dropped(rows, dropped)
        order = {n.id: i for i, n in enumerate(self.plan.stages)}
        labels = {self.plan.labels[n.id]: order[n.id] for n in self.plan.stages}
        rows.sort(key=lambda r: labels[r.name])
        return RunStats(
            rows=tuple(rows),
            bottleneck=pick_bottleneck(rows),
            wall_seconds=end - self._started_at if self._started_at else 0.0,
            source_items=self._source_items + sum(p.dropped for p in self._pulled),
            resizes=tuple(self._pools.resizes) if self._pools is not None else (),
            latency=self.latency.summary(),
        )

    def _close_actors(self) -> None:
        """After a clean end: close every stage (``close_method`` runs), then the actors go."""
        try:
            closing, self._closing = [ref for _actor, ref in self._closing], []
            live = [a for g in self.groups for a in g.actors[: g.count]]
            self._ray.get([*closing, *(a.close.remote() for a in live)])
        except Exception as exc:
            raise self._translate(exc)

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
        self._kill_actors()
        self._collect_abandoned()
        for puller in self._pullers:
            puller.join(1.0)
        if self._started_ray:
            self._ray.shutdown()

    def _collect_abandoned(self) -> None:
        """Read the refs of chunks no one will collect now (after a failure or a ``break``):
        Ray logs an "Unhandled error" for each failed ref dropped unread. The actors are
        dead, so each answers at once."""
        ray = self._ray
        refs = [r for entry in self._inflight for r in self._refs_of(entry) if isinstance(r, ray.ObjectRef)]
        self._inflight.clear()
        self._read_quietly(refs)

    def _read_quietly(self, refs: list[Any]) -> None:
        """Read refs whose errors were reported already (or are the kill's own)."""
        if not refs:
            return
        ray = self._ray
        ready, _pending = ray.wait(refs, num_returns=len(refs), timeout=KILL_CONFIRM_SECONDS)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception:  # the failure the run already reported, or the kill
                pass

    @staticmethod
    def _refs_of(entry: _InFlight) -> list[Any]:
        return [ref for _sink, ref in entry.sinks] + [meta for _group, _index, meta in entry.metas]

    def _kill_actors(self) -> None:
        """Kill every actor and wait until Ray confirms each death: ``ray.kill`` returns at
        once, and a call right after it can still be served."""
        ray = self._ray
        alive = [*self._retired, *(a for g in self.groups for a in g.actors)]
        self._read_quietly([ref for _actor, ref in self._closing])
        for actor in alive:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        deadline = time.monotonic() + KILL_CONFIRM_SECONDS
        while alive and time.monotonic() < deadline:
            probes = [(actor, actor.ready.remote()) for actor in alive]
            alive = []
            for actor, probe in probes:
                try:
                    ray.get(probe, timeout=max(0.1, deadline - time.monotonic()))
                    alive.append(actor)  # served before the kill landed: ask again
                except ray.exceptions.GetTimeoutError:
                    alive.append(actor)
                except Exception:  # RayActorError: dead, as wanted
                    pass


def _died(group: Group, exc: BaseException) -> WorkerDied:
    names = ", ".join(repr(label) for label in group.labels)
    detail = f"a Ray actor death (running {names}): {str(exc).splitlines()[0] if str(exc) else exc!r}"
    return WorkerDied(stage=group.labels[0], exitcode=None, detail=detail)


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


def _nbytes(value: Any) -> int:
    """A cheap size estimate of an item, for chunks of large arrays and buffers."""
    size = getattr(value, "nbytes", None)
    if isinstance(size, int):
        return size
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    return 64
