"""``metrics_port=``: a run's figures as Prometheus metrics, served while the run lasts.

The metrics are read from ``stats()`` at each scrape, so they cost nothing between
scrapes; they need the ``prometheus_client`` package (``pip install "olympipe[metrics]"``),
imported only when a port is asked for. The server binds every interface of the machine,
as ``prometheus_client`` does, before the run starts (a port in use fails at once), and is
shut down when the run closes, on every exit path.

The server is ``prometheus_client``'s WSGI app in a threading ``wsgiref`` server, served by
a thread of ours rather than by ``start_http_server``: that one's ``serve_forever`` looks
for a shutdown every half second, so every run with a port would end up to 0.5 s late. Ours
waits on the listening socket and on a pipe that :meth:`Observed.close` writes to.
"""

from __future__ import annotations

import importlib
import os
import selectors
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from olympipe._engines.base import Around, Execution
from olympipe.stats import RunStats, StageStats

INSTALL_HINT = 'metrics_port= needs the prometheus_client package: pip install "olympipe[metrics]"'


def check_metrics_port(port: object) -> None:
    """``port`` must be an int from 1 to 65535 (or ``None``)."""
    if port is None:
        return
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"metrics_port must be an int, got {type(port).__name__}")
    if not 0 < port < 65536:
        raise ValueError(f"metrics_port must be from 1 to 65535, got {port}")


def _client() -> Any:
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def families(stats: RunStats) -> Iterator[Any]:
    """The metric families of one reading of ``stats()``, labelled by stage."""
    core = importlib.import_module("prometheus_client.core")
    counters: dict[str, tuple[str, Callable[[StageStats], float]]] = {
        "olympipe_items_in": ("items that entered the stage", lambda r: r.items_in),
        "olympipe_items_out": ("items the stage sent on", lambda r: r.items_out),
        "olympipe_errors": ("items that failed in the stage", lambda r: r.errors),
        "olympipe_dropped": ("items dropped at the stage's input (on_full=)", lambda r: r.dropped),
        "olympipe_busy_seconds": (
            "seconds the stage's workers spent in its code",
            lambda r: r.busy_pct / 100 * stats.wall_seconds * max(1, r.workers),
        ),
    }
    for name, (doc, value) in counters.items():
        family: Any = core.CounterMetricFamily(name, doc, labels=["stage"])
        for row in stats.rows:
            family.add_metric([row.name], float(value(row)))
        yield family
    workers: Any = core.GaugeMetricFamily("olympipe_workers", "the stage's workers now", labels=["stage"])
    for row in stats.rows:
        workers.add_metric([row.name], float(row.workers))
    yield workers


def exposition(stats: RunStats) -> bytes:
    """The Prometheus text format of one reading of ``stats()`` (a server's ``/metrics``)."""
    client = _client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(lambda: stats))
    data: bytes = client.generate_latest(registry)
    return data


class _Collector:
    def __init__(self, read: Callable[[], RunStats]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        yield from families(self._read())


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the caller's exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Nothing on stderr per scrape."""


class Observed(Around):
    """A run whose figures are served at ``http://localhost:PORT/metrics``."""

    def __init__(self, run: Execution, port: int) -> None:
        super().__init__(run)
        client = _client()
        registry = client.CollectorRegistry(auto_describe=False)
        registry.register(_Collector(run.stats))
        app = client.make_wsgi_app(registry)
        self._server: _Server | None = make_server("", port, app, _Server, _Quiet)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="olympipe-metrics", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                server.handle_request()  # the socket is readable: it does not block

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._server is not None:
                server, self._server = self._server, None
                os.write(self._wake_w, b"x")
                self._thread.join()
                server.server_close()
                os.close(self._wake_r)
                os.close(self._wake_w)
