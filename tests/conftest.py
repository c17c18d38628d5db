"""Shared fixtures: every test must leave no child process and no shared memory behind.

Ray is started once per session, on first use (``ray_engine``), with what its workers need
to import the test modules. Its own processes (raylet, GCS, idle workers) are not leaks;
an olympipe actor still alive after a test is.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from hypothesis import settings

from olympipe import RayEngine

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
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a worker process, a thread or an olympipe shm segment behind."""
    callspec = getattr(request.node, "callspec", None)
    on_ray = callspec is not None and callspec.params.get("engine") == "ray"
    if "ray_engine" in request.fixturenames or on_ray:
        request.getfixturevalue("ray_engine")  # Ray's own threads and processes come first
    threads_before = set(threading.enumerate())
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    shm_before = _shm_entries()
    yield
    new = [p for p in me.children(recursive=True) if p.pid not in before]
    # The forkserver process is shared by all runs of the session; it is not a leak.
    # nor is the resource tracker that spawn and forkserver start once. A zombie has exited
    # and waits for its parent (the fork server) to reap it.
    new = [p for p in new if not (_ppid(p) == me.pid and _is_helper(p)) and not _is_ray_system(p)]
    _, alive = psutil.wait_procs(new, timeout=5)
    alive = [p for p in alive if not _is_zombie(p)]
    leaked_shm = _shm_entries() - shm_before
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not alive, f"leaked processes: {alive}"
    actors = _olympipe_actors(me)
    _, actors = psutil.wait_procs(actors, timeout=10)
    assert not actors, f"leaked Ray actors: {actors}"
    new_threads = [
        t
        for t in threading.enumerate()
        if t not in threads_before and not isinstance(t, threading._DummyThread)
    ]
    for t in new_threads:
        t.join(timeout=2)  # an HTTP handler thread may still be writing its last response
    left = [t.name for t in new_threads if t.is_alive()]
    assert not left, f"leaked threads: {left}"
    assert not leaked_shm, f"leaked shared memory: {leaked_shm}"


def _is_helper(proc: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except psutil.Error:
        return False
    # olympipe's janitor lives as long as the caller (see olympipe/_transport/janitor.py).
    janitor = name.startswith("olympipe-jan") or "olympipe-janitor" in cmd  # named once it runs
    return "forkserver" in cmd or "resource_tracker" in cmd or janitor


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:  # gone meanwhile
        return None


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _is_ray_system(proc: psutil.Process) -> bool:
    cmd = _cmdline(proc)
    system = "/ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd
    return ("ray" in cmd and system) or cmd.startswith("ray::")


def _olympipe_actors(me: psutil.Process) -> list[psutil.Process]:
    found = []
    for proc in me.children(recursive=True):
        cmd = _cmdline(proc)
        if cmd.startswith("ray::StageActor") and not _is_zombie(proc):
            found.append(proc)
    return found


ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_engine() -> Iterator[RayEngine]:
    """A RayEngine on a local 2-CPU Ray started once for the session (5-10 s)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's workers are started by the raylet, not forked from pytest: they import the
    # functions of test modules by name.
    paths = [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 * 1024 * 1024,
            log_to_driver=False,
            configure_logging=False,
        )
    yield RayEngine()
    if started:
        ray.shutdown()


@pytest.fixture(params=["local", "inline", "ray"])
def engine(request: pytest.FixtureRequest) -> Any:
    """Each engine in turn: a test using it must give the same results on all three."""
    if request.param == "ray":
        return request.getfixturevalue("ray_engine")
    return request.param


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Ray-using tests run last: a live Ray (its threads, its raylet's CPU) would change
    the conditions of every local test after it. Under `make test` two pytest workers
    (pytest-xdist) share the tests as they free up, and each starts Ray for its own share
    of the Ray tests, at the end."""

    def uses_ray(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        on_ray = callspec is not None and callspec.params.get("engine") == "ray"
        return on_ray or "ray_engine" in getattr(item, "fixturenames", ())

    items.sort(key=uses_ray)  # stable: the order within each part is kept
