"""Errors surface as PipelineError/WorkerDied, promptly, and leave nothing behind."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline, PipelineError, RemoteTraceback, WorkerDied
from tests.helpers import fail_on_7, plus_one

pytestmark = pytest.mark.faults


def test_worker_sigkill_midstream() -> None:
    def kill_self_on_100(x: int) -> int:
        if x == 100:
            os.kill(os.getpid(), 9)
        return x

    with pytest.raises(WorkerDied) as info:
        Pipeline(range(1000)).task(plus_one).task(kill_self_on_100, count=4).task(plus_one).wait_for_result()
    assert info.value.exitcode == -9
    assert "SIGKILL" in str(info.value)


def test_error_in_iteration_and_in_branch() -> None:
    p = Pipeline(range(100))
    with pytest.raises(PipelineError):
        Pipeline.wait_for_all_results([p.task(plus_one), p.task(fail_on_7)])
    with pytest.raises(PipelineError):
        list(Pipeline(range(100)).task(fail_on_7))


def test_unpicklable_result_names_stage_and_type() -> None:
    with pytest.raises(PipelineError) as info:
        Pipeline(range(3)).task(lambda x: threading.Lock(), name="make_lock").wait_for_result()
    assert info.value.stage == "make_lock"
    assert "lock" in str(info.value)


def test_unpicklable_source_item() -> None:
    source: list[Any] = [1, (x for x in range(3))]
    with pytest.raises(PipelineError) as info:
        Pipeline(source).task(plus_one).wait_for_result()
    assert info.value.stage == "source"
    assert "generator" in str(info.value)


def test_unpicklable_exception_still_reported() -> None:
    class Weird(Exception):
        def __init__(self) -> None:
            super().__init__("weird")
            self.lock = threading.Lock()

    def boom(x: int) -> int:
        raise Weird

    with pytest.raises(PipelineError) as info:
        Pipeline(range(3)).task(boom).wait_for_result()
    assert "weird" in str(info.value)
    assert isinstance(info.value.__cause__, RemoteTraceback)


def test_pipeline_error_pickles() -> None:
    err = PipelineError("x", stage="s", item_repr="1", remote_traceback="tb")
    back = pickle.loads(pickle.dumps(err))
    assert (back.stage, back.item_repr, back.remote_traceback, str(back)) == ("s", "1", "tb", "x")


def test_bad_arguments_rejected_at_build_time() -> None:
    p = Pipeline(range(3))
    with pytest.raises(ValueError):
        p.task(plus_one, count=0)
    with pytest.raises(ValueError):
        p.batch(0)
    with pytest.raises(ValueError):
        p.timeout(-1)
    with pytest.raises(TypeError):
        p.task(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        Pipeline(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Pipeline([], start_method="thread")
    with pytest.raises(TypeError):
        p.split(lambda x: (x, x))


def test_close_method_runs_after_error(tmp_path: object) -> None:
    import pathlib

    marker = pathlib.Path(str(tmp_path)) / "closed"

    class Res:
        def work(self, x: int) -> int:
            if x == 3:
                raise RuntimeError("boom")
            return x

        def close(self) -> None:
            marker.write_text("yes")

    with pytest.raises(PipelineError):
        Pipeline(range(10)).class_task(Res, Res.work, close_method=Res.close).wait_for_result()
    assert marker.read_text() == "yes"


def test_exception_in_close_method_fails_the_run() -> None:
    class Res:
        def work(self, x: int) -> int:
            return x

        def close(self) -> None:
            raise RuntimeError("could not flush")

    with pytest.raises(PipelineError) as info:
        Pipeline(range(10)).class_task(Res, Res.work, close_method=Res.close).wait_for_result()
    assert "could not flush" in str(info.value)


def test_an_uncaught_stage_error_prints_its_message_twice_with_the_worker_frame(tmp_path: Path) -> None:
    """Uncaught, a stage's exception prints the worker's frame and its message once there,
    and once in the PipelineError's line, not a third time on its own."""
    script = tmp_path / "fails.py"
    script.write_text(
        "from olympipe import Pipeline\n"
        "def check(x):\n"
        "    if x == 3:\n"
        "        raise ValueError('no threes here')\n"
        "    return x\n"
        "Pipeline(range(10)).task(check).wait_for_result()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    err = done.stderr
    assert err.count("ValueError: no threes here") == 2, err
    assert "raise ValueError('no threes here')" in err  # the worker's frame
    assert "_stages/mapping.py" not in err  # not the library's frame that called it
    assert (
        err.rstrip().splitlines()[-1].startswith("olympipe.errors.PipelineError(ValueError): stage 'check'")
    )
