"""Large payloads go through shared memory, arrive intact, and never leak a segment."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from olympipe import Pipeline, WorkerDied
from olympipe._transport import shm

pytestmark = pytest.mark.faults


PREFIX = f"olympipe-{os.getpid()}-"  # this test process's runs (workers inherit the value)


def _segments() -> list[str]:
    return [e for e in os.listdir(shm.SHM_DIR) if e.startswith(PREFIX)]


def test_arrays_and_bytes_roundtrip() -> None:
    arrays = [np.full((300, 300), i, dtype=np.float64) for i in range(40)]  # 720 KB each
    got = Pipeline(arrays).task(lambda a: a + 1, count=2).task(lambda a: a * 2).wait_for_result()
    assert [float(a[0, 0]) for a in got] == [(i + 1) * 2.0 for i in range(40)]
    assert all(a.flags.writeable for a in got)
    blobs = [bytes([i]) * (200 * 1024) for i in range(20)]
    assert Pipeline(blobs).task(lambda b: b[::-1]).wait_for_result() == [b[::-1] for b in blobs]
    assert _segments() == []


def kill_on_5(a: np.ndarray) -> np.ndarray:
    if a[0, 0] == 5:
        os.kill(os.getpid(), 9)
    return a


def test_no_segment_left_after_a_worker_is_killed() -> None:
    arrays = [np.full((512, 512), i, dtype=np.float64) for i in range(30)]  # 2 MiB each
    with pytest.raises(WorkerDied):
        Pipeline(arrays).task(lambda a: a).task(kill_on_5).task(lambda a: a).wait_for_result()
    assert _segments() == []


def test_segments_in_flight_are_bounded() -> None:
    # A slow last stage: producers must wait for slots instead of filling /dev/shm.
    def slow_count(a: np.ndarray) -> tuple[int, int]:
        time.sleep(0.005)
        return int(a[0, 0]), len(_segments())

    arrays = (np.full((256, 256), i, dtype=np.float64) for i in range(60))  # 512 KiB each
    got = Pipeline(arrays).task(lambda a: a).task(slow_count).wait_for_result()
    assert [value for value, _ in got] == list(range(60))
    assert max(count for _, count in got) <= 3 * 8  # three channels, SHM_SLOTS frames each
