"""The inline engine: stages in the caller's own thread, so a debugger stops in them."""

from __future__ import annotations

import os
import threading

import pytest

from olympipe import Pipeline, PipelineError

pytestmark = pytest.mark.timeout(30)


def test_stages_run_in_the_callers_thread() -> None:
    where: list[tuple[int, int]] = []

    def spy(x: int) -> int:
        where.append((os.getpid(), threading.get_ident()))  # a breakpoint() here stops here
        return x

    p = Pipeline(range(5)).task(spy, count=3).filter(lambda x: x % 2 == 0).task(spy)
    assert p.wait_for_result(engine="inline") == [0, 2, 4]
    assert set(where) == {(os.getpid(), threading.get_ident())}
    assert len(where) == 8


def test_an_error_keeps_its_own_traceback() -> None:
    def boom(x: int) -> int:
        raise ZeroDivisionError(x)

    with pytest.raises(PipelineError) as info:
        Pipeline([1]).task(boom).wait_for_result(engine="inline")
    cause = info.value.__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert cause.__traceback__ is not None  # the real frames, inspectable by pdb.post_mortem


def test_a_server_pipeline_is_refused() -> None:
    src = Pipeline.server([("POST", "/x", lambda b: b)], port=0, inactivity_timeout=0.1)
    with pytest.raises(TypeError, match="local engine"):
        src.task(abs).wait_for_result(engine="inline")


def _thread_id(x: int) -> int:
    import threading

    return threading.get_ident()


def test_concurrency_runs_in_the_callers_thread() -> None:
    import threading

    got = (
        Pipeline([list(range(20))]).explode().task(_thread_id, concurrency=4).wait_for_result(engine="inline")
    )
    assert set(got) == {threading.get_ident()}


def test_an_async_stage_runs_where_an_event_loop_already_runs() -> None:
    import asyncio

    from tests.engines import stagefns as f

    async def cell() -> list[int]:  # a notebook cell: a loop runs in this thread
        return Pipeline(range(10)).task(f.async_double, concurrency=3).wait_for_result(engine="inline")

    assert asyncio.run(cell()) == [2 * x for x in range(10)]
