"""Every operator gives the same result on every engine (local, inline, ray)."""

from __future__ import annotations

from typing import Any

import pytest

from olympipe import Pipeline, PipelineError, PipelineExecutionError, RemoteTraceback, WorkerDied
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(120)


def test_task_count_and_order(engine: Any) -> None:
    got = Pipeline(range(200)).task(f.sleepy, count=3).task(f.double).wait_for_result(engine=engine)
    assert got == [2 * x for x in range(200)]


def test_concurrency_threads_and_async(engine: Any) -> None:
    p = Pipeline(range(50))
    threads = p.task(f.double, concurrency=4)
    coros = p.task(f.async_double, concurrency=8)
    a, b = Pipeline.wait_for_all_results([threads, coros], engine=engine)
    assert a == b == [2 * x for x in range(50)]
    # the items of one worker overlap, in threads and as coroutines; the inline engine pushes
    # one item at a time through the graph (documented)
    items = Pipeline(range(24))
    in_threads = items.task(f.peak_in_threads, concurrency=4).wait_for_result(engine=engine)
    in_coroutines = items.task(f.peak_in_coroutines, concurrency=8).wait_for_result(engine=engine)
    for peaks in (in_threads, in_coroutines):
        assert max(peaks) == 1 if engine == "inline" else max(peaks) > 1


def test_unordered_keeps_every_item(engine: Any) -> None:
    got = Pipeline(range(100)).task(f.sleepy, count=2, ordered=False).wait_for_result(engine=engine)
    assert sorted(got) == list(range(100))


def test_class_task(engine: Any) -> None:
    got = (
        Pipeline(range(20))
        .class_task(f.Scaler, f.Scaler.scale, class_args=[3], close_method=f.Scaler.close, count=2)
        .wait_for_result(engine=engine)
    )
    assert got == [3 * x for x in range(20)]


def test_filter_explode_batch(engine: Any) -> None:
    got = (
        Pipeline(range(30))
        .filter(f.is_odd)
        .explode(lambda x: [x, x])
        .batch(4, keep_incomplete_batch=True)
        .wait_for_result(engine=engine)
    )
    flat = [y for x in range(30) if x % 2 for y in (x, x)]
    assert got == [flat[i : i + 4] for i in range(0, len(flat), 4)]


def test_temporal_batch_keeps_every_item(engine: Any) -> None:
    got = Pipeline(range(40)).temporal_batch(5.0).wait_for_result(engine=engine)
    assert [x for batch in got for x in batch] == list(range(40))
    assert all(batch for batch in got)


def test_temporal_batch_parts_items_a_pause_apart(engine: Any) -> None:
    got = Pipeline(f.paused_source()).temporal_batch(0.2).wait_for_result(engine=engine)
    assert [x for batch in got for x in batch] == list(range(6))
    assert not any(2 in batch and 3 in batch for batch in got)  # a second apart: two windows


def test_split_gather_and_broadcast(engine: Any) -> None:
    evens, odds = Pipeline(range(20)).split(f.halves)
    both = evens.task(f.double).gather(odds)
    e, o, merged = Pipeline.wait_for_all_results([evens, odds, both], engine=engine)
    assert e == list(range(0, 20, 2))
    assert o == list(range(1, 20, 2))
    assert sorted(merged) == sorted([2 * x for x in e] + o)
    assert [x for x in merged if x % 4 == 0 and x in [2 * y for y in e]] == [2 * y for y in e]


def test_reduce_and_wait_and_reduce(engine: Any) -> None:
    p = Pipeline(range(101))
    assert p.reduce(0, f.add).wait_for_result(engine=engine) == [5050]
    assert p.task(f.double).wait_and_reduce(0, f.add, engine=engine) == 10100


def test_limit_ends_an_infinite_source(engine: Any) -> None:
    got = Pipeline(f.naturals()).task(f.double, count=2).limit(25).wait_for_result(engine=engine)
    assert got == [2 * x for x in range(25)]


