"""Per-worker counters in shared memory: written by one worker each, read by anyone.

One row of doubles per worker. Each worker adds to its own row after every chunk, so no
lock and no message is needed; readers (the feeder sizing chunks, progress bars, ``stats()``)
accept a value that is a chunk old.
"""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import Any

ITEMS_IN = 0
ITEMS_OUT = 1
ERRORS = 2
BUSY = 3  # seconds inside the stage's code
WAIT_IN = 4  # seconds waiting for input
BLOCKED_OUT = 5  # seconds blocked writing output
CPU = 6  # CPU seconds of the worker process (user + system)
PEAK_RSS_MB = 7  # the worker's peak resident memory
STARTED = 8  # time.time() at which the worker started its loop
FIELDS = 9


class Counters:
    """The counter table of one run: ``workers`` rows of :data:`FIELDS` doubles."""

    def __init__(self, ctx: BaseContext, workers: int) -> None:
        self.workers = workers
        self.array: Any = ctx.RawArray("d", max(1, workers) * FIELDS)

    def row(self, worker: int) -> list[float]:
        """A copy of one worker's row."""
        base = worker * FIELDS
        return list(self.array[base : base + FIELDS])

    def total(self, workers: list[int], field: int) -> float:
        """The sum of one field over some workers."""
        array = self.array
        return float(sum(array[w * FIELDS + field] for w in workers))
