"""The olympipe 2.x decorators: markers that record a function and return it unchanged.

``@task``, ``@filter``, ``@splitter`` and ``@source`` mark functions, ``source_from(x)``
marks an iterable and ``@class_task(method, close)`` a class; each is recorded in
:mod:`olympipe.registry`. ``@filter`` also checks that a declared return type is ``bool``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, TypeVar

from olympipe import registry

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
I = TypeVar("I")  # noqa: E741


def source(fn: F) -> F:
    """Mark a generator function as a pipeline source."""
    registry.register_source(fn)
    return fn


def source_from(iterable: I, name: str | None = None) -> I:
    """Record any iterable (a list, a range, a generator) as a source; returns it."""
    label = name or getattr(iterable, "__name__", None) or f"source_{id(iterable)}"

    def replay() -> Any:
        yield from iterable  # type: ignore[misc]

    replay.__name__ = replay.__qualname__ = label
    registry.register_source(replay)
    return iterable


def task(fn: F) -> F:
    """Mark a transformation function."""
    registry.register_task(fn)
    return fn


def filter(fn: F) -> F:
    """Mark a filter function; a declared return type other than ``bool`` is a ``TypeError``."""
    try:
        declared = typing.get_type_hints(fn).get("return", bool)
    except Exception:  # annotations that do not resolve are not checked, as in 2.x
        declared = bool
    if declared is not bool:
        name = getattr(declared, "__name__", declared)
        raise TypeError(f"@filter: {fn.__name__!r} must return bool, not {name}")
    registry.register_filter(fn)
    return fn


def splitter(fn: F) -> F:
    """Mark a function routing each item to ``n`` outputs (a tuple, ``None`` to skip one)."""
    registry.register_splitter(fn)
    return fn


def class_task(method: str, close: str | None = None, name: str | None = None) -> Callable[[C], C]:
    """Mark a class used with ``Pipeline.class_task``, naming its method and close method."""

    def mark(cls: C) -> C:
        registry.register_class_task(cls, method=method, close=close, name=name)
        return cls

    return mark
