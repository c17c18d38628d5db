"""Large buffers from the caller travel in slots that are used again (``_transport/pool.py``):
far fewer slots than items, never one a stage still holds, a budget that is never exceeded,
and results that are the caller's own."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline, WorkerDied
from olympipe._transport import pool, shm
from tests.transport._stages import bump, ident

pytestmark = pytest.mark.timeout(90)
PREFIX = f"olympipe-{os.getpid()}-"
N = 1 << 16  # float32 elements: 256 KiB, over the shared-memory threshold
SLOT_BYTES = 1 << 18  # the capacity of the slot an item of N float32 takes
METHODS = ["fork", "spawn"]


class Counts:
    """The caller's slot traffic in one test: buffers written into a slot, slots made."""

    def __init__(self) -> None:
        self.written = 0
        self.made = 0
        self.made_bytes = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    seen = Counts()
    write, new_slot = pool.Pool.write, pool.Pool._new_slot

    def counting_write(self: pool.Pool, data: memoryview) -> str | None:
        name = write(self, data)
        seen.written += name is not None
        return name

    def counting_new_slot(self: pool.Pool, capacity: int, first: memoryview) -> Any:
        slot = new_slot(self, capacity, first)
        seen.made += slot is not None
        seen.made_bytes += capacity if slot is not None else 0
        return slot

    monkeypatch.setattr(pool.Pool, "write", counting_write)
    monkeypatch.setattr(pool.Pool, "_new_slot", counting_new_slot)
    return seen


def _leftovers() -> list[str]:
    return [e for e in os.listdir(shm.SHM_DIR) if e.startswith(PREFIX)]


def arrays(n: int) -> Iterator[np.ndarray]:
    """New memory each time, as a camera or a decoder gives: never inherited by a worker."""
    for i in range(n):
        yield np.full(N, i, dtype=np.float32)


def doubled(a: np.ndarray) -> np.ndarray:
    return a * 2


def a_multiple_of_4(a: np.ndarray) -> bool:
    return int(a[0]) % 4 == 0


_kept: list[tuple[int, np.ndarray]] = []  # per worker process


def keep_every_third(a: np.ndarray) -> np.ndarray:
    """Keeps some of the arrays it returns, and fails if any it kept has changed since."""
    value = int(a[0])
    if value % 3 == 0:
        _kept.append((value, a))
    for kept_value, kept in _kept:
        if not (kept == kept_value).all():
            raise AssertionError(f"an array this stage kept ({kept_value}) changed under it")
    return a


_all: list[np.ndarray] = []  # per worker process


def keep_all(a: np.ndarray) -> np.ndarray:
    _all.append(a)
    return a


def kill_on_40(a: np.ndarray) -> np.ndarray:
    if int(a[0]) == 40:
        os.kill(os.getpid(), signal.SIGKILL)
    return a


@pytest.mark.parametrize("method", METHODS)
def test_slots_are_used_again(method: str, counts: Counts) -> None:
    got = Pipeline(arrays(300), start_method=method).task(bump).task(ident).task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 2.0 for i in range(300)]
    assert all(float(a[-1]) == float(a[0]) for a in got)
    assert counts.written == 300
    assert counts.made <= 100  # a slot per item in flight, not per item
    assert _leftovers() == []


@pytest.mark.parametrize("method", METHODS)
def test_new_arrays_and_dropped_items_give_their_slots_back(method: str, counts: Counts) -> None:
    got = Pipeline(arrays(300), start_method=method).filter(a_multiple_of_4).task(doubled).wait_for_result()
    assert [float(a[0]) for a in got] == [2.0 * i for i in range(0, 300, 4)]
    assert counts.written == 300
    assert counts.made <= 100
    assert _leftovers() == []


@pytest.mark.parametrize("method", METHODS)
def test_a_slot_a_stage_still_holds_is_not_used_again(method: str, counts: Counts) -> None:
    got = Pipeline(arrays(300), start_method=method).task(keep_every_third).task(ident).wait_for_result()
    assert [float(a[0]) for a in got] == [float(i) for i in range(300)]
    assert counts.made >= 100  # the 100 kept never come back
    assert _leftovers() == []


def test_with_no_budget_no_slot_is_made(counts: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLYMPIPE_POOL_BYTES", "0")
    got = Pipeline(arrays(50), start_method="fork").task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 1.0 for i in range(50)]
    assert counts.made == 0
    assert counts.written == 0


def test_a_spent_budget_falls_back_to_segments(counts: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLYMPIPE_POOL_BYTES", str(4 * SLOT_BYTES))
    got = Pipeline(arrays(60), start_method="fork").task(keep_all).task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 1.0 for i in range(60)]
    assert counts.made == 4
    assert counts.made_bytes == 4 * SLOT_BYTES
    assert counts.written == 4  # the stage keeps every array: no slot comes back


