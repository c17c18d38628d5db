"""A run torn down while workers run prints the run's error once, and nothing from workers:
no ``Process olympipe:...`` traceback and no ``Exception ignored ... Stopped``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.timeout(240)

_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    sys.path.insert(0, {root!r})
    from olympipe import Pipeline, PipelineError
    from tests.helpers import fail_on_7, jitter

    stop = threading.Event()
    if sys.argv[1] == "thread":
        threading.Thread(target=stop.wait, daemon=True).start()  # a caller with a live thread
    import numpy as np

    def arrays():
        for i in range(400):
            yield np.full(1 << 18, i, dtype=np.int64)  # 2 MiB: through shared memory

    def bump(a):
        a += 1
        return a

    def fail_late(a):
        if a[0] == 40:
            raise ValueError("late")
        return a

    for _ in range(5):
        for p in (
            Pipeline(range(2000)).task(jitter, count=2).task(fail_on_7).task(jitter, count=2),
            Pipeline(arrays()).task(bump, count=2).task(fail_late).task(bump, count=2),
        ):
            try:
                p.wait_for_result()
            except PipelineError:
                pass
        for n, _x in enumerate(Pipeline(range(10_000)).task(jitter, count=2).task(jitter)):
            if n == 30:
                break
    stop.set()
    print("done")
    """
)


@pytest.mark.parametrize("caller", ["thread", "single"])
def test_teardown_prints_nothing_from_workers(caller: str) -> None:
    root = str(Path(__file__).parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(root=root), caller], capture_output=True, text=True, timeout=200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "done"
    assert "Stopped" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_an_iterator_left_open_at_exit_says_nothing_and_leaves_nothing() -> None:
    script = (
        "import psutil\n"
        "from olympipe import Pipeline\n"
        "it = iter(Pipeline(range(10**6)).task(abs).task(abs))\n"
        "print(next(it), *[c.pid for c in psutil.Process().children()])\n"
    )
    root = str(Path(__file__).parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    first, *pids = proc.stdout.split()
    assert first == "0"
    gone = [
        pid
        for pid in pids
        if not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == "zombie"
    ]
    assert len(gone) >= len(pids) - 1  # the workers are gone; only the janitor may still be sweeping
