"""Shared fixtures: every test must leave no child process and no shared memory behind."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("long", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

START_METHODS = ["fork", "forkserver", "spawn"]


def _shm_entries() -> set[str]:
    try:
        # Only this process's runs: another olympipe program on the machine is not our leak.
        return {e for e in os.listdir("/dev/shm") if e.startswith(f"olympipe-{os.getpid()}-")}
    except FileNotFoundError:  # pragma: no cover
        return set()


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fail a test that leaves a worker process, a thread or an olympipe shm segment behind."""
    threads_before = set(threading.enumerate())
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    shm_before = _shm_entries()
    yield
    new = [p for p in me.children(recursive=True) if p.pid not in before]
    # The forkserver process is shared by all runs of the session; it is not a leak.
    # nor is the resource tracker that spawn and forkserver start once. A zombie has exited
    # and waits for its parent (the fork server) to reap it.
    new = [p for p in new if not (p.ppid() == me.pid and _is_helper(p))]
    _, alive = psutil.wait_procs(new, timeout=5)
    alive = [p for p in alive if not _is_zombie(p)]
    leaked_shm = _shm_entries() - shm_before
    for p in alive:
        p.kill()
    assert not alive, f"leaked processes: {alive}"
    new_threads = [t for t in threading.enumerate() if t not in threads_before]
    for t in new_threads:
        t.join(timeout=2)  # an HTTP handler thread may still be writing its last response
    left = [t.name for t in new_threads if t.is_alive()]
    assert not left, f"leaked threads: {left}"
    assert not leaked_shm, f"leaked shared memory: {leaked_shm}"


def _is_helper(proc: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "forkserver" in cmd or "resource_tracker" in cmd


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
