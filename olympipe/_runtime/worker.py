"""The body of every worker process: read chunks, apply the stage, write chunks.

One loop serves every operator. The worker:

1. becomes a well-behaved child: ignores SIGINT (the caller handles Ctrl-C once), dies with
   its parent (``PR_SET_PDEATHSIG``), and turns SIGTERM into an orderly stop that still
   runs the stage's ``close()``;
2. builds its stage (``spec.make()``, ``open()``) inside the process;
3. reads frames until it has seen END, restoring sequence order first when the stage is
   stateful, and writes each output chunk to every consumer of each output;
4. after a clean END: flushes the stage (``finish()``), closes it, counts itself out of each
   output channel (the last producer forwards END), and reports :class:`Done`.

On an error it reports a :class:`Failure` and does *not* count itself out, so no consumer
can mistake a failed run for a finished one.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Semaphore
from typing import Any

from olympipe._core.flow import BLOCK, DROP_OLDEST
from olympipe._runtime.child import Stopped, become_worker, die_by, stop_if_asked
from olympipe._runtime.counters import (
    CURRENT,
    FIELDS,
    Counters,
)
from olympipe._runtime.credits import Target
from olympipe._runtime.journal import (
    BUFFERED,
    PROCESSING,
    SENDING,
    Journal,
    Recovered,
    item_of,
    restore_segments,
)
from olympipe._runtime.messages import Control, Done, Failure, Retired
from olympipe._runtime.meter import Meter, member_recorder
from olympipe._runtime.ordering import Reorder
from olympipe._runtime.watermark import Watermark
from olympipe._stages.base import ItemFailed, Stage, StageSpec
from olympipe._stages.fused import FusedStage
from olympipe._transport import inherited, pool, stock
from olympipe._transport.channel import KIND_END, Channel, marks_of, unpack_header
from olympipe._transport.codec import (
    DecodeError,
    Definition,
    Encoded,
    EncodeError,
    decode_frame,
    encode_chunk,
    frame_segments,
    loads_definition,
    register_main_classes,
    send_encoded,
)
from olympipe.errors import WorkerDied


class Retire(Exception):
    """The worker has done its ``max_items_per_worker``: it hands over what it holds."""


class Shrink(Retire):
    """The worker took a retire request of its resizable stage (see ``resizer``)."""


@dataclass
class WorkerPlan:
    """Everything one worker needs besides its stage definition."""

    index: int  # row in the counters table
    label: str  # the stage's name, for error messages
    inbox: Channel
    ports: int
    outputs: list[list[Target]]  # per output slot: where chunks go, with their windows
    windows: dict[int, list[Semaphore]]  # port -> windows given a credit back per chunk back in order
    control: Control
    counters: Counters
    parent_pid: int
    lifeline: Connection | None = None  # forkserver only: EOF when the caller is gone
    watch_caller: bool = False  # forked from a thread: the death signal would follow the thread
    shm_prefix: str | None = None  # where large buffers go; None: always inline
    janitor: Connection | None = None  # held, never used: the janitor waits for this worker too
    by_address: bool = False  # forked for a run that sends what workers hold by address
    renumber: Any = None  # ordered=False: a shared counter; output numbered as it completes
    journal: str | None = None  # a replaceable stage: where held chunks are written
    cursor: Any = None  # a replaceable single worker: the next chunk per port, for its successor
    recovering: int | None = None  # a replacement: the exit code of the worker it replaces
    member_row: int = -1  # fused stages: the counters row of this worker's first member
    retire: Any = None  # a resizable stage: the shared count of retire requests


def worker_main(plan: WorkerPlan, definition: StageSpec | Definition) -> None:
    """Entry point of a worker process."""
    try:
        # Inside the try: SIGTERM may come as soon as its handler is set, and a Stopped
        # escaping this function is a second traceback printed by multiprocessing.
        become_worker(plan.parent_pid, plan.lifeline, plan.watch_caller)
        _work(plan, definition)
        # Reported (Done or a Failure): from here on, being terminated is simply the end.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except Stopped:
        # SIGTERM while reporting a failure: the run is already being torn down, and the
        # report (if any got through) is all the caller needs. No second traceback.
        die_by(signal.SIGTERM)


def _work(plan: WorkerPlan, definition: StageSpec | Definition) -> None:
    """Build the stage, run it to the end of its stream, report Done or a Failure."""
    try:
        spec: StageSpec = loads_definition(definition) if isinstance(definition, Definition) else definition
    except Stopped:
        raise
    except BaseException as exc:  # user code runs while the stage is rebuilt (a __reduce__, an import)
        msg = f"stage {plan.label!r} could not be rebuilt in its worker: {type(exc).__name__}: {exc}"
        _fail(plan, None, Failure.capture(plan.label, exc, message=msg))
        return
    register_main_classes(spec)
    if plan.by_address:
        inherited.enable_forwarding()
    if plan.shm_prefix is not None:
        stock.enable(plan.shm_prefix)
    stage: Stage | None = None
    try:
        stage = spec.make()
        stage.open()
        if plan.member_row >= 0 and isinstance(stage, FusedStage):
            stage.bind_recorder(member_recorder(plan.counters.array, plan.member_row))
        try:
            (_run if plan.journal is None else _run_replaceable)(plan, spec, stage)
        except Retire as exc:
            stock.close()  # before the replacement starts; after a failure, the run's end removes them
            stage.close()  # close_method runs in the retiring worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            plan.control.send(Retired(plan.index, shrink=isinstance(exc, Shrink)))
            return
        stock.close()
        stage.close()
        stage = None
        for slot in plan.outputs:
            for target in slot:
                target.channel.producer_done()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing left to clean up
        plan.control.send(Done(plan.index))
    except Stopped:
        _close_quietly(stage)
        die_by(signal.SIGTERM)
    except ItemFailed as exc:
        Meter(plan.counters.array, plan.index).failed()
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        failure = Failure.capture(exc.stage or plan.label, cause, exc.item, exc.has_item)
        _fail(plan, stage, failure)
    except EncodeError as exc:
        msg = f"an output of stage {plan.label!r} cannot be pickled: {exc}"
        _fail(plan, stage, Failure.capture(plan.label, exc, exc.item, True, msg))
    except DecodeError as exc:
        msg = f"stage {plan.label!r} could not unpickle its input: {exc}"
        _fail(plan, stage, Failure.capture(plan.label, exc, None, False, msg))
    except BaseException as exc:  # SystemExit and friends from user code fail the run too
        _fail(plan, stage, Failure.capture(plan.label, exc))


def _run(plan: WorkerPlan, spec: StageSpec, stage: Stage) -> None:
    """Read chunks until END, process each, send what comes out; flush at a clean end."""
    meter = Meter(plan.counters.array, plan.index)
    outputs = _Outputs(plan, spec.output_slots, meter, holds=spec.ordered_input)
    # A single worker sees its input in order, also behind a count=N stage, so that side
    # effects (a writer, a zip file) happen in source order; stateful stages need it too.
    # Several workers of one stage cannot share an order; ordered=False asks for none.
    in_order = spec.ordered_input or (spec.count == 1 and plan.renumber is None)
    reorder = Reorder(plan.ports) if in_order else None
    # explode sends an item's elements on as they come, in chunks it numbers itself: that
    # takes one worker reading its input in order
    streams = stage.streams and spec.count == 1 and plan.renumber is None
    keeps_numbers = not spec.ordered_input and not streams  # map stages: output chunk k for input chunk k
    timed = type(stage).deadline is not Stage.deadline
    # on_full="drop_*": what waits when the worker is free is read at once, and all of it
    # but the newest (or the oldest) chunk is dropped, so nothing waits behind a slow stage
    policy = getattr(spec, "on_full", BLOCK)
    dropping = None if policy == BLOCK else policy
    watermark = Watermark(plan.ports) if spec.ordered_input else None
    reached = 0  # explode: the mark of the last chunk it finished
    meter.start()
    outputs.end_if_exhausted(stage)  # limit(0)
    retire = plan.retire
    while True:
        stop_if_asked()
        if retire is not None and retire.value > 0 and _take_request(retire):
            meter.record_usage()
            raise Shrink  # between chunks: this worker holds none
        meter.sample_usage()
        if timed and not outputs.ended and not _input_before_deadline(plan.inbox, stage, meter):
            ticked = stage.tick(time.monotonic())
            if watermark is not None:
                outputs.upto = watermark.after(stage.held())
            outputs.send(None, ticked)
            if outputs.end_if_exhausted(stage) and reorder is not None:
                for buffered_port, count in reorder.drop().items():
                    _give_back(plan.windows, buffered_port, count)
            continue
        kind, port, seq, items, born, upto = _read(plan.inbox, meter)
        if kind == KIND_END:
            break
        if outputs.ended:  # once ended early, what still comes is drained unread
            _give_back(plan.windows, port, 1)
            continue
        arrived = [(port, seq, items, born, upto)]
        last = dropping is not None and _read_waiting(plan.inbox, meter, arrived)  # END came too
        ready: list[tuple[int, int, Any]] = []  # (port, seq, (items, born))
        for port, seq, items, born, upto in arrived:
            pushed = (
                [(seq, (items, born, upto))]
                if reorder is None
                else reorder.push(port, seq, (items, born, upto))
            )
            ready.extend((port, ready_seq, chunk) for ready_seq, chunk in pushed)
        if dropping is not None and len(ready) > 1:
            ready = _drop_waiting(ready, dropping, keeps_numbers, outputs, meter, plan.windows)
        for index, (port, ready_seq, (chunk, chunk_born, chunk_upto)) in enumerate(ready):
            outputs.saw(chunk_born)
            meter.took(ready_seq)
            if streams:
                outputs.upto = reached  # its parts complete nothing until the last one
                meter.stream(stage, chunk, outputs.send)
                reached = outputs.upto = chunk_upto
            elif watermark is not None:
                watermark.took(port, chunk_upto, len(chunk))
                produced = meter.process(stage, chunk)
                outputs.upto = watermark.after(stage.held())
                outputs.send(None, produced)
            else:
                outputs.upto = chunk_upto
                outputs.send(ready_seq if keeps_numbers else None, meter.process(stage, chunk))
            if stage.exhausted:
                _give_back(plan.windows, port, len(ready) - index)  # this one and the rest
                break
            _give_back(plan.windows, port, 1)
        if outputs.end_if_exhausted(stage) and reorder is not None:
            for buffered_port, count in reorder.drop().items():  # never to be read
                _give_back(plan.windows, buffered_port, count)
        if last:
            break
    if not outputs.ended and spec.ordered_input:
        finished = stage.finish()
        if watermark is not None:
            outputs.upto = watermark.after(0)
        outputs.send(None, finished)
    meter.record_usage()


def _run_replaceable(plan: WorkerPlan, spec: StageSpec, stage: Stage) -> None:
    """The loop of a worker that may be replaced (see ``journal``): per-item stages only.

    It first takes over what its predecessor held, then reads as :func:`_run` does, holding
    each frame in the journal until its output is sent."""
    assert plan.journal is not None
    meter = Meter(plan.counters.array, plan.index)
    outputs = _Outputs(plan, spec.output_slots, meter)
    reorder = Reorder(plan.ports) if spec.count == 1 and plan.renumber is None else None
    if reorder is not None and plan.cursor is not None:
        reorder.start_at(list(plan.cursor))
    journal = Journal(plan.journal, plan.index)
    budget = _Budget(spec.items_per_worker)
    died = WorkerDied(stage=plan.label, exitcode=plan.recovering)
    held: dict[tuple[int, int], Recovered] = {}
    current = plan.index * FIELDS + CURRENT
    array = plan.counters.array
    array[current] = -1
    stage.track_items(array, current)  # after open(): a class_task builds its calls there
    meter.start()

    marks: dict[tuple[int, int], tuple[float, int]] = {}  # held chunks: born and upto

    def run(port: int, seq: int, chunk: list[Any]) -> None:
        entry = held.pop((port, seq))
        born, outputs.upto = marks.pop((port, seq), (0.0, 0))
        outputs.saw(born)
        meter.took(seq)
        budget.before(len(chunk))
        if entry.mark == BUFFERED:
            array[current] = -1
            entry.held.mark(PROCESSING)
            produced = meter.process(stage, chunk)
        else:
            produced = meter.timed(len(chunk), stage, lambda: _rerun(stage, chunk, entry, died))
        entry.held.mark(SENDING)
        outputs.send(seq, produced)
        entry.held.release()
        _give_back(plan.windows, port, 1)
        budget.after(len(chunk))

    def take(entry: Recovered, items: list[Any], mark: tuple[float, int]) -> None:
        held[(entry.port, entry.seq)] = entry
        marks[(entry.port, entry.seq)] = mark
        behind = reorder is None or entry.seq < reorder.next_seq(entry.port)
        ready = [(entry.seq, items)] if behind else reorder.push(entry.port, entry.seq, items)  # type: ignore[union-attr]
        if reorder is not None and plan.cursor is not None:
            plan.cursor[entry.port] = reorder.next_seq(entry.port)
        for ready_seq, chunk in ready:
            run(entry.port, ready_seq, chunk)

    for entry in _recovery_order(journal.recover(), reorder):
        restore_segments(entry, frame_segments(entry.frame))
        take(entry, decode_frame(None, entry.frame, private=True)[3], marks_of(entry.frame))
    while True:
        stop_if_asked()
        meter.sample_usage()
        t0 = time.perf_counter()
        frame = plan.inbox.recv()
        meter.waited(time.perf_counter() - t0)
        kind, port, seq = unpack_header(frame)
        if kind == KIND_END:
            break
        entry = Recovered(port, seq, BUFFERED, b"", journal.hold(port, seq, frame, frame_segments(frame)))
        take(entry, decode_frame(plan.inbox, frame, private=True)[3], marks_of(frame))
    meter.record_usage()


def _take_request(requests: Any) -> bool:
    """Take one retire request, if another worker has not taken the last one first."""
    with requests.get_lock():
        if requests.value <= 0:
            return False
        requests.value -= 1
        return True


def _recovery_order(entries: list[Recovered], reorder: Reorder | None) -> list[Recovered]:
    """What a predecessor held, in the order to take it over: first the chunks it had
    released from its reorder buffer (the one it was processing among them), then those
    still waiting there."""
    if reorder is None:
        return entries
    return sorted(entries, key=lambda e: (e.seq >= reorder.next_seq(e.port), e.port, e.seq))


def _rerun(stage: Stage, chunk: list[Any], entry: Recovered, died: WorkerDied) -> Any:
    """Run again a chunk whose worker died on it, item by item (see ``journal``)."""
    culprits: dict[int, Exception] = {
        index: WorkerDied(stage=died.stage, exitcode=code) for index, code in entry.culprits.items()
    }
    found = item_of(entry.mark)
    if found is None and len(chunk) == 1:
        found = 0
    if found is not None and found not in culprits:
        entry.held.note_culprit(found, died.exitcode)
        culprits[found] = died
    return stage.rerun(chunk, died, culprits, entry.held)


class _Budget:
    """``max_items_per_worker``: raise :class:`Retire` before a chunk that would exceed it
    (unless nothing was done yet) and once it is spent."""

    __slots__ = ("_left", "_limit")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._left = limit

    def before(self, items: int) -> None:
        if self._left is not None and self._left < items and self._left != self._limit:
            raise Retire

    def after(self, items: int) -> None:
        if self._left is not None:
            self._left -= items
            if self._left <= 0:
                raise Retire


class _Outputs:
    """Where a worker's chunks go, numbered by the one strategy its stage needs.

    * *keep*: a map stage's output chunk ``k`` answers input chunk ``k``;
    * *own*: a stateful stage numbers its non-empty output chunks 0, 1, 2, ...;
    * *renumber* (``ordered=False``): numbers taken from a counter shared by the stage's
      workers as chunks complete, under the lock that also covers the send, so numbers
      reach the consumer in order and its reorder buffer never waits.
    """

    def __init__(self, plan: WorkerPlan, slots: int, meter: Meter, holds: bool = False) -> None:
        self._consumers = plan.outputs
        # When the oldest source item behind the next output was read (0: unknown): the
        # chunk in hand's; a stage that holds items (``holds``: batch, reduce) keeps the
        # oldest since its last output.
        self._born = 0.0
        self._holds = holds
        self._slots = slots
        self._meter = meter
        self._own_seq = [0] * len(plan.outputs)
        self._renumber = plan.renumber
        self._prefix = plan.shm_prefix
        # per slot: buffers received by address go on by address when every consumer takes them
        self._by_address = [
            inherited.forward if all(t.takes_addresses for t in slot) else None for slot in plan.outputs
        ]
        # per slot: its one consumer is the caller's sink, which takes slots only while it
        # lends them out (see pool); else a result is copied into a segment of its own
        self._to_caller = [len(slot) == 1 and slot[0].to_caller for slot in plan.outputs]
        self.ended = False  # ended early: limit reached, timeout expired
        self.upto = 0  # the mark of what is sent next (see watermark.py)

    def saw(self, born: float) -> None:
        """A chunk whose oldest source item was read at ``born`` is in hand."""
        if not (self._holds and self._born) or (born and born < self._born):
            self._born = born

    def send(self, seq: int | None, produced: Any) -> None:
        """Send what one call of the stage produced; ``seq`` ``None``: number it here."""
        chunks = produced if self._slots > 1 else (produced,)
        born = self._born
        for slot, chunk in enumerate(chunks):
            if seq is None and not chunk:
                continue
            if self._holds and chunk:
                self._born = 0.0  # what it held has gone out
            self._meter.emitted(len(chunk))
            consumers = self._consumers[slot]
            if not consumers:
                continue
            # An array returned as it arrived (or changed in place) is forwarded, not copied,
            # when one consumer gets it (several would share one segment).
            by_address = self._by_address[slot]
            single = len(consumers) == 1
            slots = single and (not self._to_caller[slot] or pool.caller_lends(self._prefix))
            t0 = time.perf_counter()
            encoded = encode_chunk(chunk, self._prefix is not None, single, by_address, slots)
            t1 = time.perf_counter()
            for target in consumers:
                if target.window is not None:
                    target.window.acquire()  # a credit per chunk sent to a racing stage
            if seq is None:
                written = self._write(consumers, self._own_seq[slot], encoded, born)
                self._own_seq[slot] += 1
            elif self._renumber is None:
                written = self._write(consumers, seq, encoded, born)
            else:
                with self._renumber.get_lock():
                    written = self._write(consumers, self._renumber.value, encoded, born)
                    self._renumber.value += 1
            # Pickling the output and copying its large buffers into shared memory is the
            # stage's work: counted as blocked, a stage making large arrays read as held back
            # by the next one, and the busiest stage went unnamed.
            self._meter.encoded(t1 - t0 + written)
            self._meter.blocked(time.perf_counter() - t1 - written)

    def _write(self, consumers: list[Target], seq: int, encoded: Encoded, born: float) -> float:
        return sum(
            send_encoded(target.channel, target.port, seq, encoded, self._prefix, None, born, self.upto)
            for target in consumers
        )

    def end_if_exhausted(self, stage: Stage) -> bool:
        """``limit``/``timeout``: once the stage is exhausted, downstream ends at once;
        upstream is drained until its END. ``True`` the one time it ends."""
        if self.ended or not stage.exhausted:
            return False
        self.ended = True
        for slot in self._consumers:
            for target in slot:
                target.channel.producer_done()
        self._consumers = [[] for _ in self._consumers]
        return True


def _input_before_deadline(inbox: Channel, stage: Stage, meter: Meter) -> bool:
    """Whether input arrives before the stage's deadline (``True`` when it has none)."""
    deadline = stage.deadline()
    if deadline is None:
        return True
    t0 = time.perf_counter()
    left = deadline - time.monotonic()
    if left > 0 and inbox.poll(left):
        return True
    meter.waited(time.perf_counter() - t0)
    return False


