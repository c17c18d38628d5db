"""Pulling the source in the caller's process and cutting it into chunks.

The feeder is a thread of the caller, started after every worker has been forked, because a
source may hold what cannot cross processes (a camera, a socket). It pulls only as fast as
the pipeline drains: writes block when the first channel is full, and a *window* semaphore
bounds how many chunks the first stage has not finished yet.

Chunk size adapts, with no setting needed:

* it aims at about :data:`TARGET_SECONDS` of work per chunk at the costliest stage, read
  from the workers' shared counters (hundreds of items when items are trivial, one item
  when each takes 10 ms, so ``count=N`` stays balanced); until a stage has measured
  anything, chunks hold one item, and the window keeps those few;
* it never holds an item back waiting for more: when the source itself is slow (a camera at
  30 frames/s) the size falls to what arrives within :data:`HOLD_SECONDS`, so each item
  leaves at once.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from olympipe._runtime.messages import Control, Failure
from olympipe._transport.channel import Channel, pack_header
from olympipe._transport.codec import EncodeError, encode_chunk

TARGET_SECONDS = 0.001
HOLD_SECONDS = 0.002
MAX_ITEMS = 4096


class _PipeBroken(Exception):
    """A write failed because every reader of the pipe is gone."""


class Feeder:
    """One source's thread: iterate, chunk, encode once, write to every consumer."""

    def __init__(
        self,
        iterable: Iterable[Any],
        outputs: list[tuple[Channel, int]],
        window: Any,
        control: Control,
        stop: threading.Event,
        cost: Callable[[], tuple[float | None, int]],
    ) -> None:
        self._iterable = iterable
        self._outputs = outputs
        self._window = window
        self._control = control
        self._stop = stop
        self._cost = cost
        self.items = 0
        self._thread = threading.Thread(target=self._run, name="olympipe-feeder", daemon=True)

    def start(self) -> None:
        """Start pulling the source."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; ``False`` if it is still blocked (in the source's ``next``)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        iterator: Iterator[Any] | None = None
        try:
            iterator = iter(self._iterable)
            if self._feed(iterator):
                for channel, _port in self._outputs:
                    channel.producer_done()
        except EncodeError as exc:
            msg = f"an item of the source cannot be pickled: {exc}"
            self._control.send(Failure.capture("source", exc, exc.item, True, msg))
        except _PipeBroken:
            pass  # the run is being torn down: its workers, and their pipes, are gone
        except BaseException as exc:
            self._control.send(Failure.capture("source", exc))
        finally:
            if iterator is not None and inspect.isgenerator(iterator):
                iterator.close()

    def _feed(self, iterator: Iterator[Any]) -> bool:
        """Send every item; ``False`` when stopped before the end."""
        stop = self._stop
        clock = time.perf_counter
        seq = 0
        target = 1
        gap = 0.0  # moving average of the time the source takes per item
        buf: list[Any] = []
        started = last = clock()
        for item in iterator:
            now = clock()
            gap += (now - last - gap) * 0.1
            last = now
            if not buf:
                started = now
            buf.append(item)
            if len(buf) >= target or now - started >= HOLD_SECONDS:
                if stop.is_set():
                    return False
                self._send(seq, buf)
                self.items += len(buf)
                seq += 1
                buf = []
                target = self._next_target(gap)
                last = clock()
        if buf and not stop.is_set():
            self._send(seq, buf)
            self.items += len(buf)
        return not stop.is_set()

    def _send(self, seq: int, chunk: list[Any]) -> None:
        payload = encode_chunk(chunk)
        if self._window is not None:
            self._window.acquire()
            if self._stop.is_set():
                return
        try:
            for channel, port in self._outputs:
                channel.send(pack_header(port, seq) + payload)
        except OSError as exc:
            raise _PipeBroken from exc

    def _next_target(self, gap: float) -> int:
        cost, at_least = self._cost()
        if cost is None:
            return at_least
        target = TARGET_SECONDS / max(cost, 1e-9)
        if gap > 0:
            target = min(target, HOLD_SECONDS / gap)
        return int(min(max(target, at_least), MAX_ITEMS))
