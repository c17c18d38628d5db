"""cached_task: a rerun does not recompute, a changed function does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from olympipe import Pipeline, PipelineError
from olympipe._stages.cache import fingerprint


def counting(log: Path):  # type: ignore[no-untyped-def]
    def square(x: int) -> int:
        with log.open("a") as f:  # a side effect visible across processes
            f.write(f"{x}\n")
        return x * x

    return square


def calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_rerun_does_not_call_the_function(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fn = counting(log)
    cache = tmp_path / "cache"
    first = Pipeline(range(20)).cached_task(fn, cache, count=2).uncache().wait_for_result()
    assert first == [x * x for x in range(20)]
    assert calls(log) == 20
    again = Pipeline(range(25)).cached_task(fn, cache).wait_for_result()
    assert again == [x * x for x in range(25)]
    assert calls(log) == 25  # only the 5 new items were computed
    assert not list(cache.rglob(".tmp-*")), "no half-written entries"


def test_changed_function_invalidates(tmp_path: Path) -> None:
    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 2

    k = 1

    def closure(x: int) -> int:
        return x + k

    fp = fingerprint(closure)
    k = 2
    assert fingerprint(f) != fingerprint(g)
    assert fingerprint(closure) != fp
    cache = tmp_path / "c"
    assert Pipeline([1]).cached_task(f, cache).wait_for_result() == [2]
    assert Pipeline([1]).cached_task(g, cache).wait_for_result() == [3]


def test_cached_task_errors_surface(tmp_path: Path) -> None:
    def bad(x: int) -> int:
        raise ValueError("nope")

    with pytest.raises(PipelineError):
        Pipeline([1]).cached_task(bad, tmp_path).wait_for_result()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".pkl")]


def test_an_item_key_is_the_same_in_every_process() -> None:
    """A set of strings pickles in an order string hashing (salted per process) changes."""
    import subprocess
    import sys

    code = (
        "from olympipe._stages.cache import item_key;"
        "print(item_key(({'alpha', 'beta', 'gamma', 'delta', 'eps'},"
        " frozenset('xyzw'), [1, {'k': {'a', 'b'}}])))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(6)
    }
    assert len(keys) == 1
