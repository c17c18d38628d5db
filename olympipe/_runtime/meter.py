"""What one worker measures: its row of counters, written by it alone (see ``counters``).

Items in and busy time move together, after each chunk's work: the feeder divides one by
the other to size chunks, and an item counted early would read as free. A fused stage's
members report through :func:`member_recorder`, a row each."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

from olympipe._runtime.counters import (
    BLOCKED_OUT,
    BUSY,
    CHUNKS,
    CPU,
    DROPPED,
    ERRORS,
    FIELDS,
    ITEMS_IN,
    ITEMS_OUT,
    LAST_CHUNK,
    PEAK_RSS_MB,
    RETRIED,
    STARTED,
    WAIT_IN,
)
from olympipe._stages.base import Stage
from olympipe._stages.fused import Recorder

USAGE_SECONDS = 0.2  # how often a worker reads its CPU time and memory: a system call


def member_recorder(array: Any, first_row: int) -> Recorder:
    """Where a fused stage reports each member's figures: a row per member, this worker's."""

    def record(member: int, items_in: int, items_out: int, busy: float, errors: int, retried: int) -> None:
        row = (first_row + member) * FIELDS
        array[row + ITEMS_IN] += items_in
        array[row + ITEMS_OUT] += items_out
        array[row + BUSY] += busy
        array[row + ERRORS] = errors
        array[row + RETRIED] = retried

    return record


class Meter:
    """One worker's row of counters, written by that worker alone (see counters.py).

    A replacement worker takes over its predecessor's row and adds to it."""

    __slots__ = ("_array", "_base_cpu", "_base_errors", "_base_retried", "_next_usage", "_row")

    def __init__(self, array: Any, index: int) -> None:
        self._array = array
        self._row = index * FIELDS
        self._next_usage = 0.0
        self._base_errors = array[self._row + ERRORS]
        self._base_retried = array[self._row + RETRIED]
        self._base_cpu = array[self._row + CPU]

    def start(self) -> None:
        """The worker's loop starts now (percentages are of the time since), unless a
        predecessor in this row started it already."""
        if not self._array[self._row + STARTED]:
            self._array[self._row + STARTED] = time.time()

    def took(self, number: int) -> None:
        """The worker takes chunk ``number`` of its input (in that input's order)."""
        self._array[self._row + CHUNKS] += 1
        self._array[self._row + LAST_CHUNK] = number + 1

    def process(self, stage: Stage, chunk: list[Any]) -> Any:
        """``stage.process(chunk)``, timed. Items in and busy time move together, after the
        work: the feeder divides one by the other, and an item counted early reads as free."""
        t0 = time.perf_counter()
        out = stage.process(chunk)
        self._count(len(chunk), stage, time.perf_counter() - t0)
        return out

    def stream(self, stage: Stage, chunk: list[Any], send: Callable[[int | None, Any], None]) -> None:
        """``stage.stream(chunk)``, each part sent (numbered by the sender) as it comes; busy
        is the time spent making the parts, not sending them."""
        busy = 0.0
        t0 = time.perf_counter()
        for part in stage.stream(chunk):
            busy += time.perf_counter() - t0
            send(None, part)
            t0 = time.perf_counter()
        self._count(len(chunk), stage, busy + time.perf_counter() - t0)

    def timed(self, items: int, stage: Stage, work: Any) -> Any:
        """``work()`` counted as :meth:`process` counts ``stage.process``."""
        t0 = time.perf_counter()
        out = work()
        self._count(items, stage, time.perf_counter() - t0)
        return out

    def _count(self, items: int, stage: Stage, busy: float) -> None:
        array, row = self._array, self._row
        array[row + BUSY] += busy
        array[row + ITEMS_IN] += items
        array[row + ERRORS] = self._base_errors + stage.errors
        array[row + RETRIED] = self._base_retried + stage.retried

    def encoded(self, seconds: float) -> None:
        """Time spent encoding output (pickling, writing shared memory): busy."""
        self._array[self._row + BUSY] += seconds

    def waited(self, seconds: float) -> None:
        """Time spent waiting for input."""
        self._array[self._row + WAIT_IN] += seconds

    def blocked(self, seconds: float) -> None:
        """Time spent blocked writing output."""
        self._array[self._row + BLOCKED_OUT] += seconds

    def emitted(self, items: int) -> None:
        """Items sent on."""
        self._array[self._row + ITEMS_OUT] += items

    def dropped(self, items: int) -> None:
        """Items its input's flow policy dropped."""
        self._array[self._row + DROPPED] += items

    def failed(self) -> None:
        """An item failed without ``on_error``: the run is about to end."""
        self._array[self._row + ERRORS] += 1

    def sample_usage(self) -> None:
        """CPU and peak memory, at most every :data:`USAGE_SECONDS` (a system call)."""
        now = time.perf_counter()
        if now > self._next_usage:
            self.record_usage()
            self._next_usage = now + USAGE_SECONDS

    def record_usage(self) -> None:
        """CPU seconds and peak RSS of this process, now."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._array[self._row + CPU] = self._base_cpu + usage.ru_utime + usage.ru_stime
        peak = self._row + PEAK_RSS_MB
        self._array[peak] = max(self._array[peak], usage.ru_maxrss / 1024)  # Linux reports KiB
