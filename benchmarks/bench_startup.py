"""Startup: 1 item through 5 stages, process start and teardown included."""

from __future__ import annotations

import multiprocessing as mp

from common import Section, inc, median_time, run_peer

from olympipe import Pipeline


def main(reps: int) -> Section:
    s = Section("Startup: 1 item through 5 stages (fork)", "<= 30 ms median")
    ours = median_time(
        lambda: (
            Pipeline([1], start_method="fork")
            .task(inc)
            .task(inc)
            .task(inc)
            .task(inc)
            .task(inc)
            .wait_for_result()
        ),
        reps * 4,
    )

    def pool_run() -> None:
        with mp.get_context("fork").Pool(2) as pool:
            pool.map(inc, [1])

    pool = median_time(pool_run, reps * 4)
    s.row("olympipe, 5 stages", f"{ours * 1000:.1f} ms")
    s.row("Pool(2) start + map 1 item + close", f"{pool * 1000:.1f} ms")
    old = run_peer("peer_olympipe2.py", "startup")
    if old:
        s.row(
            "olympipe 2.2.0, 5 stages",
            f"{old['seconds'] * 1000:.1f} ms",
            f"{old['seconds'] / ours:.0f}x ours",
        )
    return s
