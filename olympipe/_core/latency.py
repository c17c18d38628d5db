"""Source-to-caller latency of a run, in bounded memory.

Every chunk that reaches the caller carries when its oldest source item was read (a frame's
``born``, ``time.monotonic()``); each of its items counts that latency once. The figures go
into a histogram of log-spaced buckets (each 2 % wider than the one before, from 1 µs), so a
run of any length keeps at most about a thousand counts, and a percentile is within 1 % of
the true value; the maximum is exact.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from olympipe.stats import Latency

_SMALLEST = 1e-6  # seconds: the first bucket's upper edge
_RATIO = 1.02
_LOG_RATIO = math.log(_RATIO)


class LatencyRecorder:
    """Counts latencies into log-spaced buckets; :meth:`summary` gives the percentiles."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._max = 0.0
        self.items = 0

    def add(self, seconds: float, items: int = 1) -> None:
        """``items`` items reached the caller ``seconds`` after their source read them."""
        if items <= 0:
            return
        seconds = max(0.0, seconds)
        bucket = 0 if seconds <= _SMALLEST else 1 + int(math.log(seconds / _SMALLEST) / _LOG_RATIO)
        self._counts[bucket] = self._counts.get(bucket, 0) + items
        self.items += items
        if seconds > self._max:
            self._max = seconds

    def summary(self) -> Latency | None:
        """p50, p95, p99 and max so far; ``None`` before any item arrived."""
        from olympipe.stats import Latency

        counts = sorted(self._counts.items())  # copied in C, under the GIL: safe from another thread
        total = sum(n for _bucket, n in counts)
        if not total:
            return None
        top = self._max
        wanted = [0.50, 0.95, 0.99]
        found: list[float] = []
        seen = 0
        for bucket, n in counts:
            seen += n
            while wanted and seen >= wanted[0] * total:
                found.append(min(_middle(bucket), top))
                wanted.pop(0)
        while wanted:  # rounding at the very top
            found.append(top)
            wanted.pop(0)
        return Latency(p50=found[0], p95=found[1], p99=found[2], max=top)


def _middle(bucket: int) -> float:
    """The geometric middle of a bucket (its value as reported)."""
    if bucket == 0:
        return _SMALLEST / 2
    low = _SMALLEST * _RATIO ** (bucket - 1)
    return low * math.sqrt(_RATIO)
