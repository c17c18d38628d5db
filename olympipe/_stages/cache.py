"""``cached_task(fn, cache_dir)``: results kept on disk, keyed by the function's code and the item.

The key of a result is ``sha256(fingerprint(fn)) / item_key(item)``, where the item's key
is a hash of a canonical encoding (sets sorted, so that string hashing cannot change it). The fingerprint
covers the function's bytecode, constants and names (nested functions included), defaults
and closure values, so editing the body invalidates the cache; olympipe 2.x keyed by the
function's name only. Entries are written to a temporary file and renamed into place, so a
crash never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import dill

from olympipe._stages.base import ItemFailed, ParallelSpec, Stage


def fingerprint(fn: Callable[..., Any]) -> str:
    """A hash of what ``fn`` computes: its code, defaults and closure values."""
    digest = hashlib.sha256()
    target = getattr(fn, "__func__", fn)  # bound methods: the function underneath
    if isinstance(target, types.FunctionType):
        _add_code(digest, target.__code__)
        digest.update(_stable_bytes(target.__defaults__))
        digest.update(_stable_bytes(target.__kwdefaults__))
        for cell in target.__closure__ or ():
            digest.update(_stable_bytes(cell.cell_contents))
    else:  # classes, partials, callable objects: their serialised form
        digest.update(dill.dumps(fn, recurse=True))
    return digest.hexdigest()


def item_key(item: Any) -> str:
    """The hex digest that names ``item``'s entry: the same in every process. A pickle is
    not: a set of strings pickles in its iteration order, which string hashing (salted per
    process) changes, so a rerun missed every entry keyed by one."""
    digest = hashlib.sha256()
    _canonical(digest, item)
    return digest.hexdigest()


def _canonical(digest: Any, value: Any) -> None:
    kind = type(value)
    if kind in (set, frozenset):
        parts = sorted(item_key(v) for v in value)
        digest.update(f"{kind.__name__}{len(parts)}:".encode())
        for part in parts:
            digest.update(part.encode())
    elif kind in (list, tuple):
        digest.update(f"{kind.__name__}{len(value)}:".encode())
        for v in value:
            _canonical(digest, v)
    elif kind is dict:  # insertion order is part of a dict's value here, as in its pickle
        digest.update(f"dict{len(value)}:".encode())
        for k, v in value.items():
            _canonical(digest, k)
            _canonical(digest, v)
    else:
        data = pickle.dumps(value, 5)
        digest.update(f"p{len(data)}:".encode())
        digest.update(data)


def _add_code(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _add_code(digest, const)
        else:
            digest.update(repr(const).encode())


def _stable_bytes(value: object) -> bytes:
    try:
        return pickle.dumps(value, 5)
    except Exception:
        return dill.dumps(value, recurse=True)  # type: ignore[no-any-return]


class CachedTaskStage(Stage):
    """Looks each item up in the cache; computes and stores what is missing."""

    def __init__(self, spec: CachedTaskSpec) -> None:
        self._fn = spec.fn
        self._dir = Path(spec.cache_dir) / spec.key

    def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)

    def process(self, items: list[Any]) -> list[Any]:
        out = []
        for item in items:
            path = self._dir / (item_key(item) + ".pkl")
            try:
                with path.open("rb") as f:
                    out.append(pickle.load(f))
                continue
            except (FileNotFoundError, EOFError, pickle.UnpicklingError):
                pass
            try:
                result = self._fn(item)
            except Exception as exc:
                raise ItemFailed(item) from exc
            self._store(path, result)
            out.append(result)
        return out

    def _store(self, path: Path, result: Any) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(result, f, 5)
            os.replace(tmp, path)  # atomic: readers see the old state or the whole entry
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


@dataclass(frozen=True)
class CachedTaskSpec(ParallelSpec):
    """``cached_task(task, cache_dir, count)``."""

    fn: Callable[[Any], Any] = field(default=lambda x: x)
    cache_dir: str = ""
    key: str = ""

    per_item: ClassVar[bool] = True
    one_to_one: ClassVar[bool] = True

    def make(self) -> Stage:
        return CachedTaskStage(self)
