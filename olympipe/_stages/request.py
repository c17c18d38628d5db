"""Stages of a server pipeline: an error fails its own request, not the run.

The HTTP side is ``olympipe/_server.py``; this module is what workers need, without it.

A chunk is one request's values, up to a ``batch``. The batch of a server pipeline
(:class:`RequestBatchSpec`) turns the requests it takes into *markers*, one item each,
every marker answering one or more requests in order: a :class:`RequestBatch` (the values
of ``n`` requests as one list, which the stages after it process as one item), a
:class:`RequestFailed` (``requests`` requests answered 500) or a :class:`RequestNone` (a
request filtered out before the batch, answered 204). The server gives each request its
element of the list that comes out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from olympipe._graph import SourceSpec
from olympipe._stages.base import ItemFailed, ItemProbe, Stage, StageSpec
from olympipe._stages.stateful import BatchSpec
from olympipe._transport.codec import dumps


@dataclass(frozen=True)
class RequestFailed:
    """The marker a failed request's chunk carries through the remaining stages (after a
    batch: the ``requests`` requests of a batch that failed)."""

    message: str
    requests: int = 1
    after_batch: bool = False  # a marker: it answers ``requests`` requests of a chunk of markers


@dataclass(frozen=True)
class RequestBatch:
    """After a batch: the value standing for ``requests`` requests (first the list of their
    values), and the last stage that made it."""

    value: Any
    requests: int
    stage: str

    def answers(self) -> list[list[Any]]:
        """Each request's answer: its element of the list, or a failure for all."""
        value = self.value
        if isinstance(value, (list, tuple)) and len(value) == self.requests:
            return [[v] for v in value]
        got = (
            f"a {type(value).__name__} of {len(value)}"
            if isinstance(value, (list, tuple))
            else type(value).__name__
        )
        failed = RequestFailed(
            f"stage {self.stage!r} returned {got} for a batch of {self.requests} requests:"
            f" a batch's result must be a list with one element per request",
            after_batch=True,
        )
        return [[failed] for _ in range(self.requests)]


@dataclass(frozen=True)
class RequestNone:
    """After a batch: a request filtered out before it (answered 204), or the ``requests``
    requests of a batch a later filter dropped."""

    requests: int = 1


def is_markers(items: list[Any]) -> bool:
    """Whether a chunk is a server batch's markers (else it is one request's values)."""
    return any(
        isinstance(m, (RequestBatch, RequestNone)) or (isinstance(m, RequestFailed) and m.after_batch)
        for m in items
    )


def requests_of(marker: Any) -> int:
    """How many requests an item after a server batch answers."""
    return int(marker.requests)


@dataclass(frozen=True)
class RequestStageSpec(StageSpec):
    """A stage of a server pipeline, as its workers build it: an error fails its own
    request (its chunk becomes a :class:`RequestFailed`), not the run."""

    inner: StageSpec | None = None

    @property
    def count(self) -> int:
        assert self.inner is not None
        return self.inner.count

    @property
    def output_slots(self) -> int:
        assert self.inner is not None
        return self.inner.output_slots

    @property
    def isolates_crashes(self) -> bool:
        return True  # a crash fails its own request

    @property
    def items_per_worker(self) -> int | None:
        assert self.inner is not None
        return self.inner.items_per_worker

    def make(self) -> Stage:
        assert self.inner is not None
        return _RequestStage(self.inner.make(), self.name)


