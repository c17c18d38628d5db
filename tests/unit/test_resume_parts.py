"""The pure parts of resumable runs: the watermark a stateful stage sends, the progress
file's format, the graph's fingerprint and which sources read the same way again."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline, ProgressFileError
from olympipe._graph import plan_for
from olympipe._resume.fingerprint import fingerprint
from olympipe._resume.run import key_digest, replayable
from olympipe._resume.state import MAGIC, Progress, load, save
from olympipe._runtime.watermark import Watermark

pytestmark = pytest.mark.timeout(30)


def test_a_stage_holding_nothing_passes_the_mark_of_its_last_chunk() -> None:
    mark = Watermark(1)
    mark.took(0, 10, 10)
    assert mark.after(0) == 10
    mark.took(0, 25, 15)
    assert mark.after(0) == 25


def test_a_batch_claims_only_up_to_the_chunk_of_its_oldest_held_item() -> None:
    mark = Watermark(1)
    mark.took(0, 10, 10)  # items 0..9 of the stream, source items before 10
    assert mark.after(4) == 0  # it holds items 6..9: they came with the first chunk
    mark.took(0, 20, 10)  # items 10..19
    assert mark.after(3) == 10  # it holds 17..19: the second chunk's; the first is done
    mark.took(0, 30, 10)
    assert mark.after(13) == 10  # holds 17..29: still from the second chunk on
    assert mark.after(0) == 30


def test_several_ports_claim_the_least_of_their_marks() -> None:
    mark = Watermark(2)
    mark.took(0, 50, 5)
    assert mark.after(0) == 0  # nothing came on port 1 yet
    mark.took(1, 40, 5)
    assert mark.after(0) == 40


def test_a_progress_file_round_trips(tmp_path: Path) -> None:
    path = str(tmp_path / "p")
    progress = Progress("abc", keyed=True, done=0, keys={key_digest(i) for i in range(100)}, stages=["a"])
    save(path, progress)
    assert load(path) == progress
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temporary file left


def test_every_torn_write_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "p"
    save(str(path), Progress("abc", keyed=False, done=12345, stages=["a", "b"]))
    whole = path.read_bytes()
    for length in range(len(whole)):
        path.write_bytes(whole[:length])
        with pytest.raises(ProgressFileError):
            load(str(path))
    flipped = bytearray(whole)
    flipped[len(MAGIC) + 5] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(ProgressFileError, match="damaged"):
        load(str(path))


def test_no_file_is_no_progress(tmp_path: Path) -> None:
    assert load(str(tmp_path / "nothing")) is None


def _print(pipe: Pipeline[Any]) -> str:
    return fingerprint(plan_for([pipe._endpoint]))


def _graph(offset: int, size: int = 3, count: int = 1) -> Pipeline[list[int]]:
    return Pipeline(range(10)).task(lambda x: x + offset, count=count).batch(size)


def test_the_fingerprint_says_what_a_graph_computes() -> None:
    assert _print(_graph(1)) == _print(_graph(1))  # built twice: the same
    assert _print(_graph(1, count=3)) == _print(_graph(1))  # more workers: the same result
    assert _print(_graph(2)) != _print(_graph(1))  # a closure's value
    assert _print(_graph(1, size=4)) != _print(_graph(1))  # a parameter
    assert _print(Pipeline(range(10)).task(lambda x: x - 1).batch(3)) != _print(_graph(-1))  # the code
    assert _print(Pipeline(range(10)).task(lambda x: x + 1)) != _print(_graph(1))  # the shape


def test_sources_that_read_the_same_way_again() -> None:
    for same_again in ([1, 2], range(3), (1,), {"a": 1}, io.StringIO("a\nb\n")):
        assert replayable(same_again)
    assert not replayable(iter([1, 2]))
    assert not replayable(x for x in range(3))
    assert not replayable({1, 2})  # a set's order may change from one run to the next


def test_a_stage_holding_everything_keeps_a_bounded_account() -> None:
    """``reduce`` holds every item until the end: every worker keeps this account, so it
    must not grow with the stream (older chunks merge, which only claims less)."""
    mark = Watermark(1)
    for chunk in range(1, 100_001):
        mark.took(0, 10 * chunk, 10)
        assert mark.after(sys.maxsize) == 0
    assert mark.tracked <= 256
    assert mark.after(0) == 1_000_000
