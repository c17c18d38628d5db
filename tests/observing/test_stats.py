"""stats(): per-stage figures from the shared counters, and the bottleneck named."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from olympipe import Pipeline, RunStats


def quick(x: int) -> int:
    return x


def slow_stage(x: int) -> int:
    time.sleep(0.01)
    return x


def test_stats_name_the_slow_stage() -> None:
    p = Pipeline(range(60)).task(quick).task(slow_stage).filter(lambda x: x % 2 == 0, name="evens")
    assert p.wait_for_result() == list(range(0, 60, 2))
    stats = p.stats()
    assert isinstance(stats, RunStats)
    assert [r.name for r in stats.rows] == ["quick", "slow_stage", "evens"]
    by_name = {r.name: r for r in stats.rows}
    assert by_name["quick"].items_in == 60
    assert by_name["evens"].items_out == 30
    assert stats.bottleneck == "slow_stage"
    assert by_name["slow_stage"].busy_pct > 60
    assert by_name["quick"].busy_pct < 20  # done early: neither busy nor blocked
    assert by_name["slow_stage"].peak_rss_mb > 1
    text = str(stats)
    assert "slow_stage <" in text
    assert "busy" in text


def test_source_bottleneck() -> None:
    def trickle() -> Iterator[int]:
        for i in range(20):
            time.sleep(0.01)
            yield i

    p = Pipeline(trickle()).task(quick)
    p.wait_for_result()
    assert p.stats().bottleneck == "source"
    assert "source" in p.stats().hint


def test_stats_before_any_run() -> None:
    with pytest.raises(RuntimeError):
        Pipeline([1]).task(quick).stats()


def test_graph_shows_stages_workers_and_branches() -> None:
    p = Pipeline(range(10))
    left, right = p.task(quick, count=3).split(lambda x: (x, -x), n=2)
    text = left.gather(right.task(slow_stage)).graph([p.filter(None)])
    assert text.splitlines()[0] == "source (range, 10 items)"
    assert "quick x3 [task]" in text
    assert "[0] gather [gather]" in text
    assert "(see above)" in text
    assert text.count("=> result") == 2


_made: dict[str, object] = {}


def same_big_array(i: int) -> object:
    """The same 16 MiB array every time, made in the worker (never inherited): the stage's
    own work is nothing, its output's bytes are all it costs."""
    import numpy as np

    if "a" not in _made:
        _made["a"] = np.ones(16 << 20, dtype=np.uint8)
    return _made["a"]


def test_writing_large_outputs_counts_as_busy_not_blocked() -> None:
    """Copying a large output into shared memory is the stage's work: counted as blocked, a
    stage that spends its time there read as waiting on the next one, and the hint blamed
    the source."""
    p = Pipeline(range(40)).task(same_big_array)
    for a in p:  # each result dropped at once: nothing downstream holds the stage back
        del a
    row = p.stats().rows[0]
    assert row.busy_pct > row.blocked_out_pct, p.stats()
    assert p.stats().bottleneck == "same_big_array", p.stats()


def test_stats_show_themselves_in_a_notebook_as_html() -> None:
    from html.parser import HTMLParser

    p = Pipeline(range(200)).task(abs).task(abs, name="<b>again")
    p.wait_for_result()
    html = p.stats()._repr_html_()

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows = 0
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.rows += tag == "tr"

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    cells = Cells()
    cells.feed(html)
    assert cells.rows == 3  # the header and a row per stage
    assert "<b>again" in cells.text  # a name is escaped, shown as written
    assert "200" in cells.text
    assert any("items from the source" in t for t in cells.text)
