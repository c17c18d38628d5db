"""trace="run.json": a run's timeline in the Chrome trace event format, on every engine."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline
from tests.helpers import plus_one, slow

pytestmark = pytest.mark.timeout(120)


def test_a_trace_has_a_track_per_worker_whose_spans_cover_its_life(engine: Any, tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    p = Pipeline(range(40), trace=path).task(plus_one, count=2).task(slow)
    assert p.wait_for_result(engine=engine) == [x + 1 for x in range(40)]
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {"caller", "plus_one", "slow"} <= names
    spans: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            assert e["name"] in ("busy", "wait_in", "blocked_out")
            assert e["dur"] > 0 or e.get("args")  # a busy span under a microsecond: its chunks
            spans[(e["pid"], e["tid"])].append(e)
    starts = {(e["pid"], e["tid"]) for e in events if e["ph"] == "i" and e["name"] == "start"}
    assert spans
    assert set(spans) <= starts  # a track's spans follow its start
    for track in spans.values():
        track.sort(key=lambda e: e["ts"])
        for before, after in itertools.pairwise(track):
            # no overlap, and no hole: each span starts where the one before ended
            assert after["ts"] == pytest.approx(before["ts"] + before["dur"], abs=2.0)
    busy = sum(e["dur"] for (pid, _tid), track in spans.items() for e in track if e["name"] == "busy")
    assert busy > 0.2e6 * 0.5  # slow's 40 x 10 ms, most of which the samples saw
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads[(0, 1)] == "feeder"
    assert threads[(0, 2)] == "sink"
    chunks = [e["args"] for e in events if e["ph"] == "i" and e["name"] == "chunk"]
    assert [c["chunk"] for c in chunks] == list(range(len(chunks)))  # numbered in delivery order
    assert sum(c["items"] for c in chunks) == 40
    read = [e["args"]["items"] for e in events if e["ph"] == "C" and e["name"] == "read"]
    assert read[-1] == 40
    # Busy spans name the chunks each worker took: per stage, every chunk number once.
    stage_of = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    taken: dict[str, int] = defaultdict(int)
    last: dict[str, int] = defaultdict(lambda: -1)
    for (pid, _tid), track in spans.items():
        numbers = [e["args"]["last chunk"] for e in track if e["name"] == "busy" and "args" in e]
        assert numbers == sorted(numbers)  # a worker takes its input's chunks in order
        taken[stage_of[pid]] += sum(e["args"]["chunks"] for e in track if "args" in e)
        last[stage_of[pid]] = max([last[stage_of[pid]], *numbers])
    assert taken["slow"] >= 1
    for stage in ("plus_one", "slow"):
        assert taken[stage] == last[stage] + 1 == taken["slow"], (stage, dict(taken), dict(last))


def test_a_trace_path_in_a_missing_folder_fails_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="trace"):
        Pipeline(range(3), trace=tmp_path / "no" / "run.json")
    with pytest.raises(FileNotFoundError, match="trace"):
        Pipeline(range(3)).task(abs).wait_for_result(trace=tmp_path / "no" / "run.json")
    with pytest.raises(TypeError, match="trace"):
        Pipeline(range(3), trace=3)  # type: ignore[arg-type]


def test_drops_show_in_the_trace(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    p = Pipeline(range(2000), trace=path).task(plus_one).task(slow, on_full="drop_oldest")
    p.wait_for_result()
    dropped = {r.name: r.dropped for r in p.stats().rows}["slow"]
    assert dropped > 0
    events = json.loads(path.read_text())["traceEvents"]
    drops = [e["name"] for e in events if e["ph"] == "i" and e["name"].startswith("dropped")]
    marked = sum(int(name.split()[1]) for name in drops)
    assert marked == dropped
