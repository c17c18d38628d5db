"""Big payloads: every buffer type arrives intact, forwarded arrays are not copied, the
caller's results outlive the run, and nothing stays in /dev/shm."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline
from olympipe._transport import shm
from tests.transport._stages import bump, ident, plus_one, plus_one_in_new_worker

pytestmark = pytest.mark.timeout(60)
PREFIX = f"olympipe-{os.getpid()}-"
BIG = 1 << 17  # elements: over the shared-memory threshold for every dtype below


def _segments() -> list[str]:
    return [e for e in os.listdir(shm.SHM_DIR) if e.startswith(PREFIX)]


def _writer(segment: str) -> int | None:
    """The pid that wrote a segment (named ``<prefix>-<pid>-<n>``)."""
    pid, n = segment.rsplit("-", 2)[1:]
    return int(pid) if pid.isdigit() and n.isdigit() else None


def arrays(n: int, dtype: Any = np.float32) -> list[np.ndarray]:
    return [np.full(BIG, i, dtype=dtype) for i in range(n)]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.float32, np.float64, np.complex128, bool])
def test_every_dtype_arrives_intact(dtype: Any) -> None:
    data = [np.arange(BIG).astype(dtype) + i for i in range(3)] if dtype is not bool else arrays(3, bool)
    got = Pipeline(data, start_method="fork").task(ident).task(ident).wait_for_result()
    assert all(g.dtype == d.dtype and np.array_equal(g, d) for g, d in zip(got, data, strict=True))


def test_non_contiguous_and_structured_arrays() -> None:
    base = np.arange(4 * BIG, dtype=np.float64).reshape(4, BIG)
    strided = [base[:, ::2], base.T, base[::2]]
    record = np.zeros(BIG, dtype=[("x", np.int32), ("y", np.float64)])
    record["x"] = np.arange(BIG)
    got = Pipeline([*strided, record]).task(ident).task(ident).wait_for_result()
    for g, d in zip(got, [*strided, record], strict=True):
        assert np.array_equal(g, d)


def test_bytes_and_bytearray() -> None:
    blob = bytes(range(256)) * 1024
    values: list[Any] = [blob, bytearray(blob), bytearray(blob)]
    got = Pipeline(values).task(ident).task(ident).wait_for_result()
    assert got == values
    assert [type(v) for v in got] == [bytes, bytearray, bytearray]


def test_in_place_changes_are_forwarded_and_the_source_is_untouched() -> None:
    data = arrays(20)
    got = Pipeline(data, start_method="fork").task(bump).task(bump).task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 3.0 for i in range(20)]
    assert [float(a[-1]) for a in data] == [float(i) for i in range(20)]  # copied once, in
    assert _segments() == []


def test_results_stay_valid_after_the_run() -> None:
    def gen() -> Iterator[np.ndarray]:
        yield from arrays(10)

    got = Pipeline(gen(), start_method="forkserver").task(bump, count=2).task(ident).wait_for_result()
    assert _segments() == []  # unlinked, and still mapped by the results
    assert [float(a.sum()) for a in got] == [float(BIG * (i + 1)) for i in range(10)]
    got[0][:] = 7  # the caller's results are its own, writable
    assert float(got[0][0]) == 7.0


def test_a_broadcast_array_is_copied_per_branch() -> None:
    p = Pipeline(arrays(6), start_method="fork").task(ident)
    left = p.task(bump)
    right = p.task(ident)
    a, b = Pipeline.wait_for_all_results([left, right])
    assert [float(x[0]) for x in a] == [i + 1.0 for i in range(6)]
    assert [float(x[0]) for x in b] == [float(i) for i in range(6)]  # never sees the other's change
    assert _segments() == []


def test_forwarded_arrays_through_batch_and_explode() -> None:
    got = Pipeline(arrays(9), start_method="fork").task(ident).batch(4).explode().task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 1.0 for i in range(9)]
    assert _segments() == []


def test_memory_is_flat_with_an_infinite_source_of_big_arrays() -> None:
    import itertools

    import psutil

    def endless() -> Iterator[np.ndarray]:
        for i in itertools.count():
            yield np.full(1 << 19, i % 7, dtype=np.float64)  # 4 MiB

    peak = 0
    me = psutil.Process()
    for i, a in enumerate(Pipeline(endless(), start_method="fork").task(bump, count=2).task(ident)):
        if i % 50 == 0:
            shm_bytes = sum(
                os.path.getsize(os.path.join(shm.SHM_DIR, e))
                for e in _segments()
                if os.path.exists(os.path.join(shm.SHM_DIR, e))
            )
            peak = max(peak, shm_bytes)
        assert float(a[0]) == i % 7 + 1
        del a
        if i == 400:
            break
    assert peak < 400 * 2**20, f"{peak / 2**20:.0f} MiB of segments in /dev/shm at once"
    assert me.memory_info().rss < 2 * 2**30


def test_a_large_item_from_a_slow_source_is_not_held_back() -> None:
    """A large item must go on as soon as it is written to shared memory, not wait for
    the source's next item (a camera frame every 30 ms waited 30 ms)."""
    yielded: list[float] = []

    def frames() -> Any:
        for i in range(4):
            yielded.append(time.monotonic())
            yield np.full(200_000, i, dtype=np.uint8)
            time.sleep(0.6)  # the next frame comes much later

    for i, frame in enumerate(Pipeline(frames()).task(lambda a: a)):
        assert int(frame[0]) == i
        assert len(yielded) == i + 1, "a frame waited for the source's next one"


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_new_arrays_of_changing_sizes_arrive_intact(start_method: str) -> None:
    """A stage making a new 1-2 MiB array per item writes it into files made ahead of need
    (see ``stock``): every size change drops them, the run's end removes what is left."""
    sizes = [1 << 20] * 12 + [1 << 21] * 12 + [1 << 20] * 6 + [(1 << 20) + 4096, 1 << 20] * 4

    def source() -> Iterator[np.ndarray]:
        for i, size in enumerate(sizes):
            yield np.full(size, i % 200, dtype=np.uint8)

    out = Pipeline(source(), start_method=start_method).task(plus_one).task(plus_one).wait_for_result()
    assert [a.size for a in out] == sizes
    assert all(int(a.min()) == int(a.max()) == i % 200 + 2 for i, a in enumerate(out))


def test_recycled_workers_leave_no_files_made_ahead() -> None:
    """A worker that retires removes the files it made ahead (else two per replacement would
    stay until the run's end). Results come in order and the caller unlinks each as it takes
    it, so once a result of the next worker is in, nothing of a retired one is left."""
    pipe = Pipeline(np.full(1 << 20, i, dtype=np.uint8) for i in range(90)).task(
        plus_one_in_new_worker, max_items_per_worker=9
    )
    retired: list[int] = []
    for i, (a, pid) in enumerate(pipe):
        assert int(a[0]) == int(a[-1]) == i + 1
        if pid not in retired[-1:]:
            retired.append(pid)
        left = [e for e in _segments() if _writer(e) in retired[:-1]]
        assert not left, f"files of retired workers: {left}"
    assert len(retired) >= 9  # replaced again and again
