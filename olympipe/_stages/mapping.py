"""Stateless operators: one input chunk becomes one output chunk, in any number of workers."""

from __future__ import annotations

import inspect
import math
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from types import GeneratorType
from typing import TYPE_CHECKING, Any, ClassVar

from olympipe._stages.base import ItemFailed, ParallelSpec, Stage, StageSpec

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

_DROP = object()  # what an item becomes when on_error asks for it to be dropped
# explode's elements go on in parts of at most this many, this many bytes of buffers (a
# large one alone), or what this many seconds made (a slow iterable's reach the next stage)
_PART_ITEMS = 4096  # as many as a source's chunk (feeder.MAX_ITEMS)
_PART_BYTES = 1 << 20
_PART_SECONDS = 0.01
_FIRST_LOOK = 64  # elements of a new iterable before its first look, at most


class _Calls:
    """Applies ``fn`` to a chunk: in a loop, in a thread pool, or on an asyncio loop.

    An exception of a ``retry_on`` type is retried up to ``retries`` more times for that
    item, in this worker. Then ``on_error(item, exc)`` replaces a failed item (``None`` drops
    it), with the last exception; an error raised by ``on_error`` itself fails the run.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        concurrency: int,
        on_error: Callable[[Any, Exception], Any] | None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        self.fn = fn
        self.on_error = on_error
        self.is_async = inspect.iscoroutinefunction(fn)
        self.concurrency = concurrency
        self.retries = retries
        self.retry_on = retry_on
        self.errors = 0  # items whose user code failed for good (handed to on_error)
        self.retried = 0  # attempts repeated after a retry_on exception
        self._count = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.running: Callable[[int], None] | None = None  # see Stage.track_items

    def open(self) -> None:
        if self.is_async:
            import asyncio  # only async stages pay for it

            self._loop = asyncio.new_event_loop()
        elif self.concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor  # only threaded stages pay for it

            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="olympipe")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def apply(self, items: list[Any]) -> list[Any]:
        if self._loop is not None:
            out = list(_run_on(self._loop, self._apply_async(items)))
        elif self._pool is not None and len(items) > 1:
            out = list(self._pool.map(self._guarded, items))
        elif self.on_error is None and not self.retries:
            fn = self.fn
            out = []
            append = out.append
            try:
                for x in items:
                    append(fn(x))
            except (Exception, KeyboardInterrupt, SystemExit) as exc:
                # Ctrl-C and exit() too: the caller gets them back as themselves, and
                # which item they came from
                raise ItemFailed(items[len(out)]) from exc
            return out
        else:
            out = self._apply_resuming(items)
        if self.on_error is not None:
            out = [x for x in out if x is not _DROP]
        return out

    def _apply_resuming(self, items: list[Any]) -> list[Any]:
        """One try around the whole loop, resumed after the failed item: a ``try`` per item
        costs more than the call of a trivial function. With ``track``, each item's index
        is told first (see :meth:`Stage.track_items`)."""
        fn = self.fn
        out: list[Any] = []
        append = out.append
        running = self.running
        index, n = 0, len(items)
        while index < n:
            try:
                if running is None:
                    for index in range(index, n):  # noqa: B020 - resumed where it failed
                        append(fn(items[index]))
                else:
                    for index in range(index, n):  # noqa: B020
                        running(index)
                        append(fn(items[index]))
                break
            except (KeyboardInterrupt, SystemExit) as exc:
                raise ItemFailed(items[index]) from exc
            except Exception as exc:
                append(self._after_failure(items[index], exc))
                index += 1
        return out

    def _after_failure(self, item: Any, exc: Exception) -> Any:
        """Retries of an item whose first attempt raised ``exc``, then ``on_error``."""
        attempt = 0
        while self._retry(attempt, exc):
            attempt += 1
            try:
                return self.fn(item)
            except Exception as again:
                exc = again
        return self.recover(item, exc)

    def _guarded(self, item: Any) -> Any:
        try:
            return self.fn(item)
        except Exception as exc:
            return self._after_failure(item, exc)

    def _retry(self, attempt: int, exc: Exception) -> bool:
        """Whether attempt ``attempt`` (from 0) failing with ``exc`` earns another, counted."""
        if attempt >= self.retries or not isinstance(exc, self.retry_on):
            return False
        with self._count:
            self.retried += 1
        return True

    def recover(self, item: Any, exc: Exception) -> Any:
        with self._count:
            self.errors += 1
        if self.on_error is None:
            raise ItemFailed(item) from exc
        replacement = self.on_error(item, exc)  # an error here fails the run, as documented
        return _DROP if replacement is None else replacement

    async def _apply_async(self, items: list[Any]) -> list[Any]:
        import asyncio

        limit = asyncio.Semaphore(self.concurrency)

        async def one(item: Any) -> Any:
            async with limit:
                attempt = 0
                while True:
                    try:
                        return await self.fn(item)
                    except Exception as exc:
                        if self._retry(attempt, exc):
                            attempt += 1
                            continue
                        return self.recover(item, exc)

        return list(await asyncio.gather(*(one(x) for x in items)))


def _run_on(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    """``loop.run_until_complete(coro)``; from a thread whose own loop is running (a
    notebook cell calling an inline run), in a helper thread: one thread runs one loop."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop.run_until_complete(coro)
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(loop.run_until_complete(coro))
        except BaseException as exc:
            failure.append(exc)

    helper = threading.Thread(target=run, name="olympipe-async")
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
    return result[0]


