"""A large buffer's mapping holds no file descriptor: a caller may keep more large results,
and a stage more large arrays, than the process may have files open (often 1024)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline
from tests.transport._stages import bump

pytestmark = pytest.mark.timeout(120)
N = 1 << 15  # float32 elements: 128 KiB, over the shared-memory threshold
ROOM = 200  # descriptors the run may open beyond those already open


@pytest.fixture
def few_open_files() -> Iterator[int]:
    """Lower this process's limit on open files (its workers inherit it) to what is open now
    plus :data:`ROOM`; returns how many large buffers a test should keep to pass it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + ROOM, hard))
    try:
        yield 3 * ROOM
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def arrays(n: int) -> Iterator[np.ndarray]:
    for i in range(n):
        yield np.full(N, i, dtype=np.float32)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_caller_keeps_more_large_results_than_it_may_open_files(few_open_files: int, method: str) -> None:
    n = few_open_files
    out = Pipeline(arrays(n), start_method=method).task(bump).wait_for_result()
    assert len(out) == n
    assert [float(a[0]) for a in out] == [i + 1.0 for i in range(n)]
    assert all(float(a[-1]) == i + 1.0 for i, a in enumerate(out))


class Hoard:
    """A stage that keeps every array it is given: none of their slots can be used again."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def __call__(self, a: np.ndarray) -> float:
        self.kept.append(a)
        return float(a[0] + a[-1])


def test_a_stage_keeps_more_large_arrays_than_it_may_open_files(few_open_files: int) -> None:
    n = few_open_files
    out = Pipeline(arrays(n)).task(Hoard()).wait_for_result()
    assert out == [2.0 * i for i in range(n)]
