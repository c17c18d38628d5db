"""The engine protocol: what ``Pipeline`` needs from whatever runs a plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from olympipe._graph import Plan, RunOptions
from olympipe.stats import RunStats


class Execution(Protocol):
    """One run of a plan on an engine.

    ``start`` is idempotent; ``events`` yields ``(sink index, chunk)`` in order per sink
    until every sink has ended and raises the run's first failure; ``stats`` may be called
    from another thread during the run; ``close`` releases everything on every exit path
    and is idempotent.
    """

    plan: Plan

    def start(self) -> None:
        """Start the run now."""

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """``(sink index, chunk)`` in order per sink."""
        ...

    def stats(self) -> RunStats:
        """Per-stage figures so far."""
        ...

    def end_sources(self, node_ids: set[int]) -> None:
        """End the streams of these source nodes after what they have already read."""

    def finished(self) -> int:
        """How many source items, from the first this run read, have had everything they
        produced taken from ``events`` (``resume=``); callable from another thread."""
        ...

    def close(self) -> None:
        """Stop and release everything."""


@runtime_checkable
class Engine(Protocol):
    """Something that runs plans: ``engine.execute(plan, options)`` returns an
    :class:`Execution` that has not started yet."""

    name: str

    def execute(self, plan: Plan, options: RunOptions) -> Execution:
        """Prepare a run of ``plan``."""
        ...


ENGINE_NAMES = ("local", "inline", "ray")


def check_engine(engine: object) -> None:
    """Reject an unknown engine at build time."""
    if engine is None or isinstance(engine, Engine):
        return
    if isinstance(engine, str):
        if engine not in ENGINE_NAMES:
            raise ValueError(f"engine must be one of {ENGINE_NAMES} or an engine object, got {engine!r}")
        return
    raise TypeError(f"engine must be a name or an engine object, got {type(engine).__name__}")


def resolve_engine(engine: str | Engine | None) -> Engine:
    """The engine object for a name (``None`` is ``"local"``) or the engine itself."""
    check_engine(engine)
    if engine is None or engine == "local":
        from olympipe._engines.local import LocalEngine

        return LocalEngine()
    if engine == "inline":
        from olympipe._engines.inline import InlineEngine

        return InlineEngine()
    if engine == "ray":
        from olympipe._engines.ray import RayEngine

        return RayEngine()
    assert isinstance(engine, Engine)
    return engine


class Around:
    """A run wrapped by something that lives as long as it (metrics, a trace): every call
    goes to the run; a subclass adds to :meth:`start` and :meth:`close`."""

    def __init__(self, run: Execution) -> None:
        self.plan = run.plan
        self._run = run

    def start(self) -> None:
        """Start the run (idempotent)."""
        self._run.start()

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """The run's events; starts it first, as the engines' ``events`` do."""
        self.start()
        return self._run.events()

    def stats(self) -> RunStats:
        """The run's figures so far."""
        return self._run.stats()

    def end_sources(self, node_ids: set[int]) -> None:
        """End the run's sources after what they have read."""
        self._run.end_sources(node_ids)

    def finished(self) -> int:
        """The source items the run has finished with."""
        return self._run.finished()

    def close(self) -> None:
        """Close the run."""
        self._run.close()