class _RequestStage(Stage):
    def __init__(self, inner: Stage, name: str) -> None:
        self._inner = inner
        self._name = name

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def rerun(
        self,
        items: list[Any],
        died: Exception,
        culprits: dict[int, Exception],
        probe: ItemProbe,
    ) -> Any:
        """A chunk is one request (or, after a batch, markers): the worker died on it, so it
        fails (500)."""
        probe.recovering(0)  # answering it is all that is left to do
        message = f"{type(died).__name__}: {died}"
        if is_markers(items):
            return [RequestFailed(message, requests_of(m), after_batch=True) for m in items]
        return [RequestFailed(message)]

    def track_items(self, running: Callable[[int], None]) -> bool:
        return False  # a crash fails the whole request

    def process(self, items: list[Any]) -> Any:
        if is_markers(items):
            return [self._one_batch(m) for m in items]
        if items and isinstance(items[0], RequestFailed):
            return items  # failed upstream: carried to the end untouched
        try:
            out = self._inner.process(items)
        except ItemFailed as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            return [RequestFailed(f"{type(cause).__name__}: {cause}")]
        try:
            dumps(out)  # one request's answer: small, and checked here so that it fails alone
        except Exception as exc:
            return [RequestFailed(f"the result cannot be pickled: {type(exc).__name__}: {exc}")]
        return out

    def _one_batch(self, marker: Any) -> Any:
        """After a batch: the stage on one marker's value; another marker for it."""
        if not isinstance(marker, RequestBatch):
            return marker  # failed or filtered out: carried to the end untouched
        try:
            out = self._inner.process([marker.value])
        except ItemFailed as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            return RequestFailed(f"{type(cause).__name__}: {cause}", marker.requests, after_batch=True)
        if not out:
            return RequestNone(marker.requests)  # a filter dropped the batch
        if len(out) > 1:
            return RequestFailed(
                f"stage {self._name!r} gave {len(out)} values for one batch",
                marker.requests,
                after_batch=True,
            )
        try:
            dumps(out[0])
        except Exception as exc:
            return RequestFailed(
                f"the result cannot be pickled: {type(exc).__name__}: {exc}",
                marker.requests,
                after_batch=True,
            )
        return RequestBatch(out[0], marker.requests, self._name)


@dataclass(frozen=True)
class RequestBatchSpec(StageSpec):
    """``batch(n, max_wait=...)`` in a server pipeline: up to ``size`` requests, one value
    each, become one :class:`RequestBatch`; a batch leaves when full or when its first
    request has waited ``max_wait`` seconds."""

    size: int = 2
    max_wait: float = 0.0

    ordered_input: ClassVar[bool] = True

    def make(self) -> Stage:
        return _RequestBatchStage(self.size, self.max_wait, self.name)


class _RequestBatchStage(Stage):
    def __init__(self, size: int, max_wait: float, name: str) -> None:
        self._size = size
        self._max_wait = max_wait
        self._name = name
        self._values: list[Any] = []
        self._opened = 0.0

    def process(self, items: list[Any]) -> list[Any]:
        """One request's chunk: its value joins the batch; anything else goes on alone,
        after the batch so far (order is the requests')."""
        if len(items) == 1 and not isinstance(items[0], RequestFailed):
            if not self._values:
                self._opened = time.monotonic()
            self._values.append(items[0])
            return [self._flush()] if len(self._values) >= self._size else []
        out: list[Any] = [self._flush()] if self._values else []
        if not items:
            out.append(RequestNone())
        elif isinstance(items[0], RequestFailed):
            out.append(RequestFailed(items[0].message, after_batch=True))
        else:
            out.append(
                RequestFailed(
                    f"a batched server pipeline takes one value per request; got {len(items)}",
                    after_batch=True,
                )
            )
        return out

    def deadline(self) -> float | None:
        return self._opened + self._max_wait if self._values else None

    def tick(self, now: float) -> list[Any]:
        return [self._flush()] if self._values else []

    def finish(self) -> list[Any]:
        return [self._flush()] if self._values else []

    def _flush(self) -> RequestBatch:
        values, self._values = self._values, []
        return RequestBatch(values, len(values), self._name)


def check_server_stage(spec: StageSpec, sources: Sequence[SourceSpec]) -> None:
    """Raise ``TypeError`` when ``spec`` cannot follow a server source: every stage of a
    server pipeline must map one request to its answer, and a server cannot be gathered."""
    servers = [s for s in sources if s.server]
    if not servers:
        return
    if len(sources) > 1:
        raise TypeError("a server pipeline cannot be gathered with another source")
    if isinstance(spec, BatchSpec):
        if spec.max_wait is None:
            raise TypeError(
                "a batch in a server pipeline needs max_wait= (seconds): a lone request would"
                " otherwise wait for the batch to fill"
            )
        return
    if not spec.per_item:
        raise TypeError(
            "a server pipeline takes per-item stages only (task, class_task, cached_task,"
            f" filter, explode, debug) and a batch with max_wait; {spec.name!r} is a {type(spec).__name__}"
        )
