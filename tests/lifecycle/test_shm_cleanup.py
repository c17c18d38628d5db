"""Nothing of a run outlives it in /dev/shm, however the caller ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]
TARGET = Path(__file__).with_name("_shm_caller.py")
ROOT = Path(__file__).parents[2]


def start(method: str, *mode: str) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    proc = subprocess.Popen(
        [sys.executable, str(TARGET), method, *mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    descendants = psutil.Process(proc.pid).children(recursive=True)
    return proc, descendants


def segments_of(pid: int) -> list[str]:
    return [e for e in os.listdir("/dev/shm") if e.startswith(f"olympipe-{pid}-")]


@pytest.mark.parametrize("method", ["fork", "forkserver"])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_caller_leaves_no_segment(method: str, signum: int) -> None:
    proc, descendants = start(method)
    proc.send_signal(signum)
    proc.communicate(timeout=20)
    # The janitor removes them once the caller and its workers are gone; then it exits.
    _, alive = psutil.wait_procs(descendants, timeout=20)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert segments_of(proc.pid) == []


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_worker_writing_as_the_caller_dies_leaves_no_segment(method: str) -> None:
    """Workers that a fork server or spawn started did not hold the janitor's pipe: killed
    with the caller, it swept at once, and a worker still writing a segment before its own
    death left it (in most of these runs)."""
    for _ in range(4):
        proc, descendants = start(method, "fresh")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        _, alive = psutil.wait_procs(descendants, timeout=20)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert segments_of(proc.pid) == []


def test_second_ctrl_c_during_teardown_leaves_no_segment() -> None:
    proc, descendants = start("fork")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.stdout is not None
    for line in proc.stdout:  # the worker says when its close starts (it lasts 0.5 s)
        if line.strip() == "closing":
            break
    os.killpg(proc.pid, signal.SIGINT)  # so this Ctrl-C lands during the first one's teardown
    out, err = proc.communicate(timeout=20)
    assert "left 0" in out, err[-2000:]
    psutil.wait_procs(descendants, timeout=20)


JANITOR_MEMORY = """
import os, sys
import numpy as np, psutil
from olympipe import Pipeline

big = np.ones(1 << 25)  # 256 MiB, written
Pipeline([np.zeros(1 << 17)], start_method=sys.argv[1]).task(lambda a: a).wait_for_result()
del big  # the caller gives its pages back; a janitor forked with them would keep them
janitor = [p for p in psutil.Process().children() if "olympipe-janitor" in " ".join(p.cmdline())]
print(len(janitor), janitor[0].memory_full_info().uss if janitor else 0)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_the_janitor_holds_none_of_the_callers_memory(method: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", JANITOR_MEMORY, method],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, uss = map(int, done.stdout.split())
    assert count == 1
    assert uss < 64 * 2**20, f"the janitor holds {uss / 2**20:.0f} MiB of its own"


def test_the_janitor_says_what_it_is_in_ps() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, time, psutil\n"
            "from olympipe import Pipeline\n"
            "Pipeline(range(3)).task(abs).wait_for_result()\n"
            "(p,) = psutil.Process().children()\n"
            "deadline = time.monotonic() + 10\n"
            "while p.name() != 'olympipe-janito' and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)  # it names itself once its interpreter is up\n"
            "print(p.name(), '|', ' '.join(p.cmdline()[3:5]).splitlines()[0])\n",
        ],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    name, _, command = done.stdout.strip().partition(" | ")
    assert name == "olympipe-janito"  # the kernel keeps 15 bytes
    assert command.startswith("-c # olympipe janitor of pid ")
