"""RunStats.latency: source-to-caller latency, on every engine."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline
from olympipe._core.latency import LatencyRecorder
from tests.flow._gates import Gates

pytestmark = pytest.mark.timeout(120)


HELD = 0.3  # seconds item 0 is held: a lower bound, which a loaded machine only lengthens


def test_an_item_held_by_a_stage_shows_in_the_latency(engine: Any, tmp_path: Path) -> None:
    """Item 0 is held by the stage for HELD seconds after it got it, and goes out in the
    first batch: that batch's latency is at least that long; none exceeds the run."""
    gates = Gates(tmp_path)
    releaser = gates.release_after(HELD)
    p = Pipeline(range(20)).task(gates.hold_first).batch(5)
    assert p.wait_for_result(engine=engine) == [list(range(i, i + 5)) for i in range(0, 20, 5)]
    releaser.join()
    stats = p.stats()
    latency = stats.latency
    assert latency is not None
    assert latency.max >= HELD
    assert latency.p50 <= latency.p95 <= latency.p99 <= latency.max <= stats.wall_seconds


def test_latency_is_none_before_any_item_reached_the_caller() -> None:
    p = Pipeline(range(10)).task(abs).start()
    assert p.stats().latency is None  # items may have arrived, but the caller has none yet
    assert p.wait_for_result() == list(range(10))
    assert p.stats().latency is not None
    assert "latency from the source to the caller" in str(p.stats())


def test_the_recorder_gives_percentiles_within_two_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1.5) for _ in range(20_000)]
    recorder = LatencyRecorder()
    for value in values:
        recorder.add(value)
    recorder.add(0.0, 0)  # no items: ignored
    summary = recorder.summary()
    assert summary is not None
    values.sort()
    for got, q in ((summary.p50, 0.50), (summary.p95, 0.95), (summary.p99, 0.99)):
        true = values[int(q * len(values)) - 1]
        assert abs(got - true) <= 0.02 * true
    assert summary.max == values[-1]
    assert recorder.items == 20_000
    assert LatencyRecorder().summary() is None
