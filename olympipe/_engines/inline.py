"""The inline engine: every stage in the caller's thread, one item at a time.

No process, no pickling, no thread: a breakpoint in a stage function stops there, and a
test runs in microseconds. Each source item is pushed through the whole graph before the
next one is pulled, so every stage sees its input in source order; sources of a ``gather``
are pulled in turn. Stateful stages are flushed in graph order once their inputs end.

A stage with ``concurrency > 1`` runs its items one after the other. An ``async`` stage runs
on an event loop of its own; called from a thread where a loop already runs (a notebook
cell), that loop runs in a helper thread, the one exception to "the caller's thread".

Time-driven stages are checked between items: ``timeout`` ends its stream when the next
item comes later than its deadline, but cannot interrupt a source blocked in ``next()``
(nothing else runs in the caller's thread meanwhile).
"""

from __future__ import annotations

import inspect
import resource
import time
import traceback
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from olympipe._core.flow import BLOCK, DroppingReader
from olympipe._core.latency import LatencyRecorder
from olympipe._graph import Node, Plan, RunOptions, SourceSpec
from olympipe._progress import Progress, bar_totals, streams_live
from olympipe._runtime.counters import (
    BUSY,
    CHUNKS,
    CPU,
    ERRORS,
    FIELDS,
    ITEMS_IN,
    ITEMS_OUT,
    LAST_CHUNK,
    PEAK_RSS_MB,
    RETRIED,
    STARTED,
    Counters,
)
from olympipe._runtime.messages import short_repr
from olympipe._stages.base import ItemFailed, Stage, StageSpec
from olympipe.errors import PipelineError, stage_error
from olympipe.stats import RunStats, pick_bottleneck, with_dropped


def _in_this_thread(spec: StageSpec) -> StageSpec:
    """A stage's spec for the caller's thread: ``concurrency`` items at a time would take a
    thread pool, so they run one after the other (coroutines still run on their own loop)."""
    concurrency = getattr(spec, "concurrency", 1)
    if concurrency > 1 and not inspect.iscoroutinefunction(getattr(spec, "fn", None)):
        return replace(spec, concurrency=1)  # type: ignore[call-arg]
    return spec


class InlineEngine:
    """Runs every stage in the caller's thread, item by item (``engine="inline"``)."""

    name = "inline"

    def execute(self, plan: Plan, options: RunOptions) -> InlineRun:
        """A not yet started inline run of ``plan``."""
        for node in plan.sources:
            if isinstance(node.spec, SourceSpec) and node.spec.server:
                raise TypeError("a server pipeline runs on the local engine only")
        return InlineRun(plan, options)


def error_from(label: str, exc: BaseException) -> PipelineError:
    """The :class:`PipelineError` for an exception raised by a stage in this process."""
    item_repr: str | None = None
    cause = exc
    if isinstance(exc, ItemFailed):
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        item_repr = short_repr(exc.item) if exc.has_item else None
    text = "".join(traceback.format_exception(cause))
    return stage_error(label, f"{type(cause).__name__}: {cause}", item_repr, text, cause)


