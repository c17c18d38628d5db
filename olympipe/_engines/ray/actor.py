"""The body of a Ray actor that runs one stage worker (or several fused per-item stages).

Plain Python, no Ray import: the driver turns :class:`StageActor` into an actor class with
``ray.remote`` at run time, so ``import olympipe`` never needs Ray.

Every call returns the output chunks (one per output slot) followed by a *meta* tuple
``(exhausted, rows, more, held)``: whether the stage has nothing more to say (``limit``
reached), what the counters of each of its stages gained, the key of the rest of the chunk's
outputs when a stage that streams (``explode``) has more to give (else ``None``), and how
many items its last stage holds (a ``batch`` filling up; ``resume=`` needs it). Small
return values come back to the driver that owns them, so stats and progress need no call of
their own.

A chunk through a stage that streams returns one part per call: the actor keeps the rest
of the iteration, one part made ahead (so that the call knows whether more will come), and
gives the next part to :meth:`StageActor.more`. An endless ``explode`` so runs in bounded
memory, and the driver stops asking once nothing downstream wants more.
"""

from __future__ import annotations

import itertools
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

from olympipe._runtime.counters import (
    BUSY,
    CPU,
    ERRORS,
    FIELDS,
    ITEMS_IN,
    ITEMS_OUT,
    PEAK_RSS_MB,
    RETRIED,
    STARTED,
)
from olympipe._runtime.messages import Failure
from olympipe._stages.base import ItemFailed, Stage, StageSpec
from olympipe._transport.codec import Definition, loads_definition

Meta = tuple[bool, list[list[float]], int | None, int]


