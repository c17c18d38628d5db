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

import functools
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
from olympipe._runtime.outputs import Outputs
from olympipe._runtime.watermark import Watermark
from olympipe._stages.base import ItemFailed, Stage, StageSpec
from olympipe._stages.fused import FusedStage
from olympipe._transport import inherited, pool, stock
from olympipe._transport.channel import KIND_END, Channel, marks_of, unpack_header
from olympipe._transport.codec import (
    DecodeError,
    Definition,
    EncodeError,
    decode_frame,
    frame_segments,
    loads_definition,
    register_main_classes,
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
            _run(plan, spec, stage)
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


@dataclass
class _Taken:
    """A chunk a worker took from its inbox, or over from the predecessor it replaces."""

    port: int
    seq: int
    items: list[Any]
    born: float  # when its oldest source item was read
    upto: int  # the source position it completes (see watermark.py)
    journaled: Recovered | None = None  # its entry in the journal, until its output is sent


class _Plain:
    """How a worker that is never replaced keeps what it took: in its memory alone (if it
    dies, the run fails)."""

    def taken_over(self, reorder: Reorder | None) -> list[_Taken]:
        """What a predecessor held: nothing."""
        return []

    def read(self, inbox: Channel, meter: Meter) -> _Taken | None:
        """The next chunk of ``inbox``; ``None`` at its end."""
        frame = _recv(inbox, meter)
        kind, port, seq, items = decode_frame(
            inbox, frame, keep=True, resolve=inherited.take, pooled=pool.take
        )
        return None if kind == KIND_END else _Taken(port, seq, items, *marks_of(frame))

    def run(self, stage: Stage, meter: Meter, taken: _Taken) -> Any:
        """What the stage makes of the chunk."""
        return meter.process(stage, taken.items)

    def sent(self, taken: _Taken) -> None:
        """The chunk's output is sent."""

    def done(self, taken: _Taken) -> None:
        """The chunk's credit is back."""


class _Journaled(_Plain):
    """How a replaceable worker (``on_error``, ``max_items_per_worker``; see ``journal``)
    keeps what it took: each frame is held in the journal, before it is decoded, until its
    output is sent. A replacement takes over what its predecessor held and runs the chunk
    it died on again, item by item. The item budget is spent here too: :class:`Retire`
    before a chunk that would exceed it, and once it is spent."""

    def __init__(self, plan: WorkerPlan, spec: StageSpec, stage: Stage) -> None:
        assert plan.journal is not None
        self._journal = Journal(plan.journal, plan.index)
        self._budget = _Budget(spec.items_per_worker)
        self._died = WorkerDied(stage=plan.label, exitcode=plan.recovering)
        self._array = plan.counters.array
        self._current = plan.index * FIELDS + CURRENT
        self._array[self._current] = -1
        # after open(): a class_task builds its calls there
        stage.track_items(functools.partial(self._array.__setitem__, self._current))

    def taken_over(self, reorder: Reorder | None) -> list[_Taken]:
        taken = []
        for entry in _recovery_order(self._journal.recover(), reorder):
            restore_segments(entry, frame_segments(entry.frame))
            items = decode_frame(None, entry.frame, private=True)[3]
            taken.append(_Taken(entry.port, entry.seq, items, *marks_of(entry.frame), journaled=entry))
        return taken

    def read(self, inbox: Channel, meter: Meter) -> _Taken | None:
        frame = _recv(inbox, meter)
        kind, port, seq = unpack_header(frame)
        if kind == KIND_END:
            return None
        on_disk = self._journal.hold(port, seq, frame, frame_segments(frame))
        entry = Recovered(port, seq, BUFFERED, b"", on_disk)
        items = decode_frame(inbox, frame, private=True)[3]
        return _Taken(port, seq, items, *marks_of(frame), journaled=entry)

    def run(self, stage: Stage, meter: Meter, taken: _Taken) -> Any:
        entry = taken.journaled
        assert entry is not None
        self._budget.before(len(taken.items))
        if entry.mark == BUFFERED:
            self._array[self._current] = -1
            entry.held.mark(PROCESSING)
            produced = meter.process(stage, taken.items)
        else:  # its predecessor died on it
            chunk = taken.items
            produced = meter.timed(len(chunk), stage, lambda: _rerun(stage, chunk, entry, self._died))
        entry.held.mark(SENDING)
        return produced

    def sent(self, taken: _Taken) -> None:
        assert taken.journaled is not None
        taken.journaled.held.release()

    def done(self, taken: _Taken) -> None:
        self._budget.after(len(taken.items))


def _run(plan: WorkerPlan, spec: StageSpec, stage: Stage) -> None:
    """Read chunks until END, process each, send what comes out; flush at a clean end.

    The one loop of every worker: what differs between stages is decided here, once, from
    the stage and the plan (order, streaming, deadlines, a flow policy, what the stage
    holds), and how the worker keeps what it took is its custody (:class:`_Plain`, or
    :class:`_Journaled` for a replaceable stage)."""
    meter = Meter(plan.counters.array, plan.index)
    custody = _Plain() if plan.journal is None else _Journaled(plan, spec, stage)
    outputs = Outputs(plan, spec.output_slots, meter, holds=spec.ordered_input)
    # A single worker sees its input in order, also behind a count=N stage, so that side
    # effects (a writer, a zip file) happen in source order; stateful stages need it too.
    # Several workers of one stage cannot share an order; ordered=False asks for none.
    in_order = spec.ordered_input or (spec.count == 1 and plan.renumber is None)
    reorder = Reorder(plan.ports) if in_order else None
    cursor = plan.cursor  # a replaceable single worker: where its successor goes on
    if reorder is not None and cursor is not None:
        reorder.start_at(list(cursor))
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

    def end_if_exhausted() -> None:
        """limit/timeout reached: end downstream; what waits to be put in order is never read."""
        if outputs.end_if_exhausted(stage) and reorder is not None:
            for buffered_port, count in reorder.drop().items():
                _give_back(plan.windows, buffered_port, count)

    def in_order_now(arrived: list[_Taken]) -> list[_Taken]:
        """Of ``arrived``, and of what waited for them, the chunks to run now, in order."""
        ready: list[_Taken] = []
        for taken in arrived:
            if reorder is None or taken.seq < reorder.next_seq(taken.port):
                ready.append(taken)  # no order to keep, or a predecessor released it already
                continue
            ready.extend(waiting for _seq, waiting in reorder.push(taken.port, taken.seq, taken))
            if cursor is not None:
                cursor[taken.port] = reorder.next_seq(taken.port)
        return ready

    def run(ready: list[_Taken]) -> None:
        nonlocal reached
        for index, taken in enumerate(ready):
            outputs.saw(taken.born)
            meter.took(taken.seq)
            if streams:
                outputs.upto = reached  # its parts complete nothing until the last one
                meter.stream(stage, taken.items, outputs.send)
                reached = outputs.upto = taken.upto
            elif watermark is not None:
                watermark.took(taken.port, taken.upto, len(taken.items))
                produced = meter.process(stage, taken.items)
                outputs.upto = watermark.after(stage.held())
                outputs.send(None, produced)
            else:
                outputs.upto = taken.upto
                outputs.send(taken.seq if keeps_numbers else None, custody.run(stage, meter, taken))
                custody.sent(taken)
            if stage.exhausted:
                _give_back(plan.windows, taken.port, len(ready) - index)  # this one and the rest
                break
            _give_back(plan.windows, taken.port, 1)
            custody.done(taken)
        end_if_exhausted()

    run(in_order_now(custody.taken_over(reorder)))
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
            end_if_exhausted()
            continue
        taken = custody.read(plan.inbox, meter)
        if taken is None:
            break
        if outputs.ended:  # once ended early, what still comes is drained unread
            _give_back(plan.windows, taken.port, 1)
            continue
        arrived = [taken]
        last = dropping is not None and _read_waiting(plan.inbox, meter, custody, arrived)  # END came too
        ready = in_order_now(arrived)
        if dropping is not None and len(ready) > 1:
            ready = _drop_waiting(ready, dropping, keeps_numbers, outputs, meter, plan.windows)
        run(ready)
        if last:
            break
    if not outputs.ended and spec.ordered_input:
        finished = stage.finish()
        if watermark is not None:
            outputs.upto = watermark.after(0)
        outputs.send(None, finished)
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


def _recv(inbox: Channel, meter: Meter) -> bytes:
    """The next frame of ``inbox``, the wait counted as waiting for input."""
    t0 = time.perf_counter()
    frame = inbox.recv()
    meter.waited(time.perf_counter() - t0)
    return frame


def _read_waiting(inbox: Channel, meter: Meter, custody: _Plain, arrived: list[_Taken]) -> bool:
    """Read every frame already waiting in ``inbox`` into ``arrived``; whether the end of
    the stream came with them."""
    while inbox.poll(0):
        taken = custody.read(inbox, meter)
        if taken is None:
            return True
        arrived.append(taken)
    return False


def _drop_waiting(
    ready: list[_Taken],
    policy: str,
    keeps_numbers: bool,
    outputs: Outputs,
    meter: Meter,
    windows: dict[int, list[Semaphore]],
) -> list[_Taken]:
    """Of the chunks ready at once, keep the newest (``drop_oldest``) or the oldest
    (``drop_newest``); the others are counted dropped, their numbers go on as empty chunks
    (so order downstream has no hole) and their credits come back."""
    keep = ready[-1] if policy == DROP_OLDEST else ready[0]
    for taken in ready:
        if taken is keep:
            continue
        meter.dropped(len(taken.items))
        if keeps_numbers:
            outputs.send(taken.seq, [])
        _give_back(windows, taken.port, 1)
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
