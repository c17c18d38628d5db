"""``Pipeline``: the immutable, lazy builder and the terminal calls that run it.

Each stage method returns a new ``Pipeline`` over a new graph node; nothing runs until a
terminal call (``wait_for_result``, iteration, ...) plans the sub-graph its sinks need and
hands it to an engine (``olympipe/_engines``): local processes by default.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar, overload

from olympipe._checks import (
    _check_bool,
    _check_callable,
    _check_count,
    _check_int,
    _check_items_per_worker,
    _check_positive_int,
    _check_retries,
    _check_seconds,
    _check_stage_on_full,
    _name_of,
)
from olympipe._core.flow import OnFull, Prefetch, check_on_full
from olympipe._core.tuning import check_budget

# The default engine comes with the builder, not with the first run, whose time it would
# add to (importing the runtime takes about 40 ms).
from olympipe._engines import local as _local  # noqa: F401
from olympipe._engines.base import Engine, Execution, check_engine, resolve_engine
from olympipe._graph import Endpoint, Node, RunOptions, SourceSpec, plan_for, render, sources_of
from olympipe._metrics import Observed, check_metrics_port
from olympipe._picture import FORMATS, dot_source
from olympipe._picture import render as render_dot
from olympipe._resume.run import AlreadyFinished, Resumable, prepare
from olympipe._runs import (
    _EXITED,
    _check_sources_free,
    _claim_sources,
    _close,
    _consumable,
    _events,
    _running,
)
from olympipe._runtime.context import check_start_method, warm_up_in_notebook
from olympipe._stages.base import StageSpec
from olympipe._stages.cache import CachedTaskSpec, fingerprint
from olympipe._stages.mapping import ClassTaskSpec, DebugSpec, ExplodeSpec, FilterSpec, TaskSpec
from olympipe._stages.request import check_server_stage
from olympipe._stages.split import SplitSpec
from olympipe._stages.stateful import (
    BatchSpec,
    GatherSpec,
    LimitSpec,
    ReduceSpec,
    TemporalBatchSpec,
    TimeoutSpec,
)
from olympipe._trace import Traced, check_trace
from olympipe.stats import RunStats

#: Hex digits of the function's fingerprint in a cache key: 96 bits, no collision in practice.
CACHE_KEY_CHARS = 24

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")
U = TypeVar("U")  # the item types of the pipelines of one run, where they can be known
V = TypeVar("V")
W = TypeVar("W")


EngineChoice = str | Engine | None

PREFETCH_ITEMS = 64  # a started source-only pipeline reads this far ahead (2.x's early start)


@dataclass(frozen=True)
class _Builder:
    """Everything a pipeline is, besides the run it may have started."""

    endpoint: Endpoint
    options: RunOptions
    engine: EngineChoice = None


class Pipeline(Generic[T]):
    """A stream of items flowing through stages, each stage in its own worker process(es).

    ``Pipeline(datas)`` starts a graph from any iterable. Stage methods return new
    pipelines; calling two of them on the same pipeline makes two branches that each see
    every item. Terminal calls run the graph and return the results in source order.
    """

    def __init__(
        self,
        datas: Iterable[T] | None = None,
        *,
        queue_size: int | None = None,
        start_method: str | None = None,
        progress: bool = False,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        on_full: OnFull = "block",
        resume: str | os.PathLike[str] | None = None,
        resume_key: Callable[[T], Any] | None = None,
        resume_if_changed: bool = False,
    ) -> None:
        """A graph that starts from ``datas``.

        Args:
            datas: any iterable: a list, a range, a generator, a file. It is read lazily, in
                this process, only as fast as the pipeline drains it. ``None``: no items.
            queue_size: how many chunks may wait for the first stage (default: twice its
                workers plus two).
            start_method: ``"fork"``, ``"forkserver"`` or ``"spawn"``; ``None`` picks one
                that needs no ``if __name__ == "__main__":`` guard.
            progress: show a bar per stage while a terminal call runs.
            engine: where the stages run: ``"local"`` (default), ``"inline"``, ``"ray"`` or a
                :class:`~olympipe.RayEngine`.
            workers: the budget of worker processes that ``count="auto"`` stages share
                (default: the CPUs this process may use).
            on_full: what happens to source items that find the first stages busy:
                ``"block"`` (wait: backpressure), ``"drop_oldest"`` or ``"drop_newest"`` (the
                source is read at its own pace; drops are counted in :meth:`stats`).
            metrics_port: serve each run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts (``pip install
                "olympipe[metrics]"``).
            trace: write each run's timeline to this file when it ends (Chrome trace event
                format, opened by Perfetto and ``chrome://tracing``).
            resume: a progress file: the run records there which source items are finished,
                and the same script run again skips them (after ``kill -9`` too; items in
                flight then run again).
            resume_key: ``resume_key(item)`` identifies an item, for a source whose order may
                change between runs (a generator); without it, items are skipped by position.
            resume_if_changed: go on from a progress file written by a graph that has
                changed since (other stages, parameters or code) instead of refusing it.

        Raises:
            TypeError: ``datas`` is not iterable, or an option has the wrong type.
            ValueError: an option is out of range (``queue_size=0``, an unknown start method
                or policy)."""
        if datas is None:
            datas = []
        if not isinstance(datas, Iterable):
            raise TypeError(f"the source must be iterable, got {type(datas).__name__}")
        if queue_size is not None:
            _check_positive_int(queue_size, "queue_size")
        check_start_method(start_method)
        check_engine(engine)
        _check_bool(progress, "progress")
        if workers is not None:
            _check_positive_int(workers, "workers")
        check_on_full(on_full)
        check_metrics_port(metrics_port)
        check_trace(trace)
        if resume_key is not None:
            _check_callable(resume_key, "resume_key")
            if resume is None:
                raise TypeError("resume_key= needs resume=<progress file>")
        if resume is not None and not isinstance(resume, (str, os.PathLike)):
            raise TypeError(f"resume must be a file path, got {type(resume).__name__}")
        _check_bool(resume_if_changed, "resume_if_changed")
        options = RunOptions(
            start_method=start_method,
            queue_size=queue_size,
            progress=progress,
            workers=workers,
            metrics_port=metrics_port,
            trace=trace,
            resume=resume,
            resume_key=resume_key,
            resume_if_changed=resume_if_changed,
        )
        self._set_state(_Builder((Node(SourceSpec(datas, on_full=on_full)), 0), options, engine))

    def _set_state(self, builder: _Builder) -> None:
        self._b = builder
        self._run: Execution | None = None
        self._last_run: Execution | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def _endpoint(self) -> Endpoint:
        return self._b.endpoint

    @classmethod
    def server(
        cls,
        route_handlers: Sequence[tuple[str, str, Callable[[Any], Any]]],
        port: int = 8000,
        host: str = "localhost",
        debug: bool = False,
        inactivity_timeout: float | None = None,
        *,
        start_method: str | None = None,
        progress: bool = False,
    ) -> Pipeline[Any]:
        """An HTTP/1.1 server as a source: each request is an item, what reaches the end of
        the pipeline for it is its JSON response.

        Args:
            route_handlers: ``(method, path, parse)`` routes; a matching request becomes the
                item ``parse(json_body)`` (an exception there answers 400).
            port: the port to listen on; ``0``: a free one (see :attr:`port`). The socket is
                bound now; requests wait until the pipeline runs.
            host: the address to listen on.
            debug: log each request to the ``olympipe.server`` logger at INFO (2.x's parameter,
                in 2.x's position).
            inactivity_timeout: end the run after that many seconds without a request
                (``None``: serve until stopped).
            start_method: as for :class:`Pipeline`.
            progress: as for :class:`Pipeline`.

        Returns:
            A source pipeline; per-item stages and a ``batch`` with ``max_wait`` may follow.

        Raises:
            OSError: the address cannot be bound.
            TypeError, ValueError: a route or an option is malformed."""
        from olympipe._server import ServerSource  # http.server: only for a server

        source = ServerSource(route_handlers, host, port, inactivity_timeout, debug=debug)
        pipe: Pipeline[Any] = cls(start_method=start_method, progress=progress)
        node = Node(SourceSpec(source, name="server", one_item_chunks=True, server=True))
        pipe._set_state(replace(pipe._b, endpoint=(node, 0)))
        return pipe

    @property
    def port(self) -> int:
        """The port of the HTTP server this pipeline reads from."""
        stack = [self._endpoint[0]]
        while stack:
            node = stack.pop()
            if isinstance(node.spec, SourceSpec) and node.spec.server:
                port: int = node.spec.iterable.port  # type: ignore[attr-defined]
                return port
            stack.extend(n for n, _slot in node.inputs)
        raise AttributeError("this pipeline does not read from Pipeline.server(...)")

    def _derive(self, endpoint: Endpoint) -> Pipeline[Any]:
        pipe: Pipeline[Any] = Pipeline.__new__(Pipeline)
        pipe._set_state(replace(self._b, endpoint=endpoint))
        return pipe

    def _node(self, spec: StageSpec, *others: Pipeline[Any]) -> Node:
        if not isinstance(spec.name, str) or not spec.name:
            raise TypeError(f"name must be a non-empty str, got {spec.name!r}")
        inputs = (self._endpoint, *(o._endpoint for o in others))
        sources = [n.spec for n in sources_of(inputs) if isinstance(n.spec, SourceSpec)]
        check_server_stage(spec, sources)
        return Node(spec, inputs)

    def _then(self, spec: StageSpec, *others: Pipeline[Any]) -> Pipeline[Any]:
        return self._derive((self._node(spec, *others), 0))

    # -- stages -----------------------------------------------------------------------------

    @overload
    def task(
        self,
        task: Callable[[T], Awaitable[R]],
        count: int | Literal["auto"] = 1,
        on_error: Callable[[T, Exception], R | None] | None = None,
        *,
        concurrency: int = 1,
        ordered: bool = True,
        name: str | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        max_items_per_worker: int | None = None,
        on_full: OnFull = "block",
    ) -> Pipeline[R]: ...

    @overload
    def task(
        self,
        task: Callable[[T], R],
        count: int | Literal["auto"] = 1,
        on_error: Callable[[T, Exception], R | None] | None = None,
        *,
        concurrency: int = 1,
        ordered: bool = True,
        name: str | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        max_items_per_worker: int | None = None,
        on_full: OnFull = "block",
    ) -> Pipeline[R]: ...

    def task(
        self,
        task: Callable[[T], Any],
        count: int | Literal["auto"] = 1,
        on_error: Callable[[T, Exception], Any] | None = None,
        *,
        concurrency: int = 1,
        ordered: bool = True,
        name: str | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        max_items_per_worker: int | None = None,
        on_full: OnFull = "block",
    ) -> Pipeline[Any]:
        """Apply ``task(item)`` to each item, in ``count`` worker processes.

        Args:
            task: a function of one item (``async def`` too); its result goes on.
            count: worker processes, or ``"auto"``: the engine sizes the stage within the
                pipeline's ``workers=`` budget, and moves workers while the run goes on.
            on_error: ``on_error(item, exc)`` returns what goes on in place of a failed item
                (``None`` drops it). With it, a worker that dies is replaced and its item comes
                here as a :class:`~olympipe.WorkerDied`.
            concurrency: items in flight in each worker (threads; coroutines for ``async``).
            ordered: keep the source's order (``False``: outputs as they complete).
            name: the stage's name in bars, stats and errors (default: the function's).
            retries: more attempts for an item whose exception is a ``retry_on`` type.
            retry_on: the exception types worth retrying.
            max_items_per_worker: replace a worker after that many items (leaky code).
            on_full: what happens to items that find the stage busy: ``"block"`` (wait),
                ``"drop_oldest"``, ``"drop_newest"``.

        Returns:
            A new pipeline of the results.

        Raises:
            TypeError: ``task`` or ``on_error`` is not callable, or an argument has the wrong
                type.
            ValueError: ``count``, ``concurrency``, ``retries`` or ``max_items_per_worker`` is
                out of range, ``on_full`` unknown, or a drop policy given with ``on_error`` or
                ``max_items_per_worker``."""
        _check_callable(task, "task")
        workers, auto = _check_count(count)
        _check_positive_int(concurrency, "concurrency")
        _check_bool(ordered, "ordered")
        kinds = _check_retries(retries, retry_on)
        _check_items_per_worker(max_items_per_worker)
        if on_error is not None:
            _check_callable(on_error, "on_error")
        _check_stage_on_full(on_full, on_error, max_items_per_worker)
        spec = TaskSpec(
            name=name or _name_of(task, "task"),
            fn=task,
            workers=workers,
            auto=auto,
            on_error=on_error,
            concurrency=concurrency,
            ordered=ordered,
            retries=retries,
            retry_on=kinds,
            max_items_per_worker=max_items_per_worker,
            on_full=on_full,
        )
        return self._then(spec)

    def cached_task(
        self,
        task: Callable[[T], R],
        cache_dir: str | os.PathLike[str],
        count: int | Literal["auto"] = 1,
        *,
        name: str | None = None,
    ) -> Pipeline[R]:
        """Like :meth:`task`, with each result kept on disk: a rerun skips what is computed.

        Args:
            task: a function of one item.
            cache_dir: where results are kept, keyed by the function's code and the item;
                editing the function invalidates its entries.
            count: worker processes, or ``"auto"``.
            name: the stage's name (default: the function's).

        Returns:
            A new pipeline of the results.

        Raises:
            TypeError: ``task`` is not callable or ``cache_dir`` not a path.
            ValueError: ``count`` is out of range."""
        _check_callable(task, "task")
        workers, auto = _check_count(count)
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path, got {type(cache_dir).__name__}")
        spec = CachedTaskSpec(
            name=name or _name_of(task, "cached_task"),
            fn=task,
            cache_dir=os.fspath(cache_dir),
            key=fingerprint(task)[:CACHE_KEY_CHARS],
            workers=workers,
            auto=auto,
        )
        return self._then(spec)

    def uncache(self) -> Pipeline[T]:
        """Compatibility with olympipe 2.x: ``cached_task`` already yields plain values."""
        return self

    def class_task(
        self,
        class_constructor: Callable[..., A],
        class_method: Callable[[A, T], R],
        class_args: Sequence[Any] | None = None,
        close_method: Callable[[A], Any] | None = None,
        class_kwargs: dict[str, Any] | None = None,
        count: int | Literal["auto"] = 1,
        *,
        concurrency: int = 1,
        name: str | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        on_error: Callable[[T, Exception], Any] | None = None,
        max_items_per_worker: int | None = None,
        on_full: OnFull = "block",
    ) -> Pipeline[R]:
        """Build one instance per worker and apply ``class_method(instance, item)``.

        Args:
            class_constructor: called as ``class_constructor(*class_args, **class_kwargs)``
                once in each worker (a model, a connection: built where it is used).
            class_method: called as ``class_method(instance, item)``; its result goes on.
            class_args: positional arguments of the constructor.
            close_method: ``close_method(instance)`` runs when the worker ends (also after an
                error, and in a worker retired by ``max_items_per_worker`` or by ``"auto"``).
            class_kwargs: keyword arguments of the constructor.
            count, concurrency, name, retries, retry_on, on_error, max_items_per_worker,
                on_full: as for :meth:`task`.

        Returns:
            A new pipeline of the results.

        Raises:
            TypeError, ValueError: as for :meth:`task`."""
        kinds = _check_retries(retries, retry_on)
        _check_items_per_worker(max_items_per_worker)
        if on_error is not None:
            _check_callable(on_error, "on_error")
        _check_callable(class_constructor, "class_constructor")
        _check_callable(class_method, "class_method")
        if close_method is not None:
            _check_callable(close_method, "close_method")
        _check_stage_on_full(on_full, on_error, max_items_per_worker)
        workers, auto = _check_count(count)
        _check_positive_int(concurrency, "concurrency")
        spec = ClassTaskSpec(
            name=name or _name_of(class_method, _name_of(class_constructor, "class_task")),
            constructor=class_constructor,
            method=class_method,
            args=tuple(class_args or ()),
            kwargs=dict(class_kwargs or {}),
            close_method=close_method,
            workers=workers,
            auto=auto,
            concurrency=concurrency,
            retries=retries,
            retry_on=kinds,
            on_error=on_error,
            max_items_per_worker=max_items_per_worker,
            on_full=on_full,
        )
        return self._then(spec)

    def filter(
        self, keep_if_true: Callable[[T], Any] | None = None, *, name: str | None = None
    ) -> Pipeline[T]:
        """Keep the items for which ``keep_if_true(item)`` is truthy.

        Args:
            keep_if_true: the predicate; ``None`` keeps the items that are not ``None``.
            name: the stage's name (default: the function's).

        Returns:
            A new pipeline of the items kept.

        Raises:
            TypeError: ``keep_if_true`` is not callable."""
        if keep_if_true is not None:
            _check_callable(keep_if_true, "keep_if_true")
        return self._then(FilterSpec(name=name or _name_of(keep_if_true, "filter"), pred=keep_if_true))

    def batch(
        self, batch_size: int = 2, keep_incomplete_batch: bool = True, *, max_wait: float | None = None
    ) -> Pipeline[list[T]]:
        """Group items into lists of ``batch_size``.

        Args:
            batch_size: items per list.
            keep_incomplete_batch: send the last, shorter list at the end of the stream.
            max_wait: seconds; a batch also leaves, however short, once its oldest item has
                waited that long (bounded latency for a slow source; needed in a server
                pipeline, where concurrent requests are batched).

        Returns:
            A new pipeline of lists.

        Raises:
            ValueError: ``batch_size < 1``, or ``max_wait`` negative or NaN.
            TypeError: an argument of the wrong type."""
        _check_positive_int(batch_size, "batch_size")
        _check_bool(keep_incomplete_batch, "keep_incomplete_batch")
        if max_wait is not None:
            if not isinstance(max_wait, (int, float)) or isinstance(max_wait, bool):
                raise TypeError(f"max_wait must be a number of seconds, got {type(max_wait).__name__}")
            if not max_wait >= 0:  # also NaN
                raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait}")
            return self._then(
                BatchSpec(
                    name="batch", size=batch_size, keep_incomplete=keep_incomplete_batch, max_wait=max_wait
                )
            )
        return self._then(BatchSpec(name="batch", size=batch_size, keep_incomplete=keep_incomplete_batch))

    def temporal_batch(self, time_interval: float) -> Pipeline[list[T]]:
        """Group the items that arrive within each window of ``time_interval`` seconds.

        Args:
            time_interval: the window's length in seconds.

        Returns:
            A new pipeline of lists (one per window that saw items).

        Raises:
            ValueError: ``time_interval`` is not positive.
            TypeError: it is not a number."""
        _check_seconds(time_interval, "time_interval")
        return self._then(TemporalBatchSpec(name="temporal_batch", seconds=float(time_interval)))

    def explode(self, explode_function: Callable[[T], Iterable[R]] | None = None) -> Pipeline[R]:
        """Send on each element of ``explode_function(item)`` (or of the item) alone.

        Args:
            explode_function: returns an iterable per item (a generator streams: its elements
                go on as they are made, an endless one too); ``None`` iterates the item itself.

        Returns:
            A new pipeline of the elements.

        Raises:
            TypeError: ``explode_function`` is not callable."""
        if explode_function is not None:
            _check_callable(explode_function, "explode_function")
        return self._then(ExplodeSpec(name=_name_of(explode_function, "explode"), fn=explode_function))

    def split(self, split_function: Callable[[T], Any], n: int | None = None) -> tuple[Pipeline[Any], ...]:
        """Route value ``i`` of ``split_function(item)`` (unless ``None``) to branch ``i``.

        Args:
            split_function: returns a tuple (or list) of values, one per branch.
            n: the number of branches, when it cannot be read from a first item.

        Returns:
            One pipeline per branch.

        Raises:
            TypeError: ``split_function`` is not callable.
            ValueError: ``n < 1``."""
        _check_callable(split_function, "split_function")
        if n is None:
            n = _tuple_arity(split_function)
        _check_positive_int(n, "n")
        node = self._node(SplitSpec(name=_name_of(split_function, "split"), fn=split_function, n=n))
        return tuple(self._derive((node, i)) for i in range(n))

    def gather(self, *others: Pipeline[Any]) -> Pipeline[Any]:
        """Merge this pipeline with ``others`` into one stream; each keeps its own order.

        Args:
            others: pipelines of the same graph or of other sources.

        Returns:
            A new pipeline of every item of each.

        Raises:
            TypeError: an argument is not a :class:`Pipeline`."""
        for other in others:
            if not isinstance(other, Pipeline):
                raise TypeError(f"gather takes pipelines, got {type(other).__name__}")
        return self._then(GatherSpec(name="gather"), *others)

    def reduce(self, accumulator: A, reducer: Callable[[T, A], A]) -> Pipeline[A]:
        """Fold the stream with ``reducer(item, acc)``; the final value is the only output.

        Args:
            accumulator: the initial value.
            reducer: ``reducer(item, acc)`` returns the new ``acc``.

        Returns:
            A new pipeline of one item.

        Raises:
            TypeError: ``reducer`` is not callable."""
        _check_callable(reducer, "reducer")
        return self._then(
            ReduceSpec(name=_name_of(reducer, "reduce"), accumulator=accumulator, reducer=reducer)
        )

    def checkpoint(
        self, initial: A, reducer: Callable[[T, A], A], emitter: Callable[[A], Iterable[R]]
    ) -> Pipeline[R]:
        """Fold the stream with ``reducer(item, state)``, then send on each element of
        ``emitter(state)`` (olympipe 2.x).

        Args:
            initial: the initial state.
            reducer: ``reducer(item, state)`` returns the new state.
            emitter: ``emitter(state)`` returns the iterable sent on at the end.

        Returns:
            A new pipeline of the emitted elements.

        Raises:
            TypeError: ``reducer`` or ``emitter`` is not callable."""
        _check_callable(emitter, "emitter")
        folded: Pipeline[A] = self.reduce(initial, reducer)
        return folded.explode(emitter)

    def limit(self, packet_limit: int) -> Pipeline[T]:
        """Pass the first ``packet_limit`` items, then end the stream cleanly (the stages
        before it stop, an endless source too).

        Args:
            packet_limit: how many items pass.

        Returns:
            A new pipeline of at most that many items.

        Raises:
            ValueError: ``packet_limit < 0``.
            TypeError: it is not an int."""
        _check_int(packet_limit, "packet_limit", 0)
        return self._then(LimitSpec(name="limit", n=packet_limit))

    def timeout(self, timeout: float) -> Pipeline[T]:
        """End the stream, without error, when no item arrives for ``timeout`` seconds.

        Args:
            timeout: seconds without an item.

        Returns:
            A new pipeline of the items that came in time.

        Raises:
            ValueError: ``timeout`` is not positive.
            TypeError: it is not a number."""
        _check_seconds(timeout, "timeout")
        return self._then(TimeoutSpec(name="timeout", seconds=float(timeout)))

    def debug(self) -> Pipeline[T]:
        """Print each item to stderr as it passes.

        Returns:
            A new pipeline of the same items."""
        return self._then(DebugSpec(name="debug"))

    # -- running ----------------------------------------------------------------------------

    def start(
        self,
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> Pipeline[T]:
        """Start the run now (idempotent) and return this pipeline; a later terminal call on
        this same pipeline collects it.

        A pipeline that is only a source of an iterator (a generator, a sensor) starts reading
        it ahead into a bounded buffer (``queue_size`` items, 64 by default), as olympipe 2.x
        did: the first pipeline derived from it afterwards takes the stream over, every item
        once.

        Args:
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: where the stages run; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics while it lasts.
            trace: write the run's timeline there when it ends.

        Returns:
            This pipeline.

        Raises:
            RuntimeError: the source is an iterator another run has read, or is reading."""
        node = self._b.endpoint[0]
        if node.is_source and self._run is None:
            assert isinstance(node.spec, SourceSpec)
            if isinstance(node.spec.iterable, Prefetch):
                return self
            if _consumable(node.spec.iterable) and not node.spec.server:
                prefetch = Prefetch(node.spec.iterable, self._b.options.queue_size or PREFETCH_ITEMS)
                object.__setattr__(node.spec, "iterable", prefetch)  # every derived graph reads it
                self._finalizer = weakref.finalize(self, prefetch.stop)
                return self
        if self._run is None:
            self._run = self._execute([self], progress, engine, metrics_port, trace)
            _running.add(self._run)
            # Dropped without being collected: the run is closed when the pipeline is.
            self._finalizer = weakref.finalize(self, functools.partial(_close, self._run))
            self._run.start()
            _claim_sources(self._run)
        return self

    def _execute(
        self,
        pipes: Sequence[Pipeline[Any]],
        progress: bool | None,
        engine: EngineChoice,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> Execution:
        check_engine(engine)
        plan = plan_for([p._endpoint for p in pipes])
        _check_sources_free(plan)
        check_budget(plan, self._b.options.workers)
        if progress is not None:
            _check_bool(progress, "progress")
        wanted = self._b.options.progress if progress is None else progress
        options = replace(self._b.options, progress=bool(wanted))
        check_metrics_port(metrics_port)
        check_trace(trace)
        port = metrics_port if metrics_port is not None else self._b.options.metrics_port
        trace_to = trace if trace is not None else self._b.options.trace
        chosen = resolve_engine(engine if engine is not None else self._b.engine)
        prepared = None
        if options.resume is not None:
            prepared = prepare(plan, options.resume, options.resume_key, options.resume_if_changed)
            if prepared.progress.finished:
                return AlreadyFinished(plan, prepared.path)
            if prepared.feed is not None:
                plan.feeds[plan.sources[0].id] = prepared.feed
        run = chosen.execute(plan, options)
        if trace_to is not None:
            run = Traced(run, trace_to)
        if port is not None:
            try:
                run = Observed(run, port)
            except BaseException:
                run.close()
                raise
        return run if prepared is None else Resumable(run, prepared)

    def _take_run(
        self,
        pipes: Sequence[Pipeline[Any]],
        progress: bool | None = None,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> Execution:
        if self._run is not None and len(pipes) == 1:
            run, self._run = self._run, None
            if self._finalizer is not None:
                self._finalizer.detach()  # the terminal call closes it
        else:
            run = self._execute(pipes, progress, engine, metrics_port, trace)
            _running.add(run)
        for pipe in pipes:
            pipe._last_run = run
        return run

    def graph(self, other_pipes: Sequence[Pipeline[Any]] | None = None) -> str:
        """The plan a terminal call would run, as an ASCII tree.

        Args:
            other_pipes: pipelines run together with this one.

        Returns:
            The tree: stages, worker counts, branches, and where results come out."""
        return render(plan_for([self._endpoint, *(p._endpoint for p in other_pipes or [])]))

    def print_graph(
        self, path: str | os.PathLike[str], other_pipes: Sequence[Pipeline[Any]] | None = None
    ) -> None:
        """Write the plan to ``path`` (the olympipe 2.x name): a picture for a ``.svg``,
        ``.png`` or ``.pdf`` path (rendered by graphviz; after a run, with each stage's
        figures and the bottleneck in colour), else the text of :meth:`graph`.

        Args:
            path: the file to write.
            other_pipes: pipelines run together with this one.

        Raises:
            ImportError: a picture was asked for and graphviz's ``dot`` program is not
                installed (the message says how to install it).
            OSError: the file cannot be written."""
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        if suffix in FORMATS:
            plan = plan_for([self._endpoint, *(p._endpoint for p in other_pipes or [])])
            picture = render_dot(dot_source(plan, self._figures()), suffix[1:])
            with open(path, "wb") as out:
                out.write(picture)
            return
        with open(path, "w", encoding="utf-8") as out:
            out.write(self.graph(other_pipes) + "\n")

    def _figures(self) -> RunStats | None:
        run = self._run or self._last_run
        return run.stats() if run is not None else None

    def _repr_svg_(self) -> str | None:
        """The plan as a picture in a notebook (``None`` without graphviz's ``dot``)."""
        try:
            picture = render_dot(dot_source(plan_for([self._endpoint]), self._figures()), "svg")
        except (ImportError, RuntimeError):
            return None
        return picture.decode()

    def stats(self) -> RunStats:
        """The figures of this pipeline's latest run (also during it, from another thread).

        Returns:
            A :class:`~olympipe.stats.RunStats`: a row per stage (items, errors, busy and
            waiting shares, workers, drops), the bottleneck, the latency; ``print()`` it for a
            table.

        Raises:
            RuntimeError: nothing has run yet."""
        run = self._run or self._last_run
        if run is None:
            raise RuntimeError("stats() needs a run: call a terminal method such as wait_for_result() first")
        return run.stats()

    def cleanup(self) -> None:
        """Stop a run started with :meth:`start` and never collected, releasing its
        workers (a source read ahead and not taken over stops being read). Idempotent."""
        node = self._b.endpoint[0]
        if node.is_source and isinstance(getattr(node.spec, "iterable", None), Prefetch):
            node.spec.iterable.stop()  # type: ignore[union-attr]
        run, self._run = self._run, None
        if run is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            _close(run)

    def kill_generator_source(self) -> None:
        """End the stream of this pipeline's source(s) after what was already read, in every
        run that is using them; the run then finishes cleanly (olympipe 2.x). With no run
        under way, a generator source is closed."""
        sources = sources_of([self._endpoint])
        ids = {node.id for node in sources}
        found = False
        for run in list(_running):
            if ids & {node.id for node in run.plan.sources}:
                run.end_sources(ids)
                found = True
        if not found:
            for node in sources:
                assert isinstance(node.spec, SourceSpec)
                if inspect.isgenerator(node.spec.iterable):
                    node.spec.iterable.close()

    def wait_for_result(
        self,
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
        debug_graph: str | os.PathLike[str] | None = None,
    ) -> list[T]:
        """Run the pipeline and return its outputs, in order.

        Args:
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: ``"local"`` (worker processes), ``"inline"`` (your thread), ``"ray"`` or a
                :class:`~olympipe.RayEngine`; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts; ``None``: as the pipeline says.
            trace: write the run's timeline there (Chrome trace format: Perfetto,
                ``chrome://tracing``) when it ends; ``None``: as the pipeline says.
            debug_graph: a path to write the plan to first (olympipe 2.x).

        Returns:
            The list of outputs.

        Raises:
            PipelineError: a stage (or the source) raised; it is also an instance of the original
                exception's class, and ``__cause__`` is that exception (``.stage``,
                ``.item_repr``, ``.remote_traceback`` say where).
            WorkerDied: a worker died (a signal, ``os._exit``, out of memory) in a stage without
                ``on_error``.
            RuntimeError: the source is an iterator another run has read, or is reading.
            KeyboardInterrupt: Ctrl-C; every worker is gone when it reaches you."""
        return self.wait_for_results(
            progress=progress, engine=engine, metrics_port=metrics_port, trace=trace, debug_graph=debug_graph
        )[0]

    def wait_for_results(
        self,
        other_pipes: Sequence[Pipeline[Any]] | None = None,
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
        debug_graph: str | os.PathLike[str] | None = None,
    ) -> list[list[Any]]:
        """Run this pipeline with ``other_pipes`` as one graph.

        Args:
            other_pipes: pipelines run together with this one (branches of one source share
                its reading).
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: ``"local"`` (worker processes), ``"inline"`` (your thread), ``"ray"`` or a
                :class:`~olympipe.RayEngine`; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts; ``None``: as the pipeline says.
            trace: write the run's timeline there (Chrome trace format: Perfetto,
                ``chrome://tracing``) when it ends; ``None``: as the pipeline says.
            debug_graph: a path to write the plan to first (olympipe 2.x).

        Returns:
            One list of outputs per pipeline, this one first.

        Raises:
            PipelineError: a stage (or the source) raised; it is also an instance of the original
                exception's class, and ``__cause__`` is that exception (``.stage``,
                ``.item_repr``, ``.remote_traceback`` say where).
            WorkerDied: a worker died (a signal, ``os._exit``, out of memory) in a stage without
                ``on_error``.
            RuntimeError: the source is an iterator another run has read, or is reading.
            KeyboardInterrupt: Ctrl-C; every worker is gone when it reaches you."""
        pipes = [self, *(other_pipes or [])]
        if debug_graph is not None:
            self.print_graph(debug_graph, other_pipes)
        return _collect(self._take_run(pipes, progress, engine, metrics_port, trace), pipes)

    # A tuple is a Sequence too: given one, the run gives a tuple back (each list typed).
    @overload
    @staticmethod
    def wait_for_all_results(  # type: ignore[overload-overlap]
        pipes: tuple[Pipeline[U], Pipeline[V]],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> tuple[list[U], list[V]]: ...

    @overload
    @staticmethod
    def wait_for_all_results(  # type: ignore[overload-overlap]
        pipes: tuple[Pipeline[U], Pipeline[V], Pipeline[W]],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> tuple[list[U], list[V], list[W]]: ...

    @overload
    @staticmethod
    def wait_for_all_results(
        pipes: Sequence[Pipeline[U]],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> list[list[U]]: ...

    @overload
    @staticmethod
    def wait_for_all_results(
        pipes: Sequence[Pipeline[Any]],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> list[list[Any]]: ...

    @staticmethod
    def wait_for_all_results(
        pipes: Sequence[Pipeline[Any]],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> list[list[Any]] | tuple[list[Any], ...]:
        """Run all ``pipes`` as one graph.

        Args:
            pipes: the pipelines (branches of one graph, or not).
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: ``"local"`` (worker processes), ``"inline"`` (your thread), ``"ray"`` or a
                :class:`~olympipe.RayEngine`; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts; ``None``: as the pipeline says.
            trace: write the run's timeline there (Chrome trace format: Perfetto,
                ``chrome://tracing``) when it ends; ``None``: as the pipeline says.

        Returns:
            One list of outputs per pipeline: a tuple of lists when ``pipes`` is a tuple
            (so that a checker knows each one's item type), else a list of lists.

        Raises:
            PipelineError: a stage (or the source) raised; it is also an instance of the original
                exception's class, and ``__cause__`` is that exception (``.stage``,
                ``.item_repr``, ``.remote_traceback`` say where).
            WorkerDied: a worker died (a signal, ``os._exit``, out of memory) in a stage without
                ``on_error``.
            RuntimeError: the source is an iterator another run has read, or is reading.
            KeyboardInterrupt: Ctrl-C; every worker is gone when it reaches you."""
        if not pipes:
            return () if isinstance(pipes, tuple) else []
        results = pipes[0].wait_for_results(
            list(pipes[1:]), progress=progress, engine=engine, metrics_port=metrics_port, trace=trace
        )
        return tuple(results) if isinstance(pipes, tuple) else results

    def wait_for_completion(
        self,
        other_pipes: Sequence[Pipeline[Any]] | None = None,
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> None:
        """Run this pipeline (with ``other_pipes``) and discard the outputs.

        Args:
            other_pipes: pipelines run together with this one.
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: ``"local"`` (worker processes), ``"inline"`` (your thread), ``"ray"`` or a
                :class:`~olympipe.RayEngine`; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts; ``None``: as the pipeline says.
            trace: write the run's timeline there (Chrome trace format: Perfetto,
                ``chrome://tracing``) when it ends; ``None``: as the pipeline says.

        Raises:
            PipelineError: a stage (or the source) raised; it is also an instance of the original
                exception's class, and ``__cause__`` is that exception (``.stage``,
                ``.item_repr``, ``.remote_traceback`` say where).
            WorkerDied: a worker died (a signal, ``os._exit``, out of memory) in a stage without
                ``on_error``.
            RuntimeError: the source is an iterator another run has read, or is reading.
            KeyboardInterrupt: Ctrl-C; every worker is gone when it reaches you."""
        pipes = [self, *(other_pipes or [])]
        run = self._take_run(pipes, progress, engine, metrics_port, trace)
        try:
            for _ in _events(run):
                pass
        finally:
            _close(run)

    @staticmethod
    def wait_for_all_completions(
        pipes: Sequence[Pipeline[Any]],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> None:
        """Run all ``pipes`` as one graph and discard the outputs.

        Args:
            pipes: the pipelines.
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: ``"local"`` (worker processes), ``"inline"`` (your thread), ``"ray"`` or a
                :class:`~olympipe.RayEngine`; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts; ``None``: as the pipeline says.
            trace: write the run's timeline there (Chrome trace format: Perfetto,
                ``chrome://tracing``) when it ends; ``None``: as the pipeline says.

        Raises:
            PipelineError: a stage (or the source) raised; it is also an instance of the original
                exception's class, and ``__cause__`` is that exception (``.stage``,
                ``.item_repr``, ``.remote_traceback`` say where).
            WorkerDied: a worker died (a signal, ``os._exit``, out of memory) in a stage without
                ``on_error``.
            RuntimeError: the source is an iterator another run has read, or is reading.
            KeyboardInterrupt: Ctrl-C; every worker is gone when it reaches you."""
        if pipes:
            pipes[0].wait_for_completion(
                list(pipes[1:]), progress=progress, engine=engine, metrics_port=metrics_port, trace=trace
            )

    def wait_and_reduce(
        self,
        accumulator: A,
        reducer: Callable[[T, A], A],
        progress: bool | None = None,
        *,
        engine: EngineChoice = None,
        metrics_port: int | None = None,
        trace: str | os.PathLike[str] | None = None,
    ) -> A:
        """Run the pipeline and fold its outputs with ``reducer(item, acc)``.

        Args:
            accumulator: the initial value.
            reducer: ``reducer(item, acc)`` returns the new ``acc``.
            progress: one bar (or line) per stage while it runs; ``None``: as the pipeline says.
            engine: ``"local"`` (worker processes), ``"inline"`` (your thread), ``"ray"`` or a
                :class:`~olympipe.RayEngine`; ``None``: as the pipeline says.
            metrics_port: serve the run's figures as Prometheus metrics at
                ``http://localhost:PORT/metrics`` while it lasts; ``None``: as the pipeline says.
            trace: write the run's timeline there (Chrome trace format: Perfetto,
                ``chrome://tracing``) when it ends; ``None``: as the pipeline says.

        Returns:
            The final ``acc``.

        Raises:
            PipelineError: a stage (or the source) raised; it is also an instance of the original
                exception's class, and ``__cause__`` is that exception (``.stage``,
                ``.item_repr``, ``.remote_traceback`` say where).
            WorkerDied: a worker died (a signal, ``os._exit``, out of memory) in a stage without
                ``on_error``.
            RuntimeError: the source is an iterator another run has read, or is reading.
            KeyboardInterrupt: Ctrl-C; every worker is gone when it reaches you."""
        reduced = self.reduce(accumulator, reducer)
        result: A = reduced.wait_for_result(
            progress=progress, engine=engine, metrics_port=metrics_port, trace=trace
        )[0]
        return result

    def __iter__(self) -> Iterator[T]:
        """Stream the outputs in order as they are produced; leaving the loop early stops
        and cleans up the run."""
        return _stream(self)


def _stream(pipe: Pipeline[T], _exited: list[bool] | None = None) -> Iterator[T]:
    """The generator behind ``iter(pipeline)``; its run starts at the first ``next``.

    A generator left open when the interpreter exits is closed after the modules are torn
    down, when nothing of the runtime can run: the atexit hook has closed its run by then,
    and the default argument (which outlives the module's globals) says so."""
    exited = _EXITED if _exited is None else _exited
    run = pipe._take_run([pipe])
    try:
        for _index, chunk in _events(run):
            yield from chunk
    finally:
        if not exited[0]:
            _close(run)


def _collect(run: Execution, pipes: Sequence[Pipeline[Any]]) -> list[list[Any]]:
    if isinstance(run, Resumable):
        run.collecting()  # its items are finished when this call returns, not before
    try:
        outputs: list[list[Any]] = [[] for _ in run.plan.sinks]
        for index, chunk in _events(run):
            outputs[index].extend(chunk)
    finally:
        _close(run)
    return [list(outputs[run.plan.sink_of(p._endpoint)]) for p in pipes]


def _tuple_arity(fn: Callable[..., Any]) -> int:
    """The length of the ``tuple[...]`` a function is annotated to return."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = getattr(fn, "__annotations__", {}) or {}
    ret = hints.get("return", inspect.Signature.empty)
    origin = typing.get_origin(ret)
    args = typing.get_args(ret)
    if origin is tuple and args and Ellipsis not in args:
        return len(args)
    raise TypeError(
        "split needs n=<number of branches>: it could not be inferred from the function's"
        " return annotation (annotate it as tuple[A, B, ...] or pass n)"
    )


warm_up_in_notebook()  # a kernel's first run would otherwise wait for the fork server
