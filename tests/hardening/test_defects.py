"""Each test pins a defect found by probing the engine as a hostile user would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from olympipe import Pipeline, PipelineError
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)


def _stalled(release: threading.Event, n: int = 3) -> Iterator[int]:
    yield from range(1, n + 1)
    release.wait(30)
    yield 99


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # lets the stalled source's thread finish


@pytest.mark.parametrize("with_task", [False, True])
def test_timeout_fires_while_the_source_is_stalled(release: threading.Event, with_task: bool) -> None:
    p = Pipeline(_stalled(release))
    if with_task:
        p = p.task(f.double)
    t0 = time.monotonic()
    got = p.timeout(1.0).wait_for_result()
    assert time.monotonic() - t0 < 10  # the source blocks for 30 s
    assert got == ([2, 4, 6] if with_task else [1, 2, 3])


def test_timeout_fires_while_iterating(release: threading.Event) -> None:
    t0 = time.monotonic()
    got = list(Pipeline(_stalled(release)).timeout(1.0))
    assert time.monotonic() - t0 < 10
    assert got == [1, 2, 3]


def test_limit_zero_on_a_stalled_source(release: threading.Event) -> None:
    t0 = time.monotonic()
    assert Pipeline(_stalled(release)).limit(0).wait_for_result() == []
    assert time.monotonic() - t0 < 10


def test_errors_column_counts_failed_items() -> None:
    p = Pipeline(range(10)).task(f.fail_on_5, on_error=lambda x, e: None)
    assert p.wait_for_result() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert p.stats().rows[0].errors == 1
    q = Pipeline(range(10)).task(f.fail_on_5)
    with pytest.raises(PipelineError):
        q.wait_for_result()
    assert q.stats().rows[0].errors == 1


def test_exception_needing_init_arguments_is_rebuilt_as_its_class() -> None:
    with pytest.raises(PipelineError) as info:
        Pipeline(range(5), start_method="spawn").task(f.raise_needs_two).wait_for_result()
    cause = info.value.__cause__
    assert isinstance(cause, f.NeedsTwo)
    assert cause.code == 42
    assert "42: three" in str(cause)


def test_start_returns_the_pipeline() -> None:
    assert Pipeline(range(3)).task(f.double).start().wait_for_result() == [0, 2, 4]


def test_deriving_from_a_started_iterator_source_takes_every_item_once() -> None:
    """olympipe 2.x's early start (see tests/realtime/test_early_start.py): the first
    derived pipeline takes the stream over; a second is refused."""
    s = Pipeline(iter(range(10))).start()
    try:
        assert s.task(f.double).wait_for_result() == [2 * x for x in range(10)]
        with pytest.raises(RuntimeError, match="source"):
            s.task(f.double).wait_for_result()
    finally:
        s.cleanup()


def test_deriving_from_a_started_list_source_runs_every_item() -> None:
    s = Pipeline(list(range(10))).start()
    try:
        assert s.task(f.double).wait_for_result() == [2 * x for x in range(10)]
    finally:
        s.cleanup()


def test_start_from_a_thread_that_then_ends() -> None:
    holder: list[Pipeline[int]] = []
    t = threading.Thread(
        target=lambda: holder.append(Pipeline(range(50), start_method="fork").task(f.sleepy).start())
    )
    t.start()
    t.join()
    assert holder[0].wait_for_result() == list(range(50))  # the workers outlive the thread


def test_concurrent_fork_runs_from_threads() -> None:
    errors: list[BaseException] = []

    def runs() -> None:
        try:
            for _ in range(10):
                got = Pipeline(range(30), start_method="fork").task(f.double, count=2).wait_for_result()
                assert got == [2 * x for x in range(30)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runs) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def sub_pipeline_sum(n: int) -> int:
    return sum(Pipeline(range(n)).task(f.double, count=2).wait_for_result())


def test_a_pipeline_inside_a_stage() -> None:
    got = Pipeline([3, 4, 5]).task(sub_pipeline_sum, count=2).wait_for_result()
    assert got == [sum(2 * x for x in range(n)) for n in (3, 4, 5)]


def _semaphores() -> set[str]:
    import os

    return {e for e in os.listdir("/dev/shm") if e.startswith("sem.mp-")}


def test_forkserver_run_leaves_no_semaphore_file() -> None:
    before = _semaphores()
    p = Pipeline(range(20), start_method="forkserver").task(f.double, count=2, ordered=False)
    assert sorted(p.wait_for_result()) == [2 * x for x in range(20)]
    assert _semaphores() - before == set()  # while p, and its last run, are still alive
    assert p.stats().rows[0].items_in == 20


def test_a_failing_run_prints_no_second_traceback() -> None:
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(
        """
        import time
        from olympipe import Pipeline, PipelineError
        def fail(x):
            if x == 50:
                raise ValueError("fifty")
            return x
        def slow(x):
            time.sleep(0.001)
            return x
        for _ in range(8):
            try:
                p = Pipeline(range(200), start_method="fork").task(slow, count=2)
                p.task(fail).task(slow).wait_for_result()
            except PipelineError:
                pass
        print("done")
        """
    )
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.stdout.strip() == "done", done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_stage_that_cannot_be_recycled_says_so_before_the_run() -> None:
    import socket

    with socket.socket() as sock:

        def uses_socket(x: int) -> int:
            return x if sock is not None else -x

        p = Pipeline(range(50)).task(uses_socket, max_items_per_worker=10)
        with pytest.raises(PipelineError, match=r"cannot be recycled .* does not pickle") as info:
            p.wait_for_result()
    assert info.value.stage == "uses_socket"
    assert "died unexpectedly" not in str(info.value)
