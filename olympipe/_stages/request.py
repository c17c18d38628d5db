"""Stages of a server pipeline: an error fails its own request, not the run.

The HTTP side is ``olympipe/_server.py``; this module is what workers need, without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from olympipe._graph import SourceSpec
from olympipe._stages.base import ItemFailed, Stage, StageSpec
from olympipe._transport.codec import dumps


@dataclass(frozen=True)
class RequestFailed:
    """The marker a failed request's chunk carries through the remaining stages."""

    message: str


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
        return _RequestStage(self.inner.make())


class _RequestStage(Stage):
    def __init__(self, inner: Stage) -> None:
        self._inner = inner

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def rerun(
        self,
        items: list[Any],
        died: Exception,
        culprits: dict[int, Exception],
        probe: Callable[[int], None],
    ) -> Any:
        """A chunk is one request: the worker died on it, so it fails (500)."""
        probe(1)  # answering it is all that is left to do
        return [RequestFailed(f"{type(died).__name__}: {died}")]

    def track_items(self, array: Any, at: int) -> bool:
        return False  # a crash fails the whole request

    def process(self, items: list[Any]) -> Any:
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


def check_server_stage(spec: StageSpec, sources: Sequence[SourceSpec]) -> None:
    """Raise ``TypeError`` when ``spec`` cannot follow a server source: every stage of a
    server pipeline must map one request to its answer, and a server cannot be gathered."""
    servers = [s for s in sources if s.server]
    if not servers:
        return
    if len(sources) > 1:
        raise TypeError("a server pipeline cannot be gathered with another source")
    if not spec.per_item:
        raise TypeError(
            "a server pipeline takes per-item stages only (task, class_task, cached_task,"
            f" filter, explode, debug); {spec.name!r} is a {type(spec).__name__}"
        )
