"""Pipeline.server under hostile clients: each defect found by probing, pinned."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any

import pytest

from olympipe import Pipeline
from tests.server_helpers import call, serve

pytestmark = pytest.mark.timeout(60)


def test_an_unpicklable_result_fails_its_request_only() -> None:
    src = Pipeline.server([("POST", "/r", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=1)
    pipe = src.task(lambda x: threading.Lock() if x == 1 else x)

    def clients() -> list[tuple[int, Any]]:
        return [call(src.port, "/r", 1), call(src.port, "/r", 2)]

    bad, good = serve(pipe, clients)
    assert bad[0] == 500
    assert "pickle" in bad[1]["error"]
    assert good == (200, 2)


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_a_bad_content_length_is_400(length: str) -> None:
    src = Pipeline.server([("POST", "/r", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=1)

    def clients() -> tuple[int, int]:
        conn = http.client.HTTPConnection("127.0.0.1", src.port, timeout=10)
        conn.putrequest("POST", "/r")
        conn.putheader("Content-Length", length)
        conn.endheaders()
        bad = conn.getresponse().status
        conn.close()
        return bad, call(src.port, "/r", 3)[0]

    assert serve(src.task(abs), clients) == (400, 200)


def test_a_keep_alive_connection_after_the_run_gets_503() -> None:
    src = Pipeline.server([("POST", "/r", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=0.5)
    pipe = src.task(abs)
    conn = http.client.HTTPConnection("127.0.0.1", src.port, timeout=10)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(pipe.wait_for_result()))
    t.start()
    conn.request("POST", "/r", body=b"-4", headers={"Content-Type": "application/json"})
    first = conn.getresponse()
    assert (first.status, first.read()) == (200, b"4")
    t.join(10)
    assert result == [[4]]
    try:  # the same connection, after the run: an answer or a closed connection, never a hang
        conn.request("POST", "/r", body=b"5")
        assert conn.getresponse().status == 503
    except (ConnectionError, http.client.RemoteDisconnected):
        pass
    conn.close()


def slow_double(x: int) -> int:
    time.sleep(2)
    return 2 * x


def briefly_slow(x: int) -> int:
    time.sleep(0.3)
    return x


def test_inactivity_means_no_request_in_flight() -> None:
    src = Pipeline.server([("POST", "/r", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=1)
    assert serve(src.task(slow_double), lambda: call(src.port, "/r", 21)) == (200, 42)


def test_a_client_that_leaves_early_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    src = Pipeline.server([("POST", "/r", lambda b: b)], host="127.0.0.1", port=0, inactivity_timeout=1)

    def clients() -> tuple[int, Any]:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", src.port)) as sock:
                sock.sendall(b"POST /r HTTP/1.1\r\nContent-Length: 1\r\n\r\n7")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return call(src.port, "/r", 8)

    assert serve(src.task(briefly_slow), clients) == (200, 8)
    assert "Traceback" not in capfd.readouterr().err
