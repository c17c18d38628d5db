"""Latency: a source yielding one item every 20 ms, through 3 stages."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

from common import Section

from olympipe import Pipeline

N = 60
PERIOD = 0.020


def source() -> Iterator[float]:
    for _ in range(N):
        time.sleep(PERIOD)
        yield time.perf_counter()


def ident(x: float) -> float:
    return x


def main(reps: int) -> Section:
    s = Section(
        "Latency: one item every 20 ms through 3 stages", "each item at the sink within 5 ms (median)"
    )
    lat = []
    for _ in range(max(1, reps // 2)):
        for made in Pipeline(source(), start_method="fork").task(ident).task(ident).task(ident):
            lat.append((time.perf_counter() - made) * 1000)
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    s.row("olympipe p50", f"{p50:.2f} ms")
    s.row("olympipe p99", f"{p99:.2f} ms")
    return s
