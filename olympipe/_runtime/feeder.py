"""Pulling the source in the caller's process and cutting it into chunks.

The feeder lives in the caller's process, because a source may hold what cannot cross
processes (a camera, a socket), and starts after every worker has been forked. It pulls
only as fast as the pipeline drains: writes block when the first channel is full, and a
*window* semaphore bounds how many chunks the first stage has not finished yet.

Two threads share one buffer under a condition variable:

* the *puller* iterates the source and appends to the buffer; it waits only when the
  buffer is full (backpressure), and it is the thread that closes a generator;
* the *sender* takes the buffer when it reaches the target size, or when the oldest item
  in it has waited :data:`HOLD_SECONDS`, whichever comes first, then encodes it once and
  writes it to every consumer. A source that pauses (a camera between frames, a socket
  between messages) therefore never holds an item back: the puller is blocked in ``next()``
  and the sender sends what there is.

Under a drop policy (``on_full=``, see ``olympipe/_core/flow.py``) the puller never waits:
it admits each item into a buffer of one chunk and drops by the policy, and the sender takes
its credits *before* it takes a chunk, so what it sends is the newest there is.

Chunk size adapts, with no setting needed: it aims at about :data:`TARGET_SECONDS` of work
per chunk at the costliest stage, read from the workers' shared counters (thousands of
items when items are trivial, one item when each takes 10 ms, so ``count=N`` stays
balanced). Until a stage has measured anything, chunks hold one item, and the window keeps
those few.
"""

from __future__ import annotations

import errno
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from olympipe._core.chunking import LOCAL, costliest
from olympipe._core.flow import BLOCK, admit
from olympipe._runtime.counters import Counters
from olympipe._runtime.credits import Target
from olympipe._runtime.messages import Control, Failure
from olympipe._transport.codec import ByAddress, EncodeError, WriteSlot, encode_chunk, send_encoded

# The local engine's chunks (see olympipe/_core/chunking.py for the rule and the numbers).
TARGET_SECONDS = LOCAL.target_seconds
HOLD_SECONDS = LOCAL.hold_seconds
MAX_ITEMS = LOCAL.max_items
MAX_CHUNK_BYTES = LOCAL.max_bytes


class _PipeBroken(Exception):
    """A write failed because every reader of the pipe is gone."""


