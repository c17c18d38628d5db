"""on_full=: what a source's policy keeps and drops, on every engine, counted exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline
from tests.realtime._gates import Gates

pytestmark = pytest.mark.timeout(120)
N = 50


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", [0, N - 1]), ("drop_newest", [0, 1])])
def test_a_dropping_source_keeps_what_its_policy_says(
    engine: Any, tmp_path: Path, policy: str, kept: list[int]
) -> None:
    """While the stage holds item 0, the source gives all the others: one waiting place,
    so every other item but the newest (or the first) is dropped."""
    gates = Gates(tmp_path)
    p = Pipeline(gates.source(N), on_full=policy).task(gates.hold_first)
    assert p.wait_for_result(engine=engine) == kept
    stats = p.stats()
    assert stats.rows[0].dropped == N - 2
    assert stats.source_items == N == stats.rows[0].items_out + stats.rows[0].dropped


def test_dropped_4_mib_frames_leave_nothing_in_shared_memory(tmp_path: Path) -> None:
    """Frames dropped at the source never reach shared memory; the kept ones are freed
    (the leak guard checks /dev/shm after the test)."""
    gates = Gates(tmp_path)
    size = 4 << 20
    p = Pipeline(gates.frames(20, size), on_full="drop_oldest").task(gates.hold_first_frame)
    assert p.wait_for_result() == [size, size + 19]
    assert p.stats().rows[0].dropped == 18


def test_block_drops_nothing(engine: Any) -> None:
    p = Pipeline(iter(range(N)), on_full="block").task(abs)
    assert p.wait_for_result(engine=engine) == list(range(N))
    assert p.stats().rows[0].dropped == 0


def test_what_a_dropping_source_keeps_goes_on_in_order(engine: Any) -> None:
    p = Pipeline(iter(range(2000)), on_full="drop_oldest").task(abs).filter(lambda x: x % 3 != 0)
    got = p.wait_for_result(engine=engine)
    assert got == sorted(got)
    stats = p.stats()
    rows = {r.name: r for r in stats.rows}
    assert stats.source_items == 2000
    assert rows["abs"].items_in + rows["abs"].dropped == 2000


@pytest.mark.parametrize("bad", ["drop", "BLOCK", ""])
def test_an_unknown_policy_is_a_value_error_listing_the_choices(bad: str) -> None:
    with pytest.raises(ValueError, match="'block', 'drop_oldest', 'drop_newest'"):
        Pipeline(range(3), on_full=bad)


def test_a_policy_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="on_full"):
        Pipeline(range(3), on_full=None)  # type: ignore[arg-type]
