"""An HTTP server as a source: a model answers JSON requests, with or without batching.

    python examples/http_model.py                  # a load test: 32 clients, both ways
    python examples/http_model.py --serve 8000     # serve until 30 s without a request

then, from another shell:

    curl -s -X POST localhost:8000/predict -d '{"features": [1, 2, 3]}'

Each request becomes an item; the pipeline checks and normalises the features, then runs
the "model". The model stands for one on a GPU: a call costs 20 ms plus 1 ms per input,
so answering requests one by one wastes most of it. With ``.batch(32, max_wait=0.005)``
the requests that arrive together (up to 32, or whatever came within 5 ms of the first)
go through the model as one list, and each request gets its own element of the result.
A request whose features are invalid gets a 500 with the error; the server keeps serving.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from olympipe import Pipeline


def parse(body: Any) -> list[float]:
    return [float(v) for v in body["features"]]


def normalise(features: list[float]) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.shape != (3,):
        raise ValueError(f"expected 3 features, got {x.shape[0]}")
    return (x - x.mean()) / (x.std() or 1.0)


class LinearModel:
    """Stands for a model loaded once per worker: a call on ``n`` inputs costs 20 ms + n ms."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(3, 2))

    def predict_batch(self, xs: list[np.ndarray]) -> list[dict[str, Any]]:
        time.sleep(0.020 + 0.001 * len(xs))  # the accelerator's fixed cost, then per input
        logits = np.stack(xs) @ self.w
        return [{"label": int(np.argmax(row)), "logits": [round(float(v), 4) for v in row]} for row in logits]

    def predict(self, x: np.ndarray) -> dict[str, Any]:
        return self.predict_batch([x])[0]


def build(port: int, idle: float | None, batch: bool = True) -> Pipeline[Any]:
    """The server pipeline; ``batch``: requests share calls of the model."""
    src = Pipeline.server([("POST", "/predict", parse)], host="127.0.0.1", port=port, inactivity_timeout=idle)
    checked = src.task(normalise)
    if batch:
        return checked.batch(32, max_wait=0.005).class_task(LinearModel, LinearModel.predict_batch, [0])
    return checked.class_task(LinearModel, LinearModel.predict, [0])


def post(port: int, body: Any) -> tuple[int, Any]:
    """One request: its status and JSON answer."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def load(port: int, clients: int, requests: int) -> dict[str, float]:
    """``clients`` clients sending ``requests`` requests each, one after the other (after
    one request each that is not counted)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        post(port, {"features": [k, -1, 1]})  # not counted: the workers may still be starting
        for i in range(requests):
            t0 = time.perf_counter()
            status, _ = post(port, {"features": [k, i, 1]})
            assert status == 200
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
    }


def ready() -> bool:
    """Called in the clients' process once it has imported this module."""
    return True


def measure(batch: bool, clients: int = 32, requests: int = 10) -> dict[str, float]:
    """Serve, load with ``clients`` clients, stop: the figures. The caller's thread runs
    the pipeline (it collects the answers); the clients run in a process of their own, as
    they would on other machines (threads here would take the caller's interpreter lock)."""
    with multiprocessing.get_context("spawn").Pool(1) as clients_process:
        clients_process.apply(ready)  # its interpreter is up: the server's idle clock may start
        p = build(0, 0.5, batch)
        figures = clients_process.apply_async(load, (p.port, clients, requests))
        p.wait_for_completion()  # ends 0.5 s after the last request
        return figures.get()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", type=int, default=None, metavar="PORT", help="serve on PORT instead")
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    args = parser.parse_args(argv)
    if args.serve is not None:
        p = build(args.serve, args.idle)
        print(f"serving on http://127.0.0.1:{p.port}/predict (ends after {args.idle:g} s idle)")
        p.wait_for_completion()
        return {}
    out = {}
    for batch in (False, True):
        figures = measure(batch, args.clients, args.requests)
        out["batched" if batch else "one by one"] = figures
        print(
            f"{'batch(32, max_wait=0.005)' if batch else 'one request at a time':26}"
            f" {figures['requests_per_s']:7.0f} requests/s, p95 {figures['p95_ms']:6.1f} ms"
        )
    return out


if __name__ == "__main__":
    main()
