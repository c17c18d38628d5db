"""The fluent API's types, as a user's checker sees them.

``make lint`` checks this file with mypy --strict and with basedpyright: each
``assert_type`` fails the lint if a stage method's return type drifts. At run time the
assertions are no-ops and the pipelines are only built (one is run, to keep the file honest).
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type  # typing.assert_type is 3.11+

from olympipe import Pipeline, RunStats


def to_str(x: int) -> str:
    return str(x)


def length(s: str) -> int:
    return len(s)


def pairs(x: int) -> list[tuple[int, int]]:
    return [(x, x)]


async def fetch(x: int) -> bytes:
    return bytes(x)


class Model:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def predict(self, batch: list[str]) -> float:
        return len(batch) * self.scale


def halves(x: int) -> tuple[int | None, int | None]:
    return (x, None) if x % 2 else (None, x)


def plus_one(x: int) -> int:
    return x + 1


def add(x: int, acc: int) -> int:
    return x + acc


def test_stage_methods_keep_the_item_types() -> None:
    source = Pipeline(range(10))
    assert_type(source, Pipeline[int])
    assert_type(source.task(to_str), Pipeline[str])
    assert_type(source.task(to_str).task(length, count="auto"), Pipeline[int])
    assert_type(source.task(fetch), Pipeline[bytes])  # an async stage gives its awaited type
    assert_type(source.filter(lambda x: x > 2), Pipeline[int])
    assert_type(source.task(to_str).batch(4), Pipeline[list[str]])
    assert_type(source.task(to_str).batch(4).class_task(Model, Model.predict, [2.0]), Pipeline[float])
    assert_type(source.explode(pairs), Pipeline[tuple[int, int]])
    assert_type(source.reduce(0, add), Pipeline[int])
    assert_type(source.limit(3).timeout(1.0).debug(), Pipeline[int])
    assert_type(source.temporal_batch(0.5), Pipeline[list[int]])
    assert_type(source.gather(source.task(to_str)), Pipeline[Any])
    assert_type(source.split(halves), tuple[Pipeline[Any], ...])  # a branch's None skips it
    keyed = Pipeline(iter(["a", "b"]), resume="progress.olympipe", resume_key=lambda s: s.upper())
    assert_type(keyed, Pipeline[str])  # resume_key takes the source's items


def test_terminal_calls_return_typed_values() -> None:
    p = Pipeline(range(4)).task(to_str)
    result = p.wait_for_result()
    assert_type(result, list[str])
    assert result == ["0", "1", "2", "3"]
    assert_type(p.stats(), RunStats)
    assert_type(p.wait_and_reduce(0, lambda s, acc: acc + len(s)), int)
    assert_type(Pipeline.wait_for_all_results([p, p]), list[list[str]])
    counts = Pipeline(range(3)).task(plus_one)
    both = Pipeline.wait_for_all_results((p, counts))  # a tuple in, a tuple out
    assert_type(both, tuple[list[str], list[int]])
    assert both == (["0", "1", "2", "3"], [1, 2, 3])
    assert_type(Pipeline.wait_for_all_results((p, p, counts)), tuple[list[str], list[str], list[int]])
    for item in Pipeline(range(2)).task(length_of_str := to_str):
        assert_type(item, str)
    assert length_of_str(1) == "1"


def test_every_public_name_is_exported_and_documented() -> None:
    import olympipe

    assert sorted(olympipe.__all__) == sorted(set(olympipe.__all__))
    for name in olympipe.__all__:
        value = getattr(olympipe, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"olympipe.{name} has no docstring"
    public = {
        n
        for n in vars(olympipe)
        if not n.startswith("_") and not isinstance(getattr(olympipe, n), type(olympipe))
    }
    assert public <= set(olympipe.__all__) | {"annotations"}, public - set(olympipe.__all__)


def test_the_docs_list_every_public_name() -> None:
    import re
    from pathlib import Path

    import olympipe

    api = (Path(__file__).parents[2] / "docs" / "API.md").read_text()
    section = api.split("## Public names", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == set(olympipe.__all__)
    for name in olympipe.__all__:
        exec(f"from olympipe import {name}", {})  # each imports on its own