class InlineRun:
    """One inline execution of a plan."""

    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self.plan = plan
        self.options = options
        self._rows = {node.id: row for row, node in enumerate(plan.stages)}
        self.counters = Counters(None, len(plan.stages))
        self._stages: dict[int, Stage] = {}
        self._timed: list[Node] = []
        self._ended: set[int] = set()  # nodes whose output stream has ended
        self._events: list[tuple[int, list[Any], float]] = []  # (sink, chunk, born)
        self._iterators: dict[int, Iterator[Any]] = {}
        self._cut: set[int] = set()  # sources ended by end_sources(), from any thread
        self._progress: Progress | None = None
        self._started_at = 0.0
        self._ended_at = 0.0
        self._source_items = 0
        self._readers: dict[int, DroppingReader] = {}  # sources under a drop policy
        self._born = 0.0  # when the source item being pushed through was read
        self._held: dict[int, float] = {}  # stateful node -> when its oldest held item was read
        # resume=: stateful node -> source items read before its oldest held item came
        self._holding: dict[int, int] = {}
        self._emitted: set[int] = set()  # stateful nodes that sent something since the last floor
        self._finished = 0  # source items whose outputs were all taken (see finished())
        self.latency = LatencyRecorder()
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Build and open every stage, in graph order."""
        if self._started:
            return
        self._started = True
        self._started_at = time.time()
        for node in self.plan.stages:
            assert isinstance(node.spec, StageSpec)
            label = self.plan.labels[node.id]
            try:
                stage = _in_this_thread(node.spec).make()
                stage.open()
            except BaseException as exc:
                raise error_from(label, exc)
            self._stages[node.id] = stage
            if stage.exhausted:  # limit(0)
                self._ended.add(node.id)
            if type(stage).deadline is not Stage.deadline:
                self._timed.append(node)
            self.counters.array[self._rows[node.id] * FIELDS + STARTED] = time.time()
        if self.options.progress:
            self._progress = Progress(self.stats, bar_totals(self.plan), latency=streams_live(self.plan))
            self._progress.start()

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """``(sink index, chunk)`` as each source item comes out of the graph."""
        self.start()
        for node in self.plan.sources:
            assert isinstance(node.spec, SourceSpec)
            try:
                if node.spec.on_full != BLOCK:  # read at its own pace by a thread
                    dropping = DroppingReader(self.plan.iterable(node), node.spec.on_full)
                    self._readers[node.id] = dropping
                    self._iterators[node.id] = dropping
                else:
                    self._iterators[node.id] = iter(self.plan.iterable(node))
            except Exception as exc:
                raise error_from("source", exc)
        self._settle()
        yield from self._drain(0)
        while self._iterators:
            for node_id in list(self._iterators):
                if not self.plan.wanted(node_id, self._ended) or node_id in self._cut:
                    self._end_source(node_id)
                    continue
                self._tick_deadlines()
                try:
                    item = next(self._iterators[node_id])
                except StopIteration:
                    self._end_source(node_id)
                    continue
                except Exception as exc:
                    raise error_from("source", exc)
                self._source_items += 1
                reader = self._readers.get(node_id)
                self._born = reader.read_at if reader is not None else time.monotonic()
                self._push(node_id, 0, [item])
                self._settle()
                yield from self._drain(self._floor())
        self._settle()
        yield from self._drain(self._floor())
        self._finish_stages()
        self._finished = self._source_items

    def end_sources(self, node_ids: set[int]) -> None:
        """End these sources before their next item (called from another thread)."""
        self._cut |= node_ids

    def finished(self) -> int:
        """How many source items have had all they produced taken from :meth:`events`
        (``resume=``)."""
        return self._finished

    def _floor(self) -> int:
        """The source items done with once the events now waiting are taken: all read so
        far, but those behind what a stateful stage holds (a batch filling up)."""
        before = self._source_items - 1  # the item just pushed is the newest one held
        for node in self.plan.stages:
            if node.spec.ordered_input and node.id in self._stages:
                if self._stages[node.id].held() <= 0:
                    self._holding.pop(node.id, None)
                elif node.id in self._emitted:  # what it sent took the older items first
                    self._holding[node.id] = max(before, 0)
                else:
                    self._holding.setdefault(node.id, max(before, 0))
        self._emitted.clear()
        return min(self._holding.values(), default=self._source_items)

    def _drain(self, floor: int) -> Iterator[tuple[int, list[Any]]]:
        events, self._events = self._events, []
        for sink, chunk, born in events:
            if born:
                self.latency.add(time.monotonic() - born, len(chunk))
            yield sink, chunk
        self._finished = max(self._finished, floor)  # taken: the caller asked for more

    def _push(self, node_id: int, slot: int, chunk: list[Any]) -> None:
        """Hand ``chunk`` from output ``slot`` of a node to everything that reads it."""
        for consumer in self.plan.consumers[node_id][slot]:
            if consumer.sink is not None:
                if chunk:
                    self._events.append((consumer.sink, chunk, self._born))
                continue
            assert consumer.node is not None
            if consumer.node.id not in self._ended:
                self._process(consumer.node, chunk)

    def _process(self, node: Node, chunk: list[Any]) -> None:
        if node.spec.ordered_input and self._born:
            self._held.setdefault(node.id, self._born)  # the oldest item it may be holding
        stage = self._stages[node.id]
        row = self._rows[node.id] * FIELDS
        array = self.counters.array
        array[row + CHUNKS] += 1  # one thread, in order: its n-th chunk is chunk n - 1
        array[row + LAST_CHUNK] = array[row + CHUNKS]
        if stage.streams:
            self._stream(node, stage, chunk)
            return
        t0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            out = stage.process(chunk)
        except BaseException as exc:
            array[row + ERRORS] += 1
            raise error_from(self.plan.labels[node.id], exc)
        array[row + BUSY] += time.perf_counter() - t0
        array[row + CPU] += time.thread_time() - cpu0  # this thread's: the stage's own
        array[row + PEAK_RSS_MB] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        array[row + ITEMS_IN] += len(chunk)
        array[row + ERRORS] = stage.errors
        array[row + RETRIED] = stage.retried
        self._emit(node, out)
        if stage.exhausted:
            # Only marked here: flushing what follows waits until this push is over, or a
            # sibling branch would be ended before this very chunk reached it.
            self._ended.add(node.id)

    def _stream(self, node: Node, stage: Stage, chunk: list[Any]) -> None:
        """explode: each part goes on as it comes, and the rest is never made once nothing
        downstream wants it (a limit reached), so an endless iterable ends there."""
        array = self.counters.array
        row = self._rows[node.id] * FIELDS
        parts = stage.stream(chunk)
        try:
            while self.plan.wanted(node.id, self._ended):
                t0 = time.perf_counter()
                try:
                    part = next(parts, None)
                except BaseException as exc:
                    array[row + ERRORS] += 1
                    raise error_from(self.plan.labels[node.id], exc)
                array[row + BUSY] += time.perf_counter() - t0
                if part is None:
                    break
                self._emit(node, part)
        finally:
            parts.close()
        array[row + ITEMS_IN] += len(chunk)

    def _emit(self, node: Node, produced: Any) -> None:
        chunks = produced if node.spec.output_slots > 1 else (produced,)
        born = self._born
        if node.spec.ordered_input and any(chunks):  # what it held goes out with its age
            self._born = self._held.pop(node.id, born)
            self._emitted.add(node.id)
        try:
            for slot, out in enumerate(chunks):
                self.counters.array[self._rows[node.id] * FIELDS + ITEMS_OUT] += len(out)
                if out:
                    self._push(node.id, slot, out)
        finally:
            self._born = born

    def _tick_deadlines(self) -> None:
        now = time.monotonic()
        for node in self._timed:
            if node.id in self._ended:
                continue
            stage = self._stages[node.id]
            deadline = stage.deadline()
            if deadline is not None and now >= deadline:
                self._emit(node, stage.tick(now))
                if stage.exhausted:
                    self._ended.add(node.id)
        self._settle()

    def _end_source(self, node_id: int) -> None:
        iterator = self._iterators.pop(node_id)
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
        self._ended.add(node_id)

    def _settle(self) -> None:
        """Flush and end, in graph order, every stage whose inputs have all ended; again
        while a flush ends more (a limit reached by what a batch flushed)."""
        changed = True
        while changed:
            changed = False
            for node in self.plan.stages:
                if node.id in self._ended or not all(up.id in self._ended for up, _slot in node.inputs):
                    continue
                stage = self._stages[node.id]
                try:
                    out = stage.finish()
                except BaseException as exc:
                    raise error_from(self.plan.labels[node.id], exc)
                self._emit(node, out)  # its consumers are still open: they get this first
                self._ended.add(node.id)
                changed = True

    def _finish_stages(self) -> None:
        """Close every stage after a clean end; an error in a close fails the run."""
        stages, self._stages = self._stages, {}
        for node_id, stage in stages.items():
            try:
                stage.close()
            except BaseException as exc:
                raise error_from(self.plan.labels[node_id], exc)

    def trace_rows(self) -> list[tuple[str, int, int]]:
        """``(stage, worker position, counter row)`` of every stage (``trace=``)."""
        return [(self.plan.labels[node.id], 0, self._rows[node.id]) for node in self.plan.stages]

    def stats(self) -> RunStats:
        """The run's figures so far (or final, once it is over)."""
        end = self._ended_at or time.time()
        dropped: dict[str, int] = {}
        for node_id, reader in self._readers.items():
            for consumer in self.plan.consumers[node_id][0]:
                if consumer.node is not None:
                    label = self.plan.labels[consumer.node.id]
                    dropped[label] = dropped.get(label, 0) + reader.queue.dropped
        rows = tuple(
            with_dropped(
                [
                    self.counters.stage_stats(self.plan.labels[node.id], [self._rows[node.id]], end)
                    for node in self.plan.stages
                ],
                dropped,
            )
        )
        return RunStats(
            rows=rows,
            bottleneck=pick_bottleneck(rows),
            wall_seconds=end - self._started_at if self._started_at else 0.0,
            source_items=self._source_items + sum(r.queue.dropped for r in self._readers.values()),
            latency=self.latency.summary(),
        )

    def close(self) -> None:
        """Close what is still open (stages, source generators); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._ended_at = time.time()
        for node_id in list(self._iterators):
            self._end_source(node_id)
        for stage in self._stages.values():
            try:
                stage.close()
            except Exception:  # the run already failed; its first error is the one reported
                pass
        self._stages = {}
        if self._progress is not None:
            self._progress.close()
