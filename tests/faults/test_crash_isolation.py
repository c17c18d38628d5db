"""A crash is one item's failure when the stage has ``on_error``: the worker is replaced,
the item it died on goes to ``on_error`` as a ``WorkerDied``, and the run goes on in order."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from olympipe import Pipeline, PipelineError, WorkerDied
from tests.crashes import CRASHES
from tests.helpers import plus_one

pytestmark = pytest.mark.faults

N = 120


def crash_at(kind: str, *bad: int) -> Callable[[int], int]:
    def stage(x: int) -> int:
        if x in bad:
            CRASHES[kind]()
        return x * 10

    return stage


def negate_on_death(item: int, exc: Exception) -> int:
    assert isinstance(exc, WorkerDied), repr(exc)
    return -item


def expected(bad: set[int], values: range = range(N)) -> list[int]:
    return [-x if x in bad else x * 10 for x in values]


def shapes(stage: Callable[[int], int]) -> dict[str, Callable[[], Pipeline[Any]]]:
    return {
        "count1": lambda: Pipeline(range(N)).task(stage, on_error=negate_on_death),
        "count4": lambda: (
            Pipeline(range(N))
            .task(plus_one)
            .task(lambda x: x - 1, count=4)
            .task(stage, count=4, on_error=negate_on_death)
        ),
        # a single worker behind four: it reorders its input, and its successor must go on
        # from where it stopped
        "count1_behind_count4": lambda: (
            Pipeline(range(N))
            .task(plus_one, count=4)
            .task(lambda x: x - 1)
            .task(stage, on_error=negate_on_death)
        ),
    }


@pytest.mark.parametrize("kind", sorted(CRASHES))
@pytest.mark.parametrize("at", [0, N // 2, N - 1])
@pytest.mark.parametrize("shape", ["count1", "count4", "count1_behind_count4"])
def test_crash_goes_to_on_error_and_the_run_goes_on(kind: str, at: int, shape: str) -> None:
    pipe = shapes(crash_at(kind, at))[shape]()
    assert pipe.wait_for_result() == expected({at})
    assert sum(r.crashes for r in pipe.stats().rows) >= 1


@pytest.mark.parametrize("kind", ["sigkill", "segfault"])
def test_crash_in_a_broadcast_branch(kind: str) -> None:
    base = Pipeline(range(N))
    left = base.task(crash_at(kind, 5, 77), count=2, on_error=negate_on_death)
    right = base.task(plus_one)
    got_left, got_right = Pipeline.wait_for_all_results([left, right])
    assert got_left == expected({5, 77})
    assert got_right == [x + 1 for x in range(N)]


@pytest.mark.parametrize("kind", ["os_exit", "segfault"])
def test_crash_behind_a_gather(kind: str) -> None:
    pipe = (
        Pipeline(range(N // 2))
        .gather(Pipeline(range(N // 2, N)))
        .task(crash_at(kind, 3, N - 2), on_error=negate_on_death)
    )
    got = pipe.wait_for_result()
    assert sorted(got) == sorted(expected({3, N - 2}))
    sources = [-v if v < 0 else v // 10 for v in got]  # each input's order is kept
    assert [x for x in sources if x < N // 2] == list(range(N // 2))
    assert [x for x in sources if x >= N // 2] == list(range(N // 2, N))


def test_two_segfaults_in_one_stage() -> None:
    pipe = Pipeline(range(N)).task(crash_at("segfault", 10, 11), count=2, on_error=negate_on_death)
    assert pipe.wait_for_result() == expected({10, 11})


def test_a_crash_on_every_tenth_item_still_finishes() -> None:
    bad = set(range(3, 300, 10))
    pipe = Pipeline(range(300)).task(crash_at("sigkill", *bad), count=3, on_error=negate_on_death)
    assert pipe.wait_for_result() == expected(bad, range(300))
    assert sum(r.crashes for r in pipe.stats().rows) >= len(bad)
    assert sum(r.errors for r in pipe.stats().rows) == len(bad)


def drop(item: int, exc: Exception) -> None:
    return None


def test_a_handler_that_drops_the_crashed_item() -> None:
    pipe = Pipeline(range(N)).task(crash_at("sigkill", 50), count=2, on_error=drop)
    assert pipe.wait_for_result() == [x * 10 for x in range(N) if x != 50]


def test_without_on_error_a_crash_still_ends_the_run() -> None:
    with pytest.raises(WorkerDied):
        Pipeline(range(N)).task(crash_at("sigkill", 50), count=2).wait_for_result()


def crash_in_handler(item: int, exc: Exception) -> int:
    CRASHES["sigkill"]()
    return item


def test_a_handler_that_crashes_ends_the_run() -> None:
    with pytest.raises(WorkerDied):
        Pipeline(range(N)).task(crash_at("sigkill", 50), on_error=crash_in_handler).wait_for_result()


class DiesOnSecondBuild:
    """Its constructor kills every worker after the first: no replacement can start."""

    def __init__(self, marker: str) -> None:
        if os.path.exists(marker):
            CRASHES["sigkill"]()
        with open(marker, "w"):
            pass

    def work(self, x: int) -> int:
        if x == 7:
            CRASHES["sigkill"]()
        return x * 10


def test_a_replacement_that_cannot_start_ends_the_run(tmp_path: Any) -> None:
    pipe = Pipeline(range(N)).class_task(
        DiesOnSecondBuild, DiesOnSecondBuild.work, [str(tmp_path / "built")], on_error=negate_on_death
    )
    with pytest.raises(WorkerDied):
        pipe.wait_for_result()
    # One replacement tried (and died building itself); none after it.
    assert pipe.stats().rows[0].crashes == 1


def crash_on_big(x: Any) -> Any:
    if int(x[0]) == 3:
        CRASHES["segfault"]()
    x += 1  # in place: the rerun must see what was sent, not this
    return x


def test_large_arrays_are_rerun_from_what_was_sent() -> None:
    np = pytest.importorskip("numpy")

    def handler(item: Any, exc: Exception) -> Any:
        return item * 0 - 1

    arrays = [np.full(100_000, i, dtype=np.int64) for i in range(8)]
    # Items 3 and 4 share a chunk: 4 is re-run after the crash, from the bytes sent.
    got = Pipeline(arrays).task(crash_on_big, on_error=handler).wait_for_result()
    for i, arr in enumerate(got):
        assert int(arr[0]) == (-1 if i == 3 else i + 1), i
        assert int(arr[-1]) == int(arr[0])


def test_crashes_count_in_stats() -> None:
    pipe = Pipeline(range(N)).task(crash_at("os_exit", 9), on_error=negate_on_death)
    pipe.wait_for_result()
    (row,) = pipe.stats().rows
    assert row.crashes == 1  # the worker said which item it ran: never run again to find it
    assert row.errors == 1
    assert row.items_in >= N
    assert "crashes" in str(pipe.stats())


def test_a_crash_among_concurrent_items_counts_once_more_to_find_the_item() -> None:
    pipe = Pipeline(range(N)).task(crash_at("os_exit", 9), on_error=negate_on_death, concurrency=2)
    assert pipe.wait_for_result() == expected({9})
    (row,) = pipe.stats().rows
    assert row.crashes == 2  # threads: the item is unknown; its chunk runs again item by item
    assert row.errors == 1


def test_class_task_on_error_isolates_a_crash() -> None:
    pipe = Pipeline(range(N)).class_task(Doubler, Doubler.work, on_error=negate_on_death, count=2)
    assert pipe.wait_for_result() == [-x if x == 33 else x * 2 for x in range(N)]


class Doubler:
    def work(self, x: int) -> int:
        if x == 33:
            CRASHES["segfault"]()
        return x * 2


def test_an_error_in_a_rerun_still_reaches_on_error() -> None:
    def stage(x: int) -> int:
        if x == 20:
            CRASHES["sigkill"]()
        if x == 21:
            raise ValueError("bad item")
        return x

    def handler(item: int, exc: Exception) -> int:
        return -1000 if isinstance(exc, WorkerDied) else -item

    got = Pipeline(range(40)).task(stage, on_error=handler).wait_for_result()
    assert got[20] == -1000
    assert got[21] == -21
    assert got[:20] == list(range(20))
    assert got[22:] == list(range(22, 40))


def test_without_isolation_errors_still_name_the_item() -> None:
    def stage(x: int) -> int:
        if x == 5:
            raise KeyError("k")
        return x

    with pytest.raises(PipelineError) as info:
        Pipeline(range(10)).task(stage, max_items_per_worker=3).wait_for_result()
    assert info.value.item_repr == "5"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_start_method_replaces_workers(method: str) -> None:
    pipe = Pipeline(range(40), start_method=method).task(
        crash_at("sigkill", 12), count=2, on_error=negate_on_death
    )
    assert pipe.wait_for_result() == expected({12}, range(40))


def hang_on_10(folder: str) -> Callable[[int], int]:
    def stage(x: int) -> int:
        if x == 10:
            with open(os.path.join(folder, "pid"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)  # killed from outside meanwhile
        return x

    return stage


def test_a_worker_killed_from_outside_while_working(tmp_path: Any) -> None:
    folder = str(tmp_path)
    pid_file = tmp_path / "pid"

    def killer() -> None:
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.01)  # polling a file another process writes: no event to wait on
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    got = Pipeline(range(30)).task(hang_on_10(folder), count=2, on_error=drop).wait_for_result()
    thread.join()
    assert got == [x for x in range(30) if x != 10]


def test_crash_with_threads_in_the_worker_is_found_by_probing() -> None:
    pipe = Pipeline(range(N)).task(crash_at("segfault", 40), count=2, concurrency=4, on_error=negate_on_death)
    assert pipe.wait_for_result() == expected({40})


async def async_crash(x: int) -> int:
    if x == 17:
        CRASHES["sigkill"]()
    return x * 10


def test_crash_in_an_async_stage() -> None:
    pipe = Pipeline(range(N)).task(async_crash, concurrency=8, on_error=negate_on_death)
    assert pipe.wait_for_result() == expected({17})


def test_crash_with_ordered_false_loses_nothing() -> None:
    pipe = Pipeline(range(N)).task(
        crash_at("os_exit", 3, 90), count=3, ordered=False, on_error=negate_on_death
    )
    assert sorted(pipe.wait_for_result()) == sorted(expected({3, 90}))


def test_crash_while_iterating_and_breaking() -> None:
    pipe = Pipeline(range(N)).task(crash_at("sigkill", 5), count=2, on_error=negate_on_death)
    got = []
    for x in pipe:
        got.append(x)
        if len(got) == 20:
            break
    assert got == expected({5})[:20]
