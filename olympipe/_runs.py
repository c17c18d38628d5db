"""The runs under way in this process: closed at exit, and the iterator sources they have
read (another run of them would silently get only what is left)."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Iterator
from typing import Any

from olympipe._engines.base import Execution
from olympipe._graph import Node, Plan, SourceSpec
from olympipe.errors import PipelineError

_EXITED = [False]  # set by the atexit hook: every run is closed, the interpreter is going


# Runs under way (for kill_generator_source from another thread); dropped when closed.
_running: weakref.WeakSet[Execution] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    """Close the runs still under way (an iterator left open) while the runtime can."""
    _EXITED[0] = True
    for run in list(_running):
        run.close()


def _close(run: Execution) -> None:
    _running.discard(run)
    try:
        run.close()
    finally:
        _mark_spent(run)


# Iterator sources a run has read from: another run would silently get what is left of
# them (often nothing), so it is refused instead.
_spent: weakref.WeakValueDictionary[int, Node] = weakref.WeakValueDictionary()


def _mark_spent(run: Execution) -> None:
    for node in run.plan.sources:
        assert isinstance(node.spec, SourceSpec)
        if _consumable(node.spec.iterable) and not node.spec.server:
            _spent[id(node.spec.iterable)] = node


# Sources that a run started with start() is consuming: another run of them would
# silently miss what that run takes, so it is refused instead.
_claimed: weakref.WeakValueDictionary[int, Node] = weakref.WeakValueDictionary()


def _claim_sources(run: Execution) -> None:
    for node in run.plan.sources:
        assert isinstance(node.spec, SourceSpec)
        if _consumable(node.spec.iterable):
            _claimed[node.id] = node


def _check_sources_free(plan: Plan) -> None:
    for node in plan.sources:
        assert isinstance(node.spec, SourceSpec)
        if _spent.get(id(node.spec.iterable)) is node:
            raise RuntimeError(
                "this pipeline's source is an iterator (a generator, say) that an earlier run"
                " already read: running it again would give only what is left of it. Build the"
                " pipeline again from a fresh iterator, or give it a list or a range"
            )
        if _claimed.get(node.id) is node:
            raise RuntimeError(
                "this pipeline's source is an iterator already being consumed by a run started"
                " with start(); run the started pipeline itself, or build the whole graph before"
                " start() (items would otherwise be missing)"
            )


def _consumable(iterable: object) -> bool:
    """Whether iterating ``iterable`` uses it up (an iterator or generator, not a list)."""
    try:
        return iter(iterable) is iterable  # type: ignore[call-overload]
    except TypeError:
        return False


def _events(run: Execution) -> Iterator[tuple[int, list[Any]]]:
    """``run.events()``, with a stage's ``KeyboardInterrupt`` or ``SystemExit`` raised as
    itself (every engine reports it as a stage failure): Ctrl-C stays Ctrl-C and an exit
    keeps its code. It still says where it came from: ``.stage`` and ``.item_repr``."""
    try:
        yield from run.events()
    except PipelineError as error:
        cause = error.__cause__
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            cause.stage = error.stage  # type: ignore[union-attr]
            cause.item_repr = error.item_repr  # type: ignore[union-attr]
            raise cause from None
        raise
