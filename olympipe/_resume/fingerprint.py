"""A digest of what a graph computes: its shape, each stage's kind and parameters, and the
code of each function (its bytecode, constants and names, the values its closure and
defaults hold), so that a resumed run refuses a graph that would compute something else.

Worker counts and flow settings are left out: they change how fast, not what. Values that
are neither plain data nor code count by their type only (a model object, a connection).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
from typing import Any

from olympipe._graph import Plan, SourceSpec

_HOW_NOT_WHAT = {"workers", "auto", "on_full", "concurrency"}
_MAX_DEPTH = 8
_MAX_ITEMS = 1000  # a longer container counts by its type and length


def fingerprint(plan: Plan) -> str:
    """The hex digest of ``plan`` (see the module's docstring)."""
    h = hashlib.blake2b(digest_size=16)
    position = {node.id: i for i, node in enumerate(plan.nodes)}
    for node in plan.nodes:
        spec = node.spec
        _text(h, type(spec).__qualname__)
        _text(h, repr([(position[up.id], slot) for up, slot in node.inputs]))
        if isinstance(spec, SourceSpec):
            continue  # the items themselves are what the progress counts
        for f in dataclasses.fields(spec):
            if f.name not in _HOW_NOT_WHAT:
                _text(h, f.name)
                _feed(h, getattr(spec, f.name), 0)
    _text(h, repr([(position[node.id], slot) for node, slot in plan.sinks]))
    return h.hexdigest()


def _text(h: Any, text: str) -> None:
    h.update(text.encode())
    h.update(b"\0")


def _feed(h: Any, value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        _text(h, "...")
        return
    depth += 1
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        _text(h, repr(value))
    elif isinstance(value, (tuple, list)):
        _text(h, f"{type(value).__name__}{len(value)}")
        if len(value) <= _MAX_ITEMS:
            for element in value:
                _feed(h, element, depth)
    elif isinstance(value, dict):
        _text(h, f"dict{len(value)}")
        if len(value) <= _MAX_ITEMS:
            for key in sorted(value, key=repr):
                _feed(h, key, depth)
                _feed(h, value[key], depth)
    elif isinstance(value, types.MethodType):
        _feed(h, value.__func__, depth)
    elif isinstance(value, functools.partial):
        _feed(h, (value.func, value.args, value.keywords), depth)
    elif isinstance(value, types.FunctionType):
        _code(h, value.__code__, depth)
        _feed(h, value.__defaults__, depth)
        _feed(h, value.__kwdefaults__, depth)
        for cell in value.__closure__ or ():
            try:
                _feed(h, cell.cell_contents, depth)
            except ValueError:  # an empty cell
                _text(h, "<empty>")
    elif isinstance(value, (staticmethod, classmethod)):
        _feed(h, value.__func__, depth)
    elif isinstance(value, property):
        _feed(h, (value.fget, value.fset), depth)
    elif isinstance(value, type):
        _text(h, value.__qualname__)  # not its module: a script run or imported is the same class
        for name, attr in sorted(vars(value).items()):
            if isinstance(attr, (types.FunctionType, staticmethod, classmethod, property)):
                _text(h, name)
                _feed(h, attr, depth)
    elif isinstance(value, types.CodeType):
        _code(h, value, depth)
    elif isinstance(
        value, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)
    ):
        _text(h, f"{getattr(value, '__module__', None)}.{value.__qualname__}")
    else:
        _text(h, type(value).__qualname__)


def _code(h: Any, code: types.CodeType, depth: int) -> None:
    h.update(code.co_code)
    _text(h, repr(code.co_names))
    for const in code.co_consts:
        _feed(h, const, depth)
