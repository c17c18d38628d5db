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

import ctypes
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from olympipe._runtime.counters import (
    BLOCKED_OUT,
    BUSY,
    CPU,
    FIELDS,
    ITEMS_IN,
    ITEMS_OUT,
    PEAK_RSS_MB,
    STARTED,
    WAIT_IN,
    Counters,
)
from olympipe._runtime.messages import Control, Done, Failure
from olympipe._runtime.ordering import Reorder
from olympipe._stages.base import ItemFailed, Stage, StageSpec
from olympipe._transport.channel import KIND_END, Channel
from olympipe._transport.codec import (
    DecodeError,
    EncodeError,
    decode_frame,
    encode_chunk,
    loads_definition,
    send_encoded,
)

_PR_SET_PDEATHSIG = 1


class Stopped(BaseException):
    """Raised in a worker by SIGTERM: the supervisor is tearing the run down."""


@dataclass
class WorkerPlan:
    """Everything one worker needs besides its stage definition."""

    index: int  # row in the counters table
    label: str  # the stage's name, for error messages
    inbox: Channel
    ports: int
    outputs: list[list[tuple[Channel, int]]]  # per output slot: (consumer channel, port)
    windows: dict[int, Any]  # port -> semaphore the feeder of that port waits on
    control: Control
    counters: Counters
    parent_pid: int
    lifeline: Connection | None = None  # forkserver only: EOF when the caller is gone
    shm_prefix: str | None = None  # where large buffers go; None: always inline
    renumber: Any = None  # ordered=False: a shared counter; output numbered as it completes


def worker_main(plan: WorkerPlan, definition: StageSpec | bytes) -> None:
    """Entry point of a worker process."""
    _become_worker(plan.parent_pid, plan.lifeline)
    spec: StageSpec = loads_definition(definition) if isinstance(definition, bytes) else definition
    stage: Stage | None = None
    try:
        stage = spec.make()
        stage.open()
        _run(plan, spec, stage)
        stage.close()
        stage = None
        for slot in plan.outputs:
            for channel, _port in slot:
                channel.producer_done()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing left to clean up
        plan.control.send(Done(plan.index))
    except Stopped:
        _close_quietly(stage)
        _die_by(signal.SIGTERM)
    except ItemFailed as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        failure = Failure.capture(plan.label, cause, exc.item, exc.has_item)
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
    inbox = plan.inbox
    # A single worker sees its input in order, also behind a count=N stage, so that side
    # effects (a writer, a zip file) happen in source order; stateful stages need it too.
    # Several workers of one stage cannot share an order; ordered=False asks for none.
    in_order = spec.ordered_input or (spec.count == 1 and plan.renumber is None)
    reorder = Reorder(plan.ports) if in_order else None
    keeps_numbers = not spec.ordered_input  # map stages: output chunk k for input chunk k
    own_seq = [0] * len(plan.outputs)  # stateful stages number their own output
    windows = plan.windows
    counters = plan.counters.array
    row = plan.index * FIELDS
    clock = time.perf_counter
    has_deadline = type(stage).deadline is not Stage.deadline
    prefix = plan.shm_prefix
    renumber = plan.renumber

    def emit(seq: int | None, produced: Any) -> None:
        chunks = produced if spec.output_slots > 1 else (produced,)
        for slot, chunk in enumerate(chunks):
            consumers = plan.outputs[slot]
            if seq is None:  # stateful output: skip empty chunks, number the rest
                if not chunk:
                    continue
                out_seq = own_seq[slot]
                own_seq[slot] += 1
            else:
                out_seq = seq
            counters[row + ITEMS_OUT] += len(chunk)
            if not consumers:
                continue
            encoded = encode_chunk(chunk, prefix is not None)
            t0 = clock()
            if renumber is None:
                for channel, port in consumers:
                    send_encoded(channel, port, out_seq, encoded, prefix)
            else:
                # Take the next number and send under one lock, so numbers reach the
                # consumer in order and its reorder buffer never waits.
                with renumber.get_lock():
                    out_seq = renumber.value
                    renumber.value += 1
                    for channel, port in consumers:
                        send_encoded(channel, port, out_seq, encoded, prefix)
            counters[row + BLOCKED_OUT] += clock() - t0

    counters[row + STARTED] = time.time()
    exhausted = False
    next_usage = 0.0
    while True:
        t0 = clock()
        if t0 > next_usage:  # a getrusage call every 0.2 s, not per chunk
            _record_usage(counters, row)
            next_usage = t0 + 0.2
        if has_deadline and not exhausted:
            deadline = stage.deadline()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not inbox.poll(left):
                    counters[row + WAIT_IN] += clock() - t0
                    emit(None, stage.tick(time.monotonic()))
                    exhausted = stage.exhausted
                    continue
        frame = inbox.recv()
        t1 = clock()
        counters[row + WAIT_IN] += t1 - t0
        kind, port, seq, items = decode_frame(inbox, frame)
        if kind == KIND_END:
            break
        if exhausted:  # limit reached or timeout expired: drain what is still coming
            _release(windows, port)
            continue
        # items_in and busy move together, after the work: the feeder divides one by the
        # other, and an item counted before its time would read as free.
        if reorder is None:
            t1 = clock()
            out = stage.process(items)
            counters[row + BUSY] += clock() - t1
            counters[row + ITEMS_IN] += len(items)
            emit(seq, out)
        else:
            for ready_seq, ready in reorder.push(port, seq, items):
                t1 = clock()
                out = stage.process(ready)
                counters[row + BUSY] += clock() - t1
                counters[row + ITEMS_IN] += len(ready)
                emit(ready_seq if keeps_numbers else None, out)
                if stage.exhausted:
                    exhausted = True
                    break
        _release(windows, port)
        if exhausted:
            _end_outputs_early(plan)
    if not exhausted and spec.ordered_input:
        emit(None, stage.finish())
    _record_usage(counters, row)


def _record_usage(counters: Any, row: int) -> None:
    """CPU seconds and peak RSS of this process, for stats()."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counters[row + CPU] = usage.ru_utime + usage.ru_stime
    counters[row + PEAK_RSS_MB] = usage.ru_maxrss / 1024  # Linux reports KiB


def _release(windows: dict[int, Any], port: int) -> None:
    window = windows.get(port)
    if window is not None:
        window.release()


def _end_outputs_early(plan: WorkerPlan) -> None:
    """``limit``/``timeout``: downstream ends now; upstream is drained until its END."""
    for slot in plan.outputs:
        for channel, _port in slot:
            channel.producer_done()
    plan.outputs = [[] for _ in plan.outputs]


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


def _die_by(signum: signal.Signals) -> None:
    """Exit as if killed by ``signum`` so the exit code says what happened."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # pragma: no cover - not reached


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped


def _watch_lifeline(lifeline: Connection) -> None:
    """Die with the caller: its end of the lifeline closes when it exits, however it exits."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _become_worker(parent_pid: int, lifeline: Connection | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if lifeline is not None:
        # A fork server's children keep it alive (they inherit its "alive" fd), so a death
        # signal tied to it would never fire: watch the caller itself instead.
        threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True).start()
    elif os.getppid() != parent_pid:
        os._exit(1)  # the caller died before the death signal was armed
