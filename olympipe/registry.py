"""The olympipe 2.x registry of decorated functions, kept so that 2.x code runs unchanged.

The decorators in :mod:`olympipe.decorators` record what they mark here, by name; nothing
in olympipe reads the registry to run a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Process-wide by contract: olympipe 2.x's decorators register into one registry per process.
_sources: dict[str, Callable[..., Any]] = {}
_tasks: dict[str, Callable[..., Any]] = {}
_filters: dict[str, Callable[..., Any]] = {}
_class_tasks: dict[str, dict[str, Any]] = {}
_splitters: dict[str, Callable[..., Any]] = {}


def register_source(fn: Callable[..., Any], name: str | None = None) -> None:
    """Record a source function under ``name`` (default: its ``__name__``)."""
    _sources[name or fn.__name__] = fn


def register_task(fn: Callable[..., Any], name: str | None = None) -> None:
    """Record a task function."""
    _tasks[name or fn.__name__] = fn


def register_filter(fn: Callable[..., Any], name: str | None = None) -> None:
    """Record a filter function."""
    _filters[name or fn.__name__] = fn


def register_class_task(
    cls: type[Any], method: str, close: str | None = None, name: str | None = None
) -> None:
    """Record a class used by ``class_task`` with the names of its method and close method."""
    _class_tasks[name or cls.__name__] = {"class": cls, "method": method, "close": close}


def register_splitter(fn: Callable[..., Any], name: str | None = None) -> None:
    """Record a split function."""
    _splitters[name or fn.__name__] = fn


def clear_registry() -> None:
    """Forget everything recorded."""
    for table in (_sources, _tasks, _filters, _class_tasks, _splitters):
        table.clear()