def test_limit_zero(engine: Any) -> None:
    assert Pipeline(f.naturals()).limit(0).wait_for_result(engine=engine) == []


def test_timeout_ends_a_stalled_source(engine: Any) -> None:
    if engine == "inline":
        pytest.skip("inline: nothing runs while the source is blocked in next() (documented)")
    f.release_stalled.clear()
    try:
        got = Pipeline(f.stalls_after_3()).task(f.double).timeout(1.0).wait_for_result(engine=engine)
    finally:
        f.release_stalled.set()
    assert got == [2, 4, 6]


def test_cached_task(engine: Any, tmp_path: Any) -> None:
    calls = tmp_path / "calls.txt"
    cache = tmp_path / "cache"
    double = f.counting_double(str(calls))
    first = Pipeline(range(10)).cached_task(double, cache).wait_for_result(engine=engine)
    assert sorted(int(x) for x in calls.read_text().split()) == list(range(10))
    again = Pipeline(range(12)).cached_task(double, cache).uncache().wait_for_result(engine=engine)
    assert first == again[:10] == [2 * x for x in range(10)]
    assert again[10:] == [20, 22]
    assert sorted(int(x) for x in calls.read_text().split()) == [*range(10), 10, 11]  # the rerun skipped 0..9


def test_on_error_replaces_and_drops(engine: Any) -> None:
    got = Pipeline(range(8)).task(f.fail_on_5, on_error=lambda x, e: -x).wait_for_result(engine=engine)
    assert got == [0, 1, 2, 3, 4, -5, 6, 7]
    dropped = Pipeline(range(8)).task(f.fail_on_5, on_error=lambda x, e: None).wait_for_result(engine=engine)
    assert dropped == [0, 1, 2, 3, 4, 6, 7]


def test_stage_error_carries_its_story(engine: Any) -> None:
    with pytest.raises(PipelineError) as info:
        Pipeline(range(10)).task(f.fail_on_5).task(f.double).wait_for_result(engine=engine)
    err = info.value
    assert err.stage == "fail_on_5"
    assert err.item_repr == "5"
    assert "KeyError" in str(err)
    assert isinstance(err.__cause__, KeyError)
    if engine != "inline":  # inline raises it in this process, with its own traceback
        assert isinstance(err.__cause__.__cause__, RemoteTraceback)  # the worker's frames
    assert "fail_on_5" in (err.remote_traceback or "")
    assert isinstance(err, RuntimeError)  # as 2.x's PipelineExecutionError was
    assert PipelineExecutionError is PipelineError


def test_exception_needing_init_arguments_keeps_its_class(engine: Any) -> None:
    with pytest.raises(PipelineError) as info:
        Pipeline(range(5)).task(f.raise_needs_two).wait_for_result(engine=engine)
    cause = info.value.__cause__
    assert isinstance(cause, f.NeedsTwo)
    assert cause.code == 42
    assert "42: three" in str(cause)


def test_source_error_is_stage_source(engine: Any) -> None:
    with pytest.raises(PipelineError) as info:
        Pipeline(f.source_fails()).task(f.double).wait_for_result(engine=engine)
    assert info.value.stage == "source"
    assert isinstance(info.value.__cause__, OSError)
    assert "camera unplugged" in str(info.value)


def test_dead_worker_is_worker_died(engine: Any) -> None:
    if engine == "inline":
        pytest.skip("inline: a stage that exits takes the caller with it")
    with pytest.raises(WorkerDied) as info:
        Pipeline(range(10)).task(f.exit_on_5).wait_for_result(engine=engine)
    assert info.value.stage == "exit_on_5"
    # Ray reports an actor's death, not its exit code
    assert info.value.exitcode == (7 if engine == "local" else None)


