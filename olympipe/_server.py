"""An HTTP/1.1 server as a pipeline source: each request is an item, its result the response.

The listening socket is bound when :func:`ServerSource` is built, so ``port=0`` gives a
free port that is known at once; requests wait until the pipeline runs. Serving starts in
the feeder's thread, after the workers are forked.

How a response finds its request: a server source sends every request as its own chunk, and
every stage allowed in a server pipeline maps chunk ``k`` to chunk ``k`` (an empty one when
the item was filtered out). So the ``k``-th chunk reaching the end of the pipeline is the
answer to the ``k``-th request: one value is sent as JSON, several (``explode``) as a JSON
list, none as 204. A stage that raises turns that request's chunk into a
:class:`RequestFailed` marker, passed along untouched, and its request gets a 500 with the
error's text; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from olympipe._stages.request import RequestBatch, RequestFailed, RequestNone, is_markers

log = logging.getLogger("olympipe.server")

Route = tuple[str, str, Callable[[Any], Any]]


@dataclass
class _Request:
    item: Any
    answer: Future[list[Any]]


_STOP = object()


class ServerSource:
    """The iterable behind ``Pipeline.server(...)``."""

    def __init__(
        self,
        routes: Sequence[Route],
        host: str,
        port: int,
        inactivity_timeout: float | None,
        *,
        debug: bool = False,
    ) -> None:
        self._routes: dict[str, dict[str, Callable[[Any], Any]]] = {}
        for route in routes:
            if not (isinstance(route, tuple) and len(route) == 3 and callable(route[2])):
                raise TypeError("each route must be a (method, path, parse) tuple with a callable parse")
            method, path, parse = route
            self._routes.setdefault(path, {})[method.upper()] = parse
        if inactivity_timeout is not None and inactivity_timeout <= 0:
            raise ValueError(f"inactivity_timeout must be > 0, got {inactivity_timeout}")
        self._timeout = inactivity_timeout
        self.debug = debug
        self.read_stats: Callable[[], Any] | None = None  # the run's stats(), while it runs
        self._requests: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._stopped = False  # no request is taken any more: new ones get 503 at once
        self._connections: set[socket.socket] = set()  # open client connections
        self._order: deque[_Request] = deque()  # requests sent down the pipeline, in order
        self._httpd = _Server((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        # A server pipeline that is never run still releases its port when collected.
        self._finalizer = weakref.finalize(self, self._httpd.server_close)
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._serving: threading.Thread | None = None

    def __iter__(self) -> Iterator[Any]:
        self._serving = threading.Thread(target=self._httpd.serve_forever, name="olympipe-http", daemon=True)
        self._serving.start()
        try:
            while True:
                try:
                    request = self._requests.get(timeout=self._timeout)
                except queue.Empty:
                    if self._order:
                        continue  # a request still in the pipeline: not idle
                    return  # inactivity_timeout: the run ends cleanly
                if request is _STOP:
                    return
                self._order.append(request)
                yield request.item
        finally:
            self._shut_down()

    def close(self) -> None:
        """Release the listening socket of a server that will not run."""
        self._finalizer()

    def stop(self) -> None:
        """End the source (teardown): wake the iterator if it waits for a request."""
        self._requests.put(_STOP)

    def respond(self, chunk: list[Any]) -> None:
        """The pipeline's answer to the oldest request still waiting for one; after a
        batch, the answers of the requests each marker of the chunk stands for."""
        if is_markers(chunk):
            for marker in chunk:
                for answer in _answers(marker):
                    self._answer(answer)
            return
        self._answer(chunk)

    def _answer(self, values: list[Any]) -> None:
        try:
            request = self._order.popleft()
        except IndexError:  # pragma: no cover - more answers than requests: a bug
            log.error("a server pipeline produced an answer for no request")
            return
        request.answer.set_result(values)

    def _shut_down(self) -> None:
        with self._lock:
            self._stopped = True
        self._httpd.shutdown()
        self._finalizer()
        while self._order:
            self._fail_waiting(self._order.popleft())
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if request is not _STOP:
                self._fail_waiting(request)
        # Idle keep-alive connections would hold their handler threads past the run: end
        # their reading side, so each handler answers what it has and leaves.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    @staticmethod
    def _fail_waiting(request: _Request) -> None:
        if not request.answer.done():
            request.answer.set_exception(ConnectionAbortedError("the pipeline stopped"))

    def submit(self, item: Any) -> Future[list[Any]]:
        """Queue one request's item (from a handler thread); after the run, fail it at once."""
        answer: Future[list[Any]] = Future()
        with self._lock:
            if self._stopped:
                answer.set_exception(ConnectionAbortedError("the pipeline stopped"))
            else:
                self._requests.put(_Request(item, answer))
        return answer

    def track(self, connection: socket.socket, open_: bool) -> None:
        """A client connection opened or closed (from its handler thread)."""
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def route(self, path: str, method: str) -> tuple[int, Callable[[Any], Any] | None]:
        """``(status, parse)`` for a request: 404 or 405 when it has no route."""
        methods = self._routes.get(path)
        if methods is None:
            return 404, None
        parse = methods.get(method)
        return (200, parse) if parse is not None else (405, None)


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of concurrent clients would see
    # connections reset before a thread accepts them.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is its own business: no traceback on stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.exception("error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """One client connection: each request becomes an item, its result the response."""

    source: ServerSource  # set by _handler_for
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def setup(self) -> None:
        super().setup()
        self.source.track(self.connection, True)

    def finish(self) -> None:
        self.source.track(self.connection, False)
        try:
            super().finish()
        except OSError:  # the client went away
            pass

    def _handle(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True  # the body's end is unknown
            self._reply(400, {"error": "Content-Length must be a non-negative integer"})
            return
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        status, parse = self.source.route(path, method)
        if parse is None and path == "/metrics" and method == "GET":
            self._metrics()
            return
        if parse is None:
            self._reply(status, {"error": "no such route" if status == 404 else "method not allowed"})
            return
        try:
            payload = json.loads(body) if body else None
        except ValueError as exc:
            self._reply(400, {"error": f"malformed JSON: {exc}"})
            return
        try:
            item = parse(payload)
        except Exception as exc:
            self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})
            return
        try:
            values = self.source.submit(item).result()
        except ConnectionAbortedError:
            self._reply(503, {"error": "the pipeline stopped"})
            return
        if values and isinstance(values[0], RequestFailed):
            self._reply(500, {"error": values[0].message})
        elif not values:
            self._reply(204, None)
        else:
            self._reply(200, values[0] if len(values) == 1 else values)

    def _metrics(self) -> None:
        """``GET /metrics`` (no route of the user's there): the run's Prometheus metrics."""
        from olympipe._metrics import exposition

        read = self.source.read_stats
        try:
            data = exposition(read()) if read is not None else b""
        except ImportError as exc:
            self._reply(501, {"error": str(exc)})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, status: int, value: Any) -> None:
        try:
            data = b"" if status == 204 else json.dumps(value).encode()
        except (TypeError, ValueError) as exc:
            status, data = 500, json.dumps({"error": f"result is not JSON: {exc}"}).encode()
        try:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except ConnectionError as exc:  # the client left before its answer
            self.close_connection = True
            log.debug("client %s went away: %s", self.address_string(), exc)

    def log_message(self, format: str, *args: Any) -> None:
        log.log(
            logging.INFO if self.source.debug else logging.DEBUG,
            "%s %s",
            self.address_string(),
            format % args,
        )


def _answers(marker: Any) -> list[list[Any]]:
    """The answers of the requests one marker after a batch stands for."""
    if isinstance(marker, RequestBatch):
        return marker.answers()
    if isinstance(marker, RequestNone):
        return [[] for _ in range(marker.requests)]
    return [[RequestFailed(marker.message)] for _ in range(marker.requests)]


def _handler_for(source: ServerSource) -> type[BaseHTTPRequestHandler]:
    """The handler class of one server, bound to its source."""
    return type("Handler", (_Handler,), {"source": source})
