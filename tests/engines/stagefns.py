"""Stage functions for the engine tests, importable by name in Ray's workers."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any


def double(x: int) -> int:
    return 2 * x


def is_odd(x: int) -> bool:
    return x % 2 == 1


def fail_on_5(x: int) -> int:
    if x == 5:
        raise KeyError(f"no {x}")
    return x


def exit_on_5(x: int) -> int:
    if x == 5:
        os._exit(7)
    return x


async def async_double(x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


def sleepy(x: int) -> int:
    time.sleep(0.002 * (x % 3))
    return x


def halves(x: int) -> tuple[int | None, int | None]:
    return (x, None) if x % 2 == 0 else (None, x)


def add(x: int, acc: int) -> int:
    return acc + x


class Scaler:
    """A class_task worker with state and a close method."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.seen = 0

    def scale(self, x: int) -> int:
        self.seen += 1
        return x * self.factor

    def close(self) -> None:
        self.seen = -1


class NeedsTwo(Exception):
    """An exception whose __init__ cannot be replayed by unpickling."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


def raise_needs_two(x: int) -> int:
    if x == 3:
        raise NeedsTwo(42, "three")
    return x


def source_fails() -> Any:
    yield 1
    yield 2
    raise OSError("camera unplugged")


def naturals() -> Any:
    i = 0
    while True:
        yield i
        i += 1


#: Set by a test once its run is over, so that a stalled source's thread ends.
release_stalled = threading.Event()


def stalls_after_3() -> Any:
    yield 1
    yield 2
    yield 3
    release_stalled.wait(30)
    yield 4


_attempts: dict[str, int] = {}


def flaky_twice(key: str) -> str:
    """Fails the first two attempts at each key (in this process), then succeeds."""
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] <= 2:
        raise ConnectionError(f"attempt {_attempts[key]} at {key}")
    return key.upper()


def always_fails(key: str) -> str:
    raise TimeoutError(f"never {key}")


class Retrier:
    """A class_task whose method is flaky."""

    def call(self, key: str) -> str:
        return flaky_twice(key)


def crash_at_7_and_30(x: int) -> int:
    """Kills its process on items 7 and 30."""
    if x in (7, 30):
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def minus_on_death(item: int, exc: Exception) -> int:
    from olympipe import WorkerDied

    return -item if isinstance(exc, WorkerDied) else 10**6


def with_pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


def plus_one(x: int) -> int:
    return x + 1


class Tally:
    """Counts its items, and writes the count into a file named by its pid when closed."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.items = 0

    def work(self, x: int) -> int:
        self.items += 1
        return x + 1

    def close(self) -> None:
        with open(os.path.join(self.folder, str(os.getpid())), "w") as out:
            out.write(str(self.items))


class CrashOnce:
    """Kills its process on item 7 the first time only (a marker file remembers)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, x: int) -> int:
        if x == 7 and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        return x


def plus_one_each(batch: list[int]) -> list[int]:
    return [x + 1 for x in batch]


def bump_array(a: Any) -> Any:
    a += 1  # in place, as image code does (img -= mean)
    return a


def bump_first_of_pair(pair: Any) -> Any:
    image, label = pair
    image += 1
    return image, label


def is_writable(a: Any) -> bool:
    return bool(a.flags.writeable)


def interrupt_on_5(x: int) -> int:
    if x == 5:
        raise KeyboardInterrupt
    return x


def exit_4_on_5(x: int) -> int:
    if x == 5:
        raise SystemExit(4)
    return x


def crash_every_7th(x: int) -> int:
    """Kills its process on every 7th item (6, 13, 20, ...)."""
    if x % 7 == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def minus_one_on_death(item: int, exc: Exception) -> int:
    return -1


class CountingNaturals:
    """``explode`` function: ``start, start + 1, ...`` for ever (or ``length`` of them),
    writing to ``path`` how many it has made every 1,000 elements, so that a test can see
    how far an engine read ahead."""

    def __init__(self, path: str, length: int | None = None) -> None:
        self.path = path
        self.length = length

    def __call__(self, start: int) -> Any:
        i = 0
        while self.length is None or i < self.length:
            if i % 1000 == 0:
                with open(self.path, "w") as out:
                    out.write(str(i))
            yield start + i
            i += 1


def made_so_far(path: str) -> int:
    """What a :class:`CountingNaturals` wrote last (0 before its first element)."""
    try:
        with open(path) as made:
            return int(made.read() or 0)
    except FileNotFoundError:
        return 0


def run_of(k: int) -> Any:
    """``explode`` function: 3,000 elements for ``k``, made one by one."""
    return (k * 10_000 + i for i in range(3000))


_active = [0, 0]  # items running now in this process, the most seen at once
_active_lock = threading.Lock()


def _enter() -> None:
    with _active_lock:
        _active[0] += 1
        _active[1] = max(_active[1], _active[0])


def _leave() -> int:
    with _active_lock:
        _active[0] -= 1
        return _active[1]


def peak_in_threads(x: int) -> int:
    """Works 50 ms; returns the most items this process has had running at once."""
    _enter()
    time.sleep(0.05)  # the work: a call that waits (I/O)
    return _leave()


async def peak_in_coroutines(x: int) -> int:
    """The same as a coroutine."""
    _enter()
    await asyncio.sleep(0.05)
    return _leave()


def paused_source() -> Any:
    """0, 1, 2, then a second of silence, then 3, 4, 5: time windows must part them."""
    yield from range(3)
    time.sleep(1.0)
    yield from range(3, 6)


def counting_double(path: str) -> Any:
    """``double`` that appends a line to ``path`` for each call it makes."""

    def double_counted(x: int) -> int:
        with open(path, "a") as f:
            f.write(f"{x}\n")
        return 2 * x

    return double_counted


class PeakModel:
    """A model whose calls wait 50 ms; ``predict`` returns the most calls seen at once."""

    def predict(self, x: int) -> int:
        return peak_in_threads(x)
