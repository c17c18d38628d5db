"""count="auto" on Ray: actor pools that the controller grows and shrinks during the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from olympipe import RayEngine
from tests.tuning import _resizing as r

pytestmark = pytest.mark.timeout(180)
N = 1200


def test_actors_move_to_the_costly_stage_and_every_item_comes_out_in_order(ray_engine: RayEngine) -> None:
    p = r.shifting(range(N))
    assert p.wait_for_result(engine=ray_engine) == list(range(N))
    stats = p.stats()
    moves = [(stage, old, new) for _t, stage, old, new in stats.resizes]
    assert ("cheap", 2, 1) in moves
    assert ("heavy", 1, 2) in moves
    rows = {row.name: row for row in stats.rows}
    assert [rows[name].auto for name in ("cheap", "batch", "heavy")] == [True, False, True]
    assert (rows["cheap"].min_workers, rows["cheap"].max_workers) == (1, 2)
    assert (rows["heavy"].min_workers, rows["heavy"].max_workers) == (1, 2)
    assert rows["heavy"].workers == 2
    assert rows["heavy"].items_in == rows["cheap"].items_out == N


def test_a_retired_actor_runs_close_method_once(ray_engine: RayEngine, tmp_path: Path) -> None:
    def first(head: Any) -> Any:
        return head.class_task(
            r.Closing, r.Closing.take, class_args=[str(tmp_path)], close_method=r.Closing.close, count="auto"
        )

    p = r.shifting(range(N), first)
    assert p.wait_for_result(engine=ray_engine) == list(range(N))
    assert ("take", 2, 1) in [(s, o, n) for _t, s, o, n in p.stats().resizes]
    closed = sorted(tmp_path.iterdir())
    assert len(closed) == 2  # the retired actor and the one left at the end
    assert sum(int(c.read_text()) for c in closed) == N


def test_breaking_out_during_resizes_leaves_no_actor_behind(ray_engine: RayEngine) -> None:
    p = r.shifting(range(10 * N))
    for _x in p.start(engine=ray_engine):
        if p.stats().resizes:
            break
    assert p.stats().resizes  # the leak guard checks that no actor is left
