"""timeout and limit end a run whose source is stalled in next(): the source blocks for 30 s."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from olympipe import Pipeline
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)


def _stalled(release: threading.Event, n: int = 3) -> Iterator[int]:
    yield from range(1, n + 1)
    release.wait(30)
    yield 99


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # lets the stalled source's thread finish


@pytest.mark.parametrize("with_task", [False, True])
def test_timeout_fires_while_the_source_is_stalled(release: threading.Event, with_task: bool) -> None:
    p = Pipeline(_stalled(release))
    if with_task:
        p = p.task(f.double)
    t0 = time.monotonic()
    got = p.timeout(1.0).wait_for_result()
    assert time.monotonic() - t0 < 10  # the source blocks for 30 s
    assert got == ([2, 4, 6] if with_task else [1, 2, 3])


def test_timeout_fires_while_iterating(release: threading.Event) -> None:
    t0 = time.monotonic()
    got = list(Pipeline(_stalled(release)).timeout(1.0))
    assert time.monotonic() - t0 < 10
    assert got == [1, 2, 3]


def test_limit_zero_on_a_stalled_source(release: threading.Event) -> None:
    t0 = time.monotonic()
    assert Pipeline(_stalled(release)).limit(0).wait_for_result() == []
    assert time.monotonic() - t0 < 10
