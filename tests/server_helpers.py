"""Helpers of the server tests: an HTTP call, and a server run with its clients."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from olympipe import Pipeline


def call(
    port: int, path: str, body: Any = None, method: str = "POST", raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        text = err.read()
        return err.code, json.loads(text) if text else None


def serve(pipe: Pipeline[Any], clients: Any) -> Any:
    """Start the pipeline, run ``clients`` in a thread, wait for the run to end."""
    pipe.start()
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(clients()))
    t.start()
    pipe.wait_for_completion()
    t.join(timeout=10)
    return results[0]