class StageFailed(Exception):
    """User code failed in an actor; carries the :class:`Failure` the driver raises from."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure

    def __reduce__(self) -> tuple[Any, ...]:
        return (StageFailed, (self.failure,))


def _failure(label: str, exc: BaseException) -> StageFailed:
    if isinstance(exc, ItemFailed):
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return StageFailed(Failure.capture(label, cause, exc.item, exc.has_item))
    return StageFailed(Failure.capture(label, exc))


class StageActor:
    """A chain of stages (one, or several fused per-item ones) applied to each chunk."""

    def __init__(self, definition: Definition, labels: list[str], zero_copy: bool = False) -> None:
        specs: list[StageSpec] = loads_definition(definition)
        self._labels = labels
        self._owned: Callable[[Any], Any] = _as_it_is if zero_copy else _owned
        self._slots = specs[-1].output_slots
        self._stages: list[Stage] = []
        self._rows = [[0.0] * FIELDS for _ in specs]
        self._sent = [[0.0] * FIELDS for _ in specs]  # the rows as the last meta left them
        self._cpu = 0.0  # this process's CPU time at the last meta
        self._streams = any(spec.streams for spec in specs)
        self._parts: dict[int, tuple[Any, Iterator[Any]]] = {}  # key -> (next part, the rest)
        self._keys = itertools.count()
        now = time.time()
        for spec, label, row in zip(specs, labels, self._rows, strict=True):
            try:
                stage = spec.make()
                stage.open()
            except BaseException as exc:
                self.close_quietly()
                raise _failure(label, exc)
            self._stages.append(stage)
            row[STARTED] = now

    def ready(self) -> bool:
        """Answers once the stages are built (the driver waits for it at start)."""
        return True

    def process(self, chunk: list[Any]) -> tuple[Any, ...]:
        """Run ``chunk`` through the stages: the output chunks, then the meta tuple."""
        out: Any = self._owned(chunk)
        if self._streams:
            return self._first_part(self._chain(0, out))
        for index, stage in enumerate(self._stages):
            out = self._apply(index, stage.process, out)
        return self._result(out)

    def more(self, key: int) -> tuple[Any, ...]:
        """The next part of the outputs a call gave ``key`` for."""
        part, rest = self._parts.pop(key)
        return self._with_next(part, rest, key)

    def forget(self, key: int) -> None:
        """Nothing downstream wants the rest of ``key``'s outputs (a ``limit`` was reached)."""
        self._parts.pop(key, None)

    def _first_part(self, parts: Iterator[Any]) -> tuple[Any, ...]:
        try:
            part = next(parts)
        except StopIteration:
            return self._result([] if self._slots == 1 else tuple([] for _ in range(self._slots)))
        return self._with_next(part, parts, next(self._keys))

    def _with_next(self, part: Any, rest: Iterator[Any], key: int) -> tuple[Any, ...]:
        """``part``, and ``key`` if ``rest`` gives another (kept for :meth:`more`)."""
        try:
            ahead = next(rest)
        except StopIteration:
            return self._result(part)
        self._parts[key] = (ahead, rest)
        return self._result(part, key)

    def _chain(self, index: int, items: list[Any]) -> Iterator[Any]:
        """The outputs of the stages from ``index`` on, part by part: a stage that streams
        gives its parts one at a time, each run through the rest before the next is made."""
        if index == len(self._stages):
            yield items
            return
        stage = self._stages[index]
        if not stage.streams:
            yield from self._chain(index + 1, self._apply(index, stage.process, items))
            return
        row = self._rows[index]
        row[ITEMS_IN] += len(items)
        parts = stage.stream(items)
        while True:
            t0 = time.perf_counter()
            try:
                part = next(parts)
            except StopIteration:
                row[BUSY] += time.perf_counter() - t0
                return
            except BaseException as exc:
                raise _failure(self._labels[index], exc)
            row[BUSY] += time.perf_counter() - t0
            row[ITEMS_OUT] += len(part)
            yield from self._chain(index + 1, part)

    def recover(self, item: Any, died: Exception) -> tuple[Any, ...]:
        """What an item that killed this stage's previous actor becomes (``on_error``)."""
        stage = self._stages[0]
        owned = self._owned(item)
        return self._result(self._apply(0, lambda _items: stage.recover(owned, died), [owned]))

    def finish(self) -> tuple[Any, ...]:
        """After the last chunk: flush the first stage and run what it gives through the rest."""
        out: Any = self._apply(0, lambda _items: self._stages[0].finish(), [])
        for index in range(1, len(self._stages)):
            out = self._apply(index, self._stages[index].process, out)
        return self._result(out)

    def close(self) -> None:
        """Close every stage (``close_method`` runs); an error is the run's failure."""
        stages, self._stages = self._stages, []
        for label, stage in zip(self._labels, stages, strict=False):
            try:
                stage.close()
            except BaseException as exc:
                raise _failure(label, exc)

    def close_quietly(self) -> None:
        """Close what was opened, ignoring errors (the run already failed)."""
        for stage in self._stages:
            try:
                stage.close()
            except Exception:
                pass
        self._stages = []

    def _apply(self, index: int, fn: Any, items: list[Any]) -> Any:
        row = self._rows[index]
        t0 = time.perf_counter()
        try:
            out = fn(items)
        except BaseException as exc:
            raise _failure(self._labels[index], exc)
        row[BUSY] += time.perf_counter() - t0
        row[ITEMS_IN] += len(items)
        row[ERRORS] = self._stages[index].errors
        row[RETRIED] = self._stages[index].retried
        row[ITEMS_OUT] += sum(len(c) for c in out) if isinstance(out, tuple) else len(out)
        return out

    def _result(self, out: Any, more: int | None = None) -> tuple[Any, ...]:
        """The output chunks, then the meta: whether the last stage is exhausted, per stage
        what its counters gained since the last meta (the driver adds them up, so a call
        made again after a crash, or a late call of a recycled actor, counts once), and
        ``more``, the key of the rest of a streaming chunk.
        ``STARTED`` and ``PEAK_RSS_MB`` are absolute; this process's CPU time is shared out
        between its stages by their busy time."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        cpu_gained, self._cpu = cpu - self._cpu, cpu
        deltas = []
        for row, sent in zip(self._rows, self._sent, strict=True):
            deltas.append([row[f] - sent[f] for f in range(FIELDS)])
            sent[:] = row
        busy = sum(d[BUSY] for d in deltas)
        for d, row in zip(deltas, self._rows, strict=True):
            d[CPU] = cpu_gained * (d[BUSY] / busy if busy > 0 else 1 / len(deltas))
            d[STARTED] = row[STARTED]
            d[PEAK_RSS_MB] = usage.ru_maxrss / 1024
        last = self._stages[-1] if self._stages else None
        meta: Meta = (last.exhausted if last else False, deltas, more, last.held() if last else 0)
        chunks = out if self._slots > 1 else (out,)
        return (*chunks, meta)


def _as_it_is(value: Any) -> Any:
    return value


_OWNED_DEPTH = 3  # the chunk, its items, their parts (an (image, label) pair, a batch)


def _owned(value: Any, depth: int = 0) -> Any:
    """``value`` with its read-only numpy arrays (in lists, tuples and dicts, a few levels
    down) replaced by writable copies.

    Ray hands arrays out of its object store read-only; a stage may change its input in
    place (``img -= mean``) as it may on the local engine, so the actor takes copies of its
    own, as Ray Data's ``map_batches`` does by default."""
    kind = type(value)
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy":
        return value if value.flags.writeable else value.copy()
    if depth >= _OWNED_DEPTH:
        return value
    if kind is list:
        return [_owned(v, depth + 1) for v in value]
    if kind is tuple:
        return tuple(_owned(v, depth + 1) for v in value)
    if kind is dict:
        return {k: _owned(v, depth + 1) for k, v in value.items()}
    return value
