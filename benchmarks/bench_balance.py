"""Adaptive chunks: expensive items keep count=2 balanced; no chunk size set by the user."""

from __future__ import annotations

import multiprocessing as mp

from common import Section, burn, median_time

from olympipe import Pipeline

N = 200
COST = 0.010


def work(x: int) -> int:
    burn(COST)
    return x


def main(reps: int) -> Section:
    s = Section("Adaptive chunks: 200 items of 10 ms, count=2", "within 10 % of 1 s on 2 cores")
    ours = median_time(
        lambda: Pipeline(range(N), start_method="fork").task(work, count=2).wait_for_result(), reps
    )

    def pool_run() -> None:
        with mp.get_context("fork").Pool(2) as pool:
            list(pool.imap(work, range(N), 1))

    pool = median_time(pool_run, reps)
    s.row("ideal (2 cores)", f"{N * COST / 2:.3f} s")
    s.row("olympipe task(count=2)", f"{ours:.3f} s", f"{ours / (N * COST / 2):.2f}x ideal")
    s.row("Pool(2).imap chunksize=1", f"{pool:.3f} s", f"{pool / (N * COST / 2):.2f}x ideal")
    return s
