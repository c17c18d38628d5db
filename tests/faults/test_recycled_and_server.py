"""Recycled workers (``max_items_per_worker``) and a server that survives a worker crash."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline
from tests.crashes import CRASHES
from tests.engines.stagefns import Tally
from tests.server_helpers import call, serve

pytestmark = pytest.mark.faults


def with_pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


@pytest.mark.parametrize("count", [1, 3])
def test_at_most_n_items_per_worker_and_order_kept(count: int) -> None:
    pipe = Pipeline(range(200)).task(with_pid, count=count, max_items_per_worker=7)
    got = pipe.wait_for_result()
    assert [x for x, _pid in got] == list(range(200))
    per_pid = Counter(pid for _x, pid in got)
    assert max(per_pid.values()) <= 7
    assert len(per_pid) >= 200 // 7
    assert sum(r.recycled for r in pipe.stats().rows) >= 200 // 7 - count


def test_recycled_single_worker_behind_racing_workers() -> None:
    got = (
        Pipeline(range(300))
        .task(lambda x: x, count=4)
        .task(with_pid, max_items_per_worker=10)
        .wait_for_result()
    )
    assert [x for x, _pid in got] == list(range(300))
    assert max(Counter(pid for _x, pid in got).values()) <= 10


def test_close_method_runs_in_each_retiring_worker(tmp_path: Path) -> None:
    pipe = Pipeline(range(100)).class_task(
        Tally, Tally.work, [str(tmp_path)], close_method=Tally.close, count=2, max_items_per_worker=10
    )
    assert pipe.wait_for_result() == list(range(1, 101))
    counts = [int(p.read_text()) for p in tmp_path.iterdir()]
    assert sum(counts) == 100  # every worker's close ran, each with what it did
    assert max(counts) <= 10
    assert len(counts) >= 10


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_items_per_worker": 0}, ValueError),
        ({"max_items_per_worker": -3}, ValueError),
        ({"max_items_per_worker": "5"}, TypeError),
        ({"max_items_per_worker": 2.5}, TypeError),
        ({"retries": -1}, ValueError),
        ({"retries": "2"}, TypeError),
    ],
)
def test_bad_values_raise_at_build_time(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Pipeline(range(3)).task(lambda x: x, **kwargs)
    with pytest.raises(error):
        Pipeline(range(3)).class_task(object, lambda o, x: x, **kwargs)


def recycled_and_crashing(x: int) -> int:
    if x == 55:
        CRASHES["segfault"]()
    return x


def test_recycling_and_crash_isolation_together() -> None:
    pipe = Pipeline(range(150)).task(
        recycled_and_crashing, count=2, max_items_per_worker=9, on_error=lambda x, e: -1
    )
    assert pipe.wait_for_result() == [-1 if x == 55 else x for x in range(150)]


def crash_on_zero(body: Any) -> int:
    if body == 0:
        CRASHES["segfault"]()
    return int(body) * 2


def test_server_answers_500_after_a_worker_crash_and_keeps_serving() -> None:
    src = Pipeline.server([("POST", "/f", lambda b: b["x"])], host="127.0.0.1", port=0, inactivity_timeout=1)
    pipe = src.task(crash_on_zero, count=2).task(lambda y: y + 1)

    def clients() -> list[tuple[int, Any]]:
        return [call(src.port, "/f", {"x": x}) for x in (3, 0, 4, 0, 5)]

    got = serve(pipe, clients)
    assert [status for status, _ in got] == [200, 500, 200, 500, 200]
    assert [body for _, body in got][::2] == [7, 9, 11]
    assert "WorkerDied" in str(got[1][1])
