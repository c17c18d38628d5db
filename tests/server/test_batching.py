"""batch(n, max_wait=) in a server pipeline: concurrent requests share one call of the
model, and each request gets its own element of the result."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from olympipe import Pipeline
from tests.server_helpers import call, serve

pytestmark = pytest.mark.timeout(60)


def model(batch: list[int]) -> list[tuple[int, int]]:
    """Each value doubled, with the size of the batch it came in."""
    if 13 in batch:
        raise ValueError("unlucky batch")
    return [(x * 2, len(batch)) for x in batch]


def dies_on_99(batch: list[int]) -> list[int]:
    if 99 in batch:
        os._exit(3)
    return batch


def wrong_length(batch: list[int]) -> list[int]:
    return batch[:-1]


def build(
    stage: Callable[[list[int]], Any], size: int = 8, max_wait: float = 0.05
) -> tuple[Pipeline[Any], int]:
    src = Pipeline.server([("POST", "/m", lambda b: b["x"])], host="127.0.0.1", port=0, inactivity_timeout=1)
    return src.filter(lambda x: x != 4).batch(size, max_wait=max_wait).task(stage), src.port


def test_concurrent_requests_share_a_batch_and_each_gets_its_element() -> None:
    pipe, port = build(model)
    gate = threading.Barrier(8)

    def one(x: int) -> tuple[int, Any]:
        gate.wait()  # all eight in flight together
        return call(port, "/m", {"x": x})

    def clients() -> list[tuple[int, Any]]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, [10, 11, 12, 14, 15, 16, 17, 18]))

    answers = serve(pipe, clients)
    assert [status for status, _ in answers] == [200] * 8
    assert [value[0] for _, value in answers] == [20, 22, 24, 28, 30, 32, 34, 36]
    assert max(value[1] for _, value in answers) > 1  # some shared a call of the model


def test_a_lone_request_leaves_after_max_wait() -> None:
    pipe, port = build(model, size=32, max_wait=0.01)
    assert serve(pipe, lambda: call(port, "/m", {"x": 3})) == (200, [6, 1])


def test_a_failing_batch_fails_its_requests_and_the_server_goes_on() -> None:
    pipe, port = build(model, size=2, max_wait=1)

    def clients() -> list[tuple[int, Any]]:
        with ThreadPoolExecutor(2) as pool:
            first = list(pool.map(lambda x: call(port, "/m", {"x": x}), [13, 1]))  # one batch
        return [*first, call(port, "/m", {"x": 4}), *(call(port, "/m", {"x": x}) for x in (5,))]

    got = serve(pipe, clients)
    assert [status for status, _ in got[:2]] == [500, 500]
    assert "unlucky batch" in got[0][1]["error"]
    assert got[2] == (204, None)  # filtered out before the batch
    assert got[3][0] == 200


def test_a_result_of_the_wrong_length_answers_500_naming_the_stage() -> None:
    pipe, port = build(wrong_length, size=2, max_wait=0.01)
    status, body = serve(pipe, lambda: call(port, "/m", {"x": 1}))
    assert status == 500
    assert "wrong_length" in body["error"]
    assert "one element per request" in body["error"]


def test_a_batch_without_max_wait_is_refused_in_a_server() -> None:
    src = Pipeline.server([("POST", "/m", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=1)
    with pytest.raises(TypeError, match="max_wait"):
        src.batch(4)


def test_a_worker_dying_on_a_batch_fails_its_requests_and_is_replaced() -> None:
    pipe, port = build(dies_on_99, size=2, max_wait=1)

    def clients() -> list[tuple[int, Any]]:
        with ThreadPoolExecutor(2) as pool:
            first = list(pool.map(lambda x: call(port, "/m", {"x": x}), [99, 1]))
        return [*first, call(port, "/m", {"x": 7})]

    got = serve(pipe, clients)
    assert [status for status, _ in got] == [500, 500, 200]
    assert got[2][1] == 7
