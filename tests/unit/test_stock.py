"""Segment files made ahead (``stock``): what is made, when, how many, and that every file
not used is removed."""

from __future__ import annotations

import errno
import os
import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from olympipe._transport import shm, stock

pytestmark = pytest.mark.timeout(30)
SIZE = stock.MIN_BYTES
SETTLE = 10.0  # seconds: a bound for a hang, never reached when it works


@pytest.fixture
def prefix() -> str:
    return f"olympipe-{os.getpid()}-stock{uuid.uuid4().hex[:8]}"


@pytest.fixture
def made(prefix: str) -> Iterator[stock._Stock]:
    made = stock._Stock(prefix)
    yield made
    made.close()
    assert made.settled(SETTLE)


def _files(prefix: str) -> set[str]:
    return {e for e in os.listdir(shm.SHM_DIR) if e.startswith(prefix + "-")}


def _write(made: stock._Stock, fill: int, size: int = SIZE) -> str:
    data = np.full(size, fill, dtype=np.uint8).data
    return shm.write_segment(made.prefix, data, made.take(size))


def _read_and_remove(name: str, size: int = SIZE) -> np.ndarray:
    return np.frombuffer(shm.take_segment(name, size), dtype=np.uint8)


def test_files_are_made_ahead_after_two_writes_of_one_size(made: stock._Stock, prefix: str) -> None:
    first = _write(made, 1)
    assert made.settled(SETTLE)
    assert made.ready_count() == 0
    second = _write(made, 2)
    assert made.settled(SETTLE)
    assert made.ready_count() == stock.AHEAD
    ahead = _files(prefix) - {first, second}
    assert len(ahead) == stock.AHEAD
    third = _write(made, 3)
    assert third in ahead  # written into a file made ahead
    for name, fill in ((first, 1), (second, 2), (third, 3)):
        got = _read_and_remove(name)
        assert got.size == SIZE
        assert int(got.min()) == int(got.max()) == fill
    assert made.settled(SETTLE)
    assert len(_files(prefix)) == stock.AHEAD  # and made again, never more


def test_a_new_size_drops_the_files_made_for_the_old_one(made: stock._Stock, prefix: str) -> None:
    written = [_write(made, 1), _write(made, 2)]
    assert made.settled(SETTLE)
    assert made.ready_count() == stock.AHEAD
    written.append(_write(made, 3, 2 * SIZE))
    assert made.settled(SETTLE)
    assert made.ready_count() == 0
    assert _files(prefix) == set(written)
    for name, size in zip(written, (SIZE, SIZE, 2 * SIZE), strict=True):
        _read_and_remove(name, size)


def test_close_removes_the_files_not_used(made: stock._Stock, prefix: str) -> None:
    written = [_write(made, 1), _write(made, 2)]
    assert made.settled(SETTLE)
    assert made.ready_count() == stock.AHEAD
    made.close()
    assert made.settled(SETTLE)
    assert _files(prefix) == set(written)
    assert made.take(SIZE) is None
    for name in written:
        _read_and_remove(name)


def test_small_segments_are_not_made_ahead(made: stock._Stock, prefix: str) -> None:
    small = stock.MIN_BYTES // 2
    written = [_write(made, i, small) for i in range(4)]
    assert made.settled(SETTLE)
    assert _files(prefix) == set(written)
    for name in written:
        _read_and_remove(name, small)


def test_nothing_is_made_while_shared_memory_is_half_full(
    made: stock._Stock, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm, "short_of_room", lambda: True)
    written = [_write(made, i) for i in range(4)]
    assert made.settled(SETTLE)
    assert _files(prefix) == set(written)
    for name in written:
        _read_and_remove(name)


def test_a_file_that_does_not_fit_is_removed_and_not_tried_again(
    made: stock._Stock, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries = []

    def full(fd: int, offset: int, length: int) -> None:
        tries.append(length)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    written = [_write(made, i) for i in range(5)]
    assert made.settled(SETTLE)
    assert tries == [SIZE]
    assert _files(prefix) == set(written)
    for name, fill in zip(written, range(5), strict=True):
        assert int(_read_and_remove(name)[0]) == fill


def test_only_the_enabled_prefix_gets_files_made_ahead(prefix: str) -> None:
    stock.enable(prefix)
    try:
        other = prefix + "x"
        for _ in range(3):
            assert stock.take(other, SIZE) is None
        assert stock._stock is not None
        assert stock._stock.settled(SETTLE)
        assert not _files(other)
        assert not _files(prefix)
    finally:
        stock.close()


def test_a_forked_child_does_not_use_its_parents_files(prefix: str) -> None:
    stock.enable(prefix)
    try:
        for fill in (1, 2):
            _read_and_remove(
                shm.write_segment(prefix, np.full(SIZE, fill, np.uint8).data, stock.take(prefix, SIZE))
            )
        assert stock._stock is not None
        assert stock._stock.settled(SETTLE)
        assert stock._stock.ready_count() == stock.AHEAD
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0 if stock.take(prefix, SIZE) is None and stock._stock is None else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert stock._stock.ready_count() == stock.AHEAD  # the parent's are still there
    finally:
        stock.close()
    assert not _files(prefix)


def test_no_file_descriptor_left_stops_the_making_quietly(
    made: stock._Stock, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def opening(path: str, flags: int, mode: int = 0o777) -> int:
        if threading.current_thread().name == "olympipe-stock":
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", opening)
    written = [_write(made, i) for i in range(4)]
    assert made.settled(SETTLE)  # the thread is alive and idle, not dead with a traceback
    assert made._thread is not None
    assert made._thread.is_alive()
    assert _files(prefix) == set(written)
    for name, fill in zip(written, range(4), strict=True):
        assert int(_read_and_remove(name)[0]) == fill
