"""Large payloads: 300 arrays of 4 MiB through 3 stages."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
from common import Section, median_time, run_peer

from olympipe import Pipeline

N = 300
MB = 4


def ident(a: np.ndarray) -> np.ndarray:
    return a


def arrays() -> list[np.ndarray]:
    return [np.full((1024, 1024), i, dtype=np.float32) for i in range(N)]


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
    return N * MB / 1024 / (time.perf_counter() - t0)


def main(reps: int) -> Section:
    s = Section(
        "Large payloads: 300 numpy arrays of 4 MiB, 3 stages",
        ">= 2x olympipe 2.2.0's throughput; segments bounded and never leaked",
    )
    data = arrays()
    ours = median_time(
        lambda: Pipeline(data, start_method="fork").task(ident).task(ident).task(ident).wait_for_result(),
        reps,
    )
    ours_gbps = N * MB / 1024 / ours

    def pool_run() -> None:
        with mp.get_context("fork").Pool(2) as pool:
            list(pool.imap(ident, pool.imap(ident, pool.imap(ident, data, 1), 1), 1))

    pool = median_time(pool_run, reps)
    dst = np.empty_like(data[0])
    memcpy = median_time(lambda: [np.copyto(dst, a) for a in data], reps)
    s.row("olympipe", f"{ours_gbps:.2f} GB/s")
    s.row("Pool.imap x3", f"{N * MB / 1024 / pool:.2f} GB/s", f"{pool / ours:.2f}x slower")
    old = run_peer("peer_olympipe2.py", "large", str(N))
    if old:
        s.row("olympipe 2.2.0", f"{old['gb_per_s']:.2f} GB/s", f"ours = {ours_gbps / old['gb_per_s']:.2f}x")
    s.row("raw pipe, 1 hop", f"{raw_pipe_gbps(data):.2f} GB/s")
    s.row("memcpy, 1 copy", f"{N * MB / 1024 / memcpy:.2f} GB/s")
    return s
