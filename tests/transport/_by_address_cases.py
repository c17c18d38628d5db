"""Runs of a list of arrays under fork, each in a fresh single-threaded interpreter (as a
script runs; the test session has threads of its own). Prints one JSON object:
``ok`` (the values are right), ``shared`` (per result, whether it shares memory with the
source) and ``copies`` (segments and slots the caller wrote)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from olympipe import Pipeline
from olympipe._transport import pool, shm

N = 1 << 16  # float32 elements: 256 KiB, over the shared-memory threshold

copies = 0
_write_segment = shm.write_segment
_caller = os.getpid()


def _counting(prefix: str, data: memoryview, made: tuple[int, str] | None = None) -> str:
    global copies
    if os.getpid() == _caller:
        copies += 1
    return _write_segment(prefix, data, made)


shm.write_segment = _counting
_write_slot = pool.Pool.write


def _counting_slots(self: pool.Pool, data: memoryview) -> str | None:
    global copies
    name = _write_slot(self, data)
    copies += name is not None
    return name


pool.Pool.write = _counting_slots  # type: ignore[method-assign]


def ident(a: Any) -> Any:
    return a


def bump(a: np.ndarray) -> np.ndarray:
    a += 1
    return a


def double(a: np.ndarray) -> np.ndarray:
    return a * 2  # reads the input in the worker


def bump_then_fork(a: np.ndarray) -> np.ndarray:
    a += 1
    # a pipeline of the stage's own, forked from this worker after the write
    Pipeline([1], start_method="fork").task(ident).wait_for_result()
    return a


def source(n: int) -> list[np.ndarray]:
    return [np.full(N, i, dtype=np.float32) for i in range(n)]


def report(ok: bool, out: list[Any], data: list[np.ndarray]) -> None:
    shared = [any(np.shares_memory(o, d) for d in data) for o in out]
    print(json.dumps({"ok": bool(ok), "shared": shared, "copies": copies}))


def main(case: str) -> None:
    if case == "identity":
        data = source(12)
        out = Pipeline(data, start_method="fork").task(ident).task(ident).task(ident).wait_for_result()
        report(all(np.array_equal(o, d) for o, d in zip(out, data, strict=True)), out, data)
    elif case == "forkserver":
        data = source(6)
        out = Pipeline(data, start_method="forkserver").task(ident).task(ident).wait_for_result()
        report(all(np.array_equal(o, d) for o, d in zip(out, data, strict=True)), out, data)
    elif case == "in_place":
        data = source(8)
        out = Pipeline(data, start_method="fork").task(bump).task(ident).task(bump).wait_for_result()
        ok = [float(o[0]) for o in out] == [i + 2.0 for i in range(8)]
        report(ok and [float(d[-1]) for d in data] == [float(i) for i in range(8)], out, data)
    elif case == "the_same_array_twice":
        a = np.zeros(N, dtype=np.float32)
        out = Pipeline([a, a, a], start_method="fork").task(bump).wait_for_result()
        report([float(o[0]) for o in out] == [1.0, 1.0, 1.0] and float(a[0]) == 0.0, out, [a])
    elif case == "overlapping_views":
        big = np.arange(8 * N, dtype=np.float32)
        views = [big[k : k + 2 * N] for k in range(0, 6 * N, N)]  # each overlaps the next by half
        expected = [v + 1 for v in views]
        out = Pipeline(views, start_method="fork").task(bump).wait_for_result()
        ok = all(np.array_equal(o, e) for o, e in zip(out, expected, strict=True))
        report(ok and np.array_equal(big, np.arange(8 * N, dtype=np.float32)), out, [big])
    elif case == "caller_writes_after_the_fork":
        big = np.ones((6, N), dtype=np.float32)  # every page written before the run starts

        def rows() -> Any:
            for k in range(6):
                big[k, k * 1024] = 100 + k  # one page of the row, written after the forks
                yield big[k]

        out = Pipeline(rows(), start_method="fork").task(ident).task(double).wait_for_result()
        marks = [float(o[k * 1024]) for k, o in enumerate(out)]
        report(marks == [200.0 + 2 * k for k in range(6)], out, [big])
    elif case == "caller_forks_after_writing":
        big = np.ones((4, N), dtype=np.float32)
        read_end, write_end = os.pipe()

        def rows_then_fork() -> Any:
            for k in range(4):
                big[k, 0] = 100 + k
                if os.fork() == 0:  # a child that maps the written page too, until the end
                    os.close(write_end)
                    os.read(read_end, 1)
                    os._exit(0)
                yield big[k]

        out = Pipeline(rows_then_fork(), start_method="fork").task(double).wait_for_result()
        os.close(write_end)
        for _ in range(4):
            os.wait()
        report([float(o[0]) for o in out] == [200.0 + 2 * k for k in range(4)], out, [big])
    elif case == "filter_and_batch":
        data = source(10)
        p: Pipeline[np.ndarray] = Pipeline(data, start_method="fork")
        out = p.filter(lambda a: a[0] % 2 == 0).batch(2).explode().task(ident).wait_for_result()
        report([float(o[0]) for o in out] == [0.0, 2.0, 4.0, 6.0, 8.0], out, data)
    elif case == "broadcast":
        data = source(6)
        p = Pipeline(data, start_method="fork").task(ident)
        left, right = Pipeline.wait_for_all_results([p.task(bump), p.task(ident)])
        ok = [float(x[0]) for x in left] == [i + 1.0 for i in range(6)]
        ok = ok and [float(x[0]) for x in right] == [float(i) for i in range(6)]
        report(ok and [float(d[0]) for d in data] == [float(i) for i in range(6)], left + right, data)
    elif case == "a_stage_forks_after_writing":
        data = source(4)
        out = Pipeline(data, start_method="fork").task(bump_then_fork).task(bump).wait_for_result()
        report([float(o[0]) for o in out] == [i + 2.0 for i in range(4)], out, data)
    elif case == "shared_memory_source":
        # Arrays in a shared mapping that another process maps too: a worker's write to such a
        # page is not copied on write, it lands in the caller's array.
        import mmap

        shared = mmap.mmap(-1, 4 * N * 4)  # MAP_SHARED, anonymous
        grid: np.ndarray = np.frombuffer(shared, dtype=np.float32).reshape(4, N)
        grid[:] = np.arange(4, dtype=np.float32)[:, None]
        read_end, write_end = os.pipe()
        if os.fork() == 0:  # maps every page of it, until the end
            os.close(write_end)
            float(grid.sum())
            os.read(read_end, 1)
            os._exit(0)
        os.close(read_end)
        lines: list[np.ndarray] = [grid[k] for k in range(4)]
        out = Pipeline(lines, start_method="fork").task(bump).wait_for_result()
        ok = [float(o[0]) for o in out] == [k + 1.0 for k in range(4)]
        ok = ok and [float(row[-1]) for row in lines] == [float(k) for k in range(4)]
        os.close(write_end)
        os.wait()
        report(ok, out, [grid])
    else:
        raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main(sys.argv[1])
