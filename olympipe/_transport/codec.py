"""Serialisation: one pickle per chunk per hop, dill for stage definitions.

Items travel as a pickled ``list`` (protocol 5), so the fixed cost of a pickle call is paid
once per chunk. Stage definitions (lambdas and closures included) travel once per worker with
``dill``. When a chunk will not pickle, :func:`describe_unpicklable` finds the item at fault
so the error can name its type instead of the engine's internals.
"""

from __future__ import annotations

import pickle
from typing import Any

import dill

PROTOCOL = 5


class EncodeError(Exception):
    """A value could not be pickled; ``type_name`` names its type."""

    def __init__(self, type_name: str, reason: str, item: object = None) -> None:
        super().__init__(f"cannot pickle a value of type {type_name}: {reason}")
        self.type_name = type_name
        self.reason = reason
        self.item = item


class DecodeError(Exception):
    """A chunk could not be unpickled by its consumer."""


def encode_chunk(items: list[Any]) -> bytes:
    """Pickle a chunk of items; raise :class:`EncodeError` naming the culprit's type."""
    try:
        return pickle.dumps(items, PROTOCOL)
    except Exception as exc:
        raise describe_unpicklable(items, exc) from exc


def decode_chunk(payload: bytes | memoryview) -> list[Any]:
    """Unpickle a chunk; raise :class:`DecodeError` when that fails."""
    try:
        items: list[Any] = pickle.loads(payload)
    except Exception as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
    return items


def describe_unpicklable(items: list[Any], exc: Exception) -> EncodeError:
    """Find the first item of ``items`` that does not pickle and describe it."""
    for item in items:
        try:
            pickle.dumps(item, PROTOCOL)
        except Exception as item_exc:
            return EncodeError(_type_name(item), f"{type(item_exc).__name__}: {item_exc}", item)
    return EncodeError("list", f"{type(exc).__name__}: {exc}")


def _type_name(value: object) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dumps_definition(obj: object) -> bytes:
    """Serialise a stage definition (functions, lambdas, closures) for another process."""
    data: bytes = dill.dumps(obj, protocol=PROTOCOL, recurse=True)
    return data


def loads_definition(data: bytes) -> Any:
    """The inverse of :func:`dumps_definition`."""
    return dill.loads(data)
