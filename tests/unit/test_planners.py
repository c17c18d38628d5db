"""The pure planners, without processes: credit windows, whether a dead worker's chunks are
one item's failure, and which sources a run still needs."""

from __future__ import annotations

from typing import Any

import pytest

from olympipe import Pipeline
from olympipe._graph import Plan, plan_for
from olympipe._runtime import journal
from olympipe._runtime.credits import default_window, plan_credits
from tests.helpers import plus_one, times_2

pytestmark = pytest.mark.timeout(30)


class _Sizes:
    """A stand-in for a multiprocessing context: semaphores that only remember their size."""

    def Semaphore(self, value: int) -> Any:
        return ("window", value)


def _credits(*pipes: Pipeline[Any], queue_size: int | None = None) -> tuple[Plan, Any]:
    plan = plan_for([p._endpoint for p in pipes])
    return plan, plan_credits(plan, _Sizes(), queue_size)  # type: ignore[arg-type]


def _label(plan: Plan, node_id: int) -> str:
    return plan.labels.get(node_id, "source")


def _windows(plan: Plan, credits: Any) -> dict[str, int]:
    """Edge ``producer->consumer`` -> its window's size."""
    out = {}
    for (node_id, slot, index), (_kind, size) in credits.windows.items():
        consumer = plan.consumers[node_id][slot][index]
        assert consumer.node is not None
        out[f"{_label(plan, node_id)}->{_label(plan, consumer.node.id)}"] = size
    return out


def test_single_workers_have_only_the_sources_window() -> None:
    plan, credits = _credits(Pipeline(range(3)).task(plus_one).task(times_2))
    assert _windows(plan, credits) == {"source->plus_one": default_window(1)}
    assert credits.release_at_sink == {}


def test_a_racing_stage_gets_a_window_given_back_where_order_returns() -> None:
    plan, credits = _credits(Pipeline(range(3)).task(plus_one).task(times_2, count=3).task(plus_one))
    assert _windows(plan, credits) == {"source->plus_one": 4, "plus_one->times_2": 8}
    last = next(n for n in plan.stages if plan.labels[n.id] == "plus_one#2")
    assert list(credits.released_by(last.id)) == [0]  # the single worker after it, on its port


def test_racing_stages_in_a_row_share_the_first_window_back_at_the_sink() -> None:
    plan, credits = _credits(Pipeline(range(3)).task(plus_one, count=2).task(times_2, count=3), queue_size=5)
    assert _windows(plan, credits) == {"source->plus_one": 5}  # times_2's chunks hold it up to the sink
    assert [len(w) for w in credits.release_at_sink.values()] == [1]


def test_a_window_out_of_a_racing_stage_is_never_smaller_than_its_input_window() -> None:
    racing = Pipeline(range(3)).task(plus_one, count=4)
    first = racing.task(times_2, count=2)  # its first consumer: the chunks come back in order past it
    second = racing.task(plus_one, count=2)  # another racing branch: a window at least as large
    plan, credits = _credits(first, second)
    windows = _windows(plan, credits)
    assert "plus_one->times_2" not in windows
    assert windows["plus_one->plus_one#2"] >= windows["source->plus_one"] == default_window(4)


def test_a_dead_worker_is_one_items_failure_only_while_processing_or_probing() -> None:
    recoverable = journal.recoverable
    assert recoverable([(0, 3, journal.PROCESSING)])
    assert recoverable([(0, 3, journal.running(5)), (0, 4, journal.BUFFERED)])
    assert not recoverable([(0, 3, journal.BUFFERED)])  # died reading, or between chunks
    assert not recoverable([(0, 3, journal.PROCESSING), (0, 2, journal.SENDING)])  # half sent
    assert not recoverable([(0, 3, journal.recovering(5))])  # died in on_error itself
    assert journal.item_of(journal.running(7)) == journal.item_of(journal.recovering(7)) == 7
    assert journal.item_of(journal.PROCESSING) is None


def test_a_source_is_wanted_while_a_requested_branch_still_needs_it() -> None:
    source = Pipeline(range(3))
    limited = source.limit(2)
    other = source.task(plus_one)
    plan = plan_for([limited._endpoint, other._endpoint])
    source_id = plan.sources[0].id
    limit_id = next(n.id for n in plan.stages if plan.labels[n.id] == "limit")
    other_id = next(n.id for n in plan.stages if plan.labels[n.id] == "plus_one")
    assert plan.wanted(source_id, set())
    assert plan.wanted(source_id, {limit_id})  # the other branch still reads it
    assert not plan.wanted(source_id, {limit_id, other_id})
