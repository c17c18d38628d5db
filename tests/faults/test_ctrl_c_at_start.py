"""Ctrl-C while a forkserver run starts its workers, in a caller that has a thread (so
SIGINT may land in that thread): ``KeyboardInterrupt`` in the caller, no traceback from a
half-started worker, and no worker left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
ROOT = Path(__file__).parents[2]

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import psutil
    sys.path.insert(0, {root!r})
    from olympipe import Pipeline
    from tests.helpers import plus_one, times_2

    delay = float(sys.argv[1])
    threading.Thread(target=threading.Event().wait, daemon=True).start()  # a live thread
    Pipeline(range(3), start_method="forkserver").task(plus_one).wait_for_result()  # server up
    me = psutil.Process()
    before = {{c.pid for c in me.children(recursive=True)}}
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        p = Pipeline(range(10**9), start_method="forkserver")
        for _ in range(6):
            p = p.task(plus_one, count=2).task(times_2)
        for _ in p:
            pass
    except KeyboardInterrupt:
        left = [c for c in me.children(recursive=True) if c.pid not in before and c.is_running()
                and c.status() != psutil.STATUS_ZOMBIE]
        print("interrupted", len(left), flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1])
def test_ctrl_c_while_workers_start(delay: float) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(root=str(ROOT)), str(delay)],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.strip() == "interrupted 0", (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
