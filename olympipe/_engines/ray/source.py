"""The Ray engine's source: pulled by a thread of the caller into a bounded queue (under a
drop policy, a :class:`~olympipe._core.flow.DropQueue` of one chunk that never blocks it)."""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from olympipe._core.chunking import RAY
from olympipe._core.flow import BLOCK, DropQueue
from olympipe._engines.inline import error_from
from olympipe._graph import Node, SourceSpec

END = object()


class SourceError:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Puller:
    """Pulls one source in a thread of the caller into a bounded queue: each item as
    ``(time.monotonic() when read, item)``, then :data:`END` or a :class:`SourceError`."""

    def __init__(
        self, node: Node, iterable: Iterable[Any], size: int, chunk: Callable[[], int] = lambda: 1
    ) -> None:
        assert isinstance(node.spec, SourceSpec)
        self.node = node
        self.dropping = node.spec.on_full != BLOCK
        self.queue: Any = DropQueue(node.spec.on_full, chunk) if self.dropping else queue.Queue(size)
        self.cut = False  # end_source(): the stream ends after what was already read
        self._stop = threading.Event()
        self._iterable = iterable
        self._thread = threading.Thread(target=self._pull, name="olympipe-source", daemon=True)

    def chunk_from(self, first: Any, most: int) -> tuple[list[Any], bool, float]:
        """A chunk that starts with ``first`` (taken from :attr:`queue`): up to ``most``
        items, or :data:`RAY.max_bytes <olympipe._core.chunking.RAY>` of them, or what came
        within its hold time; whether the source ended, and when the chunk's first item was
        read."""
        items: list[Any] = []
        born = 0.0
        hold_until = time.monotonic() + RAY.hold_seconds
        value = first
        while True:
            if value is END:
                return items, True, born
            if isinstance(value, SourceError):
                raise error_from("source", value.exc)
            read_at, item = value
            born = born or read_at
            items.append(item)
            if len(items) >= most or _nbytes(item) * len(items) >= RAY.max_bytes:
                return items, False, born
            try:
                left = hold_until - time.monotonic()
                value = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                return items, False, born

    def start(self) -> None:
        self._thread.start()

    def _pull(self) -> None:
        iterator: Any = None
        try:
            iterator = iter(self._iterable)
            for item in iterator:
                if not self._put((time.monotonic(), item)):  # when it was read: for latency
                    if self.cut:  # the driver drains the queue: this put completes
                        self._put_final(END)
                    return
            if not self._stop.is_set():
                self._put_final(END)
        except BaseException as exc:
            if not self._stop.is_set():
                self._put_final(SourceError(exc))
        finally:
            if inspect.isgenerator(iterator):
                iterator.close()

    def _put(self, value: Any) -> bool:
        # stop() drains the queue after setting the flag, so a put blocked on a full
        # queue always gets room and this thread then sees the flag.
        if self._stop.is_set():
            return False
        self.queue.put(value)
        return True

    def _put_final(self, value: Any) -> None:
        if self.dropping:
            self.queue.put_final(value)
        else:
            self.queue.put(value)

    @property
    def dropped(self) -> int:
        """Items the flow policy dropped."""
        return self.queue.dropped if self.dropping else 0

    def end_source(self) -> None:
        """End the stream after the items already queued (called from another thread)."""
        self.cut = True
        self._stop.set()
        try:
            if self.dropping:
                self.queue.put_final(END)  # wakes a driver waiting for the next item
            else:
                self.queue.put_nowait(END)
        except queue.Full:
            pass  # the driver is not waiting: it sees ``cut`` once the queue is empty

    def stop(self) -> None:
        """Stop pulling: wake a blocked ``put`` by draining the queue."""
        self._stop.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _nbytes(value: Any) -> int:
    """A cheap size estimate of an item, for chunks of large arrays and buffers."""
    size = getattr(value, "nbytes", None)
    if isinstance(size, int):
        return size
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    return 64
