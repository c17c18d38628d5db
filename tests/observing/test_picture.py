"""print_graph("plan.svg"): the plan as a picture through graphviz, with figures after a run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from olympipe import Pipeline
from olympipe._graph import Plan, plan_for
from olympipe._picture import dot_source
from tests.helpers import plus_one, slow, times_2

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")


def build() -> Pipeline[int]:
    return Pipeline(range(50)).task(plus_one, count=2).task(times_2).filter(lambda x: x > 4)


def test_the_dot_source_has_every_stage_and_result() -> None:
    p = build()
    dot = dot_source(_plan(p))
    for name in ("plus_one x2", "times_2", "<lambda>", "source (range, 50 items)", "result 0"):
        assert name in dot
    assert "bottleneck" not in dot


@needs_dot
def test_a_picture_before_and_after_a_run(tmp_path: Path) -> None:
    p = build()
    p.print_graph(tmp_path / "before.svg")
    before = (tmp_path / "before.svg").read_text()
    assert before.startswith("<?xml")
    assert "plus_one" in before
    assert "bottleneck" not in before
    p.wait_for_result()
    p.print_graph(tmp_path / "after.svg")
    after = (tmp_path / "after.svg").read_text()
    assert "50 in, 50 out" in after
    slow_one = Pipeline(range(20)).task(plus_one).task(slow)
    slow_one.wait_for_result()
    assert slow_one.stats().bottleneck == "slow"
    slow_one.print_graph(tmp_path / "slow.svg")
    marked = (tmp_path / "slow.svg").read_text()
    assert "bottleneck" in marked
    assert "#f4a261" in marked
    p.print_graph(tmp_path / "plan.png")
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert p._repr_svg_() is not None


def test_without_dot_a_picture_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ImportError, match="install graphviz"):
        build().print_graph(tmp_path / "plan.svg")
    assert build()._repr_svg_() is None
    build().print_graph(tmp_path / "plan.txt")  # any other suffix: the text, as in 2.x
    assert "plus_one" in (tmp_path / "plan.txt").read_text()


def _plan(p: Pipeline[int]) -> Plan:
    return plan_for([p._endpoint])
