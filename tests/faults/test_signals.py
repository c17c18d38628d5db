"""Ctrl-C, SIGTERM and SIGKILL to the caller: it stops at once and no worker outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import START_METHODS

pytestmark = pytest.mark.faults

TARGET = Path(__file__).with_name("_signal_target.py")
ROOT = Path(__file__).parents[2]


def start_caller(method: str) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(TARGET), method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the pipeline is running
    assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
    workers = []
    for pid in line.split()[1:]:
        try:
            workers.append(psutil.Process(int(pid)))
        except psutil.NoSuchProcess:
            pass
    assert workers
    return proc, workers


def assert_all_gone(workers: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(workers, timeout=3)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        p.kill()
    assert not alive, f"workers outlived their caller: {alive}"


@pytest.mark.parametrize("method", START_METHODS)
def test_ctrl_c_stops_within_a_second(method: str) -> None:
    proc, workers = start_caller(method)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    _, err = proc.communicate(timeout=10)
    elapsed = time.monotonic() - t0
    assert "KeyboardInterrupt" in err
    assert elapsed < 3.0, f"took {elapsed:.2f}s"  # about 0.2 s here; wide for loaded machines
    assert_all_gone(workers)


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_caller_killed_leaves_no_worker(method: str, signum: int) -> None:
    proc, workers = start_caller(method)
    proc.send_signal(signum)
    proc.communicate(timeout=10)
    assert proc.returncode == -signum
    assert_all_gone(workers)
