"""``explode`` on Ray: elements go on in bounded parts, as they are made.

An actor call returns one part of an exploded chunk; the actor keeps the rest of the
iteration, and the driver asks for the next part when it collects this one. So an endless
``explode`` streams, a ``limit`` after it stops it, and order is kept with any count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from olympipe import Pipeline, RayEngine
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(180)

#: Elements an explode may make beyond what a limit keeps: the parts in flight (one part
#: ahead in the actor, one being collected) of at most 4,096 elements each, and then some.
READ_AHEAD = 50_000


def test_an_endless_explode_stops_at_a_limit(ray_engine: RayEngine, tmp_path: Path) -> None:
    made = str(tmp_path / "made")
    pipe = Pipeline([0]).explode(f.CountingNaturals(made)).limit(1000)
    assert pipe.wait_for_result(engine=ray_engine) == list(range(1000))
    assert f.made_so_far(made) <= READ_AHEAD


def test_a_long_explode_makes_only_what_a_limit_needs(ray_engine: RayEngine, tmp_path: Path) -> None:
    made = str(tmp_path / "made")
    pipe = Pipeline([0]).explode(f.CountingNaturals(made, 2_000_000)).task(f.plus_one).limit(1000)
    assert pipe.wait_for_result(engine=ray_engine) == list(range(1, 1001))
    assert f.made_so_far(made) <= READ_AHEAD


def test_iterating_an_endless_explode_streams_and_stops(ray_engine: RayEngine, tmp_path: Path) -> None:
    made = str(tmp_path / "made")
    pipe = Pipeline([0], engine=ray_engine).explode(f.CountingNaturals(made)).task(f.plus_one, count=2)
    got = []
    for x in pipe:
        got.append(x)
        if len(got) == 20_000:
            break
    assert got == list(range(1, 20_001))
    assert f.made_so_far(made) <= 20_000 + READ_AHEAD


def test_long_explodes_keep_order_and_count_every_element(ray_engine: RayEngine) -> None:
    def build() -> Pipeline[list[int]]:
        return Pipeline(range(8)).explode(f.run_of).task(f.plus_one, count=2).batch(1000)

    ray_run, local_run = build(), build()
    got = ray_run.wait_for_result(engine=ray_engine)
    assert got == local_run.wait_for_result()
    assert [x for batch in got for x in batch] == [k * 10_000 + i + 1 for k in range(8) for i in range(3000)]
    rows = {r.name: r for r in ray_run.stats().rows}
    assert (rows["run_of"].items_in, rows["run_of"].items_out) == (8, 24_000)
    assert rows["batch"].items_out == 24
