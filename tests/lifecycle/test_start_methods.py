"""Scripts as people write them: no guard, threads alive, classes of their own, stdin, -c."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).parents[2]

SCRIPT = textwrap.dedent(
    """
    import dataclasses, threading
    from olympipe import Pipeline, PipelineError

    @dataclasses.dataclass
    class Rec:
        x: int

    class Boom(Exception):
        pass

    def bump(r):
        if r.x == 3 and FAIL:
            raise Boom("three")
        return Rec(r.x + 1)

    FAIL = False
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()   # a library's helper thread
    out = Pipeline([Rec(i) for i in range(5)]).task(bump, count=2).filter(lambda r: isinstance(r, Rec))
    print("result", out.task(lambda r: r.x * 10).wait_for_result())
    FAIL = True
    try:
        Pipeline([Rec(i) for i in range(5)]).task(bump).wait_for_result()
    except PipelineError as e:
        print("cause", type(e.__cause__).__name__, isinstance(e.__cause__, Boom))
    got = Pipeline([1, 2]).task(lambda x: Rec(x)).wait_for_result()
    print("back", got, isinstance(got[0], Rec))
    stop.set()
    """
)
EXPECTED = [
    "result [10, 20, 30, 40, 50]",
    "cause Boom True",
    "back [Rec(x=1), Rec(x=2)] True",
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("how", ["file", "stdin", "dash-c"])
def test_unguarded_script_with_threads_and_its_own_classes(how: str, tmp_path: Path) -> None:
    if how == "file":
        script = tmp_path / "job.py"
        script.write_text(SCRIPT)
        args, stdin = [str(script)], None
    elif how == "stdin":
        args, stdin = ["-"], SCRIPT
    else:
        args, stdin = ["-c", SCRIPT], None
    done = subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=100, env=_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines() == EXPECTED


def test_explicit_spawn_without_guard_says_so(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "from olympipe import Pipeline\n"
        "def f(x):\n    return x\n"
        "print(Pipeline([1], start_method='spawn').task(f).wait_for_result())\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=_env()
    )
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr
    assert "WorkerDied" not in done.stderr.splitlines()[-1]


def test_forkserver_runs_start_warm() -> None:
    code = textwrap.dedent(
        """
        import time
        from olympipe import Pipeline
        def f(x):
            return x
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            Pipeline([1], start_method="forkserver").task(f).task(f).task(f).task(f).task(f).wait_for_result()
            times.append(time.perf_counter() - t0)
        print(sorted(times[1:])[2])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=100, env=_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # 5 stages, start to teardown, once the fork server runs: about 35 ms here; a fork
    # server that re-imports olympipe for each worker takes about 150 ms a worker.
    assert float(done.stdout) < 0.4


def test_a_main_module_without_spec_as_ipython_run_leaves_it() -> None:
    code = textwrap.dedent(
        """
        import sys, types
        fake = types.ModuleType("__main__")
        fake.__dict__.clear()  # IPython's %run namespace: no __spec__, no __file__
        fake.__dict__["__name__"] = "__main__"
        sys.modules["__main__"] = fake
        from olympipe import Pipeline
        print(Pipeline(range(4), start_method="forkserver").task(lambda x: x + 1).wait_for_result())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=100, env=_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[1, 2, 3, 4]"


def test_a_started_pipeline_dropped_uncollected_leaves_nothing() -> None:
    import gc
    import threading

    from olympipe import Pipeline
    from tests.engines import stagefns as f

    p = Pipeline(f.naturals(), start_method="fork").task(f.double).start()
    del p
    gc.collect()
    for thread in threading.enumerate():
        if thread.name.startswith("olympipe"):
            thread.join(5)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("olympipe")]


def test_a_large_global_is_shared_not_copied_per_worker() -> None:
    code = textwrap.dedent(
        """
        import os, time, numpy as np, psutil
        from olympipe import Pipeline
        weights = np.ones(25_000_000)  # 200 MB, read by the stage function

        def score(x):
            return float(weights[x]) + x, psutil.Process().memory_full_info().uss

        t0 = time.perf_counter()
        out = Pipeline(range(4), start_method="forkserver").task(score, count=2).wait_for_result()
        print(time.perf_counter() - t0, max(uss for _value, uss in out) / 2**20)
        weights[0] = 5  # the workers saw the value at start; the caller's array is its own
        print([value for value, _uss in out])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=100, env=_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, uss_mb = (float(v) for v in done.stdout.splitlines()[0].split())
    assert done.stdout.splitlines()[1] == "[1.0, 2.0, 3.0, 4.0]"
    assert uss_mb < 120, f"a worker holds {uss_mb:.0f} MB of its own: the global was copied into it"
    assert seconds < 30  # a hang guard; how fast is a benchmark's business


WARM_UP = textwrap.dedent(
    """
    import multiprocessing.forkserver, sys, threading, types
    if KERNEL:
        sys.modules["ipykernel"] = types.ModuleType("ipykernel")  # as in a notebook kernel
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()  # a kernel always has threads
    from olympipe import Pipeline
    print("server", multiprocessing.forkserver._forkserver._forkserver_pid is not None)
    print("run", Pipeline([1]).task(lambda x: x + 1).wait_for_result())
    stop.set()
    """
)


@pytest.mark.parametrize("kernel", [True, False])
def test_a_notebook_kernel_starts_the_fork_server_at_import(kernel: bool) -> None:
    """In a kernel the first run would wait for the fork server's start (its interpreter and
    imports): importing olympipe starts it, so a later cell's first run finds it ready. A
    plain script starts nothing at import."""
    out = subprocess.run(
        [sys.executable, "-c", f"KERNEL = {kernel}\n{WARM_UP}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=100,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [f"server {kernel}", "run [2]"]
