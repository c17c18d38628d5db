"""Crash isolation and recycled workers on the Ray engine: a replacement actor."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from olympipe import Pipeline, RayEngine, WorkerDied
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("count", [1, 2])
def test_a_dead_actor_is_replaced_and_its_item_goes_to_on_error(ray_engine: RayEngine, count: int) -> None:
    pipe = (
        Pipeline(range(60))
        .task(f.plus_one)
        .task(f.crash_at_7_and_30, count=count, on_error=f.minus_on_death)
        .task(f.plus_one)
    )
    got = pipe.wait_for_result(engine=ray_engine)
    bad = {7, 30}
    assert got == [(-(x + 1) if x + 1 in bad else (x + 1) * 10) + 1 for x in range(60)]
    assert sum(r.crashes for r in pipe.stats().rows) >= 2


def test_without_on_error_a_dead_actor_ends_the_run(ray_engine: RayEngine) -> None:
    with pytest.raises(WorkerDied):
        Pipeline(range(60)).task(f.crash_at_7_and_30).wait_for_result(engine=ray_engine)


def test_recycled_actors_take_at_most_n_items(ray_engine: RayEngine) -> None:
    pipe = Pipeline(range(50)).task(f.with_pid, count=2, max_items_per_worker=6)
    got = pipe.wait_for_result(engine=ray_engine)
    assert [x for x, _pid in got] == list(range(50))
    per_pid = Counter(pid for _x, pid in got)
    assert max(per_pid.values()) <= 6
    assert len(per_pid) >= 50 // 6


def test_recycled_actors_run_close_method(ray_engine: RayEngine, tmp_path: Path) -> None:
    pipe = Pipeline(range(40)).class_task(
        f.Tally, f.Tally.work, [str(tmp_path)], close_method=f.Tally.close, max_items_per_worker=8
    )
    assert pipe.wait_for_result(engine=ray_engine) == list(range(1, 41))
    counts = [int(p.read_text()) for p in tmp_path.iterdir()]
    assert sum(counts) == 40
    assert max(counts) <= 8


def test_a_dead_actor_of_a_stage_without_on_error_still_ends_the_run(
    ray_engine: RayEngine, tmp_path: Path
) -> None:
    crash_once = f.CrashOnce(str(tmp_path / "crashed"))  # a replacement would not crash
    pipe = Pipeline(range(60)).task(crash_once).task(f.plus_one, on_error=f.minus_on_death)
    with pytest.raises(WorkerDied):
        pipe.wait_for_result(engine=ray_engine)


def test_a_stateful_stage_after_a_crash_sees_every_chunk_in_order(ray_engine: RayEngine) -> None:
    """The batch's calls wait until the crash-isolated stage's chunk is good."""
    pipe = (
        Pipeline(range(60))
        .task(f.crash_at_7_and_30, count=2, on_error=f.minus_on_death)
        .batch(5)
        .task(f.plus_one_each)
    )
    got = pipe.wait_for_result(engine=ray_engine)
    flat = [x - 1 for batch in got for x in batch]
    assert flat == [-x if x in (7, 30) else x * 10 for x in range(60)]
    assert all(len(batch) == 5 for batch in got)


def _figures(pipe: Pipeline[object]) -> list[tuple[str, int, int, int, int, int]]:
    return [(r.name, r.items_in, r.items_out, r.errors, r.crashes, r.recycled) for r in pipe.stats().rows]


@pytest.mark.parametrize("count", [1, 2])
def test_crash_figures_agree_with_the_local_engine(ray_engine: RayEngine, count: int) -> None:
    def build() -> Pipeline[object]:
        return Pipeline(range(50)).task(f.crash_every_7th, count=count, on_error=f.minus_one_on_death)

    ray_run, local_run = build(), build()
    assert ray_run.wait_for_result(engine=ray_engine) == local_run.wait_for_result()
    assert _figures(ray_run) == _figures(local_run) == [("crash_every_7th", 50, 50, 7, 7, 0)]


def test_recycling_figures_agree_with_the_local_engine(ray_engine: RayEngine) -> None:
    def build() -> Pipeline[object]:
        return Pipeline(range(120)).task(f.plus_one, count=2, max_items_per_worker=10)

    ray_run, local_run = build(), build()
    assert ray_run.wait_for_result(engine=ray_engine) == local_run.wait_for_result()
    (name, items_in, items_out, errors, _crashes, recycled) = _figures(ray_run)[0]
    assert (name, items_in, items_out, errors) == ("plus_one", 120, 120, 0)
    assert _figures(local_run)[0][:4] == (name, items_in, items_out, errors)
    assert recycled >= 120 // 10 - 2  # each actor is recycled once its budget is spent
