"""on_full=: what a source's policy keeps and drops, on every engine, counted exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline
from olympipe._core.flow import OnFull
from tests.engines import stagefns as f
from tests.flow._gates import Gates

pytestmark = pytest.mark.timeout(120)
N = 50


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", [0, N - 1]), ("drop_newest", [0, 1])])
def test_a_dropping_source_keeps_what_its_policy_says(
    engine: Any, tmp_path: Path, policy: OnFull, kept: list[int]
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
def test_an_unknown_policy_is_a_value_error_listing_the_choices(bad: Any) -> None:
    with pytest.raises(ValueError, match="'block', 'drop_oldest', 'drop_newest'"):
        Pipeline(range(3), on_full=bad)


def test_a_policy_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="on_full"):
        Pipeline(range(3), on_full=None)  # type: ignore[arg-type]


def _stage_policy_run(tmp_path: Path, policy: OnFull, n: int = 30) -> tuple[list[int], Any]:
    """The source gives 0, then (once the dropping stage holds it) 1 .. n-1, one item per
    chunk; the stage before it lets 0 go when it reaches n-1, so chunks 1 .. n-2 at least
    wait at the dropping stage's input."""
    gates = Gates(tmp_path)
    gates.last = n - 1
    p = (
        Pipeline(gates.source_only(n))
        .task(gates.pass_on, max_items_per_worker=1)  # a worker per item: chunks of one
        .task(gates.hold_first, on_full=policy)
    )
    return p.wait_for_result(), p.stats()


def test_drop_oldest_at_a_stage_keeps_the_newest_waiting(tmp_path: Path) -> None:
    got, stats = _stage_policy_run(tmp_path, "drop_oldest")
    assert got[0] == 0
    assert got[-1] == 29  # the newest is never dropped
    assert len(got) <= 3
    row = stats.rows[-1]
    assert row.items_in + row.dropped == 30
    assert row.dropped >= 27


def test_drop_newest_at_a_stage_keeps_the_oldest_waiting(tmp_path: Path) -> None:
    got, stats = _stage_policy_run(tmp_path, "drop_newest")
    assert got[:2] == [0, 1]
    assert len(got) <= 3
    row = stats.rows[-1]
    assert row.items_in + row.dropped == 30
    assert row.dropped >= 27


def test_a_stage_policy_with_crash_isolation_is_refused() -> None:
    with pytest.raises(ValueError, match="on_error or max_items_per_worker"):
        Pipeline(range(3)).task(abs, on_full="drop_oldest", on_error=lambda x, e: None)
    with pytest.raises(ValueError, match="'block', 'drop_oldest', 'drop_newest'"):
        Pipeline(range(3)).task(abs, on_full="newest")  # type: ignore[call-overload]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_a_stage_policy_on_ray_drops_what_waits_and_counts_it(ray_engine: Any, policy: OnFull) -> None:
    """The driver decides when a chunk's turn at the stage comes: the chunks of a source
    that is always ahead wait, and all but one of them at a time are dropped."""
    from olympipe import RayEngine

    engine = RayEngine(chunk_size=1)  # on the session's Ray (the fixture started it)
    p = Pipeline(range(200)).task(f.plus_one).task(abs, on_full=policy)
    got = p.wait_for_result(engine=engine)
    assert got == sorted(got)
    assert len(set(got)) == len(got)
    row = {r.name: r for r in p.stats().rows}["abs"]
    assert row.items_in + row.dropped == 200
    assert row.dropped > 0
    if policy == "drop_oldest":
        assert got[-1] == 200  # the newest is never dropped


def test_inline_drops_nothing_at_a_stage_where_nothing_waits() -> None:
    p = Pipeline(range(50)).task(abs, on_full="drop_oldest")
    assert p.wait_for_result(engine="inline") == list(range(50))
    assert p.stats().rows[0].dropped == 0


def test_branches_of_a_dropping_source_see_the_same_items(tmp_path: Path) -> None:
    """Drops happen before the source's items branch out: a join never pairs different
    items."""
    gates = Gates(tmp_path)
    source = Pipeline(gates.source(N), on_full="drop_oldest")
    held, plain = Pipeline.wait_for_all_results([source.task(gates.hold_first), source.task(abs)])
    assert held == plain == [0, N - 1]
    (tmp_path / "again").mkdir()
    joined = Gates(tmp_path / "again")
    again = Pipeline(joined.source(N), on_full="drop_newest")
    merged = again.task(joined.hold_first).gather(again.task(abs)).wait_for_result()
    assert sorted(merged) == [0, 0, 1, 1]
