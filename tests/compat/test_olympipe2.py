"""olympipe 2.x code runs unchanged: the 2.2.0 README's patterns and its public names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import olympipe
from olympipe import Pipeline, PipelineExecutionError
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).parents[2]


# -- the README's sections -------------------------------------------------------------------


def test_basic_usage() -> None:
    p = Pipeline(range(10)).task(lambda x: x + 1).filter(lambda x: x % 2 == 0).batch(2)
    assert p.wait_for_result() == [[2, 4], [6, 8], [10]]


def test_parallel_workers() -> None:
    got = Pipeline(range(100)).task(f.sleepy, count=4).wait_for_result()
    assert sorted(got) == list(range(100))


class StandInModel:
    """A numpy stand-in for a model: built once per worker, then applied to batches."""

    def __init__(self, weights: int) -> None:
        self.w = np.full((3,), weights, dtype=np.float32)

    def predict(self, batch: list[np.ndarray]) -> list[float]:
        return [float(x @ self.w) for x in batch]


def test_ml_inference_with_a_stand_in_model() -> None:
    data = [np.ones(3, dtype=np.float32) * i for i in range(10)]
    got: list[float] = (
        Pipeline(data)
        .batch(4)
        .class_task(StandInModel, StandInModel.predict, class_args=[2])
        .explode()
        .wait_for_result()
    )
    assert got == [6.0 * i for i in range(10)]


def test_stateful_workers_with_close() -> None:
    got = (
        Pipeline(range(6))
        .class_task(f.Scaler, f.Scaler.scale, [10], close_method=f.Scaler.close, count=2)
        .wait_for_result()
    )
    assert got == [0, 10, 20, 30, 40, 50]


def test_split_and_gather() -> None:
    evens, odds = Pipeline(range(10)).split(f.halves)
    merged = evens.task(f.double).gather(odds).wait_for_result()
    assert sorted(merged) == sorted([0, 4, 8, 12, 16, 1, 3, 5, 7, 9])


def test_step_caching_with_uncache(tmp_path: Path) -> None:
    p = Pipeline(range(5)).cached_task(f.double, str(tmp_path)).uncache()
    assert p.wait_for_result() == [0, 2, 4, 6, 8]
    assert p.wait_for_result() == [0, 2, 4, 6, 8]


def test_temporal_batching() -> None:
    got = Pipeline(range(20)).temporal_batch(0.5).wait_for_result()
    assert [x for b in got for x in b] == list(range(20))


def test_early_feeding_with_start() -> None:
    assert Pipeline(range(3)).task(f.double).start().wait_for_result() == [0, 2, 4]


def test_checkpoint_folds_then_emits() -> None:
    assert Pipeline(range(6)).checkpoint(0, lambda x, s: s + x, lambda s: [s, s * 2]).wait_for_result() == [
        15,
        30,
    ]


def test_debug_graph_and_print_graph(tmp_path: Path) -> None:
    p = Pipeline(range(3)).task(f.double)
    assert p.wait_for_result(debug_graph=str(tmp_path / "graph")) == [0, 2, 4]
    assert "double" in (tmp_path / "graph").read_text()
    p.print_graph(str(tmp_path / "again"))
    assert "double" in (tmp_path / "again").read_text()


def test_cleanup_releases_a_started_run() -> None:
    p = Pipeline(f.naturals()).task(f.double).start()
    p.cleanup()
    p.cleanup()  # idempotent


def test_kill_generator_source_ends_the_stream_cleanly() -> None:
    import threading

    p = Pipeline(f.naturals())
    q = p.task(f.double)
    got: list[int] = []
    seen_enough = threading.Event()

    def consume() -> None:
        for x in q:
            got.append(x)
            if len(got) == 50:
                seen_enough.set()

    t = threading.Thread(target=consume)
    t.start()
    assert seen_enough.wait(30)
    p.kill_generator_source()
    t.join(30)
    assert not t.is_alive()
    assert got[:50] == [2 * x for x in range(50)]
    assert got == [2 * x for x in range(len(got))]  # a clean prefix: nothing lost inside


def test_pipeline_execution_error_is_the_same_class() -> None:
    with pytest.raises(PipelineExecutionError):
        Pipeline([5]).task(f.fail_on_5).wait_for_result()


# -- decorators and registry ---------------------------------------------------------------


def test_decorators_return_what_they_mark() -> None:
    from olympipe import class_task, filter, registry, source, source_from, splitter, task

    @task
    def inc(x: int) -> int:
        return x + 1

    @filter
    def keep(x: int) -> bool:
        return x > 1

    @splitter
    def route(x: int) -> tuple[int | None, int | None]:
        return (x, None)

    @source
    def gen() -> Any:
        yield from range(3)

    @class_task("run", close="stop")
    class Worker:
        def run(self, x: int) -> int:
            return x

    data = source_from([1, 2, 3], name="numbers")
    assert data == [1, 2, 3]
    assert Pipeline(gen()).task(inc).filter(keep).wait_for_result() == [2, 3]
    assert registry._tasks["inc"] is inc
    assert registry._class_tasks["Worker"]["method"] == "run"
    assert "numbers" in registry._sources
    registry.clear_registry()
    assert not registry._tasks


def test_filter_decorator_checks_a_bool_annotation() -> None:
    with pytest.raises(TypeError, match="must return bool"):

        @olympipe.filter
        def not_bool(x: int) -> int:
            return x


# -- environment and start method ----------------------------------------------------------


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.mark.parametrize(
    ("env", "method"),
    [
        ({"OLYMPIPE_FORCE_SPAWN": "1"}, "spawn"),
        ({"OLYMPIPE_FORCE_FORK": "1"}, "fork"),
        ({}, "fork"),
    ],
)
def test_environment_chooses_the_start_method(env: dict[str, str], method: str) -> None:
    code = """
        from olympipe._runtime.context import resolve_start_method
        print(resolve_start_method(None))
    """
    done = _run(code, env)
    assert done.stdout.strip() == method, done.stderr


def test_start_method_argument_wins_over_the_environment() -> None:
    code = """
        from olympipe._runtime.context import resolve_start_method
        print(resolve_start_method("forkserver"))
    """
    assert _run(code, {"OLYMPIPE_FORCE_FORK": "1"}).stdout.strip() == "forkserver"


def test_disable_shm_sends_everything_through_pipes() -> None:
    code = """
        import os, numpy as np
        from olympipe import Pipeline
        seen = set()
        def spy(a):
            seen.update(e for e in os.listdir("/dev/shm") if e.startswith("olympipe-"))
            return a
        p = Pipeline([np.zeros(1 << 18) for _ in range(4)], start_method="fork").task(spy)
        print(len(p.wait_for_result()), p._last_run.shm_prefix)
    """
    assert _run(code, {"OLYMPIPE_DISABLE_SHM": "1"}).stdout.split() == ["4", "None"]


def test_initialised_cuda_is_never_forked() -> None:
    code = """
        import sys, types
        torch = types.ModuleType("torch")
        torch.cuda = types.SimpleNamespace(is_initialized=lambda: True)
        sys.modules["torch"] = torch
        from olympipe._runtime.context import resolve_start_method
        print(resolve_start_method(None))
    """
    assert _run(code).stdout.strip() == "forkserver"


def test_a_loaded_but_unused_torch_still_forks() -> None:
    code = """
        import sys, types
        torch = types.ModuleType("torch")
        torch.cuda = types.SimpleNamespace(is_initialized=lambda: False)
        sys.modules["torch"] = torch
        from olympipe._runtime.context import resolve_start_method
        print(resolve_start_method(None))
    """
    assert _run(code).stdout.strip() == "fork"


def test_script_without_guard_with_a_live_thread() -> None:
    code = """
        import threading, time
        from olympipe import Pipeline
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()   # like a tqdm monitor thread
        print(Pipeline(range(5)).task(lambda x: x * 3, count=2).wait_for_result())
        stop.set()
    """
    done = _run(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 3, 6, 9, 12]"


def test_server_takes_debug_in_2x_position() -> None:
    src = Pipeline.server([("POST", "/r", lambda b: b)], 0, "127.0.0.1", False, 0.5)
    assert src.port > 0
    assert src.task(abs).wait_for_result() == []  # no request: ends after 0.5 s idle


def test_pipeline_execution_error_lists_its_errors() -> None:
    with pytest.raises(PipelineExecutionError) as info:
        Pipeline([5]).task(f.fail_on_5).wait_for_result()
    assert len(info.value.errors) == 1
    assert "no 5" in info.value.errors[0]
