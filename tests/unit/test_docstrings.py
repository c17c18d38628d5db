"""help(Pipeline) explains every parameter of every public method, and what it raises."""

from __future__ import annotations

import inspect

import pytest

from olympipe import Pipeline

PUBLIC = sorted(
    name
    for name, value in vars(Pipeline).items()
    if (not name.startswith("_") or name in ("__init__", "__iter__"))
    and (callable(value) or isinstance(value, (staticmethod, classmethod)))
)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_parameter_is_named_in_the_docstring(name: str) -> None:
    method = getattr(Pipeline, name)
    doc = inspect.getdoc(method) or ""
    assert doc, f"{name} has no docstring"
    params = [p for p in inspect.signature(method).parameters if p not in ("self", "cls")]
    missing = [p for p in params if p not in doc]
    assert not missing, f"{name}: {missing} not described"


@pytest.mark.parametrize("name", ["__init__", "task", "class_task", "batch", "wait_for_result", "stats"])
def test_the_main_methods_say_what_they_raise(name: str) -> None:
    assert "Raises:" in (inspect.getdoc(getattr(Pipeline, name)) or "")