def test_a_source_straight_to_the_caller(counts: Counts) -> None:
    first = Pipeline(arrays(40), start_method="fork").wait_for_result()
    second = Pipeline(arrays(40), start_method="fork").task(bump).wait_for_result()
    assert counts.written == 80
    assert [float(a[0]) for a in first] == [float(i) for i in range(40)]  # not the second run's
    assert [float(a[0]) for a in second] == [i + 1.0 for i in range(40)]
    first[0][:] = 9
    assert float(first[0][-1]) == 9.0
    assert float(first[1][0]) == 1.0
    assert _leftovers() == []


def test_results_the_caller_holds_never_change(counts: Counts) -> None:
    got = Pipeline(arrays(40), start_method="fork").task(ident).wait_for_result()
    more = Pipeline(arrays(40), start_method="fork").task(bump).wait_for_result()
    assert counts.written == 80
    assert [float(a.sum()) for a in got] == [float(N * i) for i in range(40)]
    assert [float(a[0]) for a in more] == [i + 1.0 for i in range(40)]


@pytest.fixture
def lent(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per result that came to the caller in a slot: whether it was lent (else copied out)."""
    seen: list[bool] = []
    receive = pool.Pool.receive

    def counting_receive(self: pool.Pool, name: str, size: int) -> Any:
        got = receive(self, name, size)
        seen.append(not isinstance(got, bytearray))
        return got

    monkeypatch.setattr(pool.Pool, "receive", counting_receive)
    return seen


def test_a_caller_dropping_its_results_gets_them_in_slots_without_a_copy(
    counts: Counts, lent: list[bool]
) -> None:
    # each result dropped before the next comes
    seen = [
        float(a[0]) + float(a[-1]) for a in Pipeline(arrays(300), start_method="fork").task(bump).task(bump)
    ]
    assert seen == [2.0 * (i + 2) for i in range(300)]
    assert lent == [True] * 300
    assert counts.written == 300
    assert counts.made <= 100  # slots come back from the caller too: not one per item
    assert _leftovers() == []


def test_a_caller_keeping_its_results_makes_the_last_stage_copy(counts: Counts, lent: list[bool]) -> None:
    got = Pipeline(arrays(200), start_method="fork").task(bump).task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 2.0 for i in range(200)]
    assert 0 < sum(lent) <= pool._LEND_SLOTS
    assert len(lent) < 50  # past the lent ones, results come in segments, not slots copied here
    assert counts.made <= 100
    assert _leftovers() == []


def test_lent_results_as_the_source_of_a_later_run_do_not_change(counts: Counts) -> None:
    held = list(Pipeline(arrays(6), start_method="fork").task(ident))
    assert counts.written == 6
    out = Pipeline(held, start_method="fork").task(bump).task(bump).wait_for_result()
    assert [float(a[0]) for a in out] == [i + 2.0 for i in range(6)]
    assert [float(a.sum()) for a in held] == [float(N * i) for i in range(6)]


def test_nothing_is_left_when_a_worker_holding_slots_is_killed(counts: Counts) -> None:
    with pytest.raises(WorkerDied):
        Pipeline(arrays(200), start_method="fork").task(ident).task(kill_on_40).task(bump).wait_for_result()
    assert counts.written > 0
    assert _leftovers() == []


def test_smaller_items_reuse_larger_slots(counts: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLYMPIPE_POOL_BYTES", str(8 * SLOT_BYTES))

    def big_then_small() -> Iterator[np.ndarray]:
        yield from arrays(8)  # these spend the budget on slots of their size
        for i in range(8, 108):
            yield np.full(N // 3, i, dtype=np.float32)  # a slot of a quarter of that size fits

    got = Pipeline(big_then_small(), start_method="fork").task(bump).wait_for_result()
    assert [float(a[0]) for a in got] == [i + 1.0 for i in range(108)]
    assert [a.size for a in got] == [N] * 8 + [N // 3] * 100
    assert counts.made_bytes <= 8 * SLOT_BYTES
    assert counts.written >= 16  # small ones in the big slots (without: only the first 8; how many: timing)


def test_a_new_slot_holds_all_of_its_first_buffer(counts: Counts) -> None:
    """A new slot is written before it is mapped (its pages are not zeroed first), and the
    rest of a slot larger than that buffer is reserved: every byte arrives, whatever the size."""
    sizes = [N, N // 3, N + 7, 3 * N // 2] * 3

    def items() -> Iterator[np.ndarray]:
        for i, size in enumerate(sizes):
            yield np.arange(size, dtype=np.float32) + i

    got = Pipeline(items(), start_method="fork").task(bump).task(bump).wait_for_result()
    for i, (g, size) in enumerate(zip(got, sizes, strict=True)):
        assert np.array_equal(g, np.arange(size, dtype=np.float32) + i + 2)
    assert counts.made >= 3
