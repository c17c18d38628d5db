"""A failure in every phase of an item's trip, for each start method: while the stage is
pickled (caller), unpickled (worker), run, while its result is pickled (worker) and
unpickled (caller). Each has the one outcome the contract promises: an exception is a
``PipelineError`` naming the stage (the original as its cause), ``sys.exit`` is raised as
itself in the caller, a process that ends at once is ``WorkerDied``. (A crash in the
caller's own phases would end the caller: not tested.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from olympipe import Pipeline, PipelineError, WorkerDied
from tests import crashes as c

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

METHODS = ["fork", "forkserver", "spawn"]
KINDS = ["exception", "exit", "crash"]


def _run(method: str, stage: Callable[[int], Any]) -> list[Any]:
    return Pipeline(range(10), start_method=method).task(stage, name="s").wait_for_result()


def _expect(kind: str, run: Callable[[], Any], says: str = "") -> None:
    if kind == "exception":
        with pytest.raises(PipelineError) as info:
            run()
        assert info.value.stage == "s"
        assert says in str(info.value)
        assert isinstance(info.value.__cause__, ValueError) or "failed on purpose" in str(info.value)
    elif kind == "exit":
        with pytest.raises(SystemExit) as exited:
            run()
        assert exited.value.code == 3
    else:
        with pytest.raises(WorkerDied) as died:
            run()
        assert died.value.stage == "s"
        assert died.value.exitcode == 3


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
@pytest.mark.parametrize("kind", ["exception", "exit"])
def test_a_stage_that_fails_to_pickle_in_the_caller(method: str, kind: str) -> None:
    stage = c.StageFailingToPickle(kind)
    if kind == "exit":
        _expect(kind, lambda: _run(method, stage))
        return
    with pytest.raises(PipelineError, match="stage 's' cannot be sent to its workers") as info:
        _run(method, stage)
    assert info.value.stage == "s"


def test_under_fork_nothing_is_pickled_so_nothing_fails_there() -> None:
    assert _run("fork", c.StageFailingToPickle("exception")) == list(range(10))
    assert _run("fork", c.StageFailingToUnpickle("crash")) == list(range(10))


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_stage_that_fails_to_unpickle_in_its_worker(method: str, kind: str) -> None:
    _expect(kind, lambda: _run(method, c.StageFailingToUnpickle(kind)), says="could not be rebuilt")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_stage_that_fails_while_running(method: str, kind: str) -> None:
    def stage(x: int) -> int:
        if x == 5:
            c.fail(kind)
        return x

    _expect(kind, lambda: _run(method, stage))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_result_that_fails_to_pickle_in_the_worker(method: str, kind: str) -> None:
    _expect(kind, lambda: _run(method, c.returns_at_5(c.FailsToPickle, kind)), says="cannot be pickled")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["exception", "exit"])
def test_a_result_that_fails_to_unpickle_in_the_caller(method: str, kind: str) -> None:
    _expect(
        kind, lambda: _run(method, c.returns_at_5(c.FailsToUnpickle, kind)), says="could not be unpickled"
    )
