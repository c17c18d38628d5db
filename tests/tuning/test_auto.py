"""count="auto": validation, fusion, the budget, and the figures each stage still reports."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from olympipe import Pipeline, PipelineError
from olympipe._core.tuning import allocate, fusion_groups, tune
from olympipe._graph import plan_for
from tests.engines import stagefns as f
from tests.helpers import fail_on_7, is_even, plus_one, times_2
from tests.tuning import _resizing as r

pytestmark = pytest.mark.timeout(120)


# -- building -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["fast", 0, -1, "AUTO"])
def test_a_count_that_is_neither_positive_nor_auto_is_a_value_error(bad: Any) -> None:
    with pytest.raises(ValueError, match="count"):
        Pipeline(range(3)).task(times_2, count=bad)
    with pytest.raises(ValueError, match="count"):
        Pipeline(range(3)).class_task(r.Closing, r.Closing.take, count=bad)
    with pytest.raises(ValueError, match="count"):
        Pipeline(range(3)).cached_task(times_2, "/tmp", count=bad)


@pytest.mark.parametrize("bad", [2.5, None, True])
def test_a_count_of_the_wrong_type_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="count"):
        Pipeline(range(3)).task(times_2, count=bad)


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError)]
)
def test_workers_must_be_a_positive_int(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="workers"):
        Pipeline(range(3), workers=bad)


def test_a_budget_below_the_fixed_counts_fails_before_any_process_starts() -> None:
    me = psutil.Process()
    before = len(me.children(recursive=True))
    p = Pipeline(range(10), workers=2).task(times_2, count=2).task(plus_one, count="auto").task(times_2)
    with pytest.raises(ValueError, match="workers=2 is smaller than the 3 workers"):
        p.wait_for_result()
    assert len(me.children(recursive=True)) == before


def test_the_graph_says_auto() -> None:
    assert "times_2 x auto" in Pipeline(range(3)).task(times_2, count="auto").graph()


# -- planning (pure) ---------------------------------------------------------------------------


def test_adjacent_auto_stages_and_the_filters_between_them_fuse() -> None:
    p: Pipeline[Any] = (
        Pipeline(range(3))
        .task(times_2, count="auto")
        .filter(is_even)
        .task(plus_one, count="auto")
        .explode()
        .batch(2)
    )
    plan = plan_for([p._endpoint])
    groups = fusion_groups(plan)
    assert [[plan.labels[n.id] for n in g] for g in groups] == [["times_2", "is_even", "plus_one", "explode"]]
    tuned = tune(plan, 4)
    labels = [tuned.plan.labels[n.id] for n in tuned.plan.stages]
    assert labels == ["times_2+is_even+plus_one+explode", "batch"]
    fused = tuned.plan.stages[0]
    assert fused.spec.count == 3  # the budget less the batch's one worker
    assert tuned.members[fused.id] == ("times_2", "is_even", "plus_one", "explode")


def test_stages_that_need_a_process_of_their_own_do_not_fuse() -> None:
    p = (
        Pipeline(range(3))
        .task(times_2, count="auto")
        .task(plus_one, count="auto", on_error=lambda x, e: None)  # crash isolation
        .task(times_2, count="auto", concurrency=4)  # threads of its own
        .task(plus_one, count="auto", ordered=False)
        .task(times_2, count="auto", max_items_per_worker=5)
        .explode(lambda x: [x])  # explode(fn) may be endless: it streams in one worker
    )
    assert fusion_groups(plan_for([p._endpoint])) == []


def test_a_stage_read_by_two_branches_ends_its_group() -> None:
    a = Pipeline(range(3)).task(times_2, count="auto")
    b = a.task(plus_one, count="auto")
    c = a.task(times_2, count="auto")
    plan = plan_for([b._endpoint, c._endpoint])
    assert fusion_groups(plan) == []


@given(
    total=st.integers(1, 64),
    fixed=st.integers(0, 16),
    groups=st.integers(1, 8),
)
def test_allocation_gives_each_group_one_and_never_exceeds_the_rest(
    total: int, fixed: int, groups: int
) -> None:
    counts = allocate(total, fixed, groups)
    assert len(counts) == groups
    assert min(counts) >= 1
    assert sum(counts) == max(groups, total - fixed)
    assert max(counts) - min(counts) <= 1


# -- running ----------------------------------------------------------------------------------


def test_fused_stages_keep_order_and_report_each_stage_on_its_own() -> None:
    p = (
        Pipeline(range(1000), workers=3)
        .task(plus_one, count="auto")
        .filter(is_even)
        .task(times_2, count="auto")
        .batch(10)
    )
    got = p.wait_for_result()
    flat = [(x + 1) * 2 for x in range(1000) if (x + 1) % 2 == 0]
    assert got == [flat[i : i + 10] for i in range(0, len(flat), 10)]
    rows = {r.name: r for r in p.stats().rows}
    assert list(rows) == ["plus_one", "is_even", "times_2", "batch"]
    assert (rows["plus_one"].items_in, rows["plus_one"].items_out) == (1000, 1000)
    assert (rows["is_even"].items_in, rows["is_even"].items_out) == (1000, 500)
    assert (rows["times_2"].items_in, rows["times_2"].items_out) == (500, 500)
    assert rows["plus_one"].workers == rows["times_2"].workers == 2  # 3 less the batch's
    assert rows["plus_one"].auto
    assert not rows["batch"].auto
    assert rows["plus_one"].min_workers == rows["plus_one"].max_workers == 2
    assert p.stats().resizes == ()


def test_the_budget_bounds_the_live_workers() -> None:
    me = psutil.Process()
    Pipeline(range(3)).task(times_2).wait_for_result()  # the janitor starts with a first run
    helpers = {c.pid for c in me.children()}
    p = Pipeline(range(2000), workers=3).task(f.sleepy, count="auto").task(times_2, count="auto").batch(7)
    seen = [len({c.pid for c in me.children()} - helpers) for n, _ in enumerate(p) if n % 20 == 0]
    assert {r.name: r.workers for r in p.stats().rows} == {"sleepy": 2, "times_2": 2, "batch": 1}
    assert max(seen) == 3  # the two fused workers and the batch's: never more


def test_an_error_in_a_fused_stage_names_that_stage_and_its_item() -> None:
    p = (
        Pipeline(range(20))
        .task(plus_one, count="auto")
        .task(fail_on_7, count="auto")
        .task(times_2, count="auto")
    )
    with pytest.raises(PipelineError) as info:
        p.wait_for_result()
    assert info.value.stage == "fail_on_7"
    assert info.value.item_repr == "7"
    assert isinstance(info.value.__cause__, ValueError)


def test_close_method_runs_once_per_worker_of_a_fused_class_task(tmp_path: Any) -> None:
    p = (
        Pipeline(range(300), workers=2)
        .class_task(
            r.Closing, r.Closing.take, class_args=[str(tmp_path)], close_method=r.Closing.close, count="auto"
        )
        .task(times_2, count="auto")
    )
    assert p.wait_for_result() == [x * 2 for x in range(300)]
    closed = list(tmp_path.iterdir())
    assert len(closed) == 2
    assert sum(int(c.read_text()) for c in closed) == 300


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_auto_runs_under_every_start_method(start_method: str) -> None:
    got = (
        Pipeline(range(100), start_method=start_method)
        .task(plus_one, count="auto")
        .task(times_2, count="auto")
        .wait_for_result()
    )
    assert got == [(x + 1) * 2 for x in range(100)]


def test_auto_on_every_engine(engine: Any) -> None:
    p = (
        Pipeline(range(200), workers=2)
        .filter(f.is_odd)
        .task(f.double, count="auto")
        .task(f.double, count="auto")
    )
    assert p.wait_for_result(engine=engine) == [4 * x for x in range(200) if x % 2]


def test_twenty_auto_runs_in_a_row_leave_nothing_behind() -> None:
    for _ in range(20):  # the leak guard checks processes, threads and /dev/shm after the test
        assert Pipeline(range(50)).task(times_2, count="auto").task(
            plus_one, count="auto"
        ).wait_for_result() == [2 * x + 1 for x in range(50)]
