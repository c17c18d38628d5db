"""start(), pipelines derived from a started source, and a pipeline run inside a stage."""

from __future__ import annotations

import pytest

from olympipe import Pipeline
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)


def test_start_returns_the_pipeline() -> None:
    assert Pipeline(range(3)).task(f.double).start().wait_for_result() == [0, 2, 4]


def test_deriving_from_a_started_iterator_source_takes_every_item_once() -> None:
    """olympipe 2.x's early start (see tests/flow/test_early_start.py): the first
    derived pipeline takes the stream over; a second is refused."""
    s = Pipeline(iter(range(10))).start()
    try:
        assert s.task(f.double).wait_for_result() == [2 * x for x in range(10)]
        with pytest.raises(RuntimeError, match="source"):
            s.task(f.double).wait_for_result()
    finally:
        s.cleanup()


def test_deriving_from_a_started_list_source_runs_every_item() -> None:
    s = Pipeline(list(range(10))).start()
    try:
        assert s.task(f.double).wait_for_result() == [2 * x for x in range(10)]
    finally:
        s.cleanup()


def sub_pipeline_sum(n: int) -> int:
    return sum(Pipeline(range(n)).task(f.double, count=2).wait_for_result())


def test_a_pipeline_inside_a_stage() -> None:
    got = Pipeline([3, 4, 5]).task(sub_pipeline_sum, count=2).wait_for_result()
    assert got == [sum(2 * x for x in range(n)) for n in (3, 4, 5)]
