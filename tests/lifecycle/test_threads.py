"""Runs started from threads (one that ends, several at once) and what a forkserver run leaves."""

from __future__ import annotations

import threading

import pytest

from olympipe import Pipeline
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)


def test_start_from_a_thread_that_then_ends() -> None:
    holder: list[Pipeline[int]] = []
    t = threading.Thread(
        target=lambda: holder.append(Pipeline(range(50), start_method="fork").task(f.sleepy).start())
    )
    t.start()
    t.join()
    assert holder[0].wait_for_result() == list(range(50))  # the workers outlive the thread


def test_concurrent_fork_runs_from_threads() -> None:
    errors: list[BaseException] = []

    def runs() -> None:
        try:
            for _ in range(10):
                got = Pipeline(range(30), start_method="fork").task(f.double, count=2).wait_for_result()
                assert got == [2 * x for x in range(30)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runs) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def _semaphores() -> set[str]:
    import os

    return {e for e in os.listdir("/dev/shm") if e.startswith("sem.mp-")}


def test_forkserver_run_leaves_no_semaphore_file() -> None:
    before = _semaphores()
    p = Pipeline(range(20), start_method="forkserver").task(f.double, count=2, ordered=False)
    assert sorted(p.wait_for_result()) == [2 * x for x in range(20)]
    assert _semaphores() - before == set()  # while p, and its last run, are still alive
    assert p.stats().rows[0].items_in == 20
