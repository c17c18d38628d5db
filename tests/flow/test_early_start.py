"""olympipe 2.x's early start: a started source is read ahead, then taken over whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from olympipe import Pipeline
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)


def sensor(n: int = 200) -> Iterator[int]:
    yield from range(n)


def test_the_2x_readme_snippet_gets_every_item(engine: Any) -> None:
    source = Pipeline(iter(sensor()))
    source.start()
    dec = source.task(f.double)
    dec.start(engine=engine)
    assert dec.wait_for_result() == [2 * x for x in range(200)]


def test_a_consumer_added_later_takes_what_was_read_ahead_first() -> None:
    read_ahead = threading.Event()
    given = []

    def watched() -> Iterator[int]:
        for i in range(100):
            given.append(i)
            if i == 10:
                read_ahead.set()  # the source is being read with no consumer yet
            yield i

    source = Pipeline(watched(), queue_size=16)
    assert source.start() is source
    assert source.start() is source  # idempotent
    assert read_ahead.wait(10)
    assert source.task(f.double).wait_for_result() == [2 * x for x in range(100)]
    assert given == list(range(100))


def test_a_second_consumer_is_a_clear_error() -> None:
    source = Pipeline(iter(sensor(50)))
    source.start()
    first = source.task(f.double).start()
    with pytest.raises(RuntimeError, match="source"):
        source.task(f.double).wait_for_result()
    assert first.wait_for_result() == [2 * x for x in range(50)]


def test_the_started_source_itself_gives_every_item() -> None:
    source = Pipeline(iter(sensor(30)))
    source.start()
    assert source.wait_for_result() == list(range(30))


def test_a_started_source_never_consumed_stops_reading_at_cleanup() -> None:
    source = Pipeline(f.naturals())  # endless: the reader would wait for room for ever
    source.start()
    source.cleanup()  # the leak guard checks that its thread is gone
