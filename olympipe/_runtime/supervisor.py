"""The supervisor: starts a run, waits on it without polling, and tears it down.

::

    caller thread                 worker processes (one per stage worker)
    -------------                 ---------------------------------------
    Feeder thread --frames-->  [inbox] stage A x2 --frames--> [inbox] stage B --+
                                                                               |
    Run.events()  <--frames-- [sink channel] <---------------------------------+
        |   ^
        |   +---- control channel (Done / Failure) <---- every worker, every feeder
        +-------- process sentinels (a worker that exits)

:class:`Run` wires the channels, has its :class:`~olympipe._runtime.workforce.Workforce`
start every worker first, then the feeder threads, so forking happens from a quiet parent.
Its loop blocks in one ``multiprocessing.connection.wait`` on the sink channels, the control
channel and every live worker's sentinel (and, with resizable stages, until the resizer's
next window). A sentinel that fires for a worker that never reported :class:`Done` is a
dead worker: :class:`~olympipe.WorkerDied`, at once. The first failure wins.

:meth:`Run.close` is the one teardown path for success, error, worker death, an early
``break`` and ``KeyboardInterrupt``: stop the feeders, let finished workers exit, terminate
(SIGTERM, which still runs ``close_method``) those still working, kill what remains after a
short grace, join everything and close every pipe.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Semaphore
from typing import TYPE_CHECKING, Any

from olympipe._core.latency import LatencyRecorder
from olympipe._core.tuning import tune
from olympipe._graph import Node, Plan, RunOptions, SourceSpec
from olympipe._progress import Progress, bar_totals, streams_live
from olympipe._runtime import journal
from olympipe._runtime.context import (
    copies_forced,
    ctrl_c_held,
    get_context,
    resolve_start_method,
    shared_memory_disabled,
    start_fork_server,
)
from olympipe._runtime.counters import Counters, Rows
from olympipe._runtime.credits import Credits, Target
from olympipe._runtime.feeder import Feeder, cost_reader
from olympipe._runtime.messages import Control
from olympipe._runtime.ordering import Reorder
from olympipe._runtime.resizer import Resizer
from olympipe._runtime.wiring import Wiring
from olympipe._runtime.worker import WorkerPlan
from olympipe._runtime.workforce import Unpicklable, Workforce
from olympipe._stages.request import RequestBatchSpec, RequestStageSpec
from olympipe._stages.stateful import BatchSpec

if TYPE_CHECKING:
    from olympipe._server import ServerSource
from olympipe._stages.base import StageSpec
from olympipe._transport import inherited, janitor, pool, shm
from olympipe._transport.channel import KIND_END, Channel, marks_of
from olympipe._transport.codec import DecodeError, Definition, decode_frame
from olympipe._transport.janitor import ensure_janitor
from olympipe.errors import PipelineError
from olympipe.stats import RunStats, pick_bottleneck, with_dropped

log = logging.getLogger("olympipe")

FEEDER_JOIN_SECONDS = 1.0  # a source blocked in next() longer than this keeps its thread


class Run:
    """One execution of a plan."""

    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self._origin = plan  # as built: the bars name its stages
        tuned = tune(plan, options.workers)
        plan = tuned.plan
        self.plan = plan
        self._start_with = tuned.start_with  # resizable node -> workers it starts with
        self._auto_budget = tuned.budget
        self._resizer: Resizer | None = None
        self.options = options
        self.method = resolve_start_method(options.start_method)
        if self.method == "forkserver":
            start_fork_server()  # it loads while this run wires itself
        self._ctx = get_context(self.method)
        self._server = _server_of(plan)
        if self._server is not None:
            self._server.read_stats = self.stats  # GET /metrics on the server's own port
        # Resizable stages start workers during the run as replacements do.
        self.replaceable = (
            self._server is not None
            or any(s.replaceable for s in _stage_specs(plan))
            or bool(self._start_with)
        )
        # Replacements start from a fork server, never by forking a caller that has threads;
        # what they inherit must then be made for that start method, not for fork.
        self._respawn_method = "forkserver" if self.method == "fork" else self.method
        # Locks, semaphores and shared values are made with it too, so they can be handed on.
        self._respawn_ctx = get_context(self._respawn_method) if self.replaceable else self._ctx
        self._feeders: list[Feeder] = []
        self.latency = LatencyRecorder()
        self._reached = [0] * len(plan.sinks)  # per sink: the mark taken last; -1: ended
        self._dropped: dict[str, int] = {}  # stage name -> items dropped at its input, once closed
        self._windows: list[tuple[Semaphore, int]] = []  # every window of credits and its size
        self._sink_windows: dict[int, list[Semaphore]] = {}  # sink -> windows it gives credits back to
        self._shared: list[Any] = []  # shared objects workers open by name: kept for the run
        self._control: Control | None = None
        self._wiring: Wiring | None = None
        self._source_items = 0
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._channels: dict[int, Channel] = {}
        self._sink_channels: list[Channel] = []
        self._started_at = 0.0
        self._ended_at = 0.0
        self._progress: Progress | None = None
        self._lifeline: Connection | None = None  # forkserver: the caller's end of every worker's lifeline
        self.labels = plan.labels
        # The caller's pid first: whose segments these are, for people and for leak checks.
        token = f"olympipe-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.shm_prefix: str | None = token if shm.available() and not shared_memory_disabled() else None
        self._journal = os.path.join(journal.directory(), f"{token}-held") if self.replaceable else None
        self.rows = Rows(plan, tuned.members, tuned.auto)
        self.counters = Counters(self._respawn_ctx, self.rows.size)
        self._force = Workforce(
            self.method, self._ctx, self._respawn_method, self._respawn_ctx, self.counters, self.shm_prefix
        )
        # Large buffers the forked workers already hold go by address (see inherited.py):
        # decided when the workers start, made once they have.
        self._by_address = False
        self._sender: inherited.Sender | None = None
        self._pool: pool.Pool | None = None  # the slots the feeders' large buffers reuse

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Wire the channels, start every worker, then the feeders (forking from a quiet
        caller: the feeders' threads exist only once every worker has started)."""
        if self._started:
            return
        self._started = True
        self._started_at = time.time()
        if self.shm_prefix is not None or self._journal is not None:
            ensure_janitor(self._ctx, self._force.start_process)  # before any pipe exists: it holds none
        if self._server is None:  # a server's stages are rebuilt as requests' (see _start_stage)
            self._force.check_replaceable(self.plan)
        credits = self._wire_channels()
        self._by_address = (
            self.method == "fork"
            and self.shm_prefix is not None
            and not self.replaceable
            and threading.active_count() == 1  # nothing writes memory between the forks
            and not copies_forced()
            and inherited.supported()
        )
        self._start_workers(credits)
        if self._start_with:
            starts = {node_id: (self.rows.workers[node_id], n) for node_id, n in self._start_with.items()}
            self._resizer = self._force.make_resizer(starts, self._auto_budget)
            self._resizer.count_out_empty_places()  # before the caller drops any pipe end
        if self._by_address:
            self._sender = inherited.Sender()  # after the forks: any later one turns it off
        slots_budget = pool.budget()
        # Not for replaceable stages: their journal re-reads frames, which a slot outlives.
        if self.shm_prefix is not None and not self.replaceable and slots_budget > 0:
            try:
                self._pool = pool.Pool(self.shm_prefix, slots_budget)
            except OSError as exc:
                if not shm.no_room(exc):
                    raise
                self._pool = None  # a full /dev/shm: no slots, large buffers take the pipes
        with ctrl_c_held():  # a feeder half started (one thread of two) cannot be joined
            self._start_feeders(credits)
        if self.options.progress:
            self._progress = Progress(
                self.stats, bar_totals(self._origin), latency=streams_live(self._origin)
            )
            self._progress.start()

    def _wire_channels(self) -> Credits:
        """One inbox per stage, one channel per sink, the control channel, the credits."""
        wiring = Wiring.make(self.plan, self._respawn_ctx, self.options.queue_size)
        self._wiring = wiring
        self._control, self._channels, self._sink_channels = wiring.control, wiring.inboxes, wiring.sinks
        self._windows = wiring.credits.sizes
        self._sink_windows = wiring.credits.release_at_sink
        return wiring.credits

    def _start_workers(self, credits: Credits) -> None:
        """Start each stage's workers, Ctrl-C blocked meanwhile (the children ignore it)."""
        lifeline = None
        if self.method == "forkserver" or self.replaceable:
            lifeline, self._lifeline = self._ctx.Pipe(duplex=False)
        # The mask keeps SIGINT from this thread while it forks, but another thread of the
        # caller may take it, and Python then raises it here in the middle of a start. So
        # Ctrl-C is also held until every worker has started, then raised: the teardown
        # then finds each worker whole (a half-started one failed to unpickle its locks).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with ctrl_c_held():
                for node in self.plan.stages:
                    self._start_stage(node, credits, lifeline if self.method == "forkserver" else None)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if lifeline is not None and not self.replaceable:
            lifeline.close()
        self._force.lifeline_reader = lifeline if self.replaceable else None  # replacements watch it too

    def _start_stage(self, node: Node, credits: Credits, lifeline: Connection | None) -> None:
        spec = node.spec
        assert isinstance(spec, StageSpec)
        if self._server is not None:
            spec = (
                RequestBatchSpec(name=spec.name, size=spec.size, max_wait=spec.max_wait or 0.0)
                if isinstance(spec, BatchSpec)
                else RequestStageSpec(name=spec.name, inner=spec)
            )
        try:
            definition: StageSpec | Definition = (
                spec if self.method == "fork" else self._force.definition_for(node.id, spec)
            )
        except Unpicklable as exc:
            label = self.labels[node.id]
            raise PipelineError(
                f"stage {label!r} cannot be sent to its workers: start_method={self.method!r}"
                f" pickles each stage (with dill), and this one does not pickle: {exc}",
                stage=label,
            ) from exc.__cause__
        renumber = self._respawn_ctx.Value("q", 0) if node.spec.renumbers_output else None
        self._shared.append(renumber)  # held until close: spawned children open it by name
        retire = self._respawn_ctx.Value("i", 0) if node.id in self._start_with else None
        self._shared.append(retire)
        starting = self._start_with.get(node.id, spec.count)
        self.rows.workers[node.id] = []
        for position in range(spec.count):
            index = len(self._force.workers)
            cursor = None
            if spec.replaceable and spec.count == 1:
                cursor = self._respawn_ctx.RawArray("q", len(node.inputs))
                self._shared.append(cursor)
            worker_plan = WorkerPlan(
                index=index,
                label=self.labels[node.id],
                inbox=self._channels[node.id],
                ports=len(node.inputs),
                outputs=self._outputs_of(node.id),
                windows=credits.released_by(node.id),
                control=self._control,  # type: ignore[arg-type]
                counters=self.counters,
                parent_pid=os.getpid(),
                lifeline=lifeline,
                watch_caller=threading.current_thread() is not threading.main_thread(),
                shm_prefix=self.shm_prefix,
                janitor=janitor.holder() if self.shm_prefix is not None else None,
                by_address=self._by_address,
                renumber=renumber,
                journal=self._journal if spec.replaceable else None,
                cursor=cursor,
                member_row=self.rows.member_row(node.id, position),
                retire=retire,
            )
            self.rows.workers[node.id].append(index)
            # a place beyond the first count: for a worker the stage may grow later
            self._force.place(worker_plan, spec, node.id, definition if position < starting else None)

    def _start_feeders(self, credits: Credits) -> None:
        """One feeder per source, after every worker: its threads make the caller busy."""
        outputs = {node.id: self._outputs_of(node.id)[0] for node in self.plan.sources}
        assert self._wiring is not None
        self._wiring.close_unused_ends(outputs, [plan for plan, _spec, _node in self._force.plans.values()])
        assert self._control is not None
        cost = cost_reader(
            self.counters, [(self.rows.workers[n.id], n.spec.parallelism) for n in self.plan.stages]
        )
        for node in self.plan.sources:
            assert isinstance(node.spec, SourceSpec)
            targets = outputs[node.id]
            sender = self._sender if all(t.takes_addresses for t in targets) else None
            feeder = Feeder(
                self.plan.iterable(node),
                targets,
                self._control,
                self._stop,
                cost,
                self.shm_prefix,
                node.spec.one_item_chunks,
                max_chunk=min(
                    (s.items_per_worker for s in _stage_specs(self.plan) if s.items_per_worker),
                    default=None,
                ),
                by_address=sender.token if sender is not None else None,
                write_slot=self._pool.write if self._pool is not None else None,
                on_full=node.spec.on_full,
            )
            self._feeders.append(feeder)
            feeder.start()

    def _outputs_of(self, node_id: int) -> list[list[Target]]:
        """Per output slot of a node: where its chunks go, each with its window of credits."""
        assert self._wiring is not None
        return self._wiring.outputs_of(self.plan, node_id, self._by_address)

    # -- running ----------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """``(sink index, chunk)`` in order per sink, until every sink has ended.

        Raises the run's first failure. Blocks in one ``wait`` call; never sleeps.
        """
        self.start()
        sinks = self._sink_channels
        reorders = [Reorder(1) for _ in sinks]
        open_sinks = {s.reader: i for i, s in enumerate(sinks)}
        assert self._control is not None
        control = self._control.channel
        by_sentinel = self._force.sentinels()
        resolve = self._sender.resolve if self._sender is not None else None
        pooled = self._pool.receive if self._pool is not None else None
        resizer = self._resizer
        while open_sinks:
            ready = wait([*open_sinks, control.reader, *by_sentinel], resizer.timeout() if resizer else None)
            if control.reader in ready:
                self._force.drain(self._control)
            for obj in ready:
                index = open_sinks.get(obj)  # type: ignore[call-overload,unused-ignore]
                if index is None:
                    continue
                try:
                    frame = sinks[index].recv()
                    kind, _port, seq, items = decode_frame(
                        sinks[index], frame, resolve=resolve, pooled=pooled
                    )
                    marks = marks_of(frame)
                except EOFError:
                    # Every writer is gone without END: a producer died. Its sentinel says
                    # which one; wait for it rather than report a vaguer error.
                    del open_sinks[obj]  # type: ignore[arg-type,unused-ignore]
                    self._force.raise_for_dead(by_sentinel, self._control)
                    continue
                except DecodeError as exc:
                    label = self.labels.get(self.plan.sinks[index][0].id, "source")
                    raise PipelineError(
                        f"the output of stage {label!r} could not be unpickled: {exc}",
                        stage=label,
                    ) from exc
                if kind == KIND_END:
                    del open_sinks[obj]  # type: ignore[arg-type,unused-ignore]
                    self._reached[index] = -1  # every item has sent all it made here
                    continue
                for _seq, (chunk, (chunk_born, upto)) in reorders[index].push(0, seq, (items, marks)):
                    for window in self._sink_windows.get(index, ()):
                        window.release()  # this chunk is back in order: a credit returns
                    if self._server is not None and index == 0:
                        self._server.respond(chunk)
                    if chunk_born:
                        self.latency.add(time.monotonic() - chunk_born, len(chunk))
                    yield index, chunk
                    self._reached[index] = upto  # taken: the caller asked for more
            for obj in ready:
                worker = by_sentinel.get(obj)  # type: ignore[call-overload,unused-ignore]
                if worker is not None:
                    del by_sentinel[obj]
                    replacement = self._force.exited(worker, self._control)
                    if replacement is not None:
                        by_sentinel[replacement.process.sentinel] = replacement
            if resizer is not None:
                for started in resizer.tick():
                    by_sentinel[started.process.sentinel] = started

    def finished(self) -> int:
        """How many source items, from the first this run read, have had all they produced
        taken from :meth:`events` (``resume=``; see ``watermark``)."""
        reached = [r for r in self._reached if r >= 0]
        if reached:
            return min(reached)
        return sum(feeder.items for feeder in self._feeders)  # every sink has ended

    def end_sources(self, node_ids: set[int]) -> None:
        """End the streams of these sources after what they have already read."""
        for node, feeder in zip(self.plan.sources, self._feeders, strict=False):
            if node.id in node_ids:
                feeder.end_source()

    # -- seeing inside -----------------------------------------------------------------------

    def stats(self) -> RunStats:
        """The run's figures so far (or final, once it is over)."""
        end = self._ended_at or time.time()
        rows = with_dropped(
            self.rows.stats(self.counters, self.labels, self._resizer, end), self._dropped_at()
        )
        return RunStats(
            rows=tuple(rows),
            bottleneck=pick_bottleneck(rows),
            wall_seconds=end - self._started_at if self._started_at else 0.0,
            source_items=self._source_items or sum(f.items + f.dropped for f in self._feeders),
            resizes=tuple(self._resizer.resizes) if self._resizer is not None else (),
            latency=self.latency.summary(),
        )

    def trace_rows(self) -> list[tuple[str, int, int]]:
        """``(stage, worker position, counter row)`` of every worker place (``trace=``)."""
        return [
            (self.labels[node_id], position, row)
            for node_id, rows in self.rows.workers.items()
            for position, row in enumerate(rows)
        ]

    def _dropped_at(self) -> dict[str, int]:
        """Items each source's flow policy dropped, counted at the stages it feeds."""
        if not self._feeders:
            return self._dropped
        out: dict[str, int] = {}
        for node, feeder in zip(self.plan.sources, self._feeders, strict=False):
            for consumer in self.plan.consumers[node.id][0]:
                if consumer.node is not None and feeder.dropped:
                    label = self.rows.first_name(consumer.node.id, self.labels)
                    out[label] = out.get(label, 0) + feeder.dropped
        return out

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything and release every resource; idempotent.

        The one teardown path, in the order CPython's process pool uses: stop the inputs,
        stop the workers (a grace to finish ``close()``, then kill), join them, close the
        pipes, remove shared memory, drop the locks. A Ctrl-C arriving meanwhile is held
        until the end, so that a second one cannot leave anything behind."""
        if self._closed:
            return
        self._closed = True
        self._ended_at = time.time()
        with ctrl_c_held():
            if self._progress is not None:
                self._progress.close()
            self._stop_inputs()
            self._force.stop(self._control)
            self._release()

    def _stop_inputs(self) -> None:
        """Stop the feeders and the server; wake whatever waits for room."""
        self._stop.set()
        if self._server is not None:
            self._server.stop()
        for feeder in self._feeders:
            feeder.wake()
        for window, size in self._windows:
            for _ in range(size + 1):  # more than anyone can be waiting for
                window.release()  # wake a producer waiting for a credit
        for channel in [*self._channels.values(), *self._sink_channels]:
            channel.unblock_producers()

    def _release(self) -> None:
        """Join the feeders, close every pipe, remove shared memory, drop the locks."""
        # Every worker is dead: with the caller's own read ends closed too (it keeps a
        # replaceable stage's inbox for replacements), a feeder blocked writing into a full
        # pipe gets EPIPE at once, instead of looking like a source blocked in next().
        for channel in [*self._sink_channels, *self._channels.values()]:
            channel.close_reader()
        for feeder in self._feeders:
            if not feeder.join(FEEDER_JOIN_SECONDS):
                log.warning("the source iterator is still blocked in next(); leaving its thread")
        for channel in [*self._channels.values(), *self._sink_channels]:
            channel.close()
        if self._control is not None:
            self._control.channel.close()
        if self._lifeline is not None:
            self._lifeline.close()
        self._force.close()
        if self._journal is not None:
            journal.remove_all(self._journal)
        if self._pool is not None:
            self._pool.close()
        if self.shm_prefix is not None:
            # Only now is every process that could write or map a segment dead.
            shm.remove_all(self.shm_prefix)
        # Drop every lock and semaphore now: under spawn and forkserver each is a file in
        # /dev/shm until collected, and the Pipeline keeps this run for stats().
        self._source_items = sum(f.items + f.dropped for f in self._feeders)
        self._dropped = self._dropped_at()
        self._channels, self._sink_channels, self._windows, self._shared = {}, [], [], []
        self._feeders, self._control, self._wiring = [], None, None


def _stage_specs(plan: Plan) -> list[StageSpec]:
    return [n.spec for n in plan.stages if isinstance(n.spec, StageSpec)]


def _server_of(plan: Plan) -> ServerSource | None:
    """The plan's HTTP server source (the builder has checked the stages around it)."""
    for node in plan.sources:
        if isinstance(node.spec, SourceSpec) and node.spec.server:
            return node.spec.iterable  # type: ignore[return-value]
    return None
