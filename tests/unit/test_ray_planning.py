"""The Ray engine's grouping of stages into actors, as pure functions of the plan (no Ray)."""

from __future__ import annotations

from typing import Any

from olympipe import Pipeline
from olympipe._engines.ray.planning import held_back, plan_groups
from olympipe._graph import plan_for
from tests.helpers import is_even, plus_one, times_2


def _groups(p: Pipeline[Any], fuse: bool = True, pinned: tuple[str, ...] = ()) -> list[list[str]]:
    plan = plan_for([p._endpoint])
    return [group.labels for group in plan_groups(plan, fuse, pinned)]


def test_adjacent_per_item_stages_of_one_count_fuse() -> None:
    p = Pipeline(range(3)).task(plus_one).filter(is_even).task(times_2).batch(2).task(len, count=2)
    assert _groups(p) == [["plus_one", "is_even", "times_2"], ["batch"], ["len"]]


def test_nothing_fuses_when_asked_not_to_or_across_counts_or_pins() -> None:
    p = Pipeline(range(3)).task(plus_one).task(times_2, count=2).task(plus_one, count=2)
    assert _groups(p, fuse=False) == [["plus_one"], ["times_2"], ["plus_one#2"]]
    assert _groups(p) == [["plus_one"], ["times_2", "plus_one#2"]]
    assert _groups(p, pinned=("plus_one#2",)) == [["plus_one"], ["times_2"], ["plus_one#2"]]


def test_crash_isolated_and_recycled_stages_run_alone() -> None:
    p = (
        Pipeline(range(3))
        .task(plus_one)
        .task(times_2, on_error=lambda x, e: None)
        .task(plus_one, max_items_per_worker=3)
        .task(times_2)
    )
    assert _groups(p) == [["plus_one"], ["times_2"], ["plus_one#2"], ["times_2#2"]]


def test_a_branch_point_ends_a_group() -> None:
    a = Pipeline(range(3)).task(plus_one)
    plan = plan_for([a.task(times_2)._endpoint, a.task(is_even)._endpoint])
    assert [g.labels for g in plan_groups(plan, True, ())] == [["plus_one"], ["times_2"], ["is_even"]]


def test_a_stateful_stage_behind_a_crash_isolated_one_is_held_back_with_what_follows() -> None:
    p = Pipeline(range(3)).task(plus_one, on_error=lambda x, e: None).batch(2).task(len).task(plus_one)
    plan = plan_for([p._endpoint])
    groups = plan_groups(plan, True, ())
    group_of = {n.id: g for g in groups for n in g.nodes}
    held = held_back(groups, group_of)
    assert [g.labels for g in groups if id(g) in held] == [["batch"], ["len", "plus_one#2"]]
    free = Pipeline(range(3)).task(plus_one).batch(2)
    free_groups = plan_groups(plan_for([free._endpoint]), True, ())
    assert held_back(free_groups, {n.id: g for g in free_groups for n in g.nodes}) == set()


def test_a_stateful_stage_behind_an_explode_is_held_back() -> None:
    """The rest of an exploded chunk comes in later calls: a batch must wait for it."""
    p = Pipeline(range(3)).task(plus_one).explode(range).task(times_2).limit(5)
    plan = plan_for([p._endpoint])
    groups = plan_groups(plan, True, ())
    assert [g.labels for g in groups] == [["plus_one", "range", "times_2"], ["limit"]]
    assert [g.streams for g in groups] == [True, False]
    held = held_back(groups, {n.id: g for g in groups for n in g.nodes})
    assert [g.labels for g in groups if id(g) in held] == [["limit"]]


def test_auto_stages_fuse_only_with_each_other_and_two_of_them_make_pools() -> None:
    from olympipe._core.tuning import tune
    from olympipe._engines.ray.pools import resizable_pools

    p = (
        Pipeline(range(3))
        .task(plus_one, count="auto")
        .task(times_2, count="auto")
        .batch(2)
        .explode()
        .task(plus_one, count="auto")
    )
    tuned = tune(plan_for([p._endpoint]), 5, fuse=False)
    groups = plan_groups(tuned.plan, True, (), tuned.auto)
    assert [(g.labels, g.count) for g in groups] == [
        (["plus_one", "times_2"], 2),
        (["batch"], 1),
        (["explode"], 1),  # a fixed count: not in the auto pool after it
        (["plus_one#2"], 1),
    ]
    pools, shared = resizable_pools(groups, tuned.auto)
    assert shared == 3
    assert [(pool.group.labels[0], pool.live, pool.places) for pool in pools] == [
        ("plus_one", 2, 2),
        ("plus_one#2", 1, 2),
    ]
    single = Pipeline(range(3)).task(plus_one, count="auto")
    tuned = tune(plan_for([single._endpoint]), 5, fuse=False)
    assert resizable_pools(plan_groups(tuned.plan, True, (), tuned.auto), tuned.auto) == ([], 0)


def test_a_stage_with_a_drop_policy_is_held_back_with_what_follows() -> None:
    p = Pipeline(range(3)).task(plus_one).task(times_2, on_full="drop_oldest").task(plus_one, count=2)
    groups = plan_groups(plan_for([p._endpoint]), True, ())
    assert [(g.labels, g.drops) for g in groups] == [
        (["plus_one"], None),
        (["times_2"], "drop_oldest"),  # heads its own group
        (["plus_one#2"], None),
    ]
    held = held_back(groups, {n.id: g for g in groups for n in g.nodes})
    assert [g.labels for g in groups if id(g) in held] == [["times_2"], ["plus_one#2"]]