@dataclass(frozen=True)
class CallSpec(ParallelSpec):
    """What ``task`` and ``class_task`` share: a user call per item, ``concurrency`` at a
    time in each worker, retried on ``retry_on`` up to ``retries`` more times."""

    concurrency: int = 1
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    max_items_per_worker: int | None = None

    per_item: ClassVar[bool] = True
    one_to_one: ClassVar[bool] = True

    @property
    def parallelism(self) -> int:
        return self.concurrency

    @property
    def items_per_worker(self) -> int | None:
        return self.max_items_per_worker


class _CallStage(Stage):
    """A stage whose work is a :class:`_Calls`; its failures and retries are counted."""

    _calls: _Calls | None = None

    def process(self, items: list[Any]) -> list[Any]:
        assert self._calls is not None
        try:
            return self._calls.apply(items)
        finally:
            self.errors, self.retried = self._calls.errors, self._calls.retried

    def close(self) -> None:
        if self._calls is not None:
            self._calls.close()

    def track_items(self, running: Callable[[int], None]) -> bool:
        calls = self._calls
        if calls is None or calls.is_async or calls.concurrency > 1 or calls.on_error is None:
            return False
        calls.running = running
        return True

    def recover(self, item: Any, died: Exception) -> list[Any]:
        assert self._calls is not None
        try:
            replacement = self._calls.recover(item, died)
        finally:
            self.errors = self._calls.errors
        return [] if replacement is _DROP else [replacement]


class TaskStage(_CallStage):
    """``task(fn)``: ``fn(item)`` for each item."""

    def __init__(self, spec: TaskSpec) -> None:
        self._calls = _Calls(spec.fn, spec.concurrency, spec.on_error, spec.retries, spec.retry_on)

    def open(self) -> None:
        assert self._calls is not None
        self._calls.open()


@dataclass(frozen=True)
class TaskSpec(CallSpec):
    """``task(fn, count, on_error, concurrency, ordered, retries, retry_on)``."""

    fn: Callable[[Any], Any] = field(default=lambda x: x)
    on_error: Callable[[Any, Exception], Any] | None = None
    ordered: bool = True

    @property
    def renumbers_output(self) -> bool:
        return not self.ordered

    @property
    def isolates_crashes(self) -> bool:
        return self.on_error is not None

    def make(self) -> Stage:
        return TaskStage(self)


class ClassTaskStage(_CallStage):
    """``class_task``: one instance per worker, built inside the worker."""

    def __init__(self, spec: ClassTaskSpec) -> None:
        self._spec = spec
        self._instance: Any = None

    def open(self) -> None:
        spec = self._spec
        try:
            self._instance = spec.constructor(*spec.args, **spec.kwargs)
        except Exception as exc:
            raise ItemFailed(None, has_item=False) from exc
        method = spec.method
        instance = self._instance
        self._calls = _Calls(
            lambda item: method(instance, item), spec.concurrency, spec.on_error, spec.retries, spec.retry_on
        )
        self._calls.open()

    def close(self) -> None:
        super().close()
        if self._instance is not None and self._spec.close_method is not None:
            instance, self._instance = self._instance, None
            self._spec.close_method(instance)


@dataclass(frozen=True)
class ClassTaskSpec(CallSpec):
    """``class_task(constructor, method, args, close_method, kwargs, count, ...)``."""

    constructor: Callable[..., Any] = field(default=object)
    method: Callable[[Any, Any], Any] = field(default=lambda obj, x: x)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    close_method: Callable[[Any], Any] | None = None
    on_error: Callable[[Any, Exception], Any] | None = None

    @property
    def isolates_crashes(self) -> bool:
        return self.on_error is not None

    def make(self) -> Stage:
        return ClassTaskStage(self)


class FilterStage(Stage):
    """``filter(pred)``: keep items for which ``pred`` is truthy (``None``: not ``None``)."""

    def __init__(self, pred: Callable[[Any], Any] | None) -> None:
        self._pred = pred

    def process(self, items: list[Any]) -> list[Any]:
        pred = self._pred
        if pred is None:
            return [x for x in items if x is not None]
        out = []
        i = 0
        try:
            for x in items:
                if pred(x):
                    out.append(x)
                i += 1
        except Exception as exc:
            raise ItemFailed(items[i]) from exc
        return out