class Feeder:
    """One source: a puller thread and a sender thread around a shared buffer."""

    def __init__(
        self,
        iterable: Iterable[Any],
        outputs: list[Target],
        control: Control,
        stop: threading.Event,
        cost: Callable[[], tuple[float | None, int]],
        shm_prefix: str | None = None,
        one_item_chunks: bool = False,
        max_chunk: int | None = None,
        by_address: ByAddress | None = None,
        write_slot: WriteSlot | None = None,
        on_full: str = BLOCK,
    ) -> None:
        self._max_chunk = min(max_chunk or MAX_ITEMS, MAX_ITEMS)
        self._by_address = by_address  # large buffers the workers already hold: by address
        self._write_slot = write_slot  # other large buffers: into a reused slot (see pool.py)
        self._prefix = shm_prefix
        self._one_item_chunks = one_item_chunks
        self._iterable = iterable
        self._outputs = outputs
        self._control = control
        self._stop = stop
        self._cost = cost
        self.items = 0  # items sent so far
        self.dropped = 0  # items dropped by the flow policy
        self._on_full = on_full
        self._arrived: list[float] = []  # under a drop policy: when each buffered item came
        self._cond = threading.Condition(threading.Lock())
        self._buf: list[Any] = []
        self._opened = 0.0  # when the oldest buffered item arrived
        self._target = 1
        self._exhausted = False  # the puller has seen the end of the source
        self._cut = False  # end_source(): the stream ends after what was already read
        self._item_bytes = 0.0  # encoded bytes per item, from the last chunk
        self._prev_opened = 0.0
        self._prev_n = 0
        self._puller = threading.Thread(target=self._pull, name="olympipe-source", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="olympipe-feeder", daemon=True)

    def start(self) -> None:
        """Start pulling and sending."""
        self._sender.start()
        self._puller.start()

    def wake(self) -> None:
        """Wake both threads so they notice the stop event."""
        with self._cond:
            self._cond.notify_all()

    def end_source(self) -> None:
        """End the stream after the items already read: the sender sends what it holds and
        ends; the puller stops at its next chunk boundary and closes the generator.
        Items the source yields after this call are not sent."""
        with self._cond:
            self._cut = True
            self._exhausted = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for both threads; ``False`` if the puller is still blocked in ``next()``."""
        self.wake()
        for thread in (self._sender, self._puller):
            if thread.ident is not None:  # started (a teardown may come before)
                thread.join(timeout)
        return not (self._sender.is_alive() or self._puller.is_alive())

    # -- puller -----------------------------------------------------------------------------

    def _pull(self) -> None:
        iterator: Iterator[Any] | None = None
        try:
            iterator = iter(self._iterable)
            self._pull_all(iterator)
        except BaseException as exc:
            self._fail(Failure.capture("source", exc))
        finally:
            with self._cond:
                self._exhausted = True
                self._cond.notify_all()
            if iterator is not None and inspect.isgenerator(iterator):
                iterator.close()

    def _pull_dropping(self, iterator: Iterator[Any]) -> None:
        """Under a drop policy: admit each item as it comes, never waiting for the sender."""
        cond = self._cond
        stop = self._stop
        buf = self._buf
        arrived = self._arrived
        for item in iterator:
            now = time.monotonic()
            with cond:
                if stop.is_set() or self._cut:
                    return
                capacity = max(1, self._target)
                if admit(arrived, now, capacity, self._on_full):
                    self.dropped += 1
                admit(buf, item, capacity, self._on_full)
                self._opened = arrived[0]
                cond.notify()

    def _pull_all(self, iterator: Iterator[Any]) -> None:
        if self._on_full != BLOCK:
            self._pull_dropping(iterator)
            return
        # No lock per item: only this thread appends, and the sender takes items with one
        # slice and one ``del buf[:n]``, each atomic under the GIL, so nothing is lost.
        cond = self._cond
        stop = self._stop
        clock = time.monotonic
        buf = self._buf
        target = self._target
        for item in iterator:
            buf.append(item)
            size = len(buf)
            if size == 1:  # a chunk opens: the sender arms its deadline
                with cond:
                    self._opened = clock()
                    cond.notify()
                    if stop.is_set() or self._cut:
                        return
            if size >= target:
                with cond:
                    cond.notify()
                    # Wait until the sender takes this chunk: blocking here hands the GIL
                    # over at once instead of after the interpreter's switch interval.
                    while len(buf) >= self._target and not stop.is_set() and not self._cut:
                        cond.wait()
                    target = self._target
                    if stop.is_set() or self._cut:
                        return

    # -- sender -----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            seq = 0
            dropping = self._on_full != BLOCK
            while True:
                if dropping:
                    self._take_credits()  # first: the chunk taken then is the newest
                taken = self._take()
                if taken is None:
                    break
                chunk, born = taken
                self._send(seq, chunk, born, credited=dropping)
                seq += 1
            if not self._stop.is_set():
                try:
                    for target in self._outputs:
                        target.channel.producer_done()
                except OSError as exc:  # every reader gone: the run is being torn down
                    raise _PipeBroken from exc
        except _PipeBroken:
            pass  # the run is being torn down: its workers, and their pipes, are gone
        except EncodeError as exc:
            msg = f"an item of the source cannot be pickled: {exc}"
            self._fail(Failure.capture("source", exc, exc.item, True, msg))
        except Exception as exc:  # a defect here must end the run, not leave it waiting
            self._fail(Failure.capture("source", exc, message=f"the feeder failed: {exc!r}"))

    def _fail(self, failure: Failure) -> None:
        """End the run with ``failure``, unless it is already ending, and wake both threads."""
        if not self._stop.is_set():
            self._control.send(failure)
            self._stop.set()
        self.wake()

    def _take(self) -> tuple[list[Any], float] | None:
        """The next chunk to send and when its oldest item came (``time.monotonic()``, the
        clock of a frame's ``born``), or ``None`` at the end (or on stop)."""
        cond = self._cond
        buf = self._buf
        with cond:
            while True:
                if self._stop.is_set():
                    return None
                if buf and (len(buf) >= self._target or self._exhausted):
                    break
                if not buf:
                    if self._exhausted:
                        return None
                    cond.wait()
                    continue
                left = self._opened + HOLD_SECONDS - time.monotonic()
                if left <= 0:
                    break
                cond.wait(left)
            now = time.monotonic()
            n = min(len(buf), self._target)
            chunk = buf[:n]
            del buf[:n]
            if self._arrived:
                del self._arrived[:n]
            # How fast the source produces: the time from the previous chunk's first item
            # to this one's, over the previous chunk's size. A slow source (20 ms an item)
            # reads as slow even when its chunks leave at the hold deadline.
            opened = self._opened
            gap = (opened - self._prev_opened) / self._prev_n if self._prev_n else 0.0
            self._prev_opened, self._prev_n = opened, n
            if self._arrived:
                self._opened = self._arrived[0]
            elif buf:
                self._opened = now
            self._target = self._next_target(gap)
            cond.notify()  # room for the puller
        return chunk, opened

    def _take_credits(self) -> None:
        for target in self._outputs:
            if target.window is not None:
                target.window.acquire()  # a credit per chunk (see credits.py)

    def _send(self, seq: int, chunk: list[Any], born: float, credited: bool = False) -> None:
        encoded = encode_chunk(chunk, self._prefix is not None, by_address=self._by_address)
        size = len(encoded.data) + sum(b.nbytes for b in encoded.buffers)
        self._item_bytes = size / len(chunk)
        upto = self.items + len(chunk)  # the source position this chunk completes
        try:
            for target in self._outputs:
                if target.window is not None and not credited:
                    target.window.acquire()  # a credit per chunk (see credits.py)
                if self._stop.is_set():
                    raise _PipeBroken
                send_encoded(
                    target.channel, target.port, seq, encoded, self._prefix, self._write_slot, born, upto
                )
        except OSError as exc:
            if self._stop.is_set() or _pipe_gone(exc):
                raise _PipeBroken from exc
            raise  # writing shared memory failed: the run fails with it (see _send_loop)
        self.items += len(chunk)

    def _next_target(self, gap: float) -> int:
        if self._one_item_chunks:
            return 1
        cost, at_least = self._cost()
        by_size = MAX_CHUNK_BYTES / max(self._item_bytes, 1.0)
        if cost is None:
            return int(max(1, min(at_least, by_size, self._max_chunk)))
        target = min(TARGET_SECONDS / max(cost, 1e-9), by_size)
        if gap > 0:
            target = min(target, HOLD_SECONDS / gap)
        return int(min(max(target, at_least), self._max_chunk))


def _pipe_gone(exc: OSError) -> bool:
    """Whether a send failed because the pipe's other end, or this one, is closed: the run is
    being torn down, or a worker died (the supervisor reports that)."""
    return isinstance(exc, (BrokenPipeError, ConnectionResetError)) or exc.errno in (None, errno.EBADF)


def cost_reader(
    counters: Counters, stages: list[tuple[list[int], int]]
) -> Callable[[], tuple[float | None, int]]:
    """A function giving the feeder the costliest stage's seconds per item and the least
    chunk size that keeps every stage's workers busy.

    ``stages`` lists, per stage, its worker rows in ``counters`` and how many items one
    worker works on at once."""

    def cost() -> tuple[float | None, int]:
        if not stages:  # the source feeds the caller directly: nothing to balance
            return None, MAX_ITEMS
        at_least = max((parallel for _rows, parallel in stages), default=1)
        return costliest(counters, stages), at_least

    return cost
