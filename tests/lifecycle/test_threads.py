"""Runs started from threads (one that ends, several at once) and what a forkserver run leaves."""

from __future__ import annotations

import multiprocessing.synchronize
import os
import threading
from typing import Any

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


def test_forkserver_run_leaves_no_semaphore_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # The names of the semaphores this process makes: other tests, in other pytest workers,
    # make files of the same pattern meanwhile.
    made: list[str] = []
    make = multiprocessing.synchronize.SemLock.__init__

    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        make(self, *args, **kwargs)
        made.append(self._semlock.name)

    monkeypatch.setattr(multiprocessing.synchronize.SemLock, "__init__", recording)
    p = Pipeline(range(20), start_method="forkserver").task(f.double, count=2, ordered=False)
    assert sorted(p.wait_for_result()) == [2 * x for x in range(20)]
    assert made  # the run made some
    left = [name for name in made if os.path.exists("/dev/shm/sem." + name.lstrip("/"))]
    assert left == []  # while p, and its last run, are still alive
    assert p.stats().rows[0].items_in == 20