@dataclass(frozen=True)
class FilterSpec(StageSpec):
    """``filter(keep_if_true)``."""

    pred: Callable[[Any], Any] | None = None

    per_item: ClassVar[bool] = True

    def make(self) -> Stage:
        return FilterStage(self.pred)


class ExplodeStage(Stage):
    """``explode(fn)``: each element of ``fn(item)`` (or of the item) goes on alone."""

    streams = True

    def __init__(self, fn: Callable[[Any], Iterable[Any]] | None) -> None:
        self._fn = fn

    def process(self, items: list[Any]) -> list[Any]:
        fn = self._fn
        out: list[Any] = []
        for x in items:
            try:
                out.extend(x if fn is None else fn(x))
            except Exception as exc:
                raise ItemFailed(x) from exc
        return out

    def stream(self, items: list[Any]) -> Generator[list[Any], None, None]:
        """The elements in parts, each made only once the one before has gone on: one item
        may give thousands of frames, or never stop.

        A list, a tuple or another sized iterable of up to :data:`_PART_ITEMS` elements is
        made already: it goes on with the rest of the chunk, as :meth:`process` sends it.
        Any other is read element by element and looked at (the clock, the bytes of the
        last) after runs: of one element while they are large or slow to come, else 8 times
        longer each time, a new iterable keeping the pace of the last one (its first look
        within :data:`_FIRST_LOOK` elements). A part goes on at
        :data:`_PART_ITEMS` elements, :data:`_PART_BYTES` of buffers or
        :data:`_PART_SECONDS`."""
        fn = self._fn
        part: list[Any] = []
        nbytes = 0
        started = looked = time.perf_counter()
        step = 1
        counted = 0
        for x in items:
            try:
                elements: Any = x if fn is None else fn(x)
                if type(elements) is list or type(elements) is tuple:  # the hot path
                    part += elements
                    continue
                if type(elements) is not GeneratorType and _len_of(elements) <= _PART_ITEMS:
                    part += elements  # a range, a string, a small array: made already
                    continue
                # the pace of the last iterable goes on, up to _FIRST_LOOK elements of this one
                look_at = min(counted + step, len(part) + _FIRST_LOOK)
                for element in elements:
                    part.append(element)
                    n = len(part)
                    if n < look_at:
                        continue
                    now = time.perf_counter()
                    size = _nbytes(element)
                    nbytes += size * (n - counted)
                    if n >= _PART_ITEMS or nbytes >= _PART_BYTES or now - started >= _PART_SECONDS:
                        yield part
                        part, nbytes, started = [], 0, time.perf_counter()
                        n = 0
                    if size > _PART_BYTES // 8 or now - looked > _PART_SECONDS / 8:
                        step = 1  # large, or slow to come: looked at one by one
                    elif step < _PART_ITEMS:
                        step *= 8
                    looked, counted, look_at = now, n, n + step
            except Exception as exc:
                raise ItemFailed(x) from exc
        if part:
            yield part


def _len_of(elements: Any) -> float:
    """``len(elements)``, or infinity for an iterable without one (a generator)."""
    return len(elements) if hasattr(type(elements), "__len__") else math.inf


_WITHOUT_NBYTES: set[type] = set()  # types with no nbytes: asking one costs an exception


def _nbytes(element: Any) -> int:
    """The bytes of a buffer (an array, a memoryview), else 0."""
    kind = type(element)
    if kind in _WITHOUT_NBYTES:
        return 0
    if not hasattr(kind, "nbytes"):
        _WITHOUT_NBYTES.add(kind)
        return 0
    size = getattr(element, "nbytes", 0)
    return size if isinstance(size, int) else 0


@dataclass(frozen=True)
class ExplodeSpec(StageSpec):
    """``explode(explode_function)``."""

    fn: Callable[[Any], Iterable[Any]] | None = None

    per_item: ClassVar[bool] = True
    streams: ClassVar[bool] = True

    def make(self) -> Stage:
        return ExplodeStage(self.fn)


class DebugStage(Stage):
    """``debug()``: writes each item's repr to stderr and passes it on."""

    def __init__(self, name: str) -> None:
        self._name = name

    def process(self, items: list[Any]) -> list[Any]:
        write = sys.stderr.write
        for x in items:
            write(f"[{self._name}] {x!r}\n")
        sys.stderr.flush()
        return items


@dataclass(frozen=True)
class DebugSpec(StageSpec):
    """``debug()``."""

    per_item: ClassVar[bool] = True
    one_to_one: ClassVar[bool] = True

    def make(self) -> Stage:
        return DebugStage(self.name)
