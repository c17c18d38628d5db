"""metrics_port=: a run's figures as Prometheus metrics while it lasts."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from olympipe import Pipeline

pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text: str = r.read().decode()
        return text


def test_metrics_are_served_while_the_run_lasts_and_not_after() -> None:
    port = free_port()
    scraped: list[str] = []
    go_on = threading.Event()

    def source() -> Iterator[int]:
        yield from range(20)
        scraped.append(scrape(port))  # during the run: 20 items read
        go_on.set()
        yield from range(20, 30)

    p = Pipeline(source(), metrics_port=port).task(abs, name="absolute")
    assert p.wait_for_result() == list(range(30))
    assert go_on.is_set()
    text = scraped[0]
    for name in (
        "olympipe_items_in_total",
        "olympipe_items_out_total",
        "olympipe_errors_total",
        "olympipe_dropped_total",
        "olympipe_busy_seconds_total",
        "olympipe_workers",
    ):
        assert name in text, text
    assert 'stage="absolute"' in text
    with pytest.raises(OSError):
        scrape(port)  # the server is gone with the run


def test_the_metrics_server_ends_with_the_run_without_waiting_for_a_poll() -> None:
    """The server stops as soon as the run closes: 30 short runs take well under the 30
    polls of half a second (7.5 s on average) that ``serve_forever`` would wait for."""
    t0 = time.monotonic()
    for _ in range(30):
        assert Pipeline([1], start_method="fork").wait_for_result(engine="inline", metrics_port=free_port())
    assert time.monotonic() - t0 < 4.0


def test_a_port_in_use_is_an_error_before_the_source_is_read() -> None:
    read: list[int] = []

    def source() -> Iterator[int]:
        for i in range(5):
            read.append(i)
            yield i

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            Pipeline(source()).task(abs).wait_for_result(metrics_port=taken.getsockname()[1])
    assert read == []


def test_a_terminal_call_may_ask_for_its_own_port() -> None:
    port = free_port()
    assert Pipeline(range(5)).task(abs).wait_for_result(metrics_port=port) == list(range(5))


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (70000, ValueError), ("80", TypeError)])
def test_bad_ports(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="metrics_port"):
        Pipeline(range(3), metrics_port=bad)  # type: ignore[arg-type]


def test_a_server_pipeline_answers_get_metrics_on_its_own_port() -> None:
    from tests.server_helpers import call, serve

    src = Pipeline.server(
        [("POST", "/double", lambda b: b["x"])], host="127.0.0.1", port=0, inactivity_timeout=1
    )
    pipe = src.task(lambda x: x * 2, name="double")

    def clients() -> tuple[Any, str]:
        answer = call(src.port, "/double", {"x": 21})
        return answer, scrape(src.port)

    answer, text = serve(pipe, clients)
    assert answer == (200, 42)
    assert 'olympipe_items_out_total{stage="double"} 1.0' in text
