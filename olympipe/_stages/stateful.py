"""Stateful operators: one worker, input read in order, output numbered by the stage."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from olympipe._stages.base import ItemFailed, Stage, StageSpec


@dataclass(frozen=True)
class OrderedSpec(StageSpec):
    """A spec whose stage reads its input in sequence order in a single worker."""

    ordered_input: ClassVar[bool] = True


class BatchStage(Stage):
    """``batch(size, keep_incomplete_batch)``: lists of ``size`` items."""

    def __init__(self, size: int, keep_incomplete: bool) -> None:
        self._size = size
        self._keep = keep_incomplete
        self._buf: list[Any] = []

    def process(self, items: list[Any]) -> list[Any]:
        buf = self._buf
        buf.extend(items)
        size = self._size
        if len(buf) < size:
            return []
        full = len(buf) - len(buf) % size
        out = [buf[i : i + size] for i in range(0, full, size)]
        self._buf = buf[full:]
        return out

    def finish(self) -> list[Any]:
        if self._buf and self._keep:
            return [self._buf]
        return []

    def held(self) -> int:
        return len(self._buf)


class TimedBatchStage(BatchStage):
    """``batch(size, max_wait=seconds)``: a batch also leaves when its oldest item has
    waited ``max_wait`` (from that item's arrival; later items do not restart the clock),
    whichever comes first. A batch that leaves on time may be short, whatever
    ``keep_incomplete_batch`` says: that is what the wait bounds."""

    def __init__(self, size: int, keep_incomplete: bool, max_wait: float) -> None:
        super().__init__(size, keep_incomplete)
        self._max_wait = max_wait
        self._arrived: list[float] = []  # per buffered item, when it arrived

    def process(self, items: list[Any]) -> list[Any]:
        now = time.monotonic()
        out = self.tick(now)  # an overdue batch leaves before newer items join it
        self._arrived.extend([now] * len(items))
        out.extend(super().process(items))
        self._arrived = self._arrived[len(self._arrived) - len(self._buf) :]
        return out

    def deadline(self) -> float | None:
        return self._arrived[0] + self._max_wait if self._arrived else None

    def tick(self, now: float) -> list[Any]:
        if not self._arrived or now < self._arrived[0] + self._max_wait:
            return []
        out, self._buf, self._arrived = [self._buf], [], []
        return out


@dataclass(frozen=True)
class BatchSpec(OrderedSpec):
    """``batch(batch_size, keep_incomplete_batch, max_wait)``."""

    size: int = 2
    keep_incomplete: bool = True
    max_wait: float | None = None

    def make(self) -> Stage:
        if self.max_wait is not None:
            return TimedBatchStage(self.size, self.keep_incomplete, self.max_wait)
        return BatchStage(self.size, self.keep_incomplete)


_NOTHING = object()


class ReduceStage(Stage):
    """``reduce(accumulator, reducer)``: emits ``reducer(item, acc)`` folded over the stream."""

    def __init__(self, accumulator: Any, reducer: Callable[[Any, Any], Any]) -> None:
        self._acc = accumulator
        self._reducer = reducer

    def process(self, items: list[Any]) -> list[Any]:
        acc = self._acc
        reducer = self._reducer
        for x in items:
            try:
                acc = reducer(x, acc)
            except Exception as exc:
                raise ItemFailed(x) from exc
        self._acc = acc
        return []

    def finish(self) -> list[Any]:
        return [self._acc]

    def held(self) -> int:
        return sys.maxsize  # everything it was given, folded


@dataclass(frozen=True)
class ReduceSpec(OrderedSpec):
    """``reduce(accumulator, reducer)``."""

    accumulator: Any = None
    reducer: Callable[[Any, Any], Any] = field(default=lambda x, acc: acc)

    def make(self) -> Stage:
        return ReduceStage(self.accumulator, self.reducer)


class LimitStage(Stage):
    """``limit(n)``: the first ``n`` items, then the stage is exhausted."""

    def __init__(self, n: int) -> None:
        self._left = n
        self.exhausted = n == 0

    def process(self, items: list[Any]) -> list[Any]:
        if self._left <= 0:
            return []
        out = items[: self._left]
        self._left -= len(out)
        if self._left == 0:
            self.exhausted = True
        return out


@dataclass(frozen=True)
class LimitSpec(OrderedSpec):
    """``limit(packet_limit)``."""

    n: int = 0

    def make(self) -> Stage:
        return LimitStage(self.n)


class TimeoutStage(Stage):
    """``timeout(seconds)``: the stream ends when no item arrives for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._deadline = 0.0

    def open(self) -> None:
        self._deadline = time.monotonic() + self._seconds

    def process(self, items: list[Any]) -> list[Any]:
        if items:
            self._deadline = time.monotonic() + self._seconds
        return items

    def deadline(self) -> float | None:
        return None if self.exhausted else self._deadline

    def tick(self, now: float) -> list[Any]:
        if now >= self._deadline:
            self.exhausted = True
        return []


@dataclass(frozen=True)
class TimeoutSpec(OrderedSpec):
    """``timeout(timeout)``."""

    seconds: float = 0.0

    @property
    def idle_timeout(self) -> float | None:
        return self.seconds

    def make(self) -> Stage:
        return TimeoutStage(self.seconds)


class TemporalBatchStage(Stage):
    """``temporal_batch(seconds)``: the items that arrived within each window, no empty lists.

    A window opens with the first item that arrives after the previous one closed.
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._buf: list[Any] = []
        self._closes_at: float | None = None

    def process(self, items: list[Any]) -> list[Any]:
        if not items:
            return []
        out = []
        now = time.monotonic()
        if self._closes_at is not None and now >= self._closes_at:
            out = self.tick(now)
        if self._closes_at is None:
            self._closes_at = now + self._seconds
        self._buf.extend(items)
        return out

    def deadline(self) -> float | None:
        return self._closes_at

    def tick(self, now: float) -> list[Any]:
        self._closes_at = None
        if not self._buf:
            return []
        out, self._buf = [self._buf], []
        return out

    def finish(self) -> list[Any]:
        return [self._buf] if self._buf else []

    def held(self) -> int:
        return len(self._buf)


@dataclass(frozen=True)
class TemporalBatchSpec(OrderedSpec):
    """``temporal_batch(time_interval)``."""

    seconds: float = 1.0

    def make(self) -> Stage:
        return TemporalBatchStage(self.seconds)


class GatherStage(Stage):
    """``gather(*others)``: the merge itself is the worker's in-order read of every input."""

    def process(self, items: list[Any]) -> list[Any]:
        return items


@dataclass(frozen=True)
class GatherSpec(OrderedSpec):
    """``gather(*others)``."""

    def make(self) -> Stage:
        return GatherStage()
