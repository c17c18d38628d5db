"""When ``/dev/shm`` has no room left (a container's 64 MB default, or results the caller
keeps filling it), a large buffer travels in its frame, through the pipe: slower, never an
error, and no half-written file is left taking the room."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline
from olympipe._transport import pool, shm
from tests.transport._stages import bump

pytestmark = pytest.mark.timeout(60)
N = 1 << 16  # float32 elements: 256 KiB, over the shared-memory threshold
ROOM = 3  # segments each process may write before /dev/shm is full


def _fill_after(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """Each process (a forked worker starts from its parent's count) writes ``room`` segments;
    the next ones stop half-way with ENOSPC, as on a full tmpfs."""
    written = [0]
    write_all = shm.write_all

    def writing(fd: int, view: memoryview) -> None:
        if written[0] >= room:
            write_all(fd, view[: view.nbytes // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += 1
        write_all(fd, view)

    monkeypatch.setattr(shm, "write_all", writing)


@pytest.fixture
def full_shm(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill_after(monkeypatch, ROOM)


def arrays(n: int) -> Iterator[np.ndarray]:
    for i in range(n):
        yield np.full(N, i, dtype=np.float32)


@pytest.mark.parametrize("pool_bytes", ["0", str(1 << 26)])
def test_kept_results_that_do_not_fit_come_through_the_pipe(
    full_shm: None, monkeypatch: pytest.MonkeyPatch, pool_bytes: str
) -> None:
    monkeypatch.setenv("OLYMPIPE_POOL_BYTES", pool_bytes)
    out = Pipeline(arrays(40), start_method="fork").task(bump).task(bump).wait_for_result()
    assert [float(a[0]) for a in out] == [i + 2.0 for i in range(40)]
    assert all(float(a[-1]) == i + 2.0 for i, a in enumerate(out))
    for a in out:
        a += 1  # the caller's own, writable
    assert [float(a[-1]) for a in out] == [i + 3.0 for i in range(40)]


def test_streamed_results_that_do_not_fit_come_through_the_pipe(full_shm: None) -> None:
    seen = [float(a[-1]) for a in Pipeline(arrays(40), start_method="fork").task(bump)]
    assert seen == [i + 1.0 for i in range(40)]


def test_a_large_pickle_that_does_not_fit_comes_through_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill_after(monkeypatch, 0)
    chunks = [[f"item {i}-{j}" for j in range(5000)] for i in range(5)]  # pickles over 64 KiB
    out = Pipeline(chunks, start_method="fork").task(list).wait_for_result()
    assert out == chunks


def _weights() -> Any:
    weights = np.arange(N, dtype=np.float64)  # 512 KiB, captured by the stage

    def dot(a: np.ndarray) -> float:
        return float(weights[: len(a)] @ a)

    return dot


def test_a_large_stage_definition_that_does_not_fit_travels_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill_after(monkeypatch, 0)  # the caller writes definitions: spawned workers need them
    got = Pipeline([np.ones(4), np.ones(8)], start_method="spawn").task(_weights()).wait_for_result()
    assert got == [6.0, 28.0]


def test_a_segment_that_does_not_fit_leaves_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill_after(monkeypatch, 0)
    prefix = f"olympipe-{os.getpid()}-full"
    with pytest.raises(OSError, match="No space"):
        shm.write_segment(prefix, memoryview(bytes(1 << 18)))
    assert [e for e in os.listdir(shm.SHM_DIR) if e.startswith(prefix)] == []


def test_slots_take_at_most_a_quarter_of_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLYMPIPE_POOL_BYTES", raising=False)
    room = os.statvfs(shm.SHM_DIR)
    assert 0 < pool.budget() <= room.f_frsize * room.f_blocks // 4


def _mapped_segments() -> int:
    with open("/proc/self/maps") as maps:
        return sum(f"{shm.SHM_DIR}/olympipe-" in line for line in maps)


def test_with_shared_memory_half_full_kept_results_move_to_the_callers_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Left in /dev/shm, the results a caller keeps would fill it, and everything in flight
    would then go through the pipes."""
    monkeypatch.setattr(shm, "short_of_room", lambda: True)
    monkeypatch.setenv("OLYMPIPE_POOL_BYTES", "0")
    before = _mapped_segments()
    out = Pipeline(arrays(20), start_method="fork").task(bump).wait_for_result()
    assert [float(a[-1]) for a in out] == [i + 1.0 for i in range(20)]
    assert _mapped_segments() == before  # none of the 20 holds /dev/shm
    out[0] += 1  # the caller's own, writable
    assert float(out[0][0]) == 2.0


_ON_FULL_TMPFS = """
import sys
import numpy as np
from olympipe import Pipeline
from olympipe._transport import shm

shm.SHM_DIR = sys.argv[1]


def bump(a):
    a += 1
    return a


out = Pipeline(np.full(1 << 16, i, dtype=np.float32) for i in range(20)).task(bump).wait_for_result()
assert [float(a[-1]) for a in out] == [i + 1.0 for i in range(20)]
print("ok")
"""


@pytest.fixture
def full_tmpfs(tmp_path: Any) -> Iterator[str]:
    """A tmpfs with no room left (needs the right to mount: skipped without it)."""
    import subprocess

    mount = tmp_path / "shm"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with open(mount / "filler", "wb") as filler:
            try:
                filler.write(bytes(2 << 20))
            except OSError:
                pass  # full
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_run_on_a_full_shared_memory_does_not_crash_the_caller(full_tmpfs: str) -> None:
    """The slots' one-byte lending file was mapped and written without reserving its page:
    on a full /dev/shm the caller died of SIGBUS."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _ON_FULL_TMPFS, full_tmpfs], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "ok"
