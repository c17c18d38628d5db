"""Flow policies: what happens when items find the place they wait in full (``on_full=``).

* ``"block"``: the producer waits (backpressure; the default).
* ``"drop_oldest"``: the oldest waiting item is dropped so the newest gets in: a camera
  pipeline always works on the latest frame (GStreamer's ``queue leaky=downstream``).
* ``"drop_newest"``: the arriving item is dropped (``leaky=upstream``).

Under a drop policy the producer never waits, so a source is read at its own pace. The rule
is one function, :func:`admit`, used by every engine's source reader: the local feeder's
buffer, and the :class:`DropQueue` of the Ray engine's source thread and of the inline
engine's :class:`DroppingReader`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, Protocol

BLOCK: Final = "block"
DROP_OLDEST: Final = "drop_oldest"
DROP_NEWEST: Final = "drop_newest"
POLICIES: Final = (BLOCK, DROP_OLDEST, DROP_NEWEST)
OnFull = Literal["block", "drop_oldest", "drop_newest"]  # the type of ``on_full=``


def check_on_full(value: object, what: str = "on_full") -> None:
    """``value`` must be one of :data:`POLICIES`."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be one of {', '.join(map(repr, POLICIES))}, got {type(value).__name__}")
    if value not in POLICIES:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, POLICIES))}, got {value!r}")


class _Buffer(Protocol):
    def __len__(self) -> int: ...
    def append(self, item: Any, /) -> None: ...
    def __delitem__(self, index: int, /) -> None: ...


def admit(buffer: _Buffer, item: Any, capacity: int, policy: str) -> int:
    """Put ``item`` into ``buffer`` (of at most ``capacity`` items) under a drop
    ``policy``; the number of items dropped (0 or 1)."""
    if len(buffer) < capacity:
        buffer.append(item)
        return 0
    if policy == DROP_NEWEST:
        return 1
    del buffer[0]
    buffer.append(item)
    return 1


class DropQueue:
    """A queue whose ``put`` never waits: past ``capacity()`` items it drops by ``policy``.

    What :meth:`put_final` puts (the end of a stream, a source's error) is never dropped.
    The Ray engine's source thread and the inline engine's source reader use it."""

    def __init__(self, policy: str, capacity: Callable[[], int]) -> None:
        self._policy = policy
        self._capacity = capacity
        self._items: deque[Any] = deque()
        self._final: list[Any] = []
        self._cond = threading.Condition(threading.Lock())
        self.dropped = 0

    def put(self, item: Any) -> None:
        """Admit ``item`` under the policy."""
        with self._cond:
            self.dropped += admit(self._items, item, max(1, self._capacity()), self._policy)
            self._cond.notify()

    def put_nowait(self, item: Any) -> None:
        """As :meth:`put` (it never waits)."""
        self.put(item)

    def put_final(self, value: Any) -> None:
        """``value`` comes after every item already admitted, and is never dropped."""
        with self._cond:
            self._final.append(value)
            self._cond.notify()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The oldest item (then the final values); ``queue.Empty`` after ``timeout``."""
        with self._cond:
            if block and not self._wait(timeout):
                raise queue.Empty
            if self._items:
                return self._items.popleft()
            if self._final:
                return self._final.pop(0)
            raise queue.Empty

    def get_nowait(self) -> Any:
        """The oldest item, or ``queue.Empty``."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Items and final values waiting."""
        return len(self._items) + len(self._final)

    def _wait(self, timeout: float | None) -> bool:
        return self._cond.wait_for(lambda: bool(self._items or self._final), timeout)


class DroppingReader:
    """An iterator over ``iterable`` read by a thread of its own at the source's pace, with
    a :class:`DropQueue` of one item between (the inline engine, under a drop policy)."""

    def __init__(self, iterable: Iterable[Any], policy: str) -> None:
        self.queue = DropQueue(policy, lambda: 1)
        self._iterable = iterable
        self._stop = threading.Event()
        self.read_at = 0.0  # when the item last returned was read (time.monotonic())
        self._thread = threading.Thread(target=self._read, name="olympipe-source", daemon=True)
        self._thread.start()

    def __iter__(self) -> DroppingReader:
        return self

    def __next__(self) -> Any:
        value = self.queue.get()
        if value is _END:
            raise StopIteration
        if isinstance(value, _Raised):
            raise value.exc
        self.read_at, item = value
        return item

    def close(self) -> None:
        """Stop reading: the thread closes a generator source after its current ``next()``."""
        self._stop.set()

    def _read(self) -> None:
        waiting = self.queue  # not `queue`: that is the module
        _read_all(
            self._iterable, lambda item: waiting.put((time.monotonic(), item)), waiting.put_final, self._stop
        )


_END = object()


def _read_all(
    iterable: Iterable[Any],
    put: Callable[[Any], None],
    put_final: Callable[[Any], None],
    stop: threading.Event,
) -> None:
    """The body of a source's reader thread: each item to ``put`` until ``stop`` is set,
    then the end (or the source's exception) to ``put_final``; a generator is closed here,
    in the thread that ran it."""
    iterator: Any = None
    try:
        iterator = iter(iterable)
        for item in iterator:
            put(item)
            if stop.is_set():
                return
        put_final(_END)
    except Exception as exc:
        put_final(_Raised(exc))
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()


class _Raised:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class Prefetch:
    """olympipe 2.x's early start: a started source with no consumer yet is read ahead by
    a thread into a queue of ``size`` items (the thread waits while it is full); the first
    run that iterates it takes the stream over, what was read ahead first."""

    def __init__(self, iterable: Iterable[Any], size: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(size)
        self._iterable = iterable
        self._stop = threading.Event()
        self._taken = False  # a run has started reading it
        self._thread = threading.Thread(target=self._read, name="olympipe-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Any:
        self._taken = True
        value = self._queue.get()
        if value is _END:
            self._queue.put(_END)  # a later next() ends too
            raise StopIteration
        if isinstance(value, _Raised):
            raise value.exc
        return value

    def stop(self) -> None:
        """Stop reading ahead, unless a run has taken the stream over (the started pipeline
        was dropped, or cleaned up, without a consumer)."""
        if self._taken:
            return
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()  # a put waiting for room gets it, then sees the flag
        except queue.Empty:
            pass

    def _read(self) -> None:
        _read_all(self._iterable, self._queue.put, self._queue.put, self._stop)
