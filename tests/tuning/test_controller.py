"""The auto controller as a pure function: where it moves workers, and that it settles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from olympipe._core.controller import Controller, Load, share


def window(counts: list[int], costs: list[float], cores: float, seconds: float = 0.5) -> list[Load]:
    """What stages costing ``costs`` seconds per item measure in one window when the
    slowest one (counting its workers and the cores) sets the pace."""
    rate = min(min(n / c for n, c in zip(counts, costs, strict=True)), cores / sum(costs))
    loads = []
    for n, c in zip(counts, costs, strict=True):
        busy = min(n * seconds, rate * c * seconds)
        loads.append(Load(workers=n, slots=8, busy=busy, waited=n * seconds - busy, blocked=0.0))
    return loads


def run(
    counts: list[int], costs: list[float], budget: int, cores: float, windows: int = 30
) -> list[list[int]]:
    controller = Controller(budget)
    history = [counts]
    for _ in range(windows):
        counts = controller.decide(window(counts, costs, cores), 0.5)
        history.append(counts)
    return history


def test_workers_move_to_the_stage_that_limits() -> None:
    history = run([2, 1], [0.001, 0.010], budget=3, cores=8)
    assert history[-1] == [1, 2]


def test_it_settles_and_never_oscillates_on_a_steady_workload() -> None:
    history = run([3, 1, 1], [0.001, 0.010, 0.002], budget=6, cores=16, windows=40)
    changes = [i for i in range(1, len(history)) if history[i] != history[i - 1]]
    assert history[-1][1] == max(history[-1])  # the costly stage has the most
    assert changes
    assert changes[-1] < 15  # settled early, and nothing moved after
    assert len(set(map(tuple, history[changes[-1] :]))) == 1


def test_nothing_moves_while_no_stage_limits() -> None:
    controller = Controller(4)
    idle = [Load(workers=2, slots=3, busy=0.1, waited=0.9, blocked=0.0)] * 2
    for _ in range(10):
        assert controller.decide(idle, 0.5) == [2, 2]


def test_a_first_change_is_at_once_one_step_and_a_step_back_waits_for_patience() -> None:
    controller = Controller(4, patience=2)
    loads = [Load(3, 3, busy=0.1, waited=1.4, blocked=0.0), Load(1, 3, busy=0.5, waited=0.0, blocked=0.0)]
    assert controller.decide(loads, 0.5) == [2, 2]  # one step each, within the budget
    back = [Load(2, 3, busy=1.0, waited=0.0, blocked=0.0), Load(2, 3, busy=0.1, waited=0.9, blocked=0.0)]
    assert controller.decide(back, 0.5) == [2, 2]  # the other way: first sighting, wait
    assert controller.decide(back, 0.5) == [3, 1]  # seen twice: back one step each


def test_a_stage_held_back_by_the_next_one_does_not_count_as_limiting() -> None:
    controller = Controller(4, patience=1)
    loads = [Load(1, 3, busy=0.45, waited=0.0, blocked=0.5), Load(3, 3, busy=0.3, waited=1.2, blocked=0.0)]
    assert controller.decide(loads, 0.5) == [1, 3]


@given(
    demand=st.lists(st.floats(0, 10), min_size=1, max_size=6),
    budget=st.integers(1, 20),
    data=st.data(),
)
def test_share_gives_one_each_and_stays_within_the_budget_and_slots(
    demand: list[float], budget: int, data: st.DataObject
) -> None:
    slots = data.draw(st.lists(st.integers(1, 8), min_size=len(demand), max_size=len(demand)))
    counts = share(demand, slots, budget)
    assert all(c >= 1 for c in counts)
    assert all(c <= max(1, s) for c, s in zip(counts, slots, strict=True))
    assert sum(counts) <= max(budget, len(demand))


@given(
    loads=st.lists(
        st.tuples(st.integers(1, 4), st.floats(0, 2), st.floats(0, 2), st.floats(0, 2)),
        min_size=2,
        max_size=5,
    ),
    extra=st.integers(0, 4),
)
def test_decisions_never_exceed_the_budget(loads: list[tuple[int, float, float, float]], extra: int) -> None:
    budget = sum(n for n, *_ in loads) + extra
    controller = Controller(budget, patience=1)
    current = [Load(n, 6, busy, waited, blocked) for n, busy, waited, blocked in loads]
    for _ in range(3):
        counts = controller.decide(current, 0.5)
        assert sum(counts) <= budget
        assert all(c >= 1 for c in counts)
        assert all(abs(c - load.workers) <= 1 for c, load in zip(counts, current, strict=True))
        current = [
            Load(c, 6, load.busy, load.waited, load.blocked) for c, load in zip(counts, current, strict=True)
        ]
