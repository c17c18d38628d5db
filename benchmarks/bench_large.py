"""Large payloads: 300 arrays of 4 MiB through 3 stages, in two shapes.

* **list through identity**: a prepared list, stages that return their input;
* **generator through in-place change**: a generator makes each array, each stage changes
  it in place (``a += 1``) and returns it, every result kept by the caller.

Each shape is measured against olympipe 2.2.0 (its own interpreter), ``Pool.imap`` chained
3 times, one raw pipe hop and one ``memcpy``, in the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from common import OLYMPIPE2_PYTHON, Section, median_time, run_peer

from olympipe import Pipeline

N = 300
MB = 4
GB = N * MB / 1024


def ident(a: np.ndarray) -> np.ndarray:
    return a


def bump(a: np.ndarray) -> np.ndarray:
    a += 1
    return a


def arrays() -> list[np.ndarray]:
    return [np.full((1024, 1024), i, dtype=np.float32) for i in range(N)]


def generated() -> Iterator[np.ndarray]:
    for i in range(N):
        yield np.full((1024, 1024), i, dtype=np.float32)


def _sink(rx: mp.connection.Connection) -> None:
    while rx.recv_bytes():
        pass


def raw_pipe_gbps(data: list[np.ndarray]) -> float:
    ctx = mp.get_context("fork")
    rx, tx = ctx.Pipe(False)
    p = ctx.Process(target=_sink, args=(rx,))
    p.start()
    t0 = time.perf_counter()
    for a in data:
        tx.send_bytes(memoryview(a).cast("B"))
    tx.send_bytes(b"")
    p.join()
    return GB / (time.perf_counter() - t0)


def _both(mode: str, reps: int, copying_too: bool) -> tuple[float | None, float | None, float | None]:
    """Median GB/s of one script (``peer_olympipe2.py``) run as fresh processes on this
    olympipe, on this olympipe copying every buffer (``OLYMPIPE_COPY_INHERITED=1``, when
    ``copying_too``) and on olympipe 2.2.0 (three runs each: they are slow), alternated:
    every side timed alike, from ``Pipeline(...)`` to ``wait_for_result()`` returning."""
    ours: list[float | None] = []
    copying: list[float | None] = []
    old: list[float | None] = []
    for i in range(reps):
        ours.append(_script_gbps(mode, Path(sys.executable)))
        if i < 3 and copying_too:
            copying.append(_script_gbps(mode, Path(sys.executable), {"OLYMPIPE_COPY_INHERITED": "1"}))
        if i < 3:
            old.append(_script_gbps(mode, OLYMPIPE2_PYTHON))
    return _median(ours), _median(copying), _median(old)


def _script_gbps(mode: str, python: Path, env: dict[str, str] | None = None) -> float | None:
    result = run_peer("peer_olympipe2.py", mode, str(N), python=python, env=env)
    return float(result["gb_per_s"]) if result else None


def _median(figures: list[float | None]) -> float | None:
    measured = [f for f in figures if f is not None]  # None: that run failed
    return statistics.median(measured) if measured else None


def _pool(fn: object, make: object) -> float:
    def run() -> None:
        with mp.get_context("fork").Pool(2) as pool:
            out = list(pool.imap(fn, pool.imap(fn, pool.imap(fn, make(), 1), 1), 1))  # type: ignore[operator]
            assert len(out) == N

    return GB / median_time(run, 3)


def main(reps: int) -> Section:
    s = Section(
        "Large payloads: 300 numpy arrays of 4 MiB, 3 stages, two shapes",
        ">= 2 GB/s on the list-through-identity shape; >= 3x olympipe 2.2.0 on the"
        " generator-through-in-place-change shape (every result kept)",
    )
    data = arrays()

    def ours_list() -> None:
        out = Pipeline(data, start_method="fork").task(ident).task(ident).task(ident).wait_for_result()
        assert len(out) == N

    def ours_gen() -> None:
        out = Pipeline(generated(), start_method="fork").task(bump).task(bump).task(bump).wait_for_result()
        assert len(out) == N
        assert float(out[-1][0, 0]) == N + 2

    for label, run, mode, fn, make in (
        ("list through identity", ours_list, "large", ident, lambda: data),
        ("generator through in-place change", ours_gen, "large-inplace", bump, generated),
    ):
        ours, copying, old = _both(mode, reps, copying_too=fn is ident)
        if ours is None:
            continue
        s.row(f"{label}: olympipe", f"{ours:.2f} GB/s")
        if copying:
            ratio = f"ours = {ours / copying:.2f}x"
            s.row(f"{label}: olympipe, every buffer copied", f"{copying:.2f} GB/s", ratio)
        if old:
            s.row(f"{label}: olympipe 2.2.0", f"{old:.2f} GB/s", f"ours = {ours / old:.2f}x")
        pool = _pool(fn, make)
        s.row(f"{label}: Pool.imap x3", f"{pool:.2f} GB/s", f"ours = {ours / pool:.2f}x")
        warm = GB / median_time(run, reps)
        s.row(f"{label}: olympipe, later runs of one process", f"{warm:.2f} GB/s")
    streamed = _median([_script_gbps("large-stream", Path(sys.executable)) for _ in range(reps)])
    if streamed is not None:
        s.row("generator through in-place change, each result dropped: olympipe", f"{streamed:.2f} GB/s")
    s.row("raw pipe, 1 hop", f"{raw_pipe_gbps(data):.2f} GB/s")
    dst = np.empty_like(data[0])
    memcpy = median_time(lambda: [np.copyto(dst, a) for a in data], reps)
    s.row("memcpy, 1 copy", f"{GB / memcpy:.2f} GB/s")
    s.note(
        "olympipe and olympipe 2.2.0 run the same script (`peer_olympipe2.py`), each as fresh"
        " processes, timed from `Pipeline(...)` to `wait_for_result()` returning; the later-runs"
        " row times a run in a process that already ran some, dropping its results included"
    )
    s.note(
        "the list's arrays travel by address (the forked workers already hold them, unchanged;"
        ' docs/API.md, "Buffers the workers already hold"): no copy, and the results share'
        " memory with the list. The generator's arrays are new memory: each is copied once,"
        " by the feeder, into a shared-memory slot used again and again, and forwarded in it;"
        " the results the caller keeps are written by the last stage into memory of their own"
        ' (docs/API.md, "Slots"). `every buffer copied` runs the same script with'
        " `OLYMPIPE_COPY_INHERITED=1`"
    )
    s.note(
        "each result dropped: the same generator and stages iterated (`for a in pipeline`),"
        " as a consumer feeding a model does; its results come lent in their slots, no copy"
        " after the feeder's (olympipe 2.2.0 has no iteration)"
    )
    return s
