"""resume=: a run records which source items are finished; the same script run again skips
them, on every engine; what cannot be resumed is refused before any work."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline, ProgressFileError
from olympipe._resume.state import MAGIC, load
from tests.resume._fns import (
    append_to,
    fail_at_60,
    lines_of,
    not_multiple_of_5,
    three_of_each,
    times_1,
    times_3,
)

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]

N = 3000


def _take(pipe: Pipeline[Any], n: int) -> list[Any]:
    """Iterate ``pipe`` and leave after ``n`` outputs (the rest is not finished)."""
    taken = []
    for x in pipe:
        taken.append(x)
        if len(taken) == n:
            break
    return taken


def test_an_iteration_left_early_goes_on_from_where_it_stopped(tmp_path: Path, engine: Any) -> None:
    state = tmp_path / "p.olympipe"

    def pipe() -> Pipeline[int]:
        return (
            Pipeline(list(range(N)), resume=str(state), engine=engine).task(times_3).filter(not_multiple_of_5)
        )

    first = _take(pipe(), 500)
    done = load(str(state))
    assert done is not None
    assert not done.finished
    # never past what the caller took: no unfinished item is skipped
    assert done.done <= first[-1] // 3 + 1
    second = list(pipe())
    expected = [x * 3 for x in range(N) if (x * 3) % 5]
    assert second == expected[expected.index(second[0]) :]  # the rest, in order, nothing missing
    assert second[0] <= first[-1] + 3  # no gap between what was taken and what comes now
    again = load(str(state))
    assert again is not None
    assert again.finished
    assert again.done == N


def test_a_finished_run_does_nothing_but_say_so(tmp_path: Path, engine: Any) -> None:
    state, out = tmp_path / "p.olympipe", tmp_path / "out.txt"
    Pipeline(range(50), resume=str(state), engine=engine).task(append_to(str(out))).wait_for_completion()
    assert lines_of(str(out)) == list(range(50))
    with pytest.warns(UserWarning, match="already finished"):
        again = (
            Pipeline(range(50), resume=str(state), engine=engine).task(append_to(str(out))).wait_for_result()
        )
    assert again == []
    assert lines_of(str(out)) == list(range(50))  # no stage ran


def test_wait_for_completion_after_a_failure_redoes_only_the_unfinished(tmp_path: Path) -> None:
    state, out = tmp_path / "p.olympipe", tmp_path / "out.txt"
    with pytest.raises(Exception, match="sixty"):
        Pipeline(range(200), resume=str(state)).task(fail_at_60).task(
            append_to(str(out))
        ).wait_for_completion()
    written = lines_of(str(out))
    recorded = load(str(state))
    assert recorded is not None
    assert recorded.done <= len(written)  # only what passed the last stage
    assert written == list(range(len(written)))
    assert len(written) <= 60
    # the graph fixed (another first stage): told to go on, it does the rest
    Pipeline(range(200), resume=str(state), resume_if_changed=True).task(times_3).task(
        append_to(str(out))
    ).wait_for_completion()
    rerun = lines_of(str(out))[len(written) :]
    assert rerun == [x * 3 for x in range(recorded.done, 200)]


def test_a_collecting_call_finishes_nothing_before_it_returns(tmp_path: Path) -> None:
    state = tmp_path / "p.olympipe"
    with pytest.raises(Exception, match="sixty"):
        Pipeline(range(200), resume=str(state)).task(fail_at_60).wait_for_result()
    recorded = load(str(state))
    assert recorded is None or recorded.done == 0
    assert len(Pipeline(range(200), resume=str(state), resume_if_changed=True).wait_for_result()) == 200


@pytest.mark.parametrize("size", [7, 64])
@pytest.mark.parametrize("copies", [1, 3])
def test_a_batch_holding_items_gives_them_again_after_a_stop(
    tmp_path: Path, engine: Any, size: int, copies: int
) -> None:
    state = tmp_path / "p.olympipe"

    def pipe() -> Pipeline[list[int]]:
        items = Pipeline(list(range(N)), resume=str(state), engine=engine)
        return (items.explode(three_of_each) if copies == 3 else items.task(times_1)).batch(size)

    first = [x for b in _take(pipe(), 40) for x in b]
    second = [x for b in pipe() for x in b]
    # every item whole: all its copies in the second run, or all taken in the first
    seen = set(second) | {x for x in set(first) if first.count(x) == copies}
    assert seen == set(range(N))
    assert all(second.count(x) == copies for x in set(second))
    assert second == sorted(second)
    recorded = load(str(state))
    assert recorded is not None
    assert recorded.finished


def test_by_key_a_source_in_another_order_skips_what_is_finished(tmp_path: Path, engine: Any) -> None:
    state = tmp_path / "p.olympipe"
    items = list(range(N))

    def shuffled(seed: int) -> Any:
        order = items[:]
        random.Random(seed).shuffle(order)
        yield from order

    first = _take(
        Pipeline(shuffled(1), resume=str(state), resume_key=lambda x: x, engine=engine).task(times_3), 700
    )
    second = list(
        Pipeline(shuffled(2), resume=str(state), resume_key=lambda x: x, engine=engine).task(times_3)
    )
    assert set(first) | set(second) == {x * 3 for x in items}
    window = len(set(first) & set(second))
    assert window < 700  # items finished in the first run were skipped
    recorded = load(str(state))
    assert recorded is not None
    assert recorded.finished


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda p: p.task(times_3).reduce(0, lambda x, acc: x + acc), "<lambda>"),
        (lambda p: p.checkpoint(0, lambda x, acc: x + acc, lambda acc: [acc]), "<lambda>"),
        (lambda p: p.limit(5), "limit"),
        (lambda p: p.timeout(1.0), "timeout"),
        (lambda p: p.task(times_3, ordered=False), "times_3"),
        (lambda p: p.task(times_3, on_full="drop_oldest"), "times_3"),
    ],
)
def test_a_graph_that_cannot_resume_is_refused_before_any_work(
    tmp_path: Path, build: Any, named: str
) -> None:
    state, out = tmp_path / "p.olympipe", tmp_path / "out.txt"
    pipe = build(Pipeline(range(10), resume=str(state)).task(append_to(str(out))))
    with pytest.raises(ValueError, match=f"stage '{named}' cannot be part of a resumable run"):
        pipe.wait_for_result()
    assert not out.exists()
    assert not state.exists()


def test_a_generator_without_a_key_is_refused_at_the_terminal_call(tmp_path: Path) -> None:
    pipe = Pipeline((x for x in range(10)), resume=str(tmp_path / "p.olympipe")).task(times_3)
    with pytest.raises(ValueError, match="resume_key"):
        pipe.wait_for_result()


def test_several_sources_and_a_dropping_source_are_refused(tmp_path: Path) -> None:
    state = str(tmp_path / "p.olympipe")
    a = Pipeline(range(5), resume=state)
    with pytest.raises(ValueError, match="several"):
        a.gather(Pipeline(range(5))).wait_for_result()
    with pytest.raises(ValueError, match="drop"):
        Pipeline(range(5), resume=state, on_full="drop_oldest").task(times_3).wait_for_result()


def test_a_changed_graph_is_refused_unless_told_to_go_on(tmp_path: Path) -> None:
    state = str(tmp_path / "p.olympipe")
    _take(Pipeline(list(range(N)), resume=state).task(lambda x: x + 1), 10)
    before = Path(state).read_bytes()
    for changed in (
        Pipeline(list(range(N)), resume=state).task(lambda x: x + 2),  # other code
        Pipeline(list(range(N)), resume=state).task(lambda x: x + 1).batch(3),  # other stages
    ):
        with pytest.raises(ProgressFileError, match="another graph"):
            changed.wait_for_result()
        assert Path(state).read_bytes() == before  # nothing overwritten
    # more workers compute the same thing: not a change
    _take(Pipeline(list(range(N)), resume=state).task(lambda x: x + 1, count=2), 10)
    rest = (
        Pipeline(list(range(N)), resume=state, resume_if_changed=True).task(lambda x: x + 2).wait_for_result()
    )
    assert 0 < len(rest) < N


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"id,name\n1,x\n", "not an olympipe progress file"), (None, "damaged")],
)
def test_a_file_not_ours_or_damaged_is_a_clear_error_and_stays(
    tmp_path: Path, content: bytes | None, match: str
) -> None:
    state = tmp_path / "p.olympipe"
    if content is None:
        _take(Pipeline(list(range(N)), resume=str(state)).task(times_3), 10)
        content = state.read_bytes()[:-3]  # a torn write
    state.write_bytes(content)
    with pytest.raises(ProgressFileError, match=match):
        Pipeline(list(range(N)), resume=str(state)).task(times_3).wait_for_result()
    assert state.read_bytes() == content
    assert content.startswith(MAGIC) == (match == "damaged")


def test_a_progress_file_in_a_missing_directory_is_an_error_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Pipeline(range(3), resume=str(tmp_path / "nope" / "p.olympipe")).wait_for_result()


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="resume_key= needs resume="):
        Pipeline(range(3), resume_key=lambda x: x)
    with pytest.raises(TypeError, match="file path"):
        Pipeline(range(3), resume=3)  # type: ignore[arg-type]


def test_no_warning_and_no_file_written_by_a_run_without_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Pipeline(range(10)).task(times_3).wait_for_result() == [x * 3 for x in range(10)]
    assert list(tmp_path.iterdir()) == []


def test_kill_9_at_any_moment_loses_nothing_and_goes_on_from_the_record(tmp_path: Path) -> None:
    """The caller killed (and its workers with it) three times at random moments, then run
    to the end: every output comes; each run starts exactly where the file says, never
    after an output the caller did not get. (How many come twice: benchmarks/bench_resume.py.)"""
    n = 300_000
    state = str(tmp_path / "p.olympipe")
    command = [sys.executable, "-m", "tests.resume._killed_run", state, str(n)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    delivered: list[int] = []
    rnd = random.Random(5)
    recorded = 0
    for _kill in range(3):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=ROOT)
        assert child.stdout is not None
        want = rnd.randrange(20_000, 40_000)
        outputs: list[int] = []
        for line in child.stdout:  # the child's own output is the event waited for
            outputs.append(int(line))
            if len(outputs) == want:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        outputs.extend(int(line) for line in child.stdout.read().split())  # written before it died
        child.stdout.close()
        # it started at the first output after the recorded position
        assert outputs[0] == next(x * 3 for x in range(recorded, n) if (x * 3) % 5)
        delivered.extend(outputs)
        progress = load(state)  # whatever moment it died at, the file is whole
        assert progress is not None
        assert recorded < progress.done <= outputs[-1] // 3 + 1  # moved on, never past what came
        recorded = progress.done
    rest = subprocess.run(command, stdout=subprocess.PIPE, env=env, cwd=ROOT, check=True, timeout=120)
    outputs = [int(line) for line in rest.stdout.split()]
    assert outputs[0] == next(x * 3 for x in range(recorded, n) if (x * 3) % 5)
    delivered.extend(outputs)
    assert sorted(set(delivered)) == [x * 3 for x in range(n) if (x * 3) % 5]  # nothing lost
    final = load(state)
    assert final is not None
    assert final.finished


def test_an_exploded_item_is_finished_only_with_its_last_part(tmp_path: Path, engine: Any) -> None:
    state = tmp_path / "p.olympipe"

    def pipe() -> Pipeline[int]:
        return Pipeline(list(range(N)), resume=str(state), engine=engine).explode(three_of_each).task(times_3)

    first = _take(pipe(), 1001)  # leaves in the middle of an item's parts
    second = list(pipe())
    whole_in_first = {x for x in set(first) if first.count(x) == 3}
    assert whole_in_first | set(second) == {x * 3 for x in range(N)}
    assert all(second.count(x) == 3 for x in set(second))  # every item again in full
    assert second == sorted(second)