def _read(inbox: Channel, meter: Meter) -> tuple[int, int, int, list[Any], float, int]:
    t0 = time.perf_counter()
    frame = inbox.recv()
    meter.waited(time.perf_counter() - t0)
    kind, port, seq, items = decode_frame(inbox, frame, keep=True, resolve=inherited.take, pooled=pool.take)
    return kind, port, seq, items, *marks_of(frame)


def _read_waiting(
    inbox: Channel, meter: Meter, arrived: list[tuple[int, int, list[Any], float, int]]
) -> bool:
    """Read every frame already waiting in ``inbox`` into ``arrived``; whether the end of
    the stream came with them."""
    while inbox.poll(0):
        kind, port, seq, items, born, upto = _read(inbox, meter)
        if kind == KIND_END:
            return True
        arrived.append((port, seq, items, born, upto))
    return False


def _drop_waiting(
    ready: list[tuple[int, int, Any]],
    policy: str,
    keeps_numbers: bool,
    outputs: _Outputs,
    meter: Meter,
    windows: dict[int, list[Semaphore]],
) -> list[tuple[int, int, Any]]:
    """Of the chunks ready at once, keep the newest (``drop_oldest``) or the oldest
    (``drop_newest``); the others are counted dropped, their numbers go on as empty chunks
    (so order downstream has no hole) and their credits come back."""
    keep = ready[-1] if policy == DROP_OLDEST else ready[0]
    for entry in ready:
        if entry is keep:
            continue
        port, seq, (chunk, _born, _upto) = entry
        meter.dropped(len(chunk))
        if keeps_numbers:
            outputs.send(seq, [])
        _give_back(windows, port, 1)
    return [keep]


def _give_back(windows: dict[int, list[Semaphore]], port: int, chunks: int) -> None:
    """``chunks`` chunks from ``port`` are back in order: their credits return."""
    for window in windows.get(port, ()):
        for _ in range(chunks):
            window.release()


def _fail(plan: WorkerPlan, stage: Stage | None, failure: Failure) -> None:
    """Close the stage first (the report makes the supervisor tear the run down), then report."""
    try:
        _close_quietly(stage)
    except Stopped:
        pass
    plan.control.send(failure)


def _close_quietly(stage: Stage | None) -> None:
    if stage is None:
        return
    try:
        stage.close()
    except Exception:  # the run already failed; its first error is the one reported
        pass
