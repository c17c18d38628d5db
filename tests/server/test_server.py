"""Pipeline.server: real HTTP clients on loopback, each request answered by the pipeline."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from olympipe import Pipeline
from tests.server_helpers import call, serve


def model(x: int) -> int:
    if x == 13:
        raise ValueError("unlucky input")
    return x * 2


def test_answers_errors_and_keeps_serving() -> None:
    src = Pipeline.server(
        [("POST", "/predict", lambda b: b["x"])], host="127.0.0.1", port=0, inactivity_timeout=1
    )
    assert src.port > 0
    pipe = src.task(model, count=2).filter(lambda y: y != 8)

    def clients() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["ok"] = call(src.port, "/predict", {"x": 5})
        out["filtered"] = call(src.port, "/predict", {"x": 4})
        out["stage_error"] = call(src.port, "/predict", {"x": 13})
        out["after_error"] = call(src.port, "/predict", {"x": 6})
        out["not_found"] = call(src.port, "/nope", {"x": 1})
        out["wrong_method"] = call(src.port, "/predict", method="GET")
        out["malformed"] = call(src.port, "/predict", raw=b"{not json")
        out["bad_parse"] = call(src.port, "/predict", {"y": 1})
        out["still_ok"] = call(src.port, "/predict", {"x": 7})
        return out

    out = serve(pipe, clients)
    assert out["ok"] == (200, 10)
    assert out["filtered"] == (204, None)
    assert out["stage_error"][0] == 500
    assert "unlucky input" in out["stage_error"][1]["error"]
    assert out["after_error"] == (200, 12)
    assert out["not_found"][0] == 404
    assert out["wrong_method"][0] == 405
    assert out["malformed"][0] == 400
    assert out["bad_parse"][0] == 400
    assert "KeyError" in out["bad_parse"][1]["error"]
    assert out["still_ok"] == (200, 14)


def test_concurrent_clients_each_get_their_own_answer() -> None:
    src = Pipeline.server([("POST", "/sq", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=1)
    pipe = src.task(lambda x: x * x, count=2, concurrency=4)

    def clients() -> list[tuple[int, Any]]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda x: call(src.port, "/sq", x), range(100)))

    answers = serve(pipe, clients)
    assert answers == [(200, x * x) for x in range(100)]


def test_explode_answers_a_list_and_inactivity_ends_the_run() -> None:
    src = Pipeline.server(
        [("POST", "/split", lambda b: b["words"])], host="127.0.0.1", port=0, inactivity_timeout=0.5
    )
    pipe = src.explode().task(str.upper)
    t0 = time.monotonic()
    out = serve(pipe, lambda: call(src.port, "/split", {"words": ["a", "b"]}))
    assert out == (200, ["A", "B"])
    assert time.monotonic() - t0 < 5


def test_server_pipelines_refuse_stateful_stages() -> None:
    src = Pipeline.server([("POST", "/x", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=0.5)
    with pytest.raises(TypeError):
        src.batch(2).wait_for_result()