def test_break_out_of_iteration_stops_the_run(engine: Any) -> None:
    seen = []
    for x in Pipeline(f.naturals(), engine=engine).task(f.double):
        seen.append(x)
        if len(seen) == 10:
            break
    assert seen == [2 * x for x in range(10)]


def test_stats_count_every_stage(engine: Any) -> None:
    p = Pipeline(range(300)).task(f.double, count=2).filter(f.is_odd)
    p.wait_for_result(engine=engine)
    rows = {r.name: r for r in p.stats().rows}
    assert rows["double"].items_in == 300
    assert rows["double"].items_out == 300
    assert rows["is_odd"].items_in == 300
    assert rows["is_odd"].items_out == 0


def test_empty_and_one_item_sources(engine: Any) -> None:
    assert Pipeline([]).task(f.double).batch(3).wait_for_result(engine=engine) == []
    assert Pipeline([4]).task(f.double).reduce(0, f.add).wait_for_result(engine=engine) == [8]


def _keys(n: int) -> list[str]:
    import uuid

    token = uuid.uuid4().hex[:8]
    return [f"{token}-{i}" for i in range(n)]


def test_retries_that_succeed(engine: Any) -> None:
    keys = _keys(6)
    p = Pipeline(keys).task(f.flaky_twice, retries=2, retry_on=ConnectionError)
    assert p.wait_for_result(engine=engine) == [k.upper() for k in keys]
    row = p.stats().rows[0]
    assert (row.retries, row.errors) == (12, 0)


def test_retries_exhausted_keep_the_last_exception(engine: Any) -> None:
    keys = _keys(3)
    got = (
        Pipeline(keys)
        .task(f.always_fails, retries=2, on_error=lambda k, e: f"{type(e).__name__}:{k}")
        .wait_for_result(engine=engine)
    )
    assert got == [f"TimeoutError:{k}" for k in keys]
    with pytest.raises(PipelineError) as info:
        Pipeline(keys).task(f.always_fails, retries=1).wait_for_result(engine=engine)
    assert isinstance(info.value.__cause__, TimeoutError)


def test_only_retry_on_types_are_retried(engine: Any) -> None:
    keys = _keys(2)
    p = Pipeline(keys).task(f.flaky_twice, retries=5, retry_on=(KeyError, TimeoutError))
    with pytest.raises(PipelineError) as info:
        p.wait_for_result(engine=engine)
    assert isinstance(info.value.__cause__, ConnectionError)


def test_class_task_retries(engine: Any) -> None:
    keys = _keys(3)
    got = (
        Pipeline(keys)
        .class_task(f.Retrier, f.Retrier.call, retries=2, retry_on=ConnectionError)
        .wait_for_result(engine=engine)
    )
    assert got == [k.upper() for k in keys]


def test_bad_retry_values_raise_at_build_time() -> None:
    p = Pipeline(range(3))
    with pytest.raises(ValueError):
        p.task(f.double, retries=-1)
    with pytest.raises(TypeError):
        p.task(f.double, retries="2")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        p.task(f.double, retry_on=int)  # type: ignore[arg-type]


def test_a_stage_may_change_its_input_array_in_place(engine: Any) -> None:
    """On Ray, arrays read from the object store are read-only: an in-place stage failed
    there with 'output array is read-only' while the same pipeline ran locally."""
    np = pytest.importorskip("numpy")
    arrays = (np.full(1 << 16, i, dtype=np.float32) for i in range(6))  # 256 KiB each
    got = Pipeline(arrays).task(f.bump_array).task(f.bump_array).wait_for_result(engine=engine)
    assert [float(a[-1]) for a in got] == [i + 2.0 for i in range(6)]
    pairs = ((np.zeros(1 << 16), i) for i in range(4))  # an array inside a tuple
    got_pairs = Pipeline(pairs).task(f.bump_first_of_pair).wait_for_result(engine=engine)
    assert [(float(a[0]), label) for a, label in got_pairs] == [(1.0, i) for i in range(4)]
